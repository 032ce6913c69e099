"""Qwen3 tool calls: parsing canned Hermes-style outputs, and end to end on the tiny model with a forcing processor."""

from __future__ import annotations

import json

import pytest
import torch

from qwenkit.infer.server import create_app
from qwenkit.infer.tools import may_start_tool_call, parse_tool_calls

MODEL = "tiny-qwen3"
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n</tool_call>'
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


def test_parse_canned_qwen3_outputs():
    content, calls = parse_tool_calls(CALL)
    assert content == "" and [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris", "unit": "c"})]
    second = '<tool_call>\n{"name": "time", "arguments": "{\\"tz\\": \\"UTC\\"}"}\n</tool_call>'
    two = "Let me check.\n" + CALL + "\n" + second
    content, calls = parse_tool_calls(two)
    assert content == "Let me check." and [c.name for c in calls] == ["get_weather", "time"]
    assert calls[1].arguments == {"tz": "UTC"} and calls[0].id != calls[1].id
    broken = "<tool_call>\n{not json}\n</tool_call>"
    assert parse_tool_calls(broken) == (broken, [])
    nameless = '<tool_call>{"arguments": {}}</tool_call>'
    assert parse_tool_calls(nameless) == (nameless, [])
    assert json.loads(calls[0].openai()["function"]["arguments"]) == {"city": "Paris", "unit": "c"}


@pytest.mark.parametrize(("text", "held"), [("plain", -1), ("abc<tool", 3), ("abc<tool_call>{", 3), ("<", 0),
                                            ("a < b", -1)])
def test_partial_tool_call_is_held_back(text, held):
    assert may_start_tool_call(text) == held


class ForceText:
    """Forces the token ids of ``text`` and then ``end_id``, one per step (a test's stand-in for a trained model)."""

    def __init__(self, ids: list[int]):
        self.ids, self.step = ids, 0

    def __call__(self, _input_ids, scores):
        token = self.ids[min(self.step, len(self.ids) - 1)]
        self.step += 1
        forced = torch.full_like(scores, float("-inf"))
        forced[:, token] = 0.0
        return forced


@pytest.fixture(scope="module")
def url(serve, dense, tokenizer):
    ids = list(tokenizer("Checking. " + CALL, add_special_tokens=False)["input_ids"])
    ids.append(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    app = create_app(dense, tokenizer, model_name=MODEL, processor_factories=[lambda: ForceText(ids)])
    with serve(app) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    from openai import OpenAI

    return OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _ask(client, **kwargs):
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather in Paris?"}], max_tokens=200, tools=TOOLS,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}}, **kwargs)


def test_tool_call_end_to_end(client):
    choice = _ask(client).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Checking."
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}


def test_tool_call_streamed(client):
    content, calls, finish = "", [], None
    for chunk in _ask(client, stream=True):
        delta = chunk.choices[0].delta
        content += delta.content or ""
        calls += delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    assert "<tool_call>" not in content and content.strip() == "Checking."
    assert finish == "tool_calls" and [c.function.name for c in calls] == ["get_weather"]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris", "unit": "c"}


def test_tool_choice_none_returns_the_text(client):
    choice = _ask(client, tool_choice="none").choices[0]
    assert choice.message.tool_calls is None and "<tool_call>" in choice.message.content


BOUNDED_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "integer", "minimum": -12, "maximum": 14}},
        "required": ["zone"], "additionalProperties": False}}},
]


@pytest.fixture(scope="module")
def plain_url(serve, dense, tokenizer):
    """The tiny random model without a forcing processor: only the tool-call grammar makes its reply a call."""
    app = create_app(dense, tokenizer, model_name=MODEL)
    with serve(app) as base:
        yield base


def _forced(url: str, tool_choice, **fields):
    import httpx

    body = {"model": MODEL, "messages": [{"role": "user", "content": "call something"}], "tools": BOUNDED_TOOLS,
            "tool_choice": tool_choice, "max_tokens": 120, "temperature": 1.0, "seed": 4,
            "chat_template_kwargs": {"enable_thinking": False}, **fields}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=120)


def _check_call(call: dict, name: str | None = None) -> None:
    import jsonschema

    tools = {t["function"]["name"]: t["function"]["parameters"] for t in BOUNDED_TOOLS}
    assert call["function"]["name"] in tools and (name is None or call["function"]["name"] == name)
    jsonschema.validate(json.loads(call["function"]["arguments"]), tools[call["function"]["name"]])


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_time"}}])
def test_forced_tool_call_is_a_valid_call(plain_url, tool_choice):
    reply = _forced(plain_url, tool_choice, n=2, parallel_tool_calls=False).json()
    for choice in reply["choices"]:
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
        (call,) = choice["message"]["tool_calls"]
        _check_call(call, None if tool_choice == "required" else "get_time")


def test_forced_tool_call_streamed_and_after_thinking(plain_url):
    import httpx

    body = {"model": MODEL, "messages": [{"role": "user", "content": "call"}], "tools": BOUNDED_TOOLS[:1],
            "tool_choice": "required", "max_tokens": 250, "temperature": 1.0, "seed": 6, "stream": True,
            "thinking_budget": 3}
    calls, finish, reasoning = [], None, ""
    with httpx.stream("POST", plain_url + "/v1/chat/completions", json=body, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                choice = json.loads(line[6:])["choices"][0]
                calls += choice["delta"].get("tool_calls") or []
                reasoning += choice["delta"].get("reasoning_content") or ""
                finish = choice["finish_reason"] or finish
    assert finish == "tool_calls" and len(calls) == 1 and reasoning.endswith("directly now.")
    _check_call(calls[0])


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": None}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice.function.name"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tool_choice": "auto", "parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objectx"}}}]},
         "tools.0.function.parameters.type"),
    ],
)
def test_bad_forced_tool_choice_is_a_400(plain_url, fields, param):
    response = _forced(plain_url, fields.pop("tool_choice", "required"), **fields)
    assert response.status_code == 400 and response.json()["error"]["param"] == param, response.json()
