"""Fixtures of the analytics tests: one SparkSession for the whole run (Spark starts in seconds, not per test)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """A local SparkSession (2 cores) shared by every Spark test; the Spark engine finds it as the active one."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Python UDF workers must import sante (this venv)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("sante-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()
