"""response_format (JSON mode and JSON schemas) through llguidance, on the tiny random model over real HTTP."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

from qwenkit.infer.server import create_app

MODEL = "tiny-qwen3"
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["red", "blue"]}, "maxItems": 2},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "age", "tags", "ok"],
    "additionalProperties": False,
}
NO_THINKING = {"chat_template_kwargs": {"enable_thinking": False}}


@pytest.fixture(scope="module")
def server(serve, dense, tokenizer):
    app = create_app(dense, tokenizer, model_name=MODEL, max_batch_size=8)
    with serve(app) as url:
        yield url


def _chat(url: str, **fields) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "a person, as JSON"}], "max_tokens": 200,
            "temperature": 1.0, "seed": 3, **fields}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=120)


def _schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}


def test_json_schema_reply_validates(server):
    reply = _chat(server, response_format=_schema_format(PERSON), n=3, **NO_THINKING).json()
    assert len(reply["choices"]) == 3
    for choice in reply["choices"]:
        assert choice["finish_reason"] == "stop"
        jsonschema.validate(json.loads(choice["message"]["content"]), PERSON)


def test_json_object_reply_is_an_object(server):
    reply = _chat(server, response_format={"type": "json_object"}, max_tokens=400, **NO_THINKING).json()
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert isinstance(json.loads(choice["message"]["content"]), dict)


def test_json_schema_after_budgeted_thinking(server):
    """With thinking on, the grammar starts after </think>: the budget's stop text, then the JSON."""
    reply = _chat(server, response_format=_schema_format(PERSON), thinking_budget=4).json()
    choice = reply["choices"][0]
    assert reply["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4
    assert choice["message"]["reasoning_content"].endswith("directly now.")
    jsonschema.validate(json.loads(choice["message"]["content"]), PERSON)


def test_streamed_json_schema_reply_validates(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "stream it"}], "max_tokens": 200,
            "temperature": 1.0, "seed": 5, "stream": True, "response_format": _schema_format(PERSON), **NO_THINKING}
    content = ""
    with httpx.stream("POST", server + "/v1/chat/completions", json=body, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    content += choice["delta"].get("content") or ""
    jsonschema.validate(json.loads(content), PERSON)


@pytest.mark.parametrize(
    ("response_format", "param", "words"),
    [
        (_schema_format({"type": "objectx"}), "response_format.json_schema.schema.type", "not a valid JSON Schema"),
        (_schema_format({"properties": {"a": {"minLength": -1}}}),
         "response_format.json_schema.schema.properties.a.minLength", "not a valid JSON Schema"),
        (_schema_format({"type": "string", "pattern": "(?=a)b"}), "response_format.json_schema.schema",
         "cannot be used for constrained decoding"),
        ({"type": "json_schema"}, "response_format.json_schema", "needs response_format.json_schema"),
        ({"type": "json_object", "json_schema": {"name": "x", "schema": {}}}, "response_format.json_schema",
         "only allowed"),
        ({"type": "json_schema", "json_schema": {"schema": {}}}, "response_format.json_schema.name", "name"),
        ({"type": "xml"}, "response_format.type", "type"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "extra": 1}},
         "response_format.json_schema.extra", "not supported"),
    ],
)
def test_bad_response_format_is_a_400_naming_the_field(server, response_format, param, words):
    response = _chat(server, response_format=response_format, **NO_THINKING)
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == param, error
    assert words in error["message"]


def test_text_format_is_unconstrained(server):
    plain = _chat(server, max_tokens=8, **NO_THINKING).json()
    text = _chat(server, max_tokens=8, response_format={"type": "text"}, **NO_THINKING).json()
    assert text["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
