"""Aggregation of judgments: mean normalised score per group with a percentile-bootstrap 95 % interval.

The bootstrap resamples dialogues, not replies (:func:`cluster_bootstrap_ci`): the replies of one dialogue share a
character, a user and a history, so they are correlated, and resampling them one by one would give intervals that are
too narrow. Invalid judgments never enter a mean; they are counted per group (``invalid``) so a reader sees the
judge's failure rate next to its scores.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def bootstrap_ci(values: Sequence[float], *, reps: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (Efron & Tibshirani 1993, ch. 13): resample ``values`` with
    replacement ``reps`` times and take the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the means.
    A single value gives ``(v, v)``; no values give ``(nan, nan)``."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(reps, data.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def cluster_bootstrap_ci(values: Sequence[float], clusters: Sequence[Any], *, reps: int = 1000, seed: int = 0,
                         level: float = 0.95) -> tuple[float, float]:
    """Percentile cluster bootstrap of the mean (Davison & Hinkley 1997, sec. 3.8, resampling at the top stage only):
    draw ``C`` of the ``C`` clusters with replacement, take the mean of every value in the drawn clusters,
    ``sum_c S_c / sum_c n_c`` (S_c, n_c: the sum and count of cluster c), ``reps`` times, and return the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles. Clusters are taken in sorted order of their ids, so the
    draws do not depend on the order of ``values``; singleton clusters give :func:`bootstrap_ci` of the values sorted
    by cluster id. No values give ``(nan, nan)``."""
    if len(values) != len(clusters):
        raise ValueError(f"values ({len(values)}) and clusters ({len(clusters)}) differ in length")
    if not values:
        return float("nan"), float("nan")
    ids = sorted(set(clusters), key=str)
    position = {c: i for i, c in enumerate(ids)}
    sums, counts = np.zeros(len(ids)), np.zeros(len(ids))
    for value, cluster in zip(values, clusters, strict=True):
        sums[position[cluster]] += float(value)
        counts[position[cluster]] += 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(reps, len(ids)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def aggregate(judgments: Iterable[dict[str, Any]], keys: Sequence[str], *, reps: int = 1000,
              seed: int = 0) -> list[dict[str, Any]]:
    """One row per distinct ``keys`` tuple (sorted): ``n``, ``dialogues``, ``invalid``, ``mean``, ``ci_low``,
    ``ci_high``; the interval is the cluster bootstrap over the group's dialogues (player and dialogue id)."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    dialogues: dict[tuple, list[str]] = defaultdict(list)
    invalid: dict[tuple, int] = defaultdict(int)
    for judgment in judgments:
        group = tuple(judgment[k] for k in keys)
        if judgment["normalised"] is None:
            invalid[group] += 1
            groups.setdefault(group, [])
        else:
            groups[group].append(float(judgment["normalised"]))
            dialogues[group].append(f"{judgment['player']}/{judgment['dialogue_id']}")
    rows = []
    for group in sorted(groups, key=lambda g: tuple(str(x) for x in g)):
        values = groups[group]
        low, high = cluster_bootstrap_ci(values, dialogues[group], reps=reps, seed=seed)
        rows.append({**dict(zip(keys, group, strict=True)), "n": len(values),
                     "dialogues": len(set(dialogues[group])), "invalid": invalid[group],
                     "mean": float(np.mean(values)) if values else float("nan"), "ci_low": low, "ci_high": high})
    return rows
