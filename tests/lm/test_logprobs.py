import pytest
import torch

from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for, token_logprobs
from qwenkit.lm.logprobs import logprobs_from_hidden, logprobs_from_logits
from qwenkit.lm.sampling import left_pad


@pytest.fixture(scope="module")
def tokenizer():
    return build_synthetic_tokenizer()


def _batch(tokenizer, texts, side="left"):
    ids = [tokenizer(t)["input_ids"] for t in texts]
    x, mask = left_pad(ids, tokenizer.pad_token_id)
    if side == "right":
        x = torch.stack([torch.roll(row, -int((m == 0).sum())) for row, m in zip(x, mask, strict=True)])
        mask = torch.stack([torch.roll(m, -int((m == 0).sum())) for m in mask])
    return x, mask


def _reference(model, x, mask, temperature=1.0):
    """Direct computation: one full forward pass, log_softmax over the whole vocabulary."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=x, attention_mask=mask, position_ids=positions).logits.float() / temperature
    log_probs = torch.log_softmax(logits[:, :-1], -1)
    logp = log_probs.gather(-1, x[:, 1:, None]).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return logp, entropy


@pytest.mark.parametrize("moe", [False, True])
@pytest.mark.parametrize("side", ["left", "right"])
def test_matches_full_softmax(tokenizer, moe, side):
    model = tiny_qwen3_for(tokenizer, moe=moe).eval()
    x, mask = _batch(tokenizer, ["the quick brown fox", "hi", "jumps over"], side)
    scores = token_logprobs(model, x, mask, temperature=0.7, with_entropy=True, chunk_size=3)
    ref_logp, ref_entropy = _reference(model, x, mask, temperature=0.7)
    valid = scores.mask[:, 1:]
    assert torch.equal(valid, (mask[:, 1:] * mask[:, :-1]).bool())
    torch.testing.assert_close(scores.logprobs[:, 1:][valid], ref_logp[valid], atol=1e-5, rtol=0)
    torch.testing.assert_close(scores.entropy[:, 1:][valid], ref_entropy[valid], atol=1e-5, rtol=0)
    assert (scores.logprobs[~scores.mask] == 0).all()
    if moe:
        assert scores.aux_loss is not None and scores.router_logits is not None


def test_padding_does_not_change_scores(tokenizer):
    model = tiny_qwen3_for(tokenizer).eval()
    alone_x, alone_mask = _batch(tokenizer, ["hello there"])
    batch_x, batch_mask = _batch(tokenizer, ["hello there", "a much longer neighbour sentence"])
    alone = token_logprobs(model, alone_x, alone_mask).logprobs[0]
    inside = token_logprobs(model, batch_x, batch_mask).logprobs[0]
    torch.testing.assert_close(inside[-len(alone):], alone, atol=1e-5, rtol=0)


def test_completion_mask_and_gradients_match_direct(tokenizer):
    model = tiny_qwen3_for(tokenizer)
    x, mask = _batch(tokenizer, ["prompt: abc", "p: xy"])
    completion = torch.zeros_like(mask)
    completion[:, -3:] = 1
    scores = token_logprobs(model, x, mask, completion_mask=completion, chunk_size=2)
    assert int(scores.mask.sum()) == 6
    (scores.logprobs.sum()).backward()
    chunked = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref, _ = _reference(model, x, mask)
    (ref * (completion[:, 1:] * mask[:, 1:] * mask[:, :-1])).sum().backward()
    for a, b in zip(chunked, [p.grad for p in model.parameters()], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_chunk_size_does_not_matter():
    torch.manual_seed(0)
    hidden = torch.randn(2, 11, 8)
    head = torch.nn.Linear(8, 50, bias=False)
    labels = torch.randint(0, 50, (2, 11))
    whole, whole_h = logprobs_from_hidden(hidden, head, labels, chunk_size=100, with_entropy=True)
    for chunk in (1, 4, 11):
        part, part_h = logprobs_from_hidden(hidden, head, labels, chunk_size=chunk, with_entropy=True)
        torch.testing.assert_close(part, whole)
        torch.testing.assert_close(part_h, whole_h)
    direct, direct_h = logprobs_from_logits(head(hidden), labels, with_entropy=True)
    torch.testing.assert_close(whole, direct)
    uniform, uniform_h = logprobs_from_logits(torch.zeros(1, 5), torch.tensor([2]), with_entropy=True)
    assert uniform.item() == pytest.approx(-torch.log(torch.tensor(5.0)).item())
    assert uniform_h.item() == pytest.approx(torch.log(torch.tensor(5.0)).item())
    with pytest.raises(ValueError, match="chunk_size"):
        logprobs_from_hidden(hidden, head, labels, chunk_size=0)
