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


def write_evaluation(
    model,
    test_pairs: Sequence[PreferencePair],
    out,
    *,
    held_out: Sequence[PreferencePair] | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> dict:
    """Evaluate on ``test_pairs`` and write ``eval.json`` and ``report.md``/``.html`` into ``out``.

    With ``held_out`` pairs, style control is fitted on them and applied to the test pairs.
    """
    import json
    from dataclasses import asdict
    from pathlib import Path

    from qwenkit.core.report import Report
    from qwenkit.reward.style import style_control

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen, rejected = score_pairs(model, test_pairs, batch_size)
    evaluation = evaluate_rewards(test_pairs, chosen, rejected)
    record = {
        "overall": asdict(evaluation.overall),
        "by_category": {k: asdict(v) for k, v in evaluation.by_category.items()},
        "by_subset": {k: asdict(v) for k, v in evaluation.by_subset.items()},
        "reward_bench_sections": reward_bench_sections({k: v.accuracy for k, v in evaluation.by_subset.items()}),
    }
    report = Report("Reward-model evaluation")
    report.text(f"{len(test_pairs)} test pairs. Accuracy counts a tie as wrong; BT loss is "
                "`-mean log sigmoid(r_chosen - r_rejected)`.")
    rows = [{"group": "all", **asdict(evaluation.overall)}]
    rows += [{"group": f"category {k}", **asdict(v)} for k, v in evaluation.by_category.items()]
    rows += [{"group": f"subset {k}", **asdict(v)} for k, v in evaluation.by_subset.items()]
    report.table(rows, ["group", "pairs", "accuracy", "bt_loss"])
    if record["reward_bench_sections"]:
        report.heading("reward-bench v1 sections")
        report.table([{"section": k, "score": v} for k, v in record["reward_bench_sections"].items()])
    if held_out is not None:
        held_chosen, held_rejected = score_pairs(model, held_out, batch_size)
        tokenizer = model.tokenizer

        def count_tokens(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        control = style_control((held_out, held_chosen.tolist(), held_rejected.tolist()),
                                (test_pairs, chosen.tolist(), rejected.tolist()), seed=seed,
                                count_tokens=count_tokens)
        record["style_control"] = asdict(control)
        report.heading("Style control (fitted on the held-out pairs, applied to the test pairs)")
        report.table([
            {"judge": "raw rewards (r_c > r_r)", "test accuracy": control.reward_accuracy},
            {"judge": "logistic on reward difference", "test accuracy": control.reward_only_accuracy},
            {"judge": "logistic on style features only", "test accuracy": control.style_only_accuracy},
            {"judge": "logistic on reward difference + style", "test accuracy": control.combined_accuracy},
        ])
        share = "n/a (rewards not above chance)" if control.style_share is None else f"{control.style_share:.2f}"
        report.text(f"Share of the rewards' above-chance accuracy that style alone reaches: {share}. Reward weight "
                    f"after style control {control.reward_coefficient:.3f} "
                    f"(alone {control.reward_only_coefficient:.3f}); style weights {control.style_coefficients}.")
    (out / "eval.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    report.write(out)
    return record
