"""2 CPU processes on gloo (torchrun) train exactly like one process on the same global batch.

The run uses the 80/20 mask (rho=0.2) with a token-mean loss: equal losses need both the entropy threshold and the
token denominator to be taken over the whole global micro-batch, not per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qwenkit.core.checkpoint import latest_checkpoint, load_checkpoint

SCRIPT = Path(__file__).with_name("rl_train_script.py")


def test_two_process_training_matches_one_process(tmp_path):
    env = {**os.environ, "QWENKIT_QUIET": "1", "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "one"), str(tmp_path / "one.pt")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29547",
               str(SCRIPT), str(tmp_path / "two"), str(tmp_path / "two.pt")]
    double = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr[-3000:]
    one = torch.load(tmp_path / "one.pt")["history"]
    two = torch.load(tmp_path / "two.pt")["history"]
    assert len(one) == len(two) == 4
    for a, b in zip(one, two, strict=True):
        assert a["reward/mean"] == b["reward/mean"]  # the same rollouts
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-6)
    assert any(abs(a["loss"]) > 1e-4 for a in one)
    w1 = load_checkpoint(latest_checkpoint(tmp_path / "one" / "checkpoints")).model
    w2 = load_checkpoint(latest_checkpoint(tmp_path / "two" / "checkpoints")).model
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=1e-5)
