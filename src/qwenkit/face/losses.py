"""Training losses of the face model, as pure functions of (B, T, D) tensors (D = flattened vertex coordinates).

``vertex_loss`` and ``velocity_loss`` are the FaceFormer/SelfTalk reconstruction terms. StyleSpeaker (arXiv
2503.09852) names a *trend loss* and a *local contrastive loss* for audio-motion sync but publishes neither formula;
the forms below are ours and say so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def vertex_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Vertex reconstruction: ``mean_{b,t,d} (pred - target)^2``."""
    return F.mse_loss(pred, target)


def velocity_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Velocity term (FaceFormer/SelfTalk): ``mean_{b,t,d} ((pred_t - pred_{t-1}) - (target_t - target_{t-1}))^2``."""
    if pred.shape[1] < 2:
        raise ValueError(f"the velocity loss needs at least 2 frames, got {pred.shape[1]}")
    return F.mse_loss(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1])


def trend_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Trend loss (our form): one minus the cosine of predicted and true frame-to-frame motion.

    ``L = mean_{b,t} [1 - <dp_t, dy_t> / (||dp_t|| ||dy_t|| + eps)]`` with ``dp_t = pred_t - pred_{t-1}`` and
    ``dy_t = target_t - target_{t-1}`` over the given coordinates (the lips, in training): it asks the motion to
    open and close when the truth does, whatever the amplitude.
    """
    if pred.shape[1] < 2:
        raise ValueError(f"the trend loss needs at least 2 frames, got {pred.shape[1]}")
    pred_step = pred[:, 1:] - pred[:, :-1]
    target_step = target[:, 1:] - target[:, :-1]
    dot = (pred_step * target_step).sum(-1)
    norms = pred_step.norm(dim=-1) * target_step.norm(dim=-1)
    return (1.0 - dot / (norms + eps)).mean()


def local_contrastive_loss(
    audio_features: torch.Tensor, motion_features: torch.Tensor, window: int = 4, temperature: float = 0.1
) -> torch.Tensor:
    """Local contrastive loss (our form): InfoNCE between the audio and motion features of the same frame.

    For frame ``t`` of a clip, the positive is ``m_t`` and the negatives are the motion features ``m_s`` of the same
    clip with ``0 < |s - t| <= window``: ``L = mean_{b,t} -log softmax_{s in N(t) u {t}}(cos(a_t, m_s) / tau)[t]``.
    Neighbouring frames sound alike, so telling them apart forces frame-accurate sync.
    """
    if audio_features.shape != motion_features.shape:
        raise ValueError(f"audio features {tuple(audio_features.shape)} and motion features "
                         f"{tuple(motion_features.shape)} must have the same shape")
    if window < 1:
        raise ValueError(f"window must be >= 1 frame, got {window}")
    frames = audio_features.shape[1]
    audio = F.normalize(audio_features, dim=-1)
    motion = F.normalize(motion_features, dim=-1)
    logits = torch.einsum("btd,bsd->bts", audio, motion) / temperature
    offsets = torch.arange(frames, device=logits.device)
    local = (offsets[None, :] - offsets[:, None]).abs() <= window
    logits = logits.masked_fill(~local, float("-inf"))
    targets = offsets.expand(audio.shape[0], frames)
    return F.cross_entropy(logits.reshape(-1, frames), targets.reshape(-1))


def primitive_diversity_loss(primitives: torch.Tensor) -> torch.Tensor:
    """Keeps the K style primitives spread over the style space (our form; the paper's rule is not public).

    ``L = mean_{i != j} cos(p_i, p_j)^2`` over the K primitive vectors (K >= 2).
    """
    if primitives.shape[0] < 2:
        raise ValueError("the diversity loss needs at least 2 primitives")
    unit = F.normalize(primitives, dim=-1)
    gram = unit @ unit.T
    count = primitives.shape[0]
    off_diagonal = gram[~torch.eye(count, dtype=torch.bool, device=gram.device)]
    return off_diagonal.square().mean()
