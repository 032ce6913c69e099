"""SFT through ``qwenkit.core.loop``: loss on target tokens, optional packing, cosine with warm-up, full or LoRA.

``train(config, out)`` builds the model (:func:`qwenkit.lm.loading.resolve_model`; a ``tiny-qwen3`` spec is built at
``model.size`` with ``model.seed``), tokenizes the records, and hands a step function and an index-addressed batch
source to :func:`qwenkit.core.loop.train_loop`, which checkpoints atomically and resumes bit-identically. The final
weights (LoRA merged) and tokenizer are saved under ``OUT/model``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qwenkit.sft.config import SFTConfig, resolved_trainer
from qwenkit.sft.data import (
    SFTRecord,
    TokenizedExample,
    collate_examples,
    collate_packed,
    pack_examples,
    tokenize_records,
)
from qwenkit.sft.losses import target_token_loss


def load_model(config: SFTConfig, device: str | None = None):
    """(model, tokenizer, name) for ``config.model``; LoRA adapters are attached when ``config.lora.enabled``."""
    from qwenkit.lm.loading import find_model_source, resolve_model

    source = find_model_source(config.model.path, gguf_file=config.model.gguf_file)
    if source.kind == "tiny":
        from qwenkit.lm.models import tiny_qwen3_for
        from qwenkit.lm.tokenizer import build_synthetic_tokenizer

        tokenizer = build_synthetic_tokenizer()
        model = tiny_qwen3_for(tokenizer, config.model.size, moe=source.moe, seed=config.model.seed)
        name = f"{source.name}-{config.model.size}"
    else:
        resolved = resolve_model(config.model.path, gguf_file=config.model.gguf_file, dtype="float32", device=device)
        model, tokenizer, name = resolved.model, resolved.tokenizer, resolved.name
    if config.lora.enabled:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
            target_modules=list(config.lora.target_modules), task_type="CAUSAL_LM",
        ))
    return model, tokenizer, name


class BatchSource:
    """Micro-batch ``i`` as a pure function of ``i`` (reshuffled each epoch from the seed), so resume is exact."""

    def __init__(self, examples: Sequence[TokenizedExample], *, batch_size: int, seed: int, packing: bool,
                 max_length: int, pad_id: int):
        self.examples, self.batch_size, self.seed = list(examples), batch_size, seed
        self.packing, self.max_length, self.pad_id = packing, max_length, pad_id
        self._epochs: dict[int, list[list[Any]]] = {}
        self.batches_per_epoch = len(self._epoch(0))

    def _epoch(self, epoch: int) -> list[list[Any]]:
        if epoch not in self._epochs:
            order = list(range(len(self.examples)))
            random.Random(f"sft-{self.seed}-{epoch}").shuffle(order)
            items: list[Any] = [self.examples[i] for i in order]
            if self.packing:
                items = pack_examples(items, self.max_length)
            self._epochs = {epoch: [items[i:i + self.batch_size] for i in range(0, len(items), self.batch_size)]}
        return self._epochs[epoch]

    def _group(self, index: int) -> list[Any]:
        epoch, offset = divmod(index, self.batches_per_epoch)
        batches = self._epoch(epoch)
        return batches[offset % len(batches)]

    def real_tokens(self, index: int) -> int:
        """Tokens of micro-batch ``index`` that are not padding."""
        return sum(len(item.input_ids) for item in self._group(index))

    def __call__(self, index: int) -> dict[str, torch.Tensor]:
        group = self._group(index)
        return collate_packed(group, self.pad_id) if self.packing else collate_examples(group, self.pad_id)


def sft_step(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """One micro-batch: the target-token cross-entropy, with the token counts for throughput."""
    output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], use_cache=False)
    loss, count = target_token_loss(output.logits, batch["labels"])
    return loss, {"target_tokens": float(count), "tokens": float(batch["input_ids"].numel())}


@dataclass
class TrainResult:
    run: Any
    model: torch.nn.Module
    tokenizer: Any
    history: list[dict[str, float]]
    dropped: int
    """Training examples dropped for exceeding ``data.max_length``."""
    model_dir: Path


def train_records(config: SFTConfig, records: Sequence[SFTRecord], out: str | Path, *, resume: Any = False,
                  quiet: bool | None = None, run: Any = None, save_model: bool = True,
                  callbacks: Sequence[Any] = ()) -> TrainResult:
    """Fine-tune on ``records`` with ``config`` into the run directory ``out`` (see the module docstring).

    ``callbacks`` are handed to the loop (each sees a :class:`qwenkit.core.loop.LoopState` after every step).
    """
    from qwenkit.core.loop import train_loop
    from qwenkit.core.runs import start_run

    model, tokenizer, _ = load_model(config)
    examples, dropped = tokenize_records(records, tokenizer, config.target, config.data.max_length,
                                         **config.templates())
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = BatchSource(examples, batch_size=config.batch_size, seed=config.trainer.seed,
                          packing=config.data.packing, max_length=config.data.max_length, pad_id=pad_id)
    trainer = resolved_trainer(config, batches.batches_per_epoch)
    if run is None:
        run = start_run(out, config, resume=resume)
    result = train_loop(model, sft_step, batches, trainer, run=run, resume=resume, description=f"sft {config.target}",
                        quiet=quiet, callbacks=callbacks)
    model = model.merge_and_unload() if config.lora.enabled else model
    model.eval()
    model_dir = run.path / "model"
    if save_model:
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
    return TrainResult(run, model, tokenizer, result.history, dropped, model_dir)
