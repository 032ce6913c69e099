"""Bradley-Terry preference loss (pure tensor math)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: torch.Tensor | None = None,
    center_coefficient: float = 0.0,
) -> torch.Tensor:
    """Mean Bradley-Terry negative log-likelihood of preferring ``chosen`` over ``rejected``.

    ``L = -mean(log sigmoid(r_c - r_r - m)) + center_coefficient * mean((r_c + r_r)^2)``

    The first term is the BT loss of WorldPM (arXiv 2505.10527, ``P(y_c > y_r) = sigmoid(r_c - r_r)``, no margin);
    the optional margin ``m`` is Llama-2's (arXiv 2307.09288, Eq. 2) and the centring term is Eisenstein et al.
    (arXiv 2312.09244, Eq. 2). This is exactly the loss of TRL's ``RewardTrainer.compute_loss`` with ``margin`` and
    ``center_rewards_coefficient``. Inputs are 1-D tensors of the same length (one reward per pair).
    """
    if chosen_rewards.shape != rejected_rewards.shape or chosen_rewards.dim() != 1:
        raise ValueError(
            f"chosen and rejected rewards must be 1-D tensors of one shape, got {tuple(chosen_rewards.shape)} and "
            f"{tuple(rejected_rewards.shape)}"
        )
    if chosen_rewards.numel() == 0:
        raise ValueError("bradley_terry_loss needs at least one pair; got an empty batch")
    difference = chosen_rewards - rejected_rewards
    if margin is not None:
        difference = difference - margin.to(difference.dtype)
    loss = -F.logsigmoid(difference).mean()
    if center_coefficient:
        loss = loss + center_coefficient * torch.mean((chosen_rewards + rejected_rewards) ** 2)
    return loss


def pairwise_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Share of pairs with ``r_c > r_r`` strictly: a tie counts as wrong (reward-bench v1, ``scripts/run_rm.py``)."""
    return (chosen_rewards > rejected_rewards).to(torch.float64).mean()
