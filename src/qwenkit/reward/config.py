"""The config of ``qwenkit reward train`` (YAML, validated; every field documented in docs/reward.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from qwenkit.core.config import StrictModel
from qwenkit.core.loop import TrainConfig


class ModelConfig(StrictModel):
    path: str | None = Field(None, description="a local HF directory, a .gguf file, or an alias such as smollm2; "
                                               "null = a random tiny Qwen3 on the synthetic character tokenizer")
    size: Literal["nano", "tiny", "small", "base"] = Field("tiny", description="size of the random tiny Qwen3")
    seed: int = Field(0, description="seed of the random model and of the reward head")
    reward_token: str | None = Field(None, description="token whose hidden state is scored; null = the EOS token")
    max_length: int = Field(256, ge=4, description="tokens per scored sequence (longer ones keep their end)")


class LoraSettings(StrictModel):
    enabled: bool = False
    rank: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class SyntheticData(StrictModel):
    """The synthetic corpus of :mod:`qwenkit.reward.synthetic` (pairs per category)."""

    train: dict[Literal["adversarial", "objective", "subjective"], int] = Field(
        default_factory=lambda: {"adversarial": 600, "objective": 600, "subjective": 600})
    eval: dict[Literal["adversarial", "objective", "subjective"], int] = Field(
        default_factory=lambda: {"adversarial": 150, "objective": 150, "subjective": 300})
    seed: int = 0
    label_noise: float = Field(0.1, ge=0, le=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=1)


class DataConfig(StrictModel):
    train: str | None = Field(None, description="training pairs (.jsonl, see docs/reward.md)")
    eval: str | None = Field(None, description="evaluation pairs (.jsonl); optional")
    synthetic: SyntheticData | None = Field(None, description="use the synthetic corpus instead of files")

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.train is None) == (self.synthetic is None):
            raise ValueError("give data.train (a pair file) or data.synthetic (the synthetic corpus), not both")
        return self


class LossConfig(StrictModel):
    use_margin: bool = Field(True, description="subtract a pair's margin inside the sigmoid when it has one")
    center_coefficient: float = Field(0.0, ge=0, description="weight of mean((r_c + r_r)^2); TRL suggests 0.01")


class RewardTrainConfig(StrictModel):
    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    data: DataConfig = Field(default_factory=lambda: DataConfig(synthetic=SyntheticData()))
    loss: LossConfig = Field(default_factory=LossConfig)
    batch_size: int = Field(16, ge=1, description="pairs per micro-batch (global, over all processes)")
    eval_batch_size: int = Field(64, ge=1)
    trainer: TrainConfig = Field(default_factory=lambda: TrainConfig(lr=1e-3, max_steps=200))
