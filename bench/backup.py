"""Backup and restore speed: `sante backup` / `sante restore` (logical, compressed, encrypted) of the Synthea
bundles, against the backend's own physical tool in the same run: SQLite's online backup API (and a file copy back)
and PostgreSQL's pg_dump -Fc / pg_restore.

    python bench/backup.py [--bundles N] [--backend sqlite|postgresql|both]

Ends with one line: `backup: B res/s backup, R res/s restore (goal >= 1,000 both: a million resources in under
17 minutes each way): ok|short` (judged on SQLite).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from sante.store import open_repository
from sante.store.backup import Secret, backup, restore
from sante.store.loader import load_paths

SYNTHEA = ROOT.parent / "shared" / "data" / "synthea-r4"
SECRET = Secret.from_key(b"\x42" * 32)  # a raw key: the bench measures the data path, not scrypt


def _timed(fn, *args, **kw):
    start = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - start


def sqlite_baseline(db: Path, tmp: Path) -> tuple[float, float]:
    src = sqlite3.connect(db)
    start = time.perf_counter()
    dst = sqlite3.connect(tmp / "copy.db")
    src.backup(dst)
    dst.close()
    t_backup = time.perf_counter() - start
    src.close()
    start = time.perf_counter()
    shutil.copyfile(tmp / "copy.db", tmp / "back.db")
    return t_backup, time.perf_counter() - start


def pg_baseline(pg, tmp: Path) -> tuple[float, float]:
    import psycopg

    with psycopg.connect(pg.url, autocommit=True) as c:
        c.execute('CREATE DATABASE "dumped"')
    host = ["-h", "127.0.0.1", "-p", str(pg.port), "-U", "sante"]
    start = time.perf_counter()
    subprocess.run([*pg._as_user, str(pg.bindir / "pg_dump"), *host, "-Fc", "-f", str(tmp / "pg.dump"), "sante"],
                   check=True, capture_output=True)
    t_backup = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([*pg._as_user, str(pg.bindir / "pg_restore"), *host, "-d", "dumped", str(tmp / "pg.dump")],
                   check=True, capture_output=True)
    return t_backup, time.perf_counter() - start


def run_backend(name: str, files: list[Path]) -> tuple[float, float]:
    tmp = Path(tempfile.mkdtemp(prefix=f"sante-bench-backup-{name}-"))
    pg = None
    try:
        if name == "sqlite":
            url, target = f"sqlite:///{tmp / 'sante.db'}", f"sqlite:///{tmp / 'restored.db'}"
        else:
            import psycopg
            from tests.support.postgres import TempPostgres

            pg = TempPostgres().start()
            tmp.chmod(0o777)  # pg_dump runs as the postgres user
            with psycopg.connect(pg.url, autocommit=True) as c:
                c.execute('CREATE DATABASE "restored"')
            url, target = pg.url, pg.url.rsplit("/", 1)[0] + "/restored"
        repo = open_repository(url)
        n = load_paths(repo, files).resources
        repo.close()
        s, t_b = _timed(backup, url, tmp / "sante.sbk", SECRET)
        r, t_r = _timed(restore, tmp / "sante.sbk", target, SECRET)
        assert r.rows == s.rows
        base_b, base_r = sqlite_baseline(tmp / "sante.db", tmp) if pg is None else pg_baseline(pg, tmp)
        res = s.resources
        print(f"{name:10s} {n:,} loaded; {res:,} resources, {s.rows:,} rows, {s.plain_bytes / 1e6:.0f} MB of records "
              f"-> {s.file_bytes / 1e6:.1f} MB file")
        print(f"{'':10s} backup  {t_b:.2f} s = {res / t_b:,.0f} res/s, {s.plain_bytes / 1e6 / t_b:.0f} MB/s of records "
              f"(baseline {'sqlite3 backup API' if pg is None else 'pg_dump -Fc'}: {base_b:.2f} s)")
        print(f"{'':10s} restore {t_r:.2f} s = {res / t_r:,.0f} res/s, {s.plain_bytes / 1e6 / t_r:.0f} MB/s of records "
              f"(baseline {'file copy' if pg is None else 'pg_restore'}: {base_r:.2f} s)")
        return res / t_b, res / t_r
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", type=int, default=121)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = ap.parse_args()
    files = sorted(SYNTHEA.glob("*.json.gz"))[: args.bundles]
    if not files:
        print(f"no Synthea bundles in {SYNTHEA}")
        return 1
    results = {}
    for name in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
        results[name] = run_backend(name, files)
    b, r = results.get("sqlite", next(iter(results.values())))
    ok = b >= 1_000 and r >= 1_000
    print(f"backup: {b:,.0f} res/s backup, {r:,.0f} res/s restore (goal >= 1,000 both): {'ok' if ok else 'short'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
