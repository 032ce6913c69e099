"""Qwen3 inference: thinking and non-thinking modes, an exact thinking budget, OpenAI-compatible serving.

- :func:`generate_chat`: batched chat generation with a thinking budget (``logits``, ``two_pass`` or ``server``).
- :class:`ThinkingBudgetProcessor`: the per-row budget state machine, usable with ``model.generate`` too.
- :mod:`qwenkit.infer.server`: ``create_app`` / ``qwenkit infer serve``, an OpenAI-compatible server (chat and text
  completions, tool calls, ``/tokenize``, ``/metrics``) on :class:`ContinuousEngine`, the continuous-batching engine.
- :func:`parse_tool_calls`: Qwen3's ``<tool_call>`` blocks as OpenAI tool calls.
- The chat format and the chat backends live in :mod:`qwenkit.lm.chat` and :mod:`qwenkit.lm.backends`.

Names are imported on first use, so that ``qwenkit --help`` (which imports this package's CLI) never loads torch.
"""

from qwenkit.core.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "STOP_TEXT_DOCS": "qwenkit.infer.budget",
        "STOP_TEXT_PAPER": "qwenkit.infer.budget",
        "ThinkingBudgetProcessor": "qwenkit.infer.budget",
        "resolve_stop_text": "qwenkit.infer.budget",
        "ChatResult": "qwenkit.infer.generate",
        "generate_chat": "qwenkit.infer.generate",
        "ContinuousEngine": "qwenkit.infer.engine",
        "EngineRequest": "qwenkit.infer.engine",
        "create_app": "qwenkit.infer.server",
        "parse_tool_calls": "qwenkit.infer.tools",
    },
)
