"""Run the official SQL on FHIR v2 test suite (22 files, 134 cases) against Sante's view engines.

    python bench/sof_conformance.py [--engine memory,duckdb,spark] [--report PATH] [--suite DIR] [-v]

Prints failures (with -v), one line per engine (`memory: N passed, M failed`), writes a report in the suite's
test-report format (test-report.schema.json) to bench/.cache/sof-report-ENGINE.json (or --report, with one
engine), and ends with `sof_conformance: memory 134/134, duckdb N/134, spark N/134 (goal 134/134 each): ok|short`.
An engine whose module cannot be imported fails all its cases with that reason. tests/analytics imports
`load_cases` and `run_case` from here, so there is one implementation of the rules:

- `expectError`: passes when parse_view or the engine raises.
- `expect`: rows compared as multisets (the suite states no order); each row's columns must be exactly the
  expected ones; numbers compare by value (5 equals 5.0, 0.95 equals 0.950), booleans only with booleans.
- `expectColumns`: the result's columns, in order (the view's columns when there are no rows).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SUITE = ROOT.parent / "shared" / "conformance" / "sql-on-fhir" / "tests"
CACHE = ROOT / "bench" / ".cache"
ENGINES = ("memory", "duckdb", "spark")

sys.path.insert(0, str(ROOT / "src"))

from sante.analytics.viewdef import parse_view
from sante.analytics.views import engine_module


@dataclass(frozen=True)
class Case:
    file: str  # the suite file, e.g. "basic.json"
    title: str
    resources: list[dict[str, Any]]
    test: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.file[:-5]}: {self.title}"


@dataclass(frozen=True)
class Outcome:
    passed: bool
    error: str = ""


def load_cases(suite: Path = DEFAULT_SUITE) -> list[Case]:
    """Every test case of the suite, in file order."""
    cases = []
    for path in sorted(suite.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        cases.extend(Case(path.name, t["title"], document["resources"], t) for t in document["tests"])
    return cases


def run_case(case: Case, engine: str) -> Outcome:
    """Run one case on `engine` and judge it by the suite's rules (an engine that cannot be imported raises:
    its import error must not pass the expectError cases)."""
    module = engine_module(engine)
    expects_error = bool(case.test.get("expectError"))
    try:
        view = parse_view(case.test["view"])
        rows = module.run(view, case.resources)
    except Exception as e:  # any error counts for expectError; otherwise it is the failure reported
        if expects_error:
            return Outcome(True)
        return Outcome(False, f"{type(e).__name__}: {e}")
    if expects_error:
        return Outcome(False, f"expected an error, got {len(rows)} rows")
    if "expectColumns" in case.test:
        columns = list(rows[0]) if rows else list(view.column_names)
        if columns != case.test["expectColumns"]:
            return Outcome(False, f"columns {columns} != expected {case.test['expectColumns']}")
    if "expectCount" in case.test and len(rows) != case.test["expectCount"]:
        return Outcome(False, f"{len(rows)} rows != expected count {case.test['expectCount']}")
    if "expect" in case.test:
        return compare_rows(rows, case.test["expect"])
    return Outcome(True)


def compare_rows(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> Outcome:
    """Rows as multisets of canonical values; the mismatch is described when they differ."""
    got_c, exp_c = Counter(map(_canonical_row, got)), Counter(map(_canonical_row, expected))
    if got_c == exp_c:
        return Outcome(True)
    missing = list((exp_c - got_c).elements())[:3]
    extra = list((got_c - exp_c).elements())[:3]
    return Outcome(False, f"{len(got)} rows vs {len(expected)} expected; missing {missing}; unexpected {extra}")


def _canonical_row(row: dict[str, Any]) -> str:
    return json.dumps({k: _canonical(v) for k, v in row.items()}, sort_keys=True)


def _canonical(value: Any) -> Any:
    """A JSON value with numbers as normalised decimal text, so that 5 == 5.0 and True != 1."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        number = Decimal(str(value)).normalize()
        return {"number": format(number, "f")}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return {"other": str(value)}


def run_engine(engine: str, cases: list[Case]) -> list[Outcome]:
    """Every case on `engine`; an engine that cannot be imported fails them all with the reason."""
    try:
        engine_module(engine)
        if engine == "spark":
            _quiet_spark_session()
    except Exception as e:
        reason = f"engine {engine} unavailable: {type(e).__name__}: {e}"
        return [Outcome(False, reason) for _ in cases]
    outcomes = []
    for case in cases:
        try:
            outcomes.append(run_case(case, engine))
        except Exception:  # a crash in the comparison itself is a failure of this case, not of the run
            outcomes.append(Outcome(False, traceback.format_exc(limit=3)))
    return outcomes


def _quiet_spark_session() -> None:
    """Start the local session the Spark engine will find, without the executor logs of expectError cases."""
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "2")
               .getOrCreate())
    session.sparkContext.setLogLevel("OFF")


def report(cases: list[Case], outcomes: list[Outcome]) -> dict[str, Any]:
    """The results in the suite's test-report format: {file: {"tests": [{name, result: {passed, error?}}]}}."""
    out: dict[str, Any] = {}
    for case, outcome in zip(cases, outcomes, strict=True):
        result: dict[str, Any] = {"passed": outcome.passed}
        if outcome.error:
            result["error"] = outcome.error
        out.setdefault(case.file, {"tests": []})["tests"].append({"name": case.title, "result": result})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default=",".join(ENGINES), help="comma-separated: memory,duckdb,spark")
    parser.add_argument("--report", type=Path, help="report path (only with a single engine)")
    parser.add_argument("--suite", type=Path, default=DEFAULT_SUITE)
    parser.add_argument("-v", "--verbose", action="store_true", help="print every failure")
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engine.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        parser.error(f"unknown engine(s) {unknown}: choose from {', '.join(ENGINES)}")
    if args.report is not None and len(engines) != 1:
        parser.error("--report needs exactly one --engine")
    cases = load_cases(args.suite)
    totals = {}
    for engine in engines:
        outcomes = run_engine(engine, cases)
        if args.verbose:
            for case, outcome in zip(cases, outcomes, strict=True):
                if not outcome.passed:
                    print(f"FAIL [{engine}] {case.id}: {outcome.error}")
        passed = sum(o.passed for o in outcomes)
        totals[engine] = passed
        print(f"{engine}: {passed} passed, {len(cases) - passed} failed")
        path = args.report or CACHE / f"sof-report-{engine}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report(cases, outcomes), indent=1), encoding="utf-8")
    ok = all(p == len(cases) for p in totals.values())
    figures = ", ".join(f"{e} {p}/{len(cases)}" for e, p in totals.items())
    print(f"sof_conformance: {figures} (goal {len(cases)}/{len(cases)} each): {'ok' if ok else 'short'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
