"""Population-health indicators: the ViewDefinitions shipped in `indicators/*.json` run over the repository's
resources with the SQL on FHIR runner (sante.analytics.run_view), their rows aggregated here in plain Python.

What is counted (docs/population.md has the definitions): notifiable-disease cases per ISO week, disease, province
and commune; cases by age and sex; diagnoses by ICD-10 chapter; visits, admissions, length of stay and bed
occupancy; vaccination coverage of young children; the hypertension and diabetes registers (under treatment,
controlled); the positivity of qualitative laboratory tests. Place is the patient's home address, coded with the
2025 provinces and communes (sante.clinical.admin_units); a patient without one counts in the totals, not on the
map. Only numbers leave this module: no resource, id or name of a patient.

It reads the repository directly (sante.store.export.iter_type), not through the guarded repository: like the
manager's statistics (sante.clinical.statistics), it counts for roles that may read no patient data, so the
callers check the role first (sante.web.population.POPULATION_ROLES) and show only these aggregates.

Reading the repository costs a pass over seven resource types; `PopulationCache` keeps the extracted rows while
no resource is written (the write sequence, `seq`) and for five minutes at least, and the pages keep their figures
per filter for a minute.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from importlib import resources as package_files
from time import monotonic
from typing import Any

import orjson

from sante.analytics import run_view
from sante.analytics.notifiable import disease_of
from sante.store import Repository
from sante.store.export import iter_type

VIEWS = ("patients", "conditions", "encounters", "immunizations", "observations", "medication_requests", "beds")
SMALL_INPUT = 20_000  # resources: below this the in-memory engine is faster than DuckDB (docs/population.md)
MAX_YEARS = 10  # the longest period the indicators are asked for
VISIT_CLASSES = frozenset({"AMB", "EMER"})
STAY_CLASSES = frozenset({"IMP", "ACUTE", "NONAC"})
AGE_GROUPS: tuple[tuple[str, int, int | None], ...] = (
    ("0-4", 0, 4), ("5-14", 5, 14), ("15-24", 15, 24), ("25-44", 25, 44), ("45-64", 45, 64), ("65+", 65, None))
PYRAMID_BANDS: tuple[tuple[str, int, int | None], ...] = (
    *((f"{n}-{n + 9}", n, n + 9) for n in range(0, 80, 10)), ("80+", 80, None))
SEXES = ("male", "female")
HYPERTENSION = ("I10", "I11", "I12", "I13", "I14", "I15")
DIABETES = ("E10", "E11", "E12", "E13", "E14")
BP_PANEL, SYSTOLIC, DIASTOLIC, HBA1C = "85354-9", "8480-6", "8462-4", "4548-4"
POSITIVE_CODES = frozenset({"10828004", "POS", "A", "DET"})  # SNOMED positive, v3 positive/abnormal/detected
NEGATIVE_CODES = frozenset({"260385009", "NEG", "N", "ND"})
COVERAGE_AGES = (12, 59)  # months: the children whose vaccination is counted


# -- the views -----------------------------------------------------------------------------------------------------
@cache
def view_definition(name: str) -> dict[str, Any]:
    """One of the shipped ViewDefinitions (`indicators/<name>.json`)."""
    if name not in VIEWS:
        raise KeyError(f"no indicator view {name!r} (one of {', '.join(VIEWS)})")
    text = package_files.files("sante.analytics").joinpath("indicators", f"{name}.json").read_text("utf-8")
    return dict(json.loads(text))


def engine_for(count: int) -> str:
    """DuckDB when it is installed and the input is not tiny; the in-memory engine otherwise."""
    available = all(importlib.util.find_spec(m) is not None for m in ("duckdb", "sante.analytics.duckdb_engine"))
    return "duckdb" if count >= SMALL_INPUT and available else "memory"


def view_rows(name: str, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a shipped view over these resources."""
    return run_view(view_definition(name), resources, engine=engine_for(len(resources)))


def repository_resources(repo: Repository, rtype: str) -> Iterator[dict[str, Any]]:
    """Every current resource of a type, read in batches."""
    for content in iter_type(repo, rtype):
        yield orjson.loads(content)


# -- typed rows ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, eq=False)  # one object per patient: compared and hashed by identity
class Person:
    sex: str  # male | female | other | unknown
    birth: date | None
    province: str | None  # 2-digit code of today's province
    commune: str | None  # 5-digit code


UNKNOWN_PERSON = Person("unknown", None, None, None)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    person: Person
    code: str  # ICD-10, dotted
    day: date  # onset, else recorded
    active: bool  # clinical status active, recurrence or relapse (or none recorded)


@dataclass(frozen=True, slots=True)
class Case:
    """A diagnosis of a notifiable disease."""

    disease: str  # sante.analytics.notifiable key
    code: str
    day: date
    week: tuple[int, int]  # ISO year and week of the onset
    person: Person


@dataclass(frozen=True, slots=True)
class Stay:
    person: Person
    klass: str
    start: date
    end: date | None


@dataclass(frozen=True, slots=True)
class Result:
    person: Person
    code: str
    label: str
    day: date
    value: float | None
    systolic: float | None
    diastolic: float | None
    positive: bool | None  # a qualitative result: positive, negative, or None (not qualitative)


@dataclass(frozen=True, slots=True)
class Vaccination:
    person: Person
    vaccine: str
    label: str
    day: date


@dataclass(slots=True)
class PopulationData:
    """The rows of the shipped views, typed and joined to their patient's sex, birth date and place."""

    people: list[Person] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)
    stays: list[Stay] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    vaccinations: list[Vaccination] = field(default_factory=list)
    treated: set[Person] = field(default_factory=set)  # people with an active prescription
    beds: int = 0
    seq: int = 0  # the repository's write sequence the records were read at


def _day(value: Any) -> date | None:
    text = str(value or "")
    if len(text) < 10:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _birth(value: Any) -> date | None:
    """A birth date, partial ones (1985, 1985-03) at their first day."""
    text = str(value or "")
    return _day(text + "-01-01"[len(text) - 4:]) if len(text) in (4, 7) else _day(text)


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _key(reference: Any) -> str:
    return str(reference or "").removeprefix("Patient/")


def _positive(row: dict[str, Any]) -> bool | None:
    code, flag = str(row.get("result_code") or ""), str(row.get("interpretation") or "")
    text = str(row.get("result_text") or "").strip().lower()
    if code in POSITIVE_CODES or text.endswith("+"):
        return True
    if code in NEGATIVE_CODES:
        return False
    if not code and not text:
        return None
    return True if flag in POSITIVE_CODES else False if flag in NEGATIVE_CODES else None


def build_population(rows: dict[str, list[dict[str, Any]]]) -> PopulationData:
    """The views' rows (view name -> rows) as typed records, each joined to its patient."""
    people: dict[str, Person] = {}
    for r in rows.get("patients", ()):
        people[str(r.get("id"))] = Person(str(r.get("gender") or "unknown"), _birth(r.get("birth_date")),
                                          r.get("province") or None, r.get("commune") or None)
    data = PopulationData(people=list(people.values()))

    def person(row: dict[str, Any]) -> Person:
        return people.get(_key(row.get("patient")), UNKNOWN_PERSON)

    for r in rows.get("conditions", ()):
        day = _day(r.get("onset")) or _day(r.get("recorded"))
        code = str(r.get("code") or "").strip().upper()
        if day is None or not code:
            continue
        who = person(r)
        status = str(r.get("clinical_status") or "active")
        data.diagnoses.append(Diagnosis(who, code, day, status in ("active", "recurrence", "relapse")))
        found = disease_of(code)
        if found is not None:
            year, week, _ = day.isocalendar()
            data.cases.append(Case(found.key, code, day, (year, week), who))
    for r in rows.get("encounters", ()):
        start = _day(r.get("start"))
        if start is not None:
            data.stays.append(Stay(person(r), str(r.get("class") or ""), start, _day(r.get("end"))))
    for r in rows.get("observations", ()):
        day = _day(r.get("effective"))
        if day is None or not r.get("code"):
            continue
        data.results.append(Result(person(r), str(r["code"]), str(r.get("display") or r.get("coded_display") or r["code"]), day,
                                   _number(r.get("value")), _number(r.get("systolic")), _number(r.get("diastolic")),
                                   _positive(r)))
    for r in rows.get("immunizations", ()):
        day = _day(r.get("given"))
        if day is not None and r.get("vaccine"):
            label = str(r.get("vaccine_text") or r.get("vaccine_display") or r["vaccine"])
            data.vaccinations.append(Vaccination(person(r), str(r["vaccine"]), label, day))
    data.treated = {person(r) for r in rows.get("medication_requests", ()) if r.get("status") == "active"}
    data.beds = sum(1 for r in rows.get("beds", ()) if r.get("status") in (None, "active"))
    return data


def load_population(repo: Repository) -> PopulationData:
    """Every shipped view run over the repository, as typed records."""
    rows = {}
    for name in VIEWS:
        rtype = str(view_definition(name)["resource"])
        rows[name] = view_rows(name, list(repository_resources(repo, rtype)))
    return build_population(rows)


class PopulationCache:
    """The population's records, read again when resources were written since, but at most every `max_age`
    seconds: population figures may lag a few minutes, and a busy hospital writes all the time (one per process;
    thread-safe)."""

    def __init__(self, max_age: float = 300.0) -> None:
        self._lock = threading.Lock()
        self._seq: int | None = None
        self._loaded = 0.0
        self._data: PopulationData | None = None
        self.max_age = max_age

    def get(self, repo: Repository) -> PopulationData:
        with repo.reader() as tx:
            seq = int(tx.conn.exec_driver_sql("SELECT coalesce(max(seq), 0) FROM resource_history").scalar() or 0)
        with self._lock:
            fresh = monotonic() - self._loaded < self.max_age
            if self._data is not None and (self._seq == seq or fresh):
                return self._data
        data = load_population(repo)
        data.seq = seq
        with self._lock:
            self._seq, self._data, self._loaded = seq, data, monotonic()
        return data


class FigureCache:
    """Figures computed per key (a filter), kept `seconds` (the dashboard's short-lived cache)."""

    def __init__(self, seconds: float = 60.0, size: int = 256) -> None:
        self._lock = threading.Lock()
        self._items: dict[Any, tuple[float, Any]] = {}
        self.seconds, self.size = seconds, size

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        now = monotonic()
        with self._lock:
            found = self._items.get(key)
            if found is not None and now - found[0] < self.seconds:
                return found[1]
        value = compute()
        with self._lock:
            if len(self._items) >= self.size:
                self._items = {k: v for k, v in self._items.items() if now - v[0] < self.seconds}
            self._items[key] = (now, value)
        return value


# -- filters -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Filters:
    """Who and what is counted: a period (whole days), a place, a disease, an age group and a sex."""

    first: date
    last: date
    province: str | None = None
    commune: str | None = None
    disease: str | None = None  # a notifiable disease's key
    age_group: str | None = None  # a key of AGE_GROUPS
    sex: str | None = None  # male | female

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError("a period runs forward")
        if (self.last - self.first).days > MAX_YEARS * 366:
            raise ValueError(f"a period lasts at most {MAX_YEARS} years")
        if self.age_group is not None and self.age_group not in {g[0] for g in AGE_GROUPS}:
            raise ValueError(f"no age group {self.age_group!r}")

    def person_matches(self, p: Person, on: date) -> bool:
        """Whether a person is in the filter's place, sex and (on that day) age group."""
        if self.province and p.province != self.province:
            return False
        if self.commune and p.commune != self.commune:
            return False
        if self.sex and p.sex != self.sex:
            return False
        if self.age_group:
            age = age_on(p, on)
            group = next(g for g in AGE_GROUPS if g[0] == self.age_group)
            if age is None or age < group[1] or (group[2] is not None and age > group[2]):
                return False
        return True

    def selects(self, case: Case) -> bool:
        """Whether a case is of the filter's disease, place, sex and age group (whenever it was)."""
        return (self.disease is None or case.disease == self.disease) and self.person_matches(case.person, case.day)

    def counts(self, case: Case) -> bool:
        """Whether a case is in the filter, its period included."""
        return self.first <= case.day <= self.last and self.selects(case)


def age_on(p: Person, day: date) -> int | None:
    """Whole years of age on a day."""
    if p.birth is None or p.birth > day:
        return None
    return day.year - p.birth.year - ((day.month, day.day) < (p.birth.month, p.birth.day))


def _months_on(p: Person, day: date) -> int | None:
    if p.birth is None or p.birth > day:
        return None
    return (day.year - p.birth.year) * 12 + day.month - p.birth.month - (day.day < p.birth.day)


# -- ISO weeks -----------------------------------------------------------------------------------------------------
def iso_week(day: date) -> tuple[int, int]:
    year, week, _ = day.isocalendar()
    return year, week


def week_monday(week: tuple[int, int]) -> date:
    return date.fromisocalendar(week[0], week[1], 1)


def weeks_between(first: date, last: date) -> list[tuple[int, int]]:
    """The ISO weeks a period touches, in order."""
    out, monday = [], first - timedelta(days=first.weekday())
    while monday <= last:
        out.append(iso_week(monday))
        monday += timedelta(days=7)
    return out


def week_text(week: tuple[int, int]) -> str:
    return f"{week[0]}-W{week[1]:02d}"


# -- the indicators ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WeekCount:
    week: tuple[int, int]
    count: int

    @property
    def monday(self) -> date:
        return week_monday(self.week)


def filtered_cases(data: PopulationData, f: Filters) -> list[Case]:
    return [c for c in data.cases if f.counts(c)]


def weekly_counts(cases: Iterable[Case], first: date, last: date) -> list[WeekCount]:
    """Cases per ISO week of the period (weeks without a case count 0)."""
    per_week = Counter(c.week for c in cases)
    return [WeekCount(w, per_week.get(w, 0)) for w in weeks_between(first, last)]


def cases_by(cases: Iterable[Case], key: Callable[[Case], str | None]) -> Counter[str]:
    """Cases per value of key (cases where it is None left out): per province, commune or disease."""
    out: Counter[str] = Counter()
    for c in cases:
        k = key(c)
        if k is not None:
            out[k] += 1
    return out


def by_province(c: Case) -> str | None:
    return c.person.province


def by_commune(c: Case) -> str | None:
    return c.person.commune


def by_disease(c: Case) -> str:
    return c.disease


@dataclass(frozen=True, slots=True)
class PyramidRow:
    band: str
    male: int
    female: int


def age_sex_pyramid(cases: Iterable[Case]) -> list[PyramidRow]:
    """Cases per ten-year age band (at onset) and sex, youngest first."""
    counts: Counter[tuple[str, str]] = Counter()
    for c in cases:
        age = age_on(c.person, c.day)
        if age is None or c.person.sex not in SEXES:
            continue
        band = next(b[0] for b in PYRAMID_BANDS if age >= b[1] and (b[2] is None or age <= b[2]))
        counts[(band, c.person.sex)] += 1
    return [PyramidRow(b[0], counts[(b[0], "male")], counts[(b[0], "female")]) for b in PYRAMID_BANDS]


@dataclass(frozen=True, slots=True)
class Activity:
    visits: int
    admissions: int
    discharges: int
    average_length_of_stay: float | None  # days, over the stays ended in the period
    occupancy: float | None  # occupied bed-days / (beds × days)
    beds: int


def _length_days(start: date, end: date) -> int:
    return max(1, (end - start).days)


def _bed_days(s: Stay, first: date, last: date) -> int:
    """The days of first..last a stay held a bed: from its admission day to the day before its discharge (a
    same-day stay holds one)."""
    held_last = max(s.end - timedelta(days=1), s.start) if s.end is not None else last
    return max(0, (min(held_last, last) - max(s.start, first)).days + 1)


def activity(data: PopulationData, f: Filters) -> Activity:
    """Visits and admissions begun in the period, discharges, length of stay and bed occupancy, for the patients
    of the filter's place, sex and age group."""
    visits = admissions = discharges = 0
    lengths: list[int] = []
    bed_days = 0
    for s in data.stays:
        if not f.person_matches(s.person, s.start):
            continue
        if f.first <= s.start <= f.last:
            if s.klass in VISIT_CLASSES:
                visits += 1
            elif s.klass in STAY_CLASSES:
                admissions += 1
        if s.klass not in STAY_CLASSES:
            continue
        if s.end is not None and f.first <= s.end <= f.last:
            discharges += 1
            lengths.append(_length_days(s.start, s.end))
        bed_days += _bed_days(s, f.first, f.last)
    days = (f.last - f.first).days + 1
    occupancy = bed_days / (data.beds * days) if data.beds else None
    return Activity(visits, admissions, discharges, round(sum(lengths) / len(lengths), 1) if lengths else None,
                    occupancy, data.beds)


def diagnoses_by_chapter(data: PopulationData, f: Filters) -> Counter[str]:
    """Diagnoses made in the period per ICD-10 chapter (by its number, "I" to "XXII")."""
    from sante.clinical import icd10

    out: Counter[str] = Counter()
    for d in data.diagnoses:
        if f.first <= d.day <= f.last and f.person_matches(d.person, d.day):
            chapter = icd10.chapter_of(d.code)
            if chapter is not None:
                out[chapter.number] += 1
    return out


@dataclass(frozen=True, slots=True)
class Coverage:
    vaccine: str
    label: str
    vaccinated: int
    children: int

    @property
    def rate(self) -> float:
        return self.vaccinated / self.children if self.children else 0.0


def vaccination_coverage(data: PopulationData, f: Filters) -> list[Coverage]:
    """For each vaccine given: the share of the children aged 12–59 months on the period's last day (in the
    filter's place and sex) who had received at least one dose by then. Most children first."""
    low, high = COVERAGE_AGES
    plain = Filters(f.first, f.last, f.province, f.commune, sex=f.sex)

    def eligible(p: Person) -> bool:
        months = _months_on(p, f.last)
        return months is not None and low <= months <= high and plain.person_matches(p, f.last)

    children = [p for p in data.people if eligible(p)]
    dosed: dict[str, set[Person]] = defaultdict(set)
    labels: dict[str, str] = {}
    for v in data.vaccinations:
        if v.day <= f.last and eligible(v.person):
            dosed[v.vaccine].add(v.person)
            labels.setdefault(v.vaccine, v.label)
    out = [Coverage(code, labels[code], len(who), len(children)) for code, who in dosed.items()]
    return sorted(out, key=lambda c: (-c.vaccinated, c.label))


@dataclass(frozen=True, slots=True)
class Register:
    key: str  # hypertension | diabetes
    registered: int  # patients with an active diagnosis made by the period's end
    treated: int  # ... with an active prescription
    measured: int  # ... with a blood pressure (an HbA1c) by the period's end
    controlled: int  # ... whose last one is below the target


def _in_ranges(code: str, prefixes: tuple[str, ...]) -> bool:
    return code[:3] in prefixes


def _last_results(data: PopulationData, f: Filters, codes: tuple[str, ...]) -> dict[Person, Result]:
    last: dict[Person, Result] = {}
    for r in data.results:
        if r.code in codes and r.day <= f.last:
            known = last.get(r.person)
            if known is None or r.day >= known.day:
                last[r.person] = r
    return last


def _bp_controlled(r: Result) -> bool | None:
    if r.systolic is None or r.diastolic is None:
        return None
    return r.systolic < 140 and r.diastolic < 90


def _hba1c_controlled(r: Result) -> bool | None:
    return None if r.value is None else r.value < 7.0


def chronic_registers(data: PopulationData, f: Filters) -> list[Register]:
    """The hypertension (I10–I15) and diabetes (E10–E14) registers: registered, under treatment (an active
    MedicationRequest), controlled (the last blood pressure below 140/90 mmHg; the last HbA1c below 7 %)."""
    out = []
    for key, prefixes, codes, controlled in (("hypertension", HYPERTENSION, (BP_PANEL,), _bp_controlled),
                                             ("diabetes", DIABETES, (HBA1C,), _hba1c_controlled)):
        people = {d.person for d in data.diagnoses
                  if d.active and d.day <= f.last and d.person is not UNKNOWN_PERSON
                  and _in_ranges(d.code, prefixes) and f.person_matches(d.person, f.last)}
        last = _last_results(data, f, codes)
        judged = [controlled(last[p]) for p in people if p in last]
        out.append(Register(key, len(people), sum(1 for p in people if p in data.treated),
                            sum(1 for j in judged if j is not None), sum(1 for j in judged if j)))
    return out


@dataclass(frozen=True, slots=True)
class Positivity:
    code: str
    label: str
    tested: int
    positive: int

    @property
    def rate(self) -> float:
        return self.positive / self.tested if self.tested else 0.0


def lab_positivity(data: PopulationData, f: Filters) -> list[Positivity]:
    """Qualitative laboratory results of the period per test: how many, how many positive. Most tested first."""
    tested: Counter[str] = Counter()
    positive: Counter[str] = Counter()
    labels: dict[str, str] = {}
    for r in data.results:
        if r.positive is None or not f.first <= r.day <= f.last or not f.person_matches(r.person, r.day):
            continue
        tested[r.code] += 1
        positive[r.code] += r.positive
        labels.setdefault(r.code, r.label)
    return sorted((Positivity(c, labels[c], n, positive[c]) for c, n in tested.items()),
                  key=lambda p: (-p.tested, p.code))


__all__ = ["AGE_GROUPS", "PYRAMID_BANDS", "VIEWS", "Activity", "Case", "Coverage", "FigureCache", "Filters",
           "Person", "PopulationCache", "PopulationData", "Positivity", "PyramidRow", "Register", "WeekCount",
           "activity", "age_on", "age_sex_pyramid", "build_population", "by_commune", "by_disease", "by_province",
           "cases_by", "chronic_registers", "diagnoses_by_chapter", "engine_for", "filtered_cases", "iso_week",
           "lab_positivity", "load_population", "repository_resources", "vaccination_coverage",
           "view_definition", "view_rows", "week_monday", "week_text", "weekly_counts", "weeks_between"]
