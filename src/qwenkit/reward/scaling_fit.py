"""Power-law fits of test loss against data or model size, with bootstrap intervals.

``L(x) = a * x^(-alpha) + c`` (the saturating power law of Kaplan et al., arXiv 2001.08361, and Hoffmann et al.,
arXiv 2203.15556; WorldPM, arXiv 2505.10527, plots BT test loss against data and model size but gives no form, so
the form is ours). Fitted by least squares in ``scipy.optimize.curve_fit`` with ``a >= 0``, ``0 <= alpha <= 4``,
``c >= 0``. The 95 % interval of ``alpha`` comes from a residual bootstrap: refit on ``y_hat + e*`` with residuals
``e*`` drawn with replacement from the residuals scaled by ``sqrt(n / (n - 3))`` (least-squares residuals are
smaller than the noise by that factor for three parameters), percentiles 2.5 and 97.5 of the refitted exponents.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_EXPONENT = 4.0


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


def _power_law(x: np.ndarray, a: float, alpha: float, c: float) -> np.ndarray:
    return a * x ** (-alpha) + c


def _least_squares(x: np.ndarray, y: np.ndarray, start: tuple[float, float, float] | None) -> np.ndarray:
    from scipy.optimize import OptimizeWarning, curve_fit

    if start is None:
        floor = max(0.0, 0.5 * float(y.min()))
        gap = np.clip(y - floor, 1e-9, None)
        slope, intercept = np.polyfit(np.log(x), np.log(gap), 1)
        start = (float(np.exp(intercept)), float(np.clip(-slope, 1e-3, MAX_EXPONENT - 1e-3)), floor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        params, _ = curve_fit(_power_law, x, y, p0=start, bounds=([0, 0, 0], [np.inf, MAX_EXPONENT, np.inf]),
                              maxfev=20_000)
    return params


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
    a, alpha, c = _least_squares(x_arr, y_arr, None)
    fitted = _power_law(x_arr, a, alpha, c)
    residuals = y_arr - fitted
    inflated = residuals * math.sqrt(len(x_arr) / (len(x_arr) - 3))
    rng = np.random.default_rng(seed)
    alphas = []
    for _ in range(n_boot):
        resampled = fitted + rng.choice(inflated, size=len(residuals), replace=True)
        try:
            alphas.append(_least_squares(x_arr, resampled, (a, alpha, c))[1])
        except RuntimeError:
            continue  # a refit that does not converge is left out of the percentiles
    if alphas:
        low, high = np.percentile(alphas, [2.5, 97.5])
        interval = (float(low), float(high))
    else:
        interval = (math.nan, math.nan)
    return PowerLawFit(float(a), float(alpha), float(c), interval, n_boot, float(np.sqrt(np.mean(residuals**2))))
