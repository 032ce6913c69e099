"""Thinking budget through chat backends: two-pass against a mock OpenAI server, and server pass-through."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from qwenkit.infer import STOP_TEXT_DOCS, generate_chat
from qwenkit.lm.backends import OpenAIChatBackend, TransformersBackend

WORDS = [f"w{i}" for i in range(20)]


def mock_thinking_server(requests: list[dict]) -> FastAPI:
    """A thinking model behind an OpenAI API: 20 reasoning tokens ``w0 .. w19``, then the answer ``42``."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        requests.append(body)
        limit = body["max_tokens"]
        if body.get("continue_final_message"):
            message, finish, used = {"content": "42"}, "stop", 1
        elif limit < len(WORDS):
            message, finish, used = {"content": None, "reasoning_content": " ".join(WORDS[:limit])}, "length", limit
        else:
            message, finish, used = {"content": "42", "reasoning_content": " ".join(WORDS)}, "stop", len(WORDS) + 1
        return {"choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
                "usage": {"prompt_tokens": 7, "completion_tokens": used}}

    return app


@pytest.fixture(scope="module")
def mock(serve):
    requests: list[dict] = []
    with serve(mock_thinking_server(requests)) as url:
        yield url, requests


def test_two_pass_against_mock_openai_server(mock):
    url, requests = mock
    backend = OpenAIChatBackend(url + "/v1", "mock", max_retries=0)
    conversation = [{"role": "user", "content": "6*7?"}]
    requests.clear()
    result = generate_chat(backend, None, [conversation], max_new_tokens=50, thinking_budget=5, seed=0)[0]
    assert result.strategy == "two_pass" and result.passes == 2 and result.budget_hit
    assert result.thinking_tokens == 5 and result.content == "42"
    assert result.reasoning.startswith("w0 w1 w2 w3 w4") and result.reasoning.endswith("thinking directly now.")
    first, second = requests
    assert first["max_tokens"] == 5 and first["chat_template_kwargs"] == {"enable_thinking": True}
    assert second["messages"][:-1] == conversation
    assert second["messages"][-1] == {"role": "assistant", "content": "<think>\nw0 w1 w2 w3 w4" + STOP_TEXT_DOCS}
    assert second["continue_final_message"] is True and second["add_generation_prompt"] is False
    assert second["max_tokens"] == 45


def test_two_pass_single_pass_when_thinking_fits(mock):
    url, requests = mock
    backend = OpenAIChatBackend(url + "/v1", "mock", max_retries=0)
    requests.clear()
    results = generate_chat(backend, None, [[{"role": "user", "content": "q"}]] * 3, max_new_tokens=50,
                            thinking_budget=[30, 25, None], strategy="two_pass")
    assert all(r.passes == 1 and not r.budget_hit and r.content == "42" for r in results)
    assert sorted(r["max_tokens"] for r in requests) == [25, 30, 50]


def test_logits_strategy_needs_a_local_model(mock):
    backend = OpenAIChatBackend(mock[0] + "/v1", "mock", max_retries=0)
    with pytest.raises(ValueError, match="local transformers model"):
        generate_chat(backend, None, [[{"role": "user", "content": "q"}]], max_new_tokens=5, strategy="logits")
    with pytest.raises(ValueError, match="budget_field"):
        generate_chat(backend, None, [[{"role": "user", "content": "q"}]], max_new_tokens=5, strategy="server")


@pytest.fixture(scope="module")
def qwenkit_server(serve, moe, tokenizer):
    from qwenkit.infer.server import create_app

    with serve(create_app(moe, tokenizer, model_name="tiny-moe")) as url:
        yield url


def test_server_strategy_and_two_pass_against_qwenkit_server(qwenkit_server, tokenizer):
    conversation = [{"role": "user", "content": "hello"}]
    served = OpenAIChatBackend(qwenkit_server + "/v1", "tiny-moe", budget_field="thinking_budget", max_retries=0)
    result = generate_chat(served, None, [conversation], max_new_tokens=160, thinking_budget=4, seed=0,
                           temperature=0.0)[0]
    assert result.strategy == "server" and not result.hard_end_only
    assert result.budget_hit and result.thinking_tokens == 4 and result.reasoning.endswith("directly now.")
    plain = OpenAIChatBackend(qwenkit_server + "/v1", "tiny-moe", max_retries=0)
    two_pass = generate_chat(plain, None, [conversation], max_new_tokens=160, thinking_budget=4, temperature=0.0)[0]
    assert two_pass.strategy == "two_pass" and two_pass.passes == 2 and two_pass.budget_hit
    assert two_pass.thinking_tokens == 4 and two_pass.reasoning.endswith("directly now.")
    # greedy on both paths: the server's exact budget and the client's two passes give the same reply
    assert (two_pass.reasoning, two_pass.content) == (result.reasoning, result.content)


def test_two_pass_through_the_local_backend(dense, tokenizer):
    """The two-pass strategy over the chat-backend protocol, with a local model (continue_final_message prefill)."""
    backend = TransformersBackend(dense, tokenizer)
    results = generate_chat(backend, None, [[{"role": "user", "content": "x"}]], max_new_tokens=150,
                            thinking_budget=3, temperature=0.0, strategy="two_pass")
    result = results[0]
    assert result.passes == 2 and result.budget_hit
    assert result.thinking_tokens == 3 and result.reasoning.endswith("directly now.")
    local = generate_chat(dense, tokenizer, [[{"role": "user", "content": "x"}]], max_new_tokens=150,
                          thinking_budget=3, temperature=0.0)[0]
    assert (result.reasoning, result.content) == (local.reasoning, local.content)
