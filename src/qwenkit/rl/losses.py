"""The RLVR losses as pure functions: group advantages, GRPO / GSPO / GSPO-token policy losses, k3 KL, token entropy
and the 80/20 high-entropy ("forking token") mask.

Shapes: ``logp``, ``old_logp``, ``ref_logp``, ``mask``, ``token_mask`` are (B, T) over the *response* positions of B
sequences (any positions where ``mask`` is False are padding and may hold arbitrary values, NaN and inf included: they
never reach the loss or the gradient); ``advantages`` is (B,) (one per response) or (B, T) (per token, GSPO-token).

Notation: ``m_{i,t}`` = mask, ``|y_i| = sum_t m_{i,t}``, ``A_i`` the advantage, ``eps_low``/``eps_high`` the clip range,
``w_{i,t} = exp(logp - old_logp)`` the token ratio and ``s_i = exp(1/|y_i| sum_t m_{i,t} (logp - old_logp))`` the
sequence ratio (a geometric mean: ``exp(mean)``, never ``exp(sum)``, which underflows on long responses).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import torch

Level = Literal["token", "sequence", "sequence_token"]
Aggregation = Literal["seq-mean-token-mean", "token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
RewardScale = Literal["group", "batch", "none"]

LEVELS: tuple[str, ...] = ("token", "sequence", "sequence_token")
AGGREGATIONS: tuple[str, ...] = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
_RATIONAL_DENOMINATOR = 10**9


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: RewardScale = "group", eps: float = 1e-4
) -> torch.Tensor:
    """Group-relative advantages (GRPO, DeepSeekMath arXiv 2402.03300 §4.1.2; GSPO Eq. 6).

    ``rewards`` (B,) holds ``B / group_size`` consecutive groups of ``group_size`` responses to the same prompt::

        A_i = (r_i - mean_group(r)) / (std(r) + eps)

    with the unbiased (Bessel-corrected) std taken over the group (``scale="group"``), over the whole batch
    (``"batch"``), or not dividing at all (``"none"``, Dr. GRPO). A group whose rewards are all equal gets exactly 0
    (also under ``"batch"`` scaling). A group of one response has no baseline and gets 0.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards must be 1-D with a length divisible by group_size={group_size}; got shape {tuple(rewards.shape)}"
        )
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    if rewards.numel() == 0:
        return rewards.new_zeros(0, dtype=torch.float32)
    grouped = rewards.double().view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    constant = (grouped == grouped[:, :1]).all(dim=1, keepdim=True)
    if scale == "group":
        std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(grouped[:, :1])
        advantages = centred / (std + eps)
    elif scale == "batch":
        std = rewards.double().std() if rewards.numel() > 1 else rewards.new_zeros((), dtype=torch.float64)
        advantages = centred / (std + eps)
    else:
        advantages = centred
    advantages = torch.where(constant, torch.zeros_like(advantages), advantages)
    return advantages.view(-1).to(rewards.dtype if rewards.is_floating_point() else torch.float32)


def sequence_log_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log s_i = 1/|y_i| sum_t m_{i,t} (logp_{i,t} - old_logp_{i,t})`` (GSPO Eq. 7); 0 for an empty response."""
    mask = mask.bool()
    log_ratio = torch.where(mask, logp - old_logp, torch.zeros_like(logp))
    return log_ratio.sum(-1) / mask.sum(-1).clamp(min=1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi_theta || pi_ref) (Schulman 2020; GRPO Eq. 4)::

        D_t = exp(ref_logp - logp) - (ref_logp - logp) - 1   >= 0
    """
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


@dataclass
class LossStats:
    """Diagnostics of one :func:`policy_loss` call (floats, no gradient)."""

    clip_fraction: float
    """Share of valid tokens (``level="token"``) or of non-empty responses (sequence levels) whose clip is active."""
    clip_fraction_low: float
    clip_fraction_high: float
    ratio_mean: float
    """Mean of ``w_{i,t}`` over valid tokens (token level) or of ``s_i`` over non-empty responses."""
    ratio_min: float
    ratio_max: float
    token_log_ratio_std: float
    """Std of ``logp - old_logp`` over valid tokens (how off-policy the batch is, token by token)."""
    seq_log_ratio_std: float
    """Std of ``log s_i`` over non-empty responses."""
    kl: float
    """Mean k3 KL over valid tokens (0 without ``ref_logp``)."""
    masked_token_fraction: float
    """Share of valid tokens that receive policy gradient (1 without ``token_mask``)."""

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {prefix + k: v for k, v in self.__dict__.items()}


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    level: Level = "token",
    clip: tuple[float, float] = (0.2, 0.2),
    aggregation: Aggregation = "seq-mean-token-mean",
    token_mask: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    normalizer: float | torch.Tensor | None = None,
    max_length: int | None = None,
) -> tuple[torch.Tensor, LossStats]:
    """Clipped policy-gradient loss of GRPO (``level="token"``), GSPO (``"sequence"``) or GSPO-token
    (``"sequence_token"``), to be *minimised*.

    Per-token objective term ``j_{i,t}`` (before aggregation), with ``clip = (eps_low, eps_high)``:

    - ``token`` (GRPO, arXiv 2402.03300 Eq. 3; DAPO's clip-higher): ``min(w_{i,t} A, clip(w_{i,t}, 1-eps_low,
      1+eps_high) A)``.
    - ``sequence`` (GSPO, arXiv 2507.18071 Eq. 5): ``min(s_i A_i, clip(s_i, 1-eps_low, 1+eps_high) A_i)``, the same for
      every token of response i (so ``seq-mean-token-mean`` gives the paper's ``1/G sum_i``).
    - ``sequence_token`` (GSPO-token, Eq. 13-14): ``min(s_{i,t} A_{i,t}, clip(s_{i,t}, ...) A_{i,t})`` with
      ``log s_{i,t} = sg[log s_i] + logp_{i,t} - sg[logp_{i,t}]``: the value is ``s_i`` and the gradient of a token
      flows only through its own log-prob; with ``A_{i,t} = A_i`` value and gradient equal GSPO's.

    Then ``l_{i,t} = -j_{i,t} * tm_{i,t} + kl_coef * D_{i,t}`` where ``tm`` is ``token_mask`` (the 80/20 mask: a masked
    token gets exactly zero policy gradient but still counts in the denominator; the KL term is not masked) and ``D``
    the k3 KL against ``ref_logp``. Aggregation over valid tokens (``m``):

    - ``seq-mean-token-mean`` (GRPO/GSPO paper): ``1/N_seq sum_i (sum_t m l / |y_i|)``, ``N_seq`` = B by default;
    - ``token-mean`` (DAPO, and the 80/20 paper's Eq.): ``sum_{i,t} m l / N_tok``, ``N_tok = sum m`` by default;
    - ``seq-mean-token-sum`` (verl's mode of that name): ``1/N_seq sum_i sum_t m l``;
    - ``seq-mean-token-sum-norm`` (Dr. GRPO): ``sum_{i,t} m l / (N_seq * L)``, ``L = max_length`` or T.

    ``normalizer`` replaces ``N_seq`` (``seq-mean-*``) or ``N_tok`` (``token-mean``) so a micro-batch or one process's
    shard can be normalised by the whole batch's count (the sum of the shards' losses then equals the full-batch loss).

    A ``token_mask`` with ``level="sequence"`` follows TRL's semantics (``importance_sampling_level="sequence"`` with
    ``top_entropy_quantile``): the masked tokens' terms are zeroed, but every term carries ``s_i``, which depends on
    all tokens of response i, so masked tokens still receive gradient through the unmasked ones. To exclude tokens
    from the gradient, use ``sequence_token`` (GSPO-token), where a token's gradient flows only through its own term.

    Precision: computed in float64 whatever the input dtype; the loss is returned in the dtype of ``logp``.

    Clip semantics: the clip is active (no gradient) where ``ratio < 1 - eps_low`` and ``A < 0`` ("low") or
    ``ratio > 1 + eps_high`` and ``A > 0`` ("high"); these define the clip fractions in the returned stats.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    eps_low, eps_high = clip
    if not (0 <= eps_low < 1 and eps_high >= 0):
        raise ValueError(f"clip must be (eps_low in [0, 1), eps_high >= 0), got {clip}")
    if logp.shape != old_logp.shape or logp.shape != mask.shape or logp.dim() != 2:
        raise ValueError(
            f"logp, old_logp and mask must share one (B, T) shape; got {tuple(logp.shape)}, "
            f"{tuple(old_logp.shape)}, {tuple(mask.shape)}"
        )
    if ref_logp is None and kl_coef:
        raise ValueError(f"kl_coef={kl_coef} needs ref_logp (the reference model's log-probs)")
    mask = mask.bool()
    input_dtype = logp.dtype
    # The loss math runs in float64: negligible next to the model, and formulas that are equal in exact arithmetic
    # (GSPO and GSPO-token) then give the same float32 gradients, so whole training runs coincide bit for bit.
    logp = logp.double()
    zeros = torch.zeros_like(logp)
    # sanitise padding first, so that garbage there can reach neither the value nor (as 0 * inf) the gradient
    logp = torch.where(mask, logp, zeros)
    old_logp = torch.where(mask, old_logp.to(logp.dtype), zeros).detach()
    advantages = advantages.to(logp.dtype)
    if torch.is_tensor(normalizer):
        normalizer = normalizer.to(logp.dtype)
    if advantages.dim() == 1:
        adv_tok = advantages[:, None].expand_as(logp) if level != "sequence" else None
        adv_seq = advantages
    elif advantages.shape == logp.shape:
        if level == "sequence":
            raise ValueError("level='sequence' needs one advantage per response, shape (B,); per-token advantages "
                             "need level='sequence_token' or 'token'")
        adv_tok = torch.where(mask, advantages, zeros)
        adv_seq = None
    else:
        raise ValueError(f"advantages must have shape (B,) or (B, T) = {tuple(logp.shape)}, got "
                         f"{tuple(advantages.shape)}")

    lengths = mask.sum(-1)
    nonempty = lengths > 0
    token_log_ratio = logp - old_logp
    seq_log_ratio = sequence_log_ratio(logp, old_logp, mask)

    if level == "token":
        ratio = torch.exp(token_log_ratio)
        objective = _clipped(ratio, adv_tok, eps_low, eps_high)
        low, high = _clip_sides(ratio, adv_tok, eps_low, eps_high)
        low, high = low & mask, high & mask
        count = mask.sum().clamp(min=1)
        clip_low, clip_high = low.sum() / count, high.sum() / count
        ratio_values = ratio.detach()[mask]
    elif level == "sequence":
        ratio_seq = torch.exp(seq_log_ratio)
        objective = _clipped(ratio_seq, adv_seq, eps_low, eps_high)[:, None].expand_as(logp)
        low, high = _clip_sides(ratio_seq, adv_seq, eps_low, eps_high)
        count = nonempty.sum().clamp(min=1)
        clip_low, clip_high = (low & nonempty).sum() / count, (high & nonempty).sum() / count
        ratio_values = ratio_seq.detach()[nonempty]
    else:
        log_ratio = seq_log_ratio.detach()[:, None] + logp - logp.detach()
        ratio = torch.exp(log_ratio)
        objective = _clipped(ratio, adv_tok, eps_low, eps_high)
        # every token of response i has the value s_i; a response counts as clipped where its tokens are
        low, high = _clip_sides(ratio.detach(), adv_tok, eps_low, eps_high)
        low, high = low & mask, high & mask
        count = mask.sum().clamp(min=1)
        clip_low, clip_high = low.sum() / count, high.sum() / count
        ratio_values = torch.exp(seq_log_ratio.detach())[nonempty]

    per_token = -objective
    if token_mask is not None:
        if token_mask.shape != logp.shape:
            raise ValueError(f"token_mask must have shape {tuple(logp.shape)}, got {tuple(token_mask.shape)}")
        per_token = torch.where(token_mask.bool(), per_token, zeros)
    kl_value = logp.new_zeros(())
    if ref_logp is not None:
        ref_logp = torch.where(mask, ref_logp.to(logp.dtype), zeros).detach()
        kl = k3_kl(logp, ref_logp)
        kl_value = (kl.detach() * mask).sum() / mask.sum().clamp(min=1)
        if kl_coef:
            per_token = per_token + kl_coef * kl
    per_token = torch.where(mask, per_token, zeros)
    loss = _aggregate(per_token, mask, aggregation, normalizer, max_length).to(input_dtype)

    with torch.no_grad():
        valid_log_ratio = token_log_ratio.detach()[mask]
        seq_values = seq_log_ratio.detach()[nonempty]
        stats = LossStats(
            clip_fraction=float(clip_low + clip_high),
            clip_fraction_low=float(clip_low),
            clip_fraction_high=float(clip_high),
            ratio_mean=_safe(ratio_values, torch.mean),
            ratio_min=_safe(ratio_values, torch.min),
            ratio_max=_safe(ratio_values, torch.max),
            token_log_ratio_std=_safe(valid_log_ratio, _std),
            seq_log_ratio_std=_safe(seq_values, _std),
            kl=float(kl_value),
            masked_token_fraction=(
                float((token_mask.bool() & mask).sum() / mask.sum().clamp(min=1)) if token_mask is not None else 1.0
            ),
        )
    return loss, stats


def _clipped(ratio: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float) -> torch.Tensor:
    return torch.minimum(ratio * adv, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv)


def _clip_sides(ratio, adv, eps_low, eps_high) -> tuple[torch.Tensor, torch.Tensor]:
    return (ratio < 1 - eps_low) & (adv < 0), (ratio > 1 + eps_high) & (adv > 0)


def _aggregate(per_token, mask, aggregation, normalizer, max_length) -> torch.Tensor:
    if aggregation == "token-mean":
        denominator = mask.sum().clamp(min=1) if normalizer is None else normalizer
        return per_token.sum() / denominator
    n_seq = max(per_token.shape[0], 1) if normalizer is None else normalizer
    if aggregation == "seq-mean-token-mean":
        return (per_token.sum(-1) / mask.sum(-1).clamp(min=1)).sum() / n_seq
    if aggregation == "seq-mean-token-sum":
        return per_token.sum() / n_seq
    length = max(per_token.shape[1] if max_length is None else max_length, 1)
    return per_token.sum() / (n_seq * length)


def _std(x: torch.Tensor) -> torch.Tensor:
    return x.std(unbiased=False)


def _safe(values: torch.Tensor, fn) -> float:
    return float(fn(values.float())) if values.numel() else 0.0


# ---------------------------------------------------------------------------------------------- entropy and 80/20


@torch.no_grad()
def token_entropy(logits: torch.Tensor, temperature: float = 1.0, *, chunk_size: int = 1024) -> torch.Tensor:
    """Entropy of each position's distribution ``p = softmax(z / T)`` (80/20 paper, arXiv 2506.01939 Eq. 1)::

        H_t = -sum_j p_{t,j} log p_{t,j} = logsumexp(z/T) - sum_j p_{t,j} z_j / T

    ``logits`` (..., V); computed ``chunk_size`` positions at a time in float32, without gradient.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    for start in range(0, flat.shape[0], chunk_size):
        scaled = flat[start : start + chunk_size].float() / temperature
        log_probs = torch.log_softmax(scaled, dim=-1)
        out[start : start + chunk_size] = -(log_probs.exp() * log_probs).sum(-1)
    return out.view(logits.shape[:-1])


def quantile_rank(q: float | Fraction, n: int) -> tuple[int, float]:
    """The rank ``q (n - 1)`` of the linearly interpolated q-quantile of n sorted values, as ``(floor, fraction)``,
    computed in exact rational arithmetic.

    ``q`` is read as the nearest fraction with a denominator of at most 10^9 (``1/3`` passed as ``0.333...`` is 1/3,
    ``0.41`` is 41/100), so a rank that is an integer in exact arithmetic *is* that integer, and the order statistic
    itself becomes the threshold. Floating point gets this wrong for many q: ``(1 - 1/3) * 9`` is ``6.000000000000001``,
    which puts the threshold a hair above the 7th value and drops it and all its ties.
    """
    if n < 1:
        raise ValueError(f"a quantile needs at least one value, got n={n}")
    exact = q if isinstance(q, Fraction) else Fraction(q).limit_denominator(_RATIONAL_DENOMINATOR)
    if not 0 <= exact <= 1:
        raise ValueError(f"q must be in [0, 1], got {q}")
    position = exact * (n - 1)
    floor = position.numerator // position.denominator
    return floor, float(position - floor)


def linear_quantile(sorted_values: torch.Tensor, q: float | Fraction) -> torch.Tensor:
    """The q-quantile of ascending ``sorted_values`` with linear interpolation (``torch.quantile``'s default method),
    with the exact rank of :func:`quantile_rank` and without ``torch.quantile``'s 16M-element limit."""
    n = sorted_values.numel()
    lo, fraction = quantile_rank(q, n)
    if fraction == 0.0:
        return sorted_values[lo]
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * fraction


@torch.no_grad()
def gather_valid_entropies(entropy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The entropies of the valid tokens of this process, concatenated with every other process's when
    ``torch.distributed`` is initialised.

    Processes may hold different numbers of valid tokens (even none): sizes are exchanged first, each process pads to
    the largest size and all processes take part in both collectives, so unequal lengths never deadlock (the failure
    TRL fixed in PR #3964); the padding is dropped by size, never by a sentinel value.
    """
    local = entropy.detach()[mask.bool()].float()
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    world = dist.get_world_size()
    size = torch.tensor([local.numel()], dtype=torch.long, device=local.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = max(int(s) for s in sizes)
    padded = torch.zeros(max(longest, 1), dtype=torch.float32, device=local.device)
    padded[: local.numel()] = local
    buffers = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(buffers, padded)
    return torch.cat([buf[: int(n)] for buf, n in zip(buffers, sizes, strict=True)])


@torch.no_grad()
def entropy_threshold(entropy: torch.Tensor, mask: torch.Tensor, rho: float) -> torch.Tensor | None:
    """``tau_rho``: the (1 - rho) quantile of the entropies of all valid tokens in the batch (over every process when
    ``torch.distributed`` is initialised), linearly interpolated at the exact rank ``(1 - rho)(n - 1)``
    (:func:`quantile_rank`); ``None`` when the batch holds no valid token."""
    if not 0 < rho <= 1:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    values = gather_valid_entropies(entropy, mask)
    if values.numel() == 0:
        return None
    share = 1 - Fraction(rho).limit_denominator(_RATIONAL_DENOMINATOR)
    return linear_quantile(torch.sort(values).values, share)


@torch.no_grad()
def high_entropy_mask(entropy: torch.Tensor, mask: torch.Tensor, rho: float = 0.2) -> torch.Tensor:
    """The 80/20 "forking token" mask (arXiv 2506.01939 Eq. 2): ``1[H_t >= tau_rho] * m_t``.

    ``tau_rho`` is the (1 - rho) quantile of the entropies of the valid tokens of the *whole batch* (padding never
    enters it; with ``torch.distributed`` initialised, of every process's tokens, see
    :func:`gather_valid_entropies`). ``rho=1`` selects every valid token; a batch without valid tokens gives an
    all-False mask (every process must still call this function, so the collectives match).
    """
    mask = mask.bool()
    threshold = entropy_threshold(entropy, mask, rho)
    if threshold is None:
        return torch.zeros_like(mask)
    return (entropy >= threshold) & mask
