"""The hospital certificate authority: it issues each practitioner a signing key and an X.509 certificate.

Layout of a CA folder (by default `<data_dir>/ca`, see `default_ca_dir`), created with mode 0700:

    ca.crt                              the hospital CA certificate (PEM); an imported intermediate CA may be
                                        followed by its issuers (the chain up to, not necessarily including, a root)
    ca.key                              the CA private key (PEM, PKCS#8, mode 0600)
    practitioners/Practitioner-123.crt  a practitioner's certificate (PEM)
    practitioners/Practitioner-123.key  the practitioner's private key (PEM, PKCS#8, mode 0600)

Private keys are encrypted with SANTE_CA_PASSPHRASE when that variable is set (and it is then needed to use
them); certificates are public. Practitioner keys are ECDSA P-256 (JWS ES256). A practitioner certificate
names its Practitioner in a URI subjectAltName `urn:sante:Practitioner/123`, which is how verification tells
who signed. Trust is anchored at the hospital CA certificate (the first one in ca.crt): a signer's chain must
lead to it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from sante.anomaly import Anomaly, Category, incorrect

PASSPHRASE_ENV = "SANTE_CA_PASSPHRASE"
SAN_PREFIX = "urn:sante:"
DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")  # id-kp-documentSigning (RFC 9336)
PRACTITIONER_RE = re.compile(r"Practitioner/[A-Za-z0-9\-.]{1,64}")
CA_DAYS = 3650
PRACTITIONER_DAYS = 730

SigningKey = ec.EllipticCurvePrivateKey


def default_ca_dir(data_dir: Path) -> Path:
    """Where the hospital CA lives under a data dir."""
    return Path(data_dir) / "ca"


@dataclass(frozen=True, slots=True)
class CaInfo:
    """What `init_ca` / `import_ca` set up."""

    subject: str
    fingerprint: str  # SHA-256 of the certificate, hex
    not_after: datetime
    cert_path: Path
    key_path: Path
    encrypted: bool


# -- references -------------------------------------------------------------------------------------------------
def practitioner_reference(ref: str) -> str:
    """`Practitioner/123` from `Practitioner/123` or `urn:sante:Practitioner/123`; anything else is a 400."""
    ref = (ref or "").strip().removeprefix(SAN_PREFIX)
    if not PRACTITIONER_RE.fullmatch(ref):
        raise incorrect(f"{ref!r} is not a Practitioner reference such as Practitioner/123", "practitioner")
    return ref


def practitioner_of(cert: x509.Certificate) -> str | None:
    """The Practitioner reference a certificate was issued for (its `urn:sante:` URI subjectAltName)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(SAN_PREFIX) and PRACTITIONER_RE.fullmatch(uri.removeprefix(SAN_PREFIX)):
            return uri.removeprefix(SAN_PREFIX)
    return None


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


# -- files ------------------------------------------------------------------------------------------------------
def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def _key_pem(key: Any) -> bytes:
    secret = _passphrase()
    encryption = (serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _load_key(data: bytes, where: str) -> Any:
    try:
        return serialization.load_pem_private_key(data, password=_passphrase())
    except TypeError:
        if _passphrase() is None:
            raise Anomaly(Category.FORBIDDEN, f"{where} is encrypted: set {PASSPHRASE_ENV}") from None
        raise incorrect(f"{where} is not encrypted, but {PASSPHRASE_ENV} is set: unset it to read it") from None
    except ValueError as e:
        if _passphrase() is not None and b"ENCRYPTED" in data:
            raise Anomaly(Category.FORBIDDEN, f"{where}: wrong {PASSPHRASE_ENV}") from None
        raise incorrect(f"{where} is not a PEM private key ({e})") from None


def _load_certs(data: bytes, where: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise incorrect(f"{where} is not a PEM certificate ({e})") from None
    if not certs:
        raise incorrect(f"{where} holds no certificate")
    return certs


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically (temporary file, fsync, rename) with the given mode from the first byte."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime:
    return datetime.now(UTC)


def _hash_for(key: Any) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()


def _spki(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# -- the CA -----------------------------------------------------------------------------------------------------
def ca_exists(ca_dir: Path) -> bool:
    return (Path(ca_dir) / "ca.crt").exists()


def _refuse_existing(ca_dir: Path) -> None:
    if ca_exists(ca_dir):
        raise Anomaly(Category.CONFLICT, f"a hospital CA already exists in {ca_dir}: it is never replaced silently "
                                         "(signatures made under it must stay verifiable)")


def _store_ca(ca_dir: Path, key: Any, chain: list[x509.Certificate]) -> CaInfo:
    _private_dir(ca_dir)
    _write(ca_dir / "ca.key", _key_pem(key), 0o600)
    _write(ca_dir / "ca.crt", b"".join(map(_pem, chain)), 0o644)
    cert = chain[0]
    return CaInfo(cert.subject.rfc4514_string(), fingerprint(cert), cert.not_valid_after_utc, ca_dir / "ca.crt",
                  ca_dir / "ca.key", _passphrase() is not None)


def init_ca(ca_dir: Path, name: str = "Sante Hospital CA", *, days: int = CA_DAYS) -> CaInfo:
    """Create a self-signed hospital CA (ECDSA P-256) in ca_dir; refuses if one is already there."""
    ca_dir = Path(ca_dir)
    name = (name or "").strip()
    if not name:
        raise incorrect("the CA needs a name", "name")
    _refuse_existing(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _store_ca(ca_dir, key, [cert])


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _can_sign_certs(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign)
    except x509.ExtensionNotFound:
        return True


def import_ca(ca_dir: Path, cert_pem: bytes, key_pem: bytes) -> CaInfo:
    """Adopt an existing CA (for instance an intermediate issued by the hospital group's or the ministry's root).

    cert_pem: the CA certificate first, optionally followed by its issuers; key_pem: its private key (read with
    SANTE_CA_PASSPHRASE if encrypted, and stored encrypted again under it when set)."""
    ca_dir = Path(ca_dir)
    _refuse_existing(ca_dir)
    chain = _load_certs(cert_pem, "the CA certificate")
    key = _load_key(key_pem, "the CA key")
    cert = chain[0]
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
                      | ed448.Ed448PrivateKey):
        raise incorrect("the CA key must be RSA, EC, Ed25519 or Ed448")
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise incorrect("the key does not belong to the certificate")
    if not _is_ca(cert) or not _can_sign_certs(cert):
        raise incorrect(f"{cert.subject.rfc4514_string()} is not a CA certificate (basicConstraints CA:TRUE and "
                        "keyCertSign are needed)")
    if cert.not_valid_after_utc <= _now():
        raise incorrect(f"the CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    for child, parent in pairwise(chain):
        if not _issued_by(child, parent):
            raise incorrect("the certificates after the first must be its issuers, in order")
    return _store_ca(ca_dir, key, chain)


def hospital_ca(ca_dir: Path) -> x509.Certificate | None:
    """The trust anchor for verification: the hospital CA certificate, or None when there is no CA yet."""
    return ca_certificates(ca_dir)[0] if ca_exists(ca_dir) else None


def ca_certificates(ca_dir: Path) -> list[x509.Certificate]:
    """The hospital CA certificate and the issuers stored after it (public: no passphrase needed)."""
    path = Path(ca_dir) / "ca.crt"
    if not path.exists():
        raise Anomaly(Category.NOT_FOUND, f"no hospital CA in {ca_dir}: create one with `sante ca init` "
                                          "or import one with `sante ca import`")
    return _load_certs(path.read_bytes(), str(path))


def load_ca(ca_dir: Path) -> tuple[Any, list[x509.Certificate]]:
    chain = ca_certificates(ca_dir)
    return _load_key((Path(ca_dir) / "ca.key").read_bytes(), str(Path(ca_dir) / "ca.key")), chain


# -- practitioners ----------------------------------------------------------------------------------------------
def _practitioner_files(ca_dir: Path, ref: str) -> tuple[Path, Path]:
    stem = Path(ca_dir) / "practitioners" / ref.replace("/", "-")
    return stem.with_suffix(".key"), stem.with_suffix(".crt")


def _common_name(name: str) -> str:
    """X.509 limits a common name to 64 (UTF-8 bytes here): a longer display name is cut at a word."""
    if len(name.encode()) <= 64:
        return name
    cut = name.encode()[:61].decode(errors="ignore")  # room for the ellipsis (3 bytes)
    word = cut.rsplit(" ", 1)[0]
    return (word if len(word) > 20 else cut) + "…"


def has_signer(ca_dir: Path, practitioner_ref: str) -> bool:
    """Whether a practitioner has a signing key and certificate under ca_dir."""
    return all(p.exists() for p in _practitioner_files(ca_dir, practitioner_reference(practitioner_ref)))


def issue(ca_dir: Path, practitioner_ref: str, display_name: str, *, days: int = PRACTITIONER_DAYS
          ) -> tuple[SigningKey, x509.Certificate]:
    """A new P-256 signing key and certificate for a practitioner, stored under ca_dir/practitioners (an
    earlier key for the same practitioner is replaced; signatures made with it stay verifiable, since each
    signature carries its certificate chain)."""
    ref = practitioner_reference(practitioner_ref)
    display_name = (display_name or "").strip()
    if not display_name:
        raise incorrect("the practitioner's certificate needs a display name", "name")
    ca_key, chain = load_ca(ca_dir)
    ca_cert = chain[0]
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = min(now + timedelta(days=days), ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise incorrect("the hospital CA certificate has expired: it can issue no certificate")
    try:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _common_name(display_name))]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SAN_PREFIX + ref)]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, _hash_for(ca_key))
    )
    key_path, cert_path = _practitioner_files(ca_dir, ref)
    _private_dir(key_path.parent)
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, _pem(cert), 0o644)
    return key, cert


def load_signer(ca_dir: Path, practitioner_ref: str) -> tuple[SigningKey, list[x509.Certificate]]:
    """A practitioner's signing key and certificate chain (their certificate, then the hospital CA chain)."""
    ref = practitioner_reference(practitioner_ref)
    key_path, cert_path = _practitioner_files(ca_dir, ref)
    if not key_path.exists() or not cert_path.exists():
        raise Anomaly(Category.NOT_FOUND, f"{ref} has no signing key: issue one with `sante ca issue {ref} "
                                          "--name NAME`")
    key = _load_key(key_path.read_bytes(), str(key_path))
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise incorrect(f"{key_path} is not an EC key")
    leaf = _load_certs(cert_path.read_bytes(), str(cert_path))[0]
    return key, [leaf, *ca_certificates(ca_dir)]


# -- verification -----------------------------------------------------------------------------------------------
def chain_problems(chain: list[x509.Certificate], anchor: x509.Certificate | None, at: datetime) -> list[str]:
    """Why a signer's chain (leaf first, as carried in a signature) does not lead to the hospital CA `anchor`,
    valid at `at`; [] when it does.

    From the leaf, each certificate must be issued (name and signature) by the next one on the path, found
    among the chain's certificates, until one is issued by the anchor itself; issuers must be CAs, every
    certificate on the path (the anchor included) must be valid at `at`, and the leaf must allow signing."""
    if not chain:
        return ["the signature carries no certificate"]
    if anchor is None:
        return ["no hospital CA is configured to verify against"]
    der = serialization.Encoding.DER
    leaf = chain[0]
    if leaf.public_bytes(der) == anchor.public_bytes(der) or _is_ca(leaf):
        return ["the signer's certificate is a CA certificate, not a practitioner's"]
    problems: list[str] = []
    path, current = [leaf], leaf
    while True:
        if current.issuer == anchor.subject and _issued_by(current, anchor):
            path.append(anchor)
            break
        parent = next((c for c in chain[1:] if c.subject == current.issuer and c not in path
                       and c.public_bytes(der) != anchor.public_bytes(der)), None)
        if parent is None or len(path) > 8:
            return [f"{current.subject.rfc4514_string()} was not issued by the hospital CA "
                    f"({anchor.subject.rfc4514_string()}): the certificate chain is not trusted"]
        if not _issued_by(current, parent):
            return [f"{current.subject.rfc4514_string()} is not validly signed by {parent.subject.rfc4514_string()}"]
        path.append(parent)
        current = parent
    for parent in path[1:]:
        if not _is_ca(parent):
            problems.append(f"{parent.subject.rfc4514_string()} is not a CA certificate")
    for cert in path:
        _check_time(cert, at, problems)
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (usage.digital_signature or usage.content_commitment):
            problems.append("the signer's certificate does not allow digital signatures")
    except x509.ExtensionNotFound:
        pass
    return problems


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _check_time(cert: x509.Certificate, at: datetime, problems: list[str]) -> None:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        problems.append(f"{cert.subject.rfc4514_string()} was not valid at {at.isoformat()} (valid "
                        f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})")


__all__ = [
    "PASSPHRASE_ENV", "CaInfo", "ca_certificates", "ca_exists", "chain_problems", "common_name", "default_ca_dir",
    "fingerprint", "has_signer", "hospital_ca", "import_ca", "init_ca", "issue", "load_ca", "load_signer", "practitioner_of",
    "practitioner_reference",
]
