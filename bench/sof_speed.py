"""SQL on FHIR speed: Sante's view engines against fhir4ds (DuckDB) and Pathling 5.4 (Spark), same data, same run.

    python bench/sof_speed.py [--size small|1m] [--engines duckdb,spark,memory] [--peers fhir4ds,pathling]

Two views are flattened: Patient (id, gender, birth date, first family name) and Observation (id, subject key
via getReferenceKey(), first coding code, valueQuantity value and unit, effectiveDateTime). Data: the 120
Synthea patients of ../shared/data/synthea-r4 (transaction Bundles), written once as NDJSON per type under
bench/.cache/sof/small/ (urn:uuid references resolved to Type/id, as a server does on ingest); `--size 1m`
replicates Patient and Observation to 1,000,000 resources (ids suffixed -N, cached under bench/.cache/sof/1m/).

Sante's engines run in this process through `run_view` with the NDJSON paths (reading included in the time;
Spark's session is started before the clock). The peers run as subprocesses of their own virtual environments
(bench/.cache/peers/, created on first use with pip: `fhir4ds`, whose `INSTALL json` is patched to `LOAD json`
so that it works offline, and `pathling==5.4.*`, the last release shipping its jar, with pyspark 3.3, the Spark it was built for: on pyspark
3.5 its encoder fails); see
bench/_sof_peers.py for how each is driven. Each engine's rows are checked against the peer's (counts and a
sample of rows). The default size is small: a 1m run took about 17 minutes on the 2-core development machine.

Ends with `sof_speed: duckdb Nx fhir4ds (goal >= 3x), spark Nx Pathling 5.4 (goal > 1x): ok|short`; exit 0 when
both goals hold.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SYNTHEA = ROOT.parent / "shared" / "data" / "synthea-r4"
CACHE = ROOT / "bench" / ".cache" / "sof"
PEERS = ROOT / "bench" / ".cache" / "peers"
PEER_SCRIPT = ROOT / "bench" / "_sof_peers.py"
TYPES = ("Patient", "Observation")
ONE_MILLION = 1_000_000
SAMPLE = 200  # rows per view compared value by value with the peer's

sys.path.insert(0, str(ROOT / "src"))

from sante.analytics import run_view

PATIENT_VIEW: dict[str, Any] = {"resource": "Patient", "select": [{"column": [
    {"name": "id", "path": "getResourceKey()", "type": "id"},
    {"name": "gender", "path": "gender", "type": "code"},
    {"name": "birth_date", "path": "birthDate", "type": "date"},
    {"name": "family", "path": "name.first().family", "type": "string"},
]}]}
OBSERVATION_VIEW: dict[str, Any] = {"resource": "Observation", "select": [{"column": [
    {"name": "id", "path": "getResourceKey()", "type": "id"},
    {"name": "subject", "path": "subject.getReferenceKey()", "type": "string"},
    {"name": "code", "path": "code.coding[0].code", "type": "code"},  # fhir4ds fails on code.coding.first().code
    {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
    {"name": "unit", "path": "value.ofType(Quantity).unit", "type": "string"},
    {"name": "effective", "path": "effective.ofType(dateTime)", "type": "dateTime"},
]}]}
VIEWS = {"Patient": PATIENT_VIEW, "Observation": OBSERVATION_VIEW}
KEY_COLUMNS = frozenset({"id", "subject"})
# The same columns for Pathling 5.4: Spark SQL over its encoded resources (getReferenceKey = the id after '/');
# [name, expression, field] reads a field of a struct (see bench/_sof_peers.py).
PATHLING_COLUMNS = {
    "Patient": [["id", "id"], ["gender", "gender"], ["birth_date", "birthDate"], ["family", "name[0].family"]],
    "Observation": [
        ["id", "id"], ["subject", "regexp_extract(subject.reference, '[^/]+$', 0)"], ["code", "code.coding[0].code"],
        ["value", "valueQuantity", "value"], ["unit", "valueQuantity", "unit"],
        ["effective", "effectiveDateTime"],
    ],
}
# Pathling 5.4's jar was built for Spark 3.3: on pyspark 3.5 its encoder fails (NoSuchMethodError in Cast).
PEER_PACKAGES = {"fhir4ds": ["fhir4ds"], "pathling": ["pathling==5.4.*", "pyspark==3.3.*"]}


# -- data --------------------------------------------------------------------------------------------------------
def small_files() -> dict[str, Path]:
    """NDJSON per type of the 120 Synthea patients (written once)."""
    folder = CACHE / "small"
    files = {t: folder / f"{t}.ndjson" for t in TYPES}
    if all(f.exists() for f in files.values()):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    seen: set[tuple[str, str]] = set()
    with ExitStack() as stack:
        outputs: dict[str, Any] = {}
        for bundle_path in sorted(SYNTHEA.glob("*.json.gz")):
            for resource in bundle_resources(bundle_path):
                key = (resource["resourceType"], resource["id"])
                if key in seen:  # Organizations and Practitioners repeat across bundles
                    continue
                seen.add(key)
                if key[0] not in outputs:
                    outputs[key[0]] = stack.enter_context(open(folder / f"{key[0]}.ndjson.tmp", "w", encoding="utf-8"))
                outputs[key[0]].write(json.dumps(resource, separators=(",", ":")) + "\n")
    for tmp in folder.glob("*.ndjson.tmp"):
        tmp.replace(tmp.with_suffix(""))
    return files


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def bundle_resources(path: Path) -> Iterator[dict[str, Any]]:
    """A transaction Bundle's resources with its urn:uuid references rewritten to Type/id."""
    bundle = json.loads(gzip.decompress(path.read_bytes()))
    entries = [e for e in bundle.get("entry", []) if "resource" in e]
    targets = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries if "fullUrl" in e}
    for entry in entries:
        yield _rewrite_references(entry["resource"], targets)


def _rewrite_references(node: Any, targets: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite_references(v, targets) for k, v in node.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref in targets:
            out["reference"] = targets[ref]
        return out
    if isinstance(node, list):
        return [_rewrite_references(v, targets) for v in node]
    return node


def million_files() -> dict[str, Path]:
    """Patient and Observation replicated (ids suffixed -N, subjects to match) up to 1,000,000 resources."""
    folder = CACHE / "1m"
    files = {t: folder / f"{t}.ndjson" for t in TYPES}
    if all(f.exists() for f in files.values()):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    small = {t: read_ndjson(p) for t, p in small_files().items()}
    per_copy = sum(len(v) for v in small.values())
    copies = math.ceil(ONE_MILLION / per_copy)
    budget = ONE_MILLION
    with ExitStack() as stack:
        outs = {t: stack.enter_context(open(folder / f"{t}.ndjson.tmp", "w", encoding="utf-8")) for t in TYPES}
        for n in range(copies):
            for rtype in TYPES:
                for resource in small[rtype][:budget]:
                    outs[rtype].write(json.dumps(_copy(resource, n), separators=(",", ":")) + "\n")
                budget -= min(budget, len(small[rtype]))
    for rtype in TYPES:
        (folder / f"{rtype}.ndjson.tmp").replace(files[rtype])
    return files


def _copy(resource: dict[str, Any], n: int) -> dict[str, Any]:
    copy = dict(resource, id=f"{resource['id']}-{n}")
    subject = resource.get("subject")
    if isinstance(subject, dict) and isinstance(subject.get("reference"), str):
        copy["subject"] = dict(subject, reference=f"{subject['reference']}-{n}")
    return copy


# -- Sante -------------------------------------------------------------------------------------------------------
def measure_sante(engine: str, files: dict[str, Path]) -> dict[str, Any]:
    """Seconds per view (reading the NDJSON included) and the rows, for one of Sante's engines."""
    if engine == "spark":
        from pyspark.sql import SparkSession

        spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
                 .config("spark.ui.showConsoleProgress", "false").config("spark.driver.memory", "8g")
                 .getOrCreate())  # started before the clock, as for Pathling
        spark.sparkContext.setLogLevel("ERROR")
    views: dict[str, Any] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    for rtype, view in VIEWS.items():
        started = time.perf_counter()
        rows[rtype] = run_view(view, [str(files[rtype])], engine=engine)
        views[rtype] = {"seconds": time.perf_counter() - started, "rows": len(rows[rtype])}
    return {"views": views, "rows": rows}


# -- peers -------------------------------------------------------------------------------------------------------
def peer_python(peer: str) -> Path:
    """The peer's virtual environment's python, created and installed (and patched) on first use."""
    venv = PEERS / f"{peer}-venv"
    python = venv / "bin" / "python"
    marker = venv / ".sante-ready"
    if marker.exists():
        return python
    PEERS.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES[peer]], check=True)
    if peer == "fhir4ds":
        _patch_fhir4ds(python)
    marker.write_text("ok\n")
    return python


def _patch_fhir4ds(python: Path) -> None:
    """fhir4ds runs `INSTALL json; LOAD json;`, which downloads the extension; offline, LOAD the built-in one."""
    found = subprocess.run([str(python), "-c", "import fhir4ds.dialects.duckdb as m; print(m.__file__)"],
                           check=True, capture_output=True, text=True)
    source = Path(found.stdout.strip())
    text = source.read_text(encoding="utf-8")
    if "INSTALL json; LOAD json;" in text:
        source.write_text(text.replace("INSTALL json; LOAD json;", "LOAD json;"), encoding="utf-8")


def measure_peer(peer: str, files: dict[str, Path], timeout: float) -> dict[str, Any]:
    """Run a peer in its own environment; its timings, rows, or the reason it could not run."""
    try:
        python = peer_python(peer)
    except (subprocess.CalledProcessError, OSError) as e:
        return {"error": f"set-up failed: {e}"}
    with tempfile.TemporaryDirectory(prefix=f"sof-{peer}-") as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"files": {t: str(p) for t, p in files.items()}, "views": VIEWS,
                                    "pathling": PATHLING_COLUMNS}))
        try:
            done = subprocess.run([str(python), str(PEER_SCRIPT), peer, str(spec), tmp], capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"did not finish in {timeout:.0f} s"}
        if done.returncode != 0:
            return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["rows"] = {t: read_ndjson(Path(tmp) / f"{t}.jsonl") for t in VIEWS}
    return result


# -- comparison and report ---------------------------------------------------------------------------------------
def same_rows(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> str | None:
    """None when the counts agree and a sample of rows (by id) agrees value by value; else what differs, per
    column. Keys compare by their last segment (`Patient/x` and `x` are the same key)."""
    if len(ours) != len(theirs):
        return f"{len(ours)} rows vs {len(theirs)}"
    by_id = {_key(r.get("id")): r for r in theirs}
    sample = sorted(ours, key=lambda r: str(r.get("id")))[:: max(1, len(ours) // SAMPLE)]
    differences: dict[str, list[str]] = {}
    for row in sample:
        other = by_id.get(_key(row.get("id")))
        if other is None:
            differences.setdefault("id", []).append(f"{row.get('id')} missing")
            continue
        for name, value in row.items():
            if _normal(name, value) != _normal(name, other.get(name)):
                differences.setdefault(name, []).append(f"{value!r} vs {other.get(name)!r}")
    if not differences:
        return None
    return "; ".join(f"{name} differs in {len(found)}/{len(sample)} sampled rows (e.g. {found[0][:120]})"
                     for name, found in differences.items())


def _key(value: Any) -> str:
    return str(value).rsplit("/", 1)[-1]


def _normal(name: str, value: Any) -> Any:
    if name in KEY_COLUMNS and value is not None:
        return _key(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return round(float(value), 6)
    text = str(value)
    try:
        return round(float(text), 6)
    except ValueError:
        return text


def total(result: dict[str, Any]) -> float:
    return result.get("load_s", 0.0) + sum(v["seconds"] for v in result["views"].values())


def describe(name: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return f"  {name:<18} unavailable: {result['error']}"
    parts = [f"{t} {v['seconds']:.2f} s ({v['rows']:,} rows)" for t, v in result["views"].items()]
    load = f"load {result['load_s']:.2f} s + " if result.get("load_s") else ""
    startup = f" [start-up {result['startup_s']:.1f} s, not counted]" if "startup_s" in result else ""
    return f"  {name:<18} {total(result):7.2f} s = {load}{' + '.join(parts)}{startup}"


def ratio_line(ours: dict[str, Any] | None, peer: dict[str, Any] | None, label: str, engine: str,
               goal: float, strict: bool) -> tuple[str, bool]:
    """`duckdb 3.4x fhir4ds (goal >= 3x)` and whether the goal holds (rows must agree too)."""
    want = f"(goal {'>' if strict else '>='} {goal:g}x)"
    if ours is None or "error" in ours:
        return f"{engine} unavailable {want}", False
    if peer is None or "error" in peer:
        return f"{engine} vs {label} unavailable {want}", False
    speedup = total(peer) / total(ours)
    holds = speedup > goal if strict else speedup >= goal
    return f"{engine} {speedup:.1f}x {label} {want}", holds and not ours.get("mismatch")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["small", "1m"], default="small")
    parser.add_argument("--engines", default="duckdb,spark,memory", help="Sante engines (comma-separated)")
    parser.add_argument("--peers", default="fhir4ds,pathling", help="peers to run (comma-separated, or none)")
    parser.add_argument("--peer-timeout", type=float, default=900.0, help="seconds a peer may run")
    args = parser.parse_args(argv)
    files = million_files() if args.size == "1m" else small_files()
    counts = {t: count_lines(p) for t, p in files.items()}
    print(f"sof_speed: {args.size}: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
    results: dict[str, dict[str, Any]] = {}
    for engine in [e for e in args.engines.split(",") if e]:
        try:
            results[engine] = measure_sante(engine, files)
        except Exception as e:  # an engine that fails is reported, the others still run
            results[engine] = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}
        print(describe(f"sante {engine}", results[engine]), flush=True)
    peers: dict[str, dict[str, Any]] = {}
    for peer in [p for p in args.peers.split(",") if p and p != "none"]:
        peers[peer] = measure_peer(peer, files, args.peer_timeout)
        print(describe(peer if peer == "fhir4ds" else "pathling 5.4", peers[peer]), flush=True)
    check_rows(results, peers)
    duck, duck_ok = ratio_line(results.get("duckdb"), peers.get("fhir4ds"), "fhir4ds", "duckdb", 3, False)
    spark, spark_ok = ratio_line(results.get("spark"), peers.get("pathling"), "Pathling 5.4", "spark", 1, True)
    print(f"sof_speed: {duck}, {spark}: {'ok' if duck_ok and spark_ok else 'short'}")
    return 0 if duck_ok and spark_ok else 1


def check_rows(results: dict[str, dict[str, Any]], peers: dict[str, dict[str, Any]]) -> None:
    """Compare every engine's rows with each peer's and with the memory engine's (the reference: a difference
    from it marks the engine wrong); differences from a peer are printed as found."""
    references = {name: r for name, r in {**peers, "sante memory": results.get("memory", {})}.items()
                  if r and "error" not in r}
    for engine, result in results.items():
        if "error" in result:
            continue
        for ref_name, ref in references.items():
            if ref is result:
                continue
            for rtype in VIEWS:
                problem = same_rows(result["rows"][rtype], ref["rows"][rtype])
                verdict = "same rows" if problem is None else f"DIFFERENT: {problem}"
                print(f"  check {engine} vs {ref_name} {rtype}: {verdict}")
                if problem is not None and ref_name == "sante memory":  # the reference engine's rows are law
                    result["mismatch"] = True


if __name__ == "__main__":
    sys.exit(main())
