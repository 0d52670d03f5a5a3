"""Batched Poisson IRLS for many small log-linear GLMs that share one design (the Farrington fits).

Every row of `y` is its own regression on the shared design `X` (n × p), with its own prior weights and offset.
The iteration is R's `glm.fit` for the Poisson family (start mu = y + 0.1, the same deviance-based stopping rule
and tolerance), so the results agree with R's to rounding.  The per-row normal equations are assembled with
matrix products against the precomputed column products of X, so the work runs in BLAS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-8  # R's glm.control(epsilon)
MAX_ITERATIONS = 25  # R's glm.control(maxit)


@dataclass(frozen=True)
class PoissonFit:
    """Coefficients, fitted means, (X'WX)^-1 and working weights of each row's fit, and the Pearson dispersion."""

    beta: np.ndarray  # B × p
    mu: np.ndarray  # B × n
    xtwx_inverse: np.ndarray  # B × p × p
    working_weights: np.ndarray  # B × n
    pearson_dispersion: np.ndarray  # B: sum w (y - mu)^2 / mu / (n - p), as R's summary.glm

    def leverages(self, design: np.ndarray) -> np.ndarray:
        """Diagonal of the weighted hat matrix, B × n."""
        p = design.shape[1]
        return (self.xtwx_inverse.reshape(-1, p * p) @ _column_products(design).T) * self.working_weights


def _column_products(design: np.ndarray) -> np.ndarray:
    """n × p² matrix of x_ip x_iq, so that X'WX = W @ this (reshaped)."""
    return (design[:, :, np.newaxis] * design[:, np.newaxis, :]).reshape(design.shape[0], -1)


def _weighted_gram(working: np.ndarray, products: np.ndarray, p: int) -> np.ndarray:
    return (working @ products).reshape(-1, p, p)


def fit_poisson(
    y: np.ndarray, design: np.ndarray, prior_weights: np.ndarray, offset: np.ndarray | float = 0.0
) -> PoissonFit:
    """Fit log E[y] = offset + X beta by IRLS for every row of y (B × n); each row needs a positive count."""
    # Fits on nearly all-zero reference sets drive some means towards 0, as they do in R: no warnings for that.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        return _irls(y, design, prior_weights, np.broadcast_to(offset, y.shape))


def _irls(y: np.ndarray, design: np.ndarray, prior_weights: np.ndarray, offset: np.ndarray) -> PoissonFit:
    p = design.shape[1]
    products = _column_products(design)
    beta = np.zeros((y.shape[0], p))
    mu = y + 0.1
    working = prior_weights * mu
    # The rows still iterating, compacted: row numbers, y, prior weights, offset, eta, mu, deviance.
    rows, ya, wa, oa, mua = np.arange(y.shape[0]), y, prior_weights, offset, mu
    etaa = np.log(mua)
    deviance = _deviance(ya, mua, wa)
    for _ in range(MAX_ITERATIONS):
        work = wa * mua
        working[rows] = work
        response = etaa - oa + (ya - mua) / mua
        coefficients = np.linalg.solve(_weighted_gram(work, products, p), ((work * response) @ design)[..., np.newaxis])
        beta[rows] = coefficients[..., 0]
        etaa = oa + coefficients[..., 0] @ design.T
        mua = np.exp(etaa)
        mu[rows] = mua
        new_deviance = _deviance(ya, mua, wa)
        still = np.abs(new_deviance - deviance) / (np.abs(new_deviance) + 0.1) >= TOLERANCE
        if not still.any():
            break
        if not still.all():
            rows, ya, wa, oa, etaa, mua = rows[still], ya[still], wa[still], oa[still], etaa[still], mua[still]
        deviance = new_deviance[still]
    # As R's glm.fit, the working weights of the last iteration (from the previous mu) define (X'WX)^-1 and,
    # with the final working residuals, the Pearson dispersion.
    dof = y.shape[1] - p
    pearson = np.sum(working * ((y - mu) / mu) ** 2, axis=1) / max(dof, 1)
    inverse = np.linalg.inv(_weighted_gram(working, products, p))
    return PoissonFit(beta, mu, inverse, working, pearson)


def _deviance(y: np.ndarray, mu: np.ndarray, weights: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return 2 * np.sum(weights * (term - (y - mu)), axis=1)
