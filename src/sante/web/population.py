"""The population-health dashboard (`/population`) and its outbreak alerts (`/population/alerts`).

The dashboard: notifiable-disease cases filtered by period, place (province → commune), disease, age group and
sex — the epidemic curve per ISO week with the detector's upper bound, its alarms and an 8-week forecast; a
choropleth of the cases by province; the cases by age and sex and by disease; tiles and tables of the
population's indicators (visits, admissions, length of stay, bed occupancy, diagnoses by ICD-10 chapter,
vaccination coverage, hypertension and diabetes registers, laboratory positivity); and the filtered table as
CSV or Excel. The alerts: the Flags raised by sante.analytics.alerts, newest first, each with its curve, and the
officer's verdict (confirmed outbreak or false alarm), from which each method's precision is shown.

Open to public-health officers, managers and administrators (POPULATION_ROLES); everyone else gets the 403 page.
Like the manager's dashboard it shows aggregates only: no patient is named, linked or counted below one place and
one week, and the audit event names no patient. The figures come from sante.analytics.indicators (SQL on FHIR
views) over the whole installation, kept while nothing is written and per filter for a minute.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from babel.numbers import format_percent
from fastapi import APIRouter, Request
from markupsafe import Markup
from starlette.responses import RedirectResponse, Response

from sante.analytics import alerts as alerting
from sante.analytics import indicators as ind
from sante.analytics.forecast import Forecast, forecast_weekly
from sante.analytics.notifiable import DISEASES, disease
from sante.analytics.surveillance import detect
from sante.anomaly import Anomaly, Category
from sante.clinical import admin_units, icd10
from sante.store import Repository
from sante.web.choropleth import Province, choropleth
from sante.web.dashboard import Figure, LegendItem, Table, Tile
from sante.web.form_data import form_fields
from sante.web.i18n import N_, Formats
from sante.web.population_charts import CurveWeek, ForecastWeek, PyramidBand, age_sex_pyramid, epidemic_curve
from sante.web.render import PAGE_HEADERS, Area, Pages, register_area
from sante.web.svg import Bars, horizontal_bar_chart

POPULATION_ROLES = frozenset({"public_health", "manager", "admin"})
register_area(Area("population", "/population", N_("Population health"),
                   N_("Notifiable diseases, outbreak alerts and forecasts by place"), POPULATION_ROLES, order=85))

PRESETS = (12, 26, 52, 156)  # weeks
DEFAULT_WEEKS = 52
FORECAST_WEEKS = 8
ALERT_CURVE_WEEKS = 26
MAX_PERIOD_DAYS = 3 * 366 + 7
SEX_LABELS = (("male", N_("Male")), ("female", N_("Female")))
VERDICT_LABELS = {"confirmed": N_("Confirmed outbreak"), "false-alarm": N_("False alarm")}
REGISTER_LABELS = {"hypertension": N_("Hypertension (I10–I15)"), "diabetes": N_("Diabetes (E10–E14)")}
LEVEL_LABELS = {"province": N_("Province"), "commune": N_("Commune")}


# -- the filters ---------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class FilterChoice:
    """The filter form as submitted, its errors (field -> message id) and the filters it gives."""

    weeks: str  # "12", "26", "52", "156" or "custom"
    first: str  # YYYY-MM-DD
    last: str
    province: str = ""
    commune: str = ""
    disease: str = ""
    age: str = ""
    sex: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    filters: ind.Filters | None = None

    def query(self) -> str:
        """The query string of these choices: the export links keep the filters."""
        dates = {"from": self.first, "to": self.last} if self.weeks == "custom" else {}
        values = {"weeks": self.weeks, **dates, "province": self.province, "commune": self.commune,
                  "disease": self.disease, "age": self.age, "sex": self.sex}
        return urlencode({k: v for k, v in values.items() if v})


def last_complete_sunday(today: date) -> date:
    """The end of the last complete ISO week (yesterday on a Monday, last Sunday otherwise)."""
    return today - timedelta(days=today.weekday() + 1)


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def _choose_period(choice: FilterChoice, params: Mapping[str, str], today: date) -> tuple[date, date] | None:
    weeks = params.get("weeks", "")[:10]
    if weeks != "custom":
        count = int(weeks) if weeks.isdigit() and int(weeks) in PRESETS else DEFAULT_WEEKS
        sunday = last_complete_sunday(today)
        monday = sunday - timedelta(weeks=count) + timedelta(days=1)
        choice.weeks, choice.first, choice.last = str(count), monday.isoformat(), sunday.isoformat()
        return monday, sunday
    first, last = _date(choice.first), _date(choice.last)
    if first is None:
        choice.errors["from"] = N_("Enter the first day as a date.") if choice.first else N_("Enter the first day.")
    if last is None:
        choice.errors["to"] = N_("Enter the last day as a date.") if choice.last else N_("Enter the last day.")
    if first is None or last is None:
        return None
    if last > today:
        choice.errors["to"] = N_("The last day cannot be after today.")
    elif last < first:
        choice.errors["to"] = N_("The last day cannot be before the first.")
    elif (last - first).days > MAX_PERIOD_DAYS:
        choice.errors["from"] = N_("A period lasts at most three years.")
    return None if choice.errors else (first, last)


def _choose_place(choice: FilterChoice) -> None:
    if choice.province and admin_units.province(choice.province) is None:
        choice.errors["province"] = N_("Choose a province from the list.")
    unit = admin_units.commune(choice.commune) if choice.commune else None
    if choice.commune and (unit is None or unit.province_code != choice.province):
        choice.errors["commune"] = N_("Choose a commune of the province from the list.")


def choose_filters(params: Mapping[str, str], today: date) -> FilterChoice:
    """The filters asked for: a preset number of weeks (`weeks=12|26|52|156`, default 52, ending with the last
    complete week) or `weeks=custom&from=&to=`; `province`, `commune`, `disease`, `age`, `sex`."""
    choice = FilterChoice(params.get("weeks", "")[:10], params.get("from", "")[:20], params.get("to", "")[:20],
                          params.get("province", "")[:2], params.get("commune", "")[:5],
                          params.get("disease", "")[:40], params.get("age", "")[:10], params.get("sex", "")[:10])
    period = _choose_period(choice, params, today)
    _choose_place(choice)
    if choice.disease and disease(choice.disease) is None:
        choice.errors["disease"] = N_("Choose a disease from the list.")
    if choice.age and choice.age not in {g[0] for g in ind.AGE_GROUPS}:
        choice.errors["age"] = N_("Choose an age group from the list.")
    if choice.sex and choice.sex not in ind.SEXES:
        choice.errors["sex"] = N_("Choose a sex from the list.")
    if period is not None and not choice.errors:
        choice.filters = ind.Filters(period[0], period[1], choice.province or None, choice.commune or None,
                                     choice.disease or None, choice.age or None, choice.sex or None)
    return choice


# -- the epidemic curve --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Curve:
    weeks: list[tuple[int, int]]
    counts: list[int]
    bounds: list[float | None]
    alarms: list[bool]
    forecast_weeks: list[tuple[int, int]]
    forecast: Forecast | None


def curve_of(data: ind.PopulationData, f: ind.Filters, *, with_forecast: bool = True) -> Curve:
    """The filter's weekly cases over its period, the recommended detector's bound and alarms for each week
    (its baseline from the five years before), and the forecast of the weeks after the period."""
    cases = [c for c in data.cases if f.selects(c)]
    shown = ind.weeks_between(f.first, f.last)
    history = alerting.history_weeks(shown[-1], len(shown) + alerting.HISTORY_WEEKS)
    series = alerting.weekly_series(cases, history)
    start = len(history) - len(shown) + 1
    points = detect(series, alerting.DEFAULT_METHOD, freq=52, start=alerting.detector_start(history[0]),
                    range=(start, len(history)))
    by_t = {int(p["t"]): p for p in points}
    bounds = [_float_or_none(by_t.get(start + n, {}).get("upperbound")) for n in range(len(shown))]
    alarms = [bool(by_t.get(start + n, {}).get("alarm")) for n in range(len(shown))]
    forecast, ahead = None, []
    if with_forecast:
        forecast = forecast_weekly(series, FORECAST_WEEKS)
        monday = ind.week_monday(shown[-1])
        ahead = [ind.iso_week(monday + timedelta(weeks=n + 1)) for n in range(FORECAST_WEEKS)]
    return Curve(shown, series[-len(shown):], bounds, alarms, ahead, forecast)


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN: no bound computed


# -- the page's view -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MapFigure:
    chart: Markup
    legend: list[tuple[str, str]]  # (css class, range text)
    table: Table
    summary: str


@dataclass(frozen=True, slots=True)
class PopulationView:
    title_place: str
    period_text: str
    tiles: list[Tile]
    curve: Figure
    map: MapFigure
    figures: list[Figure]


def _percent(fmt: Formats, rate: float | None) -> str:
    return "—" if rate is None else format_percent(rate, locale=fmt.lang, format="#,##0.#%")


def _count(fmt: Formats, value: float) -> str:
    return fmt.number(value, 0)


def disease_name(key: str | None, fmt: Formats) -> str:
    found = disease(key) if key else None
    return found.name(fmt.lang) if found else fmt.t.gettext("All notifiable diseases")


def place_text(f: ind.Filters, fmt: Formats) -> str:
    if f.commune:
        unit = admin_units.commune(f.commune)
        province = admin_units.province(f.province or "")
        return f"{unit.name if unit else f.commune}, {province.name if province else ''}".strip(", ")
    if f.province:
        found = admin_units.province(f.province)
        return found.name if found else f.province
    return fmt.t.gettext("All provinces")


def _week_label(week: tuple[int, int], fmt: Formats) -> str:
    return fmt.t.gettext("W%(week)s/%(year)s") % {"week": f"{week[1]:02d}", "year": week[0]}


def _curve_weeks(curve: Curve, fmt: Formats) -> list[CurveWeek]:
    _ = fmt.t.gettext
    out = []
    for w, n, bound, alarm in zip(curve.weeks, curve.counts, curve.bounds, curve.alarms, strict=True):
        tip = _("%(week)s · cases: %(count)s") % {"week": _week_label(w, fmt), "count": _count(fmt, n)}
        if bound is not None:
            tip += " · " + _("upper bound %(bound)s") % {"bound": fmt.number(bound, 1)}
        if alarm:
            tip += " · " + _("alarm")
        out.append(CurveWeek(_week_label(w, fmt), n, bound, alarm, tip))
    return out


def _forecast_weeks(curve: Curve, fmt: Formats) -> list[ForecastWeek]:
    fc = curve.forecast
    if fc is None:
        return []
    out = []
    for n, w in enumerate(curve.forecast_weeks):
        label = _week_label(w, fmt)
        tip = fmt.t.gettext("%(week)s: forecast %(mean)s (80%%: %(l80)s–%(u80)s; 95%%: %(l95)s–%(u95)s)") % {
            "week": label, "mean": fmt.number(fc.mean[n], 1), "l80": _count(fmt, fc.lower80[n]),
            "u80": _count(fmt, fc.upper80[n]), "l95": _count(fmt, fc.lower95[n]), "u95": _count(fmt, fc.upper95[n])}
        out.append(ForecastWeek(label, fc.mean[n], fc.lower80[n], fc.upper80[n], fc.lower95[n], fc.upper95[n], tip))
    return out


def curve_figure(curve: Curve, f: ind.Filters, fmt: Formats, chart_id: str = "pop-curve") -> Figure:
    """The epidemic curve with its bound, alarms and forecast, and its figures as a table."""
    _ = fmt.t.gettext
    title = _("Cases per week: %(disease)s") % {"disease": disease_name(f.disease, fmt)}
    total = sum(curve.counts)
    summary = _("%(place)s, %(weeks)s weeks: %(total)s cases in all; weeks with an alarm: %(alarms)s.") % {
        "total": _count(fmt, total), "weeks": _count(fmt, len(curve.weeks)), "place": place_text(f, fmt),
        "alarms": _count(fmt, sum(curve.alarms))}
    weeks, ahead = _curve_weeks(curve, fmt), _forecast_weeks(curve, fmt)
    chart = epidemic_curve(chart_id, title, summary, weeks, ahead, value_text=lambda v: _count(fmt, v))
    rows = [(w.label, [_count(fmt, w.count), "—" if w.upperbound is None else fmt.number(w.upperbound, 1),
                       _("alarm") if w.alarm else "", "", "", ""]) for w in weeks]
    rows += [(a.label, ["", "", "", fmt.number(a.mean, 1), f"{_count(fmt, a.lower80)}–{_count(fmt, a.upper80)}",
                        f"{_count(fmt, a.lower95)}–{_count(fmt, a.upper95)}"]) for a in ahead]
    columns = [_("Week"), _("Cases"), _("Upper bound"), _("Alarm"), _("Forecast"), _("80% interval"),
               _("95% interval")]
    legend = [LegendItem("cases", _("Cases")), LegendItem("alarm", _("Week with an alarm")),
              LegendItem("bound", _("Detector's upper bound"))]
    if ahead:
        legend.append(LegendItem("forecast", _("Forecast with its 80% and 95% intervals")))
    return Figure("curve", title, summary, chart, legend, Table(title, columns, rows),
                  None if total or ahead else _("No cases in this period."))


def map_figure(data: ind.PopulationData, f: ind.Filters, fmt: Formats) -> MapFigure:
    """Cases by province (every province, whatever the place filter: the chosen one is outlined)."""
    _ = fmt.t.gettext
    anywhere = ind.Filters(f.first, f.last, None, None, f.disease, f.age_group, f.sex)
    counts = ind.cases_by(ind.filtered_cases(data, anywhere), ind.by_province)
    title = _("Cases by province")
    summary = _("%(disease)s, %(period)s. Cases with a known address: %(total)s; provinces with cases: %(provinces)s.") % {
        "disease": disease_name(f.disease, fmt), "period": period_text(f, fmt),
        "total": _count(fmt, sum(counts.values())), "provinces": _count(fmt, len(counts))}

    def tooltip(province: Province, value: float) -> str:
        return _("%(province)s · cases: %(count)s") % {"province": province.name, "count": _count(fmt, value)}

    chart, classes = choropleth("pop-map", title, summary, counts, tooltip, selected=f.province)
    legend = [(c.css, "0" if c.css == "choro-0" else f"{_count(fmt, c.low)}–{_count(fmt, c.high)}")
              for c in classes]
    rows = [(p.short_name, [_count(fmt, counts.get(p.code, 0))])
            for p in sorted(admin_units.provinces(), key=lambda p: (-counts.get(p.code, 0), p.short_name))]
    return MapFigure(chart, legend, Table(title, [_("Province"), _("Cases")], rows), summary)


def _communes_figure(data: ind.PopulationData, f: ind.Filters, fmt: Formats) -> Figure | None:
    if not f.province:
        return None
    _ = fmt.t.gettext
    counts = ind.cases_by(ind.filtered_cases(data, ind.Filters(f.first, f.last, f.province, None, f.disease,
                                                               f.age_group, f.sex)), ind.by_commune)
    title = _("Cases by commune: %(province)s") % {"province": place_text(
        ind.Filters(f.first, f.last, f.province), fmt)}
    top = counts.most_common(15)
    names = {c: unit.name if (unit := admin_units.commune(c)) else c for c in counts}
    summary = _("The communes with the most cases (at most 15).")
    chart = horizontal_bar_chart("pop-communes", title, summary, [names[c] for c, _n in top],
                                 [Bars("cases", _("Cases"), [n for _c, n in top])],
                                 value_text=lambda v: _count(fmt, v), label_width=200, width=460)
    rows = [(names[c], [_count(fmt, n)]) for c, n in counts.most_common()]
    return Figure("communes", title, summary, chart, [], Table(title, [_("Commune"), _("Cases")], rows),
                  None if counts else _("No cases in this period."))


def _pyramid_figure(cases: list[ind.Case], fmt: Formats) -> Figure:
    _ = fmt.t.gettext
    title = _("Cases by age and sex")
    rows = ind.age_sex_pyramid(cases)
    summary = _("Age at onset in ten-year bands: men on the left, women on the right.")
    chart = age_sex_pyramid("pop-pyramid", title, summary, [PyramidBand(r.band, r.male, r.female) for r in rows],
                            male_label=_("Male"), female_label=_("Female"), value_text=lambda v: _count(fmt, v))
    table = Table(title, [_("Age"), _("Male"), _("Female")],
                  [(r.band, [_count(fmt, r.male), _count(fmt, r.female)]) for r in rows])
    return Figure("pyramid", title, summary, chart, [LegendItem("male", _("Male")),
                                                     LegendItem("female", _("Female"))], table,
                  None if cases else _("No cases in this period."))


def _diseases_figure(data: ind.PopulationData, f: ind.Filters, fmt: Formats) -> Figure:
    _ = fmt.t.gettext
    title = _("Cases by disease")
    every = ind.Filters(f.first, f.last, f.province, f.commune, None, f.age_group, f.sex)
    counts = ind.cases_by(ind.filtered_cases(data, every), ind.by_disease).most_common()
    labels = [disease_name(k, fmt) for k, _n in counts]
    summary = _("Every notifiable disease in the period and place, the most frequent first.")
    chart = horizontal_bar_chart("pop-diseases", title, summary, labels,
                                 [Bars("cases", _("Cases"), [n for _k, n in counts])],
                                 value_text=lambda v: _count(fmt, v), label_width=200, width=460)
    rows = [(label, [found.codes_text if (found := disease(k)) else k, _count(fmt, n)])
            for label, (k, n) in zip(labels, counts, strict=True)]
    return Figure("diseases", title, summary, chart, [], Table(title, [_("Disease"), _("ICD-10"), _("Cases")], rows,
                                                               text_cells=1),
                  None if counts else _("No cases in this period."))


def _chapters_figure(data: ind.PopulationData, f: ind.Filters, fmt: Formats) -> Figure:
    _ = fmt.t.gettext
    title = _("Diagnoses by ICD-10 chapter")
    counts = ind.diagnoses_by_chapter(data, f).most_common(10)
    chapters = {c.number: c for c in icd10.chapters()}
    labels = [f"{n} · {chapters[n].title('vi' if fmt.lang == 'vi' else 'en')}" for n, _c in counts]
    summary = _("All diagnoses made in the period (not only notifiable ones), the 10 largest chapters.")
    chart = horizontal_bar_chart("pop-chapters", title, summary, labels,
                                 [Bars("diagnoses", _("Diagnoses"), [c for _n, c in counts])],
                                 value_text=lambda v: _count(fmt, v), label_width=240, width=460)
    rows = [(label, [_count(fmt, c)]) for label, (_n, c) in zip(labels, counts, strict=True)]
    return Figure("chapters", title, summary, chart, [], Table(title, [_("Chapter"), _("Diagnoses")], rows),
                  None if counts else _("No diagnoses in this period."))


def _coverage_figure(data: ind.PopulationData, f: ind.Filters, fmt: Formats) -> Figure:
    _ = fmt.t.gettext
    title = _("Vaccination coverage of children aged 12–59 months")
    found = ind.vaccination_coverage(data, f)[:10]
    children = found[0].children if found else 0
    summary = _("Children with at least one dose by %(day)s; children known: %(children)s.") % {
        "day": fmt.date(f.last), "children": _count(fmt, children)}
    chart = horizontal_bar_chart("pop-coverage", title, summary, [c.label for c in found],
                                 [Bars("coverage", _("Coverage"), [round(c.rate * 100, 1) for c in found])],
                                 value_text=lambda v: _percent(fmt, v / 100), label_width=220, width=460)
    rows = [(c.label, [_count(fmt, c.vaccinated), _count(fmt, c.children), _percent(fmt, c.rate)]) for c in found]
    return Figure("coverage", title, summary, chart, [],
                  Table(title, [_("Vaccine"), _("Vaccinated"), _("Children"), _("Coverage")], rows),
                  None if found else _("No vaccinations recorded for these children."))


def _registers_figure(data: ind.PopulationData, f: ind.Filters, fmt: Formats) -> Figure:
    _ = fmt.t.gettext
    title = _("Chronic disease registers")
    registers = ind.chronic_registers(data, f)
    summary = _("Under treatment: an active prescription. Controlled: the last blood pressure below 140/90 mmHg; "
                "the last HbA1c below 7%.")
    labels = [_(REGISTER_LABELS[r.key]) for r in registers]
    bars = [Bars("treated", _("Under treatment"), [r.treated for r in registers]),
            Bars("untreated", _("Not under treatment"), [r.registered - r.treated for r in registers])]
    chart = horizontal_bar_chart("pop-registers", title, summary, labels, bars, value_text=lambda v: _count(fmt, v),
                                 label_width=200, width=460)
    rows = [(label, [_count(fmt, r.registered), _count(fmt, r.treated),
                     _percent(fmt, r.treated / r.registered if r.registered else None), _count(fmt, r.measured),
                     _count(fmt, r.controlled), _percent(fmt, r.controlled / r.measured if r.measured else None)])
            for label, r in zip(labels, registers, strict=True)]
    columns = [_("Disease register"), _("Patients"), _("Under treatment"), _("Share treated"), _("Measured"),
               _("Controlled"), _("Share controlled")]
    return Figure("registers", title, summary, chart, [LegendItem(b.key, b.label) for b in bars],
                  Table(title, columns, rows), None if any(r.registered for r in registers) else
                  _("No patients with hypertension or diabetes in this place."))


def _positivity_figure(data: ind.PopulationData, f: ind.Filters, fmt: Formats) -> Figure:
    _ = fmt.t.gettext
    title = _("Laboratory positivity")
    found = ind.lab_positivity(data, f)[:10]
    summary = _("Qualitative tests of the period: the share of positive results.")
    chart = horizontal_bar_chart("pop-positivity", title, summary, [p.label for p in found],
                                 [Bars("positive", _("Positive"), [round(p.rate * 100, 1) for p in found])],
                                 value_text=lambda v: _percent(fmt, v / 100), label_width=220, width=460)
    rows = [(p.label, [p.code, _count(fmt, p.tested), _count(fmt, p.positive), _percent(fmt, p.rate)])
            for p in found]
    return Figure("positivity", title, summary, chart, [],
                  Table(title, [_("Test"), _("LOINC"), _("Tested"), _("Positive"), _("Positivity")], rows,
                        text_cells=1), None if found else _("No qualitative laboratory results in this period."))


def period_text(f: ind.Filters, fmt: Formats) -> str:
    return fmt.t.gettext("%(first)s to %(last)s") % {"first": fmt.date(f.first), "last": fmt.date(f.last)}


def _tiles(data: ind.PopulationData, f: ind.Filters, cases: list[ind.Case], curve: Curve, fmt: Formats
           ) -> list[Tile]:
    _ = fmt.t.gettext
    act = ind.activity(data, f)
    last4 = sum(curve.counts[-4:])
    before4 = sum(curve.counts[-8:-4])
    change = _("%(before)s in the 4 weeks before") % {"before": _count(fmt, before4)}
    alos = _("%(value)s days") % {"value": fmt.number(act.average_length_of_stay, 1)} \
        if act.average_length_of_stay is not None else "—"
    return [
        Tile(_("Cases"), _count(fmt, len(cases)), disease_name(f.disease, fmt)),
        Tile(_("Last 4 weeks"), _count(fmt, last4), change),
        Tile(_("Weeks with an alarm"), _count(fmt, sum(curve.alarms)),
             _("out of %(weeks)s weeks") % {"weeks": _count(fmt, len(curve.weeks))}),
        Tile(_("Visits"), _count(fmt, act.visits),
             _("admissions: %(admissions)s") % {"admissions": _count(fmt, act.admissions)}),
        Tile(_("Average length of stay"), alos,
             _("%(discharges)s discharges") % {"discharges": _count(fmt, act.discharges)}),
        Tile(_("Bed occupancy"), _percent(fmt, act.occupancy),
             _("beds: %(beds)s") % {"beds": _count(fmt, act.beds)}),
    ]


def population_view(data: ind.PopulationData, f: ind.Filters, fmt: Formats) -> PopulationView:
    """The page's tiles, charts and tables for a filter, in the user's language."""
    cases = ind.filtered_cases(data, f)
    curve = curve_of(data, f)
    figures = [_pyramid_figure(cases, fmt), _diseases_figure(data, f, fmt)]
    communes = _communes_figure(data, f, fmt)
    if communes is not None:
        figures.append(communes)
    figures += [_chapters_figure(data, f, fmt), _coverage_figure(data, f, fmt), _registers_figure(data, f, fmt),
                _positivity_figure(data, f, fmt)]
    return PopulationView(place_text(f, fmt), period_text(f, fmt), _tiles(data, f, cases, curve, fmt),
                          curve_figure(curve, f, fmt), map_figure(data, f, fmt), figures)


# -- the export ----------------------------------------------------------------------------------------------------
def export_rows(data: ind.PopulationData, f: ind.Filters, fmt: Formats) -> tuple[list[str], list[list[Any]]]:
    """The filtered table: cases per ISO week, disease and place (commune when a province is chosen)."""
    _ = fmt.t.gettext
    by_commune = f.province is not None
    counts: dict[tuple[Any, ...], int] = {}
    for c in ind.filtered_cases(data, f):
        place = c.person.commune if by_commune else c.person.province
        key = (ind.week_text(c.week), c.disease, place or "")
        counts[key] = counts.get(key, 0) + 1
    header = [_("ISO week"), _("Disease"), _("ICD-10"), _("Commune code") if by_commune else _("Province code"),
              _("Commune") if by_commune else _("Province"), _("Cases")]
    rows = []
    for (week, key, place), n in sorted(counts.items()):
        unit = (admin_units.commune(place) if by_commune else admin_units.province(place)) if place else None
        found = disease(key)
        rows.append([week, disease_name(key, fmt), found.codes_text if found else "", place,
                     unit.name if unit else _("Unknown"), n])
    return header, rows


def csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")  # the BOM: Excel opens UTF-8 CSV right with it


def xlsx_bytes(header: list[str], rows: list[list[Any]], title: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = title[:31]
    sheet.append(header)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append(row)
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# -- alerts' views -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertRow:
    alert: alerting.Alert
    disease: str
    week: str
    place: str
    level: str
    verdict: str  # the verdict in words, or ""


def alert_row(a: alerting.Alert, fmt: Formats) -> AlertRow:
    _ = fmt.t.gettext
    return AlertRow(a, disease_name(a.disease, fmt), _week_label(a.week, fmt), a.place_name,
                    _(LEVEL_LABELS.get(a.level, a.level)), _(VERDICT_LABELS[a.verdict]) if a.verdict else "")


def alert_curve(data: ind.PopulationData, a: alerting.Alert, fmt: Formats) -> Figure:
    """The alert's disease at its place over the weeks up to its week, with the bound."""
    last = ind.week_monday(a.week) + timedelta(days=6)
    commune = admin_units.commune(a.place) if a.level == "commune" else None
    province = commune.province_code if commune is not None else a.place
    f = ind.Filters(last - timedelta(weeks=ALERT_CURVE_WEEKS) + timedelta(days=1), last, province,
                    commune.code if commune is not None else None, a.disease)
    return curve_figure(curve_of(data, f, with_forecast=False), f, fmt, chart_id="alert-curve")


# -- the routes ----------------------------------------------------------------------------------------------------
def population_router(repo: Repository, pages: Pages, run: Any) -> APIRouter:
    """run(fn, *args) runs repository work off the event loop (sante.web.site._in_thread)."""
    router = APIRouter(include_in_schema=False)
    population = ind.PopulationCache()
    views = ind.FigureCache(seconds=60)

    def allowed(request: Request) -> bool:
        return request.state.principal.role in POPULATION_ROLES

    def describe(request: Request, text: str) -> None:
        event = getattr(request.state, "audit", None)
        if event is not None:
            event.description = f"web page {request.method} {request.url.path}: {text} (aggregates only)"

    def load_view(filters: ind.Filters, fmt: Formats) -> PopulationView:
        data = population.get(repo)
        return views.get((data.seq, filters, fmt.lang), lambda: population_view(data, filters, fmt))

    @router.get("/population")
    async def dashboard(request: Request) -> Response:
        if not allowed(request):
            return pages.error(request, 403)
        fmt = pages.formats_for(request)
        choice = choose_filters(request.query_params, fmt.today())
        view = await run(load_view, choice.filters, fmt) if choice.filters is not None else None
        describe(request, "population health")
        return pages.render(request, "population/dashboard.html", active="population", choice=choice, view=view,
                            **_form_options(choice, fmt))

    @router.get("/population/export")
    async def export(request: Request) -> Response:
        if not allowed(request):
            return pages.error(request, 403)
        fmt = pages.formats_for(request)
        choice = choose_filters(request.query_params, fmt.today())
        kind = request.query_params.get("format", "csv")
        if choice.filters is None or kind not in ("csv", "xlsx"):
            return pages.render(request, "population/dashboard.html", status=400, active="population",
                                choice=choice, view=None, **_form_options(choice, fmt))
        data = await run(population.get, repo)
        header, rows = export_rows(data, choice.filters, fmt)
        name = f"ca-benh-{choice.filters.first.isoformat()}-{choice.filters.last.isoformat()}"
        describe(request, f"population health export ({kind})")
        if kind == "csv":
            return Response(csv_bytes(header, rows), media_type="text/csv; charset=utf-8", headers={
                **PAGE_HEADERS, "Content-Disposition": f'attachment; filename="{name}.csv"'})
        body = xlsx_bytes(header, rows, fmt.t.gettext("Cases"))
        return Response(body, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        headers={**PAGE_HEADERS, "Content-Disposition": f'attachment; filename="{name}.xlsx"'})

    @router.get("/population/alerts")
    async def alerts_page(request: Request) -> Response:
        if not allowed(request):
            return pages.error(request, 403)
        fmt = pages.formats_for(request)
        found = await run(alerting.list_alerts, repo, getattr(request.state, "audit", None))
        newest = None
        if found:
            data = await run(population.get, repo)
            newest = await run(alert_curve, data, found[0], fmt)
        describe(request, "outbreak alerts")
        ran = request.query_params.get("ran", "")
        return pages.render(request, "population/alerts.html", active="population",
                            alerts=[alert_row(a, fmt) for a in found], newest=newest,
                            precision=alerting.precision_by_method(found), ran=ran if ran.isdigit() else "",
                            last_week=_week_label(alerting.last_complete_week(fmt.today()), fmt),
                            levels=[(k, fmt.t.gettext(v)) for k, v in LEVEL_LABELS.items()])

    @router.post("/population/alerts/run")
    async def run_detection(request: Request) -> Response:
        if not allowed(request):
            return pages.error(request, 403)
        form = await form_fields(request)
        level = form.get("level", "province")
        if level not in alerting.LEVELS:
            return pages.error(request, 400)
        fmt = pages.formats_for(request)
        week = alerting.last_complete_week(fmt.today())
        data = await run(population.get, repo)
        done = await run(lambda: alerting.raise_alerts(repo, data, week, level=level,
                                                       event=getattr(request.state, "audit", None)))
        describe(request, f"outbreak detection for {ind.week_text(week)} per {level}")
        return RedirectResponse(f"/population/alerts?ran={len(done.created)}", status_code=303, headers=PAGE_HEADERS)

    async def alert_page(request: Request, flag_id: str, *, error: str = "", status: int = 200) -> Response:
        fmt = pages.formats_for(request)
        event = getattr(request.state, "audit", None)
        try:
            found = await run(alerting.read_alert, repo, flag_id, event)
        except Anomaly as e:
            return pages.error(request, e.category.status)
        data = await run(population.get, repo)
        figure = await run(alert_curve, data, found, fmt)
        describe(request, "outbreak alert")
        return pages.render(request, "population/alert.html", status=status, active="population",
                            row=alert_row(found, fmt), curve=figure, error=error,
                            done=request.query_params.get("done") == "verdict",
                            verdicts=[(k, fmt.t.gettext(v)) for k, v in VERDICT_LABELS.items()])

    @router.get("/population/alerts/{flag_id}")
    async def alert_detail(request: Request, flag_id: str) -> Response:
        if not allowed(request):
            return pages.error(request, 403)
        return await alert_page(request, flag_id)

    @router.post("/population/alerts/{flag_id}/verdict")
    async def verdict(request: Request, flag_id: str) -> Response:
        if not allowed(request):
            return pages.error(request, 403)
        form = await form_fields(request)
        principal = request.state.principal
        describe(request, f"verdict {form.get('verdict', '')[:20]!r} on outbreak alert Flag/{flag_id}")
        try:
            await run(lambda: alerting.record_verdict(repo, flag_id, form.get("verdict", ""),
                                                      principal.fhir_user or principal.subject,
                                                      event=getattr(request.state, "audit", None)))
        except Anomaly as e:
            if e.category == Category.INCORRECT:
                return await alert_page(request, flag_id, error=N_("Choose confirmed outbreak or false alarm."),
                                        status=400)
            if e.category == Category.CONFLICT:
                return await alert_page(request, flag_id, error=N_("This alert was judged already."), status=409)
            return pages.error(request, e.category.status)
        return RedirectResponse(f"/population/alerts/{flag_id}?done=verdict", status_code=303, headers=PAGE_HEADERS)

    return router


def _form_options(choice: FilterChoice, fmt: Formats) -> dict[str, Any]:
    """The filter form's lists: periods, provinces, the chosen province's communes, diseases, ages, sexes."""
    communes = admin_units.communes(choice.province) if admin_units.province(choice.province or "00") else []
    return {
        "presets": PRESETS,
        "provinces": [(p.code, p.name) for p in sorted(admin_units.provinces(), key=lambda p: p.short_name)],
        "communes": [(c.code, c.name) for c in sorted(communes, key=lambda c: c.short_name)],
        "diseases": [(d.key, d.name(fmt.lang)) for d in DISEASES],
        "ages": [g[0] for g in ind.AGE_GROUPS],
        "sexes": [(k, fmt.t.gettext(v)) for k, v in SEX_LABELS],
        "export_query": choice.query(),
    }


__all__ = ["POPULATION_ROLES", "FilterChoice", "PopulationView", "choose_filters", "curve_of", "export_rows",
           "population_router", "population_view"]
