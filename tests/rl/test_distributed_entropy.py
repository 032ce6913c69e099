"""The 80/20 threshold over 2 gloo processes equals the single-process threshold, with unequal (even empty) shards."""

from __future__ import annotations

import torch
from rl_distributed import run_distributed

from qwenkit.rl.losses import entropy_threshold, high_entropy_mask


def _shards():
    g = torch.Generator().manual_seed(0)
    entropy = torch.rand(6, 40, generator=g)
    lengths = torch.tensor([40, 3, 17, 0, 0, 0])  # rank 0: 60 valid tokens, rank 1: none
    mask = torch.arange(40)[None] < lengths[:, None]
    return entropy, mask


def _rank_mask(rank: int, world: int) -> tuple[torch.Tensor, float]:
    entropy, mask = _shards()
    rows = slice(rank * 3, (rank + 1) * 3)
    local = high_entropy_mask(entropy[rows], mask[rows], rho=0.2)
    threshold = entropy_threshold(entropy[rows], mask[rows], 0.2)
    return local, float(threshold)


def test_global_threshold_over_ranks_with_unequal_lengths():
    entropy, mask = _shards()
    expected = high_entropy_mask(entropy, mask, rho=0.2)
    (mask0, thr0), (mask1, thr1) = run_distributed(_rank_mask, 2)
    assert thr0 == thr1 == float(entropy_threshold(entropy, mask, 0.2))
    assert torch.equal(torch.cat([mask0, mask1]), expected)
    assert not mask1.any()  # the rank without valid tokens selects nothing and did not hang
