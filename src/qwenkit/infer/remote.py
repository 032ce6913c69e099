"""The thinking budget through a chat backend: Qwen's two-pass recipe, or the engine's own budget option.

Two-pass over an OpenAI-compatible API (Qwen docs, "thinking_budget.md"): pass 1 asks for ``max_tokens = N``. When it
ran out of tokens, the assistant message so far is sent back as a prefill (``continue_final_message=True``,
``add_generation_prompt=False``, as vLLM and ``qwenkit infer serve`` accept): ``<think>\\n{reasoning}{stop text}`` when
thinking had not closed, ``<think>\\n{reasoning}\\n</think>\\n\\n{content}`` when it had. Pass 2 gets
``max_new_tokens - completion_tokens(pass 1)`` tokens: a remote server's tokenizer is not known here, so the stop
text's own tokens are not subtracted (as in Qwen's recipe).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from qwenkit.infer.generate import ChatResult
from qwenkit.lm.chat import resolve_thinking


def generate_chat_remote(
    backend: Any,
    conversations: Sequence[Sequence[Mapping[str, Any]]],
    *,
    max_new_tokens: int,
    budgets: Sequence[int | None],
    enable_thinking: bool,
    strategy: str,
    stop_text: str,
    sampling: Mapping[str, Any],
    concurrency: int = 8,
) -> list[ChatResult]:
    """One :class:`ChatResult` per conversation (requests run concurrently, results in input order)."""
    if strategy == "logits":
        raise ValueError("strategy='logits' needs a local transformers model; a chat backend supports 'two_pass' or "
                         "'server'")
    if strategy == "auto":
        strategy = "server" if getattr(backend, "budget_field", None) else "two_pass"
    if strategy == "server" and not getattr(backend, "budget_field", None):
        raise ValueError(f"backend {getattr(backend, 'name', backend)!r} declares no budget option (budget_field); "
                         "use strategy='two_pass'")
    params = {"temperature": sampling.get("temperature", 0.6), "top_p": sampling.get("top_p", 0.95),
              "top_k": sampling.get("top_k", 20), "seed": sampling.get("seed"), "stop": sampling.get("stop")}

    def one(index: int) -> ChatResult:
        messages = [dict(m) for m in conversations[index]]
        thinking = resolve_thinking(messages, enable_thinking)
        budget = budgets[index] if thinking else None
        if strategy == "server" or budget is None:
            return _single(backend, messages, thinking, budget if strategy == "server" else None, max_new_tokens,
                           params, strategy)
        return _two_pass(backend, messages, budget, max_new_tokens, stop_text, params)

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(conversations)))) as pool:
        return list(pool.map(one, range(len(conversations))))


def _single(backend, messages, thinking, budget, max_new_tokens, params, strategy) -> ChatResult:
    extra: dict[str, Any] = {"enable_thinking": thinking}
    if budget is not None:
        extra["thinking_budget"] = budget
    out = backend.complete(messages, max_tokens=max_new_tokens, extra=extra, **params)
    reasoning_tokens = out.usage.get("reasoning_tokens")
    return ChatResult(
        reasoning=out.reasoning, content=out.text, thinking_tokens=reasoning_tokens,
        budget_hit=budget is not None and reasoning_tokens is not None and reasoning_tokens >= budget,
        finish_reason=out.finish_reason, passes=1, strategy=strategy, thinking=thinking,
        hard_end_only=budget is not None and bool(getattr(backend, "hard_end_only", False)), usage=dict(out.usage),
    )


def _two_pass(backend, messages, budget, max_new_tokens, stop_text, params) -> ChatResult:
    first = backend.complete(messages, max_tokens=min(budget, max_new_tokens), extra={"enable_thinking": True},
                             **params)
    used = first.usage.get("completion_tokens", min(budget, max_new_tokens))
    if first.finish_reason != "length" or budget >= max_new_tokens:
        tokens = first.usage.get("reasoning_tokens")
        return ChatResult(reasoning=first.reasoning, content=first.text, thinking_tokens=tokens, budget_hit=False,
                          finish_reason=first.finish_reason, passes=1, strategy="two_pass",
                          usage=dict(first.usage))
    still_thinking = not first.text
    if still_thinking:
        prefix = "<think>\n" + first.reasoning + stop_text
        thinking_tokens: int | None = used
    else:
        prefix = "<think>\n" + first.reasoning + "\n</think>\n\n" + first.text
        thinking_tokens = first.usage.get("reasoning_tokens")
    second = backend.complete(
        [*messages, {"role": "assistant", "content": prefix}], max_tokens=max(1, max_new_tokens - used),
        extra={"enable_thinking": True, "continue_final_message": True}, **params,
    )
    # engines whose reasoning parser sees no </think> in the continuation (vLLM) report it as reasoning
    continuation = second.text or second.reasoning
    if still_thinking:
        reasoning = (first.reasoning + stop_text.split("</think>")[0]).strip("\n")
        content = continuation.strip("\n")
    else:
        reasoning, content = first.reasoning, first.text + continuation
    usage = {
        "prompt_tokens": first.usage.get("prompt_tokens", 0) + second.usage.get("prompt_tokens", 0),
        "completion_tokens": used + second.usage.get("completion_tokens", 0),
    }
    return ChatResult(reasoning=reasoning, content=content, thinking_tokens=thinking_tokens,
                      budget_hit=still_thinking, finish_reason=second.finish_reason, passes=2, strategy="two_pass",
                      usage=usage)
