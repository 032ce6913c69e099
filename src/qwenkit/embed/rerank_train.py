"""Reranker SFT (paper eq. 2): cross-entropy over the last-position ``[z_no, z_yes]`` logits of the reranker prompt,
trained through ``qwenkit.core.loop.train_loop`` (optionally with LoRA adapters from ``peft``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qwenkit.core.loop import LoopResult, TrainConfig, train_loop
from qwenkit.embed.reranker import Reranker, reranker_loss


def reranker_batches(examples: Sequence[tuple[str, str, int]], batch_size: int, seed: int):
    """``data(index)``: ``batch_size`` (query, document, label) triples drawn with an index-seeded generator."""
    if len(examples) < batch_size:
        raise ValueError(f"{len(examples)} examples are fewer than batch_size={batch_size}")

    def data(index: int) -> dict[str, Any]:
        rows = np.random.default_rng([seed, index]).choice(len(examples), size=batch_size, replace=False)
        return {"pairs": [(examples[i][0], examples[i][1]) for i in rows],
                "labels": torch.tensor([examples[i][2] for i in rows])}

    return data


def train_reranker(reranker: Reranker, examples: Sequence[tuple[str, str, int]], config: TrainConfig, *,
                   batch_size: int = 8, instruction: str | None = None, run=None, quiet: bool | None = None
                   ) -> LoopResult:
    """Fine-tune ``reranker.model`` on (query, document, label in {0, 1}) triples; returns the loop's history."""

    def step(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        prompts = [reranker.prompt_ids(q, d, instruction) for q, d in batch["pairs"]]
        logits = reranker.logits(prompts)
        labels = batch["labels"].to(logits.device)
        accuracy = ((logits[:, 1] > logits[:, 0]).long() == labels).float().mean()
        return reranker_loss(logits, labels), {"accuracy": float(accuracy)}

    data = reranker_batches(examples, batch_size, config.seed)
    return train_loop(reranker.model, step, data, config, run=run, quiet=quiet, description="rerank train")
