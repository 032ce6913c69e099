"""The Qwen3 chat format against the Qwen3 chat template itself (rendered by transformers' apply_chat_template)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwenkit.lm.chat import (
    ReasoningStreamParser,
    apply_soft_switch,
    generation_prompt,
    render_chat,
    render_qwen3,
    resolve_thinking,
    soft_switch,
    split_reasoning,
    strip_history_reasoning,
)
from qwenkit.lm.tokenizer import build_synthetic_tokenizer

TEMPLATE = (Path(__file__).parent / "data" / "qwen3_chat_template.jinja").read_text(encoding="utf-8")

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city (°C)",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}},
]

CONVERSATIONS = {
    "single": [{"role": "user", "content": "What is 2+2?"}],
    "system": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    "multi_turn_history": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "<think>\nold reasoning\n</think>\n\nanswer 1"},
        {"role": "user", "content": "q2 /no_think"},
        {"role": "assistant", "content": "answer 2", "reasoning_content": "kept? no"},
        {"role": "user", "content": "q3"},
    ],
    "last_assistant_after_query": [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1", "reasoning_content": "\nr1\n"},
    ],
    "reasoning_without_open_tag": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "partial thought\n</think>\n\nfinal"},
    ],
    "tools_and_calls": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                        {"type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "content": "18"},
        {"role": "tool", "content": "1"},
        {"role": "assistant", "content": "<think>\nuse tool output\n</think>\n\nIt is 18 °C.",
         "tool_calls": [{"name": "add", "arguments": {"a": 2}}]},
    ],
    "tool_response_is_not_a_query": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "<think>r</think>call"},
        {"role": "user", "content": "<tool_response>\n42\n</tool_response>"},
        {"role": "assistant", "content": "<think>\nr2\n</think>\n\ndone"},
    ],
    "second_system_and_unknown_role": [
        {"role": "user", "content": "a"},
        {"role": "system", "content": "later system"},
        {"role": "developer", "content": "ignored by the template"},
        {"role": "user", "content": None},
    ],
}


@pytest.fixture(scope="module")
def tokenizer():
    tok = build_synthetic_tokenizer()
    tok.chat_template = TEMPLATE
    return tok


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("enable_thinking", [True, False])
@pytest.mark.parametrize("with_tools", [False, True])
def test_render_matches_qwen3_template(tokenizer, name, add_generation_prompt, enable_thinking, with_tools):
    messages = CONVERSATIONS[name]
    tools = TOOLS if with_tools else None
    expected = tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt,
        enable_thinking=enable_thinking,
    )
    ours = render_qwen3(messages, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking,
                        tools=tools)
    assert ours == expected


def test_render_known_text():
    text = render_qwen3([{"role": "user", "content": "Hi"}], enable_thinking=False)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_history_rule_drops_old_reasoning():
    text = render_qwen3(CONVERSATIONS["multi_turn_history"])
    assert "old reasoning" not in text and "kept? no" not in text
    assert "<|im_start|>assistant\nanswer 1<|im_end|>" in text
    stripped = strip_history_reasoning(CONVERSATIONS["multi_turn_history"])
    assert stripped[2]["content"] == "answer 1" and "reasoning_content" not in stripped[4]
    assert render_qwen3(stripped) == text


def test_render_chat_uses_tokenizer_template_and_falls_back(tokenizer):
    messages = CONVERSATIONS["system"]
    plain = build_synthetic_tokenizer()
    expected = render_qwen3(messages)
    assert render_chat(messages, tokenizer=plain) == render_chat(messages, tokenizer=tokenizer) == expected
    tokenizer_with_other = build_synthetic_tokenizer()
    tokenizer_with_other.chat_template = "{% for m in messages %}[{{ m.content }}]{% endfor %}"
    assert render_chat(messages, tokenizer=tokenizer_with_other) == "[Be brief.][Hi]"


def test_continue_final_message():
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\nr\n</think>\n\n"}]
    assert render_chat(messages, continue_final_message=True) == (
        "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nr\n</think>\n\n"
    )
    with pytest.raises(ValueError, match="assistant message last"):
        render_chat(messages[:1], continue_final_message=True)


def test_soft_switches_most_recent_wins():
    assert soft_switch([{"role": "user", "content": "hi"}]) is None
    conv = [{"role": "system", "content": "/no_think"}, {"role": "user", "content": "x /think"}]
    assert soft_switch(conv) is True
    conv += [{"role": "assistant", "content": "/no_think"}, {"role": "user", "content": "y"}]
    assert soft_switch(conv) is True  # assistant text is not a flag; the user's /think still holds
    conv = apply_soft_switch(conv, "/no_think")
    assert conv[-1]["content"] == "y /no_think" and soft_switch(conv) is False
    assert soft_switch([{"role": "user", "content": "a/think b /thinking"}]) is None
    assert resolve_thinking(conv, True) is False
    assert resolve_thinking([{"role": "user", "content": "/think"}], False) is False
    with pytest.raises(ValueError):
        apply_soft_switch(conv, "/nothink")


@pytest.mark.parametrize(
    ("text", "reasoning", "content"),
    [
        ("<think>\nabc\n</think>\n\nanswer", "abc", "answer"),
        ("abc\n</think>\n\nanswer", "abc", "answer"),  # missing <think>: the prompt opened the block
        ("<think>a</think>b</think>\n\nc", "a</think>b", "c"),  # split at the last </think>
        ("<think>\ncut off", "cut off", ""),
        ("just an answer\n", "", "just an answer"),
        ("", "", ""),
    ],
)
def test_split_reasoning(text, reasoning, content):
    assert split_reasoning(text) == (reasoning, content)


def test_generation_prompt_opens_or_closes_think_block(tokenizer):
    messages = [{"role": "user", "content": "q"}]
    thinking_prompt, thinking = generation_prompt(messages, tokenizer=tokenizer)
    assert thinking and thinking_prompt.endswith("<|im_start|>assistant\n<think>\n")
    plain_prompt, thinking = generation_prompt(messages, tokenizer=tokenizer, enable_thinking=False)
    assert not thinking and plain_prompt.endswith("assistant\n<think>\n\n</think>\n\n")
    soft_prompt, thinking = generation_prompt(apply_soft_switch(messages, "/no_think"))
    assert not thinking and soft_prompt.endswith("</think>\n\n")
    chatml = build_synthetic_tokenizer()
    chatml.chat_template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    chatml.chat_template += "{{ '<|im_start|>assistant\\n' }}"
    prompt, _ = generation_prompt(messages, tokenizer=chatml, enable_thinking=False)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


@pytest.mark.parametrize(
    "text",
    ["abc\n</think>\n\nanswer\n", "a<b</thinx>\n</think>answer", "<think>\nx\n\ny\n</think>\n\n\nz\nw", "no close\n",
     "</think>only content", "cut off at a marker </th", "x\n</think>\n\nanswer </thi"],
)
def test_stream_parser_equals_split(text):
    for chunk in (1, 2, 3, 7):
        parser = ReasoningStreamParser(in_reasoning=True)
        pieces = []
        for i in range(0, len(text), chunk):
            pieces += parser.feed(text[i : i + chunk])
        pieces += parser.flush()
        reasoning = "".join(p for k, p in pieces if k == "reasoning")
        content = "".join(p for k, p in pieces if k == "content")
        expected = split_reasoning("<think>" + text if not text.startswith("<think>") else text)
        assert (reasoning, content) == expected, chunk
