"""Aggregation of judgments: mean normalised score per group with a percentile-bootstrap 95 % interval.

Invalid judgments never enter a mean; they are counted per group (``invalid``) so a reader sees the judge's failure
rate next to its scores.
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


def aggregate(judgments: Iterable[dict[str, Any]], keys: Sequence[str], *, reps: int = 1000,
              seed: int = 0) -> list[dict[str, Any]]:
    """One row per distinct ``keys`` tuple (sorted): ``n``, ``invalid``, ``mean``, ``ci_low``, ``ci_high``."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    invalid: dict[tuple, int] = defaultdict(int)
    for judgment in judgments:
        group = tuple(judgment[k] for k in keys)
        if judgment["normalised"] is None:
            invalid[group] += 1
            groups.setdefault(group, [])
        else:
            groups[group].append(float(judgment["normalised"]))
    rows = []
    for group in sorted(groups, key=lambda g: tuple(str(x) for x in g)):
        values = groups[group]
        low, high = bootstrap_ci(values, reps=reps, seed=seed)
        rows.append({**dict(zip(keys, group, strict=True)), "n": len(values), "invalid": invalid[group],
                     "mean": float(np.mean(values)) if values else float("nan"), "ci_low": low, "ci_high": high})
    return rows
