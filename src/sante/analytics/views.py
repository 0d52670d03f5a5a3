"""`run_view()`: one entry point that runs a ViewDefinition on the engine asked for.

The memory engine (the reference) reads resource dicts; the SQL engines (`duckdb_engine`, `spark_engine`) are
imported only when asked for and get file paths unchanged, since they read NDJSON natively.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from sante.analytics import memory, sources
from sante.analytics.viewdef import View, parse_view

ENGINES: dict[str, str] = {
    "memory": "sante.analytics.memory",
    "duckdb": "sante.analytics.duckdb_engine",
    "spark": "sante.analytics.spark_engine",
}


def run_view(view: dict[str, Any] | View, resources: sources.Source | Iterable[dict[str, Any]],
             engine: str = "memory") -> list[dict[str, Any]]:
    """The rows of `view` over `resources` (resource dicts, or paths to NDJSON/JSON files and directories).

    Raises ViewDefinitionError for an invalid view, SourceError for unreadable input, ValueError for an unknown
    engine; the engine's own error for a view that fails on the data.
    """
    parsed = view if isinstance(view, View) else parse_view(view)
    module = engine_module(engine)
    if module is memory:
        return memory.run(parsed, sources.iter_resources(resources))
    return module.run(parsed, resources)


def engine_module(engine: str) -> Any:
    """The module implementing `engine` (imported on first use)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    return importlib.import_module(ENGINES[engine])
