"""`sante ca init|import|issue`, `sante sign` and `sante verify`: the signed-records commands.

Added to the parser by sante.cli.build_parser; each failure is one line (CliError), as for every command.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sante.anomaly import Anomaly


def _cli_error(message: str) -> Exception:
    from sante.cli import CliError

    return CliError(message)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except Anomaly as e:
        raise _cli_error(e.message) from None


def _ca_dir() -> Path:
    from sante.auth.ca import default_ca_dir
    from sante.settings import Settings

    return default_ca_dir(Settings.from_env().data_dir)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise _cli_error(f"{path}: no such file") from None
    except OSError as e:
        raise _cli_error(f"{path}: {e.strerror}") from None


def _describe(info: Any) -> str:
    from sante.auth.ca import PASSPHRASE_ENV

    key = "encrypted" if info.encrypted else f"NOT encrypted (set {PASSPHRASE_ENV} to encrypt it)"
    return (f"hospital CA {info.subject} (SHA-256 {info.fingerprint}), valid until {info.not_after:%Y-%m-%d}\n"
            f"  certificate: {info.cert_path}\n  private key: {info.key_path}, {key}")


def cmd_ca(args: argparse.Namespace) -> int:
    from sante.auth import ca

    ca_dir = _ca_dir()
    with _one_line_errors():
        if args.action == "init":
            print(_describe(ca.init_ca(ca_dir, args.name)))
        elif args.action == "import":
            print(_describe(ca.import_ca(ca_dir, _read(args.cert), _read(args.key))))
        elif args.action == "issue":
            ref = ca.practitioner_reference(args.practitioner)
            _, cert = ca.issue(ca_dir, ref, args.name)
            print(f"certificate for {ref} ({ca.common_name(cert)}), SHA-256 {ca.fingerprint(cert)}, valid until "
                  f"{cert.not_valid_after_utc:%Y-%m-%d}\n  under {ca_dir / 'practitioners'}")
    return 0


def _split_reference(text: str) -> tuple[str, str]:
    rtype, _, rid = text.strip().partition("/")
    if not rtype or not rid or "/" in rid:
        raise _cli_error(f"{text!r}: name the resource as TYPE/ID, e.g. DiagnosticReport/123")
    return rtype, rid


def _repository() -> Any:
    from sante.settings import Settings
    from sante.store import open_repository

    return open_repository(Settings.from_env().database_url)


def cmd_sign(args: argparse.Namespace) -> int:
    from sante.auth import ca
    from sante.clinical import signing

    rtype, rid = _split_reference(args.resource)
    with _one_line_errors():
        signing.check_signable(rtype)
        ref = ca.practitioner_reference(args.practitioner)
        key, chain = ca.load_signer(_ca_dir(), ref)
        repo = _repository()
        try:
            prov = signing.sign(repo, rtype, rid, ref, key, chain)
        finally:
            repo.close()
    print(f"Provenance/{prov['id']}: {prov['target'][0]['reference']} signed by {ref} at {prov['recorded']}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from sante.auth import ca
    from sante.clinical import signing

    ca_dir = _ca_dir()
    with _one_line_errors():
        repo = _repository()
        try:
            report = signing.verify(repo, args.provenance, anchor=ca.hospital_ca(ca_dir))
        finally:
            repo.close()
    print(report.to_text())
    return 0 if report.ok else 1


def add_signing_commands(sub: Any) -> None:
    """Add `ca`, `sign` and `verify` to the `sante` parser's subcommands."""
    c = sub.add_parser("ca", help="the hospital certificate authority for practitioners' signing keys")
    csub = c.add_subparsers(dest="action", required=True)
    ci = csub.add_parser("init", help="create the hospital CA in the data dir (ca/)")
    ci.add_argument("--name", default="Sante Hospital CA", help="the CA's name (default: Sante Hospital CA)")
    cm = csub.add_parser("import", help="adopt an existing CA: its certificate (then its issuers) and private key")
    cm.add_argument("cert", help="PEM certificate file")
    cm.add_argument("key", help="PEM private key file (encrypted with SANTE_CA_PASSPHRASE, if it is)")
    cs = csub.add_parser("issue", help="issue a practitioner's signing key and certificate")
    cs.add_argument("practitioner", help="the Practitioner reference, e.g. Practitioner/123")
    cs.add_argument("--name", required=True, help="the practitioner's name in the certificate")
    c.set_defaults(func=cmd_ca)

    s = sub.add_parser("sign", help="sign the current version of a Composition, DiagnosticReport or MedicationRequest")
    s.add_argument("resource", help="TYPE/ID, e.g. DiagnosticReport/123")
    s.add_argument("--practitioner", required=True, help="the signing Practitioner reference (their key is used)")
    s.set_defaults(func=cmd_sign)

    v = sub.add_parser("verify", help="check a signature Provenance: who signed what and when, changed since?")
    v.add_argument("provenance", help="the Provenance id (or Provenance/ID)")
    v.set_defaults(func=cmd_verify)


__all__ = ["add_signing_commands"]
