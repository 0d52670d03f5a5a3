"""Simulation study after Noufaily et al. (2013): false-positive rate and probability of detection per detector.

42 scenarios of weekly negative-binomial counts, mu(t) = exp(theta + beta t + sum_{j<=m} gamma1 cos(2 pi j t/52)
+ gamma2 sin(2 pi j t/52)), variance phi * mu: 7 (theta, phi) pairs from low counts to high counts × 3 seasonal
patterns (m = 0, 1, 2 with gamma1 = gamma2 = 0.6) × 2 trends (beta = 0, 0.0025 per week).  Each series has
6 years + 1 week (313 weeks); four outbreaks of 2-10 SD sit in the baseline (weeks 1-264), and the last 49
weeks are monitored.  An outbreak of size k·SD has Poisson(k * sqrt(phi * mu(start))) cases, each delayed from
the start by a lognormal(0, 0.5) number of weeks (Noufaily's design).  FPR: alarms per monitored week in series
without a current outbreak; POD: share of current outbreaks (k = 3, 10) with an alarm in a week holding
outbreak cases.  All detectors run at alpha = 0.005 (one-sided; the original Farrington two-sided at 0.01).

Sante's farrington and farrington_flexible reproduce R's to 1e-6 (tests/analytics/test_surveillance_vs_r.py), so
they are the R baselines here; with Rscript present, R's farringtonFlexible also runs on a subset to show it.
An oracle that knows the true mean and dispersion of every scenario (exact negative-binomial test of the total
of the last 1, 2 or 3 weeks, at the level giving a false-positive rate of 0.5 %) shows the best a detector of
that kind can do on this simulation: about 0.21 at 3 SD with the two-week total, short of the 0.33 goal.
Goal: the recommended detector has FPR <= 0.5 % and POD >= 0.33 at 3 SD.

    .venv/bin/python bench/surveillance_noufaily.py [--replicates 50] [--seed 1]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import nbinom, poisson

from sante.analytics.surveillance import detect_many

FREQ = 52
LENGTH = 6 * FREQ + 1
MONITORED = 49
LEVELS = [(0.5, 1.0), (0.5, 2.0), (1.5, 1.5), (1.5, 3.0), (2.5, 2.0), (3.5, 2.0), (3.5, 5.0)]
SEASONS = [0, 1, 2]
TRENDS = [0.0, 0.0025]
CACHE = Path(__file__).parent / ".cache"
METHODS: dict[str, dict] = {
    "recommended": {},
    "farrington_flexible (Noufaily)": {
        "method": "farrington_flexible",
        "alpha": 0.005,
        "no_periods": 10,
        "past_weeks_not_included": 26,
        "weights_threshold": 2.58,
        "p_threshold_trend": 1.0,
        "threshold_method": "nbPlugin",
    },
    "farrington": {"method": "farrington", "alpha": 0.01},
    "glm_nb": {"method": "glm_nb", "alpha": 0.005},
    "ears_c1": {"method": "ears_c1", "alpha": 0.005},
    "ears_c2": {"method": "ears_c2", "alpha": 0.005},
    "ears_c3": {"method": "ears_c3", "alpha": 0.005},
}


def scenarios() -> list[tuple[float, float, int, float]]:
    """The 42 (theta, phi, m, beta) combinations."""
    return [(theta, phi, m, beta) for theta, phi in LEVELS for m in SEASONS for beta in TRENDS]


def mean_curve(theta: float, m: int, beta: float) -> np.ndarray:
    t = np.arange(1, LENGTH + 1)
    season = sum(
        0.6 * np.cos(2 * np.pi * j * t / FREQ) + 0.6 * np.sin(2 * np.pi * j * t / FREQ) for j in range(1, m + 1)
    )
    return np.exp(theta + beta * t + season)


def negative_binomial(rng: np.random.Generator, mu: np.ndarray, phi: float) -> np.ndarray:
    if phi == 1.0:
        return rng.poisson(mu).astype(float)
    size = mu / (phi - 1)
    return rng.negative_binomial(size, size / (size + mu)).astype(float)


def add_outbreak(
    rng: np.random.Generator,
    series: np.ndarray,
    marks: np.ndarray,
    start: int,
    cases_sd: float,
    mu: np.ndarray,
    phi: float,
) -> None:
    """Add Poisson(k·SD) cases from `start`, each delayed by floor(lognormal(0, 0.5)) weeks; mark their weeks."""
    cases = rng.poisson(cases_sd * np.sqrt(phi * mu[start]))
    weeks = start + np.floor(rng.lognormal(0.0, 0.5, cases)).astype(int)
    weeks = weeks[weeks < LENGTH]
    np.add.at(series, weeks, 1.0)
    marks[weeks] = True


def simulate(replicates: int, size_sd: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts (scenarios*replicates × weeks) and the weeks with current-outbreak cases."""
    rng = np.random.default_rng(seed)
    rows, marks = [], []
    for theta, phi, m, beta in scenarios():
        mu = mean_curve(theta, m, beta)
        for _ in range(replicates):
            series = negative_binomial(rng, mu, phi)
            ignored = np.zeros(LENGTH, dtype=bool)
            for start in rng.choice(LENGTH - MONITORED - 5, 4, replace=False):
                add_outbreak(rng, series, ignored, int(start), float(rng.integers(2, 11)), mu, phi)
            current = np.zeros(LENGTH, dtype=bool)
            if size_sd is not None:
                add_outbreak(rng, series, current, int(rng.integers(LENGTH - MONITORED, LENGTH - 2)), size_sd, mu, phi)
            rows.append(series)
            marks.append(current)
    return np.array(rows), np.array(marks)


def cached_simulation(replicates: int, size_sd: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"noufaily-{replicates}-{size_sd}-{seed}.npz"
    if path.exists():
        data = np.load(path)
        return data["counts"], data["marks"]
    counts, marks = simulate(replicates, size_sd, seed)
    np.savez_compressed(path, counts=counts, marks=marks)
    return counts, marks


def alarms_of(counts: np.ndarray, options: dict) -> np.ndarray:
    control = dict(options)
    method = control.pop("method", "recommended")
    return detect_many(counts, method, range=(LENGTH - MONITORED + 1, LENGTH), **control).alarm


def probability_of_detection(alarms: np.ndarray, marks: np.ndarray) -> float:
    during = marks[:, -MONITORED:]
    has_outbreak = during.any(axis=1)
    return float(np.mean((alarms & during).any(axis=1)[has_outbreak]))


def oracle_p_values(counts: np.ndarray, replicates: int, window: int) -> np.ndarray:
    """A detector that knows each scenario's true mean and dispersion: the exact negative-binomial tail
    probability of the total of the `window` weeks ending at each monitored week (sums of these NB counts are NB
    again).  No detector that estimates its baseline can do better with that window; it shows what the
    simulation allows."""
    means, dispersions = [], []
    for theta, phi, m, beta in scenarios():
        means += [mean_curve(theta, m, beta)] * replicates
        dispersions += [phi] * replicates
    mu = np.array(means)[:, -MONITORED - window + 1 :]
    phi = np.array(dispersions)[:, np.newaxis]
    y = counts[:, -MONITORED - window + 1 :]
    total = sum(y[:, k : k + MONITORED] for k in range(window))
    expected = sum(mu[:, k : k + MONITORED] for k in range(window))
    size = expected / np.maximum(phi - 1, 1e-12)
    return np.where(
        phi > 1, nbinom.sf(total - 1, size, 1 / np.maximum(phi, 1 + 1e-12)), poisson.sf(total - 1, expected)
    )


def oracle_rows(null_counts: np.ndarray, outbreaks: dict, replicates: int) -> None:
    """The oracle on windows of 1, 2 and 3 weeks, each at the level that gives a false-positive rate of 0.5 %."""
    for window in (1, 2, 3):
        null_p = oracle_p_values(null_counts, replicates, window)
        level = float(np.quantile(null_p, 0.005))
        while np.mean(null_p <= level) > 0.005:  # ties of discrete counts: the largest level within 0.5 %
            level = float(np.max(null_p[null_p < level]))
        fpr = float(np.mean(null_p <= level))
        pod = {k: probability_of_detection(oracle_p_values(c, replicates, window) <= level, m)
               for k, (c, m) in outbreaks.items()}
        name = f"oracle: true mean, {window}-week NB test"
        print(f"{name:34s} {100 * fpr:7.2f} {pod[3.0]:8.3f} {pod[10.0]:9.3f}")


def r_flexible_alarms(counts: np.ndarray) -> np.ndarray | None:
    """R's farringtonFlexible with Noufaily's options on these series, or None without Rscript."""
    if shutil.which("Rscript") is None:
        return None
    script = f"""
suppressPackageStartupMessages(library(surveillance))
d <- as.matrix(read.csv(commandArgs(TRUE)[1], header=FALSE))
res <- sapply(seq_len(nrow(d)), function(i) {{
  s <- sts(observed=d[i,], frequency=52, start=c(2001,1))
  r <- farringtonFlexible(s, control=list(range={LENGTH - MONITORED + 1}:{LENGTH}, alpha=0.005, noPeriods=10,
       pastWeeksNotIncluded=26, weightsThreshold=2.58, pThresholdTrend=1, thresholdMethod="nbPlugin"))
  as.integer(r@alarm[,1]) }})
write.table(t(res), commandArgs(TRUE)[2], sep=",", row.names=FALSE, col.names=FALSE)
"""
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        np.savetxt(source, counts, fmt="%d", delimiter=",")
        (Path(tmp) / "run.R").write_text(script)
        subprocess.run(["Rscript", str(Path(tmp) / "run.R"), str(source), str(target)], check=True, capture_output=True)
        with target.open() as handle:
            return np.array([[v == "1" for v in row] for row in csv.reader(handle)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=50, help="series per scenario and condition")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--r-replicates", type=int, default=2, help="series per scenario for R's run (0: skip)")
    args = parser.parse_args()
    started = time.perf_counter()
    null_counts, _ = cached_simulation(args.replicates, None, args.seed)
    outbreaks = {k: cached_simulation(args.replicates, k, args.seed + int(k)) for k in (3.0, 10.0)}
    print(f"{len(scenarios())} scenarios × {args.replicates} series, {MONITORED} monitored weeks each")
    print(f"{'method':34s} {'FPR %':>7s} {'POD 3SD':>8s} {'POD 10SD':>9s} {'seconds':>8s}")
    results = {}
    for name, options in METHODS.items():
        begun = time.perf_counter()
        fpr = float(np.mean(alarms_of(null_counts, options)))
        pod = {k: probability_of_detection(alarms_of(c, options), m) for k, (c, m) in outbreaks.items()}
        results[name] = (fpr, pod[3.0], pod[10.0])
        print(f"{name:34s} {100 * fpr:7.2f} {pod[3.0]:8.3f} {pod[10.0]:9.3f} {time.perf_counter() - begun:8.1f}")
    oracle_rows(null_counts, outbreaks, args.replicates)
    if args.r_replicates:
        compare_with_r(args.replicates, args.r_replicates, null_counts, outbreaks)
    fpr, pod3, _ = results["recommended"]
    ok = fpr <= 0.005 and pod3 >= 0.33
    print(f"(total {time.perf_counter() - started:.0f} s)")
    print(
        f"surveillance_noufaily: recommended FPR {100 * fpr:.2f}% (goal <= 0.5%), POD {pod3:.2f} at 3 SD "
        f"(goal >= 0.33): {'ok' if ok else 'short'}"
    )
    return 0 if ok else 1


def compare_with_r(replicates: int, r_replicates: int, null_counts: np.ndarray, outbreaks: dict) -> None:
    """R's improved Farrington against Sante's on the first series of each scenario."""
    pick = np.concatenate([np.arange(s * replicates, s * replicates + r_replicates) for s in range(len(scenarios()))])
    counts3, marks3 = outbreaks[3.0]
    r_null, r_3 = r_flexible_alarms(null_counts[pick]), r_flexible_alarms(counts3[pick])
    if r_null is None or r_3 is None:
        print("R comparison skipped: Rscript not found")
        return
    options = METHODS["farrington_flexible (Noufaily)"]
    sante_null, sante_3 = alarms_of(null_counts[pick], options), alarms_of(counts3[pick], options)
    print(
        f"R farringtonFlexible on {pick.size} series per condition: FPR {100 * r_null.mean():.2f}% "
        f"(Sante {100 * sante_null.mean():.2f}%), POD 3 SD {probability_of_detection(r_3, marks3[pick]):.3f} "
        f"(Sante {probability_of_detection(sante_3, marks3[pick]):.3f}); identical alarms "
        f"{100 * np.mean(np.concatenate([r_null == sante_null, r_3 == sante_3])):.2f}%"
    )


if __name__ == "__main__":
    sys.exit(main())
