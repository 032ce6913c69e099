"""Two gloo processes (torchrun, one launch for all checks):

- the global 80/20 threshold with unequal (even empty) shards, without deadlock;
- sharded rollout generation assembles the same global batch on every rank;
- data-parallel training equals one process on the same global batch. The run uses the 80/20 mask (rho=0.2) with a
  token-mean loss, so equal losses need both the entropy threshold and the token denominator to be taken over the
  whole global micro-batch, not per process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qwenkit.core.checkpoint import latest_checkpoint, load_checkpoint
from qwenkit.core.config import load_config
from qwenkit.rl.config import RLConfig
from qwenkit.rl.losses import entropy_threshold, high_entropy_mask
from qwenkit.rl.rollout import generate_rollout
from qwenkit.rl.tasks import TASKS, get_task
from qwenkit.rl.train import build_model_and_tokenizer, train

SCRIPT = Path(__file__).with_name("rl_dist_script.py")


def _script_module():
    spec = importlib.util.spec_from_file_location("rl_dist_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "QWENKIT_QUIET": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29561",
               str(SCRIPT), str(out)]
    # a deadlock on unequal lengths would hit the timeout instead of returning
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, [torch.load(out / f"rank{r}.pt") for r in (0, 1)]


def test_global_threshold_over_ranks_with_unequal_lengths(ranks):
    _, ranks = ranks
    entropy, mask = _script_module().entropy_shards()
    assert float(ranks[0]["threshold"]) == float(ranks[1]["threshold"]) == float(entropy_threshold(entropy, mask, 0.2))
    assert torch.equal(torch.cat([ranks[0]["mask"], ranks[1]["mask"]]), high_entropy_mask(entropy, mask, rho=0.2))
    assert not ranks[1]["mask"].any()  # the rank without valid tokens selects nothing and did not hang


def test_sharded_rollout_is_the_same_global_batch_on_every_rank(ranks):
    _, ranks = ranks
    a, b = ranks[0]["rollout"], ranks[1]["rollout"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert a["input_ids"].shape[0] == 16  # 4 prompts x 4 responses, 2 prompts sampled by each rank
    # rank r's rows are exactly what that rank's share computes on its own
    config = load_config(RLConfig, _script_module().CONFIG)
    model, tokenizer = build_model_and_tokenizer(config)
    for rank in (0, 1):
        share = generate_rollout(model, tokenizer, get_task("sort3"), config, index=0, seed=7, shard=(rank, 2))
        rows = slice(rank * 8, (rank + 1) * 8)
        width = share.tensors["input_ids"].shape[1]
        for name in ("input_ids", "old_logp", "advantages"):
            got = a[name][rows] if a[name].dim() == 1 else a[name][rows, :width]
            torch.testing.assert_close(got, share.tensors[name], rtol=0, atol=1e-6)
    # the sharded RolloutSource hands both ranks the same global micro-batch (the loop then slices it)
    for name, value in ranks[0]["micro"].items():
        assert torch.equal(value, ranks[1]["micro"][name]), name


def test_two_process_training_matches_one_process(ranks, tmp_path, monkeypatch):
    out, ranks = ranks
    script = _script_module()
    registered: dict = {}
    script.register_digit_share_task(registered)
    monkeypatch.setitem(TASKS, "digit_share", registered["digit_share"])
    single = train(load_config(RLConfig, script.TRAIN_CONFIG), tmp_path / "one", seed=3, quiet=True, report=False)
    two = ranks[0]["history"]
    assert len(single.history) == len(two) == 4
    for a, b in zip(single.history, two, strict=True):
        assert a["reward/mean"] == b["reward/mean"]  # the same rollouts
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-6)
    assert any(abs(a["loss"]) > 1e-4 for a in single.history)
    w1 = load_checkpoint(latest_checkpoint(tmp_path / "one" / "checkpoints")).model
    w2 = load_checkpoint(latest_checkpoint(out / "train" / "checkpoints")).model
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=1e-5)
