"""Losses against hand-computed values."""

import math

import pytest
import torch

from qwenkit.face import losses


def test_vertex_and_velocity_hand_computed():
    pred = torch.tensor([[[0.0], [1.0], [3.0]]])
    target = torch.tensor([[[0.0], [2.0], [2.0]]])
    assert losses.vertex_loss(pred, target).item() == pytest.approx((0 + 1 + 1) / 3)
    # velocities: pred [1, 2], target [2, 0] -> errors [-1, 2] -> (1 + 4) / 2
    assert losses.velocity_loss(pred, target).item() == pytest.approx(2.5)


def test_trend_loss_hand_computed():
    pred = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]])
    target = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]]])
    # steps: pred (1,0),(0,1); target (2,0),(-1,0) -> cos 1 and 0 -> mean(1-1, 1-0) = 0.5
    assert losses.trend_loss(pred, target).item() == pytest.approx(0.5, abs=1e-6)
    assert losses.trend_loss(target * 3, target).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.trend_loss(-target, target).item() == pytest.approx(2.0, abs=1e-6)


def test_local_contrastive_hand_computed():
    audio = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    motion = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    tau = 0.5
    loss = losses.local_contrastive_loss(audio, motion, window=1, temperature=tau).item()
    r = 1 / math.sqrt(2)
    # frame 0 sees frames 0,1; frame 1 sees 0,1,2; frame 2 sees 1,2 (window 1)
    f0 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0)))
    f1 = -math.log(math.exp(1 / tau) / (math.exp(0) + math.exp(1 / tau) + math.exp(0)))
    f2 = -math.log(math.exp(-r / tau) / (math.exp(r / tau) + math.exp(-r / tau)))
    assert loss == pytest.approx((f0 + f1 + f2) / 3, rel=1e-5)


def test_local_contrastive_prefers_aligned_features():
    torch.manual_seed(0)
    features = torch.randn(2, 12, 8)
    aligned = losses.local_contrastive_loss(features, features, window=3)
    shifted = losses.local_contrastive_loss(features, features.roll(1, dims=1), window=3)
    assert aligned < shifted


def test_primitive_diversity():
    assert losses.primitive_diversity_loss(torch.eye(3)).item() == pytest.approx(0.0)
    same = torch.ones(2, 4)
    assert losses.primitive_diversity_loss(same).item() == pytest.approx(1.0, abs=1e-6)


def test_losses_reject_bad_shapes():
    with pytest.raises(ValueError, match="2 frames"):
        losses.velocity_loss(torch.zeros(1, 1, 3), torch.zeros(1, 1, 3))
    with pytest.raises(ValueError, match="same shape"):
        losses.local_contrastive_loss(torch.zeros(1, 3, 2), torch.zeros(1, 3, 4))
