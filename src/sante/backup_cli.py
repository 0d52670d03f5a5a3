"""`sante backup` and `sante restore`: the command-line side of sante.store.backup (progress bar, one-line summary,
one-line errors)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def add_backup_commands(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("backup", help="write an encrypted, consistent backup of the database and attachments")
    b.add_argument("out_file", help="the backup file to write (replaced atomically when complete)")
    _key_options(b)
    b.set_defaults(func=cmd_backup)

    r = sub.add_parser("restore", help="restore a backup into an empty database (SANTE_DATABASE_URL / SANTE_DATA_DIR)")
    r.add_argument("in_file", help="a file written by `sante backup`")
    _key_options(r)
    r.add_argument("--force", action="store_true", help="replace the target's data if it has any")
    r.add_argument("--check", action="store_true", help="only read and verify the whole backup; write nothing")
    r.set_defaults(func=cmd_restore)


def _key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--passphrase-file", metavar="F", help="a file holding the passphrase (default: the "
                   "SANTE_BACKUP_PASSPHRASE variable)")
    p.add_argument("--key-file", metavar="F", help="a file holding a 32-byte key, raw or as 64 hex digits "
                   "(default: the SANTE_BACKUP_KEY_FILE variable)")


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not Console().is_terminal:  # from cron or a script: the summary line only
        yield lambda done, total: None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("rows"), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


@contextmanager
def _one_line_errors() -> Iterator[None]:
    from sqlalchemy.exc import SQLAlchemyError

    from sante.cli import CliError
    from sante.store.backup import BackupError

    try:
        yield
    except BackupError as e:
        raise CliError(str(e)) from None
    except SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise CliError(f"database error: {reason}") from None
    except OSError as e:
        raise CliError(f"{e.filename or ''}: {e.strerror or e}".lstrip(": ")) from None


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _chain_spooled_audit(settings: object) -> None:
    """Audit events a running server has spooled but not yet chained go into the backup too."""
    from sante.auth.audit import AuditLog
    from sante.auth.secrets import load_or_create
    from sante.store import open_repository

    spool = settings.data_dir / "audit-spool"
    if spool.is_dir():
        repo = open_repository(settings.database_url)
        try:
            AuditLog(repo.engine, load_or_create(settings.data_dir, "audit")).with_spool(spool).flush()
        finally:
            repo.close()


def cmd_backup(args: argparse.Namespace) -> int:
    from sante.settings import Settings
    from sante.store.backup import Secret, backup

    settings = Settings.from_env()
    with _one_line_errors():
        secret = Secret.resolve(args.passphrase_file, args.key_file)
        _chain_spooled_audit(settings)
        with _progress("Backing up") as progress:
            s = backup(settings.database_url, Path(args.out_file), secret,
                       attachments_dir=settings.data_dir / "attachments", progress=progress)
    print(f"backed up {s.resources} resources ({s.versions} versions, {s.rows} rows in {len(s.tables)} tables) "
          f"and {s.attachments} attachments ({_mb(s.attachment_bytes)}) from {s.backend} to {s.path}: "
          f"{_mb(s.file_bytes)} in {s.seconds:.1f} s")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from sante.settings import Settings
    from sante.store.backup import Secret, restore, verify

    settings = Settings.from_env()
    with _one_line_errors():
        secret = Secret.resolve(args.passphrase_file, args.key_file)
        if args.check:
            with _progress("Checking") as progress:
                header, end = verify(Path(args.in_file), secret, progress)
            print(f"{args.in_file}: intact; taken {header.created} on {header.backend} (schema v"
                  f"{header.schema_version}): {end.tables.get('resources', 0)} resources, {header.rows} rows, "
                  f"{end.attachments} attachments")
            return 0
        with _progress("Restoring") as progress:
            s = restore(Path(args.in_file), settings.database_url, secret,
                        attachments_dir=settings.data_dir / "attachments", force=args.force, progress=progress)
    print(f"restored {s.resources} resources ({s.versions} versions, {s.rows} rows) and {s.attachments} "
          f"attachments, taken {s.header.created} on {s.header.backend}, in {s.seconds:.1f} s")
    return 0
