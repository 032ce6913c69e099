import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qwenkit.core.checkpoint import CheckpointError
from qwenkit.core.loop import TrainConfig, lr_factor, shard_batch, train_loop
from qwenkit.core.runs import RunDir

SCRIPT = Path(__file__).with_name("_train_script.py")


def _run(*args, check=True):
    env = {**os.environ, "QWENKIT_QUIET": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], env=env, capture_output=True, text=True,
                          check=check, timeout=300)


def test_kill_and_resume_is_bit_identical(tmp_path):
    _run(tmp_path / "straight", 10, "--out", tmp_path / "straight.pt")
    killed = _run(tmp_path / "killed", 10, "--kill-after", 7, check=False)
    assert killed.returncode == -signal.SIGKILL
    checkpoints = RunDir(tmp_path / "killed").checkpoints_dir
    assert (checkpoints / "latest").read_text().strip() == "step-00000006"
    _run(tmp_path / "killed", 10, "--resume", "--out", tmp_path / "resumed.pt")
    straight = torch.load(tmp_path / "straight.pt")
    resumed = torch.load(tmp_path / "resumed.pt")
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    steps = [r["step"] for r in RunDir(tmp_path / "killed").read_metrics()]
    assert steps == list(range(1, 11)), "a resumed run logs every step exactly once"
    losses_a = [r["loss"] for r in RunDir(tmp_path / "straight").read_metrics()]
    losses_b = [r["loss"] for r in RunDir(tmp_path / "killed").read_metrics()]
    assert losses_a == losses_b


def test_resume_from_corrupt_checkpoint_fails_loudly(tmp_path):
    _run(tmp_path / "run", 3)
    weights = tmp_path / "run" / "checkpoints" / "step-00000003" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    result = _run(tmp_path / "run", 6, "--resume", check=False)
    assert result.returncode != 0
    assert "CheckpointError" in result.stderr and "truncated" in result.stderr


@pytest.mark.slow
def test_two_process_data_parallel_matches_one_process(tmp_path):
    """torchrun, 2 CPU processes on gloo: each takes half of every global batch; DDP averages gradients."""
    _run(tmp_path / "single", 4, "--out", tmp_path / "single.pt", "--dropout", 0.0, "--noise", 0)
    env = {**os.environ, "QWENKIT_QUIET": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
               str(SCRIPT), str(tmp_path / "ddp"), "4", "--out", str(tmp_path / "ddp.pt"),
               "--dropout", "0", "--noise", "0"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    single = torch.load(tmp_path / "single.pt")
    ddp = torch.load(tmp_path / "ddp.pt")
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=0, atol=2e-6)
    single_loss = [r["loss"] for r in RunDir(tmp_path / "single").read_metrics()]
    ddp_loss = [r["loss"] for r in RunDir(tmp_path / "ddp").read_metrics()]
    assert ddp_loss == pytest.approx(single_loss, abs=1e-6)


def test_lr_schedule_shapes():
    config = TrainConfig(max_steps=10, warmup_steps=2, lr_schedule="linear", min_lr_ratio=0.1)
    factors = [lr_factor(s, config) for s in range(10)]
    assert factors[:2] == [0.5, 1.0]
    assert factors[2] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(0.1 + 0.9 * (1 / 8))
    cosine = TrainConfig(max_steps=5, lr_schedule="cosine")
    assert lr_factor(0, cosine) == pytest.approx(1.0)
    assert lr_factor(5, cosine) == pytest.approx(0.0)


def test_shard_batch_splits_evenly_and_refuses_uneven():
    batch = {"x": torch.arange(8), "names": list("abcdefgh"), "scalar": torch.tensor(3.0)}
    second = shard_batch(batch, 1, 2)
    assert second["x"].tolist() == [4, 5, 6, 7] and second["names"] == list("efgh")
    assert second["scalar"].item() == 3.0
    with pytest.raises(ValueError, match="divisible by 3"):
        shard_batch(batch, 0, 3)


def test_in_process_loop_logs_evaluates_and_accumulates(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = [{"x": torch.ones(4, 3), "y": torch.zeros(4, 1)}] * 8

    def step(m, b):
        loss = ((m(b["x"]) - b["y"]) ** 2).mean()
        return loss, {"sq": loss.detach()}

    run = RunDir(tmp_path)
    result = train_loop(model, step, data, TrainConfig(max_steps=4, grad_accum_steps=2, lr=0.01, eval_every=2),
                        run=run, eval_fn=lambda m: {"bias": m.bias.item()})
    assert result.step == 4 and len(result.history) == 4
    assert [e["step"] for e in result.eval_history] == [2, 4]
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    records = run.read_metrics()
    assert {"loss", "lr", "grad_norm", "sq"} <= set(records[0])
    assert any("eval/bias" in r for r in records)
    with pytest.raises(ValueError, match="ran out"):
        train_loop(torch.nn.Linear(3, 1), step, data[:3], TrainConfig(max_steps=2, grad_accum_steps=2))


def test_resume_path_must_exist(tmp_path):
    with pytest.raises(CheckpointError):
        train_loop(torch.nn.Linear(1, 1), lambda m, b: (m(b).sum(), {}), lambda i: torch.ones(1, 1),
                   TrainConfig(max_steps=1), resume=tmp_path / "missing")


def test_metrics_survive_a_torn_last_line(tmp_path):
    run = RunDir(tmp_path)
    run.log(1, {"loss": 1.0})
    with run.metrics_path.open("a") as f:
        f.write('{"step": 2, "lo')
    assert run.read_metrics() == [{"step": 1, "loss": 1.0}]
    run.truncate_metrics(0)
    assert run.read_metrics() == []
    shutil.rmtree(tmp_path)
    assert json.dumps({}) == "{}"


def test_fresh_run_refuses_to_overwrite_checkpoints(tmp_path):
    _run(tmp_path / "run", 3)
    result = _run(tmp_path / "run", 3, check=False)
    assert result.returncode != 0 and "--resume" in result.stderr


def test_metric_reported_by_some_micro_batches_is_not_diluted():
    calls = {"n": 0}

    def step(m, b):
        calls["n"] += 1
        loss = m(b).pow(2).mean()
        return loss, ({"only_odd": 4.0} if calls["n"] % 2 else {})

    result = train_loop(torch.nn.Linear(2, 1), step, lambda i: torch.ones(2, 2), TrainConfig(max_steps=2,
                        grad_accum_steps=2))
    assert [h["only_odd"] for h in result.history] == [4.0, 4.0]


def test_manual_backward_equals_automatic():
    def auto_step(m, b):
        return m(b).pow(2).mean(), {}

    def manual_step(m, b, backward):
        first, second = b[:2], b[2:]
        # two backward passes over halves of the batch, as GradCache does with chunks
        loss_a = m(first).pow(2).sum() / len(b)
        backward(loss_a, sync=False)
        loss_b = m(second).pow(2).sum() / len(b)
        backward(loss_b)
        return (loss_a + loss_b).detach(), {}

    data = lambda i: torch.arange(8, dtype=torch.float32).reshape(4, 2) / (i + 1)  # noqa: E731
    config = TrainConfig(max_steps=3, grad_accum_steps=2, lr=0.1)
    torch.manual_seed(0)
    auto_model = torch.nn.Linear(2, 1)
    manual_model = torch.nn.Linear(2, 1)
    manual_model.load_state_dict(auto_model.state_dict())
    a = train_loop(auto_model, auto_step, data, config)
    b = train_loop(manual_model, manual_step, data, config, manual_backward=True)
    for p, q in zip(auto_model.parameters(), manual_model.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history])
    with pytest.raises(RuntimeError, match="never called backward"):
        train_loop(torch.nn.Linear(2, 1), lambda m, b, backward: (m(b).sum(), {}), data, config,
                   manual_backward=True)
