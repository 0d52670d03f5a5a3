"""Sante's detectors against R's `surveillance` on every unit of the 29 shared series, and their weekly
sensitivity and specificity on the 14 labelled ones.

For each configuration (EARS C1-C3, CUSUM with three transformations, Farrington, improved Farrington with the
delta, nbPlugin (Noufaily's options) and muan thresholds) R runs in one Rscript process and Sante with
`r_compatible=True`; the bench prints per configuration the points compared, the share of identical alarms, the
largest relative difference of upper bounds and both run times.  The GLM-based methods are compared on the last
`--glm-weeks` points of each series (default 52; `--glm-weeks 0` for every point R can monitor).

Then, on the labelled RKI series (k1, m1-m5, n1, n2, q1_nrwh, q2, s1-s3, h1_nrwrp and the 12 units of ha.sts),
the weekly sensitivity (alarm weeks among labelled outbreak weeks) and specificity of every method, including
Sante's glm_nb and recommended detector (with b = 3 years, as the series are four years long), on the same weeks.
Goal: identical alarms everywhere, upper bounds within 1e-6 (EARS, CUSUM) and 1 % (GLM-based).

    .venv/bin/python bench/surveillance_r.py [--glm-weeks 52]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from sante.analytics.surveillance import detect_many
from sante.analytics.surveillance.r_reference import (
    Comparison,
    Dataset,
    RJob,
    comparisons,
    load_datasets,
    r_available,
    run_r,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "surveillance"
LABELLED_METHODS: dict[str, dict] = {
    "ears_c1": {"method": "ears_c1"},
    "ears_c2": {"method": "ears_c2"},
    "ears_c3": {"method": "ears_c3"},
    "cusum": {"method": "cusum"},
    "farrington": {"method": "farrington", "b": 3},
    "farrington_flexible": {"method": "farrington_flexible", "b": 3},
    "farrington_flexible (Noufaily)": {
        "method": "farrington_flexible",
        "b": 3,
        "no_periods": 10,
        "past_weeks_not_included": 26,
        "p_threshold_trend": 1.0,
        "threshold_method": "nbPlugin",
    },
    "glm_nb": {"method": "glm_nb", "b": 3},
    "recommended": {"method": "recommended", "b": 3},
}


def relative_differences(sante: np.ndarray, r: np.ndarray) -> np.ndarray:
    """As the test: NaN on both sides and bounds below 1e-6 on both sides agree."""
    both = ((np.abs(np.nan_to_num(sante)) < 1e-6) & (np.abs(np.nan_to_num(r)) < 1e-6)) | (np.isnan(sante) & np.isnan(r))
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.abs(sante - r) / np.maximum(np.abs(r), 1e-12)
    return np.where(both, 0.0, np.nan_to_num(relative, nan=np.inf))


def compare_with_r(datasets: list[Dataset], glm_weeks: int) -> bool:
    cases: list[tuple[Dataset, Comparison, tuple[int, int]]] = []
    for dataset in datasets:
        for comparison, first, last in comparisons(dataset.freq, dataset.counts.shape[1]):
            if comparison.tolerance >= 1e-3 and glm_weeks:
                first = max(first, last - glm_weeks + 1)
            cases.append((dataset, comparison, (first, last)))
    jobs = [RJob(f"{d.name}/{c.name}", c.r_fun, c.r_control, d.counts, *w, d.freq) for d, c, w in cases]
    started = time.perf_counter()
    r_results = run_r(jobs)
    r_seconds = time.perf_counter() - started
    totals: dict[str, list] = {}
    sante_seconds = 0.0
    for dataset, comparison, window in cases:
        begun = time.perf_counter()
        sante = detect_many(dataset.counts, comparison.method, freq=dataset.freq, range=window, **comparison.control)
        sante_seconds += time.perf_counter() - begun
        r = r_results[f"{dataset.name}/{comparison.name}"]
        entry = totals.setdefault(comparison.name, [0, 0, 0.0, comparison.tolerance])
        entry[0] += r.alarm.size
        entry[1] += int(np.sum(sante.alarm == r.alarm))
        entry[2] = max(entry[2], float(relative_differences(sante.upperbound, r.upperbound).max()))
    print(f"{'configuration':30s} {'points':>8s} {'alarms identical':>17s} {'max rel. diff':>14s} {'tolerance':>10s}")
    ok = True
    for name, (points, same, worst, tolerance) in totals.items():
        ok &= same == points and worst <= tolerance
        print(f"{name:30s} {points:8d} {100 * same / points:16.3f}% {worst:14.2e} {tolerance:10.0e}")
    print(f"R (one Rscript process, all configurations): {r_seconds:.1f} s; Sante: {sante_seconds:.1f} s")
    return ok


def labelled_performance(datasets: list[Dataset]) -> None:
    """Weekly sensitivity and specificity of every method on the labelled weekly series (same weeks for all)."""
    labelled = [d for d in datasets if d.state.any() and d.freq == 52]
    first = 3 * 52 + 3 + 2  # the recommended detector with b = 3 needs the most history
    outbreak_weeks = sum(int(d.state[:, first - 1 :].sum()) for d in labelled)
    weeks = sum(d.state[:, first - 1 :].size for d in labelled)
    print(
        f"\nLabelled series: {sum(d.counts.shape[0] for d in labelled)} series from {len(labelled)} data sets, "
        f"weeks {first} to the end ({outbreak_weeks} outbreak weeks of {weeks})"
    )
    print(f"{'method':32s} {'sensitivity':>12s} {'specificity':>12s} {'alarms':>7s}")
    for name, options in LABELLED_METHODS.items():
        control = dict(options)
        method = control.pop("method")
        hits = false_alarms = alarms = 0
        for dataset in labelled:
            window = (first, dataset.counts.shape[1])
            alarm = detect_many(dataset.counts, method, range=window, **control).alarm
            truth = dataset.state[:, first - 1 :]
            hits += int(alarm[truth].sum())
            false_alarms += int(alarm[~truth].sum())
            alarms += int(alarm.sum())
        sensitivity, specificity = hits / outbreak_weeks, 1 - false_alarms / (weeks - outbreak_weeks)
        print(f"{name:32s} {sensitivity:12.3f} {specificity:12.4f} {alarms:7d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glm-weeks", type=int, default=52, help="points per series for GLM methods (0: all)")
    args = parser.parse_args()
    if not r_available():
        print("surveillance_r: Rscript with the surveillance package is not installed (goal: identical alarms): short")
        return 1
    datasets = load_datasets(DATA)
    units = sum(d.counts.shape[0] for d in datasets)
    print(f"{len(datasets)} data sets, {units} series")
    ok = compare_with_r(datasets, args.glm_weeks)
    labelled_performance(datasets)
    verdict = "ok" if ok else "short"
    print(
        f"surveillance_r: {units} series × 10 configurations, alarms identical and upper bounds within tolerance "
        f"(goal: all identical, 1e-6 EARS/CUSUM, 1% GLM): {verdict}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
