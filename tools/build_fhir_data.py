"""Build Sante's packaged FHIR R4 definitions from the official package in ../shared/fhir-r4.

Writes src/sante/fhir/data/r4-model.json.gz: every specialization StructureDefinition (resources, complex and
primitive types) reduced to what Sante needs at run time (element types, cardinality, bindings, invariants,
primitive regexes), plus expansions of the value sets whose content is defined in the package, the search
parameters and the Patient compartment; and src/sante/fhir/data/code-hierarchies.json.gz: the parents of every
concept of the package's complete code systems, for token :below / :above. The output is byte-for-byte
reproducible (sorted keys, no timestamp in the gzip header). Run once when the definitions change:

    python tools/build_fhir_data.py [../shared/fhir-r4]
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "sante" / "fhir" / "data"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "System.String",
    "http://hl7.org/fhirpath/System.Boolean": "System.Boolean",
    "http://hl7.org/fhirpath/System.Integer": "System.Integer",
    "http://hl7.org/fhirpath/System.Decimal": "System.Decimal",
    "http://hl7.org/fhirpath/System.Date": "System.Date",
    "http://hl7.org/fhirpath/System.DateTime": "System.DateTime",
    "http://hl7.org/fhirpath/System.Time": "System.Time",
}
# Constraints present on (nearly) every element; the validator applies them generically.
GENERIC_CONSTRAINTS = {"ele-1", "ext-1"}


def load(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def ext_value(exts: list | None, url: str) -> str | None:
    for e in exts or ():
        if e.get("url") == url:
            for k, v in e.items():
                if k.startswith("value"):
                    return v
    return None


def compact_element(el: dict) -> dict:
    out: dict = {"min": el.get("min", 0)}
    mx = el.get("max", "*")
    out["max"] = -1 if mx == "*" else int(mx)
    types = []
    targets: list[str] = []
    regex = None
    for t in el.get("type", []):
        code = t["code"]
        if code in SYSTEM_TYPES:
            code = SYSTEM_TYPES[code]
            regex = ext_value(t.get("extension"), REGEX_EXT) or regex
        types.append(code)
        for p in t.get("targetProfile", []):
            targets.append(p.rsplit("/", 1)[-1])
    if types:
        out["types"] = types
    if targets:
        out["targets"] = sorted(set(targets))
    if regex:
        out["regex"] = regex
    if "contentReference" in el:
        out["ref"] = el["contentReference"].lstrip("#")
    b = el.get("binding")
    if b and b.get("valueSet"):
        out["binding"] = {"strength": b["strength"], "valueSet": b["valueSet"]}
    cons = [
        {k: c[k] for k in ("key", "severity", "expression", "human") if k in c}
        for c in el.get("constraint", [])
        if c["key"] not in GENERIC_CONSTRAINTS and "expression" in c
    ]
    if cons:
        out["constraints"] = cons
    if el.get("isSummary"):
        out["summary"] = True
    if el.get("isModifier"):
        out["modifier"] = True
    return out


def compact_structure(sd: dict) -> dict:
    elements = {}
    for el in sd["snapshot"]["element"]:
        elements[el["path"]] = compact_element(el)
    base = sd.get("baseDefinition", "").rsplit("/", 1)[-1] or None
    return {
        "kind": sd["kind"],
        "abstract": sd.get("abstract", False),
        "base": base,
        "elements": elements,
    }


def expand_valuesets(bundles: list[dict]) -> dict[str, dict[str, list[str]]]:
    """Expand every value set whose codes are enumerable from the package's own code systems."""
    codesystems: dict[str, dict] = {}
    valuesets: dict[str, dict] = {}
    for b in bundles:
        for e in b["entry"]:
            r = e["resource"]
            if r["resourceType"] == "CodeSystem" and r.get("content") == "complete":
                codesystems[r["url"]] = r
            elif r["resourceType"] == "ValueSet":
                valuesets[r["url"]] = r

    def cs_concepts(cs: dict) -> dict[str, list[str]]:
        """code -> list of its descendant codes (itself included), from the concept hierarchy."""
        tree: dict[str, list[str]] = {}

        def walk(concepts: list, ancestors: list[str]) -> None:
            for c in concepts:
                code = c["code"]
                tree.setdefault(code, [code])
                for a in ancestors:
                    tree[a].append(code)
                walk(c.get("concept", []), [*ancestors, code])

        walk(cs.get("concept", []), [])
        return tree

    cs_cache: dict[str, dict[str, list[str]]] = {}
    done: dict[str, dict[str, list[str]] | None] = {}

    def expand(url: str, stack: tuple = ()) -> dict[str, list[str]] | None:
        url = url.split("|")[0]
        if url in done:
            return done[url]
        if url in stack or url not in valuesets:
            return None
        vs = valuesets[url]
        result: dict[str, set[str]] = {}
        ok = True
        for inc in vs.get("compose", {}).get("include", []):
            part: dict[str, set[str]] | None = {}
            system = inc.get("system")
            if system:
                if "concept" in inc:
                    part = {system: {c["code"] for c in inc["concept"]}}
                elif system in codesystems:
                    tree = cs_cache.setdefault(system, cs_concepts(codesystems[system]))
                    codes = set(tree)
                    for flt in inc.get("filter", []):
                        if flt.get("op") in ("is-a", "descendent-of") and flt.get("property") == "concept":
                            sub = set(tree.get(flt["value"], []))
                            if flt["op"] == "descendent-of":
                                sub.discard(flt["value"])
                            codes &= sub
                        else:
                            part = None
                            break
                    if part is not None:
                        part = {system: codes}
                else:
                    part = None
            for other in inc.get("valueSet", []):
                sub = expand(other, (*stack, url))
                if sub is None:
                    part = None
                    break
                for s, codes in sub.items():
                    if part is not None:
                        part.setdefault(s, set()).update(codes)
            if part is None:
                ok = False
                break
            for s, codes in part.items():
                result.setdefault(s, set()).update(codes)
        if ok:
            for exc in vs.get("compose", {}).get("exclude", []):
                if exc.get("system") in result and "concept" in exc:
                    result[exc["system"]] -= {c["code"] for c in exc["concept"]}
        value = {s: sorted(c) for s, c in result.items()} if ok and result else None
        done[url] = value
        return value

    out = {}
    for url in valuesets:
        v = expand(url)
        if v is not None:
            out[url] = v
    return out


# Concept properties that state a hierarchy (http://hl7.org/fhir/concept-properties): on the child, its parent;
# on the parent, a child (v3 code systems put a concept under its other parents this way).
PARENT_PROPERTIES = {"parent", "subsumedBy"}
CHILD_PROPERTIES = {"child"}


def code_hierarchies(bundles: list[dict]) -> dict[str, dict[str, list[str]]]:
    """system -> code -> its parent codes, for every complete code system whose hierarchy means is-a (or says
    nothing, as most FHIR code systems with nested concepts do); flat systems too, so their codes are known."""
    out: dict[str, dict[str, set[str]]] = {}
    for b in bundles:
        for e in b["entry"]:
            cs = e["resource"]
            if cs["resourceType"] != "CodeSystem" or cs.get("content") != "complete":
                continue
            if cs.get("hierarchyMeaning") not in (None, "is-a"):
                continue
            uri_of = {p["code"]: p.get("uri", "") for p in cs.get("property", [])}

            def kind(code: str, uri_of: dict = uri_of) -> str:
                return uri_of.get(code, "").rsplit("#", 1)[-1] or code

            parents = out.setdefault(cs["url"], {})

            def walk(concepts: list, parent: str | None, parents: dict = parents, kind=kind) -> None:
                for c in concepts:
                    mine = parents.setdefault(c["code"], set())
                    if parent is not None:
                        mine.add(parent)
                    for p in c.get("property", []):
                        value = p.get("valueCode") or p.get("valueString")
                        if not value or value == c["code"]:
                            continue
                        if kind(p["code"]) in PARENT_PROPERTIES:
                            mine.add(value)
                        elif kind(p["code"]) in CHILD_PROPERTIES:
                            parents.setdefault(value, set()).add(c["code"])
                    walk(c.get("concept", []), c["code"])

            walk(cs.get("concept", []), None)
    return {system: {code: sorted(ps) for code, ps in codes.items()} for system, codes in out.items() if codes}


def write_gz(path: Path, data: object, sort_keys: bool = True) -> None:
    """Compact JSON, gzip'd without a timestamp or file name in the header: the same input, the same bytes."""
    raw = json.dumps(data, separators=(",", ":"), sort_keys=sort_keys).encode("utf-8")
    with path.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as z:
        z.write(raw)


def main(src: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    types = {}
    for name in ("profiles-types.json.gz", "profiles-resources.json.gz"):
        for e in load(src / name)["entry"]:
            r = e["resource"]
            if r["resourceType"] != "StructureDefinition" or r.get("kind") == "logical":
                continue
            if r.get("derivation") == "constraint":
                continue
            types[r["id"]] = compact_structure(r)
    vs_bundles = [load(src / "valuesets.json.gz"), load(src / "v3-codesystems.json.gz")]
    model = {
        "fhirVersion": "4.0.1",
        "types": types,
        "valuesets": expand_valuesets(vs_bundles),
    }
    write_gz(OUT / "r4-model.json.gz", model)
    write_gz(OUT / "search-parameters.json.gz", load(src / "search-parameters.json"), sort_keys=False)
    hierarchies = code_hierarchies(vs_bundles)
    write_gz(OUT / "code-hierarchies.json.gz", hierarchies)
    shutil.copyfile(src / "compartmentdefinition-patient.json", OUT / "compartmentdefinition-patient.json")
    shutil.copyfile(src / "LICENSE-packaging.txt", OUT / "LICENSE-packaging.txt")
    nested = sum(1 for codes in hierarchies.values() if any(codes.values()))
    print(f"{len(types)} types, {len(model['valuesets'])} value sets, {len(hierarchies)} code systems "
          f"({nested} hierarchical) -> {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "fhir-r4")
