"""Ingest speed: the Synthea bundles through the transaction path (validation + full search indexing), against a
raw baseline (the same resources as bare JSON rows, no validation or indexing) on the same backend, in one run.

    python bench/ingest.py [--bundles N] [--backend sqlite|postgresql|both] [--workers N]

Ends with one line: `ingest: R res/s = P% of raw (goal >= 10,000 and >= 15%): ok|short` (judged on SQLite).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from sante.store import open_repository
from sante.store.loader import load_paths

SYNTHEA = ROOT.parent / "shared" / "data" / "synthea-r4"


def raw_baseline(url: str, files: list[Path]) -> tuple[int, float]:
    """Bare JSON rows into an empty table of the same backend: parse, serialise, insert, commit per bundle."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as c:
        c.execute(text("CREATE TABLE raw_resources (type VARCHAR(64), id VARCHAR(64), content BLOB)"
                       if url.startswith("sqlite") else
                       "CREATE TABLE raw_resources (type VARCHAR(64), id VARCHAR(64), content BYTEA)"))
    mark = "?" if url.startswith("sqlite") else "%s"
    n = 0
    start = time.perf_counter()
    for f in files:
        bundle = orjson.loads(gzip.decompress(f.read_bytes()))
        rows = [(e["resource"]["resourceType"], e["resource"].get("id", ""), orjson.dumps(e["resource"]))
                for e in bundle["entry"]]
        with engine.begin() as c:
            c.exec_driver_sql(f"INSERT INTO raw_resources VALUES ({mark}, {mark}, {mark})", rows)
        n += len(rows)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return n, elapsed


def sante_ingest(url: str, files: list[Path], workers: int | None) -> tuple[int, float, int]:
    repo = open_repository(url)
    start = time.perf_counter()
    summary = load_paths(repo, files, workers=workers)
    elapsed = time.perf_counter() - start
    for failure in summary.failures[:5]:
        print("  failure:", failure)
    repo.close()
    return summary.resources, elapsed, len(summary.failures)


def run_backend(name: str, files: list[Path], workers: int | None) -> tuple[float, float]:
    tmp = Path(tempfile.mkdtemp(prefix="sante-ingest-"))
    pg = None
    try:
        if name == "sqlite":
            urls = (f"sqlite:///{tmp / 'raw.db'}", f"sqlite:///{tmp / 'sante.db'}")
        else:
            from tests.support.postgres import TempPostgres

            pg = TempPostgres().start()
            import psycopg

            with psycopg.connect(pg.url, autocommit=True) as c:
                c.execute('CREATE DATABASE "raw"')
            urls = (pg.url.rsplit("/", 1)[0] + "/raw", pg.url)
        n_raw, t_raw = raw_baseline(urls[0], files)
        n, t, failures = sante_ingest(urls[1], files, workers)
        rate, raw_rate = n / t, n_raw / t_raw
        print(f"{name:10s} raw baseline {n_raw:,} res in {t_raw:.1f} s = {raw_rate:,.0f} res/s; "
              f"Sante {n:,} res in {t:.1f} s = {rate:,.0f} res/s ({rate / raw_rate:.1%} of raw), "
              f"{failures} failed files")
        if failures:
            rate = 0.0
        return rate, raw_rate
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", type=int, default=120)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    files = sorted(SYNTHEA.glob("*.json.gz"))[: args.bundles]
    if not files:
        print(f"no Synthea bundles in {SYNTHEA}")
        return 1
    results = {}
    for name in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
        results[name] = run_backend(name, files, args.workers)
    rate, raw = results.get("sqlite", next(iter(results.values())))
    ok = rate >= 10_000 and rate >= 0.15 * raw
    print(f"ingest: {rate:,.0f} res/s = {rate / raw:.0%} of raw (goal >= 10,000 and >= 15%): {'ok' if ok else 'short'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
