"""Facility statistics for the manager's dashboard (thống kê): visits per day and clinic, waiting times, admissions,
discharges and length of stay, bed occupancy per ward and over time, the commonest diagnoses — aggregates only.

Who may see them: managers and administrators (`STATISTICS_ROLES`). A manager's role reads no patient data
(sante.auth.roles) and this module does not change that: it is the one place that counts patients' encounters
and diagnoses for a principal who may not read them, and only numbers leave it — counts per day, per clinic, per
ward and per ICD-10 code, medians and percentiles. No resource, id or name of a patient is ever returned.

What it counts: the activity of the principal's facility — its organization and the whole `partOf` tree around
it (sante.auth.policy.facility_organizations, the same tree the row filter walks) — that is, the Encounters whose
serviceProvider is one of those organizations, and the diagnoses (Conditions) recorded for them. An account
without an organization (a single-hospital installation) counts every Encounter. Patients' consents do not
apply: they restrict who may read a record, and no record is read here; a facility's own count of the visits it
provided is its operational data.

How it reads: straight from the search index tables (idx_date, idx_token, idx_reference; see
sante.store.schema), in aggregated queries, because the guarded repository would refuse the manager (rightly)
and because counting through resources would parse every Encounter of the period. The SQL is here and nowhere
else; it runs on SQLite and PostgreSQL alike (tests/clinical/test_statistics.py runs both). The waiting time is
the one figure the index cannot answer (statusHistory is not a search parameter): the database extracts the
statusHistory of the period's outpatient visits and nothing else of them. Reference data (the names of clinics
and wards, the beds) is read through the guarded repository with the principal's own rights, which allow it;
the beds' occupancy comes from sante.clinical.inpatient.bed_board, reduced to counts here.

Days are calendar days in the hospital's time zone; a period is a list of whole days, today included (counted
up to now). Each day's figures are counted on their own (`count_days`), so a StatisticsCache can keep the days
before today and count only today at the next view, until a write touches one of them (at 100,000 patients a
30-day period costs every Encounter of the period a few index look-ups: too many to count at each view).
"""

from __future__ import annotations

import bisect
import statistics as stats
import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from time import monotonic
from typing import Any

import orjson

from sante.anomaly import incorrect
from sante.auth.guarded import GuardedRepository
from sante.auth.policy import facility_organizations, forbidden
from sante.auth.principal import Principal
from sante.clinical import icd10
from sante.clinical.inpatient import bed_board
from sante.clinical.service_support import VIETNAM, by_ids, concept_text

STATISTICS_ROLES = frozenset({"manager", "admin"})
VISIT_CLASSES = frozenset({"AMB", "EMER"})  # outpatient and emergency visits, counted per clinic
STAY_CLASSES = frozenset({"IMP", "ACUTE", "NONAC"})  # inpatient stays
NOT_HAPPENED = ("planned", "cancelled", "entered-in-error")
MAX_DAYS = 366
TOP_DIAGNOSES = 10
ID_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Period:
    """Whole calendar days, first to last inclusive."""

    first: date
    last: date

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    @classmethod
    def last_days(cls, count: int, today: date) -> Period:
        return cls(today - timedelta(days=count - 1), today)


@dataclass(frozen=True, slots=True)
class ClinicVisits:
    """The visits at one place (a clinic, the emergency department) per day of the period."""

    place_id: str | None  # Location id; None: visits without a location
    name: str
    per_day: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.per_day)


@dataclass(frozen=True, slots=True)
class DayWaits:
    """Minutes from arrival to the doctor over the outpatient visits of a day that reached the doctor."""

    day: date
    seen: int
    median: float | None
    p90: float | None  # nearest rank, as sante.clinical.queue.waiting_times


@dataclass(frozen=True, slots=True)
class DayStays:
    day: date
    admissions: int  # stays begun that day
    discharges: int  # stays finished that day
    occupied: int  # stays under way at the end of the day (now, for today): beds occupied


@dataclass(frozen=True, slots=True)
class WardBeds:
    """A ward's beds now (occupancy from the stays, as the bed board counts it)."""

    ward_id: str
    name: str
    department: str
    beds: int
    occupied: int
    cleaning: int
    closed: int

    @property
    def free(self) -> int:
        return self.beds - self.occupied - self.cleaning - self.closed

    @property
    def in_service(self) -> int:
        return self.beds - self.closed

    @property
    def rate(self) -> float:
        return self.occupied / self.in_service if self.in_service else 0.0


@dataclass(frozen=True, slots=True)
class DiagnosisCount:
    """An ICD-10 code and the number of visits and stays of the period it was diagnosed at."""

    code: str
    encounters: int
    chapter: icd10.Chapter | None
    entry: icd10.Icd10Code | None  # None: a code outside Sante's ICD-10 subset (shown as the code)


@dataclass(frozen=True, slots=True)
class FacilityStatistics:
    period: Period
    days: tuple[date, ...]
    visits: list[ClinicVisits]  # busiest first
    visits_per_day: tuple[int, ...]
    waits: list[DayWaits]
    wait_median: float | None  # over every visit of the period that reached the doctor
    wait_p90: float | None
    stays: list[DayStays]
    admissions: int
    discharges: int
    average_length_of_stay: float | None  # days, over the stays finished in the period
    wards: list[WardBeds]
    diagnoses: list[DiagnosisCount]  # at most TOP_DIAGNOSES, commonest first
    organization: str | None  # the facility's organization (its top), None: the whole installation
    facility: tuple[str, ...] = field(default=())  # the organizations counted

    @property
    def beds_in_service(self) -> int:
        return sum(w.in_service for w in self.wards)

    @property
    def total_visits(self) -> int:
        return sum(self.visits_per_day)


def require_statistics(principal: Principal) -> None:
    """403 unless the principal's role may see the facility's statistics (managers and administrators)."""
    if principal.role not in STATISTICS_ROLES:
        raise forbidden(f"the role {principal.role} may not see the facility's statistics")


# -- SQL over the index tables (both backends) ------------------------------------------------------------------
def _instant(moment: datetime) -> str:
    """A moment as the index tables store instants (UTC, microseconds, fixed width: text order is time order)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _run(conn: Any, sql: str, params: Iterable[Any]) -> list[Any]:
    if conn.dialect.name != "sqlite":
        sql = sql.replace("?", "%s")
    return conn.exec_driver_sql(sql, tuple(params)).all()


def _in_facility(alias: str, facility: tuple[str, ...] | None) -> tuple[str, list[Any]]:
    """SQL (and its parameters) true when the Encounter `alias` was provided by one of the facility's
    organizations; always true for the whole installation."""
    if facility is None:
        return "", []
    return (f" AND EXISTS (SELECT 1 FROM idx_reference sp WHERE sp.res_type = 'Encounter' AND sp.res_id = {alias} "
            f"AND sp.param = 'service-provider' AND sp.target_type = 'Organization' "
            f"AND sp.target_id IN ({_marks(len(facility))}))", list(facility))


# The Encounters whose period overlaps the window: ended after its start, or not ended (an open period has no high:
# the stays under way). `low || ''` keeps SQLite off the index on low, which would read every Encounter begun before
# the window's end; the two ranges on high read the window's only.
_OVERLAPPING = (
    "SELECT d.res_id, d.low, d.high FROM idx_date d WHERE d.res_type = 'Encounter' AND d.param = 'date' "
    "AND d.high > ? AND (d.low || '') < ? "
    "UNION ALL SELECT d.res_id, d.low, d.high FROM idx_date d WHERE d.res_type = 'Encounter' AND d.param = 'date' "
    "AND d.high IS NULL AND (d.low || '') < ?"
)

# ... with their class, status and first Location (the clinic of a visit).
_ENCOUNTERS = (
    "SELECT e.res_id, e.low, e.high, "
    "(SELECT min(c.code) FROM idx_token c WHERE c.res_type = 'Encounter' AND c.res_id = e.res_id "
    "AND c.param = 'class'), "
    "(SELECT min(s.code) FROM idx_token s WHERE s.res_type = 'Encounter' AND s.res_id = e.res_id "
    "AND s.param = 'status'), "
    "(SELECT min(l.target_id) FROM idx_reference l WHERE l.res_type = 'Encounter' AND l.res_id = e.res_id "
    "AND l.param = 'location' AND l.target_type = 'Location') "
    f"FROM ({_OVERLAPPING}) e WHERE 1 = 1"
)

# The ICD-10 codes diagnosed at these Encounters ({ids}): Conditions linked by Condition.encounter or by
# Encounter.diagnosis, refuted and entered-in-error ones left out.
_DIAGNOSED = (
    "SELECT x.enc, t.code FROM ("
    "SELECT ce.target_id AS enc, ce.res_id AS cond FROM idx_reference ce WHERE ce.res_type = 'Condition' "
    "AND ce.param = 'encounter' AND ce.target_type = 'Encounter' AND ce.target_id IN ({ids}) "
    "UNION SELECT ed.res_id AS enc, ed.target_id AS cond FROM idx_reference ed WHERE ed.res_type = 'Encounter' "
    "AND ed.param = 'diagnosis' AND ed.target_type = 'Condition' AND ed.res_id IN ({ids})) x "
    "JOIN idx_token t ON t.res_type = 'Condition' AND t.res_id = x.cond AND t.param = 'code' AND t.system = ? "
    "WHERE NOT EXISTS (SELECT 1 FROM idx_token v WHERE v.res_type = 'Condition' AND v.res_id = x.cond "
    "AND v.param = 'verification-status' AND v.code IN ('refuted', 'entered-in-error'))"
)


def _status_history_sql(dialect: str, count: int) -> str:
    """statusHistory (JSON text) of these outpatient Encounters: the one part of them the dashboard reads."""
    if dialect == "sqlite":
        extract = "json_extract(CAST(r.content AS TEXT), '$.statusHistory')"
    else:
        extract = "(convert_from(r.content, 'UTF8')::jsonb -> 'statusHistory')::text"
    return f"SELECT r.id, {extract} FROM resources r WHERE r.type = 'Encounter' AND r.id IN ({_marks(count)})"


@dataclass(frozen=True, slots=True)
class _Encounter:
    id: str
    low: str
    high: str | None
    klass: str | None
    status: str | None
    place: str | None


def _encounters(conn: Any, facility: tuple[str, ...] | None, start: str, end: str) -> list[_Encounter]:
    where, params = _in_facility("e.res_id", facility)
    rows = _run(conn, _ENCOUNTERS + where, [start, end, end, *params])
    return [_Encounter(*row) for row in rows if row[1] is not None and row[4] not in NOT_HAPPENED]


def _status_histories(conn: Any, ids: list[str]) -> dict[str, list[Any]]:
    out = {}
    for n in range(0, len(ids), ID_CHUNK):
        chunk = ids[n:n + ID_CHUNK]
        for rid, text in _run(conn, _status_history_sql(conn.dialect.name, len(chunk)), chunk):
            history = orjson.loads(text) if text else None
            if isinstance(history, list):
                out[rid] = history
    return out


def _diagnoses(conn: Any, encounters: list[str]) -> dict[str, set[str]]:
    """The ICD-10 codes (normalised: J18.9) diagnosed at each of these Encounters."""
    out: dict[str, set[str]] = {}
    for n in range(0, len(encounters), ID_CHUNK):
        chunk = encounters[n:n + ID_CHUNK]
        sql = _DIAGNOSED.format(ids=_marks(len(chunk)))
        for enc, code in _run(conn, sql, [*chunk, *chunk, icd10.ICD10_SYSTEM]):
            out.setdefault(enc, set()).add(icd10.normalise_code(str(code)) or str(code))
    return out


# -- shaping ------------------------------------------------------------------------------------------------------
class _Days:
    """The local day of index instants, cached per hour (or minute, where the zone's offset is not whole hours)."""

    def __init__(self, zone: tzinfo, period: Period) -> None:
        self.zone = zone
        offsets = {datetime.combine(d, time(12), zone).utcoffset() for d in (period.first, period.last)}
        self.width = 13 if all(o is not None and o.total_seconds() % 3600 == 0 for o in offsets) else 16
        self.cache: dict[str, date] = {}

    def of(self, instant: str) -> date:
        key = instant[:self.width]
        day = self.cache.get(key)
        if day is None:
            moment = datetime.fromisoformat(key + ":00:00+00:00"[self.width - 13:])
            day = self.cache[key] = moment.astimezone(self.zone).date()
        return day

    def of_end(self, high: str) -> date:
        """The day of a period's end, from its index `high` (the end plus its precision)."""
        return (datetime.fromisoformat(high) - timedelta(microseconds=1)).astimezone(self.zone).date()


def _wait_minutes(arrived: datetime, history: list[Any]) -> float | None:
    """Minutes from arrival (the visit's start) to the doctor (its first in-progress status), as
    sante.clinical.queue counts them; None for a visit that has no such status."""
    for h in history:
        if not isinstance(h, dict):
            continue
        period = h.get("period")
        if h.get("status") == "in-progress" and isinstance(period, dict) and isinstance(period.get("start"), str):
            try:
                called = datetime.fromisoformat(period["start"])
            except ValueError:
                return None
            called = called if called.tzinfo else called.replace(tzinfo=VIETNAM)
            return max(0.0, round((called - arrived).total_seconds() / 60, 1))
    return None


def _percentile90(values: list[float]) -> float:
    return values[max(0, -(-len(values) * 9 // 10) - 1)]


def _stay_days(start: datetime, end: datetime, zone: tzinfo) -> int:
    """Calendar days between admission and discharge, at least one (Encounter.length's rule, see inpatient)."""
    return max(1, (end.astimezone(zone).date() - start.astimezone(zone).date()).days)


def _wards(guarded: GuardedRepository, facility: tuple[str, ...] | None) -> list[WardBeds]:
    """Each ward of the facility with its beds' counts (the bed board, reduced to numbers)."""
    out = []
    for board in bed_board(guarded):
        org = (board.organization or "").removeprefix("Organization/")
        if facility is not None and org not in facility:
            continue
        out.append(WardBeds(board.id, board.name, board.department_name, board.total, board.occupied,
                            board.cleaning, board.closed))
    return out


def _place_names(guarded: GuardedRepository, ids: Iterable[str]) -> dict[str, str]:
    with guarded.reader() as g:
        found = by_ids(g, "Location", [i for i in ids if i])
    return {rid: str(loc.get("name") or concept_text((loc.get("type") or [None])[0]) or rid)
            for rid, loc in found.items()}


@dataclass(slots=True)
class DayFigures:
    """What one day of one facility adds to the statistics (kept by StatisticsCache for the days before today)."""

    visits: Counter[str | None] = field(default_factory=Counter)  # place -> visits begun that day
    waits: list[float] = field(default_factory=list)  # minutes to the doctor of the visits begun that day
    admissions: int = 0
    discharges: int = 0
    lengths: list[int] = field(default_factory=list)  # days, of the stays ended that day
    occupied: int = 0  # stays under way at the end of the day (now, for today)
    diagnoses: Counter[str] = field(default_factory=Counter)  # ICD-10 code -> encounters begun that day


def count_days(conn: Any, facility: tuple[str, ...] | None, first: date, last: date, zone: tzinfo,
               now: datetime) -> dict[date, DayFigures]:
    """The figures of the days first..last (a run of days), in a few aggregated queries over the index tables."""
    period = Period(first, last)
    days = period.days
    window_start = datetime.combine(first, time(0), zone)
    window_end = min(datetime.combine(last + timedelta(days=1), time(0), zone), now)
    start, end = _instant(window_start), _instant(max(window_end, window_start))
    encounters = _encounters(conn, facility, start, end)
    begun = [e for e in encounters if start <= e.low < end]
    histories = _status_histories(conn, [e.id for e in begun if e.klass == "AMB" and e.status in
                                         ("in-progress", "finished", "onleave")])
    diagnosed = _diagnoses(conn, [e.id for e in begun])
    day_of = _Days(zone, period)
    figures = {d: DayFigures() for d in days}
    for e in begun:
        day = figures.get(day_of.of(e.low))
        if day is None:
            continue
        if e.klass in VISIT_CLASSES:
            day.visits[e.place] += 1
        elif e.klass in STAY_CLASSES:
            day.admissions += 1
        if e.id in histories:
            minutes = _wait_minutes(datetime.fromisoformat(e.low), histories[e.id])
            if minutes is not None:
                day.waits.append(minutes)
        day.diagnoses.update(diagnosed.get(e.id, ()))
    stays = [e for e in encounters if e.klass in STAY_CLASSES]
    for e in stays:
        if e.status == "finished" and e.high is not None and start < e.high <= end:
            ended = figures.get(day_of.of_end(e.high))
            if ended is not None:
                ended.discharges += 1
                ended.lengths.append(_stay_days(datetime.fromisoformat(e.low), datetime.fromisoformat(e.high)
                                                - timedelta(microseconds=1), zone))
    lows = sorted(e.low for e in stays)
    highs = sorted(e.high for e in stays if e.high is not None)
    for d, day in figures.items():
        moment = _instant(min(datetime.combine(d + timedelta(days=1), time(0), zone) - timedelta(microseconds=1),
                              now))
        day.occupied = max(0, bisect.bisect_right(lows, moment) - bisect.bisect_right(highs, moment))
    return figures


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) runs."""
    out: list[tuple[date, date]] = []
    for d in sorted(days):
        if out and out[-1][1] + timedelta(days=1) == d:
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


# -- the days already counted -----------------------------------------------------------------------------------
_CHANGED = "SELECT id FROM resources WHERE type = ? AND seq > ?"
_BEFORE = ("SELECT content FROM resource_history WHERE type = ? AND id = ? AND seq <= ? AND NOT deleted "
           "ORDER BY seq DESC LIMIT 1")
_PERIOD = "SELECT low, high FROM idx_date WHERE res_type = 'Encounter' AND res_id = ? AND param = 'date'"
_LINKED = ("SELECT target_id FROM idx_reference WHERE res_type = 'Condition' AND res_id = ? AND param = 'encounter' "
           "AND target_type = 'Encounter' UNION SELECT res_id FROM idx_reference WHERE res_type = 'Encounter' "
           "AND param = 'diagnosis' AND target_type = 'Condition' AND target_id = ?")


class StatisticsCache:
    """The figures of days before today, by facility and day, reused while no write could have changed them.

    Each use first looks at the Encounters and Conditions written since the last look (the write sequence, `seq`)
    and forgets every day they touched, as they are and as they were (an Encounter's period, a Condition's
    encounters'), so a correction to last month shows at once. Today is always counted afresh. On PostgreSQL,
    where sequence numbers are not committed in order, the writes of the last `margin` seconds are looked at again
    at each use: a transaction that stays open longer than that before committing can leave a day stale until it
    is touched again or the process restarts. A count that cannot be told (too many writes since: a bulk load)
    forgets everything. Thread-safe; one per process (the dashboard's router holds it)."""

    def __init__(self, max_days: int = 20_000, margin: float = 120.0, max_changes: int = 2000) -> None:
        self._lock = threading.Lock()
        self._days: OrderedDict[tuple[Any, date], DayFigures] = OrderedDict()
        self._forgotten: dict[date, int] = {}  # day -> the seq of the latest write found to touch it
        self._forgotten_all = -1  # the seq at which everything was last forgotten
        self._checked: int | None = None  # every write up to this seq has been looked at
        self._marks: deque[tuple[float, int]] = deque()  # (when, seq) looked at lately (PostgreSQL's margin)
        self.max_days, self.margin, self.max_changes = max_days, margin, max_changes

    def known(self, conn: Any, key: Any, days: list[date], today: date, zone: tzinfo) -> tuple[dict[date, DayFigures],
                                                                                              int]:
        """The counted days among `days` still valid, and the write sequence they are valid at."""
        top = int(_run(conn, "SELECT coalesce(max(seq), 0) FROM resource_history", ())[0][0])
        with self._lock:
            since = self._checked
            if conn.dialect.name != "sqlite":
                clock = monotonic()
                while self._marks and clock - self._marks[0][0] > self.margin:
                    self._marks.popleft()
                since = min([since] + [seq for _, seq in self._marks]) if since is not None else None
                self._marks.append((clock, top))
        if since is not None and top > since:
            touched = _touched_days(conn, since, zone, today, self.max_changes)
            with self._lock:
                if touched is None:
                    self._days.clear()
                    self._forgotten_all = top
                else:
                    for d in touched:
                        self._forgotten[d] = top
                    for k in [k for k in self._days if k[1] in touched]:
                        del self._days[k]
        with self._lock:
            self._checked = max(self._checked or 0, top)
            found = {}
            for d in days:
                figures = self._days.get((key, d)) if d < today else None
                if figures is not None:
                    self._days.move_to_end((key, d))
                    found[d] = figures
        return found, top

    def keep(self, key: Any, figures: dict[date, DayFigures], today: date, counted_at: int) -> None:
        """Remember the days before today counted at `counted_at` (unless a later write has touched one since)."""
        with self._lock:
            for d, day in figures.items():
                if d < today and max(self._forgotten.get(d, -1), self._forgotten_all) <= counted_at:
                    self._days[(key, d)] = day
                    self._days.move_to_end((key, d))
            while len(self._days) > self.max_days:
                self._days.popitem(last=False)


def _days_between(low: str | None, high: str | None, zone: tzinfo, today: date) -> set[date]:
    if not low:
        return set()
    first = datetime.fromisoformat(low).astimezone(zone).date()
    last = datetime.fromisoformat(high).astimezone(zone).date() if high else today
    last = min(last, first + timedelta(days=MAX_DAYS), today)
    return {first + timedelta(days=n) for n in range((last - first).days + 1)}


def _period_days(period: Any, zone: tzinfo, today: date) -> set[date]:
    """The days of a FHIR Period as it was written (a past version's)."""
    from sante.store.index_values import date_entries

    found = date_entries(period) if isinstance(period, dict) else []
    return set().union(*(_days_between(r.low, r.high, zone, today) for r in found)) if found else set()


def _touched_days(conn: Any, since: int, zone: tzinfo, today: date, limit: int) -> set[date] | None:
    """The days the Encounters and Conditions written after `since` count in, before and after their writes; None
    when they are more than `limit`."""
    encounters = [r[0] for r in _run(conn, _CHANGED, ("Encounter", since))]
    conditions = [r[0] for r in _run(conn, _CHANGED, ("Condition", since))]
    if len(encounters) + len(conditions) > limit:
        return None
    days: set[date] = set()

    def now_days(encounter: str) -> set[date]:
        return set().union(*(_days_between(low, high, zone, today) for low, high in _run(conn, _PERIOD, (encounter,))))

    for rid in encounters:
        days |= now_days(rid)
        for (content,) in _run(conn, _BEFORE, ("Encounter", rid, since)):
            days |= _period_days((orjson.loads(content) or {}).get("period"), zone, today)
    for rid in conditions:
        linked = {r[0] for r in _run(conn, _LINKED, (rid, rid))}
        for (content,) in _run(conn, _BEFORE, ("Condition", rid, since)):
            reference = ((orjson.loads(content) or {}).get("encounter") or {}).get("reference", "")
            if isinstance(reference, str) and reference.startswith("Encounter/"):
                linked.add(reference.removeprefix("Encounter/"))
        for encounter in linked:
            days |= now_days(encounter)
    return days


# -- the statistics ---------------------------------------------------------------------------------------------
def facility_statistics(guarded: GuardedRepository, period: Period, *, zone: tzinfo = VIETNAM,
                        now: datetime | None = None, cache: StatisticsCache | None = None) -> FacilityStatistics:
    """The facility's figures over a period, for a manager or an administrator (403 for anyone else). With a
    cache, the days before today already counted are reused (see StatisticsCache)."""
    principal = guarded.principal
    require_statistics(principal)
    if period.last < period.first or (period.last - period.first).days >= MAX_DAYS:
        raise incorrect("a period runs forward and lasts at most a year", "period")  # the page checks before
    now = (now or datetime.now(UTC)).astimezone(UTC)
    today = now.astimezone(zone).date()
    days = period.days
    organization = principal.organization.removeprefix("Organization/") if principal.organization else None

    with guarded.repo.reader() as tx:  # the index tables, read directly: see the module's docstring
        facility = tuple(facility_organizations(tx.conn, organization)) if organization else None
        key = (facility, str(zone))
        known, counted_at = cache.known(tx.conn, key, days, today, zone) if cache else ({}, 0)
        counted: dict[date, DayFigures] = {}
        for first, last in _runs([d for d in days if d not in known]):
            counted.update(count_days(tx.conn, facility, first, last, zone, now))
    if cache is not None:
        cache.keep(key, counted, today, counted_at)
    figures = [known.get(d) or counted[d] for d in days]

    places: set[str | None] = {p for f in figures for p in f.visits}
    names = _place_names(guarded, [p for p in places if p])
    visits = sorted((ClinicVisits(p, names.get(p or "", p or ""), tuple(f.visits.get(p, 0) for f in figures))
                     for p in places), key=lambda v: (-v.total, v.name))
    visits_per_day = tuple(sum(f.visits.values()) for f in figures)
    waits = []
    for d, f in zip(days, figures, strict=True):
        values = sorted(f.waits)
        waits.append(DayWaits(d, len(values), round(stats.median(values), 1) if values else None,
                              _percentile90(values) if values else None))
    every_wait = sorted(v for f in figures for v in f.waits)
    lengths = [n for f in figures for n in f.lengths]
    diagnoses: Counter[str] = Counter()
    for f in figures:
        diagnoses.update(f.diagnoses)
    top = sorted(diagnoses.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_DIAGNOSES]
    return FacilityStatistics(
        period=period, days=tuple(days), visits=visits, visits_per_day=visits_per_day, waits=waits,
        wait_median=round(stats.median(every_wait), 1) if every_wait else None,
        wait_p90=_percentile90(every_wait) if every_wait else None,
        stays=[DayStays(d, f.admissions, f.discharges, f.occupied) for d, f in zip(days, figures, strict=True)],
        admissions=sum(f.admissions for f in figures), discharges=sum(f.discharges for f in figures),
        average_length_of_stay=round(sum(lengths) / len(lengths), 1) if lengths else None,
        wards=_wards(guarded, facility),
        diagnoses=[DiagnosisCount(code, n, icd10.chapter_of(code), icd10.lookup(code)) for code, n in top],
        organization=organization, facility=facility or ())


__all__ = ["MAX_DAYS", "STATISTICS_ROLES", "ClinicVisits", "DayFigures", "DayStays", "DayWaits", "DiagnosisCount",
           "FacilityStatistics", "Period", "StatisticsCache", "WardBeds", "count_days", "facility_statistics",
           "require_statistics"]
