"""Qwen3 inference: thinking and non-thinking modes, an exact thinking budget, OpenAI-compatible serving.

- :func:`generate_chat`: batched chat generation with a thinking budget (``logits``, ``two_pass`` or ``server``).
- :class:`ThinkingBudgetProcessor`: the per-row budget state machine, usable with ``model.generate`` too.
- :mod:`qwenkit.infer.server`: ``create_app`` / ``qwenkit infer serve``, an OpenAI-compatible chat server.
- The chat format and the chat backends live in :mod:`qwenkit.lm.chat` and :mod:`qwenkit.lm.backends`.
"""

from qwenkit.infer.budget import STOP_TEXT_DOCS, STOP_TEXT_PAPER, ThinkingBudgetProcessor, resolve_stop_text
from qwenkit.infer.generate import ChatResult, generate_chat

__all__ = [
    "STOP_TEXT_DOCS",
    "STOP_TEXT_PAPER",
    "ChatResult",
    "ThinkingBudgetProcessor",
    "generate_chat",
    "resolve_stop_text",
]
