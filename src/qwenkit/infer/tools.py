"""Qwen3 tool calls: the Hermes-style ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks that Qwen3's
chat template asks for, parsed into OpenAI ``tool_calls``.

Qwen3's template (``qwenkit.lm.chat.render_qwen3``) lists the tools inside ``<tools></tools>`` and asks for "a json
object with function name and arguments within <tool_call></tool_call> XML tags". :func:`parse_tool_calls` splits a
reply into its plain content and those calls; a block whose JSON does not parse, or lacks a string ``name``, is left
in the content as text (the model did not make a valid call).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

TOOL_CALL_START = "<tool_call>"
TOOL_CALL_END = "</tool_call>"
_BLOCK = re.compile(re.escape(TOOL_CALL_START) + r"\s*(.*?)\s*" + re.escape(TOOL_CALL_END), re.DOTALL)


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str

    def openai(self, index: int | None = None) -> dict[str, Any]:
        """The OpenAI shape; ``arguments`` is a JSON string as the API sends it (``index`` for stream deltas)."""
        call: dict[str, Any] = {"id": self.id, "type": "function",
                                "function": {"name": self.name, "arguments": json.dumps(self.arguments)}}
        if index is not None:
            call["index"] = index
        return call


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """(content without the valid call blocks, the calls in order); content is stripped of surrounding newlines."""
    calls: list[ToolCall] = []
    kept: list[str] = []
    at = 0
    for match in _BLOCK.finditer(text):
        call = _call(match.group(1))
        if call is None:
            continue
        kept.append(text[at : match.start()])
        at = match.end()
        calls.append(call)
    kept.append(text[at:])
    return "".join(kept).strip("\n").strip(), calls


def _call(body: str) -> ToolCall | None:
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(name=data["name"], arguments=arguments, id=f"call_{uuid.uuid4().hex[:24]}")


def may_start_tool_call(text: str) -> int:
    """Where a (possibly still partial) ``<tool_call>`` begins in ``text``, or -1: streamed content before it is safe
    to send, the rest is held until the reply ends."""
    at = text.find(TOOL_CALL_START)
    if at >= 0:
        return at
    for size in range(min(len(TOOL_CALL_START) - 1, len(text)), 0, -1):
        if TOOL_CALL_START.startswith(text[-size:]):
            return len(text) - size
    return -1
