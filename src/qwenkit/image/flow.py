"""Rectified-flow math of Qwen-Image (arXiv 2508.02324, section on training: flow matching on VAE latents), as pure
tensor functions, plus the EMA of the weights.

- Noising (rectified flow): ``x_t = (1 - sigma) x_0 + sigma * eps``; the model predicts the velocity
  ``v = eps - x_0`` and is trained with ``|| v_theta(x_t, sigma, c) - (eps - x_0) ||^2`` (the flow-matching loss).
- Timestep shift: ``sigma' = s sigma / (1 + (s - 1) sigma)``, i.e. ``e^mu / (e^mu + (1/sigma - 1))`` with
  ``s = e^mu``; Qwen-Image sets ``mu`` from the image sequence length (``resolution_shift``), so larger images spend
  more steps at high noise (as in diffusers' ``QwenImagePipeline``).
- True classifier-free guidance with norm rescale (``QwenImagePipeline``): ``c = u + w (v_c - u)``, then
  ``c <- c * ||v_c|| / ||c||`` per token.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch


def time_shift(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """``sigma' = shift * sigma / (1 + (shift - 1) * sigma)``; maps 0 -> 0 and 1 -> 1, ``shift > 1`` adds noise."""
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift * sigma / (1 + (shift - 1) * sigma)


def resolution_shift(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096,
                     base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """``exp(mu)`` with ``mu`` linear in the image token count through (base_seq_len, base_shift) and
    (max_seq_len, max_shift): the dynamic shift of ``QwenImagePipeline`` (``calculate_shift``)."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    mu = base_shift + slope * (image_seq_len - base_seq_len)
    return math.exp(mu)


def scheduler_mu_and_shift(scheduler_config: Mapping[str, Any] | None,
                           image_seq_len: int) -> tuple[float | None, float]:
    """``(mu, s)`` of a ``FlowMatchEulerDiscreteScheduler`` config at ``image_seq_len`` image tokens: the one schedule
    training and sampling share.

    With ``use_dynamic_shifting`` (Qwen-Image), ``mu = calculate_shift(seq_len, base_image_seq_len,
    max_image_seq_len, base_shift, max_shift)`` (diffusers' code defaults 256 / 4096 / 0.5 / 1.15 where the config
    has no value) and the shift factor is ``s = e^mu`` (``time_shift_type="exponential"``) or ``s = mu``
    (``"linear"``); without it ``mu`` is None and ``s`` is the config's fixed ``shift``. In both cases
    ``sigma' = s sigma / (1 + (s - 1) sigma)`` (:func:`time_shift`). ``None`` is the default scheduler of a fresh
    kit (dynamic, exponential, the code-default constants). Qwen-Image's own config (max_shift 0.9, 8192 tokens)
    gives ``s = 2.00`` at 1024x1024 (4096 tokens), where the code defaults would give 3.16.
    ``shift_terminal`` (a stretch of the *sampling* sigmas so the last one lands on it) is not part of ``s``: a
    training step draws one sigma, it has no last step.
    """
    c = dict(scheduler_config or {"use_dynamic_shifting": True, "time_shift_type": "exponential"})
    if not c.get("use_dynamic_shifting", False):
        return None, float(c.get("shift", 1.0))
    mu = math.log(resolution_shift(image_seq_len, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                                   c.get("base_shift", 0.5), c.get("max_shift", 1.15)))
    kind = c.get("time_shift_type", "exponential")
    if kind not in ("exponential", "linear"):
        raise ValueError(f"scheduler time_shift_type={kind!r}; use exponential or linear")
    return mu, math.exp(mu) if kind == "exponential" else mu


def sample_sigmas(batch_size: int, *, shift: float = 1.0, scheme: str = "logit_normal",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Training noise levels: ``u = sigmoid(n), n ~ N(0, 1)`` (``logit_normal``, SD3/Qwen-Image) or ``u ~ U(0, 1)``
    (``uniform``), then shifted by :func:`time_shift`."""
    if scheme == "logit_normal":
        u = torch.sigmoid(torch.randn(batch_size, generator=generator))
    elif scheme == "uniform":
        u = torch.rand(batch_size, generator=generator)
    else:
        raise ValueError(f"unknown timestep scheme {scheme!r}; use logit_normal or uniform")
    return time_shift(u, shift)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``x_t = (1 - sigma) x_0 + sigma eps`` with one sigma per batch row (broadcast over the other dims)."""
    sigma = sigma.reshape(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1 - sigma) * x0 + sigma * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The rectified-flow velocity ``d x_t / d sigma = eps - x_0``."""
    return noise - x0


def flow_matching_loss(prediction: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``mean || v_theta - (eps - x_0) ||^2`` over every element (unweighted, diffusers' ``weighting_scheme=none``)."""
    return torch.mean((prediction.float() - velocity_target(x0, noise).float()) ** 2)


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float, *, rescale: bool = True) -> torch.Tensor:
    """``u + w (c - u)``; with ``rescale`` each token's vector is scaled back to the norm of ``c`` (Qwen-Image)."""
    combined = uncond + scale * (cond - uncond)
    if not rescale:
        return combined
    cond_norm = torch.linalg.vector_norm(cond, dim=-1, keepdim=True)
    comb_norm = torch.linalg.vector_norm(combined, dim=-1, keepdim=True)
    return combined * (cond_norm / comb_norm.clamp_min(1e-12))


def euler_step(x: torch.Tensor, velocity: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One Euler step of the flow ODE from ``sigma`` to ``sigma_next``: ``x + (sigma_next - sigma) v``."""
    return x + (sigma_next - sigma) * velocity


class EMA:
    """Exponential moving average of the trainable weights: ``e <- d e + (1 - d) p`` after each optimizer step.

    Stateful (``state_dict``/``load_state_dict``) so that ``core.loop.train_loop`` checkpoints and resumes it exactly.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for name, param in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(param.detach(), 1.0 - self.decay)

    def __call__(self, state) -> None:
        """A ``train_loop`` callback: update after every optimizer step."""
        self.update(state.model)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        for name, param in model.named_parameters():
            if name in self.shadow:
                param.copy_(self.shadow[name])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state lacks {sorted(missing)[:3]}...; it belongs to another model")
        for k in self.shadow:
            self.shadow[k].copy_(state["shadow"][k])
