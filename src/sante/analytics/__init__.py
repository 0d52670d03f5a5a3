"""SQL on FHIR v2 analytics: ViewDefinitions flattened to rows by interchangeable engines.

`run_view(view, resources, engine="memory")` runs a ViewDefinition (a dict or a parsed `View`) over resource
dicts or NDJSON / Bundle files; `parse_view` validates a definition (see `viewdef`).
"""

from __future__ import annotations

from sante.analytics.viewdef import Column, Select, View, ViewDefinitionError, fhirpath_literal, parse_view
from sante.analytics.views import run_view

__all__ = ["Column", "Select", "View", "ViewDefinitionError", "fhirpath_literal", "parse_view", "run_view"]
