"""Validation of FHIR R4 JSON resources against the official StructureDefinitions.

`validate(resource)` returns a list of `Issue`s (empty = valid); `validate_json(raw)` also reports malformed
JSON; `to_operation_outcome(issues)` turns issues into an OperationOutcome.

What is checked: the resourceType, unknown elements (including `_x` primitive-extension siblings), JSON kinds
(object / array / string / number / boolean, no empty arrays or objects, nulls only inside aligned primitive
arrays), cardinality, choice elements, primitive formats (`sante.fhir.primitives`), required bindings to the
value sets expandable from the R4 package, references (ref-1 and the allowed target types), contained
resources (dom-2..dom-5) and Bundle entries (recursively), ele-1 and ext-1 by hand; and every other invariant
of the definitions (error severity; warnings too with `warnings=True`) through the FHIRPath engine
(`sante.fhirpath`), compiled once per invariant and context.

Locations are FHIRPath-style: `Patient.name[0].given[1]`, `Bundle.entry[2].resource.ofType(Patient).gender`,
`Observation.contained[0].ofType(Medication).code`; a missing required element is reported at its own path
(`Observation.status`), a choice with two variants at its name (`Observation.value`).

How it is fast: each context (a type such as "HumanName" or a backbone path such as "Patient.contact") is
compiled once into a `_Spec`: a dict from JSON property name to a small tuple saying what JSON kind is expected,
whether it is an array, and either the primitive checker or the child's `_Spec`. Validation is one walk over
the JSON with dictionary hits only. Specs whose verdict depends on the value alone ("pure": no nested resource,
no invariant reading %resource) remember the serialised values they found valid, so the codings, references
and quantities that repeat across real resources are checked once; invariants are skipped when a leading term
such as `code.empty() or ...` is already decided by which properties are present.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from sante.fhir import primitives
from sante.fhir.model import Child, Constraint, Model, r4
from sante.fhirpath.text import split_top_level

__all__ = ["Issue", "to_operation_outcome", "validate", "validate_json"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One validation finding, shaped like an OperationOutcome.issue."""

    severity: str  # "fatal" | "error" | "warning" | "information"
    # a FHIR issue-type code: "structure", "required", "value", "invariant", "code-invalid", "invalid"
    code: str
    location: str  # FHIRPath-style, e.g. "Patient.name[0].given[1]"
    message: str


DOCUMENT = "(document)"
MAX_STRING = primitives.MAX_STRING_CHARS  # location of issues about the whole document (malformed JSON)


# -- compiled specs -----------------------------------------------------------------------------------------------

PRIM, COMPLEX, RESOURCE, PRIM_ARRAY = 0, 1, 2, 3
QUICK = 4  # only in _Spec.table: (QUICK, acceptor, field)

# A field: (kind, is_array, max, target, ext_spec, records_local_ref, fast)
#   kind PRIM (single) / PRIM_ARRAY: target is the primitive checker; ext_spec validates the `_name` sibling
#     object; fast accepts most valid strings in one C call (primitives.fast_accept; None: ask the checker)
#   kind COMPLEX: target is the child's _Spec; in place of ext_spec, the JSON type expected (list or dict)
#   kind RESOURCE: a nested resource (contained, Bundle.entry.resource, Parameters.parameter.resource)
Field = tuple[int, bool, int, Any, Any, bool, Any]
PostCheck = Callable[[dict, str, "_State"], None]


class _Spec:
    """The compiled validator of one context."""

    __slots__ = (
        "base",
        "choices",
        "extra",
        "fields",
        "hits",
        "is_resource",
        "lookups",
        "memo",
        "name",
        "post",
        "pure",
        "reads_resource",
        "required",
        "table",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        # pure: the verdict depends on the JSON value alone (no nested resource, no invariant that reads
        # %resource / %rootResource), so values found valid once can be remembered (`memo`, see _walk).
        self.pure = True
        self.reads_resource = False  # one of its own invariants reads %resource or %rootResource
        self.memo: set[bytes] | None = None
        self.lookups = self.hits = 0
        self.base: _Spec | None = None  # for a variant: the spec it extends with `extra` checks
        self.extra: tuple[PostCheck, ...] = ()
        self.fields: dict[str, Field] = {}
        # What the walk looks up: `fields`, where the single-valued primitives with a fast acceptor are wrapped
        # as (QUICK, acceptor, field), the walk's first test (filled by `_Compiler._finish`)
        self.table: dict[str, Any] = {}
        self.required: tuple[tuple[tuple[str, ...], str], ...] = ()
        self.choices: tuple[tuple[str, frozenset[str]], ...] = ()
        self.post: tuple[PostCheck, ...] = ()
        self.is_resource = False

    def variant(self, extra: tuple[PostCheck, ...]) -> _Spec:
        """The same spec with extra checks after the walk (a bound Coding, a Reference with targets).

        Contexts recurse (Identifier.assigner is a Reference, whose identifier is an Identifier), so the base may
        still be under construction: `_Compiler._finish` copies its final tables once all specs exist."""
        s = _Spec(self.name)
        s.fields = self.fields  # the same dict, filled in place
        s.base, s.extra = self, extra
        return s


# For uri/url/canonical fields (which record '#id' local references): the fast acceptor `\S+` less the values
# that start with '#', which take the general path.
_NOT_LOCAL_URI = re.compile(r"[^\s#]\S*").fullmatch


def _table_entry(f: Field) -> Any:
    kind, fast, local = f[0], f[6], f[5]
    if kind != PRIM or fast is None:
        return f
    if not local:
        return (QUICK, fast, f)
    if getattr(getattr(fast, "__self__", None), "pattern", None) == r"\S+":
        return (QUICK, _NOT_LOCAL_URI, f)
    return f


class _State:
    """What a walk carries: the issues found and the current resource scope."""

    __slots__ = ("bundle_type", "contained_index", "issues", "local_refs", "resource", "root", "warnings")

    def __init__(self, warnings: bool) -> None:
        self.issues: list[Issue] = []
        self.resource: dict | None = None  # %resource: the resource the element is part of
        self.root: dict | None = None  # %rootResource: its container when it is contained
        # (id after '#', location, index of the contained resource it occurs in or -1) in the current scope
        self.local_refs: list[tuple[str, str, int]] = []
        self.contained_index = -1
        self.bundle_type: str | None = None
        self.warnings = warnings

    def error(self, code: str, location: str, message: str) -> None:
        self.issues.append(Issue("error", code, location, message))


class _Compiler:
    """Builds the `_Spec` of every context from the model, once per process."""

    def __init__(self, model: Model) -> None:
        self.m = model
        self.specs: dict[str, _Spec] = {}
        self.variants: dict[tuple, _Spec] = {}  # (base spec, what is added) -> variant
        self.resources: dict[str, _Spec] = {}
        for rt in sorted(model.resource_types):
            self.resources[rt] = self.spec(rt)
        self._finish()

    def _finish(self) -> None:
        """Complete the variants from their (now built) bases, then settle purity: a spec is pure when none of
        its own invariants reads %resource and every spec below it is pure; pure element specs get a memo."""
        specs = list(self.specs.values()) + list(self.variants.values())
        for v in self.variants.values():
            base = v.base
            assert base is not None
            v.required, v.choices, v.is_resource = base.required, base.choices, base.is_resource
            v.post = base.post + v.extra
            v.reads_resource = base.reads_resource or v.reads_resource
        for s in specs:
            s.pure = not s.reads_resource
        changed = True
        while changed:
            changed = False
            for s in specs:
                if s.pure and any(
                    f[0] == RESOURCE
                    or (f[0] == COMPLEX and not f[3].pure)
                    or (f[0] in (PRIM, PRIM_ARRAY) and not f[4].pure)
                    for f in s.fields.values()
                ):
                    s.pure = False
                    changed = True
        for s in specs:
            s.memo = set() if s.pure and not s.is_resource else None
            s.table = {k: _table_entry(f) for k, f in s.fields.items()}

    def spec(self, context: str) -> _Spec:
        s = self.specs.get(context)
        if s is None:
            s = self.specs[context] = _Spec(context)  # registered first: contexts recurse (Extension, item)
            self._fill(s, context)
        return s

    def _fill(self, s: _Spec, context: str) -> None:
        m = self.m
        s.is_resource = context in m.resource_types
        children = m.children(context)
        is_primitive_type = m.is_primitive(context)
        required: list[tuple[tuple[str, ...], str]] = []
        choices: dict[str, list[str]] = {}
        for name, child in children.items():
            if is_primitive_type and name == "value":
                continue  # the value lives in the JSON property itself, not in the `_x` object
            s.fields[name] = self._field(child, s.is_resource)
            el = child.element
            if el.is_choice:
                choices.setdefault(el.name, []).append(name)
        for name, child in children.items():
            el = child.element
            if el.min >= 1 and not (is_primitive_type and name == "value"):
                names = tuple(choices[el.name]) if el.is_choice else (name,)
                keys = names + tuple("_" + n for n in names if children[n].is_primitive)
                if (keys, el.name) not in required:
                    required.append((keys, el.name))
        s.required = tuple(required)
        s.choices = tuple((label, frozenset(names)) for label, names in choices.items() if len(names) > 1)
        post: list[PostCheck] = []
        if context == "Extension":
            post.append(_make_ext1(frozenset(n for n in children if n.startswith("value"))))
        root = m.structure(context)
        el_def = root.elements.get(context) if root is not None else m.element(context)
        invariants = _invariants(el_def.constraints if el_def else (), context, children)
        if invariants:
            post.append(_make_invariant_check(invariants))
            s.reads_resource = any(i.reads_resource for i in invariants)
        s.post = tuple(post)

    def _field(self, child: Child, in_resource: bool) -> Field:
        el = child.element
        t = child.type
        mx = el.max if el.max > 1 else 0
        if t == "Resource" or (t in self.m.structures and self.m.structures[t].kind == "resource"):
            return (RESOURCE, child.is_array, mx, None, None, False, None)
        if t.startswith("System."):
            if el.path == "Extension.url":
                code = "uri"
            elif in_resource and el.name == "id" and el.path.count(".") == 1:
                code = "id"
            else:
                code = "System.String"
            return (
                PRIM_ARRAY if child.is_array else PRIM,
                child.is_array,
                mx,
                primitives.checker(code),
                self.spec("string"),
                False,
                primitives.fast_accept(code),
            )
        if child.is_primitive:
            check = primitives.checker(t)
            fast = primitives.fast_accept(t)
            if t == "code" and el.binding_strength == "required" and el.binding_valueset:
                vs = self.m.valueset(el.binding_valueset)
                if vs is not None:
                    codes = frozenset().union(*vs.values())
                    check = _bound_code_checker(check, codes, el.binding_valueset)
                    fast = codes.__contains__
            local = t in ("uri", "canonical", "url")
            return (
                PRIM_ARRAY if child.is_array else PRIM,
                child.is_array,
                mx,
                check,
                self.spec(t),
                local,
                fast,
            )
        sub = self.spec(child.context)
        if child.context != el.path and el.constraints:
            # Invariants declared on a typed element (Organization.address org-2), beside the type's own.
            invariants = _invariants(el.constraints, child.context, self.m.children(child.context))
            if invariants:
                sub = self._variant(sub, ("inv", el.path), (_make_invariant_check(invariants),))
                sub.reads_resource = any(i.reads_resource for i in invariants)
        if t == "Reference":
            targets = tuple(x for x in el.targets if x != "Resource") if "Resource" not in el.targets else ()
            sub = self._variant(sub, ("ref", targets), (_make_reference_check(frozenset(targets), self.m),))
        elif t in ("Coding", "CodeableConcept") and el.binding_strength == "required" and el.binding_valueset:
            vs = self.m.valueset(el.binding_valueset)
            if vs is not None:
                make = _make_coding_check if t == "Coding" else _make_concept_check
                sub = self._variant(sub, (t, el.binding_valueset), (make(vs, el.binding_valueset),))
        return (COMPLEX, child.is_array, mx, sub, list if child.is_array else dict, False, None)

    def _variant(self, base: _Spec, key: tuple, post: tuple[PostCheck, ...]) -> _Spec:
        full = (base, *key)
        s = self.variants.get(full)
        if s is None:
            s = self.variants[full] = base.variant(post)
        return s


_COMPILER: _Compiler | None = None


def _compiler() -> _Compiler:
    global _COMPILER
    if _COMPILER is None:
        _COMPILER = _Compiler(r4())
    return _COMPILER


# -- the walk -----------------------------------------------------------------------------------------------------


def _describe(v: object) -> str:
    return primitives._describe(v)


def _walk(spec: _Spec, obj: dict, loc: str, st: _State) -> None:
    table = spec.table
    max_string = MAX_STRING
    for key, value in obj.items():
        f = table.get(key)
        if f is None:
            if key[:1] == "_" and key != "_":
                _walk_primitive_extension(spec, obj, key, value, loc, st)
            elif not (key == "resourceType" and spec.is_resource):
                st.error("structure", f"{loc}.{key}", f"unknown element '{key}' in {spec.name}")
            continue
        if f[0] == QUICK:  # the most common case first: a valid string of a primitive accepted by one C call
            if type(value) is str and len(value) <= max_string and f[1](value):
                continue
            f = f[2]
        kind, is_array, mx, target, json_type, local, fast = f
        if kind == COMPLEX:
            memo = target.memo
            if memo is not None and type(value) is json_type and not st.warnings:
                # Values found valid before are skipped whole (see _Spec.pure): one serialisation, not a walk.
                try:
                    mkey = _dumps(value)
                except (orjson.JSONEncodeError, TypeError):
                    _complex_field(target, key, value, is_array, mx, loc, st)
                    continue
                if mkey in memo:
                    target.hits += 1
                    continue
                before = len(st.issues)
                if is_array or not value or (len(value) == 1 and "id" in value):
                    _complex_field(target, key, value, is_array, mx, loc, st)
                else:
                    _walk(target, value, f"{loc}.{key}", st)
                # _remember, inlined
                if len(st.issues) == before and b"#" not in mkey and b"?" not in mkey:
                    if len(memo) >= MEMO_SIZE:
                        memo.clear()
                    memo.add(mkey)
                target.lookups += 1
                if target.lookups == MEMO_TRIAL:
                    _judge_memo(target)
            elif not is_array and type(value) is dict and value and not (len(value) == 1 and "id" in value):
                _walk(target, value, f"{loc}.{key}", st)
            else:
                _complex_field(target, key, value, is_array, mx, loc, st)
            continue
        if kind == PRIM:
            if fast is not None and type(value) is str and len(value) <= max_string and fast(value):
                if local and value[0] == "#":
                    st.local_refs.append((value[1:], f"{loc}.{key}", st.contained_index))
                continue
            if type(value) is not list and target(value) is None:  # numbers, booleans, uncommon strings
                if local and value[0] == "#":
                    st.local_refs.append((value[1:], f"{loc}.{key}", st.contained_index))
                continue
            _primitive_value(target, key, value, local, loc, st)  # reports what is wrong
            continue
        if is_array:
            if not _array_ok(key, value, mx, loc, st):
                continue
            if kind == PRIM_ARRAY:
                for i, v in enumerate(value):
                    if fast is not None and type(v) is str and len(v) <= MAX_STRING and fast(v):
                        if local and v[0] == "#":
                            st.local_refs.append((v[1:], f"{loc}.{key}[{i}]", st.contained_index))
                        continue
                    if v is None:
                        ext = obj.get("_" + key)
                        if not (type(ext) is list and i < len(ext) and type(ext[i]) is dict):
                            st.error(
                                "structure",
                                f"{loc}.{key}[{i}]",
                                f"null is only allowed where the matching '_{key}' entry holds extensions",
                            )
                        continue
                    msg = target(v)
                    if msg is not None:
                        st.error(_value_code(msg), f"{loc}.{key}[{i}]", str(msg))
                    elif local and v[0] == "#":
                        st.local_refs.append((v[1:], f"{loc}.{key}[{i}]", st.contained_index))
            else:
                for i, v in enumerate(value):
                    _walk_nested_resource(v, f"{loc}.{key}[{i}]", key, i, st)
        elif type(value) is list:
            st.error("structure", f"{loc}.{key}", f"'{key}' must be a single value, not an array")
        else:
            _walk_nested_resource(value, f"{loc}.{key}", key, -1, st)
    for keys, label in spec.required:
        for k in keys:
            if k in obj:
                break
        else:
            st.error("required", f"{loc}.{label}", f"missing required element '{label}' in {spec.name}")
    for label, group in spec.choices:
        if len(obj.keys() & group) > 1:
            present = ", ".join(sorted(obj.keys() & group))
            st.error(
                "structure", f"{loc}.{label}", f"only one of {present} is allowed ({label}[x] is a choice)"
            )
    for check in spec.post:
        check(obj, loc, st)


MEMO_SIZE = 20_000  # valid values remembered per spec (cleared when full)
MEMO_TRIAL = 500  # misses per window after which a spec whose values rarely repeat stops remembering
MEMO_MIN_HITS = 250  # hits needed in that window to keep remembering


def _primitive_value(check: Any, key: str, value: Any, local: bool, loc: str, st: _State) -> None:
    """The issue of a single-valued primitive property that its checker rejected."""
    if type(value) is list:
        st.error("structure", f"{loc}.{key}", f"'{key}' must be a single value, not an array")
        return
    msg = check(value)
    if msg is not None:
        st.error(_value_code(msg) if value is not None else "structure", f"{loc}.{key}", str(msg))


def _array_ok(key: str, value: Any, mx: int, loc: str, st: _State) -> bool:
    """Report an array property that is not a non-empty JSON array; True when its items should be walked
    (an over-long array is reported and still walked)."""
    if type(value) is not list:
        st.error("structure", f"{loc}.{key}", f"'{key}' must be a JSON array, not {_describe(value)}")
        return False
    if not value:
        st.error("structure", f"{loc}.{key}", f"'{key}' must not be an empty array")
        return False
    if mx and len(value) > mx:
        st.error("structure", f"{loc}.{key}", f"'{key}' allows at most {mx} items, found {len(value)}")
    return True


def _complex_field(
    target: _Spec, key: str, value: Any, is_array: bool, mx: int, loc: str, st: _State
) -> None:
    """A property holding complex elements: a JSON object, or for arrays a non-empty array of them."""
    if is_array:
        if not _array_ok(key, value, mx, loc, st):
            return
        for i, v in enumerate(value):
            if type(v) is dict and v and not (len(v) == 1 and "id" in v):
                _walk(target, v, f"{loc}.{key}[{i}]", st)
            else:
                _bad_object(v, f"{loc}.{key}[{i}]", key, st)
    elif type(value) is list:
        st.error("structure", f"{loc}.{key}", f"'{key}' must be a single value, not an array")
    elif type(value) is dict and value and not (len(value) == 1 and "id" in value):
        _walk(target, value, f"{loc}.{key}", st)
    else:
        _bad_object(value, f"{loc}.{key}", key, st)


def _judge_memo(spec: _Spec) -> None:
    """Judged per window of misses: hits / misses must stay worth the cost."""
    if spec.hits < MEMO_MIN_HITS:  # mostly distinct values (amounts, free text): not worth remembering
        spec.memo = None
    spec.lookups = spec.hits = 0


_dumps = orjson.dumps


def _bad_object(v: object, loc: str, key: str, st: _State) -> None:
    if type(v) is dict:
        st.error("invariant", loc, f"'{key}' must have a value or child elements (ele-1)")
    else:
        st.error("structure", loc, f"'{key}' must be a JSON object, not {_describe(v)}")


def _walk_primitive_extension(spec: _Spec, obj: dict, key: str, value: Any, loc: str, st: _State) -> None:
    """`_name`: the id/extensions of primitive `name`, an object or (for arrays) an aligned array."""
    name = key[1:]
    f = spec.fields.get(name)
    if f is None or f[0] not in (PRIM, PRIM_ARRAY):
        what = "unknown element" if f is None else f"'{name}' is not a primitive, so element"
        st.error("structure", f"{loc}.{key}", f"{what} '{key}' in {spec.name}")
        return
    ext_spec: _Spec = f[4]
    values = obj.get(name)
    if f[1]:
        if type(value) is not list:
            st.error("structure", f"{loc}.{key}", f"'{key}' must be a JSON array, not {_describe(value)}")
            return
        if not value:
            st.error("structure", f"{loc}.{key}", f"'{key}' must not be an empty array")
            return
        if type(values) is list and len(values) != len(value):
            st.error(
                "structure", f"{loc}.{key}", f"'{key}' has {len(value)} items but '{name}' has {len(values)}"
            )
        for i, e in enumerate(value):
            has_value = type(values) is list and i < len(values) and values[i] is not None
            if e is None:
                if not has_value:
                    st.error(
                        "structure", f"{loc}.{name}[{i}]", f"'{name}[{i}]' has neither a value nor extensions"
                    )
                continue
            _walk_primitive_element(ext_spec, e, f"{loc}.{name}[{i}]", has_value, key, st)
    else:
        if type(value) is list:
            st.error("structure", f"{loc}.{key}", f"'{key}' must be a single object, not an array")
            return
        _walk_primitive_element(ext_spec, value, f"{loc}.{name}", values is not None, key, st)


def _walk_primitive_element(ext_spec: _Spec, e: Any, loc: str, has_value: bool, key: str, st: _State) -> None:
    if type(e) is not dict:
        st.error("structure", loc, f"'{key}' entries must be JSON objects, not {_describe(e)}")
        return
    _walk(ext_spec, e, loc, st)
    if not has_value and "extension" not in e:
        st.error("invariant", loc, "a primitive element must have a value or extensions (ele-1)")


def _walk_nested_resource(v: Any, loc: str, key: str, index: int, st: _State) -> None:
    if key == "contained":
        _walk_contained(v, loc, index, st)
    else:
        _walk_resource(v, loc, st, top=False)


def _resource_spec(res: Any, loc: str, st: _State, top: bool) -> _Spec | None:
    severity = "fatal" if top else "error"
    loc = loc or DOCUMENT
    if type(res) is not dict:
        st.issues.append(
            Issue(severity, "structure", loc, f"a resource must be a JSON object, not {_describe(res)}")
        )
        return None
    rt = res.get("resourceType")
    if rt is None:
        st.issues.append(Issue(severity, "required", loc, "missing resourceType"))
        return None
    spec = _compiler().resources.get(rt) if type(rt) is str else None
    if spec is None:
        what = f"'{rt}'" if type(rt) is str else _describe(rt)
        reason = "abstract" if type(rt) is str and r4().structure(rt) is not None else "unknown"
        st.issues.append(
            Issue(
                severity,
                "structure",
                f"{loc}.resourceType" if not top else loc,
                f"resourceType {what} is not a known concrete R4 resource type ({reason})",
            )
        )
        return None
    return spec


def _walk_resource(res: Any, loc: str, st: _State, top: bool) -> None:
    """A resource with its own scope: the root, a Bundle entry, a Parameters resource."""
    spec = _resource_spec(res, loc, st, top)
    if spec is None:
        return
    rloc = spec.name if top else f"{loc}.ofType({spec.name})"
    saved = (st.local_refs, st.contained_index, st.bundle_type, st.resource, st.root)
    st.local_refs, st.contained_index, st.resource, st.root = [], -1, res, res
    if spec.name == "Bundle":
        bt = res.get("type")
        st.bundle_type = bt if type(bt) is str else None
    _walk(spec, res, rloc, st)
    _check_local_references(res, rloc, st)
    st.local_refs, st.contained_index, st.bundle_type, st.resource, st.root = saved


def _walk_contained(res: Any, loc: str, index: int, st: _State) -> None:
    spec = _resource_spec(res, loc, st, top=False)
    if spec is None:
        return
    rloc = f"{loc}.ofType({spec.name})"
    if "contained" in res:
        st.error(
            "invariant",
            f"{rloc}.contained",
            "a contained resource SHALL NOT contain nested resources (dom-2)",
        )
    meta = res.get("meta")
    if type(meta) is dict:
        for k in ("versionId", "lastUpdated"):
            if k in meta:
                st.error(
                    "invariant", f"{rloc}.meta.{k}", f"a contained resource SHALL NOT have meta.{k} (dom-4)"
                )
        if "security" in meta:
            st.error(
                "invariant",
                f"{rloc}.meta.security",
                "a contained resource SHALL NOT have a security label (dom-5)",
            )
    saved = (st.contained_index, st.resource)
    st.contained_index, st.resource = index, res
    _walk(spec, res, rloc, st)
    st.contained_index, st.resource = saved


def _check_local_references(res: dict, rloc: str, st: _State) -> None:
    """ref-1 resolution of '#id' references and dom-3 (every contained resource is referenced)."""
    contained = res.get("contained")
    if not st.local_refs and contained is None:
        return
    ids: dict[str, int] = {}
    if type(contained) is list:
        for i, c in enumerate(contained):
            if type(c) is dict and type(c.get("id")) is str:
                ids.setdefault(c["id"], i)
    referenced: set[str] = set()
    refers_to_container: set[int] = set()
    for target, where, in_contained in st.local_refs:
        if not target:
            if in_contained < 0 and where.endswith(".reference"):
                st.error(
                    "invariant",
                    where,
                    "'#' refers to the containing resource, but this resource is not contained",
                )
            else:
                refers_to_container.add(in_contained)
        elif target in ids:
            referenced.add(target)
        elif where.endswith(".reference"):
            st.error("invariant", where, f"no contained resource has id '{target}' (ref-1)")
    if type(contained) is list:
        for i, c in enumerate(contained):
            if type(c) is not dict or i in refers_to_container:
                continue
            cid = c.get("id")
            if type(cid) is not str or cid not in referenced:
                what = f"'{cid}'" if type(cid) is str else "without an id"
                st.error(
                    "invariant",
                    f"{rloc}.contained[{i}]",
                    f"contained resource {what} is not referenced from the rest of the resource (dom-3)",
                )


# -- post checks: ext-1, references, bindings ---------------------------------------------------------------------


def _make_ext1(value_names: frozenset[str]) -> PostCheck:
    def ext1(obj: dict, loc: str, st: _State) -> None:
        has_value = bool(obj.keys() & value_names) or any(k[:6] == "_value" for k in obj)
        if has_value == ("extension" in obj):
            st.error(
                "invariant",
                loc,
                "an extension must have either extensions or a value[x], not both (ext-1)"
                if has_value
                else "an extension must have either extensions or a value[x] (ext-1)",
            )

    return ext1


_REST_REF = re.compile(r"([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?")
_ABS_REST_REF = re.compile(
    r"(?:https?)://\S+/([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?"
)
_CONDITIONAL_REF = re.compile(r"([A-Z][A-Za-z]+)\?\S+")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_UUID = re.compile(r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")


def _make_reference_check(targets: frozenset[str], model: Model) -> PostCheck:
    types = model.resource_types
    allowed = ", ".join(sorted(targets))

    def check_type(rt: str, loc: str, ref: str, st: _State) -> None:
        if rt not in types:
            st.error("invalid", loc, f"'{ref}' refers to '{rt}', which is not an R4 resource type")
        elif targets and rt not in targets:
            st.error(
                "invalid",
                loc,
                f"'{ref}' refers to a resource of type {rt}, but only {allowed} is allowed here",
            )

    def reference(obj: dict, loc: str, st: _State) -> None:
        ref = obj.get("reference")
        if type(ref) is not str or not ref or ref.isspace():
            return  # not a string: already reported by the walk
        if ref[:9] == "urn:uuid:" and _UUID.fullmatch(ref) is not None:
            return  # the usual form inside Bundles
        rloc = loc + ".reference"
        if ref[0] == "#":
            st.local_refs.append((ref[1:], rloc, st.contained_index))
            return
        m = _REST_REF.fullmatch(ref)
        if m is not None:
            check_type(m.group(1), rloc, ref, st)
            return
        if ref.startswith("urn:"):
            if ref.startswith("urn:uuid:"):
                if _UUID.fullmatch(ref) is None:
                    st.error("invalid", rloc, f"'{ref}' is not a valid urn:uuid reference")
            elif ref.startswith("urn:oid:") and _OID.fullmatch(ref) is None:
                st.error("invalid", rloc, f"'{ref}' is not a valid urn:oid reference")
            return
        m = _ABS_REST_REF.fullmatch(ref)
        if m is not None:
            if m.group(1) in types:
                check_type(m.group(1), rloc, ref, st)
            return
        if _ABSOLUTE.fullmatch(ref) is not None:
            return
        m = _CONDITIONAL_REF.fullmatch(ref)
        if m is not None and st.bundle_type in ("transaction", "batch"):
            check_type(m.group(1), rloc, ref, st)
            return
        st.error(
            "invalid",
            rloc,
            f"'{primitives._clip(ref)}' is not a valid reference: expected Type/id, "
            "Type/id/_history/vid, an absolute URL, urn:uuid:/urn:oid: or #id of a contained resource (ref-1)",
        )

    return reference


class _BindingMessage(str):
    """A primitive checker's message that is about the value set, not the format (issue code code-invalid)."""


def _value_code(msg: str) -> str:
    return "code-invalid" if type(msg) is _BindingMessage else "value"


def _bound_code_checker(
    base: primitives.PrimitiveChecker, codes: frozenset[str], url: str
) -> primitives.PrimitiveChecker:
    name = url.split("|")[0].rsplit("/", 1)[-1]
    if len(codes) <= 12:
        listing = ", ".join(sorted(codes))
        hint = f" (allowed: {listing})"
    else:
        hint = ""

    def check(v: object) -> str | None:
        msg = base(v)
        if msg is None and v not in codes:
            return _BindingMessage(f"'{v}' is not a code of the required value set {name}{hint}")
        return msg

    return check


def _make_coding_check(vs: dict[str, frozenset[str]], url: str) -> PostCheck:
    name = url.split("|")[0].rsplit("/", 1)[-1]
    union = frozenset().union(*vs.values())

    def coding(obj: dict, loc: str, st: _State) -> None:
        system, code = obj.get("system"), obj.get("code")
        if type(code) is not str:
            return
        if system is None:
            if code not in union:
                st.error(
                    "code-invalid", f"{loc}.code", f"'{code}' is not a code of the required value set {name}"
                )
        elif type(system) is str and code not in vs.get(system, ()):
            st.error(
                "code-invalid", f"{loc}.code", f"{system}#{code} is not in the required value set {name}"
            )

    return coding


def _make_concept_check(vs: dict[str, frozenset[str]], url: str) -> PostCheck:
    name = url.split("|")[0].rsplit("/", 1)[-1]

    def concept(obj: dict, loc: str, st: _State) -> None:
        codings = obj.get("coding")
        if type(codings) is not list:
            return
        for c in codings:
            if type(c) is dict:
                system, code = c.get("system"), c.get("code")
                if type(system) is str and type(code) is str and code in vs.get(system, ()):
                    return
        st.error(
            "code-invalid", f"{loc}.coding", f"none of the codings is from the required value set {name}"
        )

    return concept


# -- invariants from the definitions (FHIRPath) ------------------------------------------------------------------

# Checked by hand above (faster, and they need the walk's knowledge): dom-2..dom-6, ele-1, ext-1, ref-1, and
# txt-1/txt-2 (htmlChecks(), in primitives.check_xhtml).
HAND_CODED = frozenset(
    {"dom-2", "dom-3", "dom-4", "dom-5", "dom-6", "ele-1", "ext-1", "ref-1", "txt-1", "txt-2"}
)
FHIRPATH_CONSTANTS = {
    "ucum": "http://unitsofmeasure.org",
    "sct": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
}
# Shortcuts read off the expressions (not re-typed rules): an invariant `T1 or T2 or ...` holds when one term is
# decided by the mere presence of a child: `name.empty()`, `name.exists().not()`, `name.hasValue().not()` and
# `name.<navigation or where()>.empty()` are true when `name` is absent; `name.exists()` is true when it is
# present. Likewise `name.exists() implies X` holds when `name` is absent. Then the engine need not run.
_TRUE_WHEN_ABSENT = re.compile(
    r"\(?(\w+)((?:\.\w+|\.(?:where|ofType)\((?:[^()]|\([^()]*\))*\))*\.empty\(\)|\.exists\(\)\.not\(\)"
    r"|\.hasValue\(\)\.not\(\))\)?"
)
_TRUE_WHEN_PRESENT = re.compile(r"\(?(\w+)\.exists\(\)\)?")
_EXISTS_IMPLIES = re.compile(r"(\w+)\.exists\(\) implies ")


class _Invariant:
    """One constraint of the definitions, compiled on first use."""

    __slots__ = (
        "broken",
        "context",
        "direct",
        "expression",
        "fn",
        "guards",
        "human",
        "key",
        "reads_resource",
        "severity",
    )

    def __init__(self, c: Constraint, context: str, guards: tuple[Guard, ...]) -> None:
        self.key, self.severity, self.human, self.expression = c.key, c.severity, c.human, c.expression
        self.reads_resource = "%resource" in c.expression or "%rootResource" in c.expression
        self.context = context
        self.guards = guards
        self.fn: Callable[..., list] | None = None
        self.broken = False
        # the engine's verdict computed without it for the common inputs (None from it: ask the engine)
        self.direct: Callable[[dict], bool | None] | None = _DIRECT.get((c.key, context, c.expression))


# A dateTime the FHIRPath engine surely parses (a real date other than February 29) with seconds and a timezone.
_FULL_DATETIME = re.compile(
    r"[0-9]{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})"
)


def _period_start_le_end(obj: dict) -> bool | None:
    """per-1 `start.hasValue().not() or end.hasValue().not() or (start <= end)` as the engine evaluates it, for
    the usual start and end: both `YYYY-MM-DDThh:mm:ss[.f+]` with the same timezone and the day at most 28,
    which the engine parses to DateTimes of second precision and compares component by component (seconds
    with the milliseconds read from the first three digits of the fraction). None otherwise: ask the engine."""
    start, end = obj.get("start"), obj.get("end")
    if type(start) is not str or type(end) is not str or "_start" in obj or "_end" in obj:
        return None
    a, b = _FULL_DATETIME.fullmatch(start), _FULL_DATETIME.fullmatch(end)
    if a is None or b is None or a.group(2) != b.group(2):
        return None
    if start[:19] != end[:19]:
        return start[:19] < end[:19]  # fixed-width ASCII digits: text order is the order of the components
    fa, fb = a.group(1), b.group(1)
    return int(((fa or "") + "000")[:3]) <= int(((fb or "") + "000")[:3])


# Invariants (key, context, expression exactly as in the definitions) with a direct evaluation of common inputs.
_DIRECT: dict[tuple[str, str, str], Callable[[dict], bool | None]] = {
    (
        "per-1",
        "Period",
        "start.hasValue().not() or end.hasValue().not() or (start <= end)",
    ): _period_start_le_end,
}


class InvariantStats:
    """Invariants the FHIRPath engine could not compile or evaluate (they never fail a resource)."""

    def __init__(self) -> None:
        self.compile_errors: dict[str, str] = {}  # key@context -> error
        self.runtime_errors: dict[str, int] = {}  # key@context -> count
        self.evaluated = 0


STATS = InvariantStats()
log = logging.getLogger(__name__)


def _invariants(
    constraints: tuple[Constraint, ...], context: str, children: dict[str, Child]
) -> tuple[_Invariant, ...]:
    out = []
    for c in constraints:
        if c.key in HAND_CODED or c.severity not in ("error", "warning"):
            continue
        out.append(_Invariant(c, context, _guards(c.expression, children)))
    return tuple(out)


def _names(children: dict[str, Child], name: str) -> frozenset[str]:
    keys = {k for k, ch in children.items() if ch.element.name == name}
    return frozenset(keys | {"_" + k for k in keys if children[k].is_primitive})


Guard = tuple[
    frozenset[str], bool
]  # (JSON names of a child, True: decided when absent / False: when present)


def _guards(expr: str, children: dict[str, Child]) -> tuple[Guard, ...]:
    """Conditions on the object's property names under which the invariant surely holds."""
    for op in ("implies", "xor"):
        parts = split_top_level(expr, f" {op} ")
        if parts is None or (len(parts) > 1 and op == "xor"):
            return ()
        if len(parts) > 1:
            m = _EXISTS_IMPLIES.fullmatch(parts[0] + " implies ")
            names = _names(children, m.group(1)) if m and len(parts) == 2 else frozenset()
            return ((names, True),) if names else ()
    guards = []
    for term in split_top_level(expr, " or ") or ():
        term = term.strip()
        m = _TRUE_WHEN_ABSENT.fullmatch(term)
        if m is not None and (names := _names(children, m.group(1))):
            guards.append((names, True))
            continue
        m = _TRUE_WHEN_PRESENT.fullmatch(term)
        if m is not None and (names := _names(children, m.group(1))):
            guards.append((names, False))
    return tuple(guards)


def _engine_compile(inv: _Invariant) -> Callable[..., list] | None:
    try:
        from sante.fhirpath import compile as fhirpath_compile
    except ImportError:
        return None
    try:
        if inv.context in r4().resource_types:
            return fhirpath_compile(inv.expression, base_type=inv.context)
        return _compile_for_type(inv.expression, inv.context) or fhirpath_compile(inv.expression)
    except Exception as e:
        STATS.compile_errors[f"{inv.key}@{inv.context}"] = f"{type(e).__name__}: {e}"
        log.info("invariant %s on %s not checked: %s", inv.key, inv.context, e)
        return None


def _compile_for_type(expression: str, context: str) -> Callable[..., list] | None:
    """An evaluator typed for a data type or backbone focus (a JSON object without resourceType).

    `sante.fhirpath.compile(expr, base_type=...)` specialises on the input's resourceType only, so an untyped
    Range.low would be a bare dict; the engine's compiler takes the focus type directly. None when that
    internal entry point is not usable (the caller then falls back to the untyped public API).
    """
    try:
        from sante.fhirpath.compiler import Compiler
        from sante.fhirpath.parser import parse

        impl: Callable[..., list] = Compiler(expression, context, False).build(parse(expression))
    except Exception:
        return None
    return impl


def _holds(inv: _Invariant, obj: dict, st: _State) -> bool:
    fn = inv.fn
    if fn is None:
        if inv.broken:
            return True
        fn = inv.fn = _engine_compile(inv)
        if fn is None:
            inv.broken = True
            return True
    direct = inv.direct
    if direct is not None:
        verdict = direct(obj)
        if verdict is not None:
            STATS.evaluated += 1
            return verdict
    variables = {"resource": st.resource, "rootResource": st.root, "context": obj, **FHIRPATH_CONSTANTS}
    STATS.evaluated += 1
    try:
        result = fn(obj, variables)
    except Exception as e:
        where = f"{inv.key}@{inv.context}"
        if where not in STATS.runtime_errors:
            log.info("invariant %s on %s could not be evaluated: %s", inv.key, inv.context, e)
        STATS.runtime_errors[where] = STATS.runtime_errors.get(where, 0) + 1
        return True
    if len(result) != 1:
        return True  # empty: nothing to judge
    value = result[0]
    return not (value is False or getattr(value, "value", None) is False)


def _make_invariant_check(invariants: tuple[_Invariant, ...]) -> PostCheck:
    errors_only = tuple(i for i in invariants if i.severity == "error")

    def skip_when_absent(group: tuple[_Invariant, ...]) -> frozenset[str] | None:
        """JSON names whose absence decides every invariant of the group by one of its guards (None: not all
        of them have a guard decided by absence)."""
        names: set[str] = set()
        for inv in group:
            absent = [n for n, when_absent in inv.guards if when_absent]
            if not absent:
                return None
            names |= absent[0]
        return frozenset(names)

    skip_all, skip_errors = skip_when_absent(invariants), skip_when_absent(errors_only)

    def invariants_hold(obj: dict, loc: str, st: _State) -> None:
        keys = obj.keys()
        skip = skip_all if st.warnings else skip_errors
        if skip is not None and keys.isdisjoint(skip):
            return  # every invariant is decided by an absent property (the loop below would conclude the same)
        for inv in invariants if st.warnings else errors_only:
            decided = False
            for names, when_absent in inv.guards:
                if keys.isdisjoint(names) is when_absent:
                    decided = True
                    break
            if decided:
                continue
            if not _holds(inv, obj, st):
                st.issues.append(Issue(inv.severity, "invariant", loc, f"{inv.human} ({inv.key})"))

    return invariants_hold


# -- public API ---------------------------------------------------------------------------------------------------


def validate(resource: Any, *, warnings: bool = False, in_bundle: str | None = None) -> list[Issue]:
    """All issues of a FHIR R4 resource given as parsed JSON; an empty list means valid.

    With `warnings=True`, best-practice findings of severity warning are reported too (dom-6: no narrative).
    `in_bundle` names the type of the Bundle the resource is an entry of: inside a "transaction" or "batch",
    conditional references (`Patient?identifier=...`) are legal.
    """
    st = _State(warnings)
    st.bundle_type = in_bundle
    try:
        spec = None
        if type(resource) is dict:
            rt = resource.get("resourceType")
            if type(rt) is str:
                spec = (_COMPILER or _compiler()).resources.get(rt)
        if spec is None:
            _walk_resource(resource, "", st, top=True)  # reports what is wrong with it
        else:  # _walk_resource(resource, "", st, top=True) for a known resource type, shortened
            st.resource = st.root = resource
            if spec.name == "Bundle":
                bt = resource.get("type")
                st.bundle_type = bt if type(bt) is str else None
            _walk(spec, resource, spec.name, st)
            if st.local_refs or resource.get("contained") is not None:
                _check_local_references(resource, spec.name, st)
    except RecursionError:
        st.issues.append(
            Issue("fatal", "too-costly", DOCUMENT, "the resource is nested too deeply to validate")
        )
    if (
        warnings
        and type(resource) is dict
        and type(resource.get("resourceType")) is str
        and resource["resourceType"] in _compiler().resources
    ):
        _narrative_warnings(resource, st)
    return st.issues


def _narrative_warnings(resource: dict, st: _State) -> None:
    spec = _compiler().resources[resource["resourceType"]]
    if "text" in spec.fields:
        text = resource.get("text")
        if not (type(text) is dict and "div" in text):
            st.issues.append(
                Issue(
                    "warning",
                    "invariant",
                    spec.name,
                    "a resource should have narrative for robust management (dom-6)",
                )
            )


def validate_json(raw: bytes | str) -> list[Issue]:
    """Like `validate`, from JSON text: malformed JSON is one fatal issue with its line and column."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if raw[:3] == b"\xef\xbb\xbf":
        raw = raw[3:]
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return [
            Issue(
                "fatal",
                "structure",
                DOCUMENT,
                f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}",
            )
        ]
    return validate(doc)


def to_operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """An R4 OperationOutcome for the issues (one 'information: all OK' issue when there are none)."""
    if not issues:
        return {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational", "diagnostics": "All OK"}],
        }
    out = []
    for i in issues:
        entry: dict[str, Any] = {"severity": i.severity, "code": i.code, "diagnostics": i.message}
        if i.location and i.location != DOCUMENT:
            entry["expression"] = [i.location]
        out.append(entry)
    return {"resourceType": "OperationOutcome", "issue": out}
