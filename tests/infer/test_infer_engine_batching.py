"""The engine's batched paths: plain greedy rows sampled by one argmax, short prompts grouped under the prefill
budget, a row whose processing fails answered alone."""

from __future__ import annotations

import asyncio

import pytest

from qwenkit.core.errors import ConfigError
from qwenkit.infer.engine import ContinuousEngine, EngineRequest, _Row
from qwenkit.infer.generate import chat_stop_token_ids, generate_chat
from qwenkit.lm.chat import generation_prompt


def _prompt(tokenizer, text: str) -> list[int]:
    prompt, _ = generation_prompt([{"role": "user", "content": text}], tokenizer=tokenizer, enable_thinking=False)
    return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def _pass_through(_ids, scores):
    return scores


def _collect(engine: ContinuousEngine, requests: list[EngineRequest]) -> list[tuple[str, object]]:
    """Submit every request before the worker starts (so the first step sees them all); (kind, value) of each."""

    async def main():
        loop = asyncio.get_running_loop()
        for request in requests:
            request.loop, request.events = loop, asyncio.Queue()
            engine.submit(request)
        engine.start()
        answers = []
        for request in requests:
            while True:
                _, kind, value = await request.events.get()
                if kind in ("done", "error"):
                    answers.append((kind, value))
                    break
        return answers

    try:
        return asyncio.run(main())
    finally:
        engine.stop()


def test_plain_greedy_rows_are_recognised(dense, tokenizer):
    engine = ContinuousEngine(dense, tokenizer)

    def row(**fields) -> _Row:
        return _Row(engine, EngineRequest(prompt_ids=[5, 6], thinking=False, max_tokens=4,
                                          **{"temperature": 0.0, **fields}))

    assert row().plain_greedy
    for fields in ({"temperature": 0.7}, {"processors": (_pass_through,)}, {"logit_bias": {5: 1.0}},
                   {"top_logprobs": 0}, {"repetition_penalty": 1.1}, {"presence_penalty": 0.1},
                   {"frequency_penalty": 0.1}):
        assert not row(**fields).plain_greedy, fields
    assert not _Row(engine, EngineRequest(prompt_ids=[5, 6], thinking=True, max_tokens=4, budget=2,
                                          temperature=0.0)).plain_greedy


def test_batched_argmax_gives_the_per_row_and_unbatched_tokens(dense, tokenizer):
    """Plain greedy rows (one batched argmax) and the same requests through the per-row sampler (a pass-through
    processor makes them non-plain) give the same ids, which are those of one-request greedy generation."""
    questions = [f"question {i} " * (1 + 2 * i) for i in range(5)]
    plain = [EngineRequest(prompt_ids=_prompt(tokenizer, q), thinking=False, max_tokens=24, temperature=0.0)
             for q in questions]
    per_row = [EngineRequest(prompt_ids=_prompt(tokenizer, q), thinking=False, max_tokens=24, temperature=0.0,
                             processors=(_pass_through,)) for q in questions]
    answers = _collect(ContinuousEngine(dense, tokenizer), plain + per_row)
    assert all(kind == "done" for kind, _ in answers)
    results = [value for _, value in answers]
    for question, batched, one_by_one in zip(questions, results[:5], results[5:], strict=True):
        (alone,) = generate_chat(dense, tokenizer, [[{"role": "user", "content": question}]], max_new_tokens=24,
                                 temperature=0.0, enable_thinking=False)
        assert batched.token_ids == one_by_one.token_ids == alone.token_ids


def test_prefill_budget_groups_short_prompts_and_keeps_long_ones_chunked(dense, tokenizer, monkeypatch):
    groups: list[int] = []
    chunks: list[int] = []
    original_group, original_forward = ContinuousEngine._prefill_group, ContinuousEngine._forward

    def record_group(self, group):
        groups.append(len(group))
        return original_group(self, group)

    def record_forward(self, ids, mask, positions, cache):
        if ids.shape[0] == 1 and ids.shape[1] > 1:
            chunks.append(ids.shape[1])
        return original_forward(self, ids, mask, positions, cache)

    monkeypatch.setattr(ContinuousEngine, "_prefill_group", record_group)
    monkeypatch.setattr(ContinuousEngine, "_forward", record_forward)
    short = [[7 + i, 8, 9, 10, 11, 12] for i in range(6)]  # 6 prompts of 6 tokens
    long = list(range(5, 45))  # 40 tokens: longer than prefill_chunk

    def requests():
        return [EngineRequest(prompt_ids=p, thinking=False, max_tokens=3, temperature=0.0) for p in short + [long]]

    together = _collect(ContinuousEngine(dense, tokenizer, prefill_chunk=16, prefill_budget=40), requests())
    assert groups[0] == 6  # 36 tokens fit the budget of 40 in one step
    assert chunks == [16, 16, 8]  # the long prompt is still prefilled alone, 16 tokens per step
    groups.clear()
    one_by_one = _collect(ContinuousEngine(dense, tokenizer, prefill_chunk=6, prefill_budget=6), requests())
    assert groups == [1] * 6  # the budget admits one 6-token prompt per step
    assert [value.token_ids for _, value in together] == [value.token_ids for _, value in one_by_one]


def test_prefill_budget_is_validated_and_at_least_one_chunk(dense, tokenizer):
    with pytest.raises(ConfigError, match="prefill-budget"):
        ContinuousEngine(dense, tokenizer, prefill_budget=0)
    assert ContinuousEngine(dense, tokenizer, prefill_chunk=300, prefill_budget=100).prefill_budget == 300


def test_a_row_whose_processing_fails_is_answered_alone(dense, tokenizer):
    """A processor that masks every token fails its own request; the rows beside it and later requests finish."""

    def mask_everything(_ids, scores):
        return scores.fill_(float("-inf"))

    no_stop = {t: -100.0 for t in chat_stop_token_ids(tokenizer)}
    engine = ContinuousEngine(dense, tokenizer)
    answers = _collect(engine, [
        EngineRequest(prompt_ids=_prompt(tokenizer, "fine"), thinking=False, max_tokens=6, temperature=0.0,
                      logit_bias=no_stop),
        EngineRequest(prompt_ids=_prompt(tokenizer, "broken"), thinking=False, max_tokens=6, temperature=1.0,
                      processors=(mask_everything,)),
        EngineRequest(prompt_ids=_prompt(tokenizer, "also fine"), thinking=False, max_tokens=6, temperature=0.0),
    ])
    assert [kind for kind, _ in answers] == ["done", "error", "done"]
    assert "masked" in answers[1][1]
    assert len(answers[0][1].token_ids) == 6
    assert engine.stats.failed == 1
