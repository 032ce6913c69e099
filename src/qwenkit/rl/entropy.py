"""Token-entropy analysis of generated chains of thought (the 80/20 paper's §3, arXiv 2506.01939).

For a model A: sample completions, score A's entropy at every generated position (the entropy of the distribution
that produced the token, temperature-scaled), and report the share of tokens below 0.01 nats, the 80th percentile
(the paper: > 50% below 0.01 and an 80th percentile of 0.672 on Qwen3-8B), and the highest-entropy "forking" tokens
with their context. With a model B: B's entropies on A's very sequences, and the overlap of the top-``rho`` entropy
positions of A and B (the paper: > 86% between a base and its RLVR model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from qwenkit.lm.logprobs import token_logprobs
from qwenkit.lm.sampling import SamplingParams, sample
from qwenkit.rl.losses import high_entropy_mask, linear_quantile


@dataclass
class EntropyAnalysis:
    tokens: int
    share_below_001: float
    p80: float
    mean: float
    forking: list[dict] = field(default_factory=list)
    """The highest-entropy positions: {"entropy", "context", "token"}."""
    sorted_entropy: list[float] = field(default_factory=list)
    compare: dict[str, float] = field(default_factory=dict)
    compare_sorted_entropy: list[float] = field(default_factory=list)


def entropy_stats(values: torch.Tensor) -> tuple[float, float, float]:
    """(share of values < 0.01, 80th percentile, mean) of a 1-D tensor of entropies."""
    if values.numel() == 0:
        return 0.0, 0.0, 0.0
    ordered = torch.sort(values.float()).values
    return float((values < 0.01).float().mean()), float(linear_quantile(ordered, 0.8)), float(values.mean())


def position_overlap(entropy_a: torch.Tensor, entropy_b: torch.Tensor, mask: torch.Tensor, rho: float) -> float:
    """|top-rho positions of A  and  top-rho positions of B| / |top-rho positions of A| (each over the valid tokens)."""
    top_a = high_entropy_mask(entropy_a, mask, rho)
    top_b = high_entropy_mask(entropy_b, mask, rho)
    return float((top_a & top_b).sum() / top_a.sum().clamp(min=1))


@torch.no_grad()
def analyze(
    model,
    tokenizer,
    prompts: list[str],
    *,
    compare_model=None,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    rho: float = 0.2,
    top: int = 20,
    seed: int = 0,
    batch_size: int = 32,
) -> EntropyAnalysis:
    entropies, compare_entropies, masks, contexts = [], [], [], []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        batch = sample(model, tokenizer, chunk, SamplingParams(max_new_tokens=max_new_tokens,
                                                                temperature=temperature, seed=seed + start))
        rows = [p + c for p, c in zip(batch.prompt_ids, batch.completion_ids, strict=True)]
        width = max(len(r) for r in rows)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        completion = torch.zeros_like(ids, dtype=torch.bool)
        for r, (p, row) in enumerate(zip(batch.prompt_ids, rows, strict=True)):
            ids[r, : len(row)] = torch.tensor(row)
            attention[r, : len(row)] = 1
            completion[r, len(p) : len(row)] = True
        device = next(model.parameters()).device
        scores = token_logprobs(model, ids.to(device), attention.to(device), completion_mask=completion.to(device),
                                temperature=temperature, with_entropy=True)
        entropies.append(scores.entropy.cpu())
        masks.append(scores.mask.cpu())
        if compare_model is not None:
            other = token_logprobs(compare_model, ids.to(device), attention.to(device),
                                   completion_mask=completion.to(device), temperature=temperature, with_entropy=True)
            compare_entropies.append(other.entropy.cpu())
        for r in range(len(rows)):
            contexts.append(rows[r])
    width = max(e.shape[1] for e in entropies)
    entropy = torch.cat([torch.nn.functional.pad(e, (0, width - e.shape[1])) for e in entropies])
    mask = torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for m in masks])
    values = entropy[mask]
    share, p80, mean = entropy_stats(values)
    result = EntropyAnalysis(int(mask.sum()), share, p80, mean, sorted_entropy=torch.sort(values).values.tolist())
    flat = torch.where(mask, entropy, torch.full_like(entropy, -1.0)).flatten()
    for index in torch.topk(flat, min(top, int(mask.sum()))).indices.tolist():
        row, position = divmod(index, width)
        tokens = contexts[row]
        result.forking.append({
            "entropy": float(flat[index]),
            "context": tokenizer.decode(tokens[max(0, position - 24) : position], skip_special_tokens=False),
            "token": tokenizer.decode([tokens[position]], skip_special_tokens=False),
        })
    if compare_model is not None:
        other = torch.cat([torch.nn.functional.pad(e, (0, width - e.shape[1])) for e in compare_entropies])
        share_b, p80_b, mean_b = entropy_stats(other[mask])
        result.compare = {"share_below_001": share_b, "p80": p80_b, "mean": mean_b,
                          "top_position_overlap": position_overlap(entropy, other, mask, rho)}
        result.compare_sorted_entropy = torch.sort(other[mask]).values.tolist()
    return result


def read_prompts(data: str, count: int, seed: int) -> list[str]:
    """Prompts from a toy task name (``sort3``...), a ``.jsonl`` file (``prompt`` field) or a text file (one a line)."""
    from qwenkit.rl.tasks import TASKS, draw_examples, get_task

    if data in TASKS:
        return [e.prompt for e in draw_examples(get_task(data), count, seed)]
    path = Path(data)
    if not path.is_file():
        raise FileNotFoundError(f"--data {data!r} is neither a task ({sorted(TASKS)}) nor a file")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        return [json.loads(line)["prompt"] for line in lines][:count]
    return lines[:count]


def load_policy(path: str | Path):
    """(model, tokenizer) from a ``qwenkit rl train`` run directory (its latest checkpoint), a checkpoint folder inside
    a run (e.g. ``RUN/sft``), or any model spec of :func:`qwenkit.lm.loading.resolve_model` (a Hugging Face directory,
    a GGUF file or its directory, ``smollm2``)."""
    from qwenkit.core.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
    from qwenkit.core.config import load_config
    from qwenkit.lm.loading import resolve_model
    from qwenkit.rl.config import RLConfig
    from qwenkit.rl.train import build_model_and_tokenizer

    path = Path(path)
    run, checkpoints = (path, path / "checkpoints") if (path / "config.yaml").is_file() else (path.parent, path)
    if not (run / "config.yaml").is_file():
        resolved = resolve_model(path, dtype=torch.float32)
        return resolved.model.eval(), resolved.tokenizer
    config = load_config(RLConfig, run / "config.yaml")
    model, tokenizer = build_model_and_tokenizer(config)
    latest = latest_checkpoint(checkpoints)
    if latest is None:
        raise CheckpointError(f"no checkpoint under {str(checkpoints)!r}; pass a finished run or its RUN/sft")
    model.load_state_dict(load_checkpoint(latest).model)
    return model.eval(), tokenizer
