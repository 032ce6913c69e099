"""Power-law fits of test loss against data or model size, with bootstrap intervals.

``L(x) = a * x^(-alpha) + c`` (the saturating power law of Kaplan et al., arXiv 2001.08361, and Hoffmann et al.,
arXiv 2203.15556; WorldPM, arXiv 2505.10527, plots BT test loss against data and model size but gives no form, so
the form is ours), least squares with ``a >= 0``, ``0 <= alpha <= 4``, ``c >= 0``.

The fit is by variable projection (Golub and Pereyra 1973): for a fixed ``alpha`` the model is linear in ``(a, c)``,
so the best non-negative ``(a, c)`` has a closed form and the squared error becomes a function of ``alpha`` alone,
minimised over a grid of exponents and refined by a bounded scalar search around the best grid point. This finds
the global minimum over the bounded exponent (a local optimiser such as ``curve_fit`` can stop in a local one) and
costs about a millisecond per fit.

The 95 % interval of ``alpha`` comes from a residual bootstrap: refit on ``y_hat + e*`` with residuals ``e*`` drawn
with replacement from the residuals scaled by ``sqrt(n / (n - 3))`` (least-squares residuals are smaller than the
noise by that factor for three parameters), percentiles 2.5 and 97.5 of the refitted exponents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_EXPONENT = 4.0
EXPONENT_GRID = np.linspace(0.0, MAX_EXPONENT, 401)


@dataclass(frozen=True)
class PowerLawFit:
    a: float
    alpha: float
    c: float
    alpha_interval: tuple[float, float]
    """2.5 and 97.5 percentiles of alpha over the bootstrap refits."""
    n_boot: int
    rmse: float

    def predict(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        return self.a * np.asarray(x, dtype=np.float64) ** (-self.alpha) + self.c


def nonnegative_line_fits(u: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row ``k`` of ``u`` (shape ``(K, n)``): ``(a_k, c_k, squared error_k)`` of the least-squares
    ``y ≈ a·u_k + c`` with ``a, c >= 0``.

    The unconstrained normal equations where their solution is feasible; elsewhere the better of the two boundary
    fits, ``a = 0`` (``c = max(mean y, 0)``) and ``c = 0`` (``a = max(u·y / u·u, 0)``): with two parameters the
    constrained optimum lies on one of them.
    """
    n, sy = u.shape[1], float(y.sum())
    su, suu, suy = u.sum(axis=1), (u * u).sum(axis=1), u @ y
    determinant = n * suu - su * su
    solvable = determinant > 1e-12 * np.maximum(1.0, n * suu)
    safe = np.where(solvable, determinant, 1.0)
    a_free = np.where(solvable, (n * suy - su * sy) / safe, -1.0)
    c_free = (sy - a_free * su) / n
    feasible = solvable & (a_free >= 0) & (c_free >= 0)

    def error(a: np.ndarray, c: np.ndarray) -> np.ndarray:
        return ((a[:, None] * u + c[:, None] - y) ** 2).sum(axis=1)

    c_only = np.full(len(u), max(sy / n, 0.0))
    a_only = np.where(suu > 0, np.maximum(suy / np.where(suu > 0, suu, 1.0), 0.0), 0.0)
    zeros = np.zeros(len(u))
    error_c_only, error_a_only = error(zeros, c_only), error(a_only, zeros)
    use_c_only = error_c_only <= error_a_only
    a = np.where(feasible, a_free, np.where(use_c_only, 0.0, a_only))
    c = np.where(feasible, c_free, np.where(use_c_only, c_only, 0.0))
    return a, c, error(a, c)


def _fit(log_x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """``(a', alpha, c)`` minimising the squared error of ``a'·exp(-alpha·log_x) + c`` (``log_x`` relative to x_min)."""
    from scipy.optimize import minimize_scalar

    def profile(alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return nonnegative_line_fits(np.exp(-np.outer(alphas, log_x)), y)

    errors = profile(EXPONENT_GRID)[2]
    best = int(np.argmin(errors))
    low, high = EXPONENT_GRID[max(best - 1, 0)], EXPONENT_GRID[min(best + 1, len(EXPONENT_GRID) - 1)]
    refined = minimize_scalar(lambda alpha: float(profile(np.array([alpha]))[2][0]), bounds=(low, high),
                              method="bounded", options={"xatol": 1e-7})
    alpha = float(refined.x) if refined.fun <= errors[best] else float(EXPONENT_GRID[best])
    a, c, _ = profile(np.array([alpha]))
    return float(a[0]), alpha, float(c[0])


def fit_power_law(
    x: Sequence[float], y: Sequence[float], *, n_boot: int = 1000, seed: int = 0
) -> PowerLawFit:
    """Fit ``y = a x^-alpha + c`` (see the module docstring); needs at least 4 points with x > 0."""
    x_arr, y_arr = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x_arr.shape != y_arr.shape or x_arr.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got shapes {x_arr.shape} and {y_arr.shape}")
    if len(x_arr) < 4:
        raise ValueError(f"a three-parameter power law needs at least 4 points, got {len(x_arr)}")
    if (x_arr <= 0).any() or not np.isfinite(y_arr).all():
        raise ValueError("x must be positive and y finite")
    x_min = float(x_arr.min())
    log_x = np.log(x_arr / x_min)  # x^-alpha = x_min^-alpha * exp(-alpha log(x / x_min)): well scaled for any alpha
    scaled_a, alpha, c = _fit(log_x, y_arr)
    fitted = scaled_a * np.exp(-alpha * log_x) + c
    residuals = y_arr - fitted
    inflated = residuals * math.sqrt(len(x_arr) / (len(x_arr) - 3))
    rng = np.random.default_rng(seed)
    alphas = [_fit(log_x, fitted + rng.choice(inflated, size=len(residuals), replace=True))[1] for _ in range(n_boot)]
    low, high = np.percentile(alphas, [2.5, 97.5]) if alphas else (math.nan, math.nan)
    return PowerLawFit(float(scaled_a * x_min**alpha), alpha, float(c), (float(low), float(high)), n_boot,
                       float(np.sqrt(np.mean(residuals**2))))
