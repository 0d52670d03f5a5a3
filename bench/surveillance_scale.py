"""Scale: the recommended detector on every disease × commune series of Viet Nam for five years of weeks.

3,321 communes (the 2025 reform, from shared/data/vn-admin when present) × 12 notifiable diseases × 260
monitored weeks ≈ 10.4 million series-weeks, each series with five earlier years of baseline.  Counts are
synthetic negative-binomial series with commune-specific levels, seasonality and trend (cached under
bench/.cache/).  The baseline measured in the same run is Sante's farrington_flexible (R-exact) on a 1 %
sample of the series, extrapolated.  Goal: all series-weeks in under 60 s.

    .venv/bin/python bench/surveillance_scale.py [--diseases 12] [--communes 3321] [--engine numpy|spark]

`--engine spark` runs the same counts through `sante.analytics.surveillance.spark.detect_spark` on a local
SparkSession (all cores): long format (disease, place, week_start, cases) in Parquet without the zero weeks, read,
validated, bucketed and detected, the result aggregated (alarm count) so that every row is computed.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from sante.analytics.surveillance import detect_many

FREQ = 52
YEARS_MONITORED = 5
HISTORY_YEARS = 5
CACHE = Path(__file__).parent / ".cache"
VN_ADMIN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "vn-admin"
GOAL_SECONDS = 60.0
FIRST_MONITORED = HISTORY_YEARS * FREQ + 3 + 2  # five years and the reference window's 3 weeks, plus t-1


def commune_count() -> int:
    """Number of communes in the shared reference data (3,321), or 3,321 when the data is absent."""
    path = VN_ADMIN / "communes_2025.csv"
    if not path.exists():
        return 3321
    with path.open(encoding="utf-8") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def synthetic_counts(series: int, seed: int) -> np.ndarray:
    """NB counts (series × weeks) with random level, annual seasonality and trend per series."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"scale-{series}-{seed}-{FIRST_MONITORED}.npy"
    if path.exists():
        return np.load(path)
    rng = np.random.default_rng(seed)
    weeks = FIRST_MONITORED - 1 + YEARS_MONITORED * FREQ
    t = np.arange(weeks)
    level = rng.uniform(-2.0, 2.5, (series, 1))
    season = rng.uniform(0, 0.8, (series, 1)) * np.cos(2 * np.pi * t / FREQ + rng.uniform(0, 2 * np.pi, (series, 1)))
    trend = rng.uniform(-0.002, 0.002, (series, 1)) * t
    mu = np.exp(level + season + trend)
    size = 2.0
    counts = rng.negative_binomial(size, size / (size + mu)).astype(np.float32)
    np.save(path, counts)
    return counts


def long_parquet(counts: np.ndarray, communes: int, seed: int) -> Path:
    """The counts in long format (disease, place, week_start, cases), zero weeks left out, as cached Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = CACHE / f"scale-long-{counts.shape[0]}-{seed}-{FIRST_MONITORED}.parquet"
    if path.exists():
        return path
    series, week = np.nonzero(counts)
    diseases = [f"D{d:02d}" for d in range(counts.shape[0] // communes)]
    table = pa.table(
        {
            "disease": pa.DictionaryArray.from_arrays(
                pa.array(series // communes, pa.int32()), pa.array(diseases)
            ).cast(pa.string()),
            "place": pa.DictionaryArray.from_arrays(
                pa.array(series % communes, pa.int32()), pa.array([f"C{c:05d}" for c in range(communes)])
            ).cast(pa.string()),
            "week_start": pa.array(week.astype("timedelta64[W]") + np.datetime64("2015-01-05", "D")).cast(pa.date32()),
            "cases": pa.array(counts[series, week].astype(np.int64)),
        }
    )
    pq.write_table(table, path)
    return path


def run_spark(counts: np.ndarray, communes: int, seed: int, monitored: tuple[int, int], reasons: str) -> int:
    """detect_spark on the long Parquet in local mode: prints series-weeks/s; exit code 0 when under the goal."""
    import os

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from sante.analytics.surveillance.spark import detect_spark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers import sante from this environment
    path = long_parquet(counts, communes, seed)
    spark = (
        SparkSession.builder.master("local[*]").appName("surveillance-scale")
        .config("spark.ui.enabled", "false").config("spark.driver.memory", "4g")
        .config("spark.sql.shuffle.partitions", str(2 * os.cpu_count())).getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    series, cells = counts.shape[0], counts.shape[0] * (monitored[1] - monitored[0] + 1)
    rows = spark.read.parquet(str(path))
    started = time.perf_counter()
    result = detect_spark(rows, "recommended", range=monitored, reasons=reasons)
    totals = result.agg(F.count(F.lit(1)).alias("rows"), F.sum(F.col("alarm").cast("int")).alias("alarms")).first()
    elapsed = time.perf_counter() - started
    spark.stop()
    print(f"{communes} communes × {series // communes} diseases = {series:,} series, {cells / series:.0f} weeks "
          f"each; {counts.astype(bool).sum():,} non-zero rows in, reasons: {reasons}, {os.cpu_count()} cores")
    print(f"recommended on Spark (local): {totals['rows']:,} series-weeks in {elapsed:.1f} s = "
          f"{cells / elapsed:,.0f} series-weeks/s; alarm rate {100 * totals['alarms'] / totals['rows']:.2f}%")
    ok = elapsed < GOAL_SECONDS and totals["rows"] == cells
    print(f"surveillance_scale (spark): {cells / 1e6:.1f}M series-weeks in {elapsed:.0f} s "
          f"(goal < {GOAL_SECONDS:.0f} s): {'ok' if ok else 'short'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diseases", type=int, default=12)
    parser.add_argument("--communes", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine", choices=("numpy", "spark"), default="numpy")
    parser.add_argument("--reasons", choices=("all", "alarms", "none"), default="alarms",
                        help="spark only: which rows get a reason sentence (numpy computes them on demand)")
    args = parser.parse_args()
    communes = args.communes or commune_count()
    series = communes * args.diseases
    counts = synthetic_counts(series, args.seed)
    monitored = (FIRST_MONITORED, counts.shape[1])
    if args.engine == "spark":
        return run_spark(counts, communes, args.seed, monitored, args.reasons)
    cells = series * (monitored[1] - monitored[0] + 1)
    started = time.perf_counter()
    result = detect_many(counts, "recommended", range=monitored)
    elapsed = time.perf_counter() - started
    print(f"{communes} communes × {args.diseases} diseases = {series:,} series, {cells / series:.0f} weeks each")
    print(
        f"recommended: {cells:,} series-weeks in {elapsed:.1f} s = {cells / elapsed:,.0f} series-weeks/s; "
        f"alarm rate {100 * result.alarm.mean():.2f}%"
    )
    sample = counts[::100]
    begun = time.perf_counter()
    detect_many(sample, "farrington_flexible", range=monitored)
    baseline = (time.perf_counter() - begun) * series / sample.shape[0]
    print(
        f"baseline farrington_flexible on {sample.shape[0]} series: extrapolated {baseline:.0f} s for all "
        f"({cells / baseline:,.0f} series-weeks/s)"
    )
    ok = elapsed < GOAL_SECONDS
    print(
        f"surveillance_scale: {cells / 1e6:.1f}M series-weeks in {elapsed:.0f} s (goal < {GOAL_SECONDS:.0f} s): "
        f"{'ok' if ok else 'short'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
