import numpy as np
import pytest

from qwenkit.reward.data import PreferencePair
from qwenkit.reward.style import normalised_difference, style_control, style_counts


def test_style_counts_and_normalised_difference():
    text = "# Title\n- one\n- two\n1. three\nSome **bold** and __also__.\n"
    assert style_counts(text).tolist() == [len(text), 1, 3, 2]
    assert style_counts("abc", count_tokens=lambda t: 7)[0] == 7
    np.testing.assert_allclose(normalised_difference(np.array([3.0, 0, 2]), np.array([1.0, 0, 0])), [0.5, 0, 1])


def _pairs(n, seed, style_driven):
    rng = np.random.default_rng(seed)
    pairs, chosen, rejected = [], [], []
    for i in range(n):
        long_wins = rng.random() < 0.85
        short, long_text = "ok", "a much longer answer " * 3
        c, r = (long_text, short) if long_wins else (short, long_text)
        pairs.append(PreferencePair(prompt=f"q{i}", chosen=c, rejected=r))
        if style_driven:  # rewards are noise: only style predicts the label
            chosen.append(rng.normal()), rejected.append(rng.normal())
        else:  # rewards know the label
            chosen.append(1.0 + rng.normal(0, 0.3)), rejected.append(rng.normal(0, 0.3))
    return pairs, chosen, rejected


def test_style_alone_explains_labels_that_follow_length():
    result = style_control(_pairs(400, 0, True), _pairs(400, 1, True), seed=0)
    assert result.style_only_accuracy == pytest.approx(0.85, abs=0.05)
    assert result.reward_only_accuracy == pytest.approx(0.5, abs=0.08)
    assert result.style_coefficients["length"] > 1


def test_rewards_that_know_the_label_keep_their_weight_after_style_control():
    result = style_control(_pairs(400, 2, False), _pairs(400, 3, False), seed=0)
    assert result.reward_accuracy > 0.95 and result.combined_accuracy > 0.95
    assert result.reward_coefficient > 1
    assert result.style_share == pytest.approx((result.style_only_accuracy - 0.5) / (result.reward_accuracy - 0.5))


def test_the_fit_never_sees_the_test_split():
    held_out = _pairs(300, 4, True)
    test_pairs, chosen, rejected = _pairs(300, 5, True)
    first = style_control(held_out, (test_pairs, chosen, rejected))
    flipped = [PreferencePair(prompt=p.prompt, chosen=p.rejected, rejected=p.chosen) for p in test_pairs]
    second = style_control(held_out, (flipped, rejected, chosen))
    assert first.style_coefficients == second.style_coefficients
    assert first.reward_coefficient == second.reward_coefficient
    assert second.style_only_accuracy == pytest.approx(1 - first.style_only_accuracy, abs=0.02)


def test_too_few_held_out_pairs_raise():
    with pytest.raises(ValueError, match="at least 10"):
        style_control(_pairs(5, 0, True), _pairs(50, 1, True))
