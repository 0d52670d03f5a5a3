"""The `sante` command line: thin wrappers over the library; every failure is one line on stderr."""

from __future__ import annotations

import argparse
import gzip
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from sante.anomaly import Anomaly


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def read_json_file(path: Path) -> Any:
    """Parse a JSON file, gzip-compressed when its name ends in .gz."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return orjson.loads(raw)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except (orjson.JSONDecodeError, gzip.BadGzipFile, EOFError) as e:
        raise CliError(f"{path}: not valid JSON ({e})") from None


def json_files(paths: list[str]) -> Iterator[Path]:
    """The .json / .json.gz / .ndjson files named, folders searched recursively in name order."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(
                f for f in p.rglob("*") if f.is_file() and f.name.endswith((".json", ".json.gz", ".ndjson"))
            )
        elif p.exists():
            yield p
        else:
            raise CliError(f"{p}: no such file or folder")


def resources_in(path: Path) -> Iterator[tuple[str, Any]]:
    """(location, resource) for each resource in a file: a resource, a Bundle's entries, or NDJSON lines."""
    if path.name.endswith(".ndjson"):
        for n, line in enumerate(path.read_bytes().splitlines(), 1):
            if line.strip():
                try:
                    yield f"{path}:{n}", orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise CliError(f"{path}:{n}: not valid JSON ({e})") from None
        return
    doc = read_json_file(path)
    yield str(path), doc


def cmd_validate(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from sante.fhir.validate import validate

    files = list(json_files(args.paths))
    total = invalid = 0
    shown = 0
    with Progress(transient=True) as progress:
        task = progress.add_task("Validating", total=len(files))
        for f in files:
            for where, resource in resources_in(f):
                total += 1
                issues = validate(resource)
                errors = [i for i in issues if i.severity in ("error", "fatal")]
                if errors:
                    invalid += 1
                    for i in errors:
                        if shown < args.max_errors:
                            progress.console.print(f"{where}: {i.location}: {i.message}", markup=False)
                        shown += 1
            progress.advance(task)
    print(f"{total} resources in {len(files)} files: {total - invalid} valid, {invalid} invalid")
    return 1 if invalid else 0


def cmd_fhirpath(args: argparse.Namespace) -> int:
    from sante import fhirpath

    resource = read_json_file(Path(args.file)) if args.file else {}
    try:
        result = fhirpath.evaluate(resource, args.expression)
    except fhirpath.FHIRPathError as e:
        raise CliError(str(e)) from None
    for item in result:
        if isinstance(item, (dict, list)):
            print(orjson.dumps(item, option=orjson.OPT_INDENT_2).decode())
        else:
            print(item)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from sante.settings import Settings
    from sante.store import open_repository

    settings = Settings.from_env()
    open_repository(settings.database_url).close()  # create / migrate once, before the workers start
    print(f"Sante FHIR API on http://{args.host}:{args.port}/fhir (database: {settings.database_url})")
    uvicorn.run("sante.api.factory:app", factory=True, host=args.host, port=args.port, workers=args.workers,
                log_level="warning")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sante.settings import Settings
    from sante.store import open_repository
    from sante.store.loader import fhir_files, load_paths

    paths = [Path(p) for p in args.paths]
    for p in paths:
        if not p.exists():
            raise CliError(f"{p}: no such file or folder")
    settings = Settings.from_env()
    repo = open_repository(settings.database_url)
    total = len(fhir_files(paths))
    columns = (TextColumn("Loading"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[res]} resources"),
               TimeElapsedColumn())
    with Progress(*columns) as progress:
        task = progress.add_task("load", total=total, res=0)
        count = 0

        def advance(_f: Path, written: int, _failed: bool) -> None:
            nonlocal count
            count += written
            progress.update(task, advance=1, res=count)

        summary = load_paths(repo, paths, advance)
    for failure in summary.failures[: args.max_errors]:
        print(failure, file=sys.stderr)
    print(f"loaded {summary.resources} resources from {summary.files} files; {len(summary.failures)} failed")
    return 1 if summary.failures else 0


def _security() -> Any:
    from sante.api.security import Security
    from sante.settings import Settings
    from sante.store import open_repository

    settings = Settings.from_env()
    return Security.for_repository(open_repository(settings.database_url), settings.data_dir)


def _read_password(args: argparse.Namespace) -> str:
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise CliError("the two passwords differ")
    return first


def cmd_user(args: argparse.Namespace) -> int:
    from sante.auth.audit import Event

    sec = _security()
    if args.action == "add":
        user = sec.users.add(args.username, _read_password(args), args.role, fhir_user=args.fhir_user,
                             organization=args.organization)
        sec.audit.record(Event("user-add", username=_operator(), entities=[f"user:{user.username}"],
                               description=f"user {user.username} added with role {user.role}"))
        print(f"user {user.username} added (role {user.role})")
    elif args.action == "list":
        for u in sec.users.list():
            state = "disabled" if u.disabled else "locked" if u.locked_until else "active"
            fields = [u.username, u.role, u.fhir_user or "-", u.organization or "-", state] + (["2fa"] if u.totp else [])
            print("\t".join(fields))
    elif args.action in ("disable", "enable"):
        user = sec.users.set_disabled(args.username, args.action == "disable")
        sec.audit.record(Event(f"user-{args.action}", username=_operator(), entities=[f"user:{user.username}"]))
        print(f"user {user.username} {args.action}d")
    return 0


def _operator() -> str:
    import getpass

    return f"os:{getpass.getuser()}"


def cmd_client(args: argparse.Namespace) -> int:
    from sante.auth.audit import Event
    from sante.auth.clients import ClientStore

    sec = _security()
    store = ClientStore(sec.users.engine)
    if args.action == "add":
        secret, jwks = None, None
        if args.public:
            method = "none"
        elif args.secret_stdin:
            method = args.auth_method
            secret = sys.stdin.readline().rstrip("\n")
        else:
            method = "private_key_jwt"
            jwks = read_json_file(Path(args.jwks))
        client = store.add(args.client_id, args.name, redirect_uris=args.redirect_uri or [], scopes=args.scopes,
                           auth_method=method, secret=secret, jwks=jwks, role=args.role)
        sec.audit.record(Event("client-add", username=_operator(), entities=[f"client:{client.client_id}"],
                               description=f"client {client.client_id} added ({client.auth_method}, "
                                           f"{' '.join(client.grant_types)}, scopes {client.scopes!r})"))
        print(f"client {client.client_id} added ({client.auth_method}; grants {' '.join(client.grant_types)}; "
              f"scopes {client.scopes})")
    elif args.action == "list":
        for c in store.list():
            print("\t".join([c.client_id, c.name, c.auth_method, " ".join(c.grant_types), c.scopes, c.role,
                             "disabled" if c.disabled else "active"]))
    elif args.action in ("disable", "enable"):
        client = store.set_disabled(args.client_id, args.action == "disable")
        sec.audit.record(Event(f"client-{args.action}", username=_operator(), entities=[f"client:{client.client_id}"]))
        print(f"client {client.client_id} {args.action}d")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from sante.auth.audit import Event

    sec = _security()
    role = args.role
    fhir_user = args.fhir_user
    organization = None
    if args.user:
        user = sec.users.get(args.user)
        if user.disabled:
            raise CliError(f"user {args.user} is disabled")
        role, fhir_user, organization = user.role, user.fhir_user, user.organization
        subject = user.username
        if user.role in ("patient", "related_person"):
            if user.patient is None:
                raise CliError(f"user {args.user} has no patient to see (their RelatedPerson record is missing, "
                               "inactive or out of its period)")
            if args.patient and args.patient != user.patient:
                raise CliError(f"user {args.user} may only see Patient/{user.patient}")
        patient = args.patient or user.patient
    else:
        subject = _operator()
        patient = args.patient
    issued = sec.tokens.issue(subject=subject, role=role, scopes=args.scopes, fhir_user=fhir_user, patient=patient,
                              organization=organization, lifetime=args.lifetime)
    sec.audit.record(Event("token", username=_operator(), role=role, patient=patient,
                           description=f"token for {subject} with scopes {args.scopes!r}",
                           token_id=issued.claims["jti"]))
    print(f"token for {subject} (role {role}, scopes {args.scopes}"
          f"{', patient ' + patient if patient else ''}), valid {args.lifetime} s:", file=sys.stderr)
    print(issued.token)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    sec = _security()
    result = sec.audit.verify()
    if result.ok:
        print(f"audit trail intact: {result.checked} events")
        return 0
    print(f"audit trail BROKEN at event {result.seq}: {result.problem} ({result.checked} events verified before)")
    return 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sante", description="Sante smart-hospital platform")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="validate FHIR R4 resources (files, Bundles, NDJSON, folders)")
    v.add_argument("paths", nargs="+", help="files or folders (.json, .json.gz, .ndjson)")
    v.add_argument("--max-errors", type=int, default=50, help="errors printed at most (default 50)")
    v.set_defaults(func=cmd_validate)

    f = sub.add_parser("fhirpath", help="evaluate a FHIRPath expression on a resource")
    f.add_argument("expression")
    f.add_argument("file", nargs="?", help="a FHIR JSON resource (.json or .json.gz)")
    f.set_defaults(func=cmd_fhirpath)

    ld = sub.add_parser("load", help="load FHIR files, Bundles, NDJSON or folders into the database")
    ld.add_argument("paths", nargs="+")
    ld.add_argument("--max-errors", type=int, default=50)
    ld.set_defaults(func=cmd_load)

    s = sub.add_parser("serve", help="serve the FHIR API (database from SANTE_DATABASE_URL / SANTE_DATA_DIR)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    s.set_defaults(func=cmd_serve)

    from sante.backup_cli import add_backup_commands

    add_backup_commands(sub)  # backup, restore
    u = sub.add_parser("user", help="manage user accounts")
    usub = u.add_subparsers(dest="action", required=True)
    ua = usub.add_parser("add", help="add a user (password read from the terminal, or stdin)")
    ua.add_argument("username")
    ua.add_argument("--role", required=True)
    ua.add_argument("--fhir-user", help="the user's resource: Practitioner/ID, Patient/ID, RelatedPerson/ID")
    ua.add_argument("--organization", help="Organization/ID whose patients a staff member sees")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    usub.add_parser("list", help="list users")
    for action in ("disable", "enable"):
        ud = usub.add_parser(action, help=f"{action} a user")
        ud.add_argument("username")
    u.set_defaults(func=cmd_user)

    c = sub.add_parser("client", help="manage registered client apps (OAuth2 / SMART on FHIR)")
    csub = c.add_subparsers(dest="action", required=True)
    ca = csub.add_parser("add", help="register a client app")
    ca.add_argument("client_id")
    ca.add_argument("--name", required=True, help="the app's name, as operators and the audit trail show it")
    ca.add_argument("--redirect-uri", nargs="+", metavar="URI", help="where codes are sent (apps used by people)")
    ca.add_argument("--scopes", required=True, help='the scopes it may be granted, e.g. "openid fhirUser '
                                                    'launch/patient offline_access patient/*.rs"')
    kind = ca.add_mutually_exclusive_group(required=True)
    kind.add_argument("--public", action="store_true", help="a public app (browser, mobile): no secret, PKCE")
    kind.add_argument("--secret-stdin", action="store_true", help="a confidential app: its secret from stdin")
    kind.add_argument("--jwks", metavar="FILE", help="a backend service: its public keys (JWK Set, RS384/ES384)")
    ca.add_argument("--auth-method", default="client_secret_basic", choices=["client_secret_basic", "client_secret_post"],
                    help="how a client with a secret sends it (default client_secret_basic)")
    ca.add_argument("--role", default="system", help="the role of its client-credentials tokens (default system)")
    csub.add_parser("list", help="list client apps")
    for action in ("disable", "enable"):
        cd = csub.add_parser(action, help=f"{action} a client app")
        cd.add_argument("client_id")
    c.set_defaults(func=cmd_client)

    t = sub.add_parser("token", help="print a bearer token (last line) for scripts run by an operator")
    t.add_argument("--scopes", required=True, help='SMART scopes, e.g. "system/*.cruds" or "patient/*.rs"')
    t.add_argument("--patient", help="the patient in context (a Patient id)")
    t.add_argument("--user", help="issue for this user account (its role and links)")
    t.add_argument("--role", default="system", help="the role when no --user is given (default system)")
    t.add_argument("--fhir-user", help="the FHIR resource the token acts as")
    t.add_argument("--lifetime", type=int, default=3600, help="seconds (default 3600)")
    t.set_defaults(func=cmd_token)

    a = sub.add_parser("audit", help="the audit trail")
    asub = a.add_subparsers(dest="action", required=True)
    asub.add_parser("verify", help="check the hash chain; names the first altered, missing or reordered event")
    a.set_defaults(func=cmd_audit)

    from sante.clinical.signing_cli import add_signing_commands  # sante ca ..., sante sign, sante verify

    add_signing_commands(sub)
    from sante.demo.cli import add_demo_command  # sante demo

    add_demo_command(sub)
    from sante.analytics.cli import add_analytics_commands  # sante analytics view ...

    add_analytics_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"sante: {e}", file=sys.stderr)
        return 2
    except Anomaly as e:
        print(f"sante: {e.message}" + (f" ({e.location})" if e.location else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
