"""The outbreak detectors on Spark: `detect_spark` runs any method on every series of a long DataFrame of counts.

For the national tier (every disease × commune series of the country): the counts arrive as a Spark DataFrame
with one row per series and week (rows may be missing: a missing week counts 0 cases), the result is a Spark
DataFrame with one row per series × monitored week.

    from sante.analytics.surveillance.spark import detect_spark
    alarms = detect_spark(counts, "recommended", key_columns=("disease", "place"), time_column="week_start")

How: one validating aggregation pass gives the common weekly calendar (the first to the last week of the whole
DataFrame); each row gets its 0-based week on that calendar and a bucket (a hash of its series key); Spark groups
the rows by bucket and sends each bucket to Python as one pandas DataFrame (`applyInPandas`, Arrow), where the
bucket's series are laid out as a dense series × weeks array (missing weeks 0, duplicate rows added up) and handed
to the library's own `detect_many`, so the numpy vectorisation is kept and no detector logic is repeated here.
Results are those of `detect_many` on the same dense series: `range` is 1-based on the common calendar.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sante.analytics.surveillance import inputs
from sante.analytics.surveillance.api import METHODS, detect_many
from sante.analytics.surveillance.errors import SurveillanceInputError

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame

SERIES_PER_BUCKET = 1000  # series × ~500 weeks per pandas DataFrame: large enough for numpy, small for memory
REASONS = ("all", "alarms", "none")
RESULT_COLUMNS = ("t", "observed", "expected", "upperbound", "alarm", "reason")
_WEEK = "_sante_week"  # 0-based week on the common calendar
_BUCKET = "_sante_bucket"
_CASES = "_sante_cases"
_EPOCH = datetime.date(1970, 1, 1)


@dataclass(frozen=True)
class Calendar:
    """The common calendar of all series: `origin` is the first time point (a day number for dates, year·freq +
    week − 1 for (year, week) pairs), `step` the time point's width in those units (7 days or 1) and `length` the
    number of time points up to the last one in the data."""

    origin: int
    step: int
    length: int


def detect_spark(
    counts: DataFrame,
    method: str = "recommended",
    *,
    key_columns: Sequence[str] = ("disease", "place"),
    time_column: str | Sequence[str] = "week_start",
    count_column: str = "cases",
    freq: int = 52,
    range: Sequence[int] | None = None,  # R's name for the monitored time points, 1-based on the common calendar
    reasons: str = "all",
    buckets: int | None = None,
    **control: Any,
) -> DataFrame:
    """Run `method` on every series (one per distinct `key_columns`) of the long DataFrame `counts`.

    `time_column` is a date column (weekly counts, all dates on the same weekday, freq 52) or a pair of integer
    columns (year, week) with week in 1..freq.  Returns one row per series × monitored time point: the key
    columns, the time column(s), `t` (1-based on the common calendar), `observed`, `expected`, `upperbound`
    (null where `detect` gives None), `alarm` and `reason`.  `reasons="alarms"` gives the reason of alarm rows
    only (null elsewhere) and `"none"` none: the reasons are most of the cost on a national run.  `buckets`
    (default: one per ~1,000 series) sets how many `detect_many` calls share the work.  Bad input raises
    `SurveillanceInputError` (a ValueError) naming the column or parameter.
    """
    from pyspark.sql import DataFrame as SparkDataFrame

    if not isinstance(counts, SparkDataFrame):
        raise SurveillanceInputError("counts", f"must be a pyspark.sql.DataFrame, got {type(counts).__name__}")
    keys = _key_columns(key_columns)
    times = _time_columns(time_column)
    for key in keys:
        if key in (*times, *RESULT_COLUMNS):
            raise SurveillanceInputError(key, f"key column {key!r} is also a time or result column")
    _check_columns(counts, [*keys, *times, count_column])
    freq = inputs.positive_int(freq, "freq", minimum=1)
    inputs.choice(reasons, "reasons", REASONS)
    if method not in METHODS:
        raise SurveillanceInputError("method", f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if len(times) == 1 and freq != 52:
        raise SurveillanceInputError(
            "freq", f"a date time column means weekly counts (freq 52), got {freq}; use (year, period) columns"
        )
    week = _week_expression(counts, times, freq)
    calendar, series = _validate_and_measure(counts, keys, times, count_column, week, freq)
    monitored = _monitored_range(method, range, calendar.length, freq, control)
    n_buckets = _bucket_count(buckets, series)
    f = _functions()
    prepared = counts.select(
        *keys,
        ((week - calendar.origin) / calendar.step).cast("int").alias(_WEEK),
        f.col(count_column).cast("double").alias(_CASES),
        f.pmod(f.hash(*[f.col(k) for k in keys]), f.lit(n_buckets)).alias(_BUCKET),
    )
    run = _bucket_runner(keys=keys, method=method, freq=freq, monitored=monitored, n_time=calendar.length,
                         reasons=reasons, control=control)
    result = prepared.groupBy(_BUCKET).applyInPandas(run, schema=_result_schema(counts, keys))
    return result.select(*keys, *_time_output(times, calendar, freq), *RESULT_COLUMNS)


def _functions() -> Any:
    """pyspark.sql.functions, imported lazily: pyspark is an optional dependency of Sante."""
    from pyspark.sql import functions

    return functions


def _key_columns(key_columns: Sequence[str]) -> list[str]:
    keys = [key_columns] if isinstance(key_columns, str) else list(key_columns)
    if not keys or not all(isinstance(k, str) for k in keys):
        raise SurveillanceInputError("key_columns", f"must be one or more column names, got {key_columns!r}")
    return keys


def _time_columns(time_column: str | Sequence[str]) -> list[str]:
    times = [time_column] if isinstance(time_column, str) else list(time_column)
    if len(times) not in (1, 2) or not all(isinstance(c, str) for c in times):
        raise SurveillanceInputError(
            "time_column", f"must be a date column or a pair (year, week) of column names, got {time_column!r}"
        )
    return times


def _check_columns(counts: DataFrame, columns: list[str]) -> None:
    present = set(counts.columns)
    for column in columns:
        if column not in present:
            raise SurveillanceInputError(
                column, f"column {column!r} is missing from the counts; columns are {', '.join(counts.columns)}"
            )


def _week_expression(counts: DataFrame, times: list[str], freq: int) -> Column:
    """The time point of each row as an integer: a day number (dates) or year·freq + week − 1 (pairs)."""
    from pyspark.sql import types as T

    kinds = {field.name: field.dataType for field in counts.schema.fields}
    if len(times) == 1:
        if not isinstance(kinds[times[0]], T.DateType | T.TimestampType | T.TimestampNTZType):
            raise SurveillanceInputError(times[0], f"must be a date column, got {kinds[times[0]].simpleString()}")
        return _functions().unix_date(_functions().to_date(times[0]))
    for column in times:
        if not isinstance(kinds[column], T.IntegralType):
            raise SurveillanceInputError(column, f"must be an integer column, got {kinds[column].simpleString()}")
    year, week = (_functions().col(c).cast("long") for c in times)
    return year * freq + week - 1


def _validate_and_measure(
    counts: DataFrame, keys: list[str], times: list[str], count_column: str, week: Column, freq: int
) -> tuple[Calendar, int]:
    """One pass over the data: every check of the rows, the common calendar and the approximate series count."""
    from pyspark.sql import types as T

    kind = counts.schema[count_column].dataType
    if not isinstance(kind, T.NumericType):
        raise SurveillanceInputError(count_column, f"must be a numeric column of counts, got {kind.simpleString()}")
    f = _functions()
    cases = f.col(count_column)

    def rows_where(condition: Column) -> Column:
        return f.sum(f.when(condition, 1).otherwise(0))

    columns = [*keys, *times, count_column]
    checks = {f"null_{i}": (c, rows_where(f.col(c).isNull())) for i, c in enumerate(columns)}
    bad = cases < 0
    if isinstance(kind, T.FractionalType):
        bad = bad | (f.isnan(cases) if isinstance(kind, T.FloatType | T.DoubleType) else f.lit(False))
        bad = bad | (cases != f.floor(cases))
    checks["bad_cases"] = (count_column, rows_where(bad))
    if len(times) == 2:
        checks["bad_week"] = (times[1], rows_where((f.col(times[1]) < 1) | (f.col(times[1]) > freq)))
    stats = counts.agg(
        f.count(f.lit(1)).alias("rows"),
        f.min(week).alias("first"),
        f.max(week).alias("last"),
        f.min(f.pmod(week, f.lit(7))).alias("first_weekday"),
        f.max(f.pmod(week, f.lit(7))).alias("last_weekday"),
        f.approx_count_distinct(f.hash(*[f.col(k) for k in keys])).alias("series"),
        *[check.alias(name) for name, (_, check) in checks.items()],
    ).first()
    if stats["rows"] == 0:
        raise SurveillanceInputError("counts", "the DataFrame has no rows")
    messages = {"bad_cases": "contains negative, NaN or non-integer counts",
                "bad_week": f"contains weeks outside 1..{freq}"}
    for name, (column, _) in checks.items():
        if stats[name]:
            message = messages.get(name, "contains nulls")
            raise SurveillanceInputError(column, f"{message} ({stats[name]} rows)")
    if len(times) == 1:
        if stats["first_weekday"] != stats["last_weekday"]:
            raise SurveillanceInputError(
                times[0], "dates fall on different weekdays: give one date per week, always the same weekday"
            )
        return Calendar(stats["first"], 7, (stats["last"] - stats["first"]) // 7 + 1), stats["series"]
    return Calendar(stats["first"], 1, stats["last"] - stats["first"] + 1), stats["series"]


def _monitored_range(
    method: str, range_: Sequence[int] | None, n_time: int, freq: int, control: dict[str, Any]
) -> tuple[int, int]:
    """The monitored (first, last) on the common calendar, resolved by the library itself on one all-zero series of
    the calendar's length: a bad method, range or control option fails here, not inside a Spark task."""
    probe = detect_many(np.zeros((1, n_time)), method, freq=freq, range=range_, **control)
    return int(probe.t[0]), int(probe.t[-1])


def _bucket_count(buckets: int | None, series: int) -> int:
    if buckets is not None:
        return inputs.positive_int(buckets, "buckets")
    return max(1, math.ceil(series / SERIES_PER_BUCKET))


def _result_schema(counts: DataFrame, keys: list[str]) -> Any:
    from pyspark.sql import types as T

    return T.StructType(
        [counts.schema[k] for k in keys]
        + [
            T.StructField("t", T.IntegerType(), False),
            T.StructField("observed", T.DoubleType(), False),
            T.StructField("expected", T.DoubleType(), True),
            T.StructField("upperbound", T.DoubleType(), True),
            T.StructField("alarm", T.BooleanType(), False),
            T.StructField("reason", T.StringType(), True),
        ]
    )


def _time_output(times: list[str], calendar: Calendar, freq: int) -> list[Column]:
    """The time column(s) of each result row from its 1-based `t` on the common calendar."""
    f = _functions()
    point = f.col("t") - 1
    if len(times) == 1:
        first = _EPOCH + datetime.timedelta(days=calendar.origin)
        return [f.date_add(f.lit(first), point * 7).alias(times[0])]
    absolute = point + calendar.origin
    return [f.floor(absolute / freq).cast("int").alias(times[0]), (f.pmod(absolute, f.lit(freq)) + 1).alias(times[1])]


def dense_counts(part: pd.DataFrame, keys: list[str], n_time: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The distinct series keys of a bucket (sorted) and their counts as a series × weeks array: missing weeks 0,
    several rows for the same series and week added up."""
    grouped = part.groupby(keys, sort=True)
    codes = grouped.ngroup().to_numpy()
    series = grouped.size().index.to_frame(index=False)
    matrix = np.zeros((len(series), n_time))
    np.add.at(matrix, (codes, part[_WEEK].to_numpy()), part[_CASES].to_numpy())
    return series, matrix


def _bucket_runner(**settings: Any) -> Callable[[Any], Any]:
    """The function applied to each bucket (pickled to the Python workers)."""

    def run(part):  # type: ignore[no-untyped-def]  # no hints: pyspark would try to infer the UDF kind from them
        return _detect_bucket(part, **settings)

    return run


def _detect_bucket(
    part: pd.DataFrame,
    *,
    keys: list[str],
    method: str,
    freq: int,
    monitored: tuple[int, int],
    n_time: int,
    reasons: str,
    control: dict[str, Any],
) -> pd.DataFrame:
    """One bucket (runs in a Spark Python worker): all its series through `detect_many` at once."""
    import pandas as pd

    series, matrix = dense_counts(part, keys, n_time)
    result = detect_many(matrix, method, freq=freq, range=monitored, **control)
    n_series, n_points = result.alarm.shape
    rows = series.loc[np.repeat(np.arange(n_series), n_points)].reset_index(drop=True)
    rows["t"] = np.tile(result.t.astype(np.int32), n_series)
    rows["observed"] = result.observed.ravel().astype(float)
    rows["expected"] = result.expected.ravel().astype(float)
    rows["upperbound"] = result.upperbound.ravel().astype(float)
    rows["alarm"] = result.alarm.ravel().astype(bool)
    rows["reason"] = pd.Series(list(_reasons(result, reasons)), dtype=object)
    return rows


def _reasons(result: Any, which: str) -> Iterator[str | None]:
    n_series, n_points = result.alarm.shape
    for s in np.arange(n_series):
        for j in np.arange(n_points):
            if which == "all" or (which == "alarms" and result.alarm[s, j]):
                yield result.explain(int(s), int(j))
            else:
                yield None
