"""Configs of ``qwenkit sft train`` / ``evaluate`` / ``rationales`` (pydantic; unknown fields are errors)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from qwenkit.core.config import StrictModel
from qwenkit.core.errors import ConfigError
from qwenkit.core.loop import TrainConfig
from qwenkit.sft.data import ANSWER_TEMPLATE, RATIONALE_TEMPLATE


class SFTTrainConfig(TrainConfig):
    """The shared loop's settings with SFT defaults: cosine decay (the paper's schedule)."""

    lr: float = Field(1e-3, gt=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    max_steps: int = Field(200, ge=1, description="optimizer steps (derived from epochs when epochs is set)")


class ModelConfig(StrictModel):
    path: str = Field("tiny-qwen3", description="a local HF directory, a .gguf file, or smollm2 / tiny-qwen3 (the same "
                      "forms as every trainer's model.path)")
    gguf_file: str | None = None
    size: Literal["nano", "tiny", "small", "base"] = Field("tiny", description="size of a tiny-qwen3 model")
    seed: int = Field(0, description="initialisation seed of a tiny-qwen3 model")


class LoraConfig(StrictModel):
    enabled: bool = False
    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


class DataConfig(StrictModel):
    train: Path | None = Field(None, description="training file (see layout); or use task")
    eval: Path | None = Field(None, description="evaluation file in the same layout")
    layout: Literal["qwenkit", "gsm8k", "svamp", "arc", "csqa", "sst2"] = "qwenkit"
    task: str | None = Field(None, description="a toy task instead of files: arithmetic, sentiment, topic, paraphrase")
    difficulty: dict[str, int] = Field(default_factory=dict, description="the toy task's difficulty, e.g. steps: 3")
    train_size: int = Field(512, ge=1, description="toy task: training records")
    eval_size: int = Field(128, ge=1, description="toy task: evaluation records")
    max_length: int = Field(256, ge=8, description="longer examples are dropped (and counted), never cut")
    packing: bool = Field(False, description="pack examples into rows of max_length (no cross-example attention)")

    @model_validator(mode="before")
    @classmethod
    def _default_task(cls, data: Any) -> Any:
        """Without a file and without a task, the toy arithmetic task is the data."""
        if isinstance(data, dict) and data.get("train") is None and "task" not in data:
            return {**data, "task": "arithmetic"}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.train is None) == (self.task is None):
            raise ValueError("set exactly one of data.train (a file) and data.task (a toy task)")
        return self


class EvalConfig(StrictModel):
    samples: int = Field(10, ge=1, description="self-consistency samples per question (the paper: 10)")
    temperature: float = Field(0.8, gt=0, description="sampling temperature of self-consistency (the paper: 0.8)")
    max_new_tokens: int = Field(96, ge=1)
    n_bins: int = Field(10, ge=1, description="calibration bins (the paper: 10)")
    batch_size: int = Field(256, ge=1, description="prompts generated together")
    seed: int = 0


class SFTConfig(StrictModel):
    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    target: Literal["answer", "rationale"] = Field("rationale", description="answer-only or rationale+answer targets")
    answer_template: str = ANSWER_TEMPLATE
    rationale_template: str = RATIONALE_TEMPLATE
    batch_size: int = Field(16, ge=1, description="examples (or packed rows) per micro-batch")
    epochs: float | None = Field(None, gt=0, description="when set, trainer.max_steps is derived from it")
    warmup_ratio: float | None = Field(
        0.03, ge=0, lt=1, description="warm-up share of max_steps (the paper: 0.03); null: trainer.warmup_steps"
    )
    trainer: SFTTrainConfig = Field(default_factory=SFTTrainConfig)
    evaluation: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _templates(self) -> SFTConfig:
        if "{answer}" not in self.answer_template:
            raise ValueError("answer_template must contain {answer}")
        if "{answer}" not in self.rationale_template or "{rationale}" not in self.rationale_template:
            raise ValueError("rationale_template must contain {rationale} and {answer}")
        return self

    def templates(self) -> dict[str, str]:
        return {"answer_template": self.answer_template, "rationale_template": self.rationale_template}


def resolved_trainer(config: SFTConfig, batches_per_epoch: int) -> SFTTrainConfig:
    """The loop's settings with ``epochs`` turned into ``max_steps`` and ``warmup_ratio`` into ``warmup_steps``."""
    trainer = config.trainer.model_copy()
    if config.epochs is not None:
        micro_batches = math.ceil(config.epochs * batches_per_epoch)
        trainer.max_steps = max(1, micro_batches // trainer.grad_accum_steps)
    if config.warmup_ratio is not None:
        trainer.warmup_steps = int(round(config.warmup_ratio * trainer.max_steps))
    if trainer.warmup_steps >= trainer.max_steps and trainer.max_steps > 1:
        raise ConfigError(f"warm-up of {trainer.warmup_steps} steps leaves no training in {trainer.max_steps} steps; "
                          "lower warmup_ratio or trainer.warmup_steps")
    return trainer
