"""The RL trainer: SFT warm start, then rollouts and clipped policy-gradient updates through ``core.loop.train_loop``.

``train(config, out)`` runs one RL experiment and writes ``metrics.jsonl``, checkpoints, plots and a report into the
run directory. The update step (:func:`make_step_fn`) is a plain ``step_fn(model, batch) -> (loss, metrics)``:
policy log-probs and entropies in one chunked pass, the optional 80/20 mask with a threshold over every process, the
policy loss of :mod:`qwenkit.rl.losses` normalised by the whole mini-batch, the MoE router aux loss, and diagnostics
(clip fraction, ratios, KL, entropy, and for MoE the routing change since the rollout).
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from qwenkit.core.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from qwenkit.core.loop import TrainConfig, train_loop
from qwenkit.core.runs import ResumeMode, RunDir, normalize_resume, start_run
from qwenkit.lm.logprobs import token_logprobs
from qwenkit.lm.sampling import SamplingParams, sample
from qwenkit.rl.config import RLConfig
from qwenkit.rl.losses import high_entropy_mask, policy_loss
from qwenkit.rl.rollout import RolloutSource, is_moe, route_change, routed_experts
from qwenkit.rl.tasks import Task, chat_formatted, draw_examples, get_task


def build_model_and_tokenizer(config: RLConfig):
    """A local checkpoint (``model.path``) with its tokenizer, or a tiny Qwen3 with the synthetic tokenizer."""
    if config.model.path:
        from qwenkit.lm.loading import resolve_model

        resolved = resolve_model(config.model.path, gguf_file=config.model.gguf_file, dtype=torch.float32)
        model, tokenizer = resolved.model, resolved.tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer
    from qwenkit.lm.models import tiny_qwen3_for
    from qwenkit.lm.tokenizer import build_synthetic_tokenizer

    tokenizer = build_synthetic_tokenizer()
    model = tiny_qwen3_for(tokenizer, config.model.size, moe=config.model.moe, seed=config.model.seed)
    return model, tokenizer


def make_step_fn(config: RLConfig, aux_coef: float = 0.0) -> Callable[[torch.nn.Module, dict], tuple]:
    algo = config.algorithm
    max_length = config.rollout.max_new_tokens

    def step_fn(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        moe = "routes" in batch
        scores = token_logprobs(
            model, batch["input_ids"], batch["attention_mask"], completion_mask=batch["completion_mask"],
            temperature=config.rollout.temperature, with_entropy=True, chunk_size=config.logprob_chunk_size,
            **({"output_router_logits": True} if moe else {}),
        )
        mask = scores.mask
        token_mask = high_entropy_mask(scores.entropy, mask, algo.rho) if algo.rho < 1 else None
        normalizer = batch["token_normalizer"] if algo.aggregation == "token-mean" else batch["seq_normalizer"]
        loss, stats = policy_loss(
            scores.logprobs, batch["old_logp"], batch["advantages"], mask, level=algo.level,
            clip=(algo.clip_low, algo.clip_high), aggregation=algo.aggregation, token_mask=token_mask,
            ref_logp=batch.get("ref_logp"), kl_coef=algo.kl_coef, normalizer=normalizer,
            max_length=max_length or batch["input_ids"].shape[1],
        )
        loss = loss * batch["loss_scale"]
        metrics = {f"policy/{k}": v for k, v in stats.as_dict().items()}
        valid_entropy = scores.entropy[mask]
        metrics["policy/entropy"] = float(valid_entropy.mean()) if valid_entropy.numel() else 0.0
        if batch["off_policy"]:
            metrics["policy/off_policy_clip_fraction"] = stats.clip_fraction
        if moe and scores.router_logits is not None:
            top_k = getattr(model, "module", model).config.num_experts_per_tok
            now = routed_experts(scores.router_logits, top_k, tuple(batch["input_ids"].shape))
            pairs, tokens = route_change(batch["routes"], now, mask)
            metrics["moe/route_change"] = pairs
            metrics["moe/route_change_any_layer"] = tokens
            if scores.aux_loss is not None and aux_coef:
                loss = loss + aux_coef * scores.aux_loss
                metrics["moe/aux_loss"] = float(scores.aux_loss.detach())
        metrics.update(batch["rollout_metrics"])
        return loss, metrics

    return step_fn


def sft_batch(task: Task, tokenizer, batch_size: int, seed: int, index: int) -> dict[str, torch.Tensor]:
    examples = draw_examples(task, batch_size, seed=hash((seed, index)) % 2**31)
    rows = []
    for e in examples:
        prompt = tokenizer(e.prompt, add_special_tokens=False)["input_ids"]
        target = tokenizer(e.target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((prompt, target))
    width = max(len(p) + len(t) for p, t in rows)
    pad_id = tokenizer.pad_token_id
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    completion = torch.zeros_like(ids, dtype=torch.bool)
    for r, (p, t) in enumerate(rows):
        ids[r, : len(p) + len(t)] = torch.tensor(p + t)
        attention[r, : len(p) + len(t)] = 1
        completion[r, len(p) : len(p) + len(t)] = True
    return {"input_ids": ids, "attention_mask": attention, "completion_mask": completion}


def sft_step(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean negative log-likelihood of the target tokens (and EOS)."""
    scores = token_logprobs(
        model, batch["input_ids"], batch["attention_mask"], completion_mask=batch["completion_mask"]
    )
    nll = -(scores.logprobs * scores.mask).sum() / scores.mask.sum().clamp(min=1)
    loss = nll + (scores.aux_loss * 0.01 if scores.aux_loss is not None else 0.0)
    return loss, {"sft/nll": float(nll.detach())}


@torch.no_grad()
def held_out_scores(model, tokenizer, task: Task, examples, max_new_tokens: int, *, temperature: float = 0.0,
                    seed: int = 0) -> dict[str, float]:
    """``pass_rate`` (share of ``examples`` whose completion gets reward >= 1) and mean ``reward``, greedy by default
    or sampled at ``temperature``."""
    if not examples:
        return {"pass_rate": 0.0, "reward": 0.0}
    batch = sample(
        getattr(model, "module", model), tokenizer, [e.prompt for e in examples],
        SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed),
    )
    rewards = [task.reward(e.prompt, text, e.reference) for e, text in zip(examples, batch.texts, strict=True)]
    return {"pass_rate": sum(r >= 1.0 for r in rewards) / len(rewards), "reward": sum(rewards) / len(rewards)}



def warm_start(model, tokenizer, task: Task, config: RLConfig, run: RunDir, seed: int, quiet: bool | None) -> dict:
    """SFT for ``config.sft.steps`` steps, saved under ``run/sft`` so a resumed run reuses it; returns stats."""
    directory = run.path / "sft"
    saved = latest_checkpoint(directory)
    if saved is not None:
        checkpoint = load_checkpoint(saved)
        model.load_state_dict(checkpoint.model)
        return dict(checkpoint.state["stats"])
    if config.sft.steps == 0:
        return {}
    sft_config = TrainConfig(max_steps=config.sft.steps, lr=config.sft.lr, lr_schedule="cosine", warmup_steps=5,
                             seed=seed, max_grad_norm=1.0)
    result = train_loop(
        model, sft_step, lambda i: sft_batch(task, tokenizer, config.sft.batch_size, seed, i), sft_config,
        description="SFT warm start", quiet=quiet,
    )
    stats = {"sft/final_nll": result.history[-1]["sft/nll"]}
    if _env_rank() == 0:  # one writer; the other processes hold the same weights
        save_checkpoint(directory, config.sft.steps, {k: v.detach().clone() for k, v in model.state_dict().items()},
                        {"stats": stats})
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return stats


@dataclass
class TrainResult:
    run: RunDir
    history: list[dict[str, float]]
    eval_history: list[dict[str, float]]
    sft: dict[str, float] = field(default_factory=dict)
    samples: list[tuple[str, str, float]] = field(default_factory=list)


def train(
    config: RLConfig,
    out: str | Path,
    *,
    seed: int | None = None,
    resume: ResumeMode | str = False,
    quiet: bool | None = None,
    report: bool = True,
) -> TrainResult:
    """Run one RL experiment into ``out`` (see the module docstring); ``seed`` overrides ``trainer.seed``.

    The task and the model are loaded before anything is written to ``out``; ``resume`` as in
    :func:`qwenkit.core.runs.start_run` (a changed training config is refused).
    """
    import torch.distributed as dist

    from qwenkit.lm.loading import offline_environment

    offline_environment()
    seed = config.trainer.seed if seed is None else seed
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else _env_world_size()
    trainer_config = config.trainer.model_copy(update={"max_steps": config.max_steps, "seed": seed})
    task = get_task(config.task)
    model, tokenizer = build_model_and_tokenizer(config)
    if config.chat_format:
        task = chat_formatted(task, lambda text: tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True))
    if config.reward_model:
        from qwenkit.reward import reward_function

        task = dataclasses.replace(task, reward=reward_function(config.reward_model),
                                   description=f"{task.description}, scored by the reward model {config.reward_model}")
    resolved_config = config.model_copy(update={"trainer": trainer_config})
    run = start_run(out, resolved_config, resume=resume) if world == 1 or _env_rank() == 0 else RunDir(out)
    resume = normalize_resume(resume)
    random.seed(seed)
    torch.manual_seed(seed)
    sft_stats = warm_start(model, tokenizer, task, config, run, seed, quiet)
    max_new = config.rollout.max_new_tokens or task.max_new_tokens
    eval_examples = draw_examples(task, config.eval_prompts, seed=10_000 + seed)

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        """Greedy and sampled (T = rollout temperature) pass rate and mean reward on the held-out prompts."""
        if not eval_examples:
            return {}
        greedy = held_out_scores(m, tokenizer, task, eval_examples, max_new)
        sampled = held_out_scores(m, tokenizer, task, eval_examples, max_new,
                                  temperature=config.rollout.temperature, seed=seed)
        return {"pass_rate": greedy["pass_rate"], "reward": greedy["reward"],
                "sampled_pass_rate": sampled["pass_rate"], "sampled_reward": sampled["reward"]}

    sft_stats.update({f"sft/eval_{name}": value for name, value in evaluate(model).items()})
    ref_model = None
    if config.algorithm.kl_coef > 0:
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    aux_coef = 0.0
    if is_moe(model):
        aux_coef = config.algorithm.router_aux_coef
        if aux_coef is None:
            aux_coef = float(getattr(model.config, "router_aux_loss_coef", 0.0))
    samples: list[tuple[str, str, float]] = []

    def keep_samples(rollout) -> None:
        samples.clear()
        rows = rollout.tensors["rewards"].tolist()
        for r in range(min(6, len(rows))):
            samples.append((rollout.prompts[r], rollout.texts[r], rows[r]))

    source = RolloutSource(model, tokenizer, task, config, seed, ref_model=ref_model, world_size=world,
                           on_rollout=keep_samples)

    result = train_loop(
        model, make_step_fn(config, aux_coef), source, trainer_config, run=run, eval_fn=evaluate, resume=resume,
        stateful={"rollouts": source}, description=f"RL {config.algorithm.level}", quiet=quiet,
    )
    outcome = TrainResult(run, result.history, result.eval_history, sft_stats, list(samples))
    if report and (world == 1 or _env_rank() == 0):
        from qwenkit.rl.report import write_run_report

        write_run_report(outcome, config)
    return outcome


def _env_world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def _env_rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))
