"""The Qwen3 chat format: rendering, thinking/non-thinking modes, soft switches, the history rule, reasoning parsing.

:func:`render_qwen3` renders messages exactly as the Qwen3 chat template (``tokenizer_config.json`` of Qwen3-0.6B ...
Qwen3-235B-A22B) does through ``apply_chat_template``: ``<|im_start|>role\\n...<|im_end|>\\n`` per turn, tools in the
system turn, tool calls and tool responses, and ``enable_thinking=False`` appending an empty
``<think>\\n\\n</think>\\n\\n`` to the generation prompt. :func:`render_chat` uses a tokenizer's own template
when it has one (a real checkpoint), and this renderer otherwise (the synthetic tokenizer, or no tokenizer at all).

History rule (Qwen3 template): the *last query* is the last user message that is not a ``<tool_response>``; assistant
turns after it keep their reasoning (``<think>\\n...\\n</think>\\n\\n`` before the content), earlier assistant turns are
rendered with their content only, so old reasoning never re-enters the context.

Soft switches (Qwen3 paper, section 4.3): ``/think`` and ``/no_think`` in a user or system message switch the mode for
the following turns, the most recent flag wins; the hard switch ``enable_thinking=False`` overrides them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

THINK_START = "<think>"
THINK_END = "</think>"
EMPTY_THINK_BLOCK = "<think>\n\n</think>\n\n"
_SOFT_SWITCH = re.compile(r"(?<!\S)/(no_think|think)(?!\S)")

Message = Mapping[str, Any]

_TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call><|im_end|>\n"
)


def _tojson(value: Any) -> str:
    """transformers' ``tojson`` filter for chat templates (no HTML escaping, non-ASCII kept)."""
    return json.dumps(value, ensure_ascii=False)


def _content(message: Message) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _is_tool_response(content: Any) -> bool:
    return isinstance(content, str) and content.startswith("<tool_response>") and content.endswith("</tool_response>")


def last_query_index(messages: Sequence[Message]) -> int:
    """Index of the last user message that is not a tool response (``len(messages) - 1`` when there is none)."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str) and not _is_tool_response(content):
            return index
    return len(messages) - 1


def _assistant_parts(message: Message) -> tuple[str, str]:
    """(reasoning, content) of an assistant message: ``reasoning_content`` or the text before the first ``</think>``."""
    content = _content(message)
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str):
        return reasoning, content
    if THINK_END in content:
        reasoning = content.split(THINK_END)[0].rstrip("\n").split(THINK_START)[-1].lstrip("\n")
        return reasoning, content.split(THINK_END)[-1].lstrip("\n")
    return "", content


def _tool_calls(message: Message, content: str) -> str:
    out = []
    for i, call in enumerate(message.get("tool_calls") or []):
        if (i == 0 and content) or i > 0:
            out.append("\n")
        if call.get("function"):
            call = call["function"]
        arguments = call.get("arguments")
        arguments = arguments if isinstance(arguments, str) else _tojson(arguments)
        name = str(call.get("name"))
        out.append('<tool_call>\n{"name": "' + name + '", "arguments": ' + arguments + "}\n</tool_call>")
    return "".join(out)


def render_qwen3(
    messages: Sequence[Message],
    *,
    add_generation_prompt: bool = True,
    enable_thinking: bool = True,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """Render ``messages`` as the Qwen3 chat template does (see the module docstring); pure string work."""
    if not messages:
        raise ValueError("cannot render an empty conversation; pass at least one message")
    out: list[str] = []
    first = messages[0]
    if tools:
        out.append("<|im_start|>system\n")
        if first.get("role") == "system":
            out.append(str(first.get("content")) + "\n\n")
        out.append(_TOOLS_HEADER)
        for tool in tools:
            out.append("\n" + _tojson(tool))
        out.append(_TOOLS_FOOTER)
    elif first.get("role") == "system":
        out.append("<|im_start|>system\n" + str(first.get("content")) + "<|im_end|>\n")
    query = last_query_index(messages)
    for index, message in enumerate(messages):
        role = message.get("role")
        content = _content(message)
        if role == "user" or (role == "system" and index > 0):
            out.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
        elif role == "assistant":
            reasoning, content = _assistant_parts(message)
            is_last = index == len(messages) - 1
            if index > query and (is_last or reasoning):
                thought = reasoning.strip("\n")
                out.append(f"<|im_start|>{role}\n<think>\n{thought}\n</think>\n\n" + content.lstrip("\n"))
            else:
                out.append(f"<|im_start|>{role}\n{content}")
            out.append(_tool_calls(message, content))
            out.append("<|im_end|>\n")
        elif role == "tool":
            if index == 0 or messages[index - 1].get("role") != "tool":
                out.append("<|im_start|>user")
            out.append(f"\n<tool_response>\n{content}\n</tool_response>")
            if index == len(messages) - 1 or messages[index + 1].get("role") != "tool":
                out.append("<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
        if enable_thinking is False:
            out.append(EMPTY_THINK_BLOCK)
    return "".join(out)


def has_chat_template(tokenizer: Any) -> bool:
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def render_chat(
    messages: Sequence[Message],
    *,
    tokenizer: Any = None,
    add_generation_prompt: bool = True,
    enable_thinking: bool = True,
    tools: Sequence[Mapping[str, Any]] | None = None,
    continue_final_message: bool = False,
) -> str:
    """Prompt text of ``messages``: the tokenizer's own chat template when it has one, :func:`render_qwen3` otherwise.

    ``continue_final_message`` leaves the last (assistant) message open so generation continues it (the prefill of
    Qwen's two-pass thinking budget): the rendered text stops where that message's ``<|im_end|>`` would begin.
    """
    messages = [dict(m) for m in messages]
    if continue_final_message and (not messages or messages[-1].get("role") != "assistant"):
        raise ValueError("continue_final_message needs an assistant message last (the text to continue)")
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(
            messages,
            tools=list(tools) if tools else None,
            tokenize=False,
            add_generation_prompt=add_generation_prompt and not continue_final_message,
            continue_final_message=continue_final_message,
            enable_thinking=enable_thinking,
        )
    text = render_qwen3(
        messages, add_generation_prompt=add_generation_prompt and not continue_final_message,
        enable_thinking=enable_thinking, tools=tools,
    )
    if continue_final_message:
        text = text[: text.rindex("<|im_end|>")]
    return text


def soft_switch(messages: Sequence[Message]) -> bool | None:
    """The mode set by the most recent ``/think`` (True) or ``/no_think`` (False) flag in a user or system message.

    None when no message carries a flag.
    """
    mode = None
    for message in messages:
        if message.get("role") not in {"user", "system"}:
            continue
        flags = _SOFT_SWITCH.findall(_content(message))
        if flags:
            mode = flags[-1] == "think"
    return mode


def resolve_thinking(messages: Sequence[Message], enable_thinking: bool = True) -> bool:
    """Whether the model should think: the hard switch ``enable_thinking=False`` wins, then the latest soft switch."""
    if not enable_thinking:
        return False
    mode = soft_switch(messages)
    return True if mode is None else mode


def apply_soft_switch(messages: Sequence[Message], flag: str) -> list[dict[str, Any]]:
    """A copy of ``messages`` with ``flag`` (``"/think"`` or ``"/no_think"``) appended to the last user message."""
    if flag not in {"/think", "/no_think"}:
        raise ValueError(f"soft switch must be '/think' or '/no_think', got {flag!r}")
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message.get("role") == "user":
            message["content"] = f"{_content(message)} {flag}".lstrip()
            return out
    raise ValueError("apply_soft_switch needs a user message to carry the flag")


def strip_history_reasoning(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Apply the history rule to the messages themselves: assistant turns before the last query lose their reasoning.

    The result renders the same under the Qwen3 template and lets other templates (and remote servers) see the same
    context Qwen3 would.
    """
    query = last_query_index(messages)
    out = []
    for index, message in enumerate(messages):
        message = dict(message)
        if message.get("role") == "assistant" and index < query:
            _, message["content"] = _assistant_parts(message)
            message.pop("reasoning_content", None)
        out.append(message)
    return out


def split_reasoning(text: str, *, start: str = THINK_START, end: str = THINK_END) -> tuple[str, str]:
    """(reasoning, content) of a model output, split at the *last* ``end`` marker.

    The text before it, without a leading ``start`` marker (tolerated when missing, as when the prompt opened the think
    block), is the reasoning; the text after it is the content; both are stripped of surrounding newlines. Without any
    ``end`` marker, a text that opens with ``start`` is all reasoning (thinking was cut off), any other text is all
    content.
    """
    if end in text:
        reasoning, content = text[: text.rindex(end)], text[text.rindex(end) + len(end) :]
    elif text.lstrip().startswith(start):
        reasoning, content = text, ""
    else:
        return "", text.strip("\n")
    reasoning = reasoning.lstrip()
    if reasoning.startswith(start):
        reasoning = reasoning[len(start) :]
    return reasoning.strip("\n"), content.strip("\n")


def generation_prompt(
    messages: Sequence[Message],
    *,
    tokenizer: Any = None,
    enable_thinking: bool = True,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[str, bool]:
    """(prompt, thinking): the prompt ends *inside* the think block when thinking, after an empty one when not.

    Thinking is :func:`resolve_thinking` of the hard and soft switches. With thinking, ``<think>\\n`` ends the prompt
    (as Qwen3 thinking templates do), so generation starts inside the block and a thinking budget governs every
    reply; without thinking, the prompt ends with the empty block Qwen3 was trained to emit in non-thinking mode.
    Templates that already open (or close) the block are respected; templates without thinking support (e.g.
    SmolLM2's ChatML) get the marker appended.
    """
    thinking = resolve_thinking(messages, enable_thinking)
    text = render_chat(messages, tokenizer=tokenizer, enable_thinking=thinking, tools=tools)
    open_block = text.rfind(THINK_START) > text.rfind(THINK_END)
    tail = text[text.rfind("<|im_start|>") :] if "<|im_start|>" in text else text
    if thinking and not open_block:
        text += THINK_START + "\n"
    elif not thinking and EMPTY_THINK_BLOCK not in tail:
        text += EMPTY_THINK_BLOCK
    return text, thinking


class ReasoningStreamParser:
    """Incremental :func:`split_reasoning`: feed text deltas, get ``("reasoning" | "content", delta)`` pieces.

    Text that might be the start of the end marker, or newlines that :func:`split_reasoning` would strip, is held back
    until the next delta decides it, so the concatenated pieces equal the non-streaming split of the same output
    (for outputs with at most one end marker).
    """

    def __init__(self, *, in_reasoning: bool, start: str = THINK_START, end: str = THINK_END):
        self.start, self.end = start, end
        self.in_reasoning = in_reasoning
        self._buffer = ""
        self._at_start = True
        self._seen_start = False

    def feed(self, delta: str) -> list[tuple[str, str]]:
        self._buffer += delta
        pieces: list[tuple[str, str]] = []
        while True:
            if self.in_reasoning:
                if not self._seen_start:
                    stripped = self._buffer.lstrip()
                    if self.start.startswith(stripped) and len(stripped) < len(self.start):
                        return pieces  # may still become the start marker
                    if stripped.startswith(self.start):
                        self._buffer = stripped[len(self.start) :]
                    self._seen_start = True
                if self._at_start:
                    self._buffer = self._buffer.lstrip("\n")
                    if not self._buffer:
                        return pieces
                    self._at_start = False
                if self.end in self._buffer:
                    head, self._buffer = self._buffer.split(self.end, 1)
                    if head.rstrip("\n"):
                        pieces.append(("reasoning", head.rstrip("\n")))
                    self.in_reasoning, self._at_start = False, True
                    continue
                keep = _held_back(self._buffer, self.end)
                emit = self._buffer[: len(self._buffer) - keep]
                if emit:
                    pieces.append(("reasoning", emit))
                self._buffer = self._buffer[len(emit) :]
                return pieces
            if self._at_start:
                self._buffer = self._buffer.lstrip("\n")
                if not self._buffer:
                    return pieces
                self._at_start = False
            keep = len(self._buffer) - len(self._buffer.rstrip("\n"))
            emit = self._buffer[: len(self._buffer) - keep]
            if emit:
                pieces.append(("content", emit))
            self._buffer = self._buffer[len(emit) :]
            return pieces


    def flush(self) -> list[tuple[str, str]]:
        """The pieces still held back once the output is complete (a cut-off marker prefix is plain text then)."""
        rest, self._buffer = self._buffer.rstrip("\n"), ""
        if not rest:
            return []
        return [("reasoning" if self.in_reasoning else "content", rest)]


def _held_back(buffer: str, marker: str) -> int:
    """Characters at the end of ``buffer`` to hold: trailing newlines plus any proper prefix of ``marker``."""
    for size in range(min(len(marker) - 1, len(buffer)), 0, -1):
        if marker.startswith(buffer[-size:]):
            rest = buffer[:-size]
            return size + len(rest) - len(rest.rstrip("\n"))
    return len(buffer) - len(buffer.rstrip("\n"))
