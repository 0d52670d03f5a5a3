"""FHIRPath Patch (FHIR R4 §3.1.0.5.1): a Parameters resource of add / insert / delete / replace / move operations
whose paths are FHIRPath expressions, applied to a copy of a resource.

Targets are found by evaluating the path with Sante's FHIRPath engine; because the engine returns the very
dicts of the resource, an element is located by identity in its container, so `Patient.identifier.where(...)`
deletes exactly the identifier it matched. Any problem is a PatchError naming the operation and the reason.
"""

from __future__ import annotations

import copy
from typing import Any

from sante import fhirpath
from sante.fhir.model import r4


class PatchError(ValueError):
    """A patch that cannot be applied; `location` names the operation (Parameters.parameter[i])."""

    def __init__(self, message: str, location: str) -> None:
        super().__init__(message)
        self.location = location


def _parts(op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p.get("name"): p for p in op.get("part", []) if isinstance(p, dict)}


def _value_of(part: dict[str, Any], where: str) -> Any:
    """The JSON value of a `value` part: value[x], or a complex value spelled as nested parts."""
    for k, v in part.items():
        if k.startswith("value"):
            return v
    if "part" in part:
        out: dict[str, Any] = {}
        for p in part["part"]:
            name = p.get("name")
            if not isinstance(name, str):
                raise PatchError("a nested value part needs a name", where)
            out[name] = _value_of(p, where)
        return out
    raise PatchError("the operation needs a value", where)


def _split_last(path: str) -> tuple[str, str] | None:
    """'Patient.name.given' -> ('Patient.name', 'given') when the last step is a plain member name."""
    depth = 0
    quote = False
    for i in range(len(path) - 1, -1, -1):
        ch = path[i]
        if ch == "'":
            quote = not quote
        elif not quote:
            if ch in ")]":
                depth += 1
            elif ch in "([":
                depth -= 1
            elif ch == "." and depth == 0:
                name = path[i + 1:].strip()
                return (path[:i], name) if name.isidentifier() else None
    return None


def _locate(root: Any, target: Any) -> tuple[Any, Any] | None:
    """(container, key or index) holding exactly the object `target`, searching the resource tree."""
    stack = [root]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            if v is target:
                return node, k
            if isinstance(v, (dict, list)):
                stack.append(v)
    return None


def _member_names(path: str) -> list[str]:
    """The member names of a path, skipping indexes and function calls: `Patient.name[0].where(x)` -> [Patient, name]."""
    names, depth, token, quote = [], 0, "", False
    for ch in path + ".":
        if ch == "'":
            quote = not quote
        if quote:
            continue
        if ch in "([":
            if depth == 0 and ch == "(":
                token = ""  # a function name, not a member
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0:
            if ch == ".":
                if token.isidentifier():
                    names.append(token)
                token = ""
            else:
                token += ch
    return names


def _repeats(path: str, name: str) -> bool:
    """Whether element `name` under the element that `path` selects repeats (max > 1), from the R4 model."""
    model = r4()
    names = _member_names(path)
    if not names:
        return False
    ctx = names[0]
    for member in names[1:]:
        kids = model.children_named(ctx, member)
        if not kids:
            return False
        ctx = kids[0].context
    kids = model.children_named(ctx, name)
    return bool(kids) and kids[0].is_array


def _eval(resource: dict[str, Any], path: str, where: str) -> list[Any]:
    try:
        return fhirpath.evaluate(resource, path)
    except fhirpath.FHIRPathError as e:
        raise PatchError(f"path {path!r}: {e}", where) from None


def _single_container(resource: dict[str, Any], path: str, where: str) -> dict[str, Any]:
    found = _eval(resource, path, where)
    if len(found) != 1 or not isinstance(found[0], dict):
        raise PatchError(f"path {path!r} must select exactly one element, found {len(found)}", where)
    return found[0]


def _list_at(resource: dict[str, Any], path: str, where: str) -> list[Any]:
    split = _split_last(path)
    if split is None:
        raise PatchError(f"path {path!r} must end in an element name for insert/move", where)
    parent_path, name = split
    parent = _single_container(resource, parent_path, where)
    value = parent.setdefault(name, [])
    if not isinstance(value, list):
        raise PatchError(f"{path!r} is not a list", where)
    return value


def _remove_or_replace(resource: dict[str, Any], path: str, where: str, replacement: Any, delete: bool) -> None:
    split = _split_last(path)
    if split is not None:  # parent.name: handle primitives and whole properties
        parent_path, name = split
        parents = [p for p in _eval(resource, parent_path, where) if isinstance(p, dict)]
        holders = [p for p in parents if name in p or f"_{name}" in p]
        if len(holders) > 1 or (holders and isinstance(holders[0].get(name), list) and len(holders[0][name]) > 1):
            raise PatchError(f"path {path!r} selects several elements", where)
        if not holders:
            if delete:
                return  # deleting nothing is not an error
            raise PatchError(f"path {path!r} selects nothing to replace", where)
        holder = holders[0]
        if delete:
            holder.pop(name, None)
            holder.pop(f"_{name}", None)
        else:
            holder[name] = [replacement] if isinstance(holder.get(name), list) else replacement
        return
    found = _eval(resource, path, where)
    if len(found) > 1:
        raise PatchError(f"path {path!r} selects {len(found)} elements (at most one allowed)", where)
    if not found:
        if delete:
            return
        raise PatchError(f"path {path!r} selects nothing to replace", where)
    spot = _locate(resource, found[0]) if isinstance(found[0], (dict, list)) else None
    if spot is None:
        raise PatchError(f"path {path!r} does not select an element of the resource", where)
    container, key = spot
    if delete:
        del container[key]
    else:
        container[key] = replacement


def apply_fhirpath_patch(resource: dict[str, Any], parameters: Any) -> dict[str, Any]:
    """The patched copy of resource; raises PatchError (with the failing operation's location)."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise PatchError("a FHIRPath Patch is a Parameters resource", "resourceType")
    out = copy.deepcopy(resource)
    for i, op in enumerate(parameters.get("parameter", [])):
        where = f"Parameters.parameter[{i}]"
        if not isinstance(op, dict) or op.get("name") != "operation":
            raise PatchError("each parameter must be an 'operation'", where)
        parts = _parts(op)
        kind = (parts.get("type") or {}).get("valueCode")
        path = (parts.get("path") or {}).get("valueString")
        if not isinstance(path, str) or not path:
            raise PatchError("the operation needs a path (valueString)", where)
        if kind == "add":
            name = (parts.get("name") or {}).get("valueString")
            if not isinstance(name, str) or not name:
                raise PatchError("add needs a name (valueString)", where)
            container = _single_container(out, path, where)
            value = _value_of(parts.get("value") or {}, where)
            if isinstance(container.get(name), list):
                container[name].append(value)
            elif name in container:
                raise PatchError(f"{name!r} is already present: use replace", where)
            else:
                container[name] = [value] if _repeats(path, name) else value
        elif kind == "insert":
            items = _list_at(out, path, where)
            index = (parts.get("index") or {}).get("valueInteger")
            if not isinstance(index, int) or not 0 <= index <= len(items):
                raise PatchError(f"insert index must be between 0 and {len(items)}", where)
            items.insert(index, _value_of(parts.get("value") or {}, where))
        elif kind == "delete":
            _remove_or_replace(out, path, where, None, delete=True)
        elif kind == "replace":
            _remove_or_replace(out, path, where, _value_of(parts.get("value") or {}, where), delete=False)
        elif kind == "move":
            items = _list_at(out, path, where)
            src = (parts.get("source") or {}).get("valueInteger")
            dst = (parts.get("destination") or {}).get("valueInteger")
            if not (isinstance(src, int) and isinstance(dst, int) and 0 <= src < len(items) and 0 <= dst < len(items)):
                raise PatchError(f"move source and destination must be between 0 and {len(items) - 1}", where)
            items.insert(dst, items.pop(src))
        else:
            raise PatchError(f"unknown operation type {kind!r} (add, insert, delete, replace, move)", where)
    return out
