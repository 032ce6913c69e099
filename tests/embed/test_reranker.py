from __future__ import annotations

import numpy as np
import pytest
import torch

from qwenkit.embed.reranker import (
    RERANK_PREFIX,
    RERANK_SUFFIX,
    Reranker,
    format_rerank_prompt,
    reranker_loss,
    yes_no_score,
)


def test_prompt_string_is_exact():
    expected = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
        'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
        "<Instruct>: Find code\n<Query>: sort a list\n<Document>: def f(): pass"
        "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert format_rerank_prompt("Find code", "sort a list", "def f(): pass") == expected


def test_yes_no_score_identities():
    logits = torch.randn(5, 9, generator=torch.Generator().manual_seed(0))
    yes, no = 3, 7
    score = yes_no_score(logits, yes, no)
    two_way = torch.log_softmax(logits[:, [no, yes]], dim=-1)[:, 1].exp()
    assert torch.allclose(score, two_way, atol=1e-6)
    assert torch.allclose(score, torch.sigmoid(logits[:, yes] - logits[:, no]))
    swapped = yes_no_score(logits, no, yes)
    assert torch.allclose(score + swapped, torch.ones(5), atol=1e-6)
    equal = torch.zeros(1, 9)
    assert yes_no_score(equal, yes, no).item() == 0.5
    huge = torch.tensor([[0.0, 1e4, -1e4]])
    assert yes_no_score(huge, 1, 2).item() == 1.0 and yes_no_score(huge, 2, 1).item() == 0.0


def test_reranker_loss_is_cross_entropy_over_no_yes():
    logits = torch.tensor([[0.3, 1.2], [2.0, -1.0]])
    labels = torch.tensor([1, 0])
    expected = -(torch.log_softmax(logits, -1)[0, 1] + torch.log_softmax(logits, -1)[1, 0]) / 2
    assert torch.allclose(reranker_loss(logits, labels), expected)


def test_reranker_scores_match_full_forward(tiny_lm):
    model, tokenizer = tiny_lm
    reranker = Reranker(model, tokenizer, max_length=400, instruction="Find code")
    docs = ["def add(a, b): return a + b", "the cat sat", "x" * 50]
    scores = reranker.score("add two numbers", docs, batch_size=2)
    for doc, score in zip(docs, scores, strict=True):
        ids = tokenizer(format_rerank_prompt("Find code", "add two numbers", doc), add_special_tokens=False)
        with torch.no_grad():
            logits = model(torch.tensor([ids["input_ids"]])).logits[0, -1]
        assert score == pytest.approx(torch.sigmoid(logits[reranker.yes_id] - logits[reranker.no_id]).item(), abs=1e-5)
    assert np.all((scores > 0) & (scores < 1))


def test_truncation_keeps_the_suffix(tiny_lm):
    model, tokenizer = tiny_lm
    reranker = Reranker(model, tokenizer, max_length=300)
    ids = reranker.prompt_ids("q", "d" * 1000)
    assert len(ids) == 300
    assert ids[-len(reranker.suffix_ids):] == tokenizer(RERANK_SUFFIX, add_special_tokens=False)["input_ids"]
    assert ids[: len(reranker.prefix_ids)] == tokenizer(RERANK_PREFIX, add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="no room"):
        Reranker(model, tokenizer, max_length=50)


def test_reranker_requires_single_yes_no_tokens():
    from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for

    tokenizer = build_synthetic_tokenizer()
    with pytest.raises(ValueError, match="single token"):
        Reranker(tiny_qwen3_for(tokenizer, "nano"), tokenizer)


def test_reranker_sft_learns_a_separable_rule():
    from qwenkit.core.loop import TrainConfig
    from qwenkit.embed.rerank_train import train_reranker
    from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for

    tokenizer = build_synthetic_tokenizer(extra_tokens=("yes", "no"))
    reranker = Reranker(tiny_qwen3_for(tokenizer, "nano", seed=3), tokenizer, max_length=400, instruction="match")
    examples = [(f"q{i}", ("alpha " if i % 2 else "omega ") + str(i), i % 2) for i in range(16)]
    config = TrainConfig(max_steps=30, lr=3e-3, seed=0)
    result = train_reranker(reranker, examples, config, batch_size=8, quiet=True)
    first, last = result.history[0]["loss"], np.mean([h["loss"] for h in result.history[-5:]])
    assert last < 0.75 * first
    scores = reranker.score("q", ["alpha 99", "omega 99"])
    assert scores[0] > scores[1]
