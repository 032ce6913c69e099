"""Style control: how much of a reward model's pairwise accuracy style alone explains.

Features (WorldPM's four, as in arena-hard-auto's style control): token length, Markdown headers, list items and
bold spans. For a pair shown as (A, B) each feature enters as the normalised difference
``z = (Z_A - Z_B) / (Z_A + Z_B)`` (0 when both are 0).

Three logistic regressions of the label ``y = [A is chosen]`` (orientation of each pair drawn at random, seeded) are
fitted on a **held-out** split and only applied to the test split (the reviewers of WorldPM objected to a style
correction fitted on the test set):

- reward only:  ``P(y) = sigmoid(beta * (r_A - r_B))``
- style only:   ``P(y) = sigmoid(gamma . z)``
- both:         ``P(y) = sigmoid(beta * (r_A - r_B) + gamma . z)``  (WorldPM Eq. 3 / Arena style control)

No intercept: with random orientation the label is symmetric. ``style_share`` is
``(acc_style - 1/2) / (acc_reward - 1/2)``: the part of the reward model's above-chance accuracy that a judge seeing
only style reaches (ours; None when the reward model is not above chance).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qwenkit.reward.data import PreferencePair

STYLE_FEATURES = ("length", "headers", "lists", "bold")
_HEADER = re.compile(r"^\s{0,3}#{1,6}\s", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")


def style_counts(text: str, count_tokens: Callable[[str], int] | None = None) -> np.ndarray:
    """``[length, headers, lists, bold]`` of one response; length in tokens when ``count_tokens`` is given, else
    characters."""
    length = count_tokens(text) if count_tokens is not None else len(text)
    return np.array([length, len(_HEADER.findall(text)), len(_LIST_ITEM.findall(text)), len(_BOLD.findall(text))],
                    dtype=np.float64)


def normalised_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)`` elementwise, 0 where ``a + b == 0`` (counts are non-negative)."""
    total = a + b
    return np.divide(a - b, total, out=np.zeros_like(total, dtype=np.float64), where=total != 0)


@dataclass
class OrientedPairs:
    reward_difference: np.ndarray  # r_A - r_B
    style: np.ndarray  # (pairs, 4) normalised style differences of A against B
    label: np.ndarray  # 1 when A is the chosen response


def orient(pairs: Sequence[PreferencePair], chosen: Sequence[float], rejected: Sequence[float], *, seed: int = 0,
           count_tokens: Callable[[str], int] | None = None) -> OrientedPairs:
    """Show each pair as (A, B) in a seeded random order, with its reward difference, style differences and label."""
    rng = random.Random(seed)
    rows_r, rows_z, labels = [], [], []
    for pair, r_c, r_r in zip(pairs, chosen, rejected, strict=True):
        z_c, z_r = style_counts(pair.chosen, count_tokens), style_counts(pair.rejected, count_tokens)
        if rng.random() < 0.5:
            rows_r.append(float(r_c) - float(r_r))
            rows_z.append(normalised_difference(z_c, z_r))
            labels.append(1)
        else:
            rows_r.append(float(r_r) - float(r_c))
            rows_z.append(normalised_difference(z_r, z_c))
            labels.append(0)
    return OrientedPairs(np.array(rows_r), np.array(rows_z).reshape(-1, len(STYLE_FEATURES)), np.array(labels))


@dataclass
class StyleControl:
    reward_accuracy: float
    """Accuracy of the raw rewards on the test split (r_c > r_r, ties wrong)."""
    reward_only_accuracy: float
    style_only_accuracy: float
    combined_accuracy: float
    reward_coefficient: float
    """beta of the combined fit: the reward's weight once style is controlled for."""
    reward_only_coefficient: float
    style_coefficients: dict[str, float]
    style_share: float | None
    held_out_pairs: int
    test_pairs: int


def _fit(features: np.ndarray, labels: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(fit_intercept=False, C=1e4, max_iter=1000).fit(features, labels)


def style_control(
    held_out: tuple[Sequence[PreferencePair], Sequence[float], Sequence[float]],
    test: tuple[Sequence[PreferencePair], Sequence[float], Sequence[float]],
    *,
    seed: int = 0,
    count_tokens: Callable[[str], int] | None = None,
) -> StyleControl:
    """Fit the three regressions of the module docstring on ``held_out`` = (pairs, chosen rewards, rejected rewards)
    and report their accuracies on ``test``; nothing of ``test`` enters a fit."""
    fit_on = orient(*held_out, seed=seed, count_tokens=count_tokens)
    apply_on = orient(*test, seed=seed + 1, count_tokens=count_tokens)
    if len(fit_on.label) < 10 or len(set(fit_on.label.tolist())) < 2:
        raise ValueError(f"style control needs at least 10 held-out pairs, got {len(fit_on.label)}")
    if len(apply_on.label) == 0:
        raise ValueError("style control needs test pairs")

    def design(oriented: OrientedPairs, reward: bool, style: bool) -> np.ndarray:
        columns = ([oriented.reward_difference[:, None]] if reward else []) + ([oriented.style] if style else [])
        return np.hstack(columns)

    accuracies, models = {}, {}
    for name, reward, style in (("reward", True, False), ("style", False, True), ("both", True, True)):
        models[name] = _fit(design(fit_on, reward, style), fit_on.label)
        predicted = models[name].predict(design(apply_on, reward, style))
        accuracies[name] = float((predicted == apply_on.label).mean())
    chosen, rejected = np.asarray(test[1], dtype=np.float64), np.asarray(test[2], dtype=np.float64)
    reward_accuracy = float((chosen > rejected).mean())
    share = None
    if reward_accuracy > 0.5:
        share = (accuracies["style"] - 0.5) / (reward_accuracy - 0.5)
    both = models["both"].coef_[0]
    return StyleControl(
        reward_accuracy=reward_accuracy,
        reward_only_accuracy=accuracies["reward"],
        style_only_accuracy=accuracies["style"],
        combined_accuracy=accuracies["both"],
        reward_coefficient=float(both[0]),
        reward_only_coefficient=float(models["reward"].coef_[0][0]),
        style_coefficients=dict(zip(STYLE_FEATURES, map(float, both[1:]), strict=True)),
        style_share=share,
        held_out_pairs=len(fit_on.label),
        test_pairs=len(apply_on.label),
    )
