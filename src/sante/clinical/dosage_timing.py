"""When the doses of a medication order fall on a given day: the scheduled administration times of a
MedicationRequest's `dosageInstruction[].timing` (FHIR R4 Timing), for the medication administration record.

- `timing.repeat.timeOfDay` gives the times themselves;
- `timing.repeat.when` names events of the day, placed at the ward's usual hours (EVENT_TIMES: meals at 06:30,
  11:00 and 17:00, the morning round at 08:00, bedtime at 21:00), shifted by `offset` minutes;
- otherwise `frequency` per `period` `periodUnit`: a few times a day at the usual rounds (DAILY_ROUNDS: once
  08:00, twice 08:00 and 20:00, three times 08:00, 14:00 and 20:00), four times or more evenly from 06:00; every
  N hours from 06:00 (every 8 hours: 06:00, 14:00, 22:00); every N days on the days counted from the start;
  weekly on `dayOfWeek` when given.
- `boundsPeriod` / `boundsDuration` (from the order's start: `boundsPeriod.start`, else `authoredOn`) limit the
  days; doses before the order's start or at or after its end are left out. `count` is not applied.
- An as-needed dosage (`asNeededBoolean` / `asNeededCodeableConcept`) has no scheduled times.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from sante.clinical.service_support import VIETNAM, parse_time

FIRST_DOSE = time(6, 0)  # where evenly spaced doses start
DAILY_ROUNDS = {1: (time(8),), 2: (time(8), time(20)), 3: (time(8), time(14), time(20))}
_MEALS = {"M": time(6, 30), "D": time(11, 0), "V": time(17, 0)}  # breakfast, lunch, dinner
EVENT_TIMES: dict[str, tuple[time, ...]] = {
    "WAKE": (time(6),), "MORN": (time(8),), "MORN.early": (time(7),), "MORN.late": (time(10),),
    "NOON": (time(12),), "AFT": (time(14),), "AFT.early": (time(13),), "AFT.late": (time(16),),
    "EVE": (time(18),), "EVE.early": (time(17),), "EVE.late": (time(20),), "NIGHT": (time(21),),
    "PHS": (time(21),), "HS": (time(21),),
    "C": tuple(_MEALS.values()), "CM": (_MEALS["M"],), "CD": (_MEALS["D"],), "CV": (_MEALS["V"],),
    "AC": (time(6), time(10, 30), time(16, 30)),
    "ACM": (time(6),), "ACD": (time(10, 30),), "ACV": (time(16, 30),),
    "PC": (time(7), time(11, 30), time(17, 30)), "PCM": (time(7),), "PCD": (time(11, 30),), "PCV": (time(17, 30),),
}
_UNIT_HOURS = {"s": 1 / 3600, "min": 1 / 60, "h": 1, "d": 24, "wk": 24 * 7, "mo": 24 * 30, "a": 24 * 365}
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DOSES_PER_DAY = 48


def _period_hours(repeat: dict[str, Any]) -> float | None:
    period, unit = repeat.get("period"), repeat.get("periodUnit")
    if not isinstance(period, int | float) or period <= 0 or unit not in _UNIT_HOURS:
        return None
    return float(period) * _UNIT_HOURS[unit]


def _duration_hours(quantity: Any) -> float | None:
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), int | float):
        return None
    unit = quantity.get("code") or quantity.get("unit")
    return float(quantity["value"]) * _UNIT_HOURS[unit] if unit in _UNIT_HOURS else None


def order_window(request: dict[str, Any], dosage: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """[start, end) of a dosage: its bounds, from the order's start."""
    repeat = ((dosage.get("timing") or {}).get("repeat") or {})
    bounds = repeat.get("boundsPeriod") or {}
    start = parse_time(bounds.get("start")) or parse_time(request.get("authoredOn"))
    end = parse_time(bounds.get("end"))
    hours = _duration_hours(repeat.get("boundsDuration"))
    if end is None and start is not None and hours is not None:
        end = start + timedelta(hours=hours)
    return start, end


def _times_of_day(repeat: dict[str, Any], day: date, start: datetime | None) -> list[time]:
    if repeat.get("timeOfDay"):
        out = []
        for t in repeat["timeOfDay"]:
            try:
                out.append(time.fromisoformat(str(t)))
            except ValueError:
                continue
        return out
    if repeat.get("when"):
        offset = timedelta(minutes=repeat.get("offset") or 0)
        out = []
        for event in repeat["when"]:
            for t in EVENT_TIMES.get(event, ()):
                out.append((datetime.combine(day, t) + offset).time())
        return out
    frequency = repeat.get("frequency") or 1
    hours = _period_hours(repeat)
    if hours is None or not isinstance(frequency, int) or frequency < 1:
        return []
    if hours > 24:  # every N days or weeks
        if repeat.get("dayOfWeek"):
            if _WEEKDAYS[day.weekday()] not in repeat["dayOfWeek"]:
                return []
        elif start is not None:
            days = round(hours / 24)
            if days > 1 and (day - start.astimezone(VIETNAM).date()).days % days:
                return []
        return list(DAILY_ROUNDS.get(frequency, _evenly(frequency)))
    per_day = frequency * 24 / hours
    if repeat.get("periodUnit") == "d":
        n = round(per_day)
        return list(DAILY_ROUNDS.get(n, _evenly(n)))
    return _evenly(round(per_day))


def _evenly(n: int) -> list[time]:
    """n doses a day, evenly spaced from FIRST_DOSE."""
    n = max(1, min(n, MAX_DOSES_PER_DAY))
    step = timedelta(minutes=24 * 60 // n)
    first = datetime.combine(date(2000, 1, 1), FIRST_DOSE)
    return sorted({(first + i * step).time() for i in range(n)})


def scheduled_times(request: dict[str, Any], day: date) -> list[datetime]:
    """The scheduled administration times of a MedicationRequest on a day (Viet Nam time), sorted."""
    out: set[datetime] = set()
    for dosage in request.get("dosageInstruction") or []:
        if not isinstance(dosage, dict) or dosage.get("asNeededBoolean") or dosage.get("asNeededCodeableConcept"):
            continue
        repeat = ((dosage.get("timing") or {}).get("repeat") or {})
        start, end = order_window(request, dosage)
        for t in _times_of_day(repeat, day, start):
            when = datetime.combine(day, t, VIETNAM)
            if (start is None or when >= start) and (end is None or when < end):
                out.add(when)
    return sorted(out)


def as_needed(request: dict[str, Any]) -> bool:
    """Whether every dosage of the order is taken as needed (PRN)."""
    dosages = [d for d in request.get("dosageInstruction") or [] if isinstance(d, dict)]
    return bool(dosages) and all(d.get("asNeededBoolean") or d.get("asNeededCodeableConcept") for d in dosages)


__all__ = ["DAILY_ROUNDS", "EVENT_TIMES", "as_needed", "order_window", "scheduled_times"]
