"""How fast is Sante's FHIRPath engine? Compared with fhirpathpy (PyPI) and fhirpath.js (npm, when node is here).

    .venv/bin/python bench/fhirpath_speed.py            # default run: a 20-bundle Synthea sample, ~2-3 minutes
    .venv/bin/python bench/fhirpath_speed.py --full     # all 120 Synthea bundles for the search-parameter part

Part 1 times the valid expressions of the official FHIRPath R4 suite on the suite's own inputs (the JSON copies
in ../shared/conformance/fhirpath/json/): each engine compiles each expression once, outside the timed loop,
evaluates it once (an exception there counts as that engine's error and the expression is not timed for it), then
runs it in a loop whose length is raised until one run lasts about --target-ms; the best of --repeats runs gives
microseconds per evaluation (timeit's method). Ratios peer/Sante are taken per expression, over the expressions
both engines handle, and summarised by their median. Sante is timed twice in the same run: as shipped, and with
constant folding switched off (`Compiler.fold_constants = False`: most suite expressions are literal-only, like
`1 > 2`, which folding evaluates at compile time). The goals are judged on the figures WITHOUT folding, i.e. on real
evaluation work; the folded figures are printed next to them.

Part 2 extracts search parameters: for every resource of the Synthea sample, every R4 SearchParameter
expression whose base is the resource's type (or an ancestor: Resource, DomainResource) is evaluated. A first
pass records each engine's errors per (type, parameter); a (type, parameter) that fails for either engine on any
resource is left out of the timed comparison (and listed). Per resource the time for all its parameters is the
best of --sp-repeats passes. Sante's Observation figure is over every parameter Sante itself handles, timed both
expression by expression and through `compile_many` (one generated function per resource type, the way Sante's
search indexer extracts); the goal is judged on the latter. fhirpathpy is always timed expression by expression.

The script ends with one verdict line and exits 0 when every goal holds (>= 20x fhirpathpy, >= 1x fhirpath.js,
both without constant folding; Observation extraction < 20 us), 1 otherwise. Per-expression results go to bench/.cache/fhirpath_speed.json.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SUITE_DIR = SHARED / "conformance" / "fhirpath"
SUITE_JSON = SUITE_DIR / "tests-fhir-r4.json"
SUITE_INPUTS = SUITE_DIR / "json"
SYNTHEA_DIR = SHARED / "data" / "synthea-r4"
JS_DIR = ROOT / "bench" / "js"
CACHE = ROOT / "bench" / ".cache"

GOAL_VS_FHIRPATHPY = 20.0
GOAL_VS_FHIRPATHJS = 1.0
GOAL_OBSERVATION_US = 20.0

console = Console(highlight=False, width=None if sys.stdout.isatty() else 130)
status_console = Console(stderr=True, highlight=False)

Compiled = Callable[..., Any]


class _Discard:
    """A stdout for the timed code: `trace()` output (fhirpathpy prints it) must not flood the report."""

    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


def quiet() -> contextlib.AbstractContextManager[Any]:
    return contextlib.redirect_stdout(_Discard())  # type: ignore[type-var]


# -- inputs ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One expression of the suite on one input file (None: the test has no input; an empty object is used)."""

    id: int
    name: str
    expression: str
    inputfile: str | None


def load_suite_cases(suite_json: Path = SUITE_JSON) -> list[Case]:
    """The suite's valid expressions (not marked `invalid`), one case per distinct (expression, input file)."""
    tests = json.loads(suite_json.read_text())
    cases: list[Case] = []
    seen: set[tuple[str, str | None]] = set()
    for t in tests:
        if t.get("invalid"):
            continue
        key = (t["expression"], t.get("inputfile") or None)
        if key in seen:
            continue
        seen.add(key)
        cases.append(Case(len(cases), f"{t['group']}/{t['name']}", key[0], key[1]))
    return cases


def load_suite_input(inputfile: str | None, inputs_dir: Path = SUITE_INPUTS) -> dict[str, Any]:
    """A fresh copy of a suite input (each engine gets its own: fhirpathpy annotates what it is given)."""
    if inputfile is None:
        return {}
    return json.loads((inputs_dir / inputfile).read_text())


@dataclass(frozen=True)
class SearchExpression:
    code: str  # the parameter's code, e.g. "patient"
    id: str  # the SearchParameter's id, e.g. "clinical-patient"
    expression: str


def search_expressions_by_type(
    types: Iterable[str], params: list[dict[str, Any]] | None = None
) -> dict[str, list[SearchExpression]]:
    """Resource type -> the SearchParameter expressions that apply to it (its base is the type or an ancestor).

    A parameter shared by several types (`Patient.name | Practitioner.name`) is evaluated whole, as defined.
    """
    from sante.fhir.model import r4, search_parameters

    model = r4()
    params = search_parameters() if params is None else params
    out: dict[str, list[SearchExpression]] = {}
    for rtype in types:
        ancestors = set(model.ancestors(rtype))
        out[rtype] = [
            SearchExpression(p["code"], p["id"], p["expression"])
            for p in params
            if p.get("expression") and ancestors.intersection(p.get("base", ()))
        ]
    return out


def synthea_bundle_files(full: bool, bundles: int) -> list[Path]:
    """All bundles with --full, else `bundles` of them spread evenly over the (sorted) set."""
    files = sorted(SYNTHEA_DIR.glob("*.json.gz"))
    if full or bundles >= len(files):
        return files
    step = len(files) / bundles
    return [files[int(i * step)] for i in range(bundles)]


def load_resources(files: list[Path]) -> list[dict[str, Any]]:
    import orjson

    out: list[dict[str, Any]] = []
    for f in files:
        bundle = orjson.loads(gzip.decompress(f.read_bytes()))
        out.extend(e["resource"] for e in bundle.get("entry", ()) if "resource" in e)
    return out


# -- engines --------------------------------------------------------------------------------------------------------


@dataclass
class Engine:
    name: str
    version: str
    compile: Callable[[str], Compiled]
    # Entered around compiling, checking and timing (Sante specialises on first evaluation, so a compiler setting
    # must hold until then).
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext


SANTE_UNFOLDED = "Sante (no folding)"


@contextlib.contextmanager
def _no_constant_folding() -> Any:
    from sante.fhirpath.compiler import Compiler

    saved = Compiler.fold_constants
    Compiler.fold_constants = False
    try:
        yield
    finally:
        Compiler.fold_constants = saved


def sante_unfolded_engine(sante: Engine) -> Engine | None:
    """Sante with constant folding switched off, or None when this version of the engine has no such switch."""
    try:
        from sante.fhirpath.compiler import Compiler
    except Exception:
        return None
    if not hasattr(Compiler, "fold_constants"):
        return None
    return Engine(SANTE_UNFOLDED, sante.version, sante.compile, _no_constant_folding)


def sante_engine() -> Engine | str:
    """Sante's engine, or why it cannot be used."""
    try:
        import sante
        from sante import fhirpath
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    if not hasattr(fhirpath, "compile"):
        return "sante.fhirpath has no compile()"

    return Engine("Sante", getattr(sante, "__version__", "dev"), fhirpath.compile)


def fhirpathpy_engine() -> Engine | str:
    try:
        import fhirpathpy
        from fhirpathpy.models import models
    except Exception as e:
        return f"{type(e).__name__}: {e} (pip install fhirpathpy)"
    from importlib.metadata import version

    model = models["r4"]

    def compile_fhirpathpy(expr: str) -> Compiled:
        return fhirpathpy.compile(expr, model)

    return Engine("fhirpathpy", version("fhirpathpy"), compile_fhirpathpy)


# -- timing ---------------------------------------------------------------------------------------------------------


def _loop(fn: Compiled, arg: Any, n: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn(arg)
    return time.perf_counter_ns() - t0


def time_per_call_us(fn: Compiled, arg: Any, target_ns: float, repeats: int) -> tuple[float, int]:
    """(best microseconds per call over `repeats` runs, calls per run); runs last about target_ns."""
    n = 1
    t = _loop(fn, arg, n)
    k = 0
    while t < target_ns / 5:  # timeit.autorange: 1, 2, 5, 10, 20, 50, ...
        n = (2, 5, 10)[k % 3] * 10 ** (k // 3)
        t = _loop(fn, arg, n)
        k += 1
    n = max(1, round(n * target_ns / max(t, 1)))
    best = min(_loop(fn, arg, n) for _ in range(repeats))
    return best / n / 1000, n


@dataclass
class Timing:
    """One engine's result per case id: microseconds per evaluation, or the error that kept it from timing."""

    engine: str
    version: str
    us: dict[int, float] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    skipped: str | None = None  # why the engine did not run at all


def time_python_engine(engine: Engine, cases: list[Case], target_ms: float, repeats: int) -> Timing:
    timing = Timing(engine.name, engine.version)
    inputs = {f: load_suite_input(f) for f in {c.inputfile for c in cases}}
    compiled: list[tuple[Case, Compiled]] = []
    with quiet(), engine.context():
        _check_cases(engine, cases, inputs, timing, compiled)
    with (
        status_console.status(f"part 1: timing {engine.name} on {len(compiled)} expressions") as st,
        quiet(),
        engine.context(),
    ):
        for i, (case, fn) in enumerate(compiled):
            if i % 50 == 0:
                st.update(f"part 1: timing {engine.name}: {i}/{len(compiled)}")
            try:
                timing.us[case.id], _ = time_per_call_us(fn, inputs[case.inputfile], target_ms * 1e6, repeats)
            except Exception as e:
                timing.errors[case.id] = f"{type(e).__name__}: {e}"[:200]
    return timing


def _check_cases(
    engine: Engine,
    cases: list[Case],
    inputs: dict[str | None, Any],
    timing: Timing,
    compiled: list[tuple[Case, Compiled]],
) -> None:
    for case in cases:  # compile and evaluate everything once before timing anything (as for fhirpath.js)
        resource = inputs[case.inputfile]
        try:
            fn = engine.compile(case.expression)
            result = fn(resource)
        except Exception as e:
            timing.errors[case.id] = f"{type(e).__name__}: {e}"[:200]
            continue
        if not isinstance(result, list):  # a lazy result would make the timing meaningless
            timing.errors[case.id] = f"returned {type(result).__name__}, not a list"
            continue
        compiled.append((case, fn))


def ensure_fhirpath_js() -> str | None:
    """Install fhirpath.js into bench/js when missing; None when ready, else why it is skipped."""
    if shutil.which("node") is None:
        return "node is not installed"
    if (JS_DIR / "node_modules" / "fhirpath" / "package.json").exists():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed (needed once to install fhirpath.js)"
    status_console.print("installing fhirpath.js into bench/js (npm install) ...")
    cmd = [npm, "ci" if (JS_DIR / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
    proc = subprocess.run(cmd, check=False, cwd=JS_DIR, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return f"npm install failed: {proc.stderr.strip()[-300:]}"
    return None


def time_fhirpath_js(cases: list[Case], target_ms: float, repeats: int) -> Timing:
    why = ensure_fhirpath_js()
    if why:
        return Timing("fhirpath.js", "-", skipped=why)
    CACHE.mkdir(parents=True, exist_ok=True)
    items_file = CACHE / "fhirpath_js_items.json"
    items = [
        {
            "id": c.id,
            "expression": c.expression,
            "inputfile": str(SUITE_INPUTS / c.inputfile) if c.inputfile else None,
        }
        for c in cases
    ]
    items_file.write_text(json.dumps(items))
    out_file = CACHE / "fhirpath_js_results.json"
    out_file.unlink(missing_ok=True)
    cmd = ["node", str(JS_DIR / "fhirpath_time.js"), str(items_file), "--target-ms", str(target_ms)]
    cmd += ["--repeats", str(repeats), "--out", str(out_file)]
    with status_console.status(f"part 1: timing fhirpath.js on {len(cases)} expressions"):
        # stdout is discarded: fhirpath.js prints trace() output there
        proc = subprocess.run(
            cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=1800
        )
    if proc.returncode != 0 or not out_file.exists():
        return Timing("fhirpath.js", "-", skipped=f"node failed: {proc.stderr.strip()[-300:]}")
    out = json.loads(out_file.read_text())
    timing = Timing("fhirpath.js", f"{out['version']} (node {out['node']})")
    for r in out["results"]:
        if r["error"] is None:
            timing.us[r["id"]] = r["us"]
        else:
            timing.errors[r["id"]] = r["error"]
    return timing


# -- part 2: search parameters --------------------------------------------------------------------------------------


@dataclass
class Extraction:
    engine: str
    per_resource_us: dict[int, float]  # resource index -> us for all timed parameters of that resource
    errors: dict[tuple[str, str], str]  # (type, parameter code) -> first error
    compile_errors: dict[str, str]


def compile_search_expressions(
    engine: Engine, by_type: dict[str, list[SearchExpression]]
) -> tuple[dict[str, Compiled], dict[str, str]]:
    fns: dict[str, Compiled] = {}
    errors: dict[str, str] = {}
    for exprs in by_type.values():
        for sp in exprs:
            if sp.id in fns or sp.id in errors:
                continue
            try:
                fns[sp.id] = engine.compile(sp.expression)
            except Exception as e:
                errors[sp.id] = f"{type(e).__name__}: {e}"[:200]
    return fns, errors


def find_failures(
    fns: dict[str, Compiled], by_type: dict[str, list[SearchExpression]], resources: list[dict[str, Any]]
) -> dict[tuple[str, str], str]:
    """One untimed pass: (type, parameter id) -> first error, for every pair that raises on some resource."""
    failures: dict[tuple[str, str], str] = {}
    for r in resources:
        rtype = r["resourceType"]
        for sp in by_type[rtype]:
            fn = fns.get(sp.id)
            if fn is None or (rtype, sp.id) in failures:
                continue
            try:
                fn(r)
            except Exception as e:
                failures[(rtype, sp.id)] = f"{type(e).__name__}: {e}"[:200]
    return failures


def time_extraction(
    plan: dict[str, list[Compiled]], resources: list[dict[str, Any]], repeats: int, label: str
) -> list[float]:
    """Per resource: best of `repeats` passes of the time (us) to evaluate all its planned expressions."""
    best = [float("inf")] * len(resources)
    with status_console.status(label), quiet():
        for _ in range(repeats):
            for i, r in enumerate(resources):
                fns = plan[r["resourceType"]]
                t0 = time.perf_counter_ns()
                for fn in fns:
                    fn(r)
                dt = time.perf_counter_ns() - t0
                best[i] = min(best[i], dt)
    return [b / 1000 for b in best]


def plan_for(
    fns: dict[str, Compiled], by_type: dict[str, list[SearchExpression]], excluded: set[tuple[str, str]]
) -> dict[str, list[Compiled]]:
    return {
        t: [fns[sp.id] for sp in exprs if sp.id in fns and (t, sp.id) not in excluded]
        for t, exprs in by_type.items()
    }


def time_compile_many(
    by_type: dict[str, list[SearchExpression]],
    excluded: set[tuple[str, str]],
    observations: list[dict[str, Any]],
    repeats: int,
) -> float | None:
    """Median µs per Observation for all its (not excluded) parameters through `sante.fhirpath.compile_many`."""
    from sante import fhirpath

    compile_many = getattr(fhirpath, "compile_many", None)
    if compile_many is None or not observations:
        return None
    exprs = [sp.expression for sp in by_type["Observation"] if ("Observation", sp.id) not in excluded]
    fn = compile_many(exprs)
    with quiet():
        for r in observations:  # specialise outside the timed loop, as for compile()
            fn(r)
    times = time_extraction({"Observation": [fn]}, observations, repeats, "part 2: Sante compile_many")
    return statistics.median(times)


# -- report ---------------------------------------------------------------------------------------------------------


def fmt_us(us: float | None) -> str:
    if us is None:
        return "-"
    return f"{us:,.1f}" if us >= 10 else f"{us:.2f}"


def fmt_ratio(r: float) -> str:
    if r < 1:
        return f"{r:.2f}x"
    return f"{r:.1f}x" if r < 10 else f"{r:.0f}x"


def median_ratio(peer: Timing, base: Timing) -> tuple[float | None, list[int]]:
    """Median over common cases of peer_us / base_us (> 1: base is faster), and the common case ids."""
    common = sorted(peer.us.keys() & base.us.keys())
    if not common:
        return None, common
    return statistics.median(peer.us[i] / base.us[i] for i in common), common


def summarise_part1(cases: list[Case], timings: list[Timing]) -> None:
    table = Table(title=f"Part 1 — FHIRPath R4 suite: {len(cases)} valid expressions (µs per evaluation)")
    for col in ("engine", "version", "handled", "errors", "mean µs", "median µs"):
        table.add_column(col, justify="left" if col in ("engine", "version") else "right")
    for t in timings:
        if t.skipped:
            table.add_row(t.engine, "-", "-", "-", "skipped", t.skipped)
            continue
        vals = list(t.us.values())
        table.add_row(
            t.engine,
            t.version,
            str(len(vals)),
            str(len(t.errors)),
            fmt_us(statistics.fmean(vals)) if vals else "-",
            fmt_us(statistics.median(vals)) if vals else "-",
        )
    console.print(table)


def print_errors(title: str, errors: dict[Any, str], label: Callable[[Any], str], limit: int = 8) -> None:
    if not errors:
        return
    kinds = Counter(msg.split(":", 1)[0] for msg in errors.values())
    console.print(
        f"[bold]{title}[/]: {len(errors)} ({', '.join(f'{k} {n}' for k, n in kinds.most_common(5))})"
    )
    for key, msg in list(errors.items())[:limit]:
        console.print(f"    {label(key)}  →  {msg[:110]}")
    if len(errors) > limit:
        console.print(f"    ... and {len(errors) - limit} more (see bench/.cache/fhirpath_speed.json)")


def slowest_relative(cases: list[Case], sante: Timing, peers: list[Timing], top: int = 10) -> None:
    """The expressions where Sante does worst against its best peer: the first candidates for optimisation."""
    by_id = {c.id: c for c in cases}
    rows = []
    for cid, us in sante.us.items():
        peer_us = [p.us[cid] for p in peers if cid in p.us]
        if peer_us:
            rows.append((min(peer_us) / us, cid))
    rows.sort()
    table = Table(title=f"{sante.engine}: {top} weakest expressions (lowest best-peer/Sante ratio)")
    table.add_column("ratio", justify="right")
    table.add_column("Sante µs", justify="right")
    for p in peers:
        table.add_column(f"{p.engine} µs", justify="right")
    table.add_column("expression (input)")
    for ratio, cid in rows[:top]:
        c = by_id[cid]
        expr = " ".join(c.expression.split())
        table.add_row(
            fmt_ratio(ratio),
            fmt_us(sante.us[cid]),
            *(fmt_us(p.us.get(cid)) for p in peers),
            f"{expr[:70]} ({c.inputfile or 'no input'})",
        )
    console.print(table)


# -- main -----------------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the verdict line is judged on."""

    ratio_fhirpathpy: float | None = None  # Sante without constant folding: what the goals are judged on
    ratio_fhirpath_js: float | None = None
    ratio_fhirpathpy_folded: float | None = None  # Sante as shipped, with constant folding
    ratio_fhirpath_js_folded: float | None = None
    js_skipped: str | None = None
    no_unfolded: bool = False  # Sante has no constant-folding switch: the ratios are the folded ones
    observation_us: float | None = None  # how Sante extracts: compile_many when it has it
    observation_per_expression_us: float | None = None
    observation_params: tuple[int, int] = (0, 0)  # (handled by Sante, applicable)


def run_suite_part(args: argparse.Namespace, engines: list[Engine], outcome: Outcome) -> dict[str, Any]:
    """Part 1: the suite's expressions on the suite's inputs, every engine, then ratios against Sante."""
    cases = load_suite_cases()
    part1_engines = list(engines)
    sante_engine_ = next((e for e in engines if e.name == "Sante"), None)
    unfolded = sante_unfolded_engine(sante_engine_) if sante_engine_ is not None else None
    if unfolded is not None:
        part1_engines.insert(1, unfolded)
    timings = [time_python_engine(e, cases, args.target_ms, args.repeats) for e in part1_engines]
    js = (
        Timing("fhirpath.js", "-", skipped="--no-js")
        if args.no_js
        else time_fhirpath_js(cases, args.target_ms, args.repeats)
    )
    outcome.js_skipped = js.skipped
    timings.append(js)
    summarise_part1(cases, timings)
    ran = {t.engine: t for t in timings if not t.skipped}
    for t in ran.values():
        print_errors(
            f"{t.engine} errors", t.errors, lambda cid: repr(" ".join(cases[cid].expression.split())[:60])
        )
    peers = [t for t in ran.values() if t.engine not in ("Sante", SANTE_UNFOLDED)]
    for sante_name in ("Sante", SANTE_UNFOLDED):
        sante = ran.get(sante_name)
        if sante is None:
            continue
        for peer in peers:
            r, common = median_ratio(peer, sante)
            if r is None:
                continue
            per = [peer.us[i] / sante.us[i] for i in common]
            console.print(
                f"{peer.engine}/{sante_name} over {len(common)} common expressions: median ratio "
                f"[bold]{fmt_ratio(r)}[/] (geometric mean {fmt_ratio(statistics.geometric_mean(per))}, "
                f"Sante faster on {sum(x > 1 for x in per)}/{len(per)}); common-set median µs: "
                f"Sante {fmt_us(statistics.median(sante.us[i] for i in common))}, "
                f"{peer.engine} {fmt_us(statistics.median(peer.us[i] for i in common))}"
            )
            folded = sante_name == "Sante"
            if peer.engine == "fhirpathpy":
                if folded:
                    outcome.ratio_fhirpathpy_folded = r
                else:
                    outcome.ratio_fhirpathpy = r
            elif folded:
                outcome.ratio_fhirpath_js_folded = r
            else:
                outcome.ratio_fhirpath_js = r
    if SANTE_UNFOLDED not in ran:  # an engine without the switch: judge what there is
        outcome.ratio_fhirpathpy = outcome.ratio_fhirpathpy_folded
        outcome.ratio_fhirpath_js = outcome.ratio_fhirpath_js_folded
        outcome.no_unfolded = True
    judged = ran.get(SANTE_UNFOLDED) or ran.get("Sante")
    if judged is not None:
        slowest_relative(cases, judged, peers, args.top)
    return {
        "cases": [c.__dict__ for c in cases],
        "engines": {
            t.engine: {"version": t.version, "us": t.us, "errors": t.errors, "skipped": t.skipped}
            for t in timings
        },
    }


def run_search_part(args: argparse.Namespace, engines: list[Engine], outcome: Outcome) -> dict[str, Any]:
    """Part 2: all applicable search-parameter expressions over each resource of the Synthea sample."""
    files = synthea_bundle_files(args.full, args.bundles)
    resources = load_resources(files)
    types = Counter(r["resourceType"] for r in resources)
    by_type = search_expressions_by_type(types)
    n_evals = sum(len(by_type[r["resourceType"]]) for r in resources)
    console.print(
        f"\n[bold]Part 2 — search-parameter extraction[/]: {len(resources):,} resources from {len(files)} "
        f"Synthea bundles, {len({sp.id for e in by_type.values() for sp in e})} SearchParameter expressions "
        f"over {len(types)} types, {n_evals:,} evaluations per pass"
    )
    compiled: dict[str, dict[str, Compiled]] = {}
    failures: dict[str, dict[tuple[str, str], str]] = {}
    for e in engines:
        fns, compile_errors = compile_search_expressions(e, by_type)
        with status_console.status(f"part 2: {e.name}: checking every expression once"), quiet():
            fails = find_failures(fns, by_type, resources)
        for rtype, exprs in by_type.items():
            for sp in exprs:
                if sp.id in compile_errors:
                    fails[(rtype, sp.id)] = "compile: " + compile_errors[sp.id]
        compiled[e.name], failures[e.name] = fns, fails
        print_errors(f"{e.name} failing (type, parameter) pairs", fails, lambda k: f"{k[0]}.{k[1]}", limit=6)
    excluded: set[tuple[str, str]] = set().union(*failures.values())
    per_engine = {
        e.name: time_extraction(
            plan_for(compiled[e.name], by_type, excluded),
            resources,
            args.sp_repeats,
            f"part 2: timing {e.name}",
        )
        for e in engines
    }
    obs_idx = [i for i, r in enumerate(resources) if r["resourceType"] == "Observation"]
    table = Table(title="Per-resource extraction of all commonly handled search parameters (µs)")
    for col in ("engine", "mean µs", "median µs", "Observation median µs", "total s / pass"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for name, times in per_engine.items():
        table.add_row(
            name,
            fmt_us(statistics.fmean(times)),
            fmt_us(statistics.median(times)),
            fmt_us(statistics.median(times[i] for i in obs_idx)) if obs_idx else "-",
            f"{sum(times) / 1e6:.2f}",
        )
    console.print(table)
    console.print(
        f"{len(excluded)} (type, parameter) pairs left out of the comparison: an engine fails on them"
    )
    if "Sante" in per_engine and "fhirpathpy" in per_engine:
        per = [f / s for f, s in zip(per_engine["fhirpathpy"], per_engine["Sante"], strict=True) if s > 0]
        console.print(
            f"fhirpathpy/Sante per resource: median ratio [bold]{fmt_ratio(statistics.median(per))}[/]"
        )
    if "Sante" in per_engine and obs_idx:
        # Sante's own figure covers every parameter Sante handles, not only those fhirpathpy handles too.
        own_excluded = set(failures["Sante"])
        own_plan = plan_for(compiled["Sante"], by_type, own_excluded)
        if own_excluded == excluded:
            obs_times = [per_engine["Sante"][i] for i in obs_idx]
        else:
            observations = [resources[i] for i in obs_idx]
            obs_times = time_extraction(own_plan, observations, args.sp_repeats, "part 2: Sante, own set")
        per_expression_us = statistics.median(obs_times)
        outcome.observation_params = (len(own_plan["Observation"]), len(by_type["Observation"]))
        console.print(
            f"Sante, all {len(own_plan['Observation'])} search parameters it handles for an Observation "
            f"(of {len(by_type['Observation'])}), one compiled function per expression: median "
            f"{per_expression_us:.1f} µs over {len(obs_idx):,} Observations"
        )
        outcome.observation_per_expression_us = per_expression_us
        many_us = time_compile_many(by_type, own_excluded, [resources[i] for i in obs_idx], args.sp_repeats)
        if many_us is not None:
            outcome.observation_us = many_us
            console.print(
                f"Sante, the same parameters through compile_many (as its search indexer extracts them: one "
                f"generated function per resource type): median [bold]{many_us:.1f} µs[/] per Observation "
                f"(fhirpathpy above is timed expression by expression, it has no such API)"
            )
        else:
            outcome.observation_us = per_expression_us
    return {
        "bundles": [f.name for f in files],
        "failures": {k: {f"{t}.{c}": m for (t, c), m in v.items()} for k, v in failures.items()},
        "median_us": {k: statistics.median(v) for k, v in per_engine.items()},
        "observation_median_us": outcome.observation_us,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument(
        "--full", action="store_true", help="all 120 Synthea bundles in part 2 (default: a sample)"
    )
    ap.add_argument("--bundles", type=int, default=20, help="Synthea bundles in the sample (default 20)")
    ap.add_argument(
        "--target-ms", type=float, default=2.0, help="length of one timed run, part 1 (default 2)"
    )
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per expression, part 1 (default 5)")
    ap.add_argument(
        "--sp-repeats", type=int, default=2, help="timed passes over the sample, part 2 (default 2)"
    )
    ap.add_argument("--no-js", action="store_true", help="skip fhirpath.js")
    ap.add_argument("--part", choices=("1", "2", "both"), default="both")
    ap.add_argument("--top", type=int, default=10, help="how many weakest expressions to list")
    args = ap.parse_args(argv)

    if not SUITE_JSON.exists() or not SYNTHEA_DIR.is_dir():
        console.print(f"[red]reference data missing under {SHARED}[/]")
        return 1
    started = time.perf_counter()
    sante = sante_engine()
    fpp = fhirpathpy_engine()
    if isinstance(sante, str):
        console.print(f"[red]Sante's engine is not available[/] ({sante}); timing the peers only")
    if isinstance(fpp, str):
        console.print(f"[red]fhirpathpy is not available[/] ({fpp})")
    engines = [e for e in (sante, fpp) if isinstance(e, Engine)]
    outcome = Outcome()
    report: dict[str, Any] = {"args": vars(args)}
    if args.part in ("1", "both"):
        report["part1"] = run_suite_part(args, engines, outcome)
    if args.part in ("2", "both"):
        report["part2"] = run_search_part(args, engines, outcome)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "fhirpath_speed.json").write_text(json.dumps(report, indent=1, default=str))
    console.print(
        f"[dim]{time.perf_counter() - started:.0f} s; details in bench/.cache/fhirpath_speed.json[/]"
    )
    return verdict(sante, outcome, args)


def verdict(sante: Engine | str, outcome: Outcome, args: argparse.Namespace) -> int:
    """Print the one-line verdict; 0 when every goal that could be judged holds."""

    def rel(r: float | None, peer: str, folded: float | None = None) -> str:
        if r is None:
            return f"{peer} not compared"
        text = f"{fmt_ratio(r)} faster than {peer}" if r >= 1 else f"{fmt_ratio(1 / r)} slower than {peer}"
        if outcome.no_unfolded:
            return text + " (with constant folding: no switch to turn it off)"
        if folded is not None:
            text += f" without constant folding ({fmt_ratio(folded)} with)"
        return text

    if isinstance(sante, str):
        console.print(f"fhirpath: Sante's engine unavailable ({sante}): FAIL")
        return 1
    checks: list[bool] = []
    parts: list[str] = []
    if args.part in ("1", "both"):
        parts.append(rel(outcome.ratio_fhirpathpy, "fhirpathpy", outcome.ratio_fhirpathpy_folded))
        checks.append(outcome.ratio_fhirpathpy is not None and outcome.ratio_fhirpathpy >= GOAL_VS_FHIRPATHPY)
        if outcome.js_skipped:
            parts.append(f"fhirpath.js skipped ({outcome.js_skipped})")
        else:
            parts.append(rel(outcome.ratio_fhirpath_js, "fhirpath.js", outcome.ratio_fhirpath_js_folded))
            checks.append(
                outcome.ratio_fhirpath_js is not None and outcome.ratio_fhirpath_js >= GOAL_VS_FHIRPATHJS
            )
    if args.part in ("2", "both"):
        obs = outcome.observation_us
        handled, applicable = outcome.observation_params
        coverage = f" ({handled}/{applicable} parameters)" if handled < applicable else ""
        per_expr = outcome.observation_per_expression_us
        per_expr_note = (
            f" (compile_many; {per_expr:.1f} µs expression by expression)"
            if per_expr is not None and per_expr != obs
            else ""
        )
        parts.append(
            f"Observation search extraction {obs:.1f} µs{per_expr_note}{coverage}"
            if obs is not None
            else "no Observation figure"
        )
        checks.append(obs is not None and obs < GOAL_OBSERVATION_US)
    ok = all(checks)
    goals = f"goals >= {GOAL_VS_FHIRPATHPY:g}x, >= {GOAL_VS_FHIRPATHJS:g}x, < {GOAL_OBSERVATION_US:g} µs"
    console.print(f"fhirpath: {', '.join(parts)} ({goals}): {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
