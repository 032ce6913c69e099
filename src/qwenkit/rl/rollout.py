"""Rollouts: sample G responses per prompt, score them, and serve the batch as off-policy mini-batches.

A :class:`RolloutSource` is the ``data(micro_index)`` callable handed to :func:`qwenkit.core.loop.train_loop`. Micro
index ``i`` belongs to rollout batch ``i // micro_per_rollout``; when a new rollout batch is due it is generated with
the *current* weights (the loop asks for data before the step), so the first mini-batch is on-policy and later
mini-batches and iterations are off-policy (where GSPO differs from GRPO). It is ``stateful``: the current rollout
batch is checkpointed, so a run resumed mid-rollout continues with the very same samples.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from qwenkit.lm.logprobs import token_logprobs
from qwenkit.lm.sampling import SamplingParams
from qwenkit.rl.backends import LocalBackend, RolloutBackend
from qwenkit.rl.config import RLConfig
from qwenkit.rl.losses import group_advantages
from qwenkit.rl.tasks import Example, Task


def is_moe(model: torch.nn.Module) -> bool:
    return bool(getattr(getattr(model, "config", None), "num_experts", 0))


def routed_experts(router_logits, top_k: int, shape: tuple[int, int]) -> torch.Tensor:
    """(B, layers, T, k) sorted expert ids chosen by each MoE layer's router for every token."""
    per_layer = [torch.topk(logits.float(), top_k, dim=-1).indices.sort(-1).values for logits in router_logits]
    return torch.stack([ids.view(*shape, top_k) for ids in per_layer], dim=1).to(torch.int16)


def route_change(routes_then: torch.Tensor, routes_now: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """Share of (token, layer) pairs whose routed expert set changed, and share of tokens changed in any layer,
    over the tokens where ``mask`` (B, T) is True."""
    changed = (routes_then != routes_now).any(-1)  # (B, layers, T)
    valid = mask.bool()[:, None, :].expand_as(changed)
    pairs = float(changed[valid].float().mean()) if valid.any() else 0.0
    tokens = changed.any(1)[mask.bool()]
    return pairs, float(tokens.float().mean()) if tokens.numel() else 0.0


@dataclass
class Rollout:
    """One rollout batch of B = prompts * G responses, rows right-padded: prompt, completion, padding."""

    tensors: dict[str, torch.Tensor]
    metrics: dict[str, float] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)


def _pad_rows(prompt_ids: list[list[int]], completion_ids: list[list[int]], logprobs: list[list[float]], pad_id: int):
    width = max(len(p) + len(c) for p, c in zip(prompt_ids, completion_ids, strict=True))
    rows = len(prompt_ids)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    attention = torch.zeros((rows, width), dtype=torch.long)
    completion = torch.zeros((rows, width), dtype=torch.bool)
    sampler_logp = torch.zeros((rows, width), dtype=torch.float32)
    for r, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        ids[r, : len(p) + len(c)] = torch.tensor(p + c, dtype=torch.long)
        attention[r, : len(p) + len(c)] = 1
        completion[r, len(p) : len(p) + len(c)] = True
        sampler_logp[r, len(p) : len(p) + len(c)] = torch.tensor(logprobs[r], dtype=torch.float32)
    return ids, attention, completion, sampler_logp


@torch.no_grad()
def score(model, ids, attention, completion, config: RLConfig, *, routes: bool = False):
    """pi(token) of every position on the model's device; results come back on the CPU, where rollouts are kept."""
    kwargs = {"output_router_logits": True} if routes else {}
    device = next(model.parameters()).device
    out = token_logprobs(
        model, ids.to(device), attention.to(device), completion_mask=completion.to(device),
        temperature=config.rollout.temperature, chunk_size=config.logprob_chunk_size, **kwargs,
    )
    experts = None
    if routes and out.router_logits is not None:
        experts = routed_experts(out.router_logits, model.config.num_experts_per_tok, tuple(ids.shape)).cpu()
    return out.logprobs.float().cpu(), experts


def generate_rollout(
    model: torch.nn.Module,
    tokenizer,
    task: Task,
    config: RLConfig,
    index: int,
    seed: int,
    ref_model: torch.nn.Module | None = None,
    backend: RolloutBackend | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Rollout:
    """Sample (with ``backend``, default: the model itself), reward and score rollout batch ``index`` (deterministic
    given the weights, ``seed`` and ``index``).

    ``shard=(rank, world)`` makes this process handle only its contiguous share of the batch's prompts (with its own
    sampling seed); :func:`gather_rollout` then assembles the global batch on every process.
    """
    backend = backend or LocalBackend(model, tokenizer)
    group = config.rollout.group_size
    rank, world = shard
    if config.rollout.prompts % world:
        raise ValueError(f"rollout.prompts={config.rollout.prompts} cannot be shared by {world} processes; make it "
                         f"divisible by {world} or set rollout.shard_generation=false")
    want = config.rollout.prompts // world
    max_new = config.rollout.max_new_tokens or task.max_new_tokens
    kept: list[tuple[Example, list, list, list, list[float], list[str]]] = []
    flat: list[tuple[Example, list, list, list, list[float], list[str]]] = []
    rounds = 0
    for rounds in range(1, config.rollout.max_sampling_rounds + 1):
        rng = random.Random(f"{seed}-{index}-{rounds}")
        examples = [task.draw(rng) for _ in range(config.rollout.prompts)][rank * want : (rank + 1) * want]
        prompts = [e.prompt for e in examples for _ in range(group)]
        params = SamplingParams(
            max_new_tokens=max_new, temperature=config.rollout.temperature, top_p=config.rollout.top_p,
            top_k=config.rollout.top_k, seed=hash((seed, index, rounds) if world == 1 else (seed, index, rounds, rank))
            % 2**31,
        )
        batch = backend.generate(prompts, params)
        for g, example in enumerate(examples):
            rows = range(g * group, (g + 1) * group)
            rewards = [float(task.reward(example.prompt, batch.texts[r], example.reference)) for r in rows]
            item = (
                example,
                [batch.prompt_ids[r] for r in rows],
                [batch.completion_ids[r] for r in rows],
                [batch.logprobs[r] for r in rows],
                rewards,
                [batch.finish_reasons[r] for r in rows],
            )
            flat.append(item)
            if not config.rollout.dynamic_sampling or len(set(rewards)) > 1:
                kept.append(item)
        if len(kept) >= want or not config.rollout.dynamic_sampling:
            break
    informative = len(kept)
    if len(kept) < want:  # dynamic sampling could not refill: top up with zero-variance groups (advantage 0)
        kept += [item for item in flat if item not in kept][: want - len(kept)]
    kept = kept[:want]

    prompt_ids = [p for item in kept for p in item[1]]
    completion_ids = [c for item in kept for c in item[2]]
    sampler = [lp for item in kept for lp in item[3]]
    rewards = torch.tensor([r for item in kept for r in item[4]], dtype=torch.float32)
    finish = [f for item in kept for f in item[5]]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, attention, completion, sampler_logp = _pad_rows(prompt_ids, completion_ids, sampler, pad_id)
    recomputed, routes = score(model, ids, attention, completion, config, routes=is_moe(model))
    old_logp = recomputed if config.rollout.old_logprobs == "recompute" else sampler_logp
    advantages = group_advantages(
        rewards, group, scale=config.algorithm.scale_rewards, eps=config.algorithm.advantage_eps
    )
    tensors = {
        "input_ids": ids, "attention_mask": attention, "completion_mask": completion, "old_logp": old_logp,
        "advantages": advantages, "rewards": rewards,
    }
    if routes is not None:
        tensors["routes"] = routes
    if ref_model is not None:
        tensors["ref_logp"] = score(ref_model, ids, attention, completion, config)[0]
    lengths = completion.sum(-1).float()
    grouped = rewards.view(-1, group)
    metrics = {
        "rollout/index": float(index),
        "reward/mean": float(rewards.mean()),
        "reward/pass_rate": float((rewards >= 1.0).float().mean()),
        "reward/zero_variance_groups": float((grouped == grouped[:, :1]).all(-1).float().mean()),
        "response/length": float(lengths.mean()),
        "response/truncated": sum(f == "length" for f in finish) / len(finish),
        "rollout/sampler_logp_gap": float((recomputed - sampler_logp).abs()[completion].mean()),
        "rollout/sampling_rounds": float(rounds),
        "rollout/informative_groups": float(informative),
    }
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in completion_ids]
    prompts = [item[0].prompt for item in kept for _ in range(group)]
    return Rollout(tensors, metrics, texts, prompts)


_SUMMED_METRICS = ("rollout/informative_groups",)
_MAX_METRICS = ("rollout/sampling_rounds",)


def gather_rollout(rollout: Rollout) -> Rollout:
    """The global rollout batch from every process's share (rank order), on every process.

    Tensors are padded to the widest share and concatenated along the batch; metrics are averaged over processes
    (every share has the same number of responses), except counts (summed) and sampling rounds (max).
    """
    dist = torch.distributed
    world = dist.get_world_size()
    tensors = rollout.tensors
    width = torch.tensor([tensors["input_ids"].shape[1]])
    dist.all_reduce(width, op=dist.ReduceOp.MAX)
    gathered: dict[str, torch.Tensor] = {}
    for name in sorted(tensors):
        value = tensors[name]
        if value.dim() >= 2 and name != "routes":
            value = torch.nn.functional.pad(value, (0, int(width) - value.shape[1]))
        elif name == "routes":  # (B, layers, T, k)
            value = torch.nn.functional.pad(value, (0, 0, 0, int(width) - value.shape[2]))
        parts = [torch.zeros_like(value) for _ in range(world)]
        dist.all_gather(parts, value.contiguous())
        gathered[name] = torch.cat(parts)
    keys = sorted(rollout.metrics)
    values = torch.tensor([rollout.metrics[k] for k in keys], dtype=torch.float64)
    summed = values.clone()
    dist.all_reduce(summed)
    largest = values.clone()
    dist.all_reduce(largest, op=dist.ReduceOp.MAX)
    metrics = {}
    for i, key in enumerate(keys):
        if key in _SUMMED_METRICS:
            metrics[key] = float(summed[i])
        elif key in _MAX_METRICS or key == "rollout/index":
            metrics[key] = float(largest[i])
        else:
            metrics[key] = float(summed[i]) / world
    return Rollout(gathered, metrics, rollout.texts, rollout.prompts)


class RolloutSource:
    """``data(micro_index)`` for the shared loop; see the module docstring. ``state_dict`` holds the current batch."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        task: Task,
        config: RLConfig,
        seed: int,
        *,
        ref_model: torch.nn.Module | None = None,
        world_size: int = 1,
        on_rollout: Callable[[Rollout], None] | None = None,
        backend: RolloutBackend | None = None,
    ):
        self.backend = backend
        self.model, self.tokenizer, self.task, self.config, self.seed = model, tokenizer, task, config, seed
        self.ref_model = ref_model
        self.world_size = world_size
        self.on_rollout = on_rollout
        self.rollout_index: int | None = None
        self.rollout: Rollout | None = None
        rows = config.rollout.prompts * config.rollout.group_size
        self.mini_rows = rows // config.rollout.num_mini_batches
        self.micro_rows = self.mini_rows // config.trainer.grad_accum_steps
        self.micro_per_rollout = config.steps_per_rollout * config.trainer.grad_accum_steps
        if self.micro_rows % world_size:
            raise ValueError(
                f"a micro-batch of {self.micro_rows} responses cannot be split over {world_size} processes; make "
                "rollout.prompts * rollout.group_size / (num_mini_batches * grad_accum_steps) divisible by it"
            )

    def state_dict(self) -> dict[str, Any]:
        if self.rollout is None:
            return {"index": -1}
        return {"index": self.rollout_index, "tensors": dict(self.rollout.tensors), "metrics": self.rollout.metrics}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["index"] < 0:
            self.rollout_index, self.rollout = None, None
            return
        self.rollout_index = int(state["index"])
        self.rollout = Rollout(dict(state["tensors"]), {k: float(v) for k, v in state["metrics"].items()})

    def __call__(self, micro_index: int) -> dict[str, Any]:
        index, within = divmod(micro_index, self.micro_per_rollout)
        if index != self.rollout_index:
            policy = getattr(self.model, "module", self.model)
            if self.backend is not None:
                self.backend.sync_weights(policy)
            sharded = self.config.rollout.shard_generation and self.world_size > 1
            shard = (torch.distributed.get_rank(), self.world_size) if sharded else (0, 1)
            self.rollout = generate_rollout(
                policy, self.tokenizer, self.task, self.config, index, self.seed, self.ref_model, self.backend, shard
            )
            if sharded:
                self.rollout = gather_rollout(self.rollout)
            self.rollout_index = index
            if self.on_rollout is not None:
                self.on_rollout(self.rollout)
        assert self.rollout is not None
        accum = self.config.trainer.grad_accum_steps
        step_in_rollout, micro = divmod(within, accum)
        iteration, mini = divmod(step_in_rollout, self.config.rollout.num_mini_batches)
        rows = self.rollout.tensors["input_ids"].shape[0]
        order = torch.randperm(rows, generator=torch.Generator().manual_seed(hash((self.seed, index, iteration))
                                                                             % 2**31))
        mini_rows = order[mini * self.mini_rows : (mini + 1) * self.mini_rows]
        rows_here = mini_rows[micro * self.micro_rows : (micro + 1) * self.micro_rows]
        tensors = self.rollout.tensors
        width = int(tensors["attention_mask"][rows_here].sum(-1).max())
        batch: dict[str, Any] = {}
        for name, value in tensors.items():
            if name in ("advantages", "rewards"):
                batch[name] = value[rows_here]
            elif name == "routes":
                batch[name] = value[rows_here][..., :width, :]
            else:
                batch[name] = value[rows_here][:, :width]
        # batch-wide denominators: this micro-batch's share of the mini-batch loss (see policy_loss's normalizer)
        batch["token_normalizer"] = float(tensors["completion_mask"][mini_rows].sum())
        batch["seq_normalizer"] = float(self.mini_rows)
        batch["loss_scale"] = float(self.world_size * accum)
        batch["rollout_metrics"] = dict(self.rollout.metrics)
        batch["off_policy"] = float(iteration > 0 or mini > 0)
        return batch
