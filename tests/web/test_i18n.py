"""Languages: the negotiation, the formats of each language, and catalogues that cover every message."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import sante.web
from sante.web.i18n import LANGUAGES, LOCALE_DIR, Formats, negotiate

WEB = Path(sante.web.__file__).parent
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


@pytest.mark.parametrize("cookie,header,expected", [
    (None, None, "vi"),
    (None, "en-US,en;q=0.9", "en"),
    (None, "fr-CA, en;q=0.8", "fr"),
    (None, "de-DE, en;q=0.3, fr;q=0.5", "fr"),  # the best weight that Sante speaks
    (None, "de-DE, ja", "vi"),
    (None, "en;q=0, vi;q=0.1", "vi"),
    ("fr", "en", "fr"),  # the switcher's cookie wins
    ("xx", "en", "en"),
])
def test_language_negotiation(cookie, header, expected):
    assert negotiate(cookie, header) == expected


def test_dates_times_numbers_and_ages_per_language():
    vi, en, fr = Formats("vi"), Formats("en"), Formats("fr")
    assert vi.date("1985-03-12") == "12/03/1985" == fr.date("1985-03-12") and en.date("1985-03-12") == "12 Mar 1985"
    assert vi.date("1985-03") == "03/1985" and vi.date("1985") == "1985" and vi.date(None) == ""
    # Times are shown where the hospital is (Asia/Ho_Chi_Minh, UTC+7), days too.
    assert vi.datetime("2026-11-16T01:00:00Z") == "16/11/2026 08:00"
    assert vi.date("2026-11-16T20:00:00Z") == "17/11/2026"
    assert vi.number(1234.5) == "1.234,5" and en.number(1234.5) == "1,234.5" and fr.number(3.9) == "3,9"
    assert vi.number(36.95, 1) in ("37", "36,9", "37,0") and en.number(120, 0) == "120"
    today = vi.today()
    ten = date(today.year - 10, 1, 1).isoformat()
    assert vi.age(ten) in ("9 tuổi", "10 tuổi") and en.age(ten).endswith("years") and fr.age(ten).endswith("ans")
    baby = date.fromordinal(today.toordinal() - 100).isoformat()
    assert vi.age(baby).endswith("tháng tuổi") and en.age(baby).endswith("months") and fr.age(baby).endswith("mois")


def _extracted() -> dict[str | tuple[str, ...], set[str]]:
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
    out: dict = {}
    for _file, _line, message, _comments, _context in extract_from_dir(str(WEB), method_map, options,
                                                                        keywords={"_": None, "gettext": None,
                                                                                  "ngettext": (1, 2), "N_": None}):
        out.setdefault(message if isinstance(message, str) else tuple(message), set())
    return out


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_every_message_is_in_every_catalogue_and_translated(lang):
    """The language's .po files together (messages.po plus one per area) hold every message, once."""
    catalog = []
    for path in sorted((LOCALE_DIR / lang / "LC_MESSAGES").glob("*.po")):
        with path.open("rb") as f:
            catalog += [m for m in read_po(f, locale=lang) if m.id]
    ids = {m.id for m in catalog}
    assert len(ids) == len(catalog), "a message is in two .po files of the same language"
    extracted = set(_extracted())
    assert extracted - ids == set(), "messages missing from the catalogue: run pybabel update (docs/web.md)"
    assert ids - extracted == set(), "messages no longer used: run pybabel update (docs/web.md)"
    for m in catalog:
        if not m.id or lang == "en":  # English is the source language: its catalogue may stay empty
            continue
        assert "fuzzy" not in m.flags, m.id
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        assert all(strings), f"{lang}: {m.id!r} is not translated"
        source = m.id[0] if isinstance(m.id, tuple) else m.id
        for s in strings:
            assert set(PLACEHOLDER.findall(s)) == set(PLACEHOLDER.findall(source)), (lang, m.id)
