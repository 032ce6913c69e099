import math

import pytest
import torch

from qwenkit.reward.losses import bradley_terry_loss, pairwise_accuracy


def _by_hand(chosen, rejected, margin=None, coef=0.0):
    total = 0.0
    for i, (c, r) in enumerate(zip(chosen, rejected, strict=True)):
        d = c - r - (margin[i] if margin is not None else 0.0)
        total += math.log(1 + math.exp(-d))
    centre = sum((c + r) ** 2 for c, r in zip(chosen, rejected, strict=True)) / len(chosen)
    return total / len(chosen) + coef * centre


def test_plain_bt_loss_by_hand():
    chosen, rejected = [1.5, -0.2, 0.0], [0.5, 0.3, 0.0]
    loss = bradley_terry_loss(torch.tensor(chosen), torch.tensor(rejected))
    assert loss.item() == pytest.approx(_by_hand(chosen, rejected), rel=1e-6)
    assert bradley_terry_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(math.log(2))


def test_margin_and_centring_by_hand():
    chosen, rejected, margin = [2.0, 0.1], [-1.0, 0.4], [1.0, 0.5]
    loss = bradley_terry_loss(torch.tensor(chosen), torch.tensor(rejected), torch.tensor(margin), 0.01)
    assert loss.item() == pytest.approx(_by_hand(chosen, rejected, margin, 0.01), rel=1e-6)


def test_matches_trl_reward_trainer_compute_loss():
    """TRL's own ``RewardTrainer.compute_loss`` on a stub model whose logits are our rewards."""
    trl = pytest.importorskip("trl")
    from types import SimpleNamespace

    torch.manual_seed(0)
    chosen, rejected, margin = torch.randn(5), torch.randn(5), torch.rand(5)
    logits = torch.cat([chosen, rejected]).unsqueeze(-1)
    stub = SimpleNamespace(
        model=SimpleNamespace(training=False),
        args=SimpleNamespace(center_rewards_coefficient=0.01),
        accelerator=SimpleNamespace(gather=lambda t: t, gather_for_metrics=lambda t: t),
        _metrics={"eval": __import__("collections").defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )

    def model(**inputs):
        return SimpleNamespace(logits=logits)

    for with_margin in (False, True):
        inputs = {"attention_mask": torch.ones(10, 3)}
        if with_margin:
            inputs["margin"] = margin
        expected = trl.RewardTrainer.compute_loss(stub, model, inputs)
        ours = bradley_terry_loss(chosen, rejected, margin if with_margin else None, 0.01)
        assert ours.item() == pytest.approx(expected.item(), rel=1e-6)


def test_accuracy_counts_ties_as_wrong():
    accuracy = pairwise_accuracy(torch.tensor([1.0, 2.0, 0.5]), torch.tensor([0.0, 2.0, 1.0]))
    assert accuracy.item() == pytest.approx(1 / 3)


def test_bad_shapes_and_empty_raise():
    with pytest.raises(ValueError, match="1-D"):
        bradley_terry_loss(torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="empty"):
        bradley_terry_loss(torch.zeros(0), torch.zeros(0))
