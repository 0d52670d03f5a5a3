"""The manager's dashboard (`/dashboard`): the hospital's activity over a period — visits per day and clinic,
waiting times, admissions, discharges and length of stay, bed occupancy per ward and over time, the commonest
diagnoses — as accessible inline SVG charts, each with its data as a table.

Open to managers and administrators (sante.clinical.statistics.STATISTICS_ROLES); everyone else gets the 403
page. The figures are aggregates of the user's own facility computed by sante.clinical.statistics: a manager
still may not open a patient's chart (403), and nothing here names a patient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from babel.numbers import format_percent
from fastapi import APIRouter, Request
from markupsafe import Markup
from starlette.responses import Response

from sante.anomaly import Anomaly
from sante.auth.guarded import GuardedRepository
from sante.clinical.statistics import (
    MAX_DAYS,
    STATISTICS_ROLES,
    FacilityStatistics,
    Period,
    StatisticsCache,
    facility_statistics,
)
from sante.store import Repository
from sante.web.i18n import N_, Formats
from sante.web.render import Area, Pages, register_area
from sante.web.svg import Bars, Series, bar_chart, horizontal_bar_chart, line_chart, stacked_bar_chart

register_area(Area("dashboard", "/dashboard", N_("Dashboard"),
                   N_("Visits, waiting times, beds and diagnoses of your hospital"), STATISTICS_ROLES, order=80))

PRESETS = (7, 30, 90)
DEFAULT_DAYS = 30
MAX_PLACES = 8  # clinics drawn each in its colour; the others together
WAIT_SERIES = (("median", N_("Median")), ("p90", N_("90th percentile")))


# -- the period ----------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class PeriodChoice:
    """The period form as submitted, its errors (field -> message id) and the period it gives."""

    days: str  # "7", "30", "90" or "custom"
    first: str  # YYYY-MM-DD as the date inputs send it
    last: str
    errors: dict[str, str] = field(default_factory=dict)
    period: Period | None = None


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def choose_period(params: Mapping[str, str], today: date) -> PeriodChoice:
    """The period asked for (`days=7|30|90`, or `days=custom&from=YYYY-MM-DD&to=YYYY-MM-DD`), default 30 days."""
    days = params.get("days", "")[:10]
    first_text, last_text = params.get("from", "")[:20], params.get("to", "")[:20]
    if days != "custom":
        count = int(days) if days.isdigit() and int(days) in PRESETS else DEFAULT_DAYS
        period = Period.last_days(count, today)
        return PeriodChoice(str(count), period.first.isoformat(), period.last.isoformat(), period=period)
    choice = PeriodChoice("custom", first_text, last_text)
    first, last = _date(first_text), _date(last_text)
    if first is None:
        choice.errors["from"] = N_("Enter the first day as a date.") if first_text else N_("Enter the first day.")
    if last is None:
        choice.errors["to"] = N_("Enter the last day as a date.") if last_text else N_("Enter the last day.")
    if first is not None and last is not None:
        if last > today:
            choice.errors["to"] = N_("The last day cannot be after today.")
        elif last < first:
            choice.errors["to"] = N_("The last day cannot be before the first.")
        elif (last - first).days >= MAX_DAYS:
            choice.errors["from"] = N_("A period lasts at most a year.")
    if not choice.errors and first is not None and last is not None:
        choice.period = Period(first, last)
    return choice


# -- what the page shows -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Tile:
    label: str
    value: str
    detail: str


@dataclass(frozen=True, slots=True)
class LegendItem:
    key: str
    label: str


@dataclass(frozen=True, slots=True)
class Table:
    caption: str
    columns: list[str]  # the first is the rows' header column
    rows: list[tuple[str, list[str]]]
    text_cells: int = 0  # how many cells of a row (after its header) are text; the rest are numbers


@dataclass(frozen=True, slots=True)
class Figure:
    key: str
    title: str
    summary: str
    chart: Markup
    legend: list[LegendItem]
    table: Table
    empty: str | None = None  # the message shown instead of an empty chart


@dataclass(frozen=True, slots=True)
class Dashboard:
    facility: str
    period_text: str
    tiles: list[Tile]
    figures: list[Figure]


class _Remembered(Formats):
    """The user's Formats with each number and day written once: a dashboard writes the same few values hundreds of
    times over its tables, and babel takes tens of microseconds each time."""

    def __init__(self, fmt: Formats) -> None:  # the given Formats' catalogue and zone, nothing loaded again
        self.lang, self.zone, self.t = fmt.lang, fmt.zone, fmt.t
        self.memo: dict[tuple[Any, ...], str] = {}

    def _once(self, key: tuple[Any, ...], write: Callable[[], str]) -> str:
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = write()
        return found

    def number(self, value: float | int | None, max_digits: int = 2) -> str:
        return self._once(("n", value, max_digits), lambda: super(_Remembered, self).number(value, max_digits))

    def short_day(self, moment: datetime) -> str:
        return self._once(("d", moment), lambda: super(_Remembered, self).short_day(moment))


def _percent(fmt: Formats, rate: float) -> str:
    if isinstance(fmt, _Remembered):
        return fmt._once(("%", rate), lambda: format_percent(rate, locale=fmt.lang))
    return format_percent(rate, locale=fmt.lang)


def _minutes(fmt: Formats, value: float | None) -> str:
    return "—" if value is None else fmt.t.gettext("%(value)s min") % {"value": fmt.number(value, 1)}


def _noon(day: date, fmt: Formats) -> datetime:
    return datetime.combine(day, time(12), fmt.zone)


def _day_series(key: str, days: Sequence[date], values: Sequence[float | None], fmt: Formats) -> Series:
    return Series(key, [(_noon(d, fmt), v) for d, v in zip(days, values, strict=True) if v is not None])


HALF = 460  # the width of a chart in half a row (its text keeps about the page's size)


def _line(chart_id: str, title: str, description: str, series: list[Series], fmt: Formats,
          value_text: Callable[[float], str]) -> Markup:
    return line_chart(chart_id, title, description, [s for s in series if s.points], value_text=value_text,
                      day_text=fmt.short_day, width=HALF, height=180,
                      point_text=lambda t, v: f"{fmt.date(t.date())}: {value_text(v)}")


def _visits_figure(s: FacilityStatistics, fmt: Formats, days: list[str]) -> Figure:
    _ = fmt.t.gettext
    title = _("Visits per day and clinic")
    places = s.visits[:MAX_PLACES]
    rest = s.visits[MAX_PLACES:]
    bars = [Bars(f"s{n}", p.name or _("No clinic recorded"), p.per_day) for n, p in enumerate(places)]
    if rest:
        bars.append(Bars("other", _("Other places"), [sum(p.per_day[n] for p in rest) for n in range(len(days))]))
    summary = _("%(total)s visits, %(average)s a day on average, at %(places)s places.") % {
        "total": fmt.number(s.total_visits, 0), "average": fmt.number(s.total_visits / max(len(days), 1), 1),
        "places": fmt.number(len(s.visits), 0)}
    chart = stacked_bar_chart("dash-visits", title, summary, days, bars, value_text=lambda v: fmt.number(v, 0))
    columns = [_("Day"), *[b.label for b in bars], _("Total")]
    rows = [(days[n], [fmt.number(b.values[n], 0) for b in bars] + [fmt.number(s.visits_per_day[n], 0)])
            for n in range(len(days))]
    return Figure("visits", title, summary, chart, [LegendItem(b.key, b.label) for b in bars],
                  Table(_("Visits per day and clinic"), columns, rows),
                  None if s.total_visits else _("No visits in this period."))


def _waits_figure(s: FacilityStatistics, fmt: Formats, days: list[str]) -> Figure:
    _ = fmt.t.gettext
    title = _("Waiting time to see the doctor")
    seen = sum(w.seen for w in s.waits)
    summary = _("Over %(seen)s visits: median %(median)s, 90th percentile %(p90)s.") % {
        "seen": fmt.number(seen, 0), "median": _minutes(fmt, s.wait_median), "p90": _minutes(fmt, s.wait_p90)}
    series = [_day_series("median", s.days, [w.median for w in s.waits], fmt),
              _day_series("p90", s.days, [w.p90 for w in s.waits], fmt)]
    chart = _line("dash-waits", title, summary, series, fmt, lambda v: _minutes(fmt, v))
    rows = [(days[n], [fmt.number(w.seen, 0), _minutes(fmt, w.median), _minutes(fmt, w.p90)])
            for n, w in enumerate(s.waits)]
    return Figure("waits", title, summary, chart, [LegendItem(k, _(label)) for k, label in WAIT_SERIES],
                  Table(title, [_("Day"), _("Visits seen"), _("Median"), _("90th percentile")], rows),
                  None if seen else _("No waiting times in this period (visits without a queue history)."))


def _stays_figure(s: FacilityStatistics, fmt: Formats, days: list[str]) -> Figure:
    _ = fmt.t.gettext
    title = _("Admissions and discharges")
    alos = _("%(value)s days") % {"value": fmt.number(s.average_length_of_stay, 1)} \
        if s.average_length_of_stay is not None else "—"
    summary = _("%(admissions)s admissions, %(discharges)s discharges; average length of stay %(alos)s.") % {
        "admissions": fmt.number(s.admissions, 0), "discharges": fmt.number(s.discharges, 0), "alos": alos}
    bars = [Bars("admissions", _("Admissions"), [d.admissions for d in s.stays]),
            Bars("discharges", _("Discharges"), [d.discharges for d in s.stays])]
    chart = bar_chart("dash-stays", title, summary, days, bars, value_text=lambda v: fmt.number(v, 0), width=HALF,
                      height=180)
    rows = [(days[n], [fmt.number(d.admissions, 0), fmt.number(d.discharges, 0)]) for n, d in enumerate(s.stays)]
    return Figure("stays", title, summary, chart, [LegendItem(b.key, b.label) for b in bars],
                  Table(title, [_("Day"), _("Admissions"), _("Discharges")], rows),
                  None if s.admissions or s.discharges else _("No admissions or discharges in this period."))


def _occupancy_figure(s: FacilityStatistics, fmt: Formats, days: list[str]) -> Figure:
    _ = fmt.t.gettext
    title = _("Bed occupancy over time")
    beds = s.beds_in_service
    rates: list[float | None] = [d.occupied / beds if beds else None for d in s.stays]
    summary = _("Beds occupied at the end of each day, out of %(beds)s beds in service today.") % {
        "beds": fmt.number(beds, 0)}
    chart = _line("dash-occupancy", title, summary, [_day_series("occupancy", s.days, rates, fmt)], fmt,
                  lambda v: _percent(fmt, v))
    rows = [(days[n], [fmt.number(d.occupied, 0), "—" if rate is None else _percent(fmt, rate)])
            for n, (d, rate) in enumerate(zip(s.stays, rates, strict=True))]
    return Figure("occupancy", title, summary, chart, [],
                  Table(title, [_("Day"), _("Occupied beds"), _("Occupancy")], rows),
                  None if beds else _("No beds in service."))


def _wards_figure(s: FacilityStatistics, fmt: Formats) -> Figure:
    _ = fmt.t.gettext
    title = _("Beds per ward now")
    occupied = sum(w.occupied for w in s.wards)
    beds = s.beds_in_service
    summary = _("%(occupied)s of %(beds)s beds in service are occupied (%(rate)s).") % {
        "occupied": fmt.number(occupied, 0), "beds": fmt.number(beds, 0),
        "rate": _percent(fmt, occupied / beds if beds else 0.0)}
    labels = [f"{w.department} · {w.name}" if w.department else w.name for w in s.wards]
    bars = [Bars("occupied", _("Occupied"), [w.occupied for w in s.wards]),
            Bars("cleaning", _("Being cleaned"), [w.cleaning for w in s.wards]),
            Bars("free", _("Free"), [w.free for w in s.wards]),
            Bars("closed", _("Closed"), [w.closed for w in s.wards])]
    chart = horizontal_bar_chart("dash-wards", title, summary, labels, bars, value_text=lambda v: fmt.number(v, 0),
                                 width=HALF, label_width=170)
    rows = [(labels[n], [fmt.number(w.beds, 0), fmt.number(w.occupied, 0), fmt.number(w.cleaning, 0),
                         fmt.number(w.free, 0), fmt.number(w.closed, 0), _percent(fmt, w.rate)])
            for n, w in enumerate(s.wards)]
    columns = [_("Ward"), _("Beds"), _("Occupied"), _("Being cleaned"), _("Free"), _("Closed"), _("Occupancy")]
    return Figure("wards", title, summary, chart, [LegendItem(b.key, b.label) for b in bars],
                  Table(title, columns, rows), None if s.wards else _("No wards with beds."))


def _diagnoses_figure(s: FacilityStatistics, fmt: Formats) -> Figure:
    _ = fmt.t.gettext
    title = _("Top 10 diagnoses")
    total = sum(d.encounters for d in s.diagnoses)
    summary = _("ICD-10 codes by the number of visits and stays they were diagnosed at.")
    names = [d.entry.title(fmt.lang if fmt.lang == "vi" else "en") if d.entry else d.code for d in s.diagnoses]
    labels = [f"{d.code} · {name}" for d, name in zip(s.diagnoses, names, strict=True)]
    chart = horizontal_bar_chart("dash-diagnoses", title, summary, labels,
                                 [Bars("diagnoses", _("Visits and stays"), [d.encounters for d in s.diagnoses])],
                                 value_text=lambda v: fmt.number(v, 0), label_width=260)
    rows = []
    for d, name in zip(s.diagnoses, names, strict=True):
        chapter = f"{d.chapter.number} · {d.chapter.title(fmt.lang if fmt.lang == 'vi' else 'en')}" \
            if d.chapter else "—"
        rows.append((d.code, [name, chapter, fmt.number(d.encounters, 0),
                              _percent(fmt, d.encounters / total if total else 0.0)]))
    columns = [_("ICD-10"), _("Diagnosis"), _("Chapter"), _("Visits and stays"), _("Share of the top 10")]
    return Figure("diagnoses", title, summary, chart, [], Table(title, columns, rows, text_cells=2),
                  None if s.diagnoses else _("No diagnoses recorded in this period."))


def dashboard_view(s: FacilityStatistics, facility: str, fmt: Formats) -> Dashboard:
    """The page's texts, tiles, charts and tables in the user's language."""
    fmt = _Remembered(fmt)
    _ = fmt.t.gettext
    days = [fmt.short_day(_noon(d, fmt)) for d in s.days]
    occupied = sum(w.occupied for w in s.wards)
    beds = s.beds_in_service
    count = len(s.days)
    tiles = [
        Tile(_("Visits"), fmt.number(s.total_visits, 0),
             _("%(average)s a day") % {"average": fmt.number(s.total_visits / max(count, 1), 1)}),
        Tile(_("Median wait"), _minutes(fmt, s.wait_median),
             _("90th percentile %(p90)s") % {"p90": _minutes(fmt, s.wait_p90)}),
        Tile(_("Beds occupied now"), _percent(fmt, occupied / beds if beds else 0.0),
             _("%(occupied)s of %(beds)s beds") % {"occupied": fmt.number(occupied, 0), "beds": fmt.number(beds, 0)}),
        Tile(_("Admissions"), fmt.number(s.admissions, 0),
             _("%(discharges)s discharges") % {"discharges": fmt.number(s.discharges, 0)}),
        Tile(_("Average length of stay"),
             _("%(value)s days") % {"value": fmt.number(s.average_length_of_stay, 1)}
             if s.average_length_of_stay is not None else "—", _("over the stays ended in the period")),
    ]
    figures = [_visits_figure(s, fmt, days), _waits_figure(s, fmt, days), _stays_figure(s, fmt, days),
               _occupancy_figure(s, fmt, days), _wards_figure(s, fmt), _diagnoses_figure(s, fmt)]
    period_text = _("%(first)s to %(last)s (%(count)s days)") % {
        "first": fmt.date(s.period.first), "last": fmt.date(s.period.last), "count": fmt.number(count, 0)}
    return Dashboard(facility, period_text, tiles, figures)


def load_dashboard(guarded: GuardedRepository, period: Period, fmt: Formats, cache: StatisticsCache | None = None
                   ) -> Dashboard:
    """The statistics of the user's facility (aggregates only) and its name, shaped for the page."""
    figures = facility_statistics(guarded, period, zone=fmt.zone, cache=cache)
    facility = ""
    if figures.organization:
        try:
            facility = str((guarded.read("Organization", figures.organization).resource or {}).get("name") or "")
        except Anomaly:
            facility = ""
    return dashboard_view(figures, facility, fmt)


def dashboard_router(repo: Repository, pages: Pages, run: Any) -> APIRouter:
    """run(fn, *args) runs repository work off the event loop (sante.web.site._in_thread)."""
    router = APIRouter(include_in_schema=False)
    cache = StatisticsCache()  # the days before today already counted, while no write touches them

    @router.get("/dashboard")
    async def dashboard(request: Request) -> Response:
        principal = request.state.principal
        if principal.role not in STATISTICS_ROLES:
            return pages.error(request, 403)
        fmt = pages.formats_for(request)
        choice = choose_period(request.query_params, fmt.today())
        event = getattr(request.state, "audit", None)
        view = None
        if choice.period is not None:
            guarded = GuardedRepository(repo, principal, event)
            view = await run(load_dashboard, guarded, choice.period, fmt, cache)
        if event is not None:
            event.description = f"web page GET /dashboard: facility statistics (aggregates only), {choice.days} days"
        return pages.render(request, "dashboard/dashboard.html", active="dashboard", choice=choice, view=view,
                            presets=PRESETS)  # errors too: htmx swaps only 2xx answers

    return router


__all__ = ["DEFAULT_DAYS", "PRESETS", "Dashboard", "PeriodChoice", "choose_period", "dashboard_router",
           "dashboard_view", "load_dashboard"]
