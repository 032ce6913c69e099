"""The config of an RL run (YAML for ``qwenkit rl train --config X.yaml``) and the named algorithm presets."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from qwenkit.core.config import StrictModel
from qwenkit.core.loop import TrainConfig


class ModelConfig(StrictModel):
    path: str | None = Field(
        None, description="a local Hugging Face causal-LM directory, a .gguf file, a directory holding one, or the "
        "alias smollm2 (see qwenkit.lm.loading.resolve_model); null = a tiny Qwen3 built from `size`/`moe`"
    )
    gguf_file: str | None = Field(None, description="which GGUF file of `path` to load, when it holds several")
    size: Literal["nano", "tiny", "small", "base"] = "tiny"
    moe: bool = Field(False, description="tiny Qwen3-MoE (4 experts, top-2) instead of dense")
    seed: int = Field(0, description="initialisation seed of the tiny model")


class SFTConfig(StrictModel):
    """Supervised warm start on the task's correct completions, so RL starts from a non-zero pass rate."""

    steps: int = Field(0, ge=0, description="0 = no warm start")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)


class AlgorithmConfig(StrictModel):
    level: Literal["token", "sequence", "sequence_token"] = Field(
        "token", description="token = GRPO/DAPO, sequence = GSPO, sequence_token = GSPO-token"
    )
    clip_low: float = Field(0.2, ge=0, lt=1)
    clip_high: float = Field(0.28, ge=0)
    aggregation: Literal["seq-mean-token-mean", "token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"] = (
        "seq-mean-token-mean")
    rho: float = Field(1.0, gt=0, le=1, description="80/20 rule: share of highest-entropy tokens that get gradient")
    trl_sequence_mask: bool = Field(
        False, description="allow rho < 1 with level=sequence, with TRL's semantics: masked tokens' terms are zeroed "
        "but they still get gradient through the sequence ratio s_i (use level=sequence_token to exclude them)"
    )
    kl_coef: float = Field(0.0, ge=0, description="k3 KL to the initial (post-SFT) policy; 0 = no reference model")
    scale_rewards: Literal["group", "batch", "none"] = "group"
    advantage_eps: float = Field(1e-4, gt=0)
    router_aux_coef: float | None = Field(
        None, ge=0, description="MoE load-balancing loss weight; null = the model config's router_aux_loss_coef"
    )

    @model_validator(mode="after")
    def _check(self) -> AlgorithmConfig:
        if self.level == "sequence" and self.rho < 1 and not self.trl_sequence_mask:
            raise ValueError(
                "algorithm.rho < 1 (80/20 mask) with level=sequence does not exclude the masked tokens from the "
                "gradient (GSPO's sequence ratio couples all tokens); use level=sequence_token, or set "
                "algorithm.trl_sequence_mask=true for TRL's semantics"
            )
        return self


class RolloutConfig(StrictModel):
    prompts: int = Field(16, ge=1, description="prompts per rollout batch")
    group_size: int = Field(8, ge=2, description="responses sampled per prompt (G)")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    max_new_tokens: int | None = Field(None, ge=1, description="null = the task's default")
    num_mini_batches: int = Field(4, ge=1, description="optimizer steps per pass over a rollout batch")
    num_iterations: int = Field(1, ge=1, description="passes over each rollout batch (PPO epochs)")
    dynamic_sampling: bool = Field(False, description="DAPO: drop groups whose rewards are all equal and refill")
    max_sampling_rounds: int = Field(4, ge=1, description="rollout rounds to try when refilling dynamic sampling")
    shard_generation: bool = Field(
        False, description="data parallel: each process samples and scores its share of the prompts, then the batch "
        "is all-gathered (faster; off = every process samples the whole batch, bit-identical to one process)"
    )
    old_logprobs: Literal["recompute", "sampler"] = Field(
        "recompute", description="pi_old from a scoring pass of the policy, or the sampler's own log-probs"
    )


class RLConfig(StrictModel):
    task: str = Field(
        "sort3", description="a task of qwenkit.rl.tasks (sort3, sort4, reverse4, add2, countdown3; arith_chat for "
        "real chat models)"
    )
    chat_format: bool = Field(
        False, description="render every prompt with the tokenizer's chat template as one user turn (real chat models)"
    )
    reward_model: str | None = Field(
        None, description="a reward-model directory saved by `qwenkit reward train`: its score of (prompt, completion) "
        "replaces the task's verifiable reward (the task still supplies prompts)"
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    rollouts: int = Field(10, ge=1, description="rollout batches to train on")
    eval_prompts: int = Field(64, ge=0, description="held-out prompts for the greedy pass rate")
    logprob_chunk_size: int = Field(256, ge=1)
    trainer: TrainConfig = Field(default_factory=lambda: TrainConfig(max_grad_norm=1.0, lr=1e-3))

    @model_validator(mode="after")
    def _check(self) -> RLConfig:
        if "max_steps" in self.trainer.model_fields_set and self.trainer.max_steps != self.max_steps:
            raise ValueError(
                f"trainer.max_steps={self.trainer.max_steps} but it is derived: rollouts * num_iterations * "
                f"num_mini_batches = {self.max_steps}; set `rollouts` instead and drop trainer.max_steps"
            )
        rows = self.rollout.prompts * self.rollout.group_size
        per_step = self.rollout.num_mini_batches * self.trainer.grad_accum_steps
        if rows % per_step:
            raise ValueError(
                f"a rollout batch of {rows} responses (rollout.prompts * rollout.group_size) cannot be split into "
                f"{self.rollout.num_mini_batches} mini-batches of {self.trainer.grad_accum_steps} micro-batches; "
                "choose sizes whose product divides it"
            )
        return self

    @property
    def steps_per_rollout(self) -> int:
        return self.rollout.num_iterations * self.rollout.num_mini_batches

    @property
    def max_steps(self) -> int:
        return self.rollouts * self.steps_per_rollout


ALGORITHMS: dict[str, dict] = {
    "grpo": dict(level="token", clip_low=0.2, clip_high=0.28, aggregation="seq-mean-token-mean", rho=1.0),
    "gspo": dict(level="sequence", clip_low=3e-4, clip_high=4e-4, aggregation="seq-mean-token-mean", rho=1.0),
    "gspo_token": dict(level="sequence_token", clip_low=3e-4, clip_high=4e-4, aggregation="seq-mean-token-mean",
                       rho=1.0),
    "grpo_8020": dict(level="token", clip_low=0.2, clip_high=0.28, aggregation="token-mean", rho=0.2),
    "dapo": dict(level="token", clip_low=0.2, clip_high=0.28, aggregation="token-mean", rho=1.0),
}
"""The algorithms of the reproduction: GRPO (DAPO clip-higher), GSPO and GSPO-token at the paper's clip range
(3e-4, 4e-4), the 80/20 rule on DAPO's token-mean loss (rho = 0.2), and that loss without the mask (``dapo``, the
80/20 rule's control). Each preset sets every field that tells the algorithms apart (level, clip range, aggregation,
rho). Precedence, one rule for every command: the config file < the ``--algorithm`` preset < ``--set``."""


def apply_algorithm_preset(data: dict, name: str) -> tuple[dict, list[str]]:
    """``data`` with preset ``name`` laid over its ``algorithm`` block, and the file's fields it overrode."""
    preset = ALGORITHMS[name]
    block = dict(data.get("algorithm") or {})
    overridden = [f"algorithm.{k}: {block[k]!r} -> {v!r}" for k, v in preset.items() if k in block and block[k] != v]
    return {**data, "algorithm": {**block, **preset}}, overridden
