"""Chat backends: retries/backoff/Retry-After/timeouts of the HTTP backend, reasoning parsing, the local backend."""

from __future__ import annotations

import email.utils
import json

import httpx
import pytest
import torch

from qwenkit.lm.backends import (
    BackendError,
    ChatBackend,
    OpenAIChatBackend,
    TransformersBackend,
    backoff_delay,
    parse_chat_response,
    parse_retry_after,
)


def _ok(content="hi", **message):
    return httpx.Response(200, json={
        "choices": [{"message": {"role": "assistant", "content": content, **message}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "completion_tokens_details": {"reasoning_tokens": 1}},
    })


def _backend(handler, **kwargs):
    sleeps = []
    backend = OpenAIChatBackend("http://mock/v1", "m", sleep=sleeps.append, transport=httpx.MockTransport(handler),
                                **kwargs)
    return backend, sleeps


def test_retry_after_seconds_and_date():
    assert parse_retry_after("3") == 3.0 and parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    date = email.utils.formatdate(1000.0 + 7, usegmt=True)
    assert parse_retry_after(date, now=1000.0) == pytest.approx(7.0)
    assert parse_retry_after(email.utils.formatdate(10.0, usegmt=True), now=1000.0) == 0.0


def test_backoff_is_exponential_and_capped():
    assert [backoff_delay(a, base_s=0.5, max_s=3.0) for a in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert backoff_delay(0, base_s=0.5, max_s=3.0, retry_after_s=2.5) == 2.5
    assert backoff_delay(0, base_s=0.5, max_s=3.0, retry_after_s=60) == 3.0


def test_429_honours_retry_after_then_succeeds():
    calls = []

    def handler(request):
        calls.append(json.loads(request.content))
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"message": "slow down"}})
        if len(calls) == 2:
            return httpx.Response(503, json={"error": {"message": "busy"}})
        return _ok()

    backend, sleeps = _backend(handler, backoff_base_s=0.25)
    out = backend.complete([{"role": "user", "content": "x"}], max_tokens=5)
    assert out.text == "hi" and sleeps == [2.0, 0.5] and backend.attempts == 3


def test_timeouts_and_5xx_exhaust_retries():
    def handler(request):
        raise httpx.ReadTimeout("too slow", request=request)

    backend, sleeps = _backend(handler, max_retries=2)
    with pytest.raises(BackendError, match="after 3 attempts.*ReadTimeout"):
        backend.complete([{"role": "user", "content": "x"}])
    assert sleeps == [0.5, 1.0]


def test_4xx_is_not_retried():
    backend, sleeps = _backend(lambda r: httpx.Response(400, json={"error": {"message": "bad field"}}))
    with pytest.raises(BackendError, match="400: bad field") as info:
        backend.complete([{"role": "user", "content": "x"}])
    assert info.value.status == 400 and sleeps == [] and backend.attempts == 1


def test_request_body_and_key_from_environment(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    seen = {}

    def handler(request):
        seen["auth"] = request.headers.get("authorization")
        seen["body"] = json.loads(request.content)
        return _ok()

    backend, _ = _backend(handler, api_key_env="MY_KEY", budget_field="thinking_token_budget")
    backend.complete([{"role": "user", "content": "x"}], max_tokens=9, top_k=20, seed=1, stop=["\n"],
                     extra={"enable_thinking": False, "thinking_budget": 4, "body": {"presence_penalty": 1.5}})
    body = seen["body"]
    assert seen["auth"] == "Bearer sk-test"
    assert body["chat_template_kwargs"] == {"enable_thinking": False} and body["thinking_token_budget"] == 4
    assert body["top_k"] == 20 and body["seed"] == 1 and body["stop"] == ["\n"] and body["presence_penalty"] == 1.5
    no_budget, _ = _backend(handler)
    with pytest.raises(BackendError, match="budget_field"):
        no_budget.complete([{"role": "user", "content": "x"}], extra={"thinking_budget": 4})


@pytest.mark.parametrize(
    ("message", "reasoning", "content"),
    [
        ({"content": "a", "reasoning_content": "r"}, "r", "a"),
        ({"content": "a", "reasoning": "r2"}, "r2", "a"),
        ({"content": "<think>\ninline\n</think>\n\nanswer"}, "inline", "answer"),
        ({"content": None, "reasoning_content": "cut"}, "cut", ""),
    ],
)
def test_reasoning_parsing(message, reasoning, content):
    out = parse_chat_response({"choices": [{"message": message, "finish_reason": "length"}]})
    assert (out.reasoning, out.text, out.finish_reason) == (reasoning, content, "length")


def test_malformed_response_raises():
    with pytest.raises(BackendError, match="not a chat completion"):
        parse_chat_response({"oops": 1})


def test_transformers_backend_follows_protocol():
    from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for

    torch.set_num_threads(1)
    tokenizer = build_synthetic_tokenizer()
    backend = TransformersBackend(tiny_qwen3_for(tokenizer, size="nano"), tokenizer)
    assert isinstance(backend, ChatBackend)
    out = backend.complete([{"role": "user", "content": "hi"}], max_tokens=6, seed=0, temperature=1.0)
    assert out.usage["completion_tokens"] <= 6 and out.finish_reason in {"stop", "length"}
    plain = backend.complete([{"role": "user", "content": "hi"}], max_tokens=6, seed=0,
                             extra={"enable_thinking": False})
    assert plain.reasoning == ""
    with pytest.raises(BackendError, match="generate_chat"):
        backend.complete([{"role": "user", "content": "hi"}], extra={"thinking_budget": 3})
