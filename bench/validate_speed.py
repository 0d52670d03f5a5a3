"""Validation speed and strictness: Sante's R4 validator against fhir.resources (pydantic models) on Synthea.

Validates every resource of the Synthea bundles one by one (parsed JSON in memory, parsing not timed) with both
validators in the same run, prints both rates, the ratio and whether each accepts the whole corpus, then a
strictness check: invalid mutations of real resources and how many each validator rejects.

    .venv/bin/python bench/validate_speed.py [--bundles N] [--data ../shared/data/synthea-r4]

Exit status 0 when Sante is at least 10x faster with no less strictness, 1 otherwise, 2 when data is missing.
"""

from __future__ import annotations

import argparse
import copy
import gc
import gzip
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sante.fhir.validate import STATS, validate

GOAL = 10.0


def load_resources(data: Path, bundles: int | None) -> list[dict[str, Any]]:
    files = sorted(data.glob("*.json.gz"))[:bundles]
    out = []
    for f in files:
        bundle = orjson.loads(gzip.decompress(f.read_bytes()))
        out.extend(e["resource"] for e in bundle.get("entry", []))
    return out


def warmup_resources(examples: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted(examples.glob("core/*.json")) + sorted(examples.glob("supporting/*.json")):
        r = orjson.loads(f.read_bytes())
        if r["resourceType"] == "Bundle":
            out.extend(e["resource"] for e in r.get("entry", []) if "resource" in e)
        else:
            out.append(r)
    return out


def peer_validator():  # type: ignore[no-untyped-def]
    """fhir.resources' R4B pydantic models: a function resource -> None that raises on invalid input."""
    from fhir.resources.R4B import get_fhir_model_class

    classes: dict[str, Any] = {}

    def check(resource: dict[str, Any]) -> None:
        rt = resource.get("resourceType")
        cls = classes.get(rt)  # type: ignore[arg-type]
        if cls is None:
            cls = classes[rt] = get_fhir_model_class(rt)  # type: ignore[arg-type]
        cls.model_validate(resource) if hasattr(cls, "model_validate") else cls.parse_obj(resource)

    return check


def sante_ok(resource: dict[str, Any]) -> bool:
    return not any(i.severity in ("error", "fatal") for i in validate(resource))


def peer_ok(check, resource: dict[str, Any]) -> bool:  # type: ignore[no-untyped-def]
    try:
        check(resource)
        return True
    except Exception:
        return False


def timed_pair(a, b, resources: list[dict[str, Any]], block: int = 2000):  # type: ignore[no-untyped-def]
    """Both validators over the corpus in alternating blocks, so that load from other processes on the machine
    weighs on both alike: ((rate, failures, first failures) of a, the same of b)."""
    results = []
    for _ in (a, b):
        results.append([0.0, 0, []])
    for start in range(0, len(resources), block):
        chunk = resources[start : start + block]
        for fn, acc in zip((a, b), results):
            t0 = time.perf_counter()
            verdicts = [fn(r) for r in chunk]
            acc[0] += time.perf_counter() - t0
            for r, ok in zip(chunk, verdicts):
                if not ok:
                    acc[1] += 1
                    if len(acc[2]) < 5:
                        acc[2].append(f"{r.get('resourceType')}/{r.get('id')}")
    return [(len(resources) / acc[0], acc[1], acc[2]) for acc in results]


def first(resources: list[dict[str, Any]], rt: str, has: str | None = None) -> dict[str, Any]:
    return next(r for r in resources if r["resourceType"] == rt and (has is None or has in r))


def mutations(resources: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Invalid copies of real resources, one defect each."""
    patient = first(resources, "Patient")
    encounter = first(resources, "Encounter")
    observation = first(resources, "Observation", "valueQuantity")
    condition = first(resources, "Condition")

    def mutate(base: dict[str, Any], change) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        r = copy.deepcopy(base)
        change(r)
        return r

    return [
        ("Patient.gender = 'xyz'", mutate(patient, lambda r: r.__setitem__("gender", "xyz"))),
        ("Encounter.status = 'bogus'", mutate(encounter, lambda r: r.__setitem__("status", "bogus"))),
        ("Observation.status = 'bogus'", mutate(observation, lambda r: r.__setitem__("status", "bogus"))),
        ("unknown element Patient.favourite", mutate(patient, lambda r: r.__setitem__("favourite", "tea"))),
        (
            "Patient.birthDate = '2023-02-30'",
            mutate(patient, lambda r: r.__setitem__("birthDate", "2023-02-30")),
        ),
        (
            "Patient.birthDate = '12/03/1980'",
            mutate(patient, lambda r: r.__setitem__("birthDate", "12/03/1980")),
        ),
        ("wrong type: Patient.name = 'Smith'", mutate(patient, lambda r: r.__setitem__("name", "Smith"))),
        (
            "wrong type: valueQuantity.value = '5'",
            mutate(observation, lambda r: r["valueQuantity"].__setitem__("value", "5")),
        ),
        ("missing required Observation.code", mutate(observation, lambda r: r.pop("code"))),
        (
            "Condition.subject.reference = 'not a ref'",
            mutate(condition, lambda r: r.__setitem__("subject", {"reference": "not a ref"})),
        ),
        (
            "empty string Patient.name[0].family",
            mutate(patient, lambda r: r["name"][0].__setitem__("family", "")),
        ),
        ("empty array Patient.identifier", mutate(patient, lambda r: r.__setitem__("identifier", []))),
        ("unknown resourceType", mutate(patient, lambda r: r.__setitem__("resourceType", "Patiente"))),
        (
            "instant without timezone: Observation.issued",
            mutate(observation, lambda r: r.__setitem__("issued", "2020-01-01T10:00:00")),
        ),
        (
            "two value[x]: valueQuantity + valueString",
            mutate(observation, lambda r: r.__setitem__("valueString", "x")),
        ),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "synthea-r4")
    ap.add_argument("--bundles", type=int, default=None, help="only the first N bundles")
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"validate: no data at {args.data}", file=sys.stderr)
        return 2
    resources = load_resources(args.data, args.bundles)
    # The corpus is millions of long-lived objects: keep the cyclic GC from re-scanning them during the timing
    # (it would charge whichever validator happens to trigger a full collection). Same for both validators.
    gc.collect()
    gc.freeze()
    print(f"{len(resources):,} resources from {args.data}")
    peer = peer_validator()
    # Warm-up outside the timing, on the official examples (not the timed corpus): Sante compiles its specs and
    # the FHIRPath invariants it meets on first use, fhir.resources builds its model classes.
    for r in warmup_resources(args.data.parent / "fhir-examples-r4") or resources[:1]:
        sante_ok(r)
        peer_ok(peer, r)

    (s_rate, s_fail, s_first), (p_rate, p_fail, p_first) = timed_pair(
        sante_ok, lambda r: peer_ok(peer, r), resources
    )
    ratio = s_rate / p_rate
    print(f"sante:           {s_rate:10,.0f} res/s, rejects {s_fail} {s_first if s_fail else ''}")
    print(f"fhir.resources:  {p_rate:10,.0f} res/s, rejects {p_fail} {p_first if p_fail else ''}")
    print(f"ratio: {ratio:.1f}x; whole corpus accepted: sante {s_fail == 0}, fhir.resources {p_fail == 0}")

    print(
        f"invariants: {STATS.evaluated:,} FHIRPath evaluations; not compiled: {sorted(STATS.compile_errors) or 'none'};"
        f" evaluation errors: {STATS.runtime_errors or 'none'}"
    )
    print("strictness (invalid mutations rejected):")
    s_rej = p_rej = 0
    cases = mutations(resources)
    for label, r in cases:
        s, p = not sante_ok(r), not peer_ok(peer, r)
        s_rej += s
        p_rej += p
        print(
            f"  {label:48s} sante {'rejects' if s else 'ACCEPTS'}   fhir.resources {'rejects' if p else 'ACCEPTS'}"
        )
    print(f"  rejected: sante {s_rej}/{len(cases)}, fhir.resources {p_rej}/{len(cases)}")

    ok = ratio >= GOAL and s_rej >= p_rej and s_fail == 0
    print(
        f"validate: {s_rate:,.0f} res/s = {ratio:.1f}x fhir.resources (goal >= {GOAL:.0f}x, "
        f"strictness >= peer): {'ok' if ok else 'SHORT'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
