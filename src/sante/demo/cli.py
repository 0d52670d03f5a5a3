"""`sante demo`: seed the demo hospital (once) with a progress bar, print where and how to sign in, serve."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sante.demo import DEFAULT_PATIENTS, DEFAULT_SEED

if TYPE_CHECKING:
    from sante.demo.seed import SeedReport

SYNTHEA_DIR = "../shared/data/synthea-r4"


def add_demo_command(sub: Any) -> None:
    d = sub.add_parser("demo", help="seed the demo hospital (synthetic Vietnamese patients, staff, accounts) and "
                                    "serve it")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8080)
    d.add_argument("--data-dir", help="where the demo's database and accounts live (default: $SANTE_DATA_DIR, "
                                      "else data/demo)")
    d.add_argument("--patients", type=int, default=DEFAULT_PATIENTS,
                   help=f"synthetic Vietnamese patients (default {DEFAULT_PATIENTS})")
    d.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (same seed, same hospital)")
    d.add_argument("--synthea", default=SYNTHEA_DIR, help=f"Synthea bundles to load too (default {SYNTHEA_DIR})")
    d.add_argument("--no-synthea", action="store_true", help="do not load the Synthea patients")
    d.add_argument("--seed-only", action="store_true", help="seed, print the accounts and stop (do not serve)")
    d.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sante.cli import CliError, cmd_serve
    from sante.demo import seed
    from sante.settings import Settings
    from sante.store import open_repository

    if args.patients < 2:
        raise CliError("--patients must be at least 2 (the portal accounts are linked to the first two)")
    os.environ["SANTE_DATA_DIR"] = args.data_dir or os.environ.get("SANTE_DATA_DIR") or "data/demo"
    settings = Settings.from_env()
    synthea = None if args.no_synthea else Path(args.synthea)
    if synthea is not None and not synthea.is_dir():
        print(f"no Synthea data at {synthea}: only the demo hospital's own patients")
        synthea = None
    repo = open_repository(settings.database_url)
    columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TextColumn("resources"),
               TimeElapsedColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("Sante demo", total=None)

        def progress(what: str, written: int, total: int | None) -> None:
            if total is not None:
                bar.update(task, total=total)
            bar.update(task, description=what, advance=written)

        report = seed.seed_demo(repo, settings.data_dir, patients=args.patients, seed=args.seed, synthea=synthea,
                                progress=progress, notifiable_cases=True)
        bar.update(task, description="Xong (done)", total=bar.tasks[0].completed)
    repo.close()
    print_summary(report, settings, args.host, args.port)
    if report.synthea_failures:
        print(f"{len(report.synthea_failures)} Synthea files failed, the first: {report.synthea_failures[0]}")
    if args.seed_only:
        return 1 if report.synthea_failures else 0
    return cmd_serve(argparse.Namespace(host=args.host, port=args.port, workers=1))


def print_summary(report: SeedReport, settings: Any, host: str, port: int) -> None:
    if report.seeded:
        s = report.stats
        print(f"Demo hospital seeded: {s['patients']} patients, {s['beds']} beds ({s['occupied']} occupied), "
              f"{s['staff']} staff, {s['queue']} in today's outpatient queue: {report.resources} resources")
    else:
        print("Demo hospital already seeded: nothing rewritten")
    if report.synthea_files:
        print(f"Synthea: {report.synthea_resources} resources from {report.synthea_files} files")
    print(f"Seeding took {report.seconds:.1f} s (database: {settings.database_url})")
    base = f"http://{host}:{port}"
    print(f"\nWeb app:  {base}/\nFHIR API: {base}/fhir\n")
    from sante.demo.seed import ACCOUNTS_FILE

    print(f"Accounts (synthetic data, demo only; also in {settings.data_dir / ACCOUNTS_FILE}, mode 0600):")
    width = max(len(a.username) for a in report.accounts)
    for a in report.accounts:
        print(f"  {a.username:<{width}}  {a.password}  {a.who}")
