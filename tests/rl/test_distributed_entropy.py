"""The 80/20 threshold over 2 gloo processes equals the single-process threshold, with unequal (even empty) shards."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import torch

from qwenkit.rl.losses import entropy_threshold, high_entropy_mask

SCRIPT = Path(__file__).with_name("rl_entropy_script.py")


def _shards():
    spec = importlib.util.spec_from_file_location("rl_entropy_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.shards()


def test_global_threshold_over_ranks_with_unequal_lengths(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29561",
               str(SCRIPT), str(tmp_path)]
    # a deadlock on unequal lengths would hit the timeout instead of returning
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    entropy, mask = _shards()
    assert float(rank0["threshold"]) == float(rank1["threshold"]) == float(entropy_threshold(entropy, mask, 0.2))
    assert torch.equal(torch.cat([rank0["mask"], rank1["mask"]]), high_entropy_mask(entropy, mask, rho=0.2))
    assert not rank1["mask"].any()  # the rank without valid tokens selects nothing and did not hang
