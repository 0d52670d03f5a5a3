"""Outbreak alerts: the recommended detector (sante.analytics.surveillance) run over the weekly counts of each
notifiable disease per province (or commune); each new alarm becomes a FHIR Flag on the place and a Communication
to the place's public-health officers, and an officer's verdict (confirmed outbreak, false alarm) closes the Flag.

The Flag: category public health (FLAG_CATEGORY_SYSTEM|public-health), code the disease (its ICD-10 codes and
name), subject the place's Location (a jurisdiction Location identified by the 2025 province or commune code,
created on first use, managed by the place's public-health Organization when there is one), period the ISO week,
an identifier ALERT_SYSTEM|<disease>/<level>/<place>/<week> that makes a second run for the same week write
nothing, and the SIGNAL_EXTENSION: the detector's method, the observed and expected counts and the upper bound.
The verdict goes into VERDICT_EXTENSION (verdict, who, when) and the Flag becomes inactive.

The officers of a place: the PractitionerRoles coded public_health (STAFF_ROLE_SYSTEM) of the Organization that
carries the place's code under JURISDICTION_SYSTEM (for a commune without one, its province's), and the user
accounts with the public_health role bound to that Organization.

Writes go through the guarded repository as the surveillance service (a system principal: the officers' role
reads no patient data and writes no Flag), with the request's audit event when an officer acts from the page, so
the AuditEvent names the officer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sante.analytics.indicators import Case, PopulationData, week_monday, week_text, weeks_between
from sante.analytics.notifiable import ICD10_SYSTEM, disease
from sante.analytics.surveillance import detect
from sante.anomaly import Anomaly, Category, incorrect
from sante.auth.audit import Event
from sante.auth.guarded import GuardedRepository, GuardedTransaction
from sante.auth.principal import Principal
from sante.auth.scopes import Scopes
from sante.auth.users import UserStore
from sante.clinical import admin_units
from sante.store import Repository

ALERT_SYSTEM = "https://sante.health/fhir/sid/surveillance-alert"
FLAG_CATEGORY_SYSTEM = "https://sante.health/fhir/CodeSystem/flag-category"
COMMUNICATION_CATEGORY_SYSTEM = "https://sante.health/fhir/CodeSystem/communication-category"
SIGNAL_EXTENSION = "https://sante.health/fhir/StructureDefinition/surveillance-signal"
VERDICT_EXTENSION = "https://sante.health/fhir/StructureDefinition/surveillance-verdict"
JURISDICTION_SYSTEM = "https://sante.health/fhir/sid/public-health-jurisdiction"
STAFF_ROLE_SYSTEM = "https://sante.health/fhir/CodeSystem/user-role"
LOCATION_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/location-physical-type"
LEVELS = ("province", "commune")
VERDICTS = ("confirmed", "false-alarm")
DEFAULT_METHOD = "recommended"
HISTORY_WEEKS = 5 * 52 + 5  # the recommended detector's baseline: 5 years ± 3 weeks, and the week before
SERVICE = Principal("surveillance", "system", Scopes.parse("system/*.cruds"))
PLACE_SYSTEMS = {"province": admin_units.PROVINCE_SYSTEM, "commune": admin_units.COMMUNE_SYSTEM}


@dataclass(frozen=True, slots=True)
class Signal:
    """An alarm of the detector: more cases of a disease at a place in a week than it expected."""

    disease: str
    level: str  # province | commune
    place: str  # the 2025 code
    week: tuple[int, int]
    observed: int
    expected: float
    upperbound: float
    method: str

    @property
    def key(self) -> str:
        return f"{self.disease}/{self.level}/{self.place}/{week_text(self.week)}"


# -- detection -----------------------------------------------------------------------------------------------------
def place_of(case: Case, level: str) -> str | None:
    return case.person.province if level == "province" else case.person.commune


def weekly_series(cases: Iterable[Case], weeks: list[tuple[int, int]]) -> list[int]:
    """The cases per week of `weeks` (in order)."""
    per_week = Counter(c.week for c in cases)
    return [per_week.get(w, 0) for w in weeks]


def detector_start(week: tuple[int, int]) -> tuple[int, int]:
    """The `start` the detector is given: it numbers weeks 1..52 and only labels its results with it (they are read
    by their time point here), so the 53rd week of a long ISO year is passed as the 52nd."""
    return week[0], min(week[1], 52)


def history_weeks(week: tuple[int, int], count: int = HISTORY_WEEKS) -> list[tuple[int, int]]:
    """`count` ISO weeks ending with `week`."""
    last = week_monday(week)
    return weeks_between(last - timedelta(weeks=count - 1), last)


def detect_signals(data: PopulationData, week: tuple[int, int], *, level: str = "province",
                   method: str = DEFAULT_METHOD) -> list[Signal]:
    """The alarms of `week` for every notifiable disease × place that has cases that week."""
    if level not in LEVELS:
        raise incorrect(f"the level is one of {', '.join(LEVELS)}", "level")
    weeks = history_weeks(week)
    first = weeks[0]
    groups: dict[tuple[str, str], list[Case]] = {}
    for c in data.cases:
        place = place_of(c, level)
        if place is not None and first <= c.week <= week:
            groups.setdefault((c.disease, place), []).append(c)
    out = []
    for (key, place), cases in sorted(groups.items()):
        series = weekly_series(cases, weeks)
        if series[-1] == 0:
            continue  # no case this week: nothing can exceed a bound
        point = detect(series, method, freq=52, start=detector_start(first), range=(len(series), len(series)))[-1]
        if point.get("alarm"):
            out.append(Signal(key, level, place, week, series[-1], float(point.get("expected") or 0.0),
                              float(point.get("upperbound") or 0.0), str(point.get("method") or method)))
    return out


# -- places and officers -------------------------------------------------------------------------------------------
def _first(g: GuardedTransaction, rtype: str, query: list[tuple[str, str]]) -> dict[str, Any] | None:
    found = g.search(rtype, [*query, ("_count", "1")]).matches
    return found[0].resource if found else None


def place_name(level: str, code: str) -> str:
    unit = admin_units.province(code) if level == "province" else admin_units.commune(code)
    return unit.name if unit is not None else code


def _province_code(level: str, code: str) -> str | None:
    if level == "province":
        return code
    unit = admin_units.commune(code)
    return unit.province_code if unit is not None else None


def jurisdiction_organization(g: GuardedTransaction, level: str, code: str) -> dict[str, Any] | None:
    """The public-health Organization of a place (a commune without one: its province's)."""
    found = _first(g, "Organization", [("identifier", f"{JURISDICTION_SYSTEM}|{code}")])
    province = _province_code(level, code)
    if found is None and level == "commune" and province is not None:
        found = _first(g, "Organization", [("identifier", f"{JURISDICTION_SYSTEM}|{province}")])
    return found


def place_location(g: GuardedTransaction, level: str, code: str) -> dict[str, Any]:
    """The jurisdiction Location of a province or commune, created the first time it is needed."""
    system = PLACE_SYSTEMS[level]
    found = _first(g, "Location", [("identifier", f"{system}|{code}")])
    if found is not None:
        return found
    location: dict[str, Any] = {
        "resourceType": "Location", "status": "active", "mode": "instance", "name": place_name(level, code),
        "identifier": [{"system": system, "value": code}],
        "physicalType": {"coding": [{"system": LOCATION_TYPE_SYSTEM, "code": "jdn", "display": "Jurisdiction"}]},
    }
    organization = jurisdiction_organization(g, level, code)
    if organization is not None:
        location["managingOrganization"] = {"reference": f"Organization/{organization['id']}"}
    return g.create(location).resource or location


def officers(g: GuardedTransaction, users: UserStore, organization: dict[str, Any] | None) -> list[str]:
    """References to the public-health officers of an Organization (PractitionerRoles and user accounts)."""
    if organization is None:
        return []
    org = f"Organization/{organization['id']}"
    roles = g.search("PractitionerRole", [("organization", org), ("role", f"{STAFF_ROLE_SYSTEM}|public_health"),
                                          ("active", "true")]).matches
    out = [f"PractitionerRole/{r.id}" for r in roles]
    out += [u.fhir_user for u in users.list() if u.role == "public_health" and u.organization == org
            and u.fhir_user and not u.disabled]
    return list(dict.fromkeys(out))


# -- the resources -------------------------------------------------------------------------------------------------
def _decimal(value: float) -> float:
    return round(float(value), 3)


def flag_resource(signal: Signal, location: dict[str, Any], organization: dict[str, Any] | None,
                  now: datetime) -> dict[str, Any]:
    found = disease(signal.disease)
    name = found.vi if found else signal.disease
    monday = week_monday(signal.week)
    flag: dict[str, Any] = {
        "resourceType": "Flag", "status": "active",
        "identifier": [{"system": ALERT_SYSTEM, "value": signal.key}],
        "category": [{"coding": [{"system": FLAG_CATEGORY_SYSTEM, "code": "public-health",
                                  "display": "Public health"}], "text": "Y tế công cộng"}],
        "code": {"coding": [{"system": ICD10_SYSTEM, "code": p} for p in (found.prefixes if found else ())],
                 "text": f"{name}: {signal.observed} ca tuần {week_text(signal.week)} (ngưỡng "
                         f"{signal.upperbound:.1f})"},
        "subject": {"reference": f"Location/{location['id']}", "display": str(location.get("name") or "")},
        "period": {"start": monday.isoformat(), "end": (monday + timedelta(days=6)).isoformat()},
        "extension": [{"url": SIGNAL_EXTENSION, "extension": [
            {"url": "disease", "valueCode": signal.disease},
            {"url": "level", "valueCode": signal.level},
            {"url": "place", "valueCode": signal.place},
            {"url": "week", "valueString": week_text(signal.week)},
            {"url": "method", "valueCode": signal.method},
            {"url": "observed", "valueInteger": signal.observed},
            {"url": "expected", "valueDecimal": _decimal(signal.expected)},
            {"url": "upperBound", "valueDecimal": _decimal(signal.upperbound)},
            {"url": "detected", "valueDateTime": now.astimezone(UTC).isoformat(timespec="seconds")},
        ]}],
    }
    if organization is not None:
        flag["author"] = {"reference": f"Organization/{organization['id']}"}
    return flag


def communication_resource(signal: Signal, flag: dict[str, Any], recipients: list[str],
                           organization: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    found = disease(signal.disease)
    name = found.vi if found else signal.disease
    text = (f"Cảnh báo dịch: {name} tại {place_name(signal.level, signal.place)}, tuần {week_text(signal.week)}: "
            f"{signal.observed} ca, cao hơn ngưỡng {signal.upperbound:.1f} (kỳ vọng {signal.expected:.1f}; "
            f"phương pháp {signal.method}). Đề nghị xác minh và báo cáo.")
    communication: dict[str, Any] = {
        "resourceType": "Communication", "status": "completed",
        "identifier": [{"system": ALERT_SYSTEM, "value": signal.key}],
        "category": [{"coding": [{"system": COMMUNICATION_CATEGORY_SYSTEM, "code": "outbreak-alert",
                                  "display": "Outbreak alert"}]}],
        "priority": "urgent",
        "about": [{"reference": f"Flag/{flag['id']}"}],
        "sent": now.astimezone(UTC).isoformat(timespec="seconds"),
        "payload": [{"contentString": text}],
    }
    if recipients:
        communication["recipient"] = [{"reference": r} for r in recipients]
    if organization is not None:
        communication["sender"] = {"reference": f"Organization/{organization['id']}"}
    return communication


# -- raising alerts ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertRun:
    signals: int  # alarms found
    created: tuple[str, ...]  # ids of the new Flags
    already: int  # alarms already raised by an earlier run


def raise_alerts(repo: Repository, data: PopulationData, week: tuple[int, int], *, level: str = "province",
                 method: str = DEFAULT_METHOD, now: datetime | None = None, event: Event | None = None) -> AlertRun:
    """Detect the alarms of `week` and write a Flag and a Communication for each one not raised before."""
    now = now or datetime.now(UTC)
    signals = detect_signals(data, week, level=level, method=method)
    users = UserStore(repo.engine)
    created, already = [], 0
    with GuardedRepository(repo, SERVICE, event).transaction() as g:
        for s in signals:
            if _first(g, "Flag", [("identifier", f"{ALERT_SYSTEM}|{s.key}")]) is not None:
                already += 1
                continue
            organization = jurisdiction_organization(g, s.level, s.place)
            location = place_location(g, s.level, s.place)
            flag = g.create(flag_resource(s, location, organization, now)).resource or {}
            g.create(communication_resource(s, flag, officers(g, users, organization), organization, now))
            created.append(str(flag["id"]))
    return AlertRun(len(signals), tuple(created), already)


# -- reading and judging alerts ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    version: int
    disease: str
    level: str
    place: str
    week: tuple[int, int]
    method: str
    observed: int
    expected: float
    upperbound: float
    place_name: str
    active: bool
    verdict: str | None  # confirmed | false-alarm | None (not judged yet)
    judged_by: str | None
    judged_at: str | None


def _parts(resource: dict[str, Any], url: str) -> dict[str, Any]:
    ext = next((e for e in resource.get("extension") or () if e.get("url") == url), None)
    out: dict[str, Any] = {}
    for sub in (ext or {}).get("extension") or ():
        value = next((v for k, v in sub.items() if k.startswith("value")), None)
        out[str(sub.get("url"))] = value
    return out


def _week_of(text: str) -> tuple[int, int]:
    year, _, week = text.partition("-W")
    return int(year), int(week)


def alert_of(resource: dict[str, Any], version: int) -> Alert | None:
    """An alert as the page shows it, from its Flag (None for a Flag that is not a surveillance alert)."""
    signal = _parts(resource, SIGNAL_EXTENSION)
    if not signal.get("disease") or not signal.get("week"):
        return None
    verdict = _parts(resource, VERDICT_EXTENSION)
    level, place = str(signal.get("level") or "province"), str(signal.get("place") or "")
    return Alert(str(resource["id"]), version, str(signal["disease"]), level, place, _week_of(str(signal["week"])),
                 str(signal.get("method") or ""), int(signal.get("observed") or 0),
                 float(signal.get("expected") or 0.0), float(signal.get("upperBound") or 0.0),
                 place_name(level, place), resource.get("status") == "active", verdict.get("verdict"),
                 verdict.get("by"), verdict.get("date"))


def list_alerts(repo: Repository, event: Event | None = None) -> list[Alert]:
    """Every surveillance alert, newest week first."""
    found: list[Any] = []
    cursor = None
    with GuardedRepository(repo, SERVICE, event).reader() as g:
        while True:
            page = g.search("Flag", [("identifier", f"{ALERT_SYSTEM}|"), ("_count", "1000"),
                                     *([("_cursor", cursor)] if cursor else [])])
            found += page.matches
            cursor = page.next_cursor
            if not cursor:
                break
    alerts = [a for m in found if (a := alert_of(m.resource or {}, m.version)) is not None]
    return sorted(alerts, key=lambda a: (a.week, a.observed, a.id), reverse=True)


def read_alert(repo: Repository, flag_id: str, event: Event | None = None) -> Alert:
    """One alert; 404 when there is no such surveillance alert."""
    with GuardedRepository(repo, SERVICE, event).reader() as g:
        stored = g.read("Flag", flag_id)
    found = alert_of(stored.resource or {}, stored.version)
    if found is None:
        raise Anomaly(Category.NOT_FOUND, f"Flag/{flag_id} is not a surveillance alert")
    return found


def record_verdict(repo: Repository, flag_id: str, verdict: str, judge: str, *, event: Event | None = None,
                   now: datetime | None = None) -> Alert:
    """Close an alert with an officer's verdict (confirmed outbreak or false alarm): the Flag becomes inactive,
    the verdict, who and when in VERDICT_EXTENSION. 409 when it was judged already."""
    if verdict not in VERDICTS:
        raise incorrect(f"the verdict is one of {', '.join(VERDICTS)}", "verdict")
    now = now or datetime.now(UTC)
    with GuardedRepository(repo, SERVICE, event).transaction() as g:
        stored = g.read("Flag", flag_id)
        resource = stored.resource or {}
        if alert_of(resource, stored.version) is None:
            raise Anomaly(Category.NOT_FOUND, f"Flag/{flag_id} is not a surveillance alert")
        if _parts(resource, VERDICT_EXTENSION):
            raise Anomaly(Category.CONFLICT, f"Flag/{flag_id} was judged already")
        resource["status"] = "inactive"
        resource.setdefault("extension", []).append({"url": VERDICT_EXTENSION, "extension": [
            {"url": "verdict", "valueCode": verdict},
            {"url": "by", "valueString": judge},
            {"url": "date", "valueDateTime": now.astimezone(UTC).isoformat(timespec="seconds")},
        ]})
        updated = g.update(resource, if_match=stored.version)
    found = alert_of(updated.resource or {}, updated.version)
    assert found is not None
    return found


@dataclass(frozen=True, slots=True)
class MethodPrecision:
    method: str
    alerts: int
    confirmed: int
    false_alarms: int

    @property
    def judged(self) -> int:
        return self.confirmed + self.false_alarms

    @property
    def precision(self) -> float | None:
        """Confirmed outbreaks among the judged alerts (None before the first verdict)."""
        return self.confirmed / self.judged if self.judged else None


def precision_by_method(alerts: Iterable[Alert]) -> list[MethodPrecision]:
    """Each detection method's record: its alerts, how many were confirmed, how many false alarms."""
    counts: dict[str, Counter[str]] = {}
    for a in alerts:
        c = counts.setdefault(a.method, Counter())
        c["all"] += 1
        c[a.verdict or "pending"] += 1
    return [MethodPrecision(m, c["all"], c["confirmed"], c["false-alarm"]) for m, c in sorted(counts.items())]


def last_complete_week(today: date) -> tuple[int, int]:
    """The ISO week before the one `today` is in."""
    year, week, _ = (today - timedelta(days=7)).isocalendar()
    return year, week


__all__ = ["ALERT_SYSTEM", "DEFAULT_METHOD", "JURISDICTION_SYSTEM", "LEVELS", "SERVICE", "SIGNAL_EXTENSION",
           "STAFF_ROLE_SYSTEM", "VERDICTS", "VERDICT_EXTENSION", "Alert", "AlertRun", "MethodPrecision", "Signal",
           "alert_of", "detect_signals", "detector_start", "history_weeks", "last_complete_week", "list_alerts", "officers",
           "place_location", "precision_by_method", "raise_alerts", "read_alert", "record_verdict",
           "weekly_series"]
