import pytest
import torch

from qwenkit.reward.data import PreferencePair
from qwenkit.reward.evaluate import evaluate_rewards, reward_bench_sections


def test_metrics_per_category_and_subset_by_hand():
    pairs = [
        PreferencePair(prompt="a", chosen="x", rejected="y", category="adv", subset="s1"),
        PreferencePair(prompt="b", chosen="x", rejected="y", category="adv", subset="s2"),
        PreferencePair(prompt="c", chosen="x", rejected="y", category="obj", subset="s2"),
        PreferencePair(prompt="d", chosen="x", rejected="y"),
    ]
    chosen, rejected = torch.tensor([1.0, 0.0, 2.0, 0.5]), torch.tensor([0.0, 0.0, 3.0, 0.0])
    result = evaluate_rewards(pairs, chosen, rejected)
    assert result.overall.accuracy == pytest.approx(0.5)  # the tie in pair b is wrong
    assert result.by_category["adv"].accuracy == pytest.approx(0.5)
    log2 = torch.log(torch.tensor(2.0)).item()
    expected_adv = (torch.nn.functional.softplus(torch.tensor(-1.0)).item() + log2) / 2
    assert result.by_category["adv"].bt_loss == pytest.approx(expected_adv)
    assert result.by_subset["s2"].pairs == 2 and result.by_subset["s2"].accuracy == 0.0
    assert set(result.by_category) == {"adv", "obj"}


def test_reward_bench_sections_weight_by_example_counts():
    sections = reward_bench_sections({"math-prm": 0.5, "hep-python": 1.0, "alpacaeval-easy": 0.9, "mine": 0.1})
    assert sections["Reasoning"] == pytest.approx((0.5 * 984 + 1.0 * 164) / (984 + 164))
    assert sections["Chat"] == pytest.approx(0.9)
    assert "Safety" not in sections
