"""The SFT loss: next-token cross-entropy on target tokens only (pure tensor math)."""

from __future__ import annotations

import torch

from qwenkit.sft.data import IGNORE_INDEX


def target_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, number of target tokens): L = -(1/T) sum_{t: y_t != -100} log p(y_t | x_<t).

    ``logits[b, t]`` predicts ``labels[b, t + 1]`` (the usual causal shift). Prompt and padding positions carry
    ``-100`` and contribute nothing; T counts the remaining target tokens (the paper's ``train.py`` masks the
    source the same way). A batch without target tokens has loss 0 (and no gradient).
    """
    shifted_logits = logits[:, :-1, :].float()
    shifted_labels = labels[:, 1:]
    count = (shifted_labels != IGNORE_INDEX).sum()
    total = torch.nn.functional.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.shape[-1]), shifted_labels.reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="sum",
    )
    return total / count.clamp(min=1), count
