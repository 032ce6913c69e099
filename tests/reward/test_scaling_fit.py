import numpy as np
import pytest

from qwenkit.reward.scaling_fit import fit_power_law


def _curve(a, alpha, c, noise, seed, points=10):
    x = np.logspace(2, 4.5, points)
    rng = np.random.default_rng(seed)
    return x, a * x ** (-alpha) + c + rng.normal(0, noise, size=points)


def test_recovers_exact_exponents_without_noise():
    x, y = _curve(3.0, 0.45, 0.2, 0.0, 0)
    fit = fit_power_law(x, y, n_boot=50)
    assert fit.alpha == pytest.approx(0.45, rel=1e-4)
    assert fit.a == pytest.approx(3.0, rel=1e-3) and fit.c == pytest.approx(0.2, abs=1e-5)
    np.testing.assert_allclose(fit.predict(x), y, rtol=1e-5)


@pytest.mark.parametrize(("alpha", "seed"), [(0.3, 1), (0.5, 2), (0.8, 3)])
def test_noisy_curves_intervals_cover_the_true_exponent(alpha, seed):
    gap_at_start = 4.0 * 100.0 ** (-alpha)
    x, y = _curve(4.0, alpha, 0.3, 0.02 * gap_at_start, seed)  # noise of 2 % of the reducible loss at the start
    fit = fit_power_law(x, y, n_boot=150, seed=seed)
    low, high = fit.alpha_interval
    assert low <= alpha <= high
    assert low < fit.alpha < high
    assert high - low < 0.5


def test_coverage_over_many_noisy_curves_is_near_nominal():
    covered = 0
    for seed in range(10):
        x, y = _curve(2.0, 0.5, 0.4, 0.003, 100 + seed)
        low, high = fit_power_law(x, y, n_boot=60, seed=seed).alpha_interval
        covered += low <= 0.5 <= high
    assert covered >= 8  # nominal 95 %: 8 of 10 or more has probability 0.99


def test_flat_curve_gives_an_exponent_interval_reaching_zero_or_a_tiny_amplitude():
    rng = np.random.default_rng(0)
    x = np.logspace(2, 4, 8)
    fit = fit_power_law(x, 0.69 + rng.normal(0, 0.01, 8), n_boot=40)
    assert fit.a * x.min() ** (-fit.alpha) < 0.05 or fit.alpha_interval[0] < 0.05


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="at least 4"):
        fit_power_law([1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([0, 1, 2, 3], [1, 1, 1, 1])


def test_reaches_at_least_the_best_of_many_curve_fit_starts():
    """Variable projection finds the bounded global least-squares optimum: its squared error is never above the
    best local optimum scipy's curve_fit reaches from a grid of starting exponents (an independent optimiser)."""
    from scipy.optimize import curve_fit

    def power_law(x, a, alpha, c):
        return a * x ** (-alpha) + c

    rng = np.random.default_rng(7)
    for _ in range(5):
        x = np.array([128.0, 256, 512, 1024, 2048])
        y = 0.7 * x ** (-rng.uniform(0.05, 1.5)) + 0.5 + rng.normal(0, 0.01, len(x))
        fit = fit_power_law(x, y, n_boot=10)
        ours = float(((fit.predict(x) - y) ** 2).sum())
        best = np.inf
        for start in (0.05, 0.3, 1.0, 2.0, 3.5):
            try:
                params, _ = curve_fit(power_law, x, y, p0=(1.0, start, 0.4), bounds=([0, 0, 0], [np.inf, 4, np.inf]),
                                      maxfev=20_000)
            except RuntimeError:
                continue
            best = min(best, float(((power_law(x, *params) - y) ** 2).sum()))
        assert ours <= best * (1 + 1e-6) + 1e-12
