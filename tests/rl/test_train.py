"""The trainer: rollouts, the step function, metrics, exact resume mid-rollout, KL, dynamic sampling, MoE churn."""

from __future__ import annotations

import shutil

import pytest
import torch

from qwenkit.core.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from qwenkit.core.config import ConfigError, load_config
from qwenkit.core.runs import RunDir
from qwenkit.lm.logprobs import token_logprobs
from qwenkit.rl.config import ALGORITHMS, RLConfig
from qwenkit.rl.losses import policy_loss
from qwenkit.rl.rollout import RolloutSource, generate_rollout
from qwenkit.rl.tasks import get_task
from qwenkit.rl.train import build_model_and_tokenizer, train


def small_config(**overrides) -> RLConfig:
    data = {
        "task": "sort3",
        "model": {"size": "nano"},
        "sft": {"steps": 4, "batch_size": 8},
        "rollout": {"prompts": 4, "group_size": 4, "num_mini_batches": 2},
        "rollouts": 2,
        "eval_prompts": 4,
        "trainer": {"lr": 1e-2, "checkpoint_every": 1, "keep_last": 10},
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return load_config(RLConfig, data)


def test_rollout_is_deterministic_and_first_minibatch_on_policy():
    config = small_config()
    model, tokenizer = build_model_and_tokenizer(config)
    task = get_task("sort3")
    a = generate_rollout(model, tokenizer, task, config, index=0, seed=1)
    b = generate_rollout(model, tokenizer, task, config, index=0, seed=1)
    for name in a.tensors:
        assert torch.equal(a.tensors[name], b.tensors[name]), name
    t = a.tensors
    assert t["input_ids"].shape[0] == 16
    # pi_old recomputed from the same weights equals the sampler's log-probs up to float rounding
    assert a.metrics["rollout/sampler_logp_gap"] < 1e-4
    source = RolloutSource(model, tokenizer, task, config, seed=1)
    first, second = source(0), source(1)
    assert first["off_policy"] == 0.0 and second["off_policy"] == 1.0
    assert first["token_normalizer"] == float(sum(b["completion_mask"].sum() for b in (first,)))
    scores = token_logprobs(model, first["input_ids"], first["attention_mask"],
                            completion_mask=first["completion_mask"])
    _, stats = policy_loss(scores.logprobs, first["old_logp"], first["advantages"], scores.mask)
    assert stats.ratio_min == stats.ratio_max == 1.0  # on-policy: every ratio is exactly 1


def test_train_writes_metrics_report_and_resumes_mid_rollout_bit_identically(tmp_path):
    config = small_config(algorithm=ALGORITHMS["grpo_8020"])
    full = train(config, tmp_path / "full", seed=5, quiet=True)
    assert len(full.history) == config.max_steps == 4
    record = full.history[-1]
    for key in ("reward/mean", "reward/pass_rate", "policy/clip_fraction", "policy/entropy", "response/length",
                "policy/kl", "policy/masked_token_fraction", "loss", "grad_norm"):
        assert key in record, key
    assert 0.15 < record["policy/masked_token_fraction"] < 0.5
    assert (tmp_path / "full" / "report.md").exists() and full.eval_history
    # simulate a kill after step 3 (mid-way through the second rollout batch) and resume
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full", resumed_dir)
    checkpoints = resumed_dir / "checkpoints"
    for path in list_checkpoints(checkpoints):
        if int(path.name.split("-")[1]) > 3:
            shutil.rmtree(path)
    (checkpoints / "latest").write_text("step-00000003\n")
    resumed = train(config, resumed_dir, seed=5, quiet=True, resume=True, report=False)
    assert resumed.history[0]["step"] == 4
    a = load_checkpoint(latest_checkpoint(tmp_path / "full" / "checkpoints")).model
    b = load_checkpoint(latest_checkpoint(checkpoints)).model
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert RunDir(resumed_dir).series("loss") == RunDir(tmp_path / "full").series("loss")


def test_moe_run_logs_routing_change_and_kl(tmp_path):
    config = small_config(model={"size": "nano", "moe": True}, algorithm={"kl_coef": 0.1}, sft={"steps": 0},
                          eval_prompts=0)
    result = train(config, tmp_path / "moe", seed=0, quiet=True, report=False)
    last = result.history[-1]
    assert 0.0 <= last["moe/route_change"] <= 1.0 and "moe/aux_loss" in last
    assert any(h["moe/route_change"] > 0 for h in result.history[1:])
    assert any(h["policy/kl"] > 0 for h in result.history[1:])


def test_dynamic_sampling_refills_and_keeps_batch_size():
    config = small_config(rollout={"prompts": 4, "group_size": 4, "num_mini_batches": 2, "dynamic_sampling": True,
                                   "max_sampling_rounds": 2})
    model, tokenizer = build_model_and_tokenizer(config)
    rollout = generate_rollout(model, tokenizer, get_task("sort3"), config, index=0, seed=0)
    assert rollout.tensors["input_ids"].shape[0] == 16
    # an untrained model never solves the task: every group is uninformative, both rounds were tried
    assert rollout.metrics["rollout/sampling_rounds"] == 2 and rollout.metrics["rollout/informative_groups"] == 0


def test_gspo_token_gradient_equals_gspo_on_a_real_model():
    config = small_config()
    model, tokenizer = build_model_and_tokenizer(config)
    rollout = generate_rollout(model, tokenizer, get_task("sort3"), config, index=0, seed=0)
    t = rollout.tensors
    t["advantages"] = torch.linspace(-1, 1, t["advantages"].numel())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # make the batch off-policy
    grads = []
    for level in ("sequence", "sequence_token"):
        model.zero_grad()
        scores = token_logprobs(model, t["input_ids"], t["attention_mask"], completion_mask=t["completion_mask"])
        loss, _ = policy_loss(scores.logprobs, t["old_logp"], t["advantages"], scores.mask, level=level,
                              clip=(3e-4, 4e-4))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    scale = grads[0].abs().max()
    assert scale > 0
    assert torch.equal(grads[0], grads[1])  # float64 loss math: bit-identical float32 gradients


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="rollouts"):
        load_config(RLConfig, {"trainer": {"max_steps": 7}})
    with pytest.raises(ConfigError, match="sequence_token"):
        load_config(RLConfig, {"algorithm": {"level": "sequence", "rho": 0.2}})
    with pytest.raises(ConfigError, match="mini-batches"):
        load_config(RLConfig, {"rollout": {"prompts": 3, "group_size": 3, "num_mini_batches": 2}})
