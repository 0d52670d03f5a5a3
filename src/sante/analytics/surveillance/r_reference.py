"""Runs R's `surveillance` package as the reference for comparisons (tests and bench/surveillance_r.py).

One `Rscript` process per batch: each job's series are written to a temporary CSV (one row per series), R runs
the job's detector with the given control list on an `sts` object (start 2001/1, the job's frequency), and the
upper bounds, alarms and, for farringtonFlexible, expected counts come back as CSV.  R is only an oracle here:
nothing in Sante's detectors depends on it.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

R_PROGRAM = r"""
suppressPackageStartupMessages(library(surveillance))
jobs <- read.csv(commandArgs(TRUE)[1], stringsAsFactors=FALSE)
for (i in seq_len(nrow(jobs))) {
  job <- jobs[i, ]
  counts <- as.matrix(read.csv(job$input, header=FALSE))
  range <- job$first:job$last
  control <- modifyList(eval(parse(text=job$control)), list(range=range))
  rows <- lapply(seq_len(nrow(counts)), function(s) {
    x <- sts(observed=matrix(counts[s, ], ncol=1), frequency=job$freq, start=c(2001, 1))
    r <- suppressWarnings(switch(job$fun,
      earsC=earsC(x, control=control), cusum=cusum(x, control=control),
      farrington=farrington(x, control=control), farringtonFlexible=farringtonFlexible(x, control=control)))
    expected <- if (is.null(r@control$expected)) rep(NA, length(range)) else as.numeric(r@control$expected)
    data.frame(series=s - 1, t=range, upperbound=as.numeric(r@upperbound), alarm=as.integer(r@alarm),
               expected=expected)
  })
  write.csv(do.call(rbind, rows), job$output, row.names=FALSE)
}
"""


@dataclass(frozen=True)
class RJob:
    """One R run: `fun` (earsC, cusum, farrington, farringtonFlexible) with an R `control` list on the series."""

    name: str
    fun: str
    control: str
    counts: np.ndarray  # series × time
    first: int
    last: int
    freq: int = 52


@dataclass(frozen=True)
class RResult:
    """R's answers, series × monitored points (NaN where R gives NA)."""

    upperbound: np.ndarray
    alarm: np.ndarray
    expected: np.ndarray


def r_available() -> bool:
    """True when Rscript and the surveillance package can be run."""
    if shutil.which("Rscript") is None:
        return False
    probe = subprocess.run(
        ["Rscript", "-e", "suppressPackageStartupMessages(library(surveillance))"], capture_output=True, check=False
    )
    return probe.returncode == 0


def run_r(jobs: list[RJob], timeout: float = 1800) -> dict[str, RResult]:
    """Run all jobs in one Rscript process; results by job name."""
    with tempfile.TemporaryDirectory(prefix="sante-r-") as tmp:
        folder = Path(tmp)
        table = folder / "jobs.csv"
        with table.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["fun", "control", "input", "output", "first", "last", "freq"])
            for number, job in enumerate(jobs):
                source = folder / f"in{number}.csv"
                np.savetxt(source, job.counts, fmt="%d", delimiter=",")
                writer.writerow(
                    [job.fun, job.control, source, folder / f"out{number}.csv", job.first, job.last, job.freq]
                )
        program = folder / "run.R"
        program.write_text(R_PROGRAM)
        subprocess.run(["Rscript", str(program), str(table)], check=True, capture_output=True, timeout=timeout)
        return {job.name: _read_result(folder / f"out{n}.csv", job) for n, job in enumerate(jobs)}


def _read_result(path: Path, job: RJob) -> RResult:
    shape = (job.counts.shape[0], job.last - job.first + 1)
    upper, alarm, expected = np.full(shape, np.nan), np.zeros(shape, dtype=bool), np.full(shape, np.nan)
    with path.open() as handle:
        for row in csv.DictReader(handle):
            s, j = int(row["series"]), int(row["t"]) - job.first
            upper[s, j] = _number(row["upperbound"])
            alarm[s, j] = row["alarm"] == "1"
            expected[s, j] = _number(row["expected"])
    return RResult(upper, alarm, expected)


def _number(text: str) -> float:
    return float("nan") if text in ("NA", "") else float(text)


@dataclass(frozen=True)
class Dataset:
    """One shared surveillance data set: counts and outbreak labels (units × time), frequency."""

    name: str
    freq: int
    units: list[str]
    counts: np.ndarray
    state: np.ndarray


@dataclass(frozen=True)
class Comparison:
    """One detector configuration run by both R and Sante."""

    name: str
    method: str  # Sante's
    control: dict
    r_fun: str
    r_control: str
    tolerance: float  # relative, on upper bounds


def load_datasets(folder: Path) -> list[Dataset]:
    """The CSVs of shared/data/surveillance: long format (dataset, unit, t, ..., freq, observed, state, ...), or a
    single weekly series with `case` and `state` columns (campyDE)."""
    datasets = []
    for path in sorted(folder.glob("*.csv")):
        if path.name.startswith("_"):
            continue
        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        if "unit" not in rows[0]:
            rows = [
                {
                    "dataset": path.stem,
                    "unit": path.stem,
                    "t": str(t),
                    "freq": "52",
                    "observed": r["case"],
                    "state": r["state"],
                }
                for t, r in enumerate(rows, start=1)
            ]
        datasets.append(_dataset(rows))
    return datasets


def _dataset(rows: list[dict[str, str]]) -> Dataset:
    units = list(dict.fromkeys(row["unit"] for row in rows))
    length = max(int(row["t"]) for row in rows)
    counts, state = np.zeros((len(units), length)), np.zeros((len(units), length), dtype=bool)
    position = {unit: i for i, unit in enumerate(units)}
    for row in rows:
        i, t = position[row["unit"]], int(row["t"]) - 1
        counts[i, t] = float(row["observed"]) if row["observed"] not in ("NA", "") else 0.0
        state[i, t] = row["state"] == "1"
    return Dataset(rows[0]["dataset"], int(rows[0]["freq"]), units, counts, state)


def comparisons(freq: int, length: int) -> list[tuple[Comparison, int, int]]:
    """Every configuration compared, with its monitored (first, last) for a series of this length; the GLM-based
    ones use as many baseline years as the series allows (at most 5) and are left out below one year."""
    w = 3
    b = min(5, (length - w - 2) // freq)
    jobs: list[tuple[Comparison, int, int]] = []
    for variant, first in (("C1", 8), ("C2", 10), ("C3", 12)):
        jobs.append(
            (
                Comparison(
                    f"ears_{variant.lower()}",
                    f"ears_{variant.lower()}",
                    {"r_compatible": True},
                    "earsC",
                    f'list(method="{variant}")',
                    1e-6,
                ),
                first,
                length,
            )
        )
    for trans in ("standard", "rossi", "anscombe"):
        jobs.append(
            (
                Comparison(
                    f"cusum_{trans}",
                    "cusum",
                    {"trans": trans, "r_compatible": True},
                    "cusum",
                    f'list(trans="{trans}")',
                    1e-6,
                ),
                freq + 1,
                length,
            )
        )
    if b < 1:
        return jobs
    first = b * freq + w + 1
    periods, skipped = (10, 26) if freq == 52 else (3, freq // 2)
    common = {"b": b, "r_compatible": True}
    r_common = f"b={b}"
    glm_jobs = [
        Comparison("farrington", "farrington", common, "farrington", f"list({r_common})", 0.01),
        Comparison(
            "farrington_flexible", "farrington_flexible", common, "farringtonFlexible", f"list({r_common})", 0.01
        ),
        Comparison(
            "farrington_flexible_noufaily",
            "farrington_flexible",
            {
                **common,
                "no_periods": periods,
                "past_weeks_not_included": skipped,
                "p_threshold_trend": 1.0,
                "threshold_method": "nbPlugin",
            },
            "farringtonFlexible",
            f"list({r_common}, noPeriods={periods}, pastWeeksNotIncluded={skipped}, pThresholdTrend=1, "
            'thresholdMethod="nbPlugin")',
            0.01,
        ),
        Comparison(
            "farrington_flexible_muan",
            "farrington_flexible",
            {**common, "threshold_method": "muan"},
            "farringtonFlexible",
            f'list({r_common}, thresholdMethod="muan")',
            0.01,
        ),
    ]
    return jobs + [(job, first, length) for job in glm_jobs]
