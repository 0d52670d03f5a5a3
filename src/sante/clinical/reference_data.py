"""Reading the reference data files packaged under `sante/clinical/data/` (plain or gzip-compressed)."""

from __future__ import annotations

import csv
import gzip
import io
from importlib import resources


def read_bytes(name: str) -> bytes:
    """The contents of data file `name` (a path under data/, '/'-separated); `.gz` files are decompressed."""
    data = resources.files("sante.clinical").joinpath("data", *name.split("/")).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


def read_text(name: str) -> str:
    """Data file `name` as UTF-8 text (a leading BOM is dropped)."""
    return read_bytes(name).decode("utf-8-sig")


def read_csv(name: str, delimiter: str = ",") -> list[dict[str, str]]:
    """Rows of a CSV/TSV data file with a header line, as dicts."""
    return list(csv.DictReader(io.StringIO(read_text(name)), delimiter=delimiter))
