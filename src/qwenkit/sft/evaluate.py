"""Evaluation: greedy accuracy, self-consistency confidence, token-probability confidence, and their calibration.

For each question (prompted exactly as in training, see :func:`qwenkit.sft.data.prompt_text`):

- **greedy**: one completion at temperature 0; its extracted answer is the greedy prediction.
- **token-probability confidence** (second estimator): the probability the model gave the greedy answer's own
  tokens, ``exp(sum_t log p(y_t | y_<t, x))`` over the tokens that overlap the text after the last "The answer is";
  when the completion has no such phrase, over the whole completion; 0 when no answer can be extracted at all.
  The form is ours.
- **self-consistency** (the paper's estimator, Sec. 3): ``samples`` completions at ``temperature``; the majority
  answer (:func:`qwenkit.sft.metrics.self_consistency`) is the prediction and its share the confidence.

Metrics per estimator: accuracy, ECE, MCE, Brier, and reliability-diagram bins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from qwenkit.sft.config import EvalConfig
from qwenkit.sft.data import SFTRecord, TargetMode, prompt_text
from qwenkit.sft.metrics import (
    answers_match,
    brier_score,
    canonical_gold,
    expected_calibration_error,
    extract_answer,
    maximum_calibration_error,
    reliability_bins,
    self_consistency,
)

_PHRASE = re.compile(r"the (?:final )?answer is", re.IGNORECASE)


@dataclass
class QuestionResult:
    question: str
    gold: str
    greedy_text: str
    greedy_answer: str | None
    greedy_correct: bool
    token_confidence: float
    sc_answer: str | None
    sc_confidence: float
    sc_correct: bool


def answer_span_confidence(tokenizer, completion_ids: Sequence[int], logprobs: Sequence[float]) -> float:
    """exp(sum of log-probs) of the completion tokens overlapping the text after the last "The answer is"."""
    if not completion_ids:
        return 0.0
    ends = [len(tokenizer.decode(completion_ids[: i + 1], skip_special_tokens=True))
            for i in range(len(completion_ids))]
    text = tokenizer.decode(completion_ids, skip_special_tokens=True)
    phrases = list(_PHRASE.finditer(text))
    start_char = phrases[-1].end() if phrases else 0
    starts = [0, *ends[:-1]]
    chosen = [lp for lp, s, e in zip(logprobs, starts, ends, strict=True) if e > start_char and e > s]
    if not chosen:
        chosen = list(logprobs)
    return float(torch.tensor(chosen, dtype=torch.float64).sum().exp())


def _generate(model, tokenizer, prompts: list[str], *, temperature: float, max_new_tokens: int, seed: int,
              batch_size: int):
    from qwenkit.lm.sampling import SamplingParams, sample

    stop_ids = sorted({i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id,
                                   tokenizer.get_vocab().get("<|im_end|>")) if i is not None})
    out_ids, out_text, out_logprobs = [], [], []
    for chunk, start in enumerate(range(0, len(prompts), batch_size)):
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + chunk,
                                stop_token_ids=stop_ids)
        batch = sample(model, tokenizer, prompts[start:start + batch_size], params)
        out_ids += batch.completion_ids
        out_text += batch.texts
        out_logprobs += batch.logprobs
    return out_ids, out_text, out_logprobs


def evaluate_records(model, tokenizer, records: Sequence[SFTRecord], mode: TargetMode,
                     config: EvalConfig) -> list[QuestionResult]:
    """Greedy, token-probability and self-consistency predictions for every record (seeded, deterministic)."""
    prompts = [prompt_text(r, mode, tokenizer) for r in records]
    greedy_ids, greedy_texts, greedy_logprobs = _generate(
        model, tokenizer, prompts, temperature=0.0, max_new_tokens=config.max_new_tokens, seed=config.seed,
        batch_size=config.batch_size)
    repeated = [p for p in prompts for _ in range(config.samples)]
    _, sampled_texts, _ = _generate(
        model, tokenizer, repeated, temperature=config.temperature, max_new_tokens=config.max_new_tokens,
        seed=config.seed + 1, batch_size=config.batch_size)
    results = []
    for i, record in enumerate(records):
        gold = canonical_gold(record.answer, record.kind, record.choices)
        greedy = extract_answer(greedy_texts[i], record.kind, record.choices)
        votes = [extract_answer(t, record.kind, record.choices)
                 for t in sampled_texts[i * config.samples:(i + 1) * config.samples]]
        sc_answer, sc_confidence = self_consistency(votes)
        results.append(QuestionResult(
            question=record.question, gold=gold, greedy_text=greedy_texts[i], greedy_answer=greedy,
            greedy_correct=answers_match(greedy, gold, record.kind),
            token_confidence=answer_span_confidence(tokenizer, greedy_ids[i], greedy_logprobs[i]) if greedy else 0.0,
            sc_answer=sc_answer, sc_confidence=sc_confidence,
            sc_correct=answers_match(sc_answer, gold, record.kind),
        ))
    return results


def summarize(results: Sequence[QuestionResult], n_bins: int = 10) -> dict[str, Any]:
    """Accuracy and calibration of each estimator, plus the reliability bins of both."""
    sc_conf = [r.sc_confidence for r in results]
    sc_hit = [r.sc_correct for r in results]
    tok_conf = [r.token_confidence for r in results]
    greedy_hit = [r.greedy_correct for r in results]
    return {
        "n": len(results),
        "accuracy_greedy": sum(greedy_hit) / len(results),
        "accuracy_sc": sum(sc_hit) / len(results),
        "ece_sc": expected_calibration_error(sc_conf, sc_hit, n_bins),
        "mce_sc": maximum_calibration_error(sc_conf, sc_hit, n_bins),
        "brier_sc": brier_score(sc_conf, sc_hit),
        "ece_token": expected_calibration_error(tok_conf, greedy_hit, n_bins),
        "mce_token": maximum_calibration_error(tok_conf, greedy_hit, n_bins),
        "brier_token": brier_score(tok_conf, greedy_hit),
        "bins_sc": [asdict(b) for b in reliability_bins(sc_conf, sc_hit, n_bins)],
        "bins_token": [asdict(b) for b in reliability_bins(tok_conf, greedy_hit, n_bins)],
    }
