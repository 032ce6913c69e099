"""qwenkit's policy loss and global 80/20 mask inside TRL's ``GRPOTrainer`` (needs the optional ``trl`` extra).

``QwenkitGRPOTrainer`` is TRL's trainer (its vLLM rollouts, DeepSpeed/FSDP, PEFT, logging) with ``_compute_loss``
replaced by :func:`qwenkit.rl.losses.policy_loss`, which adds what the trl 1.16 wheel lacks: ``level="sequence_token"``
(GSPO-token) and an 80/20 mask usable with every level and aggregation. Extra constructor arguments:
``level`` ("token" | "sequence" | "sequence_token"), ``aggregation`` (see ``policy_loss``; default: the one matching
``args.loss_type``: grpo -> seq-mean-token-mean, dapo/bnpo -> token-mean (dapo over the generation batch, bnpo over the
micro-batch, as TRL normalises them), dr_grpo -> seq-mean-token-sum-norm, luspo -> seq-mean-token-sum) and ``rho``
(default ``args.top_entropy_quantile``; with ``level="sequence"`` the mask has TRL's semantics, see ``policy_loss``).
Clip range, KL coefficient and temperature come from ``GRPOConfig``
(``epsilon``, ``epsilon_high``, ``beta``, ``temperature``); losses are normalised as TRL normalises them, so with
``level`` and ``aggregation`` matching TRL's options the loss equals TRL's own (tests/rl/test_trl_adapter.py).
"""

from __future__ import annotations

from typing import Any

import torch

from qwenkit.rl.losses import high_entropy_mask, policy_loss

try:
    from trl import GRPOTrainer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("qwenkit.rl.trl_adapter needs TRL: pip install 'qwenkit[rl]' (or pip install trl)") from exc

_AGGREGATION_OF_LOSS_TYPE = {
    "grpo": "seq-mean-token-mean",
    "dapo": "token-mean",
    "bnpo": "token-mean",
    "dr_grpo": "seq-mean-token-sum-norm",
    "luspo": "seq-mean-token-sum",
}


class QwenkitGRPOTrainer(GRPOTrainer):
    def __init__(self, *args: Any, level: str = "token", aggregation: str | None = None, rho: float | None = None,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        if aggregation is None:
            if self.loss_type not in _AGGREGATION_OF_LOSS_TYPE:
                raise ValueError(f"GRPOConfig.loss_type={self.loss_type!r} has no qwenkit aggregation; pass "
                                 f"aggregation= explicitly or use one of {sorted(_AGGREGATION_OF_LOSS_TYPE)}")
            aggregation = _AGGREGATION_OF_LOSS_TYPE[self.loss_type]
        self.qwenkit_level = level
        self.qwenkit_aggregation = aggregation
        self.qwenkit_rho = self.top_entropy_quantile if rho is None else rho

    def _compute_loss(self, model, inputs):
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        logp, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled,
        )
        mask = mask.bool()
        token_mask = high_entropy_mask(entropies, mask, self.qwenkit_rho) if self.qwenkit_rho < 1 else None
        old = inputs.get("old_per_token_logps")
        old = logp.detach() if old is None else old
        training = self.model.training
        accumulation = self.current_gradient_accumulation_steps if training else 1
        normalizer = None
        if self.loss_type == "dapo" and self.qwenkit_aggregation == "token-mean" and "num_items_in_batch" in inputs:
            # TRL's dapo normaliser: tokens of the whole generation batch, rescaled to one accumulation window
            normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if training:
                normalizer = normalizer * accumulation / self.args.steps_per_generation
            accumulation = 1
        loss, stats = policy_loss(
            logp, old, inputs["advantages"], mask, level=self.qwenkit_level,
            clip=(self.epsilon_low, self.epsilon_high), aggregation=self.qwenkit_aggregation, token_mask=token_mask,
            ref_logp=inputs.get("ref_per_token_logps") if self.beta else None, kl_coef=self.beta,
            normalizer=normalizer, max_length=self.max_completion_length,
        )
        loss = loss / accumulation
        if self.aux_loss_enabled and aux_loss is not None:
            steps = self.current_gradient_accumulation_steps if training else 1
            loss = loss + self.router_aux_loss_coef * aux_loss / steps
        mode = "train" if training else "eval"
        for key, value in stats.as_dict("qwenkit/").items():
            self._metrics[mode][key].append(value)
        return loss
