"""Judge validation statistics. ``ratings`` is a (raters x items) array with NaN for a missing rating, the layout of
the ``krippendorff`` package's ``reliability_data``; label vectors are 1-D with NaN for missing.

RMTBench reports raw agreement of a rater with the majority label of three annotators (:func:`majority_agreement`);
chance-corrected statistics are added so that a judge that always answers the most common label does not look good.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _paired(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two 1-D label vectors of equal length, got shapes {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


def cohen_kappa(a: ArrayLike, b: ArrayLike, *, weights: str | None = None) -> float:
    """Cohen's kappa of two raters (Cohen 1960): ``kappa = 1 - sum(w * O) / sum(w * E)``.

    ``O`` is the observed joint distribution of the labels, ``E`` the product of the two marginals, and ``w`` the
    disagreement weights: 0 on the diagonal and 1 elsewhere (unweighted, i.e. ``(p_o - p_e) / (1 - p_e)``),
    ``|i - j|`` (``"linear"``) or ``(i - j)^2`` (``"quadratic"``) over the sorted label indices (Cohen 1968).
    Items missing in either vector are dropped. NaN when no items remain or chance agreement is already perfect.
    """
    a, b = _paired(a, b)
    if a.size == 0:
        return float("nan")
    labels = np.unique(np.concatenate([a, b]))
    index_a, index_b = np.searchsorted(labels, a), np.searchsorted(labels, b)
    k = labels.size
    observed = np.zeros((k, k))
    np.add.at(observed, (index_a, index_b), 1.0)
    observed /= a.size
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i, j = np.indices((k, k))
    if weights is None:
        weight = (i != j).astype(float)
    elif weights == "linear":
        weight = np.abs(i - j).astype(float)
    elif weights == "quadratic":
        weight = ((i - j) ** 2).astype(float)
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    chance = float((weight * expected).sum())
    if chance == 0.0:
        return float("nan")
    return 1.0 - float((weight * observed).sum()) / chance


def _category_counts(ratings: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(values, counts): counts[u, c] = how many raters gave item u the value values[c]."""
    ratings = np.asarray(ratings, dtype=float)
    if ratings.ndim != 2:
        raise ValueError(f"ratings must be a (raters x items) array, got shape {ratings.shape}")
    values = np.unique(ratings[~np.isnan(ratings)])
    counts = np.stack([(ratings == v).sum(axis=0) for v in values], axis=1) if values.size else \
        np.zeros((ratings.shape[1], 0))
    return values, counts.astype(float)


def fleiss_kappa(ratings: ArrayLike) -> float:
    """Fleiss' kappa of several raters (Fleiss 1971, eqs. 2-9): ``kappa = (P_bar - P_e) / (1 - P_e)``.

    Per item ``P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1))`` with ``n_ij`` raters choosing category ``j`` and
    ``n_i`` ratings of item ``i``; ``P_bar`` is their mean, ``p_j = sum_i n_ij / sum_i n_i`` and
    ``P_e = sum_j p_j^2``. Items with fewer than two ratings are dropped (with unequal ``n_i`` this is the usual
    generalisation; with complete data it is Fleiss' formula). NaN when nothing is left or ``P_e = 1``.
    """
    _, counts = _category_counts(ratings)
    per_item = counts.sum(axis=1)
    keep = per_item >= 2
    counts, per_item = counts[keep], per_item[keep]
    if counts.shape[0] == 0:
        return float("nan")
    agreement = ((counts * (counts - 1)).sum(axis=1) / (per_item * (per_item - 1))).mean()
    shares = counts.sum(axis=0) / per_item.sum()
    chance = float((shares**2).sum())
    if chance == 1.0:
        return float("nan")
    return float((agreement - chance) / (1.0 - chance))


def krippendorff_alpha(ratings: ArrayLike, level: str = "nominal") -> float:
    """Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's alpha-reliability", eqs. for the
    coincidence matrix): ``alpha = 1 - (n - 1) * sum_ck o_ck d_ck / sum_ck n_c n_k d_ck``.

    ``o_ck = sum_u (number of ordered c-k pairs of different raters in unit u) / (m_u - 1)`` over units with
    ``m_u >= 2`` ratings; ``n_c = sum_k o_ck``; ``n = sum_c n_c``. Distances ``d_ck``: nominal ``[c != k]``;
    interval ``(c - k)^2``; ordinal ``(sum_{g=c..k} n_g - (n_c + n_k) / 2)^2`` over the sorted values.
    NaN when fewer than two pairable values exist or the expected disagreement is 0 (a single value).
    """
    if level not in {"nominal", "ordinal", "interval"}:
        raise ValueError(f"level must be 'nominal', 'ordinal' or 'interval', got {level!r}")
    values, counts = _category_counts(ratings)
    per_unit = counts.sum(axis=1)
    keep = per_unit >= 2
    counts, per_unit = counts[keep], per_unit[keep]
    if counts.shape[0] == 0:
        return float("nan")
    pairs = np.einsum("uc,uk->uck", counts, counts) - np.einsum("uc,ck->uck", counts, np.eye(values.size))
    coincidence = (pairs / (per_unit - 1)[:, None, None]).sum(axis=0)
    totals = coincidence.sum(axis=1)
    n = totals.sum()
    c, k = np.indices((values.size, values.size))
    if level == "nominal":
        distance = (c != k).astype(float)
    elif level == "interval":
        distance = (values[c] - values[k]) ** 2
    else:
        cumulative = np.concatenate([[0.0], np.cumsum(totals)])
        low, high = np.minimum(c, k), np.maximum(c, k)
        distance = (cumulative[high + 1] - cumulative[low] - (totals[c] + totals[k]) / 2) ** 2
    expected = float((np.outer(totals, totals) * distance).sum())
    if n < 2 or expected == 0.0:
        return float("nan")
    return 1.0 - (n - 1) * float((coincidence * distance).sum()) / expected


def majority_labels(ratings: ArrayLike) -> np.ndarray:
    """Per item the label chosen by strictly more raters than any other label; NaN on a tie or with no rating."""
    values, counts = _category_counts(ratings)
    result = np.full(counts.shape[0], np.nan)
    if values.size == 0:
        return result
    order = np.sort(counts, axis=1)
    top = order[:, -1]
    unique = top > (order[:, -2] if values.size > 1 else 0)
    result[unique & (top > 0)] = values[counts.argmax(axis=1)][unique & (top > 0)]
    return result


def majority_agreement(labels: ArrayLike, ratings: ArrayLike) -> float:
    """Raw agreement with the majority (RMTBench's judge statistic): the share of items with a majority label
    (:func:`majority_labels`) on which ``labels`` equals it. Items without a majority or a label are dropped;
    NaN when none remain."""
    a, b = _paired(labels, majority_labels(ratings))
    return float((a == b).mean()) if a.size else float("nan")


def spearman_rho(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman's rank correlation (scipy, average ranks for ties) over items present in both; NaN when either
    side is constant or fewer than two items remain."""
    from scipy.stats import spearmanr

    a, b = _paired(a, b)
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def exact_agreement(ratings: ArrayLike) -> float:
    """Share of items (with two or more ratings) on which every rater gave the same label (self-consistency)."""
    ratings = np.asarray(ratings, dtype=float)
    agree = []
    for column in ratings.T:
        present = column[~np.isnan(column)]
        if present.size >= 2:
            agree.append(bool(np.all(present == present[0])))
    return float(np.mean(agree)) if agree else float("nan")
