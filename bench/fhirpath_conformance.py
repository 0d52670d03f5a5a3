"""Run the official FHIRPath R4 test suite (tests-fhir-r4.xml) against sante.fhirpath.

    python bench/fhirpath_conformance.py [PATH_TO_tests-fhir-r4.xml] [-v]

Prints failures (with -v), then `N passed, M failed`; exits 0 when at least 920 tests pass. The pytest test in
tests/fhirpath imports `run_suite` from here, so there is one implementation of the comparison rules:

- `invalid="..."`: the test passes when compiling or evaluating raises FHIRPathError. A few tests carry both an
  `invalid` flag and an expected output (the suite is ambiguous there); they pass on either.
- Known deviation: outside strict mode `as()` filters a collection like `ofType()` (R4's own invariant dom-3
  applies it to many items), so testFHIRPathAsFunction21, which expects an error, fails.
- `mode="strict"` (on the test or its expression): compiled with `strict=True` for the input's resource type.
- `predicate="true"`: the result is reduced to a boolean (non-empty).
- `ordered="false"`: outputs are compared as multisets.
- outputs compare by type: boolean/integer/decimal by value, string/code/id/uri as text, date/dateTime/time by
  their `@` literal, Quantity by value and unit; untyped outputs compare by their literal form.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SUITE = ROOT.parent / "shared" / "conformance" / "fhirpath" / "tests-fhir-r4.xml"
THRESHOLD = 920

sys.path.insert(0, str(ROOT / "src"))

from sante.fhirpath import FHIRPathError, compile
from sante.fhirpath.quantity import Quantity
from sante.fhirpath.temporal import Temporal, Time


@dataclass
class Result:
    name: str
    expression: str
    passed: bool
    expected: str
    got: str


def load_input(folder: Path, name: str, cache: dict[str, Any]) -> Any:
    """The test's input resource as FHIR JSON: XML inputs through sante.fhir.xml when it works, otherwise the
    converted copy in json/."""
    if name in cache:
        return cache[name]
    path = folder / name
    resource: Any = None
    if name.endswith(".xml"):
        try:
            from sante.fhir.xml import xml_to_json

            resource = xml_to_json(path.read_text(encoding="utf-8"))
        except Exception:
            resource = None
        if resource is None:
            path = folder / "json" / (name[:-4] + ".json")
    if resource is None:
        if not path.exists():
            path = folder / "json" / path.name
        resource = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    cache[name] = resource
    return resource


def _literal(v: Any) -> str:
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, Time):
        return "@T" + str(v)
    if isinstance(v, Temporal):
        return "@" + str(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def _matches(v: Any, otype: str | None, text: str) -> bool:
    if otype == "boolean":
        return v is (text == "true")
    if otype == "integer":
        return type(v) is int and v == int(text)
    if otype == "decimal":
        return type(v) in (int, Decimal) and not isinstance(v, bool) and Decimal(v) == Decimal(text)
    if otype in ("string", "code", "id", "uri"):
        return type(v) is str and v == text
    if otype in ("date", "dateTime", "time"):
        return isinstance(v, Temporal) and _literal(v) == text
    if otype == "Quantity":
        return isinstance(v, Quantity) and str(v) == text
    # Untyped output: compare numbers by value, everything else by its literal form.
    if type(v) in (int, Decimal) and not isinstance(v, bool):
        try:
            return Decimal(v) == Decimal(text)
        except InvalidOperation:
            return False
    if isinstance(v, Quantity):
        value, _, unit = text.partition(" ")
        try:
            return v.value == Decimal(value) and (f"'{v.unit}'" == unit or v.unit == unit)
        except InvalidOperation:
            return False
    return _literal(v) == text


def run_test(test: ET.Element, folder: Path, cache: dict[str, Any]) -> Result:
    expr_el = test.find("expression")
    assert expr_el is not None
    expression = expr_el.text or ""
    invalid = expr_el.get("invalid")
    strict = "strict" in (test.get("mode"), expr_el.get("mode"))
    outputs = [(o.get("type"), o.text or "") for o in test.findall("output")]
    expected = ", ".join(f"{t or ''}:{x}" for t, x in outputs) or "(empty)"
    if invalid:
        expected = f"error ({invalid})" + (f" or {expected}" if outputs else "")
    inputfile = test.get("inputfile")
    resource = load_input(folder, inputfile, cache) if inputfile else {}
    name = test.get("name", "?")
    try:
        root_type = resource.get("resourceType") if isinstance(resource, dict) else None
        fn = compile(expression, strict=strict, base_type=root_type if strict else None)
        got = fn(resource)
    except FHIRPathError as e:
        return Result(name, expression, bool(invalid), expected, f"error: {e}")
    except Exception as e:
        return Result(name, expression, False, expected, f"crash: {type(e).__name__}: {e}")
    if test.get("predicate") == "true":
        got = [bool(got)]
    shown = "[" + ", ".join(_literal(v) for v in got) + "]"
    if invalid and not outputs:
        return Result(name, expression, False, expected, shown)
    ok = len(got) == len(outputs)
    if ok and test.get("ordered") == "false":
        rest = list(outputs)
        for v in got:
            hit = next((i for i, (t, x) in enumerate(rest) if _matches(v, t, x)), None)
            if hit is None:
                ok = False
                break
            del rest[hit]
    elif ok:
        ok = all(_matches(v, t, x) for v, (t, x) in zip(got, outputs))
    return Result(name, expression, ok, expected, shown)


def run_suite(path: Path | str = DEFAULT_SUITE) -> list[Result]:
    """Every test of the suite file, in order."""
    path = Path(path)
    tree = ET.parse(path)
    cache: dict[str, Any] = {}
    return [run_test(t, path.parent, cache) for t in tree.getroot().iter("test")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("suite", nargs="?", default=str(DEFAULT_SUITE))
    ap.add_argument("-v", "--verbose", action="store_true", help="print each failure")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    results = run_suite(args.suite)
    elapsed = time.perf_counter() - start
    failed = [r for r in results if not r.passed]
    if args.verbose:
        for r in failed:
            print(f"FAIL {r.name}: {r.expression!r}\n     expected {r.expected}\n     got      {r.got}")
        print(f"({elapsed:.2f} s)")
    passed = len(results) - len(failed)
    print(f"{passed} passed, {len(failed)} failed")
    return 0 if passed >= THRESHOLD else 1


if __name__ == "__main__":
    sys.exit(main())
