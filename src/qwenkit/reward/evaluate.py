"""Evaluation of a reward model on preference pairs: accuracy (ties wrong) and BT loss per category and subset,
reward-bench v1 section scores, and a style-controlled comparison fitted on a held-out split."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from qwenkit.reward.data import REWARD_BENCH_EXAMPLE_COUNTS, REWARD_BENCH_SECTIONS, PreferencePair
from qwenkit.reward.losses import bradley_terry_loss, pairwise_accuracy


@torch.no_grad()
def score_pairs(model, pairs: Sequence[PreferencePair], batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of every pair's chosen and rejected response (evaluation mode, batched)."""
    contexts = [p.context for p in pairs]
    chosen = model.score(contexts, [p.chosen for p in pairs], batch_size=batch_size)
    rejected = model.score(contexts, [p.rejected for p in pairs], batch_size=batch_size)
    return chosen, rejected


@dataclass
class GroupMetrics:
    pairs: int
    accuracy: float
    bt_loss: float


def group_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> GroupMetrics:
    """Accuracy (``r_c > r_r`` strictly) and BT loss ``-mean log sigmoid(r_c - r_r)`` (no margin) of one group."""
    return GroupMetrics(
        pairs=int(chosen.numel()),
        accuracy=float(pairwise_accuracy(chosen, rejected)),
        bt_loss=float(bradley_terry_loss(chosen.double(), rejected.double())),
    )


@dataclass
class PairEvaluation:
    overall: GroupMetrics
    by_category: dict[str, GroupMetrics] = field(default_factory=dict)
    by_subset: dict[str, GroupMetrics] = field(default_factory=dict)

    def flat(self) -> dict[str, float]:
        """``{"accuracy": .., "bt_loss": .., "<category>/accuracy": .., "<category>/bt_loss": .., ...}``."""
        out = {"accuracy": self.overall.accuracy, "bt_loss": self.overall.bt_loss}
        for name, metrics in self.by_category.items():
            out[f"{name}/accuracy"] = metrics.accuracy
            out[f"{name}/bt_loss"] = metrics.bt_loss
        return out


def evaluate_rewards(pairs: Sequence[PreferencePair], chosen: torch.Tensor, rejected: torch.Tensor) -> PairEvaluation:
    """Metrics over all pairs, per ``category`` and per ``subset`` (pairs without one are only in the overall)."""
    result = PairEvaluation(overall=group_metrics(chosen, rejected))
    for attribute, target in (("category", result.by_category), ("subset", result.by_subset)):
        groups: dict[str, list[int]] = {}
        for index, pair in enumerate(pairs):
            name = getattr(pair, attribute)
            if name is not None:
                groups.setdefault(name, []).append(index)
        for name in sorted(groups):
            index = torch.tensor(groups[name])
            target[name] = group_metrics(chosen[index], rejected[index])
    return result


def evaluate_model(model, pairs: Sequence[PreferencePair], batch_size: int = 64) -> PairEvaluation:
    chosen, rejected = score_pairs(model, pairs, batch_size)
    return evaluate_rewards(pairs, chosen, rejected)


def reward_bench_sections(subset_accuracy: Mapping[str, float]) -> dict[str, float]:
    """reward-bench v1 section scores: each section's subset accuracies weighted by the benchmark's example counts.

    ``section = sum_s acc_s * n_s / sum_s n_s`` over the section's subsets present in ``subset_accuracy``
    (allenai/reward-bench ``calculate_scores_per_section``; ``math-prm`` counts 984, "equal to code"). A section
    with none of its subsets present is left out (reward-bench reports 0 there).
    """
    sections = {}
    for section, subsets in REWARD_BENCH_SECTIONS.items():
        present = [s for s in subsets if s in subset_accuracy]
        if present:
            total = sum(REWARD_BENCH_EXAMPLE_COUNTS[s] for s in present)
            sections[section] = sum(subset_accuracy[s] * REWARD_BENCH_EXAMPLE_COUNTS[s] for s in present) / total
    return sections
