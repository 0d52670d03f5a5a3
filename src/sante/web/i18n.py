"""The web app's languages: Vietnamese (the default), English and French.

Messages come from the Babel catalogues in `sante/web/locale/<lang>/LC_MESSAGES/messages.po`, compiled in memory
when first used (no build step, no .mo files). The language of a request is the `sante_lang` cookie (set by the
switcher in the page header), else the browser's Accept-Language, else Vietnamese. Dates, times and numbers are
written in the language's conventions (dates dd/mm/yyyy in Vietnamese and French) in the hospital's time zone.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

LANGUAGES: dict[str, str] = {"vi": "Tiếng Việt", "en": "English", "fr": "Français"}  # each in its own language
DEFAULT_LANGUAGE = "vi"
LANG_COOKIE = "sante_lang"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DEFAULT_TIME_ZONE = "Asia/Ho_Chi_Minh"
_DATE = {"vi": "dd/MM/yyyy", "en": "d MMM yyyy", "fr": "dd/MM/yyyy"}
_MONTH = {"vi": "MM/yyyy", "en": "MMM yyyy", "fr": "MM/yyyy"}
_SHORT = {"vi": "dd/MM", "en": "d MMM", "fr": "dd/MM"}  # a day of the current year, on chart axes


def N_(message: str) -> str:
    """Mark a message for the catalogue where it is defined; it is translated where it is shown."""
    return message


@cache
def translations(lang: str) -> Translations:
    """The compiled catalogue of a language: every .po file of its LC_MESSAGES folder (messages.po for the
    common pages, one file per area such as outpatient.po), read once per process and merged."""
    folder = LOCALE_DIR / lang / "LC_MESSAGES"
    merged = None
    for path in sorted(folder.glob("*.po"), key=lambda p: (p.name != "messages.po", p.name)):
        with path.open("rb") as f:
            catalog = read_po(f, locale=lang)
        if merged is None:
            merged = catalog
            continue
        for message in catalog:
            if message.id and message.id not in merged:
                merged[message.id] = message
    mo = io.BytesIO()
    write_mo(mo, merged, use_fuzzy=False)
    mo.seek(0)
    return Translations(mo, domain="messages")


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The language of a request: the cookie's, else the best of Accept-Language that Sante speaks, else vi."""
    if cookie in LANGUAGES:
        return str(cookie)
    best, best_q = None, 0.0
    for n, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q - n * 1e-6  # equal weights: the first listed wins
    return best or DEFAULT_LANGUAGE


def parse_fhir_date(value: str | None) -> date | None:
    """The day of a FHIR date or dateTime (a partial date gives its first day)."""
    if not value or len(value) < 4:
        return None
    try:
        parts = [int(p) for p in value[:10].split("-")]
        return date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    except (ValueError, IndexError):
        return None


def parse_fhir_datetime(value: str | None) -> datetime | None:
    """A FHIR dateTime or instant as an aware datetime (a date alone: its midnight UTC)."""
    if not value:
        return None
    if len(value) <= 10:
        d = parse_fhir_date(value)
        return datetime(d.year, d.month, d.day, tzinfo=UTC) if d else None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


Moment = datetime  # inside Formats, `datetime` is its method


class Formats:
    """Dates, times, numbers and ages written for one language, in the hospital's time zone."""

    def __init__(self, lang: str, time_zone: str = DEFAULT_TIME_ZONE) -> None:
        self.lang = lang
        self.zone = ZoneInfo(time_zone)
        self.t = translations(lang)

    def today(self) -> date:
        return datetime.now(self.zone).date()

    def date(self, value: str | date | None) -> str:
        """A FHIR date (partial dates as they are: 1985, 03/1985) or a date."""
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            if len(value) == 4:
                return value
            d = parse_fhir_date(value)
            if d is None:
                return value
            if len(value) == 7:
                return format_date(d, _MONTH[self.lang], locale=self.lang)
            if len(value) > 10:  # a dateTime: its day where the hospital is
                moment = parse_fhir_datetime(value)
                d = moment.astimezone(self.zone).date() if moment else d
            value = d
        return format_date(value, _DATE[self.lang], locale=self.lang)

    def datetime(self, value: str | Moment | None) -> str:
        """A FHIR dateTime as the day and the time of day (a date alone: the day)."""
        if isinstance(value, str) and len(value) <= 10:
            return self.date(value)
        moment = parse_fhir_datetime(value) if isinstance(value, str) else value
        if moment is None:
            return str(value or "")
        local = moment.astimezone(self.zone)
        return f"{format_date(local, _DATE[self.lang], locale=self.lang)} " \
               f"{format_time(local, 'HH:mm', locale=self.lang)}"

    def short_day(self, moment: Moment) -> str:
        """A day on a chart axis: 05/03 (vi, fr), 5 Mar (en)."""
        return format_datetime(moment.astimezone(self.zone), _SHORT[self.lang], locale=self.lang)

    def number(self, value: float | int | None, max_digits: int = 2) -> str:
        if value is None:
            return ""
        return format_decimal(value, format=f"#,##0.{'#' * max_digits}" if max_digits else "#,##0",
                              locale=self.lang)

    def age(self, birth_date: str | None) -> str:
        """Years, or months under two, or days under two months."""
        born = parse_fhir_date(birth_date)
        if born is None:
            return ""
        today = self.today()
        months = (today.year - born.year) * 12 + today.month - born.month - (today.day < born.day)
        if months >= 24:
            years = months // 12
            return self.t.ngettext("%(num)d year", "%(num)d years", years) % {"num": years}
        if months >= 2:
            return self.t.ngettext("%(num)d month", "%(num)d months", months) % {"num": months}
        days = max((today - born).days, 0)
        return self.t.ngettext("%(num)d day", "%(num)d days", days) % {"num": days}


__all__ = ["DEFAULT_LANGUAGE", "DEFAULT_TIME_ZONE", "LANGUAGES", "LANG_COOKIE", "Formats", "N_", "negotiate",
           "parse_fhir_date", "parse_fhir_datetime", "translations"]
