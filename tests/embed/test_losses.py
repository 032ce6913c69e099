from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from qwenkit.embed.losses import info_nce_logits, info_nce_loss, matryoshka_info_nce_loss


def reference_loss(q, p, n, tau, margin, pos_ids, neg_ids):
    """Eq. 1 written item by item with plain cross-entropy (no vectorisation shared with the implementation)."""
    q, p, n = F.normalize(q, dim=-1), F.normalize(p, dim=-1), F.normalize(n, dim=-1)
    losses = []
    for i in range(q.shape[0]):
        s_pos = torch.dot(q[i], p[i])
        limit = s_pos.item() + margin
        row = [s_pos]
        for k in range(n.shape[1]):
            s = torch.dot(q[i], n[i, k])
            if s.item() <= limit and neg_ids[i][k] != pos_ids[i]:
                row.append(s)
        for j in range(q.shape[0]):
            if j == i:
                continue
            s = torch.dot(q[i], q[j])
            if s.item() <= limit:
                row.append(s)
        for j in range(q.shape[0]):
            if j != i and pos_ids[j] != pos_ids[i]:
                row.append(torch.dot(p[i], p[j]))
        for j in range(q.shape[0]):
            s = torch.dot(q[i], p[j])
            if j != i and pos_ids[j] != pos_ids[i] and s.item() <= limit:
                row.append(s)
        logits = torch.stack(row) / tau
        losses.append(F.cross_entropy(logits[None], torch.tensor([0])))
    return torch.stack(losses).mean()


def make_batch(seed=0, n=6, k=2, d=16):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, d, generator=g)
    p = q + 2.0 * torch.randn(n, d, generator=g)
    neg = torch.randn(n, k, d, generator=g)
    neg[0, 0] = q[0] * 3  # a false negative: far above s(q, d+) + margin
    return q, p, neg


@pytest.mark.parametrize("margin", [0.1, 0.5])
def test_info_nce_matches_cross_entropy_reference(margin):
    q, p, neg = make_batch()
    pos_ids = [0, 1, 2, 3, 1, 5]  # items 1 and 4 share the same positive document
    neg_ids = [[10, 11], [12, 3], [13, 14], [15, 16], [17, 18], [19, 20]]
    neg_ids[2][1] = 2  # item 2's second negative is identical to its positive
    loss = info_nce_loss(q, p, neg, temperature=0.05, margin=margin, positive_ids=torch.tensor(pos_ids),
                         negative_ids=torch.tensor(neg_ids))
    expected = reference_loss(q, p, neg, 0.05, margin, pos_ids, neg_ids)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)


def test_masked_items_get_zero_gradient():
    q, p, neg = make_batch()
    neg = neg.clone().requires_grad_(True)
    logits, keep = info_nce_logits(q, p, neg, temperature=0.05, margin=0.1)
    assert not keep[0, 1]  # the planted false negative is masked
    info_nce_loss(q, p, neg, temperature=0.05, margin=0.1).backward()
    assert torch.count_nonzero(neg.grad[0, 0]) == 0
    assert torch.count_nonzero(neg.grad[0, 1]) > 0
    assert torch.isinf(logits[0, 1]) and logits[0, 1] < 0


def test_hand_computed_two_items():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = info_nce_loss(q, p, None, temperature=1.0, margin=None)
    # row i: [s_pos=1, qq=0, dd=0, qd=0] -> -log(e / (e + 3))
    assert loss.item() == pytest.approx(-math.log(math.e / (math.e + 3)), rel=1e-6)
    only_pos = info_nce_loss(q, p, None, temperature=1.0, query_query=False, doc_doc=False, query_doc=False)
    assert only_pos.item() == pytest.approx(0.0, abs=1e-7)


def test_matryoshka_loss_is_weighted_mean_over_truncations():
    q, p, neg = make_batch(d=64)
    dims, weights = (32, None), (1.0, 3.0)
    got = matryoshka_info_nce_loss(q, p, neg, dims=dims, weights=weights, temperature=0.1)
    expected = (info_nce_loss(q[:, :32], p[:, :32], neg[..., :32], temperature=0.1)
                + 3.0 * info_nce_loss(q, p, neg, temperature=0.1)) / 4.0
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="one weight per dim"):
        matryoshka_info_nce_loss(q, p, neg, dims=(32,), weights=(1.0, 2.0))
