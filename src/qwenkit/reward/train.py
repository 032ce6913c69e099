"""Training a Bradley-Terry reward model through ``qwenkit.core.loop`` (checkpoints, exact resume, data parallel).

A micro-batch holds the chosen and the rejected sequences of ``batch_size`` pairs as two right-padded tensors of one
width (so the loop can shard them over processes pair by pair); the step scores both in one forward pass and
returns :func:`~qwenkit.reward.losses.bradley_terry_loss`. Pairs are visited in a seeded permutation per epoch, and
micro-batch ``i`` is a pure function of ``i`` (the loop re-addresses it on resume).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qwenkit.reward.config import ModelConfig, RewardTrainConfig
from qwenkit.reward.data import PreferencePair, load_pairs
from qwenkit.reward.errors import RewardDataError
from qwenkit.reward.losses import bradley_terry_loss
from qwenkit.reward.model import RewardModel, encode_response, pad_sequences

MAY_CHANGE_ON_RESUME = ("eval_batch_size",)


def build_reward_model(config: ModelConfig, lora: Any = None) -> RewardModel:
    """The reward model a config names: a random tiny Qwen3 (``path: null``) or any model ``resolve_model`` loads."""
    from qwenkit.reward.model import add_lora, reward_model_from_causal_lm

    if config.path is None:
        from qwenkit.lm.models import tiny_qwen3_for
        from qwenkit.lm.tokenizer import build_synthetic_tokenizer

        tokenizer = build_synthetic_tokenizer()
        causal_lm = tiny_qwen3_for(tokenizer, config.size, seed=config.seed)
    else:
        from qwenkit.lm.loading import resolve_model

        resolved = resolve_model(config.path, dtype=torch.float32)
        causal_lm, tokenizer = resolved.model, resolved.tokenizer
        use_distinct_pad_token(tokenizer, config.reward_token)
    model = reward_model_from_causal_lm(causal_lm, tokenizer, max_length=config.max_length,
                                        reward_token=config.reward_token, seed=config.seed)
    if lora is not None and lora.enabled:
        model = add_lora(model, rank=lora.rank, alpha=lora.alpha, dropout=lora.dropout,
                         target_modules=lora.target_modules)
    return model


def use_distinct_pad_token(tokenizer: Any, reward_token: str | None) -> None:
    """Give a tokenizer whose pad token is missing or is the reward token ``<|endoftext|>`` as pad (when it has one).

    Chat models (SmolLM2, Qwen instruct) often pad with their EOS, which would put the reward on a padding position.
    """
    reward = reward_token or tokenizer.eos_token
    if tokenizer.pad_token is not None and tokenizer.pad_token != reward:
        return
    if "<|endoftext|>" in tokenizer.get_vocab() and reward != "<|endoftext|>":
        tokenizer.pad_token = "<|endoftext|>"


@dataclass
class EncodedPairs:
    chosen: list[list[int]]
    rejected: list[list[int]]
    margins: list[float] | None


def encode_pairs(model: RewardModel, pairs: Sequence[PreferencePair], use_margin: bool = True) -> EncodedPairs:
    tokenizer, fmt = model.tokenizer, model.format
    chosen = [encode_response(tokenizer, p.context, p.chosen, fmt) for p in pairs]
    rejected = [encode_response(tokenizer, p.context, p.rejected, fmt) for p in pairs]
    has_margin = use_margin and any(p.margin is not None for p in pairs)
    margins = [p.margin or 0.0 for p in pairs] if has_margin else None
    return EncodedPairs(chosen, rejected, margins)


class PairBatches:
    """``batches(i)``: micro-batch ``i`` of ``batch_size`` pairs, from a seeded permutation per epoch."""

    def __init__(self, encoded: EncodedPairs, batch_size: int, pad_id: int, seed: int):
        if not encoded.chosen:
            raise RewardDataError("no training pairs: the training data is empty")
        self.encoded, self.batch_size, self.pad_id, self.seed = encoded, batch_size, pad_id, seed
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._orders = {epoch: torch.randperm(len(self.encoded.chosen), generator=generator).tolist()}
        return self._orders[epoch]

    def indices(self, index: int) -> list[int]:
        size = len(self.encoded.chosen)
        start = index * self.batch_size
        return [self._order(k // size)[k % size] for k in range(start, start + self.batch_size)]

    def __call__(self, index: int) -> dict[str, torch.Tensor]:
        rows = self.indices(index)
        sequences = [self.encoded.chosen[i] for i in rows] + [self.encoded.rejected[i] for i in rows]
        padded = pad_sequences(sequences, self.pad_id, "right")
        half = len(rows)
        batch = {
            "chosen_input_ids": padded["input_ids"][:half],
            "chosen_attention_mask": padded["attention_mask"][:half],
            "rejected_input_ids": padded["input_ids"][half:],
            "rejected_attention_mask": padded["attention_mask"][half:],
        }
        if self.encoded.margins is not None:
            batch["margin"] = torch.tensor([self.encoded.margins[i] for i in rows], dtype=torch.float32)
        return batch


def reward_step(center_coefficient: float):
    """The loop's step: score chosen and rejected in one forward pass, BT loss, accuracy and margin metrics."""

    def step(model: RewardModel, batch: dict[str, torch.Tensor]):
        input_ids = torch.cat([batch["chosen_input_ids"], batch["rejected_input_ids"]])
        attention_mask = torch.cat([batch["chosen_attention_mask"], batch["rejected_attention_mask"]])
        chosen, rejected = model(input_ids, attention_mask).chunk(2)
        loss = bradley_terry_loss(chosen, rejected, batch.get("margin"), center_coefficient)
        with torch.no_grad():
            metrics = {
                "accuracy": float((chosen > rejected).float().mean()),
                "margin": float((chosen - rejected).mean()),
                "reward_mean": float(torch.cat([chosen, rejected]).mean()),
            }
        return loss, metrics

    return step


def load_training_data(config: RewardTrainConfig) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, eval) pairs of a config: its files, or the synthetic corpus."""
    data = config.data
    if data.synthetic is not None:
        from qwenkit.reward.synthetic import make_pairs

        s = data.synthetic
        train = make_pairs(s.train, split="train", seed=s.seed, label_noise=s.label_noise,
                           test_fraction=s.test_fraction)
        held_out = make_pairs(s.eval, split="test", seed=s.seed, label_noise=s.label_noise,
                              test_fraction=s.test_fraction)
        return train, held_out
    return load_pairs(data.train), load_pairs(data.eval) if data.eval else []


@dataclass
class TrainedRewardModel:
    run: Any
    model: RewardModel
    history: list[dict[str, float]]
    evaluation: Any


def train_reward_model(
    config: RewardTrainConfig,
    out: str | Path,
    *,
    resume: bool | str = False,
    quiet: bool | None = None,
    save_model: bool = True,
) -> TrainedRewardModel:
    """Train, checkpoint (``out/checkpoints``), save the final model as ``out/model`` (a transformers
    sequence-classification directory; skipped with ``save_model=False``) and its evaluation as ``out/eval.json``."""
    from qwenkit.core.loop import train_loop
    from qwenkit.core.runs import start_run
    from qwenkit.reward.evaluate import evaluate_model
    from qwenkit.reward.model import save_reward_model

    train_pairs, eval_pairs = load_training_data(config)
    model = build_reward_model(config.model, config.lora)
    run = start_run(out, config, resume=resume, may_change=MAY_CHANGE_ON_RESUME)
    encoded = encode_pairs(model, train_pairs, config.loss.use_margin)
    batches = PairBatches(encoded, config.batch_size, model.pad_id, config.trainer.seed)

    latest: list[Any] = []

    def eval_fn(m: RewardModel) -> dict[str, float]:
        latest[:] = [evaluate_model(m, eval_pairs, config.eval_batch_size)]
        return latest[0].flat()

    result = train_loop(
        model, reward_step(config.loss.center_coefficient), batches, config.trainer, run=run,
        eval_fn=eval_fn if eval_pairs else None, resume=resume, description="reward model", quiet=quiet,
    )
    evaluation = None
    if eval_pairs:
        evaluated_last_step = result.eval_history and result.eval_history[-1]["step"] == config.trainer.max_steps
        # the loop evaluates after the last step; a run resumed when already finished ran no step and evaluates here
        evaluation = latest[0] if evaluated_last_step else evaluate_model(model, eval_pairs, config.eval_batch_size)
    if save_model:
        save_reward_model(model, run.path / "model")
    if evaluation is not None:
        (run.path / "eval.json").write_text(json.dumps(evaluation_record(evaluation), indent=2) + "\n")
    return TrainedRewardModel(run, model, result.history, evaluation)


def evaluation_record(evaluation) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "overall": asdict(evaluation.overall),
        "by_category": {k: asdict(v) for k, v in evaluation.by_category.items()},
        "by_subset": {k: asdict(v) for k, v in evaluation.by_subset.items()},
    }
