"""The prefix cache: whole-block matching verified token by token, LRU eviction by tokens, and an engine whose reused
prefix KV gives the tokens and log-probs of an engine that prefills every prompt in full."""

from __future__ import annotations

import asyncio

import pytest
import torch

from qwenkit.core.errors import ConfigError
from qwenkit.infer.engine import ContinuousEngine, EngineRequest
from qwenkit.infer.prefix_cache import PrefixCache


def _kv(length: int, fill: float = 0.0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return [torch.full((1, 2, length, 4), fill)], [torch.full((1, 2, length, 4), -fill)]


def test_lookup_returns_the_longest_whole_block_prefix_short_of_the_last_token():
    cache = PrefixCache(max_tokens=100, block_size=4)
    ids = list(range(12))
    cache.insert(ids, *_kv(12, 1.0))
    entry, length = cache.lookup(ids + [99])
    assert length == 12 and entry.ids == tuple(ids)
    assert cache.lookup(ids)[1] == 8  # the last prompt token is always run: at most len - 1 reused, whole blocks
    assert cache.lookup(ids[:6] + [77, 78, 79])[1] == 4  # diverges inside block 2
    assert cache.lookup([1000] + ids) == (None, 0)
    assert cache.lookup(ids[:4]) == (None, 0)  # one block, but the last token must be run
    assert cache.hit_tokens == 24 and cache.queried_tokens == 13 + 12 + 9 + 13 + 4


def test_a_hash_collision_is_caught_by_the_token_check(monkeypatch):
    cache = PrefixCache(max_tokens=100, block_size=4)
    monkeypatch.setattr(cache, "_block_hashes", lambda ids, blocks: [7] * blocks)  # every prefix collides
    cache.insert([1, 2, 3, 4], *_kv(4))
    assert cache.lookup([5, 6, 7, 8, 9]) == (None, 0)
    assert cache.lookup([1, 2, 3, 4, 9])[1] == 4


def test_storable_length_and_lru_eviction_by_tokens():
    cache = PrefixCache(max_tokens=16, block_size=4)
    first, second, third = list(range(8)), list(range(100, 108)), list(range(200, 210))
    assert cache.storable_length(first) == 8
    cache.insert(first, *_kv(8))
    assert cache.storable_length(first + [5, 6]) == 0  # its whole blocks are stored
    cache.insert(second, *_kv(8))
    cache.lookup(first + [1])  # first becomes the most recently used
    assert cache.storable_length(third) == 8
    cache.insert(third[:8], *_kv(8))
    assert cache.tokens == 16
    assert cache.lookup(second + [1]) == (None, 0)  # the least recently used went
    assert cache.lookup(first + [1])[1] == 8 and cache.lookup(third)[1] == 8
    assert cache.storable_length(list(range(300, 320))) == 0  # 20 tokens never fit in 16
    with pytest.raises(ValueError, match="whole number"):
        cache.insert([1, 2, 3], *_kv(3))


def test_a_disabled_cache_stores_and_finds_nothing():
    cache = PrefixCache(max_tokens=0)
    assert cache.storable_length(list(range(64))) == 0
    assert cache.lookup(list(range(64))) == (None, 0) and cache.queried_tokens == 0


def _run(engine: ContinuousEngine, batches: list[list[list[int]]]) -> list[tuple[list[int], list[float]]]:
    """Each batch of prompts submitted at once (greedy, log-probs), batch after batch; (ids, log-probs) per prompt."""

    async def one(prompts):
        loop = asyncio.get_running_loop()
        requests = [EngineRequest(prompt_ids=p, thinking=False, max_tokens=10, temperature=0.0, top_logprobs=0)
                    for p in prompts]
        for request in requests:
            request.loop, request.events = loop, asyncio.Queue()
            engine.submit(request)
        answers = []
        for request in requests:
            while True:
                _, kind, value = await request.events.get()
                assert kind != "error", value
                if kind == "done":
                    answers.append((value.token_ids, list(request.token_logprobs)))
                    break
        return answers

    engine.start()
    try:
        return [answer for prompts in batches for answer in asyncio.run(one(prompts))]
    finally:
        engine.stop()


def test_reused_prefixes_give_the_uncached_engine_tokens_and_logprobs(dense, tokenizer):
    """A shared 'system prompt' of 40 tokens: the first request stores it, a group of prompts that share it (and
    two that do not, so a group mixes hits and misses) and a long prompt prefilled in chunks reuse it."""
    system = tokenizer("you are a careful assistant and you answer briefly " * 4, add_special_tokens=False)[
        "input_ids"][:40]
    shared = [system + tokenizer(f"question {i} " * (1 + i), add_special_tokens=False)["input_ids"]
              for i in range(5)]
    others = [tokenizer(f"unrelated {i} " * 6, add_special_tokens=False)["input_ids"] for i in range(2)]
    long = system + tokenizer("a long question " * 40, add_special_tokens=False)["input_ids"]
    batches = [[shared[0]], shared[1:] + others, [long]]
    plain = _run(ContinuousEngine(dense, tokenizer, prefix_cache_tokens=0, prefill_chunk=64), batches)
    engine = ContinuousEngine(dense, tokenizer, prefix_cache_tokens=4096, prefix_block_size=16, prefill_chunk=64)
    cached = _run(engine, batches)
    assert len(long) > 64  # the chunked path
    # four grouped prompts and the long one reuse at least the system prompt's two whole blocks (more where their
    # questions share blocks with a stored prompt's)
    assert engine.prefix_cache.hit_tokens >= 32 * 5
    for (ids, logprobs), (cached_ids, cached_logprobs) in zip(plain, cached, strict=True):
        assert cached_ids == ids
        assert cached_logprobs == pytest.approx(logprobs, abs=1e-5)


def test_prefix_cache_flag_is_validated(dense, tokenizer):
    with pytest.raises(ConfigError, match="--prefix-cache-tokens"):
        ContinuousEngine(dense, tokenizer, prefix_cache_tokens=-1)
