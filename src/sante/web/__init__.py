"""The clinician web app: server-rendered pages (Jinja2 + htmx) on the same server as the FHIR API, signed in with
the sign-in session, reaching data only through the guarded repository, in Vietnamese, English and French."""

from sante.web.site import WebApp

__all__ = ["WebApp"]
