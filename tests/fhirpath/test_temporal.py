from __future__ import annotations

import pytest

from sante.fhirpath import evaluate
from sante.fhirpath.temporal import boundary, compare, parse_date, parse_datetime, parse_time, precision


def ev(expr: str) -> list:
    return evaluate({}, expr)


def test_parse_keeps_precision_and_text() -> None:
    dt = parse_datetime("2015-02-04T14:34:28.123+10:00")
    assert dt is not None and str(dt) == "2015-02-04T14:34:28.123+10:00" and dt.tz == 600
    assert str(parse_date("2015-02")) == "2015-02"
    assert parse_date("2015-13") is None
    assert parse_time("25:00") is None
    assert parse_datetime("2015-02-04T") is None  # a FHIR value needs a time after T


def test_comparison_at_different_precisions_has_no_answer() -> None:
    assert ev("@2018-03 < @2018-03-01") == []
    assert ev("@2012-04-15 = @2012-04-15T10:00:00") == []
    assert ev("@2017-03 < @2018-03-01") == [True]  # decided before the precisions diverge


def test_seconds_and_milliseconds_are_one_precision() -> None:
    assert ev("@2012-04-15T15:30:31 = @2012-04-15T15:30:31.0") == [True]
    assert ev("@T10:30:00 < @T10:30:00.0") == [False]


def test_timezones_are_normalised_when_both_have_one() -> None:
    a = parse_datetime("2017-11-05T01:30:00.0-04:00")
    b = parse_datetime("2017-11-05T00:30:00.0-05:00")
    assert a is not None and b is not None and compare(a, b) == 0
    assert ev("@2012-04-15T15:00:00Z = @2012-04-15T10:00:00") == []  # one side in local time


def test_calendar_arithmetic() -> None:
    assert [str(v) for v in ev("@2016-01-31 + 1 month")] == ["2016-02-29"]
    assert [str(v) for v in ev("@1973-12-25T00:00:00.000+10:00 + 7.7 days")] == [
        "1974-01-01T00:00:00.000+10:00"
    ]
    assert [str(v) for v in ev("@T23:30 + 1 hour")] == ["00:30"]
    with pytest.raises(ValueError):
        ev("@1973-12-25 + 1 'mo'")  # UCUM months are not calendar months


def test_boundaries_and_precision() -> None:
    d = parse_date("2014")
    assert d is not None and str(boundary(d, 6, True)) == "2014-12" and precision(d) == 4
    assert [str(v) for v in ev("@2014-02.highBoundary(8)")] == ["2014-02-28"]
    assert [str(v) for v in ev("@2014-01-01T08:05+08:00.lowBoundary(17)")] == [
        "2014-01-01T08:05:00.000+08:00"
    ]


def test_fhir_values_become_dates(patient: dict) -> None:
    assert [str(v) for v in evaluate(patient, "Patient.birthDate")] == ["1974-12-25"]
    assert evaluate(patient, "Patient.birthDate < @2000") == [True]
