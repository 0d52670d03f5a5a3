"""Rendering the web app's pages: one Jinja2 environment per language (its catalogue installed, autoescaping on),
the context every page gets (the signed-in user, the language switcher, the session's CSRF token, formatters for
the language) and the security headers of every HTML response."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from sante.anomaly import Anomaly
from sante.auth.policy import require
from sante.auth.principal import Principal
from sante.auth.web_session import SESSION_COOKIE, Signer
from sante.web.i18n import DEFAULT_TIME_ZONE, LANG_COOKIE, LANGUAGES, N_, Formats, negotiate, translations

_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": _CSP + "; form-action 'self'",
    "Vary": "Cookie, Accept-Language, HX-Request",
}
# The sign-in form has no form-action: after it, the browser goes on to an OAuth client app's redirect URI.
SIGN_IN_HEADERS = {**PAGE_HEADERS, "Content-Security-Policy": _CSP}

PATIENT_ROLES = ("patient", "related_person")
ROLE_LABELS = {
    "admin": N_("Administrator"), "receptionist": N_("Receptionist"), "nurse": N_("Nurse"),
    "physician": N_("Physician"), "pharmacist": N_("Pharmacist"), "lab_technician": N_("Laboratory technician"),
    "radiologist": N_("Radiologist"), "manager": N_("Manager"), "public_health": N_("Public health officer"),
    "patient": N_("Patient"), "related_person": N_("Related person"), "system": N_("System"),
}
ERRORS = {  # status: (title, explanation)
    400: (N_("This request could not be understood"), N_("Check what you typed and try again.")),
    403: (N_("You do not have access to this page"),
          N_("Your role does not allow what this page shows or does. If you need it for your work, ask the "
             "hospital's administrator.")),
    404: (N_("Page not found"), N_("There is no such page, or it shows something you may not see.")),
    409: (N_("This record was changed"), N_("Someone else changed it in the meantime: reload the page.")),
    500: (N_("Something went wrong"), N_("The error was recorded. Try again in a moment.")),
}


@dataclass(frozen=True, slots=True)
class Area:
    """A part of the web app in the main menu and on the home page (outpatient, wards, pharmacy, ...): each area
    module registers its own with `register_area`, so areas are added without editing the shared templates."""

    key: str  # the `active` value of its pages
    href: str
    label: str  # an N_() message
    description: str  # an N_() message: one line on the home page
    roles: frozenset[str]  # who sees it in the menu (the pages check access themselves)
    order: int = 50


AREAS: list[Area] = []


def register_area(area: Area) -> None:
    if all(a.key != area.key for a in AREAS):
        AREAS.append(area)
        AREAS.sort(key=lambda a: (a.order, a.key))


def may(principal: Principal | None, op: str, rtype: str) -> bool:
    """Whether the authorization rules let the principal do `op` (c r u d s) on the type at all."""
    if principal is None:
        return False
    try:
        require(principal, op, rtype)
    except Anomaly:
        return False
    return True


def _environment(lang: str) -> Environment:
    env = Environment(loader=PackageLoader("sante.web", "templates"), autoescape=select_autoescape(default=True),
                      extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True,
                      undefined=StrictUndefined)
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    return env


class Pages:
    """The page renderer: `render(request, template, **context)` in the request's language."""

    def __init__(self, signer: Signer, time_zone: str = DEFAULT_TIME_ZONE) -> None:
        self.signer = signer
        self.time_zone = time_zone
        self.environments = {lang: _environment(lang) for lang in LANGUAGES}
        self.formats = {lang: Formats(lang, time_zone) for lang in LANGUAGES}

    @staticmethod
    def language(request: Request) -> str:
        return negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))

    def formats_for(self, request: Request) -> Formats:
        return self.formats[self.language(request)]

    def context(self, request: Request) -> dict[str, Any]:
        """What every page's template may use."""
        lang = self.language(request)
        principal: Principal | None = getattr(request.state, "principal", None)
        cookie = request.cookies.get(SESSION_COOKIE)
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return {
            "lang": lang,
            "languages": list(LANGUAGES.items()),
            "fmt": self.formats[lang],
            "principal": principal,
            "role_label": ROLE_LABELS.get(principal.role, principal.role) if principal else "",
            "csrf": self.signer.session_csrf(cookie) if principal is not None and cookie else "",
            "here": here,
            "areas": [a for a in AREAS if principal is not None and principal.role in a.roles],
            # The app is the staff's: patients reach their own record through the patient apps.
            "may_search": principal is not None and principal.role not in PATIENT_ROLES
            and may(principal, "s", "Patient"),
            "main_search": False,
            "active": "",
        }

    def render(self, request: Request, template: str, *, status: int = 200,
               headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
        lang = self.language(request)
        html = self.environments[lang].get_template(template).render({**self.context(request), **context})
        return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})

    def error(self, request: Request, status: int) -> HTMLResponse:
        """The page of a refusal or failure, in the request's language; nothing of the cause leaks into it."""
        title, text = ERRORS.get(status, ERRORS[500] if status >= 500 else ERRORS[400])
        return self.render(request, "error.html", status=status, code=status, title=title, text=text)


__all__ = ["AREAS", "ERRORS", "Area", "register_area", "PAGE_HEADERS", "Pages", "ROLE_LABELS", "SIGN_IN_HEADERS", "may"]
