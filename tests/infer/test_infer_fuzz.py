"""Hostile requests: every one gets a 4xx in the OpenAI error shape (or a normal 200), never a 500, and the server
answers normally afterwards."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from qwenkit.infer.server import create_app

MODEL = "tiny-qwen3"
MAX_BYTES = 50_000
GOOD = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


@pytest.fixture(scope="module")
def url(serve, dense, tokenizer):
    with serve(create_app(dense, tokenizer, model_name=MODEL, max_request_bytes=MAX_BYTES,
                          max_prompt_tokens=200)) as base:
        yield base


def _hostile_values(rng: random.Random) -> list:
    return [None, True, False, 0, -1, 2**70, -(2**70), 1e308, -1e-308, 1e-40, "", "10", "yes", "\ud800",
            [], [1, "a"], {}, {"a": [1]}, "x" * rng.randint(1, 300), rng.random(), [[[[]]]]]


FIELDS = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p",
          "presence_penalty", "frequency_penalty", "repetition_penalty", "logit_bias", "seed", "stop",
          "stop_token_ids", "stream", "stream_options", "n", "logprobs", "top_logprobs", "chat_template_kwargs",
          "thinking_budget", "continue_final_message", "add_generation_prompt", "tools", "response_format",
          "functions", "user", "echo"]


def _bodies() -> list[tuple[str, bytes]]:
    rng = random.Random(0)
    bodies: list[tuple[str, bytes]] = [
        ("empty", b""), ("not json", b"{nope"), ("array", b"[]"), ("string", b'"hi"'), ("null", b"null"),
        ("invalid utf-8", b'{"model": "\xff\xfe"}'),
        ("deep list", b"[" * 100_00 + b"]" * 100_00),
        ("deep object", b'{"a":' * 5000 + b"1" + b"}" * 5000),
        ("deep in a field", json.dumps({**GOOD, "user": "u", "logit_bias": None}).encode()[:-1]
         + b', "metadata": ' + b"[" * 200 + b"]" * 200 + b"}"),
        ("lone surrogate", b'{"model": "tiny-qwen3", "messages": [{"role": "user", "content": "\\ud800"}]}'),
        ("surrogate key", b'{"model": "tiny-qwen3", "\\udfff": 1, "messages": [{"role": "user", "content": "x"}]}'),
        ("too big", json.dumps({**GOOD, "messages": [{"role": "user", "content": "a" * (MAX_BYTES + 10)}]}).encode()),
        ("too many tokens", json.dumps({**GOOD, "messages": [{"role": "user", "content": "a b " * 2000}]}).encode()),
        ("NaN", json.dumps(GOOD).encode()[:-1] + b', "temperature": NaN}'),
        ("Infinity", json.dumps(GOOD).encode()[:-1] + b', "top_p": Infinity}'),
        ("seed 2^64", json.dumps({**GOOD, "seed": 2**64}).encode()),
        ("logit_bias word", json.dumps({**GOOD, "logit_bias": {"hello": 1}}).encode()),
        ("logit_bias range", json.dumps({**GOOD, "logit_bias": {"5": 1000}}).encode()),
        ("stop id range", json.dumps({**GOOD, "stop_token_ids": [10**9]}).encode()),
        ("empty stop", json.dumps({**GOOD, "stop": [""]}).encode()),
        ("image part", json.dumps({**GOOD, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})
         .encode()),
        ("tool role first", json.dumps({**GOOD, "messages": [{"role": "assistant", "content": "x"}],
                                        "continue_final_message": True, "add_generation_prompt": False}).encode()),
    ]
    for i in range(90):
        body = dict(GOOD)
        for _ in range(rng.randint(1, 3)):
            body[rng.choice(FIELDS)] = rng.choice(_hostile_values(rng))
        if rng.random() < 0.3:
            body["messages"] = [{"role": rng.choice(["user", "wizard", "system", "tool"]),
                                 "content": rng.choice(_hostile_values(rng))}]
        bodies.append((f"random {i}", json.dumps(body).encode("utf-8", errors="surrogatepass")))
    return bodies


def test_hostile_requests_never_500_and_the_server_recovers(url):
    bodies = _bodies()
    assert len(bodies) >= 100
    statuses = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        for name, body in bodies:
            path = "/v1/completions" if name.endswith("7") else "/v1/chat/completions"
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
            statuses[name] = response.status_code
            assert response.status_code < 500, (name, response.text[:300])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert error["message"] and error["type"] == "invalid_request_error", name
        assert client.get("/health").json()["status"] == "ok"
        reply = client.post("/v1/chat/completions", json=GOOD)
        assert reply.status_code == 200 and reply.json()["choices"][0]["finish_reason"] in {"stop", "length"}
    for name in ("deep list", "deep object", "lone surrogate", "too big", "too many tokens", "NaN", "seed 2^64"):
        assert 400 <= statuses[name] < 500, name
    assert statuses["too big"] == 413


@pytest.mark.parametrize("field", ["temperature", "top_p"])
def test_tiny_sampling_values_are_exact_greedy(url, field):
    with httpx.Client(base_url=url, timeout=120) as client:
        greedy = client.post("/v1/chat/completions", json={**GOOD, "max_tokens": 8, "temperature": 0.0}).json()
        tiny = client.post("/v1/chat/completions", json={**GOOD, "max_tokens": 8, "temperature": 1.0,
                                                          field: 1e-40 if field == "temperature" else 1e-300}).json()
        big_seed = client.post("/v1/chat/completions", json={**GOOD, "seed": 2**64 - 1})
    assert tiny["choices"][0]["message"] == greedy["choices"][0]["message"]
    assert big_seed.status_code == 200


def _schema(schema) -> dict:
    return {**GOOD, "chat_template_kwargs": {"enable_thinking": False},
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}


HOSTILE_STRUCTURED = [
    ("/v1/chat/completions", _schema({"$ref": "http://example.com/x"})),
    ("/v1/chat/completions", _schema({"$ref": "#/definitions/nope"})),
    ("/v1/chat/completions", _schema({"type": "integer", "minimum": 5, "maximum": 2})),
    ("/v1/chat/completions", _schema({"not": {"type": "string"}})),
    ("/v1/chat/completions", _schema({"allOf": [{"type": "string"}, {"type": "integer"}]})),
    ("/v1/chat/completions", _schema({"type": "string", "pattern": "a{100000}"})),
    ("/v1/chat/completions", _schema({"enum": list(range(5000))})),
    ("/v1/chat/completions", _schema({"type": "array", "minItems": 5000})),
    ("/v1/chat/completions", _schema({"type": "object", "properties": {"a": {"$ref": "#"}}})),
    ("/v1/chat/completions", _schema(True)),
    ("/v1/chat/completions", _schema([])),
    ("/v1/chat/completions", {**GOOD, "response_format": {"type": "json_schema", "json_schema": None}}),
    ("/v1/chat/completions", {**GOOD, "response_format": "json"}),
    ("/v1/chat/completions", {**GOOD, "tool_choice": {"type": "function"}}),
    ("/v1/chat/completions", {**GOOD, "tool_choice": {"type": "function", "function": {"name": 3}}}),
    ("/v1/chat/completions", {**GOOD, "tool_choice": "required"}),
    ("/v1/chat/completions", {**GOOD, "parallel_tool_calls": "no"}),
    ("/v1/chat/completions", {**GOOD, "stream": True, "logprobs": True, "top_logprobs": 99}),
    ("/v1/completions", {"model": MODEL, "prompt": [[]], "max_tokens": 3}),
    ("/v1/completions", {"model": MODEL, "prompt": [-1], "max_tokens": 3}),
    ("/v1/completions", {"model": MODEL, "prompt": [1, "a"], "max_tokens": 3}),
    ("/v1/completions", {"model": MODEL, "prompt": [[1], "a"], "max_tokens": 3}),
    ("/v1/completions", {"model": MODEL, "prompt": [[[1]]], "max_tokens": 3}),
    ("/v1/completions", {"model": MODEL, "prompt": [5] * 300, "max_tokens": 3}),
    ("/v1/completions", {"model": MODEL, "prompt": ["a"] * 65, "max_tokens": 3}),
    ("/v1/completions", {"model": MODEL, "prompt": [2**70], "max_tokens": 3}),
    ("/v1/completions", {"model": MODEL, "prompt": "a", "max_tokens": 3, "stream": True, "logprobs": 21}),
]


def test_hostile_structured_output_and_prompt_forms_never_500(url):
    with httpx.Client(base_url=url, timeout=120) as client:
        for path, body in HOSTILE_STRUCTURED:
            response = client.post(path, json=body)
            assert response.status_code < 500, (body, response.text[:300])
            if response.status_code >= 400:
                assert response.json()["error"]["type"] == "invalid_request_error", body
        assert client.post("/v1/chat/completions", json=GOOD).status_code == 200
