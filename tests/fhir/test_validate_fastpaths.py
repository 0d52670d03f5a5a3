"""The validator's shortcuts give the verdicts of the general path: per-1 without the FHIRPath engine, the quick
acceptance of uri values (which must still record '#id' references) and the temporal parser's fast path."""

from __future__ import annotations

import itertools

import pytest

from sante.fhir import validate as V
from sante.fhir.model import r4
from sante.fhir.validate import validate
from sante.fhirpath import temporal as T

STAMPS = [
    "2020-01-28T10:00:00Z",
    "2020-01-28T10:00:00.5Z",
    "2020-01-28T10:00:00.500Z",
    "2020-01-28T10:00:00.499999Z",
    "2020-01-28T09:59:59+00:00",
    "2020-01-28T10:00:00+02:00",
    "2020-01-28T08:00:00+00:00",
    "2020-01-31T23:59:59-05:00",
    "2020-02-29T00:00:00Z",
    "2020-02-30T00:00:00Z",
    "2021-02-29T00:00:00Z",
    "2020-04-31T00:00:00Z",
    "2020-04-30T23:59:60Z",
    "0000-01-01T00:00:00Z",
    "2020-01-28",
    "2020-01-28T10:00",
    "2020-01-28T10:00:00",
    "2020-13-01T00:00:00Z",
    "2020-01-28T24:00:00Z",
    "２020-01-28T10:00:00Z",
    "2020-01-28T10:00:00+0200",
]


def _per1() -> V._Invariant:
    period = r4().element("Period")
    assert period is not None
    (inv,) = [i for i in V._invariants(period.constraints, "Period", r4().children("Period")) if i.key == "per-1"]
    return inv


def test_per1_direct_evaluation_agrees_with_the_engine() -> None:
    direct, engine = _per1(), _per1()
    assert direct.direct is not None
    engine.direct = None
    st = V._State(False)
    decided = 0
    for start, end in itertools.product(STAMPS, repeat=2):
        obj = {"start": start, "end": end}
        decided += V._period_start_le_end(obj) is not None
        assert V._holds(direct, obj, st) == V._holds(engine, obj, st), obj
    assert decided > 25  # the shortcut does answer the usual forms


@pytest.mark.parametrize(
    ("start", "end", "ok"),
    [
        ("2020-01-28T10:00:00Z", "2020-01-28T10:00:00Z", True),
        ("2020-01-28T10:00:01Z", "2020-01-28T10:00:00Z", False),
        ("2020-01-28T10:00:00.5Z", "2020-01-28T10:00:00.4999Z", False),
        ("2020-01-28T10:00:00+02:00", "2020-01-28T09:00:00+00:00", True),
        ("2020-01-31T10:00:00-05:00", "2020-01-30T10:00:00-05:00", False),
    ],
)
def test_period_start_after_end(start: str, end: str, ok: bool) -> None:
    enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}}
    issues = validate({**enc, "period": {"start": start, "end": end}})
    per1 = [i for i in issues if "(per-1)" in i.message]
    assert (not per1) is ok
    if not ok:
        assert per1[0].location == "Encounter.period" and per1[0].severity == "error"


def test_local_reference_in_a_uri_field_still_counts() -> None:
    contained = [{"resourceType": "Questionnaire", "id": "q", "status": "draft"}]
    base = {"resourceType": "QuestionnaireResponse", "status": "completed", "contained": contained}
    assert not validate({**base, "questionnaire": "#q"})
    issues = validate({**base, "questionnaire": "http://example.org/Questionnaire/q"})
    assert [i.location for i in issues] == ["QuestionnaireResponse.contained[0]"]


def test_parse_datetime_fast_path_matches_the_general_form() -> None:
    for text in [*STAMPS, "2020-01-28T10:00:00.1234Z", "1999-12-31T23:59:59.000-14:00", "2020-01-28T10:00:00.Z"]:
        got = T.parse_datetime(text)
        m = T._DATETIME_RE.fullmatch(text)
        if got is None or got.prec < T.SECOND:
            continue  # the fast path reads only full date-times
        assert m is not None and str(got) == text
        y, mo, d, h, mi, s = (int(g) if g else None for g in m.groups()[:6])
        frac = m.group(7)
        assert got.c == (y, mo, d, h, mi, s, T._frac_ms(frac))
        assert got.prec == (T.MILLI if frac else T.SECOND)
        assert got.tz == T._tz_minutes(m.group(8))
