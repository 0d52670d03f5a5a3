"""Syntax tree -> Python function, specialised for the type of the input resource.

Each node becomes a Python expression over lists; the whole expression becomes one function compiled with
`exec`. The compiler tracks the static type of every sub-expression (a set of (type, context) pairs from the
model), so `Observation.code.coding` turns into plain dictionary/list comprehensions, a choice element becomes
the list of JSON keys to probe, and `value as Quantity` probes only `valueQuantity`. Where the type is not
known statically (after `resolve()`, `children()`, in an unknown input), navigation falls back to a dynamic
walker that still uses the model for resources.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal, DecimalException
from typing import Any

from sante.fhir.model import Child, r4
from sante.fhirpath import functions as F
from sante.fhirpath import navigation as N
from sante.fhirpath.errors import FHIRPathError
from sante.fhirpath.nodes import PrimNode, runtime_type
from sante.fhirpath.parser import Node
from sante.fhirpath.quantity import Quantity
from sante.fhirpath.temporal import Date, DateTime, Time
from sante.fhirpath.types import SYSTEM_TYPES, parse_type_spec, type_matches

# A static type: None (unknown) or a frozenset of (type name, context) pairs. System types have no context.
SType = frozenset[tuple[str, str | None]] | None


def _sys(name: str) -> SType:
    return frozenset({("System." + name, None)})


BOOL, INT, DEC, STR = _sys("Boolean"), _sys("Integer"), _sys("Decimal"), _sys("String")
_LIT_TYPES = {n: _sys(n) for n in SYSTEM_TYPES}

_BUILTIN_VARS = {
    "ucum": "http://unitsofmeasure.org",
    "sct": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
}

_BINARY_HELPERS = {
    "=": "op_eq",
    "!=": "op_ne",
    "~": "op_equiv",
    "!~": "op_nequiv",
    "<": "op_lt",
    "<=": "op_le",
    ">": "op_gt",
    ">=": "op_ge",
    "and": "op_and",
    "or": "op_or",
    "xor": "op_xor",
    "implies": "op_implies",
    "in": "op_in",
    "contains": "op_contains",
    "|": "op_union",
    "+": "op_plus",
    "-": "op_minus",
    "*": "op_times",
    "/": "op_divide",
    "div": "op_div",
    "mod": "op_mod",
    "&": "op_concat",
}
_BINARY_TYPES: dict[str, SType] = {
    "=": BOOL,
    "!=": BOOL,
    "~": BOOL,
    "!~": BOOL,
    "<": BOOL,
    "<=": BOOL,
    ">": BOOL,
    ">=": BOOL,
    "and": BOOL,
    "or": BOOL,
    "xor": BOOL,
    "implies": BOOL,
    "in": BOOL,
    "contains": BOOL,
    "&": STR,
}

# name -> (min args, max args, helper, result type); "keep" = same static type as the input.
_SIMPLE: dict[str, tuple[int, int, str, Any]] = {
    "empty": (0, 0, "fn_empty", BOOL),
    "exists": (0, 0, "fn_exists", BOOL),
    "not": (0, 0, "fn_not", BOOL),
    "count": (0, 0, "fn_count", INT),
    "first": (0, 0, "fn_first", "keep"),
    "last": (0, 0, "fn_last", "keep"),
    "tail": (0, 0, "fn_tail", "keep"),
    "skip": (1, 1, "fn_skip", "keep"),
    "take": (1, 1, "fn_take", "keep"),
    "single": (0, 0, "fn_single", "keep"),
    "distinct": (0, 0, "distinct", "keep"),
    "isDistinct": (0, 0, "fn_is_distinct", BOOL),
    "union": (1, 1, "op_union", "union"),
    "combine": (1, 1, "fn_combine", "union"),
    "intersect": (1, 1, "fn_intersect", "keep"),
    "exclude": (1, 1, "fn_exclude", "keep"),
    "subsetOf": (1, 1, "fn_subset_of", BOOL),
    "supersetOf": (1, 1, "fn_superset_of", BOOL),
    "allTrue": (0, 0, "fn_all_true", BOOL),
    "anyTrue": (0, 0, "fn_any_true", BOOL),
    "allFalse": (0, 0, "fn_all_false", BOOL),
    "anyFalse": (0, 0, "fn_any_false", BOOL),
    "join": (0, 1, "fn_join", STR),
    "abs": (0, 0, "fn_abs", None),
    "ceiling": (0, 0, "fn_ceiling", INT),
    "floor": (0, 0, "fn_floor", INT),
    "truncate": (0, 0, "fn_truncate", INT),
    "exp": (0, 0, "fn_exp", DEC),
    "ln": (0, 0, "fn_ln", DEC),
    "log": (1, 1, "fn_log", DEC),
    "power": (1, 1, "fn_power", None),
    "sqrt": (0, 0, "fn_sqrt", DEC),
    "round": (0, 1, "fn_round", DEC),
    "sum": (0, 0, "fn_sum", None),
    "min": (0, 0, "fn_min", "keep"),
    "max": (0, 0, "fn_max", "keep"),
    "avg": (0, 0, "fn_avg", None),
    "precision": (0, 0, "fn_precision", INT),
    "comparable": (1, 1, "fn_comparable", BOOL),
    "extension": (1, 1, "fn_extension", frozenset({("Extension", "Extension")})),
    "hasValue": (0, 0, "fn_has_value", BOOL),
    "getValue": (0, 0, "fn_get_value", None),
    "children": (0, 0, "children", None),
    "descendants": (0, 0, "descendants", None),
    "memberOf": (1, 1, "member_of", BOOL),
    "conformsTo": (1, 1, "conforms_to", BOOL),
    "htmlChecks": (0, 0, "fn_exists", BOOL),
}
_STRING_TYPES: dict[str, tuple[int, int, SType]] = {
    "indexOf": (1, 1, INT),
    "substring": (1, 2, STR),
    "startsWith": (1, 1, BOOL),
    "endsWith": (1, 1, BOOL),
    "contains": (1, 1, BOOL),
    "upper": (0, 0, STR),
    "lower": (0, 0, STR),
    "replace": (2, 2, STR),
    "matches": (1, 1, BOOL),
    "matchesFull": (1, 1, BOOL),
    "replaceMatches": (2, 2, STR),
    "length": (0, 0, INT),
    "toChars": (0, 0, STR),
    "split": (1, 1, STR),
    "trim": (0, 0, STR),
    "encode": (1, 1, STR),
    "decode": (1, 1, STR),
    "escape": (1, 1, STR),
    "unescape": (1, 1, STR),
}
_CONVERSIONS = {"Integer", "Decimal", "Boolean", "String", "Quantity", "Date", "DateTime", "Time"}
_LAMBDA = {
    "where": (1, 1),
    "select": (1, 1),
    "all": (1, 1),
    "exists": (1, 1),
    "repeat": (1, 1),
    "aggregate": (1, 2),
    "sort": (0, 99),
    "iif": (2, 3),
    "trace": (1, 2),
}
_TYPE_FUNCS = {"is", "as", "ofType"}
_ORDERED = {"skip", "take", "first", "last", "tail", "single"}
_NOW = {
    "now": ("now", _sys("DateTime")),
    "today": ("today", _sys("Date")),
    "timeOfDay": ("time_of_day", _sys("Time")),
}


class Scope:
    """What `$this`, `$index`, `$total` mean at a point of the expression."""

    __slots__ = ("index", "this", "this_type", "top", "total")

    def __init__(
        self,
        this: str,
        this_type: SType,
        index: str | None = None,
        total: str | None = None,
        top: bool = False,
    ) -> None:
        self.this, self.this_type, self.index, self.total, self.top = this, this_type, index, total, top


class Compiler:
    """Generates the Python source of one specialisation (input resource type `root_type`)."""

    # Constant folding of literal-only sub-expressions (see `fold`); a switch for tests and measurements.
    fold_constants = True
    # Typed scalar code for operators/functions over literal-derived values (see `scalar_of`); a switch for tests.
    scalar_fast_paths = True

    def __init__(self, expression: str, root_type: str | None, strict: bool) -> None:
        self.expression = expression
        self.root_type = root_type
        self.strict = strict
        self.model = r4()
        self.ns: dict[str, Any] = {name: getattr(F, name) for name in dir(F) if not name.startswith("__")}
        self.ns.update(
            DN=N.dynamic_nav,
            TF=N.filter_resource_type,
            PrimNode=PrimNode,
            truthy=F.truthy,
            STRF=F.STRING_FUNCTIONS,
            runtime_type=runtime_type,
            type_matches=type_matches,
            is_result=_is_result,
            is_choice=_is_choice,
            as_single=_as_single,
            type_filter=_type_filter,
            unwrap_result=_unwrap_result,
            one=_one,
            one_conv=_one_conv,
        )
        self.ns["translate_error"] = translate_error
        self.counter = 0
        self._consts: dict[int, str] = {}
        # compile_many: pure navigation from the root, evaluated once per call into named locals.
        self.hoist: dict[str, str] | None = None
        self.hoisted: list[str] = []
        self._literal_memo: dict[int, bool] = {}
        # Scalar forms: list code -> (Python expression for the value or None when empty, type tag, never empty).
        self.scal: dict[str, tuple[str, str, bool]] = {}
        # After build(): the code reads neither the input nor the variables, so it is the same for every root.
        self.input_free = False

    # -- helpers ------------------------------------------------------------------------------------------------
    def error(self, message: str, node: Node, kind: str = "semantic") -> FHIRPathError:
        return FHIRPathError(message, self.expression, node.pos, kind)

    def const(self, value: Any) -> str:
        name = f"K{len(self.ns)}"
        self.ns[name] = value
        return name

    def fresh(self) -> int:
        self.counter += 1
        return self.counter

    def body(self, tree: Node) -> str:
        """The Python expression for a whole FHIRPath expression, PrimNodes unwrapped where there can be any."""
        code, st = self.gen(tree, Scope("T0", self._root_type_set(), top=True))
        if not _prim_free(tree) and (
            st is None or any(t is None or not t[0][0].isupper() or t[0].startswith("System.") for t in st)
        ):
            code = f"unwrap_result({code})"
        return code

    def result_type(self, tree: Node) -> SType:
        """The static types of the expression's result for the root type: {(type name, context)} or None."""
        return self.gen(tree, Scope("T0", self._root_type_set(), top=True))[1]

    def build(self, tree: Node) -> Callable[..., list[Any]]:
        """One function `fn(resource, variables=None) -> list`; evaluation errors raise FHIRPathError."""
        code = self.body(tree)
        expr = self.const(self.expression)
        self.input_free = _INPUT_NAMES.search(code) is None
        lines = [*_prologue(code), f"return {code}"]
        src = (
            "def _fp(resource, variables=None):\n    try:\n"
            + "".join(f"        {line}\n" for line in lines)
            + f"    except Exception as e:\n        raise translate_error(e, {expr})\n"
        )
        return self._exec(src, "_fp")

    def build_many(
        self, expressions: list[str], trees: list[Node], slow: Callable[..., list[Any]]
    ) -> Callable[..., list[Any]]:
        """One function evaluating every expression: `fn(resource, variables=None) -> [result or exception]`.

        Pure navigation from the root that several expressions share (`Observation.subject`) is computed once,
        up front; should that raise, `slow` (expression by expression) answers instead. Each expression runs in
        its own try block, so one failing leaves the others' results intact.
        """
        self.hoist = {}
        slots: list[str] = []
        for i, (expression, tree) in enumerate(zip(expressions, trees, strict=True)):
            self.expression = expression
            expr = self.const(expression)
            try:
                code = self.body(tree)
            except FHIRPathError as e:  # e.g. a choice element named by its JSON key: fails for every input
                slots.append(f"    r{i} = {self.const(e)}\n")
                continue
            slots.append(
                f"    try:\n        r{i} = {code}\n"
                f"    except Exception as e:\n        r{i} = translate_error(e, {expr})\n"
            )
        self.ns["SLOW"] = slow
        everything = "".join(slots) + "".join(self.hoisted)
        head = "".join(f"    {line}\n" for line in _prologue(everything))
        hoisted = ""
        if self.hoisted:
            hoisted = (
                "    try:\n"
                + "".join(f"        {h}\n" for h in self.hoisted)
                + "    except Exception:\n        return SLOW(resource, variables)\n"
            )
        results = ", ".join(f"r{i}" for i in range(len(slots)))
        src = f"def _fpm(resource, variables=None):\n{head}{hoisted}{''.join(slots)}    return [{results}]\n"
        return self._exec(src, "_fpm")

    def _exec(self, src: str, name: str) -> Callable[..., list[Any]]:
        exec(compile(src, "<fhirpath>", "exec"), self.ns)
        fn: Callable[..., list[Any]] = self.ns[name]
        fn.__doc__ = src
        return fn

    def _root_type_set(self) -> SType:
        if self.root_type is None:
            return None
        return frozenset({(self.root_type, self.root_type)})

    # -- generation ---------------------------------------------------------------------------------------------
    def gen(self, node: Node, scope: Scope) -> tuple[str, SType]:
        code, st = self._gen(node, scope)
        kind = node.kind
        if kind in _FOLDABLE_KINDS and self.fold_constants and self._literal(node):
            code = self.fold(code)
        elif self.hoist is not None and scope.top and scope.this == "T0" and _root_path(node):
            code = self.hoist_nav(code)
        return code, st

    def fold(self, code: str) -> str:
        """Constant folding: a literal-only, deterministic sub-expression evaluated now. Anything that raises
        (or yields a mutable item) stays as code, so errors still happen at evaluation time."""
        try:
            value = eval(code, self.ns)
        except Exception:
            return code
        if type(value) is not list or any(type(x) not in _IMMUTABLE for x in value):
            return code
        return "[" + ", ".join(self.const(x) for x in value) + "]"

    def hoist_nav(self, code: str) -> str:
        if code in ("T0", "[]") or code in self.hoist.values():  # type: ignore[union-attr]
            return code
        name = self.hoist.get(code)  # type: ignore[union-attr]
        if name is None:
            name = self.hoist[code] = f"h{len(self.hoist)}"  # type: ignore[index,arg-type]
            self.hoisted.append(f"{name} = {code}")
        return name

    # -- scalars ------------------------------------------------------------------------------------------------
    # Where a value's type is statically Integer, Decimal, String or Boolean and it holds at most one item (a
    # literal, an operator or function over such values), the generated code keeps it as a plain Python value
    # (None: empty) and operators become Python operators. Values read from data never get a scalar form: they
    # may be PrimNodes, floats or several items, and date/time/quantity comparisons keep their helpers (precision).
    def scalar_of(self, code: str) -> tuple[str, str, bool] | None:
        """(scalar expression, type tag I/D/S/B, or E for `{}`, never empty) for list code, or None."""
        if not self.scalar_fast_paths:
            return None
        r = self.scal.get(code)
        if r is not None:
            return r
        if code == "[]":
            return ("None", "E", False)
        m = _KLIT.fullmatch(code)
        if m is not None:
            tag = _SC_TAGS.get(type(self.ns[m[1]]))
            if tag is not None:
                return (m[1], tag, True)
        return None

    def emit(self, scode: str, tag: str, one: bool) -> tuple[str, SType]:
        """List code for a scalar expression (registered, so enclosing operators can use the scalar)."""
        code = f"[{scode}]" if one else f"one({scode})"
        self.scal[code] = (scode, tag, one)
        return code, _TAG_ST[tag]

    def truth(self, code: str) -> str:
        """Python condition for a criterion (where/exists/all/iif): `truthy(code)`, inlined for booleans."""
        sc = self.scalar_of(code)
        if sc is not None and sc[1] == "B":
            return sc[0] if sc[2] else f"({sc[0]} is True)"
        return f"truthy({code})"

    def scalar_binary(self, op: str, lcode: str, rcode: str) -> tuple[str, SType] | None:
        a, b = self.scalar_of(lcode), self.scalar_of(rcode)
        if a is None or b is None:
            return None
        (x, ta, oa), (y, tb, ob) = a, b
        both = oa and ob
        if op in _BOOL_OPS:
            if ta not in ("B", "E") or tb not in ("B", "E"):
                return None
            # Both certainly booleans: bitwise operators on bools give bools, and evaluate both sides.
            if both:
                return self.emit(_BOOL_OPS[op].format(x, y), "B", True)
            return self.emit(f"s_{op}({x}, {y})", "B", False)
        if ta == "E" or tb == "E":
            return None
        num = ta in ("I", "D") and tb in ("I", "D")
        if op in _CMP_OPS and (num or (ta == tb and (op in ("=", "!=") or ta == "S"))):
            pyop, helper = _CMP_OPS[op]
            if both:
                return self.emit(f"({x} {pyop} {y})", "B", True)
            return self.emit(f"{helper}({x}, {y})", "B", False)
        if op in _ARITH_OPS and (num or (op == "+" and ta == tb == "S")):
            tag = ta if ta == tb else "D"
            pyop, helper = _ARITH_OPS[op]
            if both:
                return self.emit(f"({x} {pyop} {y})", tag, True)
            return self.emit(f"{helper}({x}, {y})", tag, False)
        if num and op == "/":
            return self.emit(f"s_divide({x}, {y})", "D", False)
        if num and op == "div":
            return self.emit(f"s_idiv({x}, {y})", "I", False)
        if num and op == "mod":
            return self.emit(f"s_mod({x}, {y})", "I" if ta == tb == "I" else "D", False)
        if op == "&" and ta == tb == "S":
            if both:
                return self.emit(f"({x} + {y})", "S", True)
            return self.emit(f"(({x} or '') + ({y} or ''))", "S", True)
        if op in ("~", "!~") and both:
            if ta == tb == "S":
                expr = f"s_str_equiv({x}, {y})"
            elif ta == tb == "B":
                expr = f"({x} is {y})"
            elif ta == tb == "I":
                expr = f"({x} == {y})"
            elif num:
                expr = f"s_num_equiv({x}, {y})"
            else:
                return None
            return self.emit(expr if op == "~" else f"(not {expr})", "B", True)
        return None

    def scalar_call(self, name: str, focus: str, argc: list[str]) -> tuple[str, SType] | None:
        """Functions with an inline form: on any list (exists, empty, count, first...) or on scalars."""
        if not self.scalar_fast_paths:
            return None
        if not argc:
            if name == "exists":
                return self.emit(f"(not not {focus})", "B", True)
            if name == "empty":
                return self.emit(f"(not {focus})", "B", True)
            if name == "count":
                return self.emit(f"len({focus})", "I", True)
        sc = self.scalar_of(focus)
        if sc is None:
            return None
        x, tag, one = sc
        if name == "not" and not argc and tag in ("B", "E"):
            return self.emit(f"(not {x})", "B", True) if one else self.emit(f"s_not({x})", "B", False)
        if not one:
            return None
        args = [self.scalar_of(a) for a in argc]
        if not all(a is not None and a[2] and a[1] == "S" for a in args):
            return None
        y = [a[0] for a in args if a is not None]
        if tag == "S" and name in _STR_INLINE and len(y) == _STR_INLINE[name][1]:
            template, _, rtag = _STR_INLINE[name]
            return self.emit(template.format(x, *y), rtag, True)
        if y:
            return None
        if name.startswith("to") and name[2:] in _SC_CONV:
            conv = self.const(F.CONVERTERS[name[2:]])
            return self.emit(f"{conv}({x})", _SC_CONV[name[2:]], False)
        if name.startswith("convertsTo") and name[10:] in _SC_CONV:
            conv = self.const(F.CONVERTERS[name[10:]])
            return self.emit(f"({conv}({x}) is not None)", "B", True)
        if tag in ("I", "D") and name in _NUM_INLINE:
            fn = self.const(_NUM_INLINE[name])
            return self.emit(f"{fn}({x})", tag if name == "abs" else "I", True)
        return None

    def _literal(self, node: Node) -> bool:
        """The node's value depends on literals only, through deterministic operators and functions."""
        key = id(node)
        r = self._literal_memo.get(key)
        if r is None:
            r = self._literal_memo[key] = _is_literal(node)
        return r

    def _gen(self, node: Node, scope: Scope) -> tuple[str, SType]:
        kind = node.kind
        if kind == "lit":
            value, systype = node.args
            return f"[{self.const(value)}]", _LIT_TYPES[systype]
        if kind == "quantity":
            return f"[{self.const(node.args[0])}]", _sys("Quantity")
        if kind == "empty":
            return "[]", None
        if kind == "ident":
            return self.gen_identifier(node, scope)
        if kind == "member":
            base, name = node.args
            code, st = self.gen(base, scope)
            return self.gen_nav(code, st, name, node)
        if kind == "call":
            base, name, args = node.args
            if base is None:
                return self.gen_call(node, scope.this, scope.this_type, None, name, args, scope)
            code, st = self.gen(base, scope)
            return self.gen_call(node, code, st, base, name, args, scope)
        if kind == "index":
            base, idx = node.args
            code, st = self.gen(base, scope)
            icode, _ = self.gen(idx, scope)
            return f"index({code}, {icode})", st
        if kind == "this":
            return scope.this, scope.this_type
        if kind == "index_var":
            if scope.index is None:
                raise self.error("$index outside an iteration", node)
            return f"[{scope.index}]", INT
        if kind == "total":
            if scope.total is None:
                raise self.error("$total outside aggregate()", node)
            return scope.total, None
        if kind == "var":
            return self.gen_variable(node)
        if kind == "unary":
            op, operand = node.args
            code, st = self.gen(operand, scope)
            sc = self.scalar_of(code)
            if sc is not None and sc[1] in ("I", "D") and sc[2]:
                return self.emit(f"(-{sc[0]})" if op == "-" else sc[0], sc[1], True)
            return (f"op_negate({code})" if op == "-" else f"op_positive({code})"), st
        if kind == "binary":
            op, left, right = node.args
            lcode, lst = self.gen(left, scope)
            rcode, rst = self.gen(right, scope)
            st = _BINARY_TYPES.get(op)
            if op == "|":
                st = _union_type(lst, rst)
                # `A.x | B.y | ...` over several resource types: the branches for other types are empty.
                if lcode == "[]" or rcode == "[]":
                    other = rcode if lcode == "[]" else lcode
                    if other == "[]" or other.startswith("distinct("):
                        return other, st
                    return f"distinct({other})", st
            elif st is None and lst is not None and lst == rst and op in ("+", "-", "*"):
                st = lst
            fast = self.scalar_binary(op, lcode, rcode)
            if fast is not None:
                return fast
            return f"{_BINARY_HELPERS[op]}({lcode}, {rcode})", st
        if kind == "type_op":
            op, left, spec = node.args
            # The infix `x as T` filters like ofType(): R4 search parameters apply it to repeating elements
            # (`Observation.component.value as Quantity`); the function form `as(T)` keeps the single-item rule.
            return self.gen_type_op(node, "ofType" if op == "as" else op, left, None, spec, scope)
        raise self.error(f"unsupported syntax {kind}", node)  # pragma: no cover

    def gen_variable(self, node: Node) -> tuple[str, SType]:
        name = node.args[0]
        if name in ("context", "resource", "rootResource"):
            return f"(variable(V, {name!r}) if V and {name!r} in V else T0)", self._root_type_set()
        if name in _BUILTIN_VARS:
            return (
                f"(variable(V, {name!r}) if V and {name!r} in V else [{self.const(_BUILTIN_VARS[name])}])",
                STR,
            )
        if name.startswith("vs-"):
            return f"[{self.const('http://hl7.org/fhir/ValueSet/' + name[3:])}]", STR
        if name.startswith("ext-"):
            return f"[{self.const('http://hl7.org/fhir/StructureDefinition/' + name[4:])}]", STR
        return f"variable(V, {name!r})", None

    def gen_identifier(self, node: Node, scope: Scope) -> tuple[str, SType]:
        name = node.args[0]
        if scope.top and scope.this == "T0" and name[:1].isupper() and name in self.model.structures:
            # A path that starts with a type name only matches input of that type.
            if self.root_type is not None:
                if self.model.is_subtype(self.root_type, name):
                    return "T0", self._root_type_set()
                if self.strict and name not in self.model.resource_types:
                    raise self.error(f"{name} is not a resource type", node)
                st = frozenset({(name, name)}) if name not in N.ABSTRACT_CONTEXTS else None
                return "[]", st
            st = frozenset({(name, name)}) if name in self.model.resource_types else None
            return f"TF(T0, {name!r})", st
        return self.gen_nav(scope.this, scope.this_type, name, node)

    # -- navigation ---------------------------------------------------------------------------------------------
    def static_children(self, st: SType, name: str, node: Node) -> tuple[Child, ...] | None:
        """The children a step reaches from a static type, or None when it must be found at run time."""
        if st is None:
            return None
        kids: dict[str, Child] = {}
        for _tname, ctx in st:
            if N.is_dynamic_context(ctx):
                return None
            for c in self.model.children_named(ctx, name):  # type: ignore[arg-type]
                kids.setdefault(c.json_name, c)
        if not kids:
            for _tname, ctx in st:
                choice = self.model.children(ctx).get(name)  # type: ignore[arg-type]
                if choice is not None and choice.element.is_choice:
                    raise self.error(
                        f"{name!r} is not a FHIRPath name: use {choice.element.name!r} "
                        f"(with 'as' or 'ofType' to pick a type)",
                        node,
                    )
            if self.strict:
                types = ", ".join(sorted(t for t, _ in st))
                raise self.error(f"{types} has no element {name!r}", node)
            return None
        if (
            self.strict
            and len(kids) == 1
            and next(iter(kids.values())).element.is_choice
            and name != next(iter(kids.values())).element.name
        ):
            raise self.error(f"use {name!r} through its choice name", node)  # pragma: no cover
        return tuple(kids.values())

    def gen_nav(self, focus: str, st: SType, name: str, node: Node) -> tuple[str, SType]:
        kids = self.static_children(st, name, node)
        if focus == "[]":
            return "[]", (None if kids is None else self.nav_code("F0", kids)[1])
        if kids is None:
            return f"DN({focus}, {name!r})", None
        return self.nav_code(focus, kids)

    def nav_code(self, focus: str, kids: tuple[Child, ...]) -> tuple[str, SType]:
        out_types = set()
        dynamic = False
        for c in kids:
            t = N.child_type(c)
            if t in N.ABSTRACT_CONTEXTS:
                dynamic = True
            out_types.add((t, c.context if not c.type.startswith("System.") else t))
        st: SType = None if dynamic else frozenset(out_types)
        if focus == "[]":
            return "[]", st
        if len(kids) == 1 and not kids[0].is_primitive and not kids[0].type.startswith("System."):
            key = kids[0].json_name
            n = self.fresh()
            if focus == "T0":
                # The input itself: one dictionary, no loop.
                if kids[0].is_array:
                    return f"(list(R.get({key!r}) or ()) if type(R) is dict else [])", st
                return f"(one(R.get({key!r})) if type(R) is dict else [])", st
            if kids[0].is_array:
                return (
                    f"[y{n} for x{n} in {focus} if type(x{n}) is dict for y{n} in x{n}.get({key!r}) or ()]",
                    st,
                )
            return (
                f"[y{n} for x{n} in {focus} if type(x{n}) is dict "
                f"for y{n} in (x{n}.get({key!r}),) if y{n} is not None]"
            ), st
        nav = self.const(N.make_navigator(kids))
        if len(kids) == 1 and (kids[0].is_primitive or kids[0].type.startswith("System.")):
            # One primitive element: read it directly; the navigator only runs for `_name` (extensions).
            key, ekey = kids[0].json_name, "_" + kids[0].json_name
            conv = N.CONVERSIONS.get(N.child_type(kids[0]))
            cv = self.const(conv) if conv is not None else None
            n = self.fresh()
            if kids[0].is_array:
                item = f"{cv}(v{n})" if cv else f"v{n}"
                fast_root = f"[{item} for v{n} in R.get({key!r}) or () if v{n} is not None]"
                fast_x = f"[{item} for v{n} in x{n}.get({key!r}) or () if v{n} is not None]"
            else:
                fast_root = f"one_conv(R.get({key!r}), {cv})" if cv else f"one(R.get({key!r}))"
                fast_x = f"one_conv(x{n}.get({key!r}), {cv})" if cv else f"(x{n}.get({key!r}),)"
            if focus == "T0":
                return f"({nav}([R]) if type(R) is not dict or {ekey!r} in R else {fast_root})", st
            return (
                f"[y{n} for x{n} in {focus} if type(x{n}) is dict for y{n} in "
                f"({nav}([x{n}]) if {ekey!r} in x{n} else {fast_x}) if y{n} is not None]"
            ), st
        return f"{nav}({focus})", st

    # -- functions ----------------------------------------------------------------------------------------------
    def check_arity(self, node: Node, name: str, args: list[Node], lo: int, hi: int) -> None:
        if not lo <= len(args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.error(f"{name}() takes {want} argument(s), got {len(args)}", node)

    def gen_call(
        self, node: Node, focus: str, st: SType, base: Node | None, name: str, args: list[Node], scope: Scope
    ) -> tuple[str, SType]:
        if (
            self.strict
            and name in _ORDERED
            and base is not None
            and base.kind == "call"
            and base.args[1] in ("children", "descendants")
        ):
            raise self.error(f"{name}() on an unordered collection", node)
        if name in _TYPE_FUNCS:
            self.check_arity(node, name, args, 1, 1)
            spec = _type_spec_of(args[0])
            if spec is None:
                raise self.error(f"{name}() needs a type name", args[0])
            return self.gen_type_op(node, name, base, (focus, st), spec, scope)
        if name in ("getResourceKey", "getReferenceKey"):
            return self.gen_key_call(node, focus, name, args)
        if name in _LAMBDA and not (name == "exists" and not args):
            lo, hi = _LAMBDA[name]
            self.check_arity(node, name, args, lo, hi)
            if focus == "[]" and name in ("where", "select", "repeat", "sort"):
                return "[]", st
            return self.gen_lambda(node, name, focus, st, args, scope)
        argc = [self.gen(a, scope)[0] for a in args]
        fast = self.scalar_call(name, focus, argc)
        if fast is not None:
            return fast
        if not args and name in _SLICES and self.scalar_fast_paths:
            return f"{focus}{_SLICES[name]}", st
        if name in _SIMPLE:
            lo, hi, helper, rtype = _SIMPLE[name]
            self.check_arity(node, name, args, lo, hi)
            if rtype == "keep":
                rtype = st
            elif rtype == "union":
                rtype = _union_type(st, self.gen(args[0], scope)[1])
            return f"{helper}({', '.join([focus, *argc])})", rtype
        if name in _STRING_TYPES:
            lo, hi, rtype = _STRING_TYPES[name]
            self.check_arity(node, name, args, lo, hi)
            return f"STRF[{name!r}]({', '.join([focus, *argc])})", rtype
        if name.startswith("to") and name[2:] in _CONVERSIONS:
            self.check_arity(node, name, args, 0, 1 if name == "toQuantity" else 0)
            return f"convert({', '.join([focus, repr(name[2:]), *argc])})", _sys(name[2:])
        if name.startswith("convertsTo") and name[10:] in _CONVERSIONS:
            self.check_arity(node, name, args, 0, 1 if name == "convertsToQuantity" else 0)
            return f"converts({', '.join([focus, repr(name[10:]), *argc])})", BOOL
        if name in ("lowBoundary", "highBoundary"):
            self.check_arity(node, name, args, 0, 1)
            digits = argc[0] if argc else "None"
            return f"boundary({focus}, {digits}, {name == 'highBoundary'})", st
        if name in _NOW:
            self.check_arity(node, name, args, 0, 0)
            helper, rtype = _NOW[name]
            return f"{helper}()", rtype
        if name == "resolve":
            self.check_arity(node, name, args, 0, 0)
            return f"resolve({focus}, R)", None
        if name == "type":
            self.check_arity(node, name, args, 0, 0)
            static = next(iter(st))[0] if st is not None and len(st) == 1 else None
            return f"fn_type({focus}, {static!r})", None
        raise self.error(f"unknown function {name}()", node)

    def gen_key_call(self, node: Node, focus: str, name: str, args: list[Node]) -> tuple[str, SType]:
        """SQL on FHIR's `getResourceKey()` and `getReferenceKey([type])`: keys that join a reference to its target."""
        if name == "getResourceKey":
            self.check_arity(node, name, args, 0, 0)
            return f"resource_key({focus})", STR
        self.check_arity(node, name, args, 0, 1)
        spec = _type_spec_of(args[0]) if args else None
        if args and spec is None:
            raise self.error("getReferenceKey() needs a resource type name", args[0])
        return f"reference_key({focus}, {spec!r})", STR

    def gen_lambda(
        self, node: Node, name: str, focus: str, st: SType, args: list[Node], scope: Scope
    ) -> tuple[str, SType]:
        n = self.fresh()
        t, i = f"_t{n}_", f"_i{n}_"
        inner = Scope(f"[{t}]", st, i, scope.total)
        if name == "where":
            body, _ = self.gen(args[0], inner)
            if i not in body:
                return f"[{t} for {t} in {focus} if {self.truth(body)}]", st
            return f"[{t} for {i}, {t} in enumerate({focus}) if {self.truth(body)}]", st
        if name == "select":
            body, bst = self.gen(args[0], inner)
            return f"[y{n} for {i}, {t} in enumerate({focus}) for y{n} in {body}]", bst
        if name == "exists":
            body, _ = self.gen(args[0], inner)
            return f"[any({self.truth(body)} for {i}, {t} in enumerate({focus}))]", BOOL
        if name == "all":
            body, _ = self.gen(args[0], inner)
            return f"[all({self.truth(body)} for {i}, {t} in enumerate({focus}))]", BOOL
        if name == "repeat":
            body, _ = self.gen(args[0], Scope(f"[{t}]", None, None, scope.total))
            return f"repeat({focus}, lambda {t}: {body})", None
        if name == "aggregate":
            total = f"tot{n}_"
            body, _ = self.gen(args[0], Scope(f"[{t}]", st, i, total))
            init = self.gen(args[1], scope)[0] if len(args) > 1 else "[]"
            return f"aggregate({focus}, lambda {t}, {i}, {total}: {body}, {init})", None
        if name == "sort":
            keys = []
            for a in args:
                desc = a.kind == "unary" and a.args[0] == "-"
                key_node = a.args[1] if desc else a
                body, _ = self.gen(key_node, Scope(f"[{t}]", st, None, scope.total))
                keys.append(f"(lambda {t}: {body}, {desc})")
            return f"sort({focus}, [{', '.join(keys)}])", st
        if name == "trace":
            label, _ = self.gen(args[0], scope)
            return f"trace({focus}, {label})", st
        if name == "iif":
            if node.args[0] is None:
                cscope = scope
                prefix, suffix = "", ""
            else:
                cscope = Scope(t, st, scope.index, scope.total)
                prefix, suffix = f"(lambda {t}: ", f")(iif_focus({focus}))"
            cond, cst = self.gen(args[0], cscope)
            if (
                self.strict
                and cst is not None
                and cst != BOOL
                and all(x[0].startswith("System.") for x in cst)
            ):
                raise self.error("iif() criterion is not a boolean", args[0])
            yes, yst = self.gen(args[1], cscope)
            no, nst = self.gen(args[2], cscope) if len(args) > 2 else ("[]", yst)
            sc = self.scalar_of(cond)
            test = self.truth(cond) if sc is not None and sc[1] == "B" else f"iif_test({cond})"
            return f"{prefix}({yes} if {test} else {no}){suffix}", _union_type(yst, nst)
        raise self.error(f"unknown function {name}()", node)  # pragma: no cover

    # -- types --------------------------------------------------------------------------------------------------
    def gen_type_op(
        self,
        node: Node,
        op: str,
        operand: Node | None,
        focus: tuple[str, SType] | None,
        spec: str,
        scope: Scope,
    ) -> tuple[str, SType]:
        """`is`/`as`/`ofType`. On a choice element the test becomes a choice of JSON keys."""
        ns, tname = parse_type_spec(spec, self.expression, node.pos)
        if op == "as" and not self.strict:
            # R4's own invariants apply as() to collections (dom-3: `descendants().as(canonical)`), so outside
            # strict mode it filters like ofType(); strict mode keeps the single-item rule.
            op = "ofType"
        exact = op != "is"
        target_st: SType = (
            _sys(tname)
            if ns == "System" or (ns is None and tname not in self.model.structures)
            else frozenset({(tname, tname)})
        )
        # A choice element navigated right here: pick the keys of the matching types.
        step = None
        if operand is not None and operand.kind in ("member", "ident"):
            step = operand
        if (
            op == "is"
            and operand is not None
            and operand.kind == "call"
            and operand.args[1] == "resolve"
            and not operand.args[2]
        ):
            base = operand.args[0]
            bcode = self.gen(base, scope)[0] if base is not None else scope.this
            spec_name = self.const(tname)
            return f"resolve_is({bcode}, R, {spec_name})", BOOL
        if step is not None and not (step.kind == "ident" and scope.top and step.args[0][:1].isupper()):
            if step.kind == "member":
                bcode, bst = self.gen(step.args[0], scope)
                name = step.args[1]
            else:
                bcode, bst = scope.this, scope.this_type
                name = step.args[0]
            kids = self.static_children(bst, name, step)
            if kids is not None and len(kids) > 1:
                matching = tuple(c for c in kids if type_matches(N.child_type(c), ns, tname, exact))
                mst = frozenset((N.child_type(c), c.context) for c in matching) if matching else target_st
                if op == "is":
                    allnav = self.const(N.make_navigator(kids))
                    if not matching:
                        return f"is_result({allnav}({bcode}), False)", BOOL
                    sub = self.const(N.make_navigator(matching))
                    n = self.fresh()
                    return f"(lambda b{n}: is_choice({allnav}(b{n}), {sub}(b{n})))({bcode})", BOOL
                if not matching:
                    code = "[]"
                else:
                    code, _ = self.nav_code(bcode, matching)
                if op == "as":
                    code = f"as_single({code})"
                return code, mst
        if focus is None:
            assert operand is not None
            code, st = self.gen(operand, scope)
        elif operand is not None:
            code, st = focus
        else:
            code, st = focus
        if st is not None:
            answers = {type_matches(t, ns, tname, exact) for t, _ in st}
            if len(answers) == 1 and None not in answers:
                verdict = answers.pop()
                if op == "is":
                    return f"is_result({code}, {verdict})", BOOL
                code = code if verdict else "[]"
                return (f"as_single({code})" if op == "as" else code), target_st
        spec_c = self.const((ns, tname, exact))
        if op == "is":
            return f"type_filter({code}, {spec_c}, 'is')", BOOL
        return f"type_filter({code}, {spec_c}, {op!r})", target_st


_INPUT_NAMES = re.compile(r"\b(R|T0|V)\b")
_KLIT = re.compile(r"\[(K\d+)\]")
# Python types of values with a scalar form (exact types: bool is not an Integer), and their static types.
_SC_TAGS = {bool: "B", int: "I", Decimal: "D", str: "S"}
_TAG_ST: dict[str, SType] = {"B": BOOL, "I": INT, "D": DEC, "S": STR, "E": None}
_BOOL_OPS = {"and": "({} & {})", "or": "({} | {})", "xor": "({} ^ {})", "implies": "((not {}) | {})"}
_CMP_OPS = {
    "=": ("==", "s_eq"),
    "!=": ("!=", "s_ne"),
    "<": ("<", "s_lt"),
    "<=": ("<=", "s_le"),
    ">": (">", "s_gt"),
    ">=": (">=", "s_ge"),
}
_ARITH_OPS = {"+": ("+", "s_add"), "-": ("-", "s_sub"), "*": ("*", "s_mul")}
# String functions on a String with String arguments: (template, argument count, result tag).
_STR_INLINE = {
    "length": ("len({})", 0, "I"),
    "upper": ("{}.upper()", 0, "S"),
    "lower": ("{}.lower()", 0, "S"),
    "trim": ("{}.strip()", 0, "S"),
    "startsWith": ("{}.startswith({})", 1, "B"),
    "endsWith": ("{}.endswith({})", 1, "B"),
    "contains": ("({1} in {0})", 1, "B"),
    "replace": ("{}.replace({}, {})", 2, "S"),
}
_SC_CONV = {"Integer": "I", "Decimal": "D", "Boolean": "B", "String": "S"}
_NUM_INLINE = {"ceiling": math.ceil, "floor": math.floor, "truncate": int, "abs": abs}
_SLICES = {"first": "[:1]", "last": "[-1:]", "tail": "[1:]"}
_FOLDABLE_KINDS = frozenset({"binary", "unary", "call", "index", "type_op", "member"})
_IMMUTABLE = frozenset({bool, int, str, Decimal, Date, DateTime, Time, Quantity})
# Deterministic functions that may be evaluated at compile time on literal input (never now(), today(),
# timeOfDay(), trace(), resolve(), memberOf(), conformsTo(), nor any function taking an expression argument).
_FOLDABLE_FUNCS = (
    (set(_SIMPLE) - {"memberOf", "conformsTo", "htmlChecks", "children", "descendants", "extension"})
    | set(_STRING_TYPES)
    | {"to" + t for t in _CONVERSIONS}
    | {"convertsTo" + t for t in _CONVERSIONS}
    | {"lowBoundary", "highBoundary", "type"}
    | _TYPE_FUNCS
)
# Results of these never hold a PrimNode: fresh values computed from unwrapped operands.
_FRESH_BINARY = frozenset(_BINARY_HELPERS) - {"|"}
_FRESH_CALLS = (
    {n for n, v in _SIMPLE.items() if v[3] != "keep" and v[3] != "union" and v[3] is not None}
    | set(_STRING_TYPES)
    | {"to" + t for t in _CONVERSIONS}
    | {"convertsTo" + t for t in _CONVERSIONS}
    | {"lowBoundary", "highBoundary", "type", "now", "today", "timeOfDay", "exists", "all", "is"}
) - {"extension", "children", "descendants", "getValue", "abs", "sum", "avg", "power"}
_PASS_CALLS = {n for n, v in _SIMPLE.items() if v[3] == "keep"} | {"where", "trace", "sort", "as", "ofType"}


def _is_literal(node: Node) -> bool:
    kind = node.kind
    if kind in ("lit", "quantity", "empty"):
        return True
    if kind == "binary":
        return _is_literal(node.args[1]) and _is_literal(node.args[2])
    if kind == "unary":
        return _is_literal(node.args[1])
    if kind == "index":
        return _is_literal(node.args[0]) and _is_literal(node.args[1])
    if kind == "member":
        return _is_literal(node.args[0])
    if kind == "type_op":
        return _is_literal(node.args[1])
    if kind == "call":
        base, name, args = node.args
        if base is None or name not in _FOLDABLE_FUNCS or not _is_literal(base):
            return False
        if name in _TYPE_FUNCS:
            return True
        if name == "exists" and args:
            return False
        return all(_is_literal(a) for a in args)
    return False


def _prim_free(node: Node) -> bool:
    """The node's result certainly holds no PrimNode (so the result needs no unwrapping)."""
    kind = node.kind
    if kind in ("lit", "quantity", "empty", "index_var"):
        return True
    if kind == "binary":
        op, left, right = node.args
        return op in _FRESH_BINARY or (_prim_free(left) and _prim_free(right))
    if kind == "unary":
        return node.args[0] == "-" or _prim_free(node.args[1])
    if kind == "index":
        return _prim_free(node.args[0])
    if kind == "type_op":
        return node.args[0] == "is" or _prim_free(node.args[1])
    if kind == "call":
        base, name, args = node.args
        if name in ("union", "combine") and args:
            return base is not None and _prim_free(base) and _prim_free(args[0])
        if name == "select" and args:
            return _prim_free(args[0])
        if name == "iif" and len(args) >= 2:
            return all(_prim_free(a) for a in args[1:])
        if name in _FRESH_CALLS:
            return True
        if name in _PASS_CALLS:
            return base is not None and _prim_free(base)
    return False


def _root_path(node: Node) -> bool:
    """A path of plain navigation steps from the input (`Observation.subject`, `(value as Quantity)`)."""
    while True:
        kind = node.kind
        if kind == "ident":
            return True
        if kind == "member":
            node = node.args[0]
        elif kind == "type_op" and node.args[0] in ("as", "ofType"):
            node = node.args[1]
        elif kind == "call" and node.args[1] in ("as", "ofType") and node.args[0] is not None:
            node = node.args[0]
        else:
            return False


def _prologue(code: str) -> list[str]:
    """Local names the generated code reads: R (the input), V (the variables), T0 (the input as a list)."""
    names = set(_INPUT_NAMES.findall(code))
    lines = []
    if "R" in names or "T0" in names:
        lines.append("R = resource")
    if "V" in names:
        lines.append("V = variables")
    if "T0" in names:
        lines.append("T0 = [R]")
    return lines


def translate_error(e: BaseException, expression: str) -> BaseException:
    """The exception a compiled expression raises for `e`: FHIRPathError naming the expression."""
    if isinstance(e, FHIRPathError):
        if e.expression is None:  # raised by a runtime helper: say which expression failed
            new = FHIRPathError(f"{e} (evaluating {expression!r})", kind=e.kind)
            new.__cause__ = e
            return new
        return e
    if isinstance(e, _TRANSLATED):
        new = FHIRPathError(f"cannot evaluate {expression!r}: {type(e).__name__}: {e}")
        new.__cause__ = e
        return new
    return e


_TRANSLATED = (
    AttributeError,
    TypeError,
    KeyError,
    IndexError,
    ValueError,
    ArithmeticError,
    DecimalException,
    RecursionError,
)


def _type_spec_of(node: Node) -> str | None:
    if node.kind == "ident":
        return node.args[0]
    if node.kind == "member" and node.args[0].kind == "ident":
        return f"{node.args[0].args[0]}.{node.args[1]}"
    return None


def _union_type(a: SType, b: SType) -> SType:
    if a is None or b is None:
        return None
    return a | b


def _is_result(coll: list[Any], verdict: bool) -> list[Any]:
    if not coll:
        return []
    if len(coll) > 1:
        raise FHIRPathError("'is' needs a single item")
    return [verdict]


def _is_choice(all_items: list[Any], matching: list[Any]) -> list[Any]:
    if not all_items:
        return []
    if len(all_items) > 1:
        raise FHIRPathError("'is' needs a single item")
    return [bool(matching)]


def _as_single(coll: list[Any]) -> list[Any]:
    if len(coll) > 1:
        raise FHIRPathError(f"'as' needs a single item, got {len(coll)}")
    return coll


def _type_filter(coll: list[Any], spec: tuple[str | None, str, bool], op: str) -> list[Any]:
    ns, name, exact = spec
    if op == "is":
        if not coll:
            return []
        if len(coll) > 1:
            raise FHIRPathError("'is' needs a single item")
        return [type_matches(runtime_type(coll[0]), ns, name, exact) is True]
    if op == "as" and len(coll) > 1:
        raise FHIRPathError(f"'as' needs a single item, got {len(coll)}")
    return [x for x in coll if type_matches(runtime_type(x), ns, name, exact) is True]


def _one(v: Any) -> list[Any]:
    return [] if v is None else [v]


def _one_conv(v: Any, conv: Callable[[Any], Any]) -> list[Any]:
    return [] if v is None else [conv(v)]


def _unwrap_result(coll: list[Any]) -> list[Any]:
    for x in coll:
        if type(x) is PrimNode:
            return [x.value if type(x) is PrimNode and x.value is not None else x for x in coll]
    return coll
