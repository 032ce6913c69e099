import math

import krippendorff
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from qwenkit.roleplay.agreement import (
    cohen_kappa,
    exact_agreement,
    fleiss_kappa,
    krippendorff_alpha,
    majority_agreement,
    majority_labels,
    spearman_rho,
)

NAN = float("nan")


def test_cohen_kappa_by_hand():
    # p_o = 3/4, p_e = 0.5 * 0.25 + 0.5 * 0.75 = 0.5 -> (0.75 - 0.5) / 0.5
    assert cohen_kappa([1, 1, 2, 2], [1, 2, 2, 2]) == pytest.approx(0.5)
    assert cohen_kappa([1, 2, NAN, 2], [1, 2, 1, NAN]) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa([3, 3], [3, 3]))
    assert math.isnan(cohen_kappa([NAN], [1]))
    with pytest.raises(ValueError, match="weights"):
        cohen_kappa([1], [1], weights="cubic")


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_sklearn(weights):
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.choice([1, 3, 5], size=40)
        b = np.where(rng.random(40) < 0.6, a, rng.choice([1, 3, 5], size=40))
        assert cohen_kappa(a, b, weights=weights) == pytest.approx(cohen_kappa_score(a, b, weights=weights))


def test_fleiss_kappa_by_hand_and_statsmodels():
    # item 1: three "a" -> P=1; item 2: one "a", two "b" -> P=1/3; p=(4/6, 2/6), P_e=5/9 -> (2/3-5/9)/(4/9)=0.25
    assert fleiss_kappa([[0, 0], [0, 1], [0, 1]]) == pytest.approx(0.25)
    rng = np.random.default_rng(1)
    for _ in range(10):
        truth = rng.choice([1, 3, 5], size=30)
        ratings = np.stack([np.where(rng.random(30) < 0.7, truth, rng.choice([1, 3, 5], size=30)) for _ in range(3)])
        table, _ = aggregate_raters(ratings.T)
        assert fleiss_kappa(ratings) == pytest.approx(statsmodels_fleiss(table, method="fleiss"))


def test_fleiss_kappa_missing_and_degenerate():
    # the NaN-only item and the single-rating item are dropped, leaving the hand example above
    assert fleiss_kappa([[0, 0, NAN, 1], [0, 1, NAN, NAN], [0, 1, NAN, NAN]]) == pytest.approx(0.25)
    assert math.isnan(fleiss_kappa([[1, 1], [1, 1]]))
    assert math.isnan(fleiss_kappa([[1, NAN], [NAN, 2]]))


def test_krippendorff_by_hand():
    # o = [[2,1],[1,4]], n=(3,5), n=8: alpha = 1 - 7 * 2 / (2 * 3 * 5)
    assert krippendorff_alpha([[1, 1, 2, 2], [1, 2, 2, 2]], "nominal") == pytest.approx(1 - 14 / 30)
    assert math.isnan(krippendorff_alpha([[2, 2], [2, 2]]))
    assert math.isnan(krippendorff_alpha([[1, NAN], [NAN, 2]]))
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([[1]], "ratio")


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_matches_package_with_missing(level):
    rng = np.random.default_rng(2)
    for _ in range(15):
        truth = rng.choice([1, 2, 3, 4, 5], size=25).astype(float)
        ratings = np.stack([np.where(rng.random(25) < 0.6, truth, rng.choice([1, 2, 3, 4, 5], size=25))
                            for _ in range(4)]).astype(float)
        ratings[rng.random(ratings.shape) < 0.2] = np.nan
        expected = krippendorff.alpha(reliability_data=ratings, level_of_measurement=level)
        assert krippendorff_alpha(ratings, level) == pytest.approx(expected, abs=1e-9)


def test_majority_labels_and_agreement():
    ratings = [[1, 3, 5, 1, NAN], [1, 3, 3, 5, NAN], [3, 1, 1, 3, 5]]
    np.testing.assert_array_equal(majority_labels(ratings), [1, 3, NAN, NAN, 5])
    # items 0, 1 and 4 (a single rating) have a majority (1, 3, 5); the judge matches items 0 and 4
    assert majority_agreement([1, 5, 5, 5, 5], ratings) == pytest.approx(2 / 3)
    assert math.isnan(majority_agreement([1, 1], [[1, 3], [3, 1]]))


def test_spearman_and_exact_agreement():
    a, b = [1, 2, 3, 4, 5, NAN], [2, 1, 4, 3, 5, 1]
    assert spearman_rho(a, b) == pytest.approx(spearmanr([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]).statistic)
    assert math.isnan(spearman_rho([1, 1, 1], [1, 2, 3]))
    assert exact_agreement([[1, 3, 5, NAN], [1, 3, 3, 1]]) == pytest.approx(2 / 3)
