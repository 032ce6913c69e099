"""Evaluation: the answer-span confidence and the aggregation of greedy and self-consistency predictions."""

import math

import pytest
import torch

from qwenkit.lm.tokenizer import build_synthetic_tokenizer
from qwenkit.sft import evaluate as evaluation
from qwenkit.sft.config import EvalConfig
from qwenkit.sft.data import SFTRecord


@pytest.fixture(scope="module")
def tokenizer():
    return build_synthetic_tokenizer()


def test_answer_span_confidence_uses_only_the_answer_tokens(tokenizer):
    text = "1+2=3. The answer is 3."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    logprobs = [-0.1 * (i + 1) for i in range(len(ids))]
    start = text.index("is") + 2  # tokens after "The answer is": " 3."
    expected = math.exp(sum(logprobs[start:]))
    assert evaluation.answer_span_confidence(tokenizer, ids, logprobs) == pytest.approx(expected)
    no_phrase = tokenizer("42", add_special_tokens=False)["input_ids"]
    assert evaluation.answer_span_confidence(tokenizer, no_phrase, [-0.5, -0.25]) == pytest.approx(math.exp(-0.75))


def test_evaluate_records_aggregates_greedy_and_votes(monkeypatch, tokenizer):
    records = [SFTRecord("1+2?", "3", "number"), SFTRecord("Good day.", "positive", "label",
                                                           choices=("positive", "negative"))]
    canned = {
        0.0: ["The answer is 3.", "The answer is negative."],
        0.8: ["The answer is 3.", "The answer is 4.", "The answer is 3.", "no idea",
              "The answer is positive.", "The answer is negative.", "The answer is negative.", "The answer is x."],
    }

    def fake_generate(model, tok, prompts, *, temperature, max_new_tokens, seed, batch_size):
        texts = canned[temperature]
        assert len(prompts) == len(texts)
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        return ids, texts, [[-0.1] * len(i) for i in ids]

    monkeypatch.setattr(evaluation, "_generate", fake_generate)
    results = evaluation.evaluate_records(torch.nn.Linear(1, 1), tokenizer, records, "answer",
                                          EvalConfig(samples=4, temperature=0.8))
    first, second = results
    assert (first.greedy_answer, first.greedy_correct, first.sc_answer, first.sc_confidence) == ("3", True, "3", 0.5)
    assert (second.greedy_correct, second.sc_answer, second.sc_confidence, second.sc_correct) == (
        False, "negative", 0.5, False)
    assert first.token_confidence == pytest.approx(math.exp(-0.1 * 3))  # " 3." after the phrase
    summary = evaluation.summarize(results, n_bins=10)
    assert summary["accuracy_greedy"] == 0.5 and summary["accuracy_sc"] == 0.5
    assert summary["ece_sc"] == pytest.approx(0.0)  # both at 0.5 confidence, one of two right
    assert summary["brier_sc"] == pytest.approx(0.25)
