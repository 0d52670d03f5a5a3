"""FHIRPath Date, DateTime and Time values: partial precision, timezones, comparison and arithmetic.

All three share one representation: the components (year, month, day, hour, minute, second, millisecond) that
the value states, `None` beyond its precision, and a timezone offset in minutes (or None). Comparison follows
the FHIRPath rules: seconds and milliseconds count as one precision, values are normalised to UTC when both
carry an offset, and a comparison that runs past the precision of either side has no answer (`None`).
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
from decimal import Decimal
from typing import Any

# Component indexes.
YEAR, MONTH, DAY, HOUR, MINUTE, SECOND, MILLI = range(7)

_DATE_RE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_TIME_RE = re.compile(r"(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?")
_TZ_RE = re.compile(r"Z|[+-]\d{2}:\d{2}")
_DATETIME_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?"
    r"(?:T(?:(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?(Z|[+-]\d{2}:\d{2})?)?"
)


class Temporal:
    """Base of Date, DateTime and Time. Immutable; `str()` gives the ISO form (without `@`)."""

    __slots__ = ("_frac", "_text", "c", "prec", "tz")
    kind = "Temporal"

    def __init__(
        self,
        c: tuple[Any, ...],
        prec: int,
        tz: int | None = None,
        text: str | None = None,
        frac: str | None = None,
    ) -> None:
        self.c = c  # 7 components, None beyond the precision (and for Time, before HOUR)
        self.prec = prec  # index of the last stated component
        self.tz = tz
        self._text = text
        self._frac = frac  # the fraction of a second as written (keeps "0" vs "000")

    # -- presentation -------------------------------------------------------------------------------------------
    def __str__(self) -> str:
        if self._text is None:
            self._text = self._format()
        return self._text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def _time_text(self) -> str:
        c = self.c
        s = f"{c[HOUR]:02d}"
        if self.prec >= MINUTE:
            s += f":{c[MINUTE]:02d}"
        if self.prec >= SECOND:
            s += f":{c[SECOND]:02d}"
        if self.prec >= MILLI:
            s += "." + (self._frac if self._frac is not None else f"{c[MILLI]:03d}")
        return s

    def _tz_text(self) -> str:
        if self.tz is None:
            return ""
        if self.tz == 0:
            return "Z"
        sign = "-" if self.tz < 0 else "+"
        return f"{sign}{abs(self.tz) // 60:02d}:{abs(self.tz) % 60:02d}"

    def _format(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- identity -----------------------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        # Python equality (used for hashing/dedup) is exact identity of the stated value, not FHIRPath `=`.
        return type(other) is type(self) and other.c == self.c and other.tz == self.tz  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.c, self.tz))

    @property
    def precision_level(self) -> int:
        """The precision for comparison: seconds and milliseconds are one level."""
        return SECOND if self.prec == MILLI else self.prec

    def _seconds(self) -> Decimal | None:
        s = self.c[SECOND]
        if s is None:
            return None
        ms = self.c[MILLI]
        return Decimal(s) + (Decimal(ms) / 1000 if ms else 0)


class Date(Temporal):
    __slots__ = ()
    kind = "Date"

    def _format(self) -> str:
        c = self.c
        s = f"{c[YEAR]:04d}"
        if self.prec >= MONTH:
            s += f"-{c[MONTH]:02d}"
        if self.prec >= DAY:
            s += f"-{c[DAY]:02d}"
        return s


class DateTime(Temporal):
    __slots__ = ()
    kind = "DateTime"

    def _format(self) -> str:
        s = Date._format(self)  # type: ignore[arg-type]
        if self.prec >= HOUR:
            s += "T" + self._time_text() + self._tz_text()
        return s


class Time(Temporal):
    __slots__ = ()
    kind = "Time"

    def _format(self) -> str:
        return self._time_text()


# -- parsing ----------------------------------------------------------------------------------------------------
def _frac_ms(frac: str | None) -> int | None:
    if frac is None:
        return None
    return int((frac + "000")[:3])


def _tz_minutes(tz: str | None) -> int | None:
    if tz is None:
        return None
    if tz == "Z":
        return 0
    sign = -1 if tz[0] == "-" else 1
    return sign * (int(tz[1:3]) * 60 + int(tz[4:6]))


def _valid(y: int, mo: int | None, d: int | None) -> bool:
    if mo is not None and not 1 <= mo <= 12:
        return False
    return d is None or 1 <= d <= calendar.monthrange(y, mo or 1)[1]


def parse_date(text: str) -> Date | None:
    """A Date from `YYYY[-MM[-DD]]`, or None when the text is not one."""
    m = _DATE_RE.fullmatch(text)
    if not m:
        return None
    y, mo, d = (int(g) if g else None for g in m.groups())
    assert y is not None
    if not _valid(y, mo, d):
        return None
    prec = DAY if d is not None else MONTH if mo is not None else YEAR
    return Date((y, mo, d, None, None, None, None), prec, None, text)


# The usual full form `YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm)` (ASCII digits only), parsed without the general regex.
_FULL_DATETIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def parse_datetime(text: str, *, literal: bool = False) -> DateTime | None:
    """A DateTime from FHIR/ISO text (any precision, optional offset), or None when the text is not one.

    `literal` accepts the FHIRPath literal forms with a trailing `T` (`2015T`, `2015-02-04T`).
    """
    m = _FULL_DATETIME_RE.fullmatch(text)
    if m is not None:  # the same result as the general path below, faster
        ys, mos, ds, hs, mis, ss, ff, zone = m.groups()
        fy, fmo, fd, fh, fmi, fs = int(ys), int(mos), int(ds), int(hs), int(mis), int(ss)
        if not 1 <= fmo <= 12 or fh > 23 or fmi > 59 or fs > 59 or fd < 1:
            return None
        if fd > _MONTH_DAYS[fmo] and not (fmo == 2 and fd == 29 and calendar.isleap(fy)):
            return None
        if ff is None:
            return DateTime((fy, fmo, fd, fh, fmi, fs, None), SECOND, _tz_minutes(zone), text, None)
        return DateTime((fy, fmo, fd, fh, fmi, fs, int((ff + "000")[:3])), MILLI, _tz_minutes(zone), text, ff)
    m = _DATETIME_RE.fullmatch(text)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) if g else None for g in m.groups()[:6])
    frac, tz = m.group(7), m.group(8)
    assert y is not None
    if (
        not _valid(y, mo, d)
        or (h is not None and h > 23)
        or (mi is not None and mi > 59)
        or (s is not None and s > 59)
    ):  # type: ignore[arg-type]
        return None
    if "T" in text and h is None and not literal:
        return None
    comps = (y, mo, d, h, mi, s, _frac_ms(frac))
    prec = max(i for i, v in enumerate(comps) if v is not None)
    if tz is not None and prec < HOUR:
        return None
    shown = text[:-1] if literal and text.endswith("T") else text
    return DateTime(comps, prec, _tz_minutes(tz), shown, frac)


def parse_time(text: str) -> Time | None:
    """A Time from `hh[:mm[:ss[.fff]]]` (no timezone allowed), or None."""
    m = _TIME_RE.fullmatch(text)
    if not m:
        return None
    h, mi, s = (int(g) if g else None for g in m.groups()[:3])
    if h > 23 or (mi is not None and mi > 59) or (s is not None and s > 59):  # type: ignore[operator]
        return None
    frac = m.group(4)
    comps: tuple[Any, ...] = (None, None, None, h, mi, s, _frac_ms(frac))
    prec = max(i for i, v in enumerate(comps) if v is not None)
    return Time(comps, prec, None, text, frac)


# FHIR JSON values are parsed many times (every evaluation navigates them again): cache by text.
_CACHE: dict[str, Any] = {}


def _cached(text: str, parser: Any, key: str) -> Any:
    k = key + text
    hit = _CACHE.get(k)
    if hit is None:
        if len(_CACHE) > 200_000:
            _CACHE.clear()
        hit = _CACHE[k] = parser(text) or text
    return hit


def fhir_date(text: Any) -> Any:
    """A FHIR `date` JSON value as a Date (the text itself when it is malformed)."""
    return _cached(text, parse_date, "d") if type(text) is str else text


def fhir_datetime(text: Any) -> Any:
    """A FHIR `dateTime`/`instant` JSON value as a DateTime (the text itself when it is malformed)."""
    return _cached(text, parse_datetime, "t") if type(text) is str else text


def fhir_time(text: Any) -> Any:
    """A FHIR `time` JSON value as a Time (the text itself when it is malformed)."""
    return _cached(text, parse_time, "h") if type(text) is str else text


# -- comparison -------------------------------------------------------------------------------------------------
def _utc_components(t: Temporal) -> tuple[Any, ...]:
    """The components shifted to UTC (needs tz); missing parts are filled for the shift and cut again."""
    c = t.c
    base = _dt.datetime(c[YEAR] or 2000, c[MONTH] or 1, c[DAY] or 1, c[HOUR] or 0, c[MINUTE] or 0)
    base -= _dt.timedelta(minutes=t.tz or 0)
    full: tuple[Any, ...] = (base.year, base.month, base.day, base.hour, base.minute, c[SECOND], c[MILLI])
    if isinstance(t, Time):
        full = (None, None, None, *full[3:])
    return full


def compare(a: Temporal, b: Temporal) -> int | None:
    """-1/0/1, or None when the values cannot be compared (different precision, one without timezone)."""
    if isinstance(a, Time) != isinstance(b, Time):
        raise TypeError("cannot compare a Time with a Date/DateTime")
    pa, pb = a.precision_level, b.precision_level
    ca, cb = a.c, b.c
    start = HOUR if isinstance(a, Time) else YEAR
    if min(pa, pb) >= HOUR and (a.tz is not None or b.tz is not None):
        if a.tz is None or b.tz is None:
            return None  # one side in local time: no answer
        if a.tz != b.tz:
            ca, cb = _utc_components(a), _utc_components(b)
    for i in range(start, min(pa, pb) + 1):
        if i == SECOND:
            x, y = Temporal._seconds(a), Temporal._seconds(b)
        else:
            x, y = ca[i], cb[i]
        if x != y:
            return -1 if x < y else 1  # type: ignore[operator]
    return 0 if pa == pb else None


def equivalent(a: Temporal, b: Temporal) -> bool:
    """FHIRPath `~`: equal at the same precision; different precisions are not equivalent."""
    if isinstance(a, Time) != isinstance(b, Time):
        return False
    try:
        return compare(a, b) == 0
    except TypeError:
        return False


# -- arithmetic -------------------------------------------------------------------------------------------------
def add(t: Temporal, amount: int, unit: str) -> Temporal:
    """t + amount of a calendar unit ("year", "month", "week", "day", "hour", "minute", "second",
    "millisecond"); the result keeps t's precision (a Date plus hours stays a Date)."""
    c: list[Any] = list(t.c)
    if isinstance(t, Time):
        secs = {"hour": 3600, "minute": 60, "second": 1}.get(unit)
        if unit == "millisecond":
            total_ms = ((c[HOUR] * 60 + (c[MINUTE] or 0)) * 60 + (c[SECOND] or 0)) * 1000 + (c[MILLI] or 0)
            total_ms = (total_ms + amount) % 86_400_000
        elif secs is None:
            raise ValueError(f"cannot add {unit}s to a Time")
        else:
            total_ms = ((c[HOUR] * 60 + (c[MINUTE] or 0)) * 60 + (c[SECOND] or 0)) * 1000 + (c[MILLI] or 0)
            total_ms = (total_ms + amount * secs * 1000) % 86_400_000
        parts: Any = [total_ms // 3_600_000, total_ms // 60_000 % 60, total_ms // 1000 % 60, total_ms % 1000]
        new = (None, None, None, *tuple(p if i + HOUR <= t.prec else None for i, p in enumerate(parts)))
        return Time(new, t.prec, None, None, None if t.prec < MILLI else f"{parts[3]:03d}")
    y, mo, d = c[YEAR], c[MONTH] or 1, c[DAY] or 1
    if unit in ("year", "month"):
        months = y * 12 + (mo - 1) + (amount * 12 if unit == "year" else amount)
        y, mo = divmod(months, 12)
        mo += 1
        d = min(d, calendar.monthrange(y, mo)[1])
        moment = _dt.datetime(y, mo, d, c[HOUR] or 0, c[MINUTE] or 0, c[SECOND] or 0, (c[MILLI] or 0) * 1000)
    else:
        step = {
            "week": _dt.timedelta(weeks=1),
            "day": _dt.timedelta(days=1),
            "hour": _dt.timedelta(hours=1),
            "minute": _dt.timedelta(minutes=1),
            "second": _dt.timedelta(seconds=1),
            "millisecond": _dt.timedelta(milliseconds=1),
        }[unit]
        if t.prec < DAY and unit not in ("year", "month"):
            # A partial date plus days: only whole months/years can move (spec: truncate to the precision).
            step_days = step.total_seconds() * amount / 86400
            return add(
                t, int(step_days / (365 if t.prec == YEAR else 30)), "year" if t.prec == YEAR else "month"
            )
        moment = _dt.datetime(y, mo, d, c[HOUR] or 0, c[MINUTE] or 0, c[SECOND] or 0, (c[MILLI] or 0) * 1000)
        moment += step * amount
    parts = (
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond // 1000,
    )
    new = tuple(p if i <= t.prec else None for i, p in enumerate(parts))
    frac = None if t.prec < MILLI else f"{new[MILLI]:03d}"
    return type(t)(new, t.prec, t.tz, None, frac)


# -- boundaries and precision -----------------------------------------------------------------------------------
_DIGITS = {YEAR: 4, MONTH: 6, DAY: 8, HOUR: 10, MINUTE: 12, SECOND: 14, MILLI: 17}
_TIME_DIGITS = {HOUR: 2, MINUTE: 4, SECOND: 6, MILLI: 9}


def precision(t: Temporal) -> int:
    """FHIRPath precision(): the number of digits the value states (2014 -> 4, T10:30 -> 4)."""
    return (_TIME_DIGITS if isinstance(t, Time) else _DIGITS)[t.prec]


def boundary(t: Temporal, digits: int | None, high: bool) -> Temporal | None:
    """lowBoundary()/highBoundary(): the earliest/latest value t can stand for, at `digits` precision."""
    table = _TIME_DIGITS if isinstance(t, Time) else _DIGITS
    if isinstance(t, Date):
        table = {k: v for k, v in table.items() if k <= DAY}
    if digits is None:
        digits = max(table.values())
    target = next((k for k, v in table.items() if v == digits), None)
    if target is None:
        return None
    c: list[Any] = list(t.c)
    prec = t.prec
    if isinstance(t, DateTime) and prec == HOUR:
        prec = MINUTE  # FHIR has no hour-only dateTime: read `T08` as `T08:00` (as the reference engine does)
        c[MINUTE] = 0
    lows = {MONTH: 1, DAY: 1, HOUR: 0, MINUTE: 0, SECOND: 0, MILLI: 0}
    for i in range(HOUR if isinstance(t, Time) else MONTH, MILLI + 1):
        if i > prec:
            if not high:
                c[i] = lows[i]
            elif i == MONTH:
                c[i] = 12
            elif i == DAY:
                c[i] = calendar.monthrange(c[YEAR], c[MONTH])[1]
            else:
                c[i] = {HOUR: 23, MINUTE: 59, SECOND: 59, MILLI: 999}[i]
    comps = tuple(v if i <= target else None for i, v in enumerate(c))
    tz = t.tz
    if isinstance(t, DateTime) and tz is None and target >= HOUR:
        tz = -12 * 60 if high else 14 * 60  # the widest offsets the value could have been in
    frac = f"{comps[MILLI]:03d}" if target == MILLI else None
    return type(t)(comps, target, tz if target >= HOUR else None, None, frac)


def now_datetime() -> DateTime:
    """The current moment with local offset, millisecond precision."""
    n = _dt.datetime.now().astimezone()
    off = n.utcoffset()
    tz = int(off.total_seconds() // 60) if off is not None else 0
    comps = (n.year, n.month, n.day, n.hour, n.minute, n.second, n.microsecond // 1000)
    return DateTime(comps, MILLI, tz, None, f"{comps[MILLI]:03d}")


def today_date() -> Date:
    n = _dt.date.today()
    return Date((n.year, n.month, n.day, None, None, None, None), DAY)


def time_of_day() -> Time:
    n = _dt.datetime.now()
    comps = (None, None, None, n.hour, n.minute, n.second, n.microsecond // 1000)
    return Time(comps, MILLI, None, None, f"{comps[MILLI]:03d}")


def datetime_to_date(t: DateTime) -> Date:
    prec = min(t.prec, DAY)
    return Date(tuple(v if i <= prec else None for i, v in enumerate(t.c)), prec)


def date_to_datetime(t: Date) -> DateTime:
    return DateTime(t.c, t.prec, None)
