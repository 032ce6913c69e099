"""Golden tests: every loss variant and its gradient against hand-written, loop-by-loop reference formulas."""

from __future__ import annotations

import math
import statistics
from fractions import Fraction

import pytest
import torch

from qwenkit.rl.losses import (
    AGGREGATIONS,
    group_advantages,
    high_entropy_mask,
    k3_kl,
    linear_quantile,
    policy_loss,
    quantile_rank,
    sequence_log_ratio,
    token_entropy,
)

torch.set_num_threads(1)


def ragged_batch(seed: int, batch: int = 6, width: int = 9, *, empty_row: bool = True):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, width + 1, (batch,), generator=g)
    if empty_row:
        lengths[-1] = 0
    mask = torch.arange(width)[None, :] < lengths[:, None]
    logp = -torch.rand(batch, width, generator=g, dtype=torch.float64) * 2
    old = logp.detach() + 0.3 * torch.randn(batch, width, generator=g, dtype=torch.float64)
    ref = logp.detach() + 0.2 * torch.randn(batch, width, generator=g, dtype=torch.float64)
    adv = torch.randn(batch, generator=g, dtype=torch.float64)
    token_mask = torch.rand(batch, width, generator=g) < 0.5
    return logp, old, ref, adv, mask, token_mask


def reference_loss(logp, old, adv, mask, *, level, clip, aggregation, token_mask=None, ref=None, kl_coef=0.0):
    """Independent reference: Python loops over responses and tokens, scalar autograd, no vectorised masking."""
    eps_low, eps_high = clip
    batch, width = logp.shape
    per_seq_sums, per_seq_lengths = [], []
    for i in range(batch):
        valid = [t for t in range(width) if mask[i, t]]
        n = len(valid)
        if n:
            log_s = sum(logp[i, t] - old[i, t] for t in valid) / n
        total = logp.new_zeros(())
        for t in valid:
            a = adv[i] if adv.dim() == 1 else adv[i, t]
            if level == "token":
                r = torch.exp(logp[i, t] - old[i, t])
            elif level == "sequence":
                r = torch.exp(log_s)
            else:
                r = torch.exp(log_s.detach() + logp[i, t] - logp[i, t].detach())
            term = torch.minimum(r * a, torch.clamp(r, 1 - eps_low, 1 + eps_high) * a)
            if token_mask is not None and not token_mask[i, t]:
                term = term * 0
            value = -term
            if ref is not None and kl_coef:
                d = ref[i, t] - logp[i, t]
                value = value + kl_coef * (torch.exp(d) - d - 1)
            total = total + value
        per_seq_sums.append(total)
        per_seq_lengths.append(n)
    if aggregation == "token-mean":
        return sum(per_seq_sums) / max(sum(per_seq_lengths), 1)
    if aggregation == "seq-mean-token-mean":
        return sum(s / max(n, 1) for s, n in zip(per_seq_sums, per_seq_lengths, strict=True)) / batch
    if aggregation == "seq-mean-token-sum":
        return sum(per_seq_sums) / batch
    return sum(per_seq_sums) / (batch * width)


def loss_and_grad(fn, logp):
    leaf = logp.detach().clone().requires_grad_(True)
    loss = fn(leaf)
    loss = loss[0] if isinstance(loss, tuple) else loss
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


# --------------------------------------------------------------------------------------------- advantages


def test_group_advantages_match_hand_formula():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 2.0, -1.0, 0.0, 3.0])
    adv = group_advantages(rewards, 4, eps=1e-4)
    for g in range(3):
        group = rewards[4 * g : 4 * g + 4].tolist()
        mean, std = statistics.mean(group), statistics.stdev(group)
        for k, r in enumerate(group):
            expected = 0.0 if std == 0 else (r - mean) / (std + 1e-4)
            assert adv[4 * g + k].item() == pytest.approx(expected, abs=1e-6)
    assert torch.all(adv[4:8] == 0)  # zero-variance group: exactly 0


def test_group_advantages_batch_and_none_scales():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 3.0, 1.0])
    batch_std = statistics.stdev(rewards.tolist())
    adv_b = group_advantages(rewards, 3, scale="batch")
    adv_n = group_advantages(rewards, 3, scale="none")
    first = rewards[:3].tolist()
    for k in range(3):
        assert adv_b[k].item() == pytest.approx((first[k] - statistics.mean(first)) / (batch_std + 1e-4), abs=1e-6)
        assert adv_n[k].item() == pytest.approx(first[k] - statistics.mean(first), abs=1e-6)


def test_group_advantages_edge_cases():
    assert torch.all(group_advantages(torch.tensor([1.0, 2.0]), 1) == 0)
    assert group_advantages(torch.zeros(0), 4).numel() == 0
    with pytest.raises(ValueError, match="divisible"):
        group_advantages(torch.ones(5), 4)


# --------------------------------------------------------------------------------------------- policy losses


@pytest.mark.parametrize("level", ["token", "sequence", "sequence_token"])
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("clip", [(0.2, 0.28), (3e-4, 4e-4)])
@pytest.mark.parametrize("seed", [0, 1])
def test_policy_loss_and_grad_match_reference(level, aggregation, clip, seed):
    logp, old, _, adv, mask, _ = ragged_batch(seed)
    ours = loss_and_grad(
        lambda x: policy_loss(x, old, adv, mask, level=level, clip=clip, aggregation=aggregation), logp
    )
    ref = loss_and_grad(
        lambda x: reference_loss(x, old, adv, mask, level=level, clip=clip, aggregation=aggregation), logp
    )
    torch.testing.assert_close(ours[0], ref[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(ours[1], ref[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("level", ["token", "sequence", "sequence_token"])
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_token_mask_and_kl_match_reference(level, aggregation):
    """With level="sequence" the reference zeroes masked terms but keeps s_i's dependence on every token (TRL)."""
    logp, old, ref_logp, adv, mask, token_mask = ragged_batch(3)
    kwargs = dict(level=level, clip=(0.2, 0.28), aggregation=aggregation)
    ours = loss_and_grad(
        lambda x: policy_loss(x, old, adv, mask, token_mask=token_mask, ref_logp=ref_logp, kl_coef=0.05, **kwargs),
        logp,
    )
    ref = loss_and_grad(
        lambda x: reference_loss(x, old, adv, mask, token_mask=token_mask, ref=ref_logp, kl_coef=0.05, **kwargs),
        logp,
    )
    torch.testing.assert_close(ours[0], ref[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(ours[1], ref[1], atol=1e-6, rtol=0)


def test_per_token_advantages_match_reference():
    logp, old, _, _, mask, _ = ragged_batch(4)
    adv = torch.randn(logp.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    for level in ("token", "sequence_token"):
        ours = loss_and_grad(lambda x, lv=level: policy_loss(x, old, adv, mask, level=lv, clip=(0.1, 0.1)), logp)
        ref = loss_and_grad(
            lambda x, lv=level: reference_loss(
                x, old, adv, mask, level=lv, clip=(0.1, 0.1), aggregation="seq-mean-token-mean"
            ),
            logp,
        )
        torch.testing.assert_close(ours[1], ref[1], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="sequence_token"):
        policy_loss(logp, old, adv, mask, level="sequence")


@pytest.mark.parametrize("level", ["token", "sequence", "sequence_token"])
def test_padding_garbage_and_width_do_not_change_loss_or_grad(level):
    logp, old, ref_logp, adv, mask, _ = ragged_batch(5)
    kwargs = dict(level=level, clip=(0.2, 0.28), aggregation="seq-mean-token-mean")
    clean = loss_and_grad(lambda x: policy_loss(x, old, adv, mask, ref_logp=ref_logp, kl_coef=0.1, **kwargs), logp)
    pad = 4
    garbage = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30])

    def widen(x, fill):
        extra = fill.repeat(x.shape[0], pad // len(fill) + 1)[:, :pad].to(x.dtype)
        return torch.cat([torch.where(mask, x, fill[0].to(x.dtype)), extra], dim=1)

    wide_mask = torch.cat([mask, torch.zeros(mask.shape[0], pad, dtype=torch.bool)], dim=1)
    wide_old, wide_ref = widen(old, garbage), widen(ref_logp, garbage.roll(1))

    def wide_loss(x):
        return policy_loss(widen(x, garbage.roll(2)), wide_old, adv, wide_mask, ref_logp=wide_ref, kl_coef=0.1,
                           **kwargs)

    dirty = loss_and_grad(wide_loss, logp)
    assert torch.isfinite(dirty[1]).all()
    torch.testing.assert_close(dirty[0], clean[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(dirty[1] * mask, clean[1], atol=1e-12, rtol=0)
    assert torch.all(dirty[1][~mask] == 0)


def test_sequence_ratio_is_exp_of_mean_not_sum():
    length = 3000
    logp = torch.full((1, length), -1.0, dtype=torch.float64)
    old = logp + 0.1  # each token ratio exp(-0.1): exp(sum) = exp(-300) would underflow float32
    mask = torch.ones(1, length, dtype=torch.bool)
    assert sequence_log_ratio(logp, old, mask).item() == pytest.approx(-0.1)
    _, stats = policy_loss(logp.float(), old.float(), torch.tensor([1.0]), mask, level="sequence", clip=(0.2, 0.2))
    assert stats.ratio_mean == pytest.approx(math.exp(-0.1), rel=1e-5)


@pytest.mark.parametrize("clip", [(10.0 - 9.5, 100.0), (3e-4, 4e-4)])
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_gspo_token_equals_gspo_value_and_grad(clip, aggregation):
    logp, old, _, adv, mask, _ = ragged_batch(7, batch=8, width=12)
    gspo = loss_and_grad(lambda x: policy_loss(x, old, adv, mask, level="sequence", clip=clip,
                                               aggregation=aggregation), logp)
    token = loss_and_grad(lambda x: policy_loss(x, old, adv, mask, level="sequence_token", clip=clip,
                                                aggregation=aggregation), logp)
    torch.testing.assert_close(token[0], gspo[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(token[1], gspo[1], atol=1e-12, rtol=0)


def test_clip_semantics_on_hand_built_responses():
    # two one-token responses per case; ratio = exp(logp - old)
    eps_low, eps_high = 0.2, 0.3
    mask = torch.ones(4, 1, dtype=torch.bool)
    ratios = torch.tensor([1.5, 1.5, 0.5, 0.5], dtype=torch.float64)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    old = torch.zeros(4, 1, dtype=torch.float64)
    logp = torch.log(ratios)[:, None].clone().requires_grad_(True)
    loss, stats = policy_loss(logp, old, adv, mask, level="token", clip=(eps_low, eps_high), aggregation="token-mean")
    # hand computed: min(rA, clip(r)A) = [1.3, -1.5, 0.5, -0.8]
    assert loss.item() == pytest.approx(-(1.3 - 1.5 + 0.5 - 0.8) / 4)
    (grad,) = torch.autograd.grad(loss, logp)
    # d/dlogp of -rA/4 = -rA/4 where unclipped; 0 where the clip is active (cases 0 and 3)
    torch.testing.assert_close(grad[:, 0], torch.tensor([0.0, 1.5 / 4, -0.5 / 4, 0.0], dtype=torch.float64))
    assert stats.clip_fraction_high == 0.25 and stats.clip_fraction_low == 0.25 and stats.clip_fraction == 0.5
    assert stats.ratio_max == pytest.approx(1.5)


def test_gspo_clips_whole_responses_and_counts_per_sequence():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    old = torch.zeros(3, 3, dtype=torch.float64)
    # response 0: log ratios (+0.01, +0.01, +0.01) -> s = e^0.01 > 1 + 4e-4, A>0: clipped as a whole
    # response 1: (+0.001, -0.001) -> s = 1 exactly: not clipped; response 2: -0.01 with A>0: not clipped
    logp = torch.tensor([[0.01, 0.01, 0.01], [0.001, -0.001, 5.0], [-0.01, 7.0, 7.0]], dtype=torch.float64)
    adv = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    leaf = logp.clone().requires_grad_(True)
    loss, stats = policy_loss(leaf, old, adv, mask, level="sequence", clip=(3e-4, 4e-4))
    (grad,) = torch.autograd.grad(loss, leaf)
    assert torch.all(grad[0] == 0)
    assert stats.clip_fraction == pytest.approx(1 / 3) and stats.clip_fraction_high == pytest.approx(1 / 3)
    # unclipped responses: d/dlogp_t of -(1/3) s_i A_i = -(1/3) s_i / |y_i|
    assert grad[1, 0].item() == pytest.approx(-(1 / 3) * 1.0 / 2)
    assert grad[2, 0].item() == pytest.approx(-(1 / 3) * math.exp(-0.01))


def test_normalizer_makes_shard_losses_sum_to_full_batch_loss():
    logp, old, _, adv, mask, _ = ragged_batch(11, batch=8)
    for aggregation in AGGREGATIONS:
        full, _ = policy_loss(logp, old, adv, mask, aggregation=aggregation)
        norm = mask.sum() if aggregation == "token-mean" else 8
        halves = [
            policy_loss(logp[s], old[s], adv[s], mask[s], aggregation=aggregation, normalizer=norm)[0]
            for s in (slice(0, 4), slice(4, 8))
        ]
        torch.testing.assert_close(halves[0] + halves[1], full, atol=1e-12, rtol=0)


def test_bad_arguments_raise_clear_errors():
    logp, old, _, adv, mask, token_mask = ragged_batch(0)
    with pytest.raises(ValueError, match="level"):
        policy_loss(logp, old, adv, mask, level="tokens")
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(logp, old, adv, mask, kl_coef=0.1)


def test_k3_kl_is_nonnegative_and_zero_at_equality():
    x = torch.randn(100, dtype=torch.float64)
    y = torch.randn(100, dtype=torch.float64)
    kl = k3_kl(x, y)
    assert torch.all(kl >= 0)
    assert torch.all(k3_kl(x, x) == 0)
    torch.testing.assert_close(kl, torch.exp(y - x) - (y - x) - 1)


# --------------------------------------------------------------------------------------------- entropy and 80/20


def test_token_entropy_matches_definition_in_chunks():
    logits = torch.randn(3, 5, 50, dtype=torch.float64) * 3
    for temperature in (1.0, 0.7):
        p = torch.softmax(logits / temperature, dim=-1)
        expected = -(p * p.log()).sum(-1)
        torch.testing.assert_close(token_entropy(logits, temperature, chunk_size=4).double(), expected,
                                   atol=1e-5, rtol=0)


def test_linear_quantile_matches_torch_quantile():
    values = torch.randn(1001)
    for q in (0.0, 0.2, 0.5, 0.8, 0.999, 1.0):
        torch.testing.assert_close(linear_quantile(torch.sort(values).values, q), torch.quantile(values, q))


def test_high_entropy_mask_properties():
    g = torch.Generator().manual_seed(0)
    entropy = torch.rand(8, 50, generator=g)
    lengths = torch.randint(0, 51, (8,), generator=g)
    mask = torch.arange(50)[None] < lengths[:, None]
    selected = high_entropy_mask(entropy, mask, rho=0.2)
    assert not torch.any(selected & ~mask)
    valid = entropy[mask]
    threshold = torch.quantile(valid, 0.8)
    assert torch.equal(selected, (entropy >= threshold) & mask)
    assert abs(selected.sum().item() / mask.sum().item() - 0.2) < 0.01
    # padding never enters the quantile: huge or NaN entropies at padded positions change nothing
    garbage = entropy.masked_fill(~mask, 1e9)
    assert torch.equal(high_entropy_mask(garbage, mask, 0.2), selected)
    assert torch.equal(high_entropy_mask(entropy, mask, 1.0), mask)
    empty = torch.zeros_like(mask)
    assert not high_entropy_mask(entropy, empty, 0.2).any()
    with pytest.raises(ValueError, match="rho"):
        high_entropy_mask(entropy, mask, 0.0)


def test_masked_tokens_get_zero_grad_but_count_in_denominator():
    logp, old, _, adv, mask, _ = ragged_batch(2)
    entropy = torch.rand(logp.shape, generator=torch.Generator().manual_seed(1))
    forking = high_entropy_mask(entropy, mask, 0.2)
    loss, grad = loss_and_grad(
        lambda x: policy_loss(x, old, adv, mask, token_mask=forking, aggregation="token-mean"), logp
    )
    assert torch.all(grad[~forking] == 0)
    assert torch.any(grad[forking] != 0)
    # denominator = all valid tokens, not only the selected ones
    only_selected, _ = policy_loss(logp, old, adv, forking, aggregation="token-mean")
    torch.testing.assert_close(loss, only_selected * forking.sum() / mask.sum())



# --------------------------------------------------------------------------------------------- exact 80/20 threshold


def _kept_by_rational_reference(values: list[int], rho: Fraction) -> int:
    """How many values the 80/20 rule keeps, from the (1 - rho) quantile in exact rational arithmetic."""
    ordered = sorted(values)
    position = (1 - rho) * (len(ordered) - 1)
    lo = position.numerator // position.denominator
    hi = min(lo + 1, len(ordered) - 1)
    threshold = ordered[lo] + (ordered[hi] - ordered[lo]) * (position - lo)
    return sum(v >= threshold for v in ordered)


def test_threshold_is_the_order_statistic_when_the_rank_is_an_integer():
    entropy = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 1, 2, 3]], dtype=torch.float32)
    mask = torch.ones_like(entropy, dtype=torch.bool)
    assert (1 - 1 / 3) * 9 != 6  # the float rank overshoots the exact rank 6
    assert int(high_entropy_mask(entropy, mask, 1 / 3).sum()) == 10
    values = torch.arange(181, dtype=torch.float32)[None]
    assert int(high_entropy_mask(values, torch.ones_like(values, dtype=torch.bool), 0.7).sum()) == 127
    assert quantile_rank(0.3, 181) == (54, 0.0)


@pytest.mark.parametrize("n", [2, 3, 7, 10, 33, 100, 181, 1000])
def test_kept_count_matches_a_rational_reference_over_a_sweep_of_rho(n):
    g = torch.Generator().manual_seed(n)
    values = torch.randint(0, 6, (1, n), generator=g)  # many ties: an off-by-one rank changes the kept count
    mask = torch.ones_like(values, dtype=torch.bool)
    for numerator, denominator in [(1, 3), (1, 5), (2, 3), (1, 7), (3, 10)] + [(k, 100) for k in range(1, 101)]:
        rho = Fraction(numerator, denominator)
        kept = int(high_entropy_mask(values.float(), mask, numerator / denominator).sum())
        assert kept == _kept_by_rational_reference(values[0].tolist(), rho), (n, rho)


def test_quantile_rank_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least one"):
        quantile_rank(0.5, 0)
    with pytest.raises(ValueError, match="q must be"):
        quantile_rank(1.5, 3)


# --------------------------------------------------------------------------------------------- verl's configurations


def verl_gspo_loss(logp, old, adv, mask, clip, mode):
    """verl's GSPO loss (``compute_policy_loss_gspo``: the GSPO-token construction with the log ratio clamped at 10)
    and ``agg_loss``, transcribed for this test; verl 0.9.1 averages its seq-mean modes over non-empty responses."""
    eps_low, eps_high = clip
    maskf = mask.to(logp.dtype)
    lengths = maskf.sum(-1)
    log_seq = ((logp - old) * maskf).sum(-1) / lengths.clamp(min=1)
    log_token = torch.clamp(logp - logp.detach() + log_seq.detach()[:, None], max=10.0)
    ratio = torch.exp(log_token)
    per_token = torch.maximum(-adv[:, None] * ratio, -adv[:, None] * torch.clamp(ratio, 1 - eps_low, 1 + eps_high))
    per_token = torch.where(mask, per_token, torch.zeros_like(per_token))
    nonempty = lengths > 0
    if mode == "token-mean":
        return per_token.sum() / maskf.sum()
    if mode == "seq-mean-token-mean":
        return (per_token.sum(-1)[nonempty] / lengths[nonempty]).mean()
    if mode == "seq-mean-token-sum":
        return per_token.sum(-1)[nonempty].mean()
    return per_token.sum() / mask.shape[-1]


def _nonempty(mask):
    return int((mask.sum(-1) > 0).sum())


VERL_ROWS = {  # verl loss_agg_mode -> qwenkit policy_loss arguments (docs/rl.md, "verl's configurations")
    "token-mean": lambda mask: dict(aggregation="token-mean"),
    "seq-mean-token-mean": lambda mask: dict(aggregation="seq-mean-token-mean", normalizer=_nonempty(mask)),
    "seq-mean-token-sum": lambda mask: dict(aggregation="seq-mean-token-sum", normalizer=_nonempty(mask)),
    "seq-mean-token-sum-norm": lambda mask: dict(aggregation="seq-mean-token-sum-norm", normalizer=1,
                                                 max_length=mask.shape[-1]),
}


@pytest.mark.parametrize("mode", sorted(VERL_ROWS))
def test_verl_gspo_configurations_map_to_qwenkit(mode):
    logp, old, _, adv, mask, _ = ragged_batch(5)
    clip = (3e-4, 4e-4)
    ours = loss_and_grad(lambda x: policy_loss(x, old, adv, mask, level="sequence_token", clip=clip,
                                               **VERL_ROWS[mode](mask)), logp)
    theirs = loss_and_grad(lambda x: verl_gspo_loss(x, old, adv, mask, clip, mode), logp)
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-9, rtol=0)
    torch.testing.assert_close(ours[1], theirs[1], atol=1e-9, rtol=0)
