"""The cluster bootstrap resamples dialogues, not replies."""

import math
import random

import numpy as np
import pytest

from qwenkit.roleplay.aggregate import aggregate, bootstrap_ci, cluster_bootstrap_ci


def _reference(values, clusters, reps, seed, level=0.95):
    """A loop over the same draws: each resample concatenates the values of the drawn dialogues."""
    ids = sorted(set(clusters), key=str)
    members = {c: [v for v, k in zip(values, clusters, strict=True) if k == c] for c in ids}
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(reps, len(ids)))
    means = []
    for row in draws:
        pooled = [v for i in row for v in members[ids[i]]]
        means.append(sum(pooled) / len(pooled))
    return tuple(float(q) for q in np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))


def test_matches_a_loop_over_the_same_draws_with_unequal_dialogues():
    rng = random.Random(3)
    clusters = [f"d{rng.randrange(7)}" for _ in range(60)]
    values = [rng.choice([20, 60, 100]) for _ in clusters]
    got = cluster_bootstrap_ci(values, clusters, reps=400, seed=5)
    assert got == pytest.approx(_reference(values, clusters, 400, 5), abs=1e-9)


def test_singleton_dialogues_give_the_reply_bootstrap():
    values = [20.0, 100.0, 60.0, 60.0, 40.0, 80.0]
    clusters = [f"c{i}" for i in range(len(values))]
    assert cluster_bootstrap_ci(values, clusters, reps=300, seed=1) == bootstrap_ci(values, reps=300, seed=1)


def test_correlated_replies_widen_the_interval():
    # 4 dialogues, each scored the same on all of its 10 replies: the information is 4 values, not 40
    per_dialogue = [20.0, 40.0, 60.0, 100.0]
    values = [v for v in per_dialogue for _ in range(10)]
    clusters = [f"d{i}" for i in range(4) for _ in range(10)]
    cluster = cluster_bootstrap_ci(values, clusters, reps=1000, seed=0)
    assert cluster == pytest.approx(bootstrap_ci(per_dialogue, reps=1000, seed=0))
    reply = bootstrap_ci(values, reps=1000, seed=0)
    assert cluster[1] - cluster[0] > 1.8 * (reply[1] - reply[0])


def test_order_of_the_values_does_not_matter_and_bad_input_is_refused():
    values = [20.0, 60.0, 100.0, 60.0, 20.0]
    clusters = ["b", "a", "b", "c", "a"]
    order = [3, 0, 4, 1, 2]
    shuffled = cluster_bootstrap_ci([values[i] for i in order], [clusters[i] for i in order], reps=200, seed=2)
    assert shuffled == cluster_bootstrap_ci(values, clusters, reps=200, seed=2)
    assert all(math.isnan(x) for x in cluster_bootstrap_ci([], [], reps=10))
    with pytest.raises(ValueError, match="differ in length"):
        cluster_bootstrap_ci([1.0], [], reps=10)


def test_aggregate_resamples_the_groups_dialogues():
    judgments = [{"judge": "j", "player": "p", "dialogue_id": f"d{i % 3}", "dimension": "EC",
                  "normalised": float(20 * (1 + i % 5)) if i != 4 else None} for i in range(12)]
    row, = aggregate(judgments, ["judge", "player", "dimension"], reps=200, seed=4)
    valid = [j for j in judgments if j["normalised"] is not None]
    expected = cluster_bootstrap_ci([j["normalised"] for j in valid], [f"p/{j['dialogue_id']}" for j in valid],
                                    reps=200, seed=4)
    assert (row["ci_low"], row["ci_high"]) == expected
    assert row["n"] == 11 and row["invalid"] == 1 and row["dialogues"] == 3
