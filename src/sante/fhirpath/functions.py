"""The runtime of compiled expressions: operators and functions over collections (Python lists).

Every helper takes and returns lists. Empty input propagates as an empty result, and misuse that FHIRPath
calls an error (several items where one is required, operands of the wrong type) raises FHIRPathError.
Compiled code binds these helpers by name (the compiler copies this module's namespace), so nothing here is
looked up per call.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import logging
import math
import re
from collections.abc import Callable
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from sante.fhir.model import r4
from sante.fhirpath import quantity as Q
from sante.fhirpath import temporal as T
from sante.fhirpath.errors import FHIRPathError
from sante.fhirpath.nodes import PrimNode, runtime_type, unwrap
from sante.fhirpath.quantity import Quantity
from sante.fhirpath.temporal import Date, DateTime, Temporal, Time

_NUM = (int, Decimal)
_log = logging.getLogger("sante.fhirpath")


def err(message: str) -> FHIRPathError:
    return FHIRPathError(message)


# -- singletons and booleans ------------------------------------------------------------------------------------
def single(coll: list[Any], what: str) -> Any:
    """The one item of a collection (None when empty); several items is an error."""
    if not coll:
        return None
    if len(coll) > 1:
        raise err(f"{what} needs a single item, got {len(coll)}")
    return unwrap(coll[0])


def to_bool3(coll: list[Any], what: str = "a boolean operand") -> bool | None:
    """Singleton evaluation as a Boolean: empty -> None, one boolean -> itself, one other item -> True."""
    if not coll:
        return None
    if len(coll) > 1:
        raise err(f"{what} needs a single item, got {len(coll)}")
    v = unwrap(coll[0])
    if v is True or v is False:
        return v
    return None if v is None else True


def truthy(coll: list[Any]) -> bool:
    """A criterion (where/all/exists...) holds: true, or a single non-boolean item."""
    if len(coll) == 1:
        v = coll[0]
        if v is True or v is False:
            return v
    return to_bool3(coll, "a criterion") is True


def op_and(a: list[Any], b: list[Any]) -> list[Any]:
    x, y = to_bool3(a), to_bool3(b)
    if x is False or y is False:
        return [False]
    if x is None or y is None:
        return []
    return [True]


def op_or(a: list[Any], b: list[Any]) -> list[Any]:
    x, y = to_bool3(a), to_bool3(b)
    if x is True or y is True:
        return [True]
    if x is None or y is None:
        return []
    return [False]


def op_xor(a: list[Any], b: list[Any]) -> list[Any]:
    x, y = to_bool3(a), to_bool3(b)
    if x is None or y is None:
        return []
    return [x != y]


def op_implies(a: list[Any], b: list[Any]) -> list[Any]:
    x, y = to_bool3(a), to_bool3(b)
    if x is False or y is True:
        return [True]
    if x is None or y is None:
        return []
    return [False]


def fn_not(coll: list[Any]) -> list[Any]:
    x = to_bool3(coll, "not()")
    return [] if x is None else [not x]


def iif_test(coll: list[Any]) -> bool:
    return to_bool3(coll, "iif() criterion") is True


def iif_focus(coll: list[Any]) -> list[Any]:
    if len(coll) > 1:
        raise err("iif() needs at most one item as input")
    return coll


# -- equality ---------------------------------------------------------------------------------------------------
def _as_quantity(x: Any) -> Any:
    if type(x) is dict:
        q = Q.from_fhir(x)
        if q is not None:
            return q
    return x


def _coerce_temporal(a: Any, b: Any) -> tuple[Any, Any]:
    """Strings read from data whose type was not known compare with dates as dates."""
    if type(a) is str and isinstance(b, Temporal):
        a = (T.parse_time(a) if isinstance(b, Time) else T.parse_datetime(a)) or a
    elif type(b) is str and isinstance(a, Temporal):
        b = (T.parse_time(b) if isinstance(a, Time) else T.parse_datetime(b)) or b
    return a, b


def item_eq(a: Any, b: Any) -> bool | None:
    """FHIRPath `=` on two items: True/False, or None when they cannot be compared (precision)."""
    a, b = unwrap(a), unwrap(b)
    ta, tb = type(a), type(b)
    if ta is tb and (ta is str or ta is int or ta is bool or ta is Decimal or ta is dict):
        return a == b
    if ta is bool or tb is bool:
        return False
    if (ta is int or ta is Decimal or ta is float) and (tb is int or tb is Decimal or tb is float):
        return a == b
    if ta is str or tb is str:
        a, b = _coerce_temporal(a, b)
        ta, tb = type(a), type(b)
    if isinstance(a, Temporal) and isinstance(b, Temporal):
        if (ta is Time) != (tb is Time):
            return False
        r = T.compare(a, b)
        return None if r is None else r == 0
    if ta is Quantity or tb is Quantity:
        a, b = _as_quantity(a), _as_quantity(b)
        if type(a) is Quantity and type(b) is Quantity:
            r = Q.compare(a, b)
            return None if r is None else r == 0
        return False
    return a == b if ta is tb else False


def _norm_str(s: str) -> str:
    return " ".join(s.lower().split())


def _places(d: Any) -> int:
    if type(d) is int:
        return 0
    e = d.as_tuple().exponent
    return -e if e < 0 else 0


def item_equiv(a: Any, b: Any) -> bool:
    """FHIRPath `~` on two items."""
    a, b = unwrap(a), unwrap(b)
    ta, tb = type(a), type(b)
    if ta is str and tb is str:
        return _norm_str(a) == _norm_str(b)
    if ta is bool or tb is bool:
        return a is b
    if ta in _NUM and tb in _NUM:
        places = min(_places(a), _places(b))
        q = Decimal(1).scaleb(-places)
        return Decimal(a).quantize(q, ROUND_HALF_UP) == Decimal(b).quantize(q, ROUND_HALF_UP)
    if isinstance(a, Temporal) and isinstance(b, Temporal):
        return T.equivalent(a, b)
    if ta is Quantity or tb is Quantity:
        a, b = _as_quantity(a), _as_quantity(b)
        return type(a) is Quantity and type(b) is Quantity and Q.equivalent(a, b)
    if ta is dict and tb is dict:
        return _dict_equiv(a, b)
    return False


def _dict_equiv(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = {k for k in a if k != "id"} | {k for k in b if k != "id"}
    for k in keys:
        x, y = a.get(k), b.get(k)
        if isinstance(x, list) or isinstance(y, list):
            xs, ys = x if isinstance(x, list) else [x], y if isinstance(y, list) else [y]
            if not coll_equiv(xs, ys):
                return False
        elif x is None or y is None:
            if x is not y:
                return False
        elif not item_equiv(x, y):
            return False
    return True


def op_eq(a: list[Any], b: list[Any]) -> list[Any]:
    if len(a) == 1 and len(b) == 1:
        x, y = a[0], b[0]
        if type(x) is str and type(y) is str:  # the common case: a code or system against a literal
            return [x == y]
    if not a or not b:
        return []
    if len(a) != len(b):
        return [False]
    result = True
    for x, y in zip(a, b):
        r = item_eq(x, y)
        if r is None:
            return []
        if not r:
            result = False
    return [result]


def op_ne(a: list[Any], b: list[Any]) -> list[Any]:
    r = op_eq(a, b)
    return [not r[0]] if r else r


def coll_equiv(a: list[Any], b: list[Any]) -> bool:
    if len(a) != len(b):
        return False
    rest = list(b)
    for x in a:
        for i, y in enumerate(rest):
            if item_equiv(x, y):
                del rest[i]
                break
        else:
            return False
    return True


def op_equiv(a: list[Any], b: list[Any]) -> list[Any]:
    return [coll_equiv(a, b)]


def op_nequiv(a: list[Any], b: list[Any]) -> list[Any]:
    return [not coll_equiv(a, b)]


# -- ordering ---------------------------------------------------------------------------------------------------
def compare_items(a: Any, b: Any) -> int | None:
    """-1/0/1 for ordered items; None when not comparable (precision, units); error on mixed types."""
    a, b = unwrap(a), unwrap(b)
    ta, tb = type(a), type(b)
    if ta in _NUM and tb in _NUM and ta is not bool and tb is not bool:
        return (a > b) - (a < b)
    if ta is float or tb is float:
        a = Decimal(str(a)) if ta is float else a
        b = Decimal(str(b)) if tb is float else b
        return compare_items(a, b)
    if ta is str and tb is str:
        return (a > b) - (a < b)
    if ta is str or tb is str:
        a, b = _coerce_temporal(a, b)
        ta, tb = type(a), type(b)
    if isinstance(a, Temporal) and isinstance(b, Temporal):
        try:
            return T.compare(a, b)
        except TypeError as e:
            raise err(str(e)) from None
    if ta is Quantity or tb is Quantity:
        a, b = _as_quantity(a), _as_quantity(b)
        if type(a) is Quantity and type(b) is Quantity:
            return Q.compare(a, b)
    raise err(f"cannot compare {_tname(a)} with {_tname(b)}")


def _tname(x: Any) -> str:
    return runtime_type(x) or type(x).__name__


def _cmp_op(test: Callable[[int], bool]) -> Callable[[list[Any], list[Any]], list[Any]]:
    def op(a: list[Any], b: list[Any]) -> list[Any]:
        if not a or not b:
            return []
        if len(a) > 1 or len(b) > 1:
            raise err("comparison needs single items")
        r = compare_items(a[0], b[0])
        return [] if r is None else [test(r)]

    return op


op_lt = _cmp_op(lambda r: r < 0)
op_le = _cmp_op(lambda r: r <= 0)
op_gt = _cmp_op(lambda r: r > 0)
op_ge = _cmp_op(lambda r: r >= 0)


# -- membership and sets ----------------------------------------------------------------------------------------
def contains_item(coll: list[Any], item: Any) -> bool:
    return any(item_eq(x, item) is True for x in coll)


def op_in(a: list[Any], b: list[Any]) -> list[Any]:
    if not a:
        return []
    if len(a) > 1:
        raise err("'in' needs a single item on the left")
    return [contains_item(b, a[0])]


def op_contains(a: list[Any], b: list[Any]) -> list[Any]:
    return op_in(b, a)


_HASHABLE = {str: "s", int: "n", Decimal: "n", bool: "b"}


def distinct(coll: list[Any]) -> list[Any]:
    if len(coll) < 2:
        return list(coll)
    try:
        # Strings, booleans and numbers: equality is hashable (1 = 1.0, but true != 1).
        keyed: dict[tuple[str, Any], Any] = {}
        for x in coll:
            keyed.setdefault((_HASHABLE[type(x)], x), x)
        return list(keyed.values())
    except KeyError:
        pass
    out: list[Any] = []
    for x in coll:
        if not contains_item(out, x):
            out.append(x)
    return out


def op_union(a: list[Any], b: list[Any]) -> list[Any]:
    if not b and len(a) < 2:
        return a
    if not a and len(b) < 2:
        return b
    return distinct(a + b)


def fn_intersect(a: list[Any], b: list[Any]) -> list[Any]:
    return [x for x in distinct(a) if contains_item(b, x)]


def fn_exclude(a: list[Any], b: list[Any]) -> list[Any]:
    return [x for x in a if not contains_item(b, x)]


def fn_subset_of(a: list[Any], b: list[Any]) -> list[Any]:
    return [all(contains_item(b, x) for x in a)]


def fn_superset_of(a: list[Any], b: list[Any]) -> list[Any]:
    return [all(contains_item(a, x) for x in b)]


def fn_is_distinct(coll: list[Any]) -> list[Any]:
    return [len(distinct(coll)) == len(coll)]


# -- arithmetic -------------------------------------------------------------------------------------------------
def _dec(x: Any) -> Decimal:
    if type(x) is Decimal:
        return x
    return Decimal(str(x)) if type(x) is float else Decimal(x)


def _operands(a: list[Any], b: list[Any], op: str) -> tuple[Any, Any] | None:
    if not a or not b:
        return None
    if len(a) > 1 or len(b) > 1:
        raise err(f"operator {op} needs single items")
    x, y = unwrap(a[0]), unwrap(b[0])
    if type(x) is float:
        x = Decimal(str(x))
    if type(y) is float:
        y = Decimal(str(y))
    return x, y


def _is_num(x: Any) -> bool:
    return type(x) is int or type(x) is Decimal


def _date_shift(t: Temporal, q: Quantity, sign: int) -> Temporal:
    unit = Q.CALENDAR_UNITS.get(q.unit) or Q.UCUM_TO_CALENDAR.get(q.unit)
    if unit is None:
        raise err(f"cannot add {q} to a date/time: not a calendar duration")
    amount = int(q.value) * sign
    try:
        return T.add(t, amount, unit)
    except (ValueError, OverflowError) as e:
        raise err(str(e)) from None


def op_plus(a: list[Any], b: list[Any]) -> list[Any]:
    xy = _operands(a, b, "+")
    if xy is None:
        return []
    x, y = xy
    if _is_num(x) and _is_num(y):
        return [x + y]
    if type(x) is str and type(y) is str:
        return [x + y]
    if isinstance(x, Temporal) and type(_as_quantity(y)) is Quantity:
        return [_date_shift(x, _as_quantity(y), 1)]
    if type(x) is Quantity and type(y) is Quantity:
        r = Q.add(x, y, 1)
        return [] if r is None else [r]
    raise err(f"cannot add {_tname(y)} to {_tname(x)}")


def op_minus(a: list[Any], b: list[Any]) -> list[Any]:
    xy = _operands(a, b, "-")
    if xy is None:
        return []
    x, y = xy
    if _is_num(x) and _is_num(y):
        return [x - y]
    if isinstance(x, Temporal) and type(_as_quantity(y)) is Quantity:
        return [_date_shift(x, _as_quantity(y), -1)]
    if type(x) is Quantity and type(y) is Quantity:
        r = Q.add(x, y, -1)
        return [] if r is None else [r]
    raise err(f"cannot subtract {_tname(y)} from {_tname(x)}")


def op_times(a: list[Any], b: list[Any]) -> list[Any]:
    xy = _operands(a, b, "*")
    if xy is None:
        return []
    x, y = _as_quantity(xy[0]), _as_quantity(xy[1])
    if _is_num(x) and _is_num(y):
        return [x * y]
    if type(x) is Quantity and type(y) is Quantity:
        return [Q.multiply(x, y)]
    if type(x) is Quantity and _is_num(y):
        return [Quantity(x.value * y, x.unit)]
    if _is_num(x) and type(y) is Quantity:
        return [Quantity(x * y.value, y.unit)]
    raise err(f"cannot multiply {_tname(x)} by {_tname(y)}")


def op_divide(a: list[Any], b: list[Any]) -> list[Any]:
    xy = _operands(a, b, "/")
    if xy is None:
        return []
    x, y = _as_quantity(xy[0]), _as_quantity(xy[1])
    if _is_num(x) and _is_num(y):
        if y == 0:
            return []
        return [_dec(x) / _dec(y)]
    if type(x) is Quantity and type(y) is Quantity:
        r = Q.divide(x, y)
        return [] if r is None else [r]
    if type(x) is Quantity and _is_num(y):
        return [] if y == 0 else [Quantity(x.value / _dec(y), x.unit)]
    raise err(f"cannot divide {_tname(x)} by {_tname(y)}")


def op_div(a: list[Any], b: list[Any]) -> list[Any]:
    xy = _operands(a, b, "div")
    if xy is None:
        return []
    x, y = xy
    if not (_is_num(x) and _is_num(y)):
        raise err("div needs numbers")
    if y == 0:
        return []
    if type(x) is int and type(y) is int:
        q = abs(x) // abs(y)
        return [q if (x >= 0) == (y >= 0) else -q]
    return [int(_dec(x) / _dec(y))]


def op_mod(a: list[Any], b: list[Any]) -> list[Any]:
    xy = _operands(a, b, "mod")
    if xy is None:
        return []
    x, y = xy
    if not (_is_num(x) and _is_num(y)):
        raise err("mod needs numbers")
    if y == 0:
        return []
    if type(x) is int and type(y) is int:
        r = abs(x) % abs(y)
        return [r if x >= 0 else -r]
    return [_dec(x) % _dec(y)]


def op_concat(a: list[Any], b: list[Any]) -> list[Any]:
    if len(a) > 1 or len(b) > 1:
        raise err("& needs single items")
    x = unwrap(a[0]) if a else ""
    y = unwrap(b[0]) if b else ""
    if type(x) is not str or type(y) is not str:
        raise err("& needs strings")
    return [x + y]


def op_negate(a: list[Any]) -> list[Any]:
    if not a:
        return []
    if len(a) > 1:
        raise err("unary - needs a single item")
    x = unwrap(a[0])
    if _is_num(x):
        return [-x]
    if type(x) is Quantity:
        return [Quantity(-x.value, x.unit)]
    raise err(f"cannot negate {_tname(x)}")


def op_positive(a: list[Any]) -> list[Any]:
    if a and not (_is_num(unwrap(a[0])) or type(unwrap(a[0])) is Quantity):
        raise err("unary + needs a number")
    return a


# -- collections ------------------------------------------------------------------------------------------------
def fn_exists(coll: list[Any]) -> list[Any]:
    return [bool(coll)]


def fn_empty(coll: list[Any]) -> list[Any]:
    return [not coll]


def fn_count(coll: list[Any]) -> list[Any]:
    return [len(coll)]


def fn_first(coll: list[Any]) -> list[Any]:
    return coll[:1]


def fn_last(coll: list[Any]) -> list[Any]:
    return coll[-1:]


def fn_tail(coll: list[Any]) -> list[Any]:
    return coll[1:]


def _int_arg(arg: list[Any], what: str) -> int | None:
    v = single(arg, what)
    if v is None:
        return None
    if type(v) is not int:
        raise err(f"{what} needs an integer")
    return v


def fn_skip(coll: list[Any], n: list[Any]) -> list[Any]:
    k = _int_arg(n, "skip()")
    if k is None:
        return []
    return coll[max(k, 0) :]


def fn_take(coll: list[Any], n: list[Any]) -> list[Any]:
    k = _int_arg(n, "take()")
    if k is None or k <= 0:
        return []
    return coll[:k]


def fn_single(coll: list[Any]) -> list[Any]:
    if len(coll) > 1:
        raise err(f"single() on a collection of {len(coll)} items")
    return coll


def index(coll: list[Any], idx: list[Any]) -> list[Any]:
    k = _int_arg(idx, "an indexer")
    if k is None or k < 0 or k >= len(coll):
        return []
    return [coll[k]]


def fn_combine(a: list[Any], b: list[Any]) -> list[Any]:
    return a + b


def _bools(coll: list[Any], what: str) -> list[bool]:
    out = []
    for x in coll:
        v = unwrap(x)
        if v is not True and v is not False:
            raise err(f"{what} needs booleans")
        out.append(v)
    return out


def fn_all_true(coll: list[Any]) -> list[Any]:
    return [all(_bools(coll, "allTrue()"))]


def fn_any_true(coll: list[Any]) -> list[Any]:
    return [any(_bools(coll, "anyTrue()"))]


def fn_all_false(coll: list[Any]) -> list[Any]:
    return [not any(_bools(coll, "allFalse()"))]


def fn_any_false(coll: list[Any]) -> list[Any]:
    return [not all(_bools(coll, "anyFalse()"))]


def repeat(coll: list[Any], step: Callable[[Any], list[Any]]) -> list[Any]:
    out: list[Any] = []
    queue = list(coll)
    while queue:
        nxt = []
        for item in queue:
            for y in step(item):
                if not contains_item(out, y):
                    out.append(y)
                    nxt.append(y)
        queue = nxt
    return out


def aggregate(
    coll: list[Any], step: Callable[[Any, int, list[Any]], list[Any]], init: list[Any]
) -> list[Any]:
    total = init
    for i, item in enumerate(coll):
        total = step(item, i, total)
    return total


def sort(coll: list[Any], keys: list[tuple[Callable[[Any], list[Any]], bool]]) -> list[Any]:
    import functools

    if not keys:
        keys = [(lambda x: [x], False)]

    def cmp(x: Any, y: Any) -> int:
        for key, desc in keys:
            a, b = key(x), key(y)
            if not a and not b:
                continue
            if not a:  # empty sorts first, in either direction
                return -1
            if not b:
                return 1
            r = compare_items(a[0], b[0]) or 0
            if r:
                return -r if desc else r
        return 0

    return sorted(coll, key=functools.cmp_to_key(cmp))


def _num_items(coll: list[Any], what: str) -> list[Any]:
    out = []
    for x in coll:
        v = _as_quantity(unwrap(x))
        if type(v) is float:
            v = Decimal(str(v))
        out.append(v)
    return out


def fn_sum(coll: list[Any]) -> list[Any]:
    if not coll:
        return [0]
    vals = _num_items(coll, "sum()")
    total = vals[0]
    for v in vals[1:]:
        total = op_plus([total], [v])[0]
    return [total]


def fn_min(coll: list[Any]) -> list[Any]:
    vals = _num_items(coll, "min()")
    best = None
    for v in vals:
        if best is None or (compare_items(v, best) or 0) < 0:
            best = v
    return [] if best is None else [best]


def fn_max(coll: list[Any]) -> list[Any]:
    vals = _num_items(coll, "max()")
    best = None
    for v in vals:
        if best is None or (compare_items(v, best) or 0) > 0:
            best = v
    return [] if best is None else [best]


def fn_avg(coll: list[Any]) -> list[Any]:
    if not coll:
        return []
    total = fn_sum(coll)[0]
    return op_divide([total], [len(coll)])


# -- strings ----------------------------------------------------------------------------------------------------
def _str_in(coll: list[Any], what: str) -> str | None:
    v = single(coll, what)
    if v is None:
        return None
    if type(v) is not str:
        raise err(f"{what} needs a string, got {_tname(v)}")
    return v


def _str_arg(coll: list[Any], what: str) -> str | None:
    v = single(coll, what)
    if v is None:
        return None
    if type(v) is not str:
        raise err(f"{what} needs a string argument")
    return v


def _str_fn(fn: Callable[..., Any], name: str, nargs: int = 0) -> Callable[..., list[Any]]:
    def call(coll: list[Any], *args: list[Any]) -> list[Any]:
        s = _str_in(coll, name)
        if s is None:
            return []
        vals = []
        for a in args:
            v = single(a, name)
            if v is None:
                return []
            vals.append(v)
        r = fn(s, *vals)
        if r is None:
            return []
        return r if isinstance(r, list) else [r]

    return call


def _substring(s: str, start: Any, length: Any = None) -> str | None:
    if type(start) is not int or start < 0 or start >= len(s):
        return None
    if length is None:
        return s[start:]
    return s[start : start + max(length, 0)]


def _substring_call(coll: list[Any], start: list[Any], length: list[Any] | None = None) -> list[Any]:
    s = _str_in(coll, "substring()")
    st = single(start, "substring()")
    if s is None or st is None:
        return []
    ln = single(length, "substring()") if length is not None else None
    r = _substring(s, st, ln)
    return [] if r is None else [r]


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error as e:
        raise err(f"invalid regular expression {pattern!r}: {e}") from None


def _replace_matches(s: str, pattern: str, subst: str) -> str:
    if pattern == "":
        return s
    return _regex(pattern).sub(re.sub(r"\$(\d+)", r"\\\1", subst), s)


def _encode(s: str, fmt: str) -> str | None:
    data = s.encode()
    if fmt == "base64":
        return base64.b64encode(data).decode()
    if fmt == "urlbase64":
        return base64.urlsafe_b64encode(data).decode()
    if fmt == "hex":
        return data.hex()
    return None


def _decode(s: str, fmt: str) -> str | None:
    try:
        if fmt == "base64":
            return base64.b64decode(s).decode()
        if fmt == "urlbase64":
            return base64.urlsafe_b64decode(s).decode()
        if fmt == "hex":
            return bytes.fromhex(s).decode()
    except (binascii.Error, ValueError):
        return None
    return None


def _escape(s: str, fmt: str) -> str | None:
    if fmt == "html":
        return html.escape(s, quote=True).replace("&#x27;", "'")
    if fmt == "json":
        return json.dumps(s, ensure_ascii=False)[1:-1]
    return None


def _unescape(s: str, fmt: str) -> str | None:
    if fmt == "html":
        return html.unescape(s)
    if fmt == "json":
        return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", _json_escape, s)
    return None


def _json_escape(m: re.Match[str]) -> str:
    code = m.group(1)
    if code[0] == "u" and len(code) == 5:
        return chr(int(code[1:], 16))
    return {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(code, code)


def _index_of(s: str, sub: str) -> int:
    return s.find(sub)


STRING_FUNCTIONS: dict[str, Callable[..., list[Any]]] = {
    "indexOf": _str_fn(_index_of, "indexOf()"),
    "startsWith": _str_fn(lambda s, p: s.startswith(p), "startsWith()"),
    "endsWith": _str_fn(lambda s, p: s.endswith(p), "endsWith()"),
    "contains": _str_fn(lambda s, p: p in s, "contains()"),
    "upper": _str_fn(str.upper, "upper()"),
    "lower": _str_fn(str.lower, "lower()"),
    "replace": _str_fn(lambda s, a, b: s.replace(a, b), "replace()"),
    "matches": _str_fn(lambda s, p: _regex(p).search(s) is not None, "matches()"),
    "matchesFull": _str_fn(lambda s, p: _regex(p).fullmatch(s) is not None, "matchesFull()"),
    "replaceMatches": _str_fn(_replace_matches, "replaceMatches()"),
    "length": _str_fn(len, "length()"),
    "toChars": _str_fn(list, "toChars()"),
    "split": _str_fn(lambda s, sep: s.split(sep), "split()"),
    "trim": _str_fn(str.strip, "trim()"),
    "encode": _str_fn(_encode, "encode()"),
    "decode": _str_fn(_decode, "decode()"),
    "escape": _str_fn(_escape, "escape()"),
    "unescape": _str_fn(_unescape, "unescape()"),
    "substring": _substring_call,
}


def fn_join(coll: list[Any], sep: list[Any] | None = None) -> list[Any]:
    s = single(sep, "join()") if sep else ""
    return [(s or "").join(str(unwrap(x)) for x in coll)]


# -- math -------------------------------------------------------------------------------------------------------
def _num_in(coll: list[Any], what: str) -> Any:
    v = single(coll, what)
    if v is None:
        return None
    if type(v) is float:
        v = Decimal(str(v))
    if not (_is_num(v) or type(v) is Quantity):
        raise err(f"{what} needs a number")
    return v


def _float_result(x: float) -> list[Any]:
    if math.isnan(x) or math.isinf(x):
        return []
    return [Decimal(str(x))]


def fn_abs(coll: list[Any]) -> list[Any]:
    v = _num_in(coll, "abs()")
    if v is None:
        return []
    return [Quantity(abs(v.value), v.unit)] if type(v) is Quantity else [abs(v)]


def fn_ceiling(coll: list[Any]) -> list[Any]:
    v = _num_in(coll, "ceiling()")
    return [] if v is None else [math.ceil(v)]


def fn_floor(coll: list[Any]) -> list[Any]:
    v = _num_in(coll, "floor()")
    return [] if v is None else [math.floor(v)]


def fn_truncate(coll: list[Any]) -> list[Any]:
    v = _num_in(coll, "truncate()")
    return [] if v is None else [int(v)]


def fn_exp(coll: list[Any]) -> list[Any]:
    v = _num_in(coll, "exp()")
    return [] if v is None else _float_result(math.exp(v))


def fn_ln(coll: list[Any]) -> list[Any]:
    v = _num_in(coll, "ln()")
    if v is None or v <= 0:
        return []
    return _float_result(math.log(v))


def fn_log(coll: list[Any], base: list[Any]) -> list[Any]:
    v, b = _num_in(coll, "log()"), _num_in(base, "log()")
    if v is None or b is None or v <= 0 or b <= 0 or b == 1:
        return []
    return _float_result(math.log(v) / math.log(b))


def fn_power(coll: list[Any], exp: list[Any]) -> list[Any]:
    v, e = _num_in(coll, "power()"), _num_in(exp, "power()")
    if v is None or e is None:
        return []
    if type(v) is int and type(e) is int and e >= 0:
        return [v**e]
    try:
        r = float(v) ** float(e)
    except (OverflowError, ZeroDivisionError):
        return []
    if isinstance(r, complex):
        return []
    return _float_result(r)


def fn_sqrt(coll: list[Any]) -> list[Any]:
    v = _num_in(coll, "sqrt()")
    if v is None or v < 0:
        return []
    return [_dec(v).sqrt()]


def fn_round(coll: list[Any], places: list[Any] | None = None) -> list[Any]:
    v = _num_in(coll, "round()")
    if v is None:
        return []
    p = _int_arg(places, "round()") if places else 0
    if p is None or p < 0:
        return []
    return [_dec(v).quantize(Decimal(1).scaleb(-p), ROUND_HALF_UP)]


# -- conversions ------------------------------------------------------------------------------------------------
_INT_RE = re.compile(r"[+-]?\d+")
_DEC_RE = re.compile(r"[+-]?\d+(\.\d+)?")
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


def to_integer(v: Any) -> Any:
    if type(v) is bool:
        return int(v)
    if type(v) is int:
        return v
    if type(v) is str and _INT_RE.fullmatch(v):
        return int(v)
    return None


def to_decimal(v: Any) -> Any:
    if type(v) is bool:
        return Decimal(int(v)).quantize(Decimal("1.0"))
    if type(v) is int or type(v) is float:
        return _dec(v)
    if type(v) is Decimal:
        return v
    if type(v) is str and _DEC_RE.fullmatch(v):
        return Decimal(v)
    return None


def to_boolean(v: Any) -> Any:
    if type(v) is bool:
        return v
    if type(v) is int:
        return {1: True, 0: False}.get(v)
    if type(v) is Decimal:
        return True if v == 1 else False if v == 0 else None
    if type(v) is str:
        low = v.lower()
        return True if low in _TRUE else False if low in _FALSE else None
    return None


def to_string(v: Any) -> Any:
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) is str:
        return v
    if type(v) in (int, Decimal, Quantity) or isinstance(v, Temporal):
        return str(v)
    if type(v) is float:
        return str(Decimal(str(v)))
    return None


def to_quantity(v: Any, unit: Any = None) -> Any:
    q: Any = None
    if type(v) is Quantity:
        q = v
    elif type(v) is bool:
        q = Quantity(Decimal("1.0") if v else Decimal("0.0"), "1")
    elif _is_num(v) or type(v) is float:
        q = Quantity(_dec(v), "1")
    elif type(v) is str:
        q = Q.parse_quantity(v)
    elif type(v) is dict:
        q = Q.from_fhir(v)
    if q is None or unit is None or unit == q.unit:
        return q
    common = Q.to_common(Quantity(Decimal(1), unit), q)
    return None if common is None else Quantity(common[1], unit)


def to_date(v: Any) -> Any:
    if type(v) is Date:
        return v
    if type(v) is DateTime:
        return T.datetime_to_date(v)
    if type(v) is str:
        d = T.parse_date(v)
        if d is None:
            dt = T.parse_datetime(v)
            return None if dt is None else T.datetime_to_date(dt)
        return d
    return None


def to_datetime(v: Any) -> Any:
    if type(v) is DateTime:
        return v
    if type(v) is Date:
        return T.date_to_datetime(v)
    if type(v) is str:
        return T.parse_datetime(v)
    return None


def to_time(v: Any) -> Any:
    if type(v) is Time:
        return v
    if type(v) is str:
        return T.parse_time(v)
    return None


CONVERTERS: dict[str, Callable[..., Any]] = {
    "Integer": to_integer,
    "Decimal": to_decimal,
    "Boolean": to_boolean,
    "String": to_string,
    "Quantity": to_quantity,
    "Date": to_date,
    "DateTime": to_datetime,
    "Time": to_time,
}


def convert(coll: list[Any], target: str, *args: list[Any]) -> list[Any]:
    v = single(coll, f"to{target}()")
    if v is None:
        return []
    extra = [single(a, f"to{target}()") for a in args]
    r = CONVERTERS[target](v, *extra)
    return [] if r is None else [r]


def converts(coll: list[Any], target: str, *args: list[Any]) -> list[Any]:
    v = single(coll, f"convertsTo{target}()")
    if v is None:
        return []
    extra = [single(a, f"convertsTo{target}()") for a in args]
    return [CONVERTERS[target](v, *extra) is not None]


# -- boundaries -------------------------------------------------------------------------------------------------
def _dec_boundary(d: Decimal, p: int, high: bool) -> Decimal:
    if d < 0:
        return -_dec_boundary(-d, p, not high)
    half = Decimal(5).scaleb(-(_places(d) + 1))
    q = Decimal(1).scaleb(-p)
    if high:
        return (d + half).quantize(q, ROUND_HALF_UP)
    return (d - half).quantize(q, ROUND_DOWN)


def boundary(coll: list[Any], digits: list[Any] | None, high: bool) -> list[Any]:
    v = single(coll, "boundary")
    if v is None:
        return []
    p = _int_arg(digits, "boundary") if digits else None
    if isinstance(v, Temporal):
        r = T.boundary(v, p, high)
        return [] if r is None else [r]
    if type(v) is float:
        v = Decimal(str(v))
    if p is None:
        p = 8
    if p < 0 or p > 28:
        return []
    if type(v) is Quantity:
        return [Quantity(_dec_boundary(v.value, p, high), v.unit)]
    if _is_num(v):
        return [_dec_boundary(_dec(v), p, high)]
    return []


def fn_precision(coll: list[Any]) -> list[Any]:
    v = single(coll, "precision()")
    if v is None:
        return []
    if isinstance(v, Temporal):
        return [T.precision(v)]
    if type(v) is Decimal:
        return [_places(v)]
    if type(v) is int:
        return [0]
    return []


def fn_comparable(coll: list[Any], other: list[Any]) -> list[Any]:
    a, b = _as_quantity(single(coll, "comparable()")), _as_quantity(single(other, "comparable()"))
    if a is None or b is None:
        return []
    if type(a) is not Quantity or type(b) is not Quantity:
        raise err("comparable() needs quantities")
    return [Q.comparable(a, b)]


# -- FHIR-specific ----------------------------------------------------------------------------------------------
def fn_extension(coll: list[Any], url: list[Any]) -> list[Any]:
    u = _str_arg(url, "extension()")
    if u is None:
        return []
    out: list[Any] = []
    for x in coll:
        if type(x) is dict:
            exts = x.get("extension")
        elif type(x) is PrimNode:
            exts = x.ext.get("extension")
        else:
            continue
        if exts:
            out.extend(e for e in exts if type(e) is dict and e.get("url") == u)
    return out


def fn_has_value(coll: list[Any]) -> list[Any]:
    if len(coll) != 1:
        return [False]
    x = coll[0]
    if type(x) is PrimNode:
        return [x.value is not None]
    return [type(x) is not dict]


def fn_get_value(coll: list[Any]) -> list[Any]:
    if len(coll) != 1:
        return []
    x = unwrap(coll[0])
    return [] if x is None or type(x) is dict else [x]


def children(coll: list[Any]) -> list[Any]:
    out: list[Any] = []
    for x in coll:
        if type(x) is PrimNode:
            x = x.ext
        if type(x) is not dict:
            continue
        has_ext = False
        for k, v in x.items():
            if k[0] == "_":
                has_ext = True
                continue
            if k == "resourceType" or v is None:
                continue
            if type(v) is list:
                out.extend(v)
            else:
                out.append(v)
        if has_ext:
            _primitive_children(out, x)
    return [x for x in out if x is not None] if None in out else out


def _primitive_children(out: list[Any], x: dict[str, Any]) -> None:
    """Primitives with extensions: replace the plain values added for them by PrimNodes."""
    for k, ext in x.items():
        if k[0] != "_" or ext is None:
            continue
        v = x.get(k[1:])
        vs = v if type(v) is list else [v]
        es = ext if type(ext) is list else [ext]
        for i, e in enumerate(es):
            if e is None:
                continue
            item = vs[i] if i < len(vs) else None
            if item is not None:
                for j in range(len(out) - 1, -1, -1):
                    if out[j] is item:
                        out[j] = PrimNode(item, e, "string")
                        break
            else:
                out.append(PrimNode(None, e, "string"))


def descendants(coll: list[Any]) -> list[Any]:
    out: list[Any] = []
    level = children(coll)
    while level:
        out.extend(level)
        level = children(level)
    # JSON arrays of primitives may hold nulls (aligned with their `_name` extensions): not items.
    return [x for x in out if x is not None] if None in out else out


def resolve(coll: list[Any], root: Any) -> list[Any]:
    """Reference -> resource: contained (`#id`), Bundle entries (by fullUrl or type/id); a reference that
    cannot be found but names a type and id (`Patient/123`) yields a stub resource of that type, so that
    `resolve() is Patient` works on a single resource, as search-parameter extraction needs."""
    model = r4()
    out: list[Any] = []
    for x in coll:
        x = unwrap(x)
        ref = x.get("reference") if type(x) is dict else x if type(x) is str else None
        if not ref:
            continue
        found = _find_reference(ref, root)
        if found is not None:
            out.append(found)
            continue
        parts = ref.split("/_history/")[0].rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] in model.resource_types:
            out.append({"resourceType": parts[-2], "id": parts[-1]})
    return out


def resource_key(coll: list[Any]) -> list[Any]:
    """getResourceKey() (SQL on FHIR): the id of each resource of the input, the key getReferenceKey() matches."""
    return [x["id"] for x in coll if type(x) is dict and "resourceType" in x and type(x.get("id")) is str]


def reference_key(coll: list[Any], type_name: str | None) -> list[Any]:
    """getReferenceKey([type]) (SQL on FHIR): the id each Reference points to (`Patient/1`, an absolute URL,
    `urn:uuid:...`), the key getResourceKey() gives its target. With `type_name`, references to another type,
    or of a type neither the reference nor its `type` element states, give nothing; contained (`#id`) too."""
    model = r4()
    out: list[Any] = []
    for x in coll:
        ref = x.get("reference") if type(x) is dict else None
        if type(ref) is not str or not ref or ref.startswith("#"):
            continue
        target_type = x.get("type")
        if ref.startswith(("urn:uuid:", "urn:oid:")):
            key = ref.split(":", 2)[2]
        else:
            parts = ref.split("/_history/")[0].rstrip("/").split("/")
            if len(parts) < 2 or parts[-2] not in model.resource_types:
                continue
            target_type, key = parts[-2], parts[-1]
        if type_name is None or target_type == type_name:
            out.append(key)
    return out


def resolve_is(coll: list[Any], root: Any, type_name: str) -> list[Any]:
    """`resolve() is T` without building the resolved collection when the reference names its type."""
    model = r4()
    if len(coll) == 1:
        x = unwrap(coll[0])
        ref = x.get("reference") if type(x) is dict else x if type(x) is str else None
        if (
            type(ref) is str
            and not ref.startswith("#")
            and root is not None
            and (type(root) is not dict or root.get("resourceType") != "Bundle")
        ):
            parts = ref.split("/_history/")[0].rstrip("/").split("/")
            if len(parts) >= 2 and parts[-2] in model.resource_types:
                return [model.is_subtype(parts[-2], type_name)]
            return []  # outside a Bundle only contained resources (`#id`) can be found, and this is not one
    found = resolve(coll, root)
    if not found:
        return []
    if len(found) > 1:
        raise err("'is' needs a single item")
    return [model.is_subtype(found[0].get("resourceType", ""), type_name)]


def _find_reference(ref: str, root: Any) -> Any:
    if type(root) is not dict:
        return None
    if ref.startswith("#"):
        for c in root.get("contained") or ():
            if type(c) is dict and c.get("id") == ref[1:]:
                return c
        return None
    if root.get("resourceType") == "Bundle":
        tail = ref.split("/_history/")[0]
        for entry in root.get("entry") or ():
            res = entry.get("resource") if type(entry) is dict else None
            if type(res) is not dict:
                continue
            full = entry.get("fullUrl")
            if full == ref:
                return res
            rel = f"{res.get('resourceType')}/{res.get('id')}"
            if tail == rel or tail.endswith("/" + rel):
                return res
    return None


def member_of(coll: list[Any], url: list[Any]) -> list[Any]:
    u = _str_arg(url, "memberOf()")
    v = single(coll, "memberOf()")
    if u is None or v is None:
        return []
    vs = r4().valueset(u)
    if vs is None:
        return []
    if type(v) is str:
        return [any(v in codes for codes in vs.values())]
    if type(v) is dict:
        codings = v.get("coding") if "coding" in v else [v]
        for c in codings or ():
            if type(c) is dict and c.get("code") in vs.get(str(c.get("system")), ()):
                return [True]
        return [False]
    return []


_SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


def conforms_to(coll: list[Any], url: list[Any]) -> list[Any]:
    u = _str_arg(url, "conformsTo()")
    v = single(coll, "conformsTo()")
    if u is None or v is None:
        return []
    model = r4()
    if not u.startswith(_SD_PREFIX) or u[len(_SD_PREFIX) :] not in model.structures:
        raise err(f"conformsTo(): unknown profile {u}")
    rt = v.get("resourceType") if type(v) is dict else None
    return [rt is not None and model.is_subtype(rt, u[len(_SD_PREFIX) :])]


def fn_type(coll: list[Any], static: str | None) -> list[Any]:
    out = []
    for x in coll:
        t = static or runtime_type(x)
        if t is None:
            continue
        ns, _, name = t.rpartition(".")
        out.append({"namespace": ns or "FHIR", "name": name})
    return out


def variable(variables: dict[str, Any] | None, name: str) -> list[Any]:
    if variables is None or name not in variables:
        raise err(f"undefined variable %{name}")
    v = variables[name]
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def trace(coll: list[Any], name: list[Any]) -> list[Any]:
    """trace(): log the collection (logger `sante.fhirpath`, level DEBUG) and pass it on unchanged."""
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug("trace %s: %r", name[0] if name else "", coll)
    return coll


def now(_: Any = None) -> list[Any]:
    return [T.now_datetime()]


def today(_: Any = None) -> list[Any]:
    return [T.today_date()]


def time_of_day(_: Any = None) -> list[Any]:
    return [T.time_of_day()]


# -- scalar helpers ---------------------------------------------------------------------------------------------
# The compiler keeps a value whose type is statically one of Integer/Decimal/String/Boolean (from literals and the
# operators over them) as a plain Python value rather than a one-item list; None stands for the empty collection.
# These helpers take such values, so they never see PrimNodes, floats or collections of several items.
def s_and(x: Any, y: Any) -> bool | None:
    if x is False or y is False:
        return False
    if x is None or y is None:
        return None
    return True


def s_or(x: Any, y: Any) -> bool | None:
    if x is True or y is True:
        return True
    if x is None or y is None:
        return None
    return False


def s_xor(x: Any, y: Any) -> bool | None:
    if x is None or y is None:
        return None
    return x is not y


def s_implies(x: Any, y: Any) -> bool | None:
    if x is False or y is True:
        return True
    if x is None or y is None:
        return None
    return False


def s_not(x: Any) -> bool | None:
    return None if x is None else not x


def _lift(f: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def lifted(x: Any, y: Any) -> Any:
        if x is None or y is None:
            return None
        return f(x, y)

    return lifted


s_eq = _lift(lambda x, y: x == y)
s_ne = _lift(lambda x, y: x != y)
s_lt = _lift(lambda x, y: x < y)
s_le = _lift(lambda x, y: x <= y)
s_gt = _lift(lambda x, y: x > y)
s_ge = _lift(lambda x, y: x >= y)
s_add = _lift(lambda x, y: x + y)
s_sub = _lift(lambda x, y: x - y)
s_mul = _lift(lambda x, y: x * y)


def s_divide(x: Any, y: Any) -> Decimal | None:
    """`/` on numbers: always a Decimal; division by zero is empty."""
    if x is None or y is None or y == 0:
        return None
    return _dec(x) / _dec(y)


def s_idiv(x: Any, y: Any) -> int | None:
    """`div` on numbers: truncated towards zero; division by zero is empty."""
    if x is None or y is None or y == 0:
        return None
    if type(x) is int and type(y) is int:
        q = abs(x) // abs(y)
        return q if (x >= 0) == (y >= 0) else -q
    return int(_dec(x) / _dec(y))


def s_mod(x: Any, y: Any) -> Any:
    """`mod` on numbers: the sign of the dividend; modulo zero is empty."""
    if x is None or y is None or y == 0:
        return None
    if type(x) is int and type(y) is int:
        r = abs(x) % abs(y)
        return r if x >= 0 else -r
    return _dec(x) % _dec(y)


def s_str_equiv(x: str, y: str) -> bool:
    return _norm_str(x) == _norm_str(y)


def s_num_equiv(x: Any, y: Any) -> bool:
    return item_equiv(x, y)
