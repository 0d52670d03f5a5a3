"""`detect_spark` on real series: every row equals what `detect` gives in Python on the same series laid on the
common calendar (missing weeks 0), for weekly dates and (year, week) pairs, several diseases × places with
different starts and lengths, gaps and duplicate rows; bad input fails on the driver with a ValueError naming the
column.  Data: the shared RKI/HPA series (../shared/data/surveillance); Spark: the conftest `spark` (local[2])."""

from __future__ import annotations

import csv
import datetime
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sante.analytics.surveillance import SurveillanceInputError, detect, detect_many
from sante.analytics.surveillance.spark import detect_spark

pytest.importorskip("pyspark")
pytest.importorskip("pandas")  # applyInPandas needs it

Row = dict[str, Any]


@pytest.fixture(scope="module")
def data(shared_dir: Path) -> dict[str, list[Row]]:
    """The shared data sets this module uses, as lists of rows (disease, place, week_start, year, week, cases)."""
    sets = {}
    for name in ("salmNewport", "salmHospitalized", "stsNewport", "ha.sts", "measlesDE", "rotaBB"):
        with (shared_dir / "data" / "surveillance" / f"{name}.csv").open(encoding="utf-8") as handle:
            sets[name] = [
                {
                    "disease": row["dataset"],
                    "place": row["unit"],
                    "week_start": datetime.date.fromisoformat(row["date"]) if row["date"] else None,
                    "year": int(row["year"]),
                    "week": int(row["epoch_in_year"]),
                    "cases": int(row["observed"]),
                }
                for row in csv.DictReader(handle)
            ]
    return sets


def frame(spark: Any, rows: list[Row], columns: tuple[str, ...]) -> Any:
    from pyspark.sql import types as T

    kinds = {"disease": T.StringType(), "place": T.StringType(), "week_start": T.DateType(),
             "year": T.IntegerType(), "week": T.IntegerType(), "cases": T.LongType()}
    schema = T.StructType([T.StructField(c, kinds[c], True) for c in columns])
    return spark.createDataFrame([tuple(row[c] for c in columns) for row in rows], schema)


def python_reference(rows: list[Row], time_of: Any, method: str, freq: int = 52, **options: Any) -> dict[Any, list]:
    """`detect` on each series laid on the common calendar (first to last time point of all rows, missing 0)."""
    points = {time_of(row) for row in rows}
    first, last = min(points), max(points)
    series: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        counts = series.setdefault((row["disease"], row["place"]), [0.0] * (last - first + 1))
        counts[time_of(row) - first] += row["cases"]
    return {key: detect(counts, method, freq=freq, **options) for key, counts in series.items()}


def spark_results(result: Any) -> dict[Any, list[Row]]:
    grouped: dict[Any, list[Row]] = {}
    for row in result.collect():
        grouped.setdefault((row["disease"], row["place"]), []).append(row.asDict())
    return {key: sorted(rows, key=lambda r: r["t"]) for key, rows in grouped.items()}


def assert_same(got: dict[Any, list[Row]], expected: dict[Any, list[Row]], rel: float = 1e-12) -> None:
    """Same series, time points, counts, alarms and reasons; expected and upper bounds equal within `rel` (the
    library's Farrington differs by ~1e-15 between a series run alone and in a batch; 0 for exact equality)."""
    assert sorted(got) == sorted(expected)
    for key, reference in expected.items():
        assert len(got[key]) == len(reference), key
        for mine, theirs in zip(got[key], reference, strict=True):
            exact = ("t", "observed", "alarm", "reason")
            assert {f: mine[f] for f in exact} == {f: theirs[f] for f in exact}, (key, theirs["t"])
            for f in ("expected", "upperbound"):
                assert (mine[f] is None) == (theirs[f] is None), (key, theirs["t"], f)
                if theirs[f] is not None:
                    assert mine[f] == pytest.approx(theirs[f], rel=rel, abs=rel), (key, theirs["t"], f)


def day_week(origin: datetime.date) -> Any:
    return lambda row: (row["week_start"] - origin).days // 7


def pair_week(freq: int) -> Any:
    return lambda row: row["year"] * freq + row["week"] - 1


def test_salm_newport_all_units_equal_detect(spark: Any, data: dict[str, list[Row]]) -> None:
    rows = data["salmNewport"]
    result = detect_spark(frame(spark, rows, ("disease", "place", "week_start", "cases")), "recommended")
    got = spark_results(result)
    expected = python_reference(rows, day_week(datetime.date(2004, 1, 5)), "recommended")
    assert len(expected) == 16
    assert_same(got, expected)
    dates = {(r["place"], r["week_start"]) for r in rows}
    assert all((key[1], row["week_start"]) in dates for key, series in got.items() for row in series)
    assert any(row["alarm"] for series in got.values() for row in series), "no alarm: a weak comparison"


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("recommended", {}),
        ("farrington", {"b": 3}),
        ("farrington_flexible", {"b": 3, "threshold_method": "nbPlugin"}),
        ("ears_c3", {"r_compatible": True}),  # R's NA bounds: null in Spark, None in Python
        ("cusum", {"trans": "rossi"}),
        ("glm_nb", {"range": (250, 290)}),
    ],
)
def test_ha_sts_year_week_pairs_equal_detect(
    spark: Any, data: dict[str, list[Row]], method: str, options: dict[str, Any]
) -> None:
    rows = data["ha.sts"]
    counts = frame(spark, rows, ("disease", "place", "year", "week", "cases"))
    result = detect_spark(counts, method, time_column=("year", "week"), buckets=1, **options)
    got = spark_results(result)
    expected = python_reference(rows, pair_week(52), method, start=(2001, 1), **options)
    assert len(expected) == 12
    assert_same(got, expected)
    # One bucket holds every series, sorted by key: `detect_many` on the stacked array (floats within 1e-12 still:
    # Spark's Python workers run BLAS on one thread, OMP_NUM_THREADS=1, which changes glm_nb's last bits).
    places = sorted(key[1] for key in expected)
    stacked = np.array([[r["cases"] for r in rows if r["place"] == place] for place in places], dtype=float)
    batch = detect_many(stacked, method, **options)
    for i, place in enumerate(places):
        series = got[("ha.sts", place)]
        for field in ("expected", "upperbound"):
            values = [np.nan if r[field] is None else r[field] for r in series]
            np.testing.assert_allclose(values, getattr(batch, field)[i], rtol=1e-12, atol=1e-12)
        assert [r["alarm"] for r in series] == batch.alarm[i].tolist()
        assert [r["reason"] for r in series] == [batch.explain(i, j) for j in range(batch.t.size)]
    for key, series in got.items():
        assert [(r["year"], r["week"]) for r in series] == [(r["year"], r["week"]) for r in expected[key]]
    if method == "ears_c3":
        assert any(r["upperbound"] is None for s in got.values() for r in s), "no NA bound: null untested"


def test_diseases_with_different_starts_and_lengths_share_one_calendar(
    spark: Any, data: dict[str, list[Row]]
) -> None:
    # stsNewport 2001-01-01..2015-10-19, salmNewport (16 states) 2004-01-05..2014-02-10, salmHospitalized to 02-24.
    rows = data["stsNewport"] + data["salmNewport"] + data["salmHospitalized"]
    result = detect_spark(frame(spark, rows, ("disease", "place", "week_start", "cases")), "farrington_flexible",
                          range=(700, 773))
    expected = python_reference(rows, day_week(datetime.date(2001, 1, 1)), "farrington_flexible", range=(700, 773))
    got = spark_results(result)
    assert len(expected) == 18
    assert_same(got, expected)
    assert {r["week_start"] for s in got.values() for r in s} == {
        datetime.date(2001, 1, 1) + datetime.timedelta(weeks=t - 1) for t in range(700, 774)
    }


def test_gaps_and_duplicate_rows_mean_zero_weeks_and_sums(spark: Any, data: dict[str, list[Row]]) -> None:
    # ha.sts (2001w1..2006w30) and measlesDE (2005w1..2007w52) in (year, week): a 364-week common calendar.
    rng = random.Random(6)
    rows = [r for r in data["ha.sts"] + data["measlesDE"] if r["cases"] > 0 and rng.random() > 0.05]
    split = [dict(r, cases=part) for r in rows[:40] for part in (1, r["cases"] - 1)]  # duplicates that add up
    sparse = split + rows[40:]
    assert len(rows) < 0.8 * (len(data["ha.sts"]) + len(data["measlesDE"]))  # most weeks are missing
    result = detect_spark(frame(spark, sparse, ("disease", "place", "year", "week", "cases")), "recommended",
                          time_column=("year", "week"), buckets=3)
    expected = python_reference(rows, pair_week(52), "recommended")
    got = spark_results(result)
    assert len(expected) == 27  # 12 + 16 places, less Saarland: no measles case in 2005-2007, hence no row at all
    assert_same(got, expected)
    last = max((r["year"], r["week"]) for r in rows)
    assert max((r["year"], r["week"]) for s in got.values() for r in s) == last
    first = min((r["year"], r["week"]) for r in rows)  # t counts from the first week of any row (here 2001w3)
    assert max(r["t"] for s in got.values() for r in s) == (last[0] - first[0]) * 52 + last[1] - first[1] + 1


def test_monthly_series_and_reasons_for_alarms_only(spark: Any, data: dict[str, list[Row]]) -> None:
    rows = data["rotaBB"]
    counts = frame(spark, rows, ("disease", "place", "year", "week", "cases"))
    result = detect_spark(counts, "farrington", time_column=("year", "week"), freq=12, reasons="alarms")
    expected = python_reference(rows, pair_week(12), "farrington", freq=12, start=(2002, 1))
    got = spark_results(result)
    for series in expected.values():
        for row in series:
            row["reason"] = row["reason"] if row["alarm"] else None
    assert_same(got, expected)
    assert any(r["alarm"] for s in got.values() for r in s)


def test_column_names_are_configurable(spark: Any, data: dict[str, list[Row]]) -> None:
    rows = data["salmHospitalized"]
    counts = frame(spark, rows, ("disease", "place", "week_start", "cases")).toDF("dx", "area", "monday", "n")
    result = detect_spark(counts, "ears_c1", key_columns=["dx", "area"], time_column="monday", count_column="n",
                          reasons="none")
    assert result.columns == ["dx", "area", "monday", "t", "observed", "expected", "upperbound", "alarm", "reason"]
    reference = detect([r["cases"] for r in rows], "ears_c1")
    got = sorted(result.collect(), key=lambda r: r["t"])
    assert [(r["t"], r["upperbound"], r["alarm"], r["reason"]) for r in got] == [
        (r["t"], r["upperbound"], r["alarm"], None) for r in reference
    ]


def small(spark: Any, **changes: Any) -> Any:
    """Three years of one weekly series, with `changes` applied to its first row."""
    monday = datetime.date(2020, 1, 6)
    rows = [{"disease": "d", "place": "p", "week_start": monday + datetime.timedelta(weeks=i), "cases": i % 3}
            for i in range(156)]
    rows[0].update(changes)
    return frame(spark, rows, ("disease", "place", "week_start", "cases"))


@pytest.mark.parametrize(
    ("call", "column", "message"),
    [
        (lambda df: detect_spark(df, count_column="n"), "n", "missing"),
        (lambda df: detect_spark(df, key_columns=("disease", "commune")), "commune", "missing"),
        (lambda df: detect_spark(df.withColumn("week_start", df["week_start"].cast("string"))), "week_start",
         "date"),
        (lambda df: detect_spark(df.withColumn("cases", df["cases"].cast("string"))), "cases", "numeric"),
        (lambda df: detect_spark(df, key_columns=("disease", "week_start")), "week_start", "also a time"),
        (lambda df: detect_spark(df, "loess"), "method", "unknown method"),
        (lambda df: detect_spark(df, "ears_c1", alpha=2.0), "alpha", "between 0 and 1"),
        (lambda df: detect_spark(df, "ears_c1", smoothing=1), "smoothing", "unknown control option"),
        (lambda df: detect_spark(df, "recommended"), "observed", "too few"),
        (lambda df: detect_spark(df, "ears_c1", range=(1, 200)), "range", "1 <= first"),
        (lambda df: detect_spark(df, "ears_c1", time_column=("year", "week")), "year", "missing"),
    ],
)
def test_bad_arguments_name_the_column(spark: Any, call: Any, column: str, message: str) -> None:
    with pytest.raises(SurveillanceInputError, match=message) as raised:
        call(small(spark))
    assert raised.value.parameter == column
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("changes", "column", "message"),
    [
        ({"cases": -2}, "cases", "negative"),
        ({"cases": None}, "cases", "nulls"),
        ({"place": None}, "place", "nulls"),
        ({"week_start": datetime.date(2019, 12, 31)}, "week_start", "weekdays"),
    ],
)
def test_bad_rows_name_the_column(spark: Any, changes: Row, column: str, message: str) -> None:
    with pytest.raises(SurveillanceInputError, match=message) as raised:
        detect_spark(small(spark, **changes), "ears_c1")
    assert raised.value.parameter == column


def test_fractional_counts_and_weeks_outside_the_year_are_refused(spark: Any) -> None:
    df = small(spark)
    with pytest.raises(SurveillanceInputError, match="non-integer") as raised:
        detect_spark(df.withColumn("cases", df["cases"] + 0.5), "ears_c1")
    assert raised.value.parameter == "cases"
    pairs = spark.createDataFrame([("d", "p", 2020, w, 1) for w in (1, 2, 53)], "disease string, place string, "
                                  "year int, week int, cases int")
    with pytest.raises(SurveillanceInputError, match=r"outside 1\.\.52") as raised:
        detect_spark(pairs, "ears_c1", time_column=("year", "week"))
    assert raised.value.parameter == "week"
    with pytest.raises(SurveillanceInputError, match="no rows"):
        detect_spark(pairs.limit(0), "ears_c1", time_column=("year", "week"))
