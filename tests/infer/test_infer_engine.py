"""The continuous-batching engine: scheduling order, cancellation, log-probs against re-scoring, the safe sampler."""

from __future__ import annotations

import asyncio
import math

import pytest
import torch

from qwenkit.infer.engine import ContinuousEngine, EngineRequest, sample_token
from qwenkit.infer.generate import chat_stop_token_ids, generate_chat
from qwenkit.lm.chat import generation_prompt


def _prompt(tokenizer, text: str, thinking: bool = False) -> list[int]:
    prompt, _ = generation_prompt([{"role": "user", "content": text}], tokenizer=tokenizer, enable_thinking=thinking)
    return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def _no_stop(tokenizer) -> dict[int, float]:
    """logit_bias that keeps the random tiny model from ending a reply early."""
    return {t: -100.0 for t in chat_stop_token_ids(tokenizer)}


def _run(engine: ContinuousEngine, script):
    """Run the coroutine ``script(submit)`` against a started engine; ``submit`` returns the request's event queue."""

    async def main():
        loop = asyncio.get_running_loop()

        def submit(request: EngineRequest) -> asyncio.Queue:
            request.loop, request.events = loop, asyncio.Queue()
            engine.submit(request)
            return request.events

        return await script(submit)

    engine.start()
    try:
        return asyncio.run(main())
    finally:
        engine.stop()


async def _done(events: asyncio.Queue):
    while True:
        _, kind, value = await events.get()
        if kind == "done":
            return value
        assert kind != "error", value


def test_matches_one_request_generation_with_budgets_and_chunked_prefill(dense, tokenizer):
    """Rows of different lengths, prefilled in chunks and batched, give exactly the unbatched greedy replies."""
    engine = ContinuousEngine(dense, tokenizer, prefill_chunk=8)
    questions = [f"question {i} " * (1 + 3 * i) for i in range(4)]

    async def script(submit):
        queues = [submit(EngineRequest(prompt_ids=_prompt(tokenizer, q, True), thinking=True, max_tokens=40,
                                       budget=3, temperature=0.0)) for q in questions]
        return [await _done(q) for q in queues]

    results = _run(engine, script)
    for question, result in zip(questions, results, strict=True):
        (alone,) = generate_chat(dense, tokenizer, [[{"role": "user", "content": question}]], max_new_tokens=40,
                                 thinking_budget=3, temperature=0.0)
        assert result.token_ids == alone.token_ids
        assert result.thinking_tokens == alone.thinking_tokens == 3 and result.budget_hit
    assert engine.stats.largest_batch > 1


def test_short_request_finishes_before_a_long_one_started_earlier(dense, tokenizer):
    engine = ContinuousEngine(dense, tokenizer, prefill_chunk=16)
    order = []

    async def script(submit):
        long_events = submit(EngineRequest(prompt_ids=_prompt(tokenizer, "long " * 40), thinking=False,
                                           max_tokens=300, temperature=0.0, logit_bias=_no_stop(tokenizer)))

        async def long_reply():
            result = await _done(long_events)
            order.append("long")
            return result

        long_task = asyncio.create_task(long_reply())
        while engine.stats.generated_tokens < 5:  # the long one is decoding
            await asyncio.sleep(0.01)
        short = await _done(submit(EngineRequest(prompt_ids=_prompt(tokenizer, "short"), thinking=False,
                                                 max_tokens=3, temperature=0.0, logit_bias=_no_stop(tokenizer))))
        order.append("short")
        return short, await long_task

    short, long = _run(engine, script)
    assert order == ["short", "long"]
    assert len(short.token_ids) == 3 and len(long.token_ids) == 300


def test_cancelled_request_frees_its_slot(dense, tokenizer):
    """With one slot, a cancelled 1000-token request stops within a step and the next request runs at once."""
    engine = ContinuousEngine(dense, tokenizer, max_batch_size=1)
    holder = {}

    async def script(submit):
        request = EngineRequest(prompt_ids=_prompt(tokenizer, "long"), thinking=False, max_tokens=1000,
                                temperature=0.0, logit_bias=_no_stop(tokenizer))
        holder["long"] = request
        submit(request)
        while engine.stats.generated_tokens < 3:
            await asyncio.sleep(0.01)
        request.cancel()
        return await _done(submit(EngineRequest(prompt_ids=_prompt(tokenizer, "next"), thinking=False,
                                                max_tokens=4, temperature=0.0)))

    result = _run(engine, script)
    assert result.finish_reason in {"stop", "length"}
    assert engine.stats.cancelled == 1
    assert engine.stats.generated_tokens < 100  # the long request was dropped, not generated to its end


def test_logprobs_equal_rescoring(dense, tokenizer):
    """Returned log-probs are log softmax of the model's own logits: a fresh forward pass gives them to 1e-4."""
    engine = ContinuousEngine(dense, tokenizer, prefill_chunk=6)
    prompts = [_prompt(tokenizer, "score me " * k) for k in (1, 4, 2)]
    requests = [EngineRequest(prompt_ids=p, thinking=False, max_tokens=12, temperature=1.0, seed=k,
                              top_logprobs=3, presence_penalty=0.5, logit_bias=_no_stop(tokenizer))
                for k, p in enumerate(prompts)]

    async def script(submit):
        queues = [submit(r) for r in requests]
        return [await _done(q) for q in queues]

    results = _run(engine, script)
    with torch.no_grad():
        for request, result in zip(requests, results, strict=True):
            ids = torch.tensor([request.prompt_ids + result.token_ids])
            logp = torch.log_softmax(dense(input_ids=ids).logits[0].float(), dim=-1)
            start = len(request.prompt_ids) - 1
            expected = [float(logp[start + i, t]) for i, t in enumerate(result.token_ids)]
            assert request.token_logprobs == pytest.approx(expected, abs=1e-4)
            for i, alternatives in enumerate(request.alternatives):
                top = torch.topk(logp[start + i], 3)
                assert [t for t, _ in alternatives] == top.indices.tolist()


def test_seeded_sampling_is_reproducible_and_per_request(dense, tokenizer):
    engine = ContinuousEngine(dense, tokenizer)
    prompt = _prompt(tokenizer, "seeded")

    async def script(submit):
        queues = [submit(EngineRequest(prompt_ids=prompt, thinking=False, max_tokens=15, temperature=1.0, seed=s,
                                       logit_bias=_no_stop(tokenizer))) for s in (7, 7, 8)]
        return [await _done(q) for q in queues]

    a, b, c = _run(engine, script)
    assert a.token_ids == b.token_ids != c.token_ids


def test_sampler_is_safe_at_extreme_settings():
    scores = torch.tensor([1.0, 3.0, 2.0, float("-inf")])
    assert sample_token(scores, 1e-40) == 1
    assert sample_token(scores, 5e-324) == 1
    assert sample_token(scores, 1.0, top_p=1e-300) == 1  # the most likely token always survives top-p
    assert sample_token(scores, 1.0, min_p=0.99) == 1
    generator = torch.Generator().manual_seed(0)
    draws = {sample_token(scores, 1.0, top_k=2, generator=generator) for _ in range(200)}
    assert draws == {1, 2}
    with pytest.raises(ValueError, match="masked"):
        sample_token(torch.full((3,), float("-inf")), 1.0)


def test_penalties_follow_their_formulas(dense, tokenizer):
    """presence/frequency (OpenAI: z - count * f - [count > 0] * p) and repetition (CTRL: z / r if z > 0 else z * r)."""
    from qwenkit.infer.engine import _Row

    engine = ContinuousEngine(dense, tokenizer)
    request = EngineRequest(prompt_ids=[5, 6], thinking=False, max_tokens=5, temperature=0.0, top_logprobs=None,
                            presence_penalty=0.5, frequency_penalty=0.25, repetition_penalty=2.0,
                            logit_bias={9: 3.0})
    row = _Row(engine, request)
    row.ids += [7, 7]
    row.counts = {7: 2}
    logits = torch.zeros(len(tokenizer))
    logits[5], logits[6], logits[7], logits[9] = 4.0, -1.0, 1.0, 0.5
    captured = {}

    def spy(_ids, scores):
        captured["scores"] = scores[0].clone()
        return scores

    request.processors = (spy,)
    row.process_and_sample(logits)
    scores = captured["scores"]
    assert float(scores[5]) == pytest.approx(2.0)  # 4 / 2
    assert float(scores[6]) == pytest.approx(-2.0)  # -1 * 2
    assert float(scores[7]) == pytest.approx(0.5 - 2 * 0.25 - 0.5)  # 1 / 2, then the count penalties
    assert float(scores[9]) == pytest.approx(3.5)
    assert math.isclose(float(scores[10]), 0.0)
