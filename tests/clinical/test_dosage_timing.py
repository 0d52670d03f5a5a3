"""Scheduled administration times from a FHIR R4 Timing (sante.clinical.dosage_timing)."""

from __future__ import annotations

from datetime import date

from sante.clinical.dosage_timing import as_needed, scheduled_times

DAY = date(2026, 3, 11)  # a Wednesday


def _order(repeat: dict, *, authored: str = "2026-03-01T08:00:00+07:00", **dosage) -> dict:
    return {"authoredOn": authored, "dosageInstruction": [{"timing": {"repeat": repeat}, **dosage}]}


def times(order: dict, day: date = DAY) -> list[str]:
    return [t.strftime("%H:%M") for t in scheduled_times(order, day)]


def test_times_a_day_at_the_usual_rounds():
    assert times(_order({"frequency": 1, "period": 1, "periodUnit": "d"})) == ["08:00"]
    assert times(_order({"frequency": 2, "period": 1, "periodUnit": "d"})) == ["08:00", "20:00"]
    assert times(_order({"frequency": 3, "period": 1, "periodUnit": "d"})) == ["08:00", "14:00", "20:00"]
    assert times(_order({"frequency": 4, "period": 1, "periodUnit": "d"})) == ["00:00", "06:00", "12:00", "18:00"]


def test_every_so_many_hours_from_six():
    assert times(_order({"frequency": 1, "period": 8, "periodUnit": "h"})) == ["06:00", "14:00", "22:00"]
    assert times(_order({"frequency": 1, "period": 12, "periodUnit": "h"})) == ["06:00", "18:00"]


def test_times_of_day_and_events():
    assert times(_order({"timeOfDay": ["21:30:00", "07:15:00"]})) == ["07:15", "21:30"]
    assert times(_order({"when": ["MORN", "NIGHT"]})) == ["08:00", "21:00"]
    assert times(_order({"when": ["C"], "offset": 30})) == ["07:00", "11:30", "17:30"]  # after meals


def test_days_between_doses_and_weekdays():
    every_other = _order({"frequency": 1, "period": 2, "periodUnit": "d"}, authored="2026-03-09T07:00:00+07:00")
    assert times(every_other) == ["08:00"] and times(every_other, date(2026, 3, 12)) == []
    weekly = _order({"frequency": 1, "period": 1, "periodUnit": "wk", "dayOfWeek": ["mon", "wed"]})
    assert times(weekly) == ["08:00"] and times(weekly, date(2026, 3, 12)) == []


def test_bounds_and_as_needed():
    bounded = _order({"frequency": 2, "period": 1, "periodUnit": "d",
                      "boundsPeriod": {"start": "2026-03-11T12:00:00+07:00", "end": "2026-03-13T09:00:00+07:00"}})
    assert times(bounded, date(2026, 3, 10)) == [] and times(bounded) == ["20:00"]
    assert times(bounded, date(2026, 3, 13)) == ["08:00"] and times(bounded, date(2026, 3, 14)) == []
    course = _order({"frequency": 1, "period": 1, "periodUnit": "d", "boundsDuration": {"value": 3, "code": "d"}},
                    authored="2026-03-09T07:00:00+07:00")
    assert times(course) == ["08:00"] and times(course, date(2026, 3, 12)) == []
    prn = _order({"frequency": 4, "period": 1, "periodUnit": "d"}, asNeededBoolean=True)
    assert times(prn) == [] and as_needed(prn) and not as_needed(course)
    assert times({"dosageInstruction": [{"text": "theo chỉ dẫn"}]}) == []
