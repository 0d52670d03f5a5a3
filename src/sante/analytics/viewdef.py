"""SQL on FHIR v2 ViewDefinition: validation and the normalised, frozen form every engine runs.

`parse_view(dict) -> View` checks the definition (structure, column names, FHIRPath syntax, constants, unionAll
branches) and raises `ViewDefinitionError` naming the location of the first problem, e.g.
`select[0].column[1].name: ...`. Paths are kept as written; engines that substitute `%name` textually render
constants with `fhirpath_literal()`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sante.fhirpath import Date, DateTime, FHIRPathError, Time
from sante.fhirpath.parser import Node, parse
from sante.fhirpath.temporal import parse_date, parse_datetime, parse_time


class ViewDefinitionError(ValueError):
    """An invalid ViewDefinition; `location` is the dotted path of the offending element ("" for the root)."""

    def __init__(self, location: str, message: str) -> None:
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    path: str  # FHIRPath as written (constants NOT substituted)
    type: str | None  # the declared FHIR type, or None
    collection: bool  # column.collection == True


@dataclass(frozen=True, slots=True)
class Select:
    columns: tuple[Column, ...]
    selects: tuple[Select, ...]  # nested select
    union_all: tuple[Select, ...]  # unionAll branches
    for_each: str | None  # forEach path
    for_each_or_null: str | None  # forEachOrNull path
    repeat: tuple[str, ...] | None  # repeat paths


@dataclass(frozen=True, slots=True)
class View:
    resource: str
    constants: dict[str, object]  # name -> str, int, Decimal, bool, Date, DateTime or Time
    where: tuple[str, ...]  # where[].path
    select: tuple[Select, ...]
    column_names: tuple[str, ...]  # output columns in spec order (columns, then nested selects, then unionAll)


_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_RESOURCE_RE = re.compile(r"[A-Z][A-Za-z]*")
# Variables every engine provides besides the view's constants.
_ENVIRONMENT = frozenset({"resource", "rootResource", "context", "ucum", "sct", "loinc", "rowIndex"})
_SELECT_KEYS = frozenset({"column", "select", "unionAll", "forEach", "forEachOrNull", "repeat", "id", "extension"})
_COLUMN_KEYS = frozenset({"name", "path", "type", "collection", "description", "tag", "id", "extension"})

_STRING_VALUES = ("Base64Binary", "Canonical", "Code", "Id", "Markdown", "Oid", "String", "Uri", "Url", "Uuid")
_INTEGER_VALUES = ("Integer", "Integer64", "PositiveInt", "UnsignedInt")


def parse_view(view: dict[str, Any]) -> View:
    """Validate a ViewDefinition (JSON as a dict) and return its normalised form."""
    if not isinstance(view, dict):
        raise ViewDefinitionError("", f"a ViewDefinition must be a JSON object, not {type(view).__name__}")
    resource = view.get("resource")
    if not isinstance(resource, str) or not _RESOURCE_RE.fullmatch(resource):
        raise ViewDefinitionError("resource", "required: the FHIR resource type the view flattens, e.g. 'Patient'")
    constants = _parse_constants(view.get("constant", []))
    where = _parse_where(view.get("where", []), constants)
    raw_selects = view.get("select")
    if not isinstance(raw_selects, list) or not raw_selects:
        raise ViewDefinitionError("select", "required: a non-empty list of select elements")
    selects = tuple(_parse_select(s, f"select[{i}]", constants) for i, s in enumerate(raw_selects))
    columns: list[tuple[str, str]] = []
    for i, select in enumerate(selects):
        columns.extend(_select_columns(select, f"select[{i}]"))
    _check_unique(columns)
    return View(resource, constants, where, selects, tuple(name for name, _ in columns))


def fhirpath_literal(value: object) -> str:
    """A constant's value as a FHIRPath literal (`'text'`, `true`, `3`, `1.50`, `@2020-01-02`, `@T10:00`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text if "." in text else text + ".0"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
        return "'" + escaped.replace("\t", "\\t") + "'"
    if isinstance(value, DateTime):
        text = str(value)
        return "@" + text if "T" in text else "@" + text + "T"
    if isinstance(value, Date):
        return "@" + str(value)
    if isinstance(value, Time):
        return "@T" + str(value)
    raise TypeError(f"no FHIRPath literal for {type(value).__name__}")


# -- constants and where ---------------------------------------------------------------------------------------
def _parse_constants(raw: Any) -> dict[str, object]:
    if not isinstance(raw, list):
        raise ViewDefinitionError("constant", "must be a list")
    constants: dict[str, object] = {}
    for i, item in enumerate(raw):
        loc = f"constant[{i}]"
        if not isinstance(item, dict):
            raise ViewDefinitionError(loc, "must be an object with name and value[x]")
        name = item.get("name")
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ViewDefinitionError(f"{loc}.name", f"{name!r} is not a valid constant name")
        if name in constants:
            raise ViewDefinitionError(f"{loc}.name", f"duplicate constant {name!r}")
        if name in _ENVIRONMENT:
            raise ViewDefinitionError(f"{loc}.name", f"%{name} is an environment variable, not a constant name")
        values = [k for k in item if k.startswith("value")]
        if len(values) != 1:
            raise ViewDefinitionError(loc, f"constant {name!r} needs exactly one value[x], found {len(values)}")
        constants[name] = _constant_value(values[0], item[values[0]], f"{loc}.{values[0]}")
    return constants


def _constant_value(key: str, value: Any, loc: str) -> object:
    """The Python value of `value[x]`, checked against its FHIR type."""
    kind = key[len("value") :]
    if kind in _STRING_VALUES and isinstance(value, str):
        return value
    if kind == "Boolean" and isinstance(value, bool):
        return value
    if kind in _INTEGER_VALUES and isinstance(value, int) and not isinstance(value, bool):
        if (kind == "PositiveInt" and value < 1) or (kind == "UnsignedInt" and value < 0):
            raise ViewDefinitionError(loc, f"{value} is out of range for {kind}")
        return value
    if kind == "Decimal" and isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return value if isinstance(value, Decimal) else Decimal(repr(value))
    parsed = _temporal_constant(kind, value)
    if parsed is not None:
        return parsed
    raise ViewDefinitionError(loc, f"{value!r} is not a valid {kind or 'value'} constant")


def _temporal_constant(kind: str, value: Any) -> Date | DateTime | Time | None:
    if not isinstance(value, str):
        return None
    if kind == "Date":
        return parse_date(value)
    if kind in ("DateTime", "Instant"):
        return parse_datetime(value)
    if kind == "Time":
        return parse_time(value)
    return None


def _parse_where(raw: Any, constants: dict[str, object]) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise ViewDefinitionError("where", "must be a list")
    paths = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ViewDefinitionError(f"where[{i}]", "must be an object with a path")
        paths.append(_checked_path(item.get("path"), f"where[{i}].path", constants))
    return tuple(paths)


# -- select ------------------------------------------------------------------------------------------------------
def _parse_select(raw: Any, loc: str, constants: dict[str, object]) -> Select:
    if not isinstance(raw, dict):
        raise ViewDefinitionError(loc, "a select element must be an object")
    unknown = sorted(set(raw) - _SELECT_KEYS)
    if unknown:
        raise ViewDefinitionError(f"{loc}.{unknown[0]}", "unknown element of a select")
    if "forEach" in raw and "forEachOrNull" in raw:
        raise ViewDefinitionError(loc, "forEach and forEachOrNull cannot both be given")
    for_each = _optional_path(raw, "forEach", loc, constants)
    for_each_or_null = _optional_path(raw, "forEachOrNull", loc, constants)
    repeat = _parse_repeat(raw, loc, constants)
    columns = tuple(_parse_column(c, f"{loc}.column[{i}]", constants) for i, c in enumerate(_list(raw, "column", loc)))
    selects = tuple(_parse_select(s, f"{loc}.select[{i}]", constants) for i, s in enumerate(_list(raw, "select", loc)))
    union_all = tuple(
        _parse_select(s, f"{loc}.unionAll[{i}]", constants) for i, s in enumerate(_list(raw, "unionAll", loc))
    )
    if "unionAll" in raw and not union_all:
        raise ViewDefinitionError(f"{loc}.unionAll", "must list at least one select")
    if not (columns or selects or union_all):
        raise ViewDefinitionError(loc, "a select needs column, select or unionAll")
    return Select(columns, selects, union_all, for_each, for_each_or_null, repeat)


def _list(raw: dict[str, Any], key: str, loc: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ViewDefinitionError(f"{loc}.{key}", "must be a list")
    return value


def _optional_path(raw: dict[str, Any], key: str, loc: str, constants: dict[str, object]) -> str | None:
    if key not in raw:
        return None
    return _checked_path(raw[key], f"{loc}.{key}", constants)


def _parse_repeat(raw: dict[str, Any], loc: str, constants: dict[str, object]) -> tuple[str, ...] | None:
    if "repeat" not in raw:
        return None
    paths = raw["repeat"]
    if not isinstance(paths, list) or not paths:
        raise ViewDefinitionError(f"{loc}.repeat", "must be a non-empty list of FHIRPath expressions")
    return tuple(_checked_path(p, f"{loc}.repeat[{i}]", constants) for i, p in enumerate(paths))


def _parse_column(raw: Any, loc: str, constants: dict[str, object]) -> Column:
    if not isinstance(raw, dict):
        raise ViewDefinitionError(loc, "a column must be an object with name and path")
    unknown = sorted(set(raw) - _COLUMN_KEYS)
    if unknown:
        raise ViewDefinitionError(f"{loc}.{unknown[0]}", "unknown element of a column")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ViewDefinitionError(
            f"{loc}.name", f"{name!r} is not a valid column name (a letter, then letters, digits or _)"
        )
    path = _checked_path(raw.get("path"), f"{loc}.path", constants)
    type_ = raw.get("type")
    if type_ is not None and (not isinstance(type_, str) or not type_):
        raise ViewDefinitionError(f"{loc}.type", f"{type_!r} is not a FHIR type name")
    collection = raw.get("collection", False)
    if not isinstance(collection, bool):
        raise ViewDefinitionError(f"{loc}.collection", "must be true or false")
    return Column(name, path, type_, collection)


# -- paths -------------------------------------------------------------------------------------------------------
def _checked_path(path: Any, loc: str, constants: dict[str, object]) -> str:
    """The FHIRPath text, after checking its syntax and that every `%name` it reads is defined."""
    if not isinstance(path, str) or not path.strip():
        raise ViewDefinitionError(loc, f"{path!r} is not a FHIRPath expression")
    try:
        tree = parse(path)
    except FHIRPathError as e:
        raise ViewDefinitionError(loc, f"invalid FHIRPath {path!r}: {e}") from e
    for name in _variables(tree):
        if name not in constants and name not in _ENVIRONMENT and not name.startswith(("vs-", "ext-")):
            raise ViewDefinitionError(loc, f"undefined constant %{name}")
    return path


def _variables(node: Any) -> list[str]:
    """Names of the `%variables` an expression tree reads."""
    if isinstance(node, list | tuple):
        return [name for child in node for name in _variables(child)]
    if not isinstance(node, Node):
        return []
    if node.kind == "var":
        return [node.args[0]]
    return _variables(node.args)


# -- output columns ----------------------------------------------------------------------------------------------
def _select_columns(select: Select, loc: str) -> list[tuple[str, str]]:
    """(name, location) of the columns a select produces, in spec order; unionAll branches must agree."""
    columns = [(c.name, f"{loc}.column[{i}].name") for i, c in enumerate(select.columns)]
    for i, nested in enumerate(select.selects):
        columns.extend(_select_columns(nested, f"{loc}.select[{i}]"))
    if select.union_all:
        first = _select_columns(select.union_all[0], f"{loc}.unionAll[0]")
        for i, branch in enumerate(select.union_all[1:], start=1):
            other = [name for name, _ in _select_columns(branch, f"{loc}.unionAll[{i}]")]
            if other != [name for name, _ in first]:
                raise ViewDefinitionError(
                    f"{loc}.unionAll[{i}]",
                    f"columns {other} differ from those of unionAll[0] {[n for n, _ in first]} "
                    "(names and order must match)",
                )
        columns.extend(first)
    return columns


def _check_unique(columns: list[tuple[str, str]]) -> None:
    seen: set[str] = set()
    for name, loc in columns:
        if name in seen:
            raise ViewDefinitionError(loc, f"duplicate column name {name!r}")
        seen.add(name)
