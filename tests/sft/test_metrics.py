"""Calibration metrics, self-consistency and answer extraction against hand-computed values."""

import math

import pytest

from qwenkit.sft.metrics import (
    answers_match,
    bin_indices,
    bootstrap_line_fit,
    brier_score,
    canonical_gold,
    expected_calibration_error,
    extract_answer,
    fit_line,
    maximum_calibration_error,
    reliability_bins,
    self_consistency,
)

# by hand: bins (0.0 -> b0: gap 0), (0.3 -> b2: |1-.3|=.7), (0.35 -> b3: |0-.35|=.35), (0.9 -> b8: .1), (1.0 -> b9: 0)
CONF = [0.0, 0.3, 0.35, 0.9, 1.0]
CORRECT = [0, 1, 0, 1, 1]


def test_bins_are_left_open_right_closed_and_zero_goes_first():
    assert bin_indices([0.0, 0.1, 0.10001, 0.3, 0.30001, 1.0], 10).tolist() == [0, 0, 1, 2, 3, 9]


def test_ece_mce_brier_hand_computed():
    assert expected_calibration_error(CONF, CORRECT) == pytest.approx((0.7 + 0.35 + 0.1) / 5)
    assert maximum_calibration_error(CONF, CORRECT) == pytest.approx(0.7)
    assert brier_score(CONF, CORRECT) == pytest.approx((0.49 + 0.1225 + 0.01) / 5)


def test_ece_weights_bins_by_count():
    # 5 bins: three at 0.6 in (0.4, 0.6] with accuracy 2/3 (gap 1/15), one at 0.8 in (0.6, 0.8] (gap 0.2)
    conf, correct = [0.6, 0.6, 0.6, 0.8], [1, 0, 1, 1]
    assert expected_calibration_error(conf, correct, n_bins=5) == pytest.approx(0.75 / 15 + 0.25 * 0.2)
    assert maximum_calibration_error(conf, correct, n_bins=5) == pytest.approx(0.2)


def test_reliability_bins_counts_and_empty_bins():
    bins = reliability_bins(CONF, CORRECT, 10)
    assert [b.count for b in bins] == [1, 0, 1, 1, 0, 0, 0, 0, 1, 1]
    assert math.isnan(bins[1].accuracy) and bins[2].accuracy == 1.0 and bins[2].mean_confidence == 0.3
    assert (bins[2].lower, bins[2].upper) == (0.2, 0.3)


def test_perfect_calibration_and_empty_input():
    assert expected_calibration_error([1.0, 1.0, 0.0], [1, 1, 0]) == 0.0
    assert expected_calibration_error([], []) == 0.0 and maximum_calibration_error([], []) == 0.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.2], [1])
    with pytest.raises(ValueError, match="equal length"):
        brier_score([0.5, 0.5], [1])


def test_self_consistency_majority_share_and_ties():
    assert self_consistency(["4", "3", "4", "4"]) == ("4", 0.75)
    assert self_consistency(["3", "4", "4", "3"]) == ("3", 0.5)  # tie: the first sampled wins
    assert self_consistency(["4", "3", "3", "4"]) == ("4", 0.5)
    assert self_consistency([None, None, "2"]) == ("2", pytest.approx(1 / 3))  # None counts in k, cannot win
    assert self_consistency([None, None]) == (None, 1.0)
    with pytest.raises(ValueError):
        self_consistency([])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3 + 4 = 7. 7 * 2 = 14. The answer is 14.", "14"),
        ("The answer is $1,250.50", "1250.5"),
        ("So there are 18.0 apples. The answer is 18.0.", "18"),
        ("We get 5 and then 12", "12"),
        ("The answer is 3. Wait, the answer is -4.", "-4"),
        ("the answer is 1/2.", "0.5"),
        ("no digits here", None),
    ],
)
def test_extract_number(text, expected):
    assert extract_answer(text, "number") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Birds fly. The answer is (B).", "B"),
        ("The answer is b", "B"),
        ("The answer is B) Paris", "B"),
        ("The answer is Paris.", "B"),
        ("I would pick C", "C"),
        ("The answer is E", None),
        ("The answer is Rome.", None),
    ],
)
def test_extract_choice(text, expected):
    assert extract_answer(text, "choice", ["London", "Paris", "Berlin", "Madrid"]) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("'great' is a positive word. The answer is positive.", "positive"),
        ("The answer is Negative sentiment", "negative"),
        ("positive? no: negative", "negative"),
        ("The answer is neutral.", None),
    ],
)
def test_extract_label(text, expected):
    assert extract_answer(text, "label", ["positive", "negative"]) == expected


def test_gold_canonical_and_matching():
    assert canonical_gold("1,000", "number") == "1000"
    assert canonical_gold("(c)", "choice") == "C"
    assert canonical_gold("Paris", "choice", ["London", "Paris"]) == "B"
    assert canonical_gold(" Positive ", "label") == "positive"
    assert answers_match("14.00005", "14", "number") and not answers_match("14.01", "14", "number")
    assert not answers_match(None, "14", "number")
    with pytest.raises(ValueError, match="not a number"):
        canonical_gold("many", "number")


def test_line_fit_hand_computed():
    assert fit_line([0, 1, 2], [1, 3, 5]) == pytest.approx((2.0, 1.0, 1.0))
    slope, intercept, r2 = fit_line([0, 1, 2, 3], [0, 1, 0, 1])
    assert (slope, intercept, r2) == pytest.approx((0.2, 0.2, 0.2))
    with pytest.raises(ValueError):
        fit_line([1, 1], [0, 1])


def test_bootstrap_interval_brackets_the_fit_and_is_seeded():
    x = [0.0, 0.1, 0.2, 0.4, 0.5, 0.8]
    y = [0.02, 0.08, 0.25, 0.35, 0.55, 0.7]
    fit = bootstrap_line_fit(x, y, resamples=500, seed=1)
    assert fit.slope_interval[0] <= fit.slope <= fit.slope_interval[1]
    assert fit == bootstrap_line_fit(x, y, resamples=500, seed=1)
    exact = bootstrap_line_fit([0, 1, 2], [1, 3, 5], resamples=200)
    assert exact.slope_interval == pytest.approx((2.0, 2.0))
