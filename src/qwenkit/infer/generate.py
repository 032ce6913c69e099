"""``generate_chat``: batched chat generation with Qwen3's thinking modes and an exact thinking budget.

Strategies (Qwen3 paper section 4.3; Qwen docs "Thinking Budget"):

- ``logits`` (local ``transformers`` models): :class:`~qwenkit.infer.budget.ThinkingBudgetProcessor` counts the tokens
  after ``<think>`` per row and at exactly ``N`` forces the stop text, which ends with ``</think>``.
- ``two_pass`` (a local model or any chat backend; Qwen's documented recipe): pass 1 generates at most ``N`` tokens;
  if the reply did not finish, the stop text is appended (only when thinking did not close) and pass 2 continues with
  the remaining tokens.
- ``server`` (chat backends whose engine has its own budget option): the budget is passed through and the result is
  marked as such (``hard_end_only`` when the engine forces only ``</think>`` and no stop text).

With thinking enabled the prompt ends with ``<think>\\n`` (see :func:`qwenkit.lm.chat.generation_prompt`), so every row
starts inside the think block and the budget governs it. Token accounting: ``max_new_tokens`` bounds every generated
or forced token of a reply, so ``thinking_tokens + len(stop ids) + answer tokens <= max_new_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qwenkit.infer.budget import ThinkingBudgetProcessor, resolve_stop_text
from qwenkit.lm.chat import generation_prompt, split_reasoning

STRATEGIES = ("auto", "logits", "two_pass", "server")
THINKING_SAMPLING = {"temperature": 0.6, "top_p": 0.95, "top_k": 20}
"""Qwen3's recommended sampling in thinking mode (model card: "DO NOT use greedy decoding")."""
NON_THINKING_SAMPLING = {"temperature": 0.7, "top_p": 0.8, "top_k": 20}
"""Qwen3's recommended sampling in non-thinking mode."""


@dataclass
class ChatResult:
    reasoning: str
    content: str
    thinking_tokens: int | None
    """Tokens generated after ``<think>`` up to the stop text or ``</think>``; None when a remote server hides it."""
    budget_hit: bool
    finish_reason: str
    """"stop" (end of turn or a stop string) or "length" (``max_new_tokens`` ran out)."""
    passes: int
    token_ids: list[int] = field(default_factory=list)
    """Generated (and forced) token ids of the reply; empty for remote backends."""
    strategy: str = "logits"
    thinking: bool = True
    hard_end_only: bool = False
    """True when a server's own budget forced only ``</think>`` (no stop text)."""
    usage: dict[str, int] = field(default_factory=dict)


Conversation = Sequence[Mapping[str, Any]]


def _per_row(value: int | None | Sequence[int | None], rows: int) -> list[int | None]:
    if value is None or isinstance(value, int):
        return [value] * rows
    values = list(value)
    if len(values) != rows:
        raise ValueError(f"thinking_budget has {len(values)} entries for {rows} conversations; give one per row")
    return values


def _is_backend(model: Any) -> bool:
    return hasattr(model, "complete") and not hasattr(model, "generate")


def chat_stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant turn: the tokenizer's EOS and pad plus ``<|im_end|>``/``<|endoftext|>``."""
    ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in ("<|im_end|>", "<|endoftext|>") if t in vocab)
    return sorted(i for i in ids if i is not None)


def generate_chat(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Conversation],
    *,
    max_new_tokens: int,
    thinking_budget: int | None | Sequence[int | None] = None,
    enable_thinking: bool = True,
    strategy: str = "auto",
    stop_text: str | None = None,
    logits_processors: Sequence = (),
    **sampling: Any,
) -> list[ChatResult]:
    """Generate one reply per conversation (lists of ``{"role", "content"}``) with an optional thinking budget.

    ``model`` is a local causal LM (with ``tokenizer``) or a chat backend (:mod:`qwenkit.lm.backends`; ``tokenizer`` may
    be None). ``thinking_budget`` is one budget for all rows or one per row (None: unlimited). ``strategy``: ``auto``
    (``logits`` locally; ``server`` for a backend that declares a budget option, ``two_pass`` otherwise), ``logits``,
    ``two_pass`` or ``server``. ``stop_text``: None/"docs" (Qwen's documented text), "paper", or any text.
    ``sampling``: ``temperature`` (0 = greedy), ``top_p``, ``top_k``, ``seed``, ``stop`` (strings); defaults are Qwen3's
    recommended values for the mode. ``logits_processors`` run before the budget processor (local models only).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    unknown = set(sampling) - {"temperature", "top_p", "top_k", "seed", "stop"}
    if unknown:
        raise TypeError(f"unknown sampling arguments {sorted(unknown)}; use temperature, top_p, top_k, seed, stop")
    budgets = _per_row(thinking_budget, len(conversations))
    if _is_backend(model):
        from qwenkit.infer.remote import generate_chat_remote

        return generate_chat_remote(
            model, conversations, max_new_tokens=max_new_tokens, budgets=budgets, enable_thinking=enable_thinking,
            strategy=strategy, stop_text=resolve_stop_text(stop_text), sampling=sampling,
        )
    if strategy == "server":
        raise ValueError("strategy='server' needs a chat backend (an engine with its own budget option); "
                         "for a local model use 'logits' or 'two_pass'")
    if tokenizer is None:
        raise ValueError("a local model needs its tokenizer")
    prompts, modes = [], []
    for conversation in conversations:
        prompt, thinking = generation_prompt(conversation, tokenizer=tokenizer, enable_thinking=enable_thinking)
        prompts.append(prompt)
        modes.append(thinking)
    defaults = THINKING_SAMPLING if all(modes) else NON_THINKING_SAMPLING
    params = {**defaults, **sampling}
    prompt_ids = [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    if strategy == "two_pass":
        return _two_pass_local(model, tokenizer, prompt_ids, modes, budgets, max_new_tokens, stop_text, params,
                               logits_processors)
    return _logits_local(model, tokenizer, prompt_ids, modes, budgets, max_new_tokens, stop_text, params,
                         logits_processors)


def _sample(model, tokenizer, prompt_ids, max_new_tokens, params, processors):
    from qwenkit.lm.sampling import SamplingParams, sample

    sampling = SamplingParams(
        max_new_tokens=max_new_tokens, temperature=params["temperature"], top_p=params["top_p"],
        top_k=params["top_k"], seed=params.get("seed"), stop=list(params.get("stop") or []),
        stop_token_ids=chat_stop_token_ids(tokenizer),
    )
    return sample(model, tokenizer, prompt_ids, sampling, logits_processors=processors)


def _reply(tokenizer, ids: list[int], thinking: bool, stop: Sequence[str],
           stop_ids: set[int] | None = None) -> tuple[str, str]:
    """(reasoning, content) of generated ids: cut at the end-of-turn token (``stop_ids``, default
    :func:`chat_stop_token_ids`), split at the last ``</think>``."""
    stop_ids = set(chat_stop_token_ids(tokenizer)) if stop_ids is None else stop_ids
    cut = next((i for i, t in enumerate(ids) if t in stop_ids), len(ids))
    text = tokenizer.decode(ids[:cut], skip_special_tokens=False)
    for s in stop:
        if s in text:
            text = text[: text.find(s)]
    if not thinking:
        return "", text.strip("\n")
    return split_reasoning("<think>\n" + text)


def _logits_local(model, tokenizer, prompt_ids, modes, budgets, max_new_tokens, stop_text, params, processors):
    return generate_ids(model, tokenizer, prompt_ids, modes, budgets, [max_new_tokens] * len(prompt_ids), stop_text,
                        params, processors)


class RowTokenLimit:
    """Logits processor ending row ``r`` (forcing ``stop_id``) once it has generated ``limits[r]`` tokens.

    Lets rows with different ``max_tokens`` share one batch; the forced stop token is dropped from the reply.
    """

    def __init__(self, limits: Sequence[int], stop_id: int):
        self.limits, self.stop_id, self.step = list(limits), stop_id, 0

    def __call__(self, input_ids, scores):
        rows = [r for r, limit in enumerate(self.limits) if limit == self.step]
        self.step += 1
        if rows:
            scores = scores.clone()
            scores[rows] = float("-inf")
            scores[rows, self.stop_id] = 0.0
        return scores


class TokenObserver:
    """Logits processor that leaves scores alone and reports each row's newly generated token to ``on_token``.

    A step's call sees the token chosen at the previous step, so :meth:`finalize` reports the last ones; a row is
    reported up to and including its first stop token.
    """

    def __init__(self, on_token, stop_ids: Sequence[int], rows: int):
        self.on_token, self.stop_ids = on_token, set(stop_ids)
        self.seen = [0] * rows
        self.done = [False] * rows
        self._first = True

    def _report(self, row: int, token: int) -> None:
        if self.done[row]:
            return
        self.seen[row] += 1
        self.done[row] = token in self.stop_ids
        self.on_token(row, token)

    def __call__(self, input_ids, scores):
        if self._first:
            self._first = False
        else:
            for row, token in enumerate(input_ids[:, -1].tolist()):
                self._report(row, token)
        return scores

    def finalize(self, completions: Sequence[Sequence[int]]) -> None:
        for row, ids in enumerate(completions):
            for token in list(ids)[self.seen[row] :]:
                self._report(row, token)


def generate_ids(
    model, tokenizer, prompt_ids, modes, budgets, max_tokens, stop_text, params, processors=(), on_token=None
) -> list[ChatResult]:
    """The ``logits`` strategy on tokenized prompts, with per-row budgets and per-row ``max_tokens`` in one batch.

    ``on_token(row, token_id)`` (optional) is called for every generated token as soon as it is sampled (streaming).
    """
    stop_ids = chat_stop_token_ids(tokenizer)
    budget_processor = ThinkingBudgetProcessor(tokenizer, budgets, stop_text=stop_text, stop_token_ids=stop_ids)
    chain = [*processors, budget_processor]
    longest = max(max_tokens)
    if min(max_tokens) < longest:
        chain.append(RowTokenLimit(max_tokens, stop_ids[0]))
    observer = TokenObserver(on_token, stop_ids, len(prompt_ids)) if on_token is not None else None
    if observer is not None:
        chain.append(observer)
    batch = _sample(model, tokenizer, prompt_ids, longest, params, chain)
    budget_processor.finalize(batch.completion_ids)
    if observer is not None:
        observer.finalize(batch.completion_ids)
    results = []
    for row, ids in enumerate(batch.completion_ids):
        ids, reason = list(ids), batch.finish_reasons[row]
        if len(ids) > max_tokens[row]:
            ids, reason = ids[: max_tokens[row]], "length"
        state = budget_processor.rows[row]
        reasoning, content = _reply(tokenizer, ids, modes[row], params.get("stop") or [])
        results.append(ChatResult(
            reasoning=reasoning, content=content, thinking_tokens=state.thinking_tokens if modes[row] else 0,
            budget_hit=state.budget_hit, finish_reason=reason, passes=1, token_ids=ids, strategy="logits",
            thinking=modes[row], usage={"prompt_tokens": len(prompt_ids[row]), "completion_tokens": len(ids)},
        ))
    return results


def _two_pass_local(model, tokenizer, prompt_ids, modes, budgets, max_new_tokens, stop_text, params, processors):
    """Qwen's recipe: pass 1 with ``max_new_tokens = N``; unfinished rows continue (after the stop text if thinking).

    Rows are grouped by their pass-1 length so that each group's pass 2 has one token allowance.
    """
    stop_ids = set(chat_stop_token_ids(tokenizer))
    forced = list(tokenizer(resolve_stop_text(stop_text), add_special_tokens=False)["input_ids"])
    first_limits = [
        max_new_tokens if (budget is None or not thinking) else min(budget, max_new_tokens)
        for budget, thinking in zip(budgets, modes, strict=True)
    ]
    counters = ThinkingBudgetProcessor(tokenizer, [None] * len(prompt_ids), stop_token_ids=stop_ids)
    pass1: list[list[int]] = [[] for _ in prompt_ids]
    reasons = ["length"] * len(prompt_ids)
    for limit in sorted(set(first_limits)):
        rows = [r for r, lim in enumerate(first_limits) if lim == limit]
        if limit == 0:  # budget 0: nothing to generate in pass 1, the stop text follows the prompt's <think>
            for r in rows:
                counters.rows[r].state = "thinking" if modes[r] else "idle"
            continue
        counter = ThinkingBudgetProcessor(tokenizer, [None] * len(rows), stop_token_ids=stop_ids)
        batch = _sample(model, tokenizer, [prompt_ids[r] for r in rows], limit, params, [*processors, counter])
        counter.finalize(batch.completion_ids)
        for i, r in enumerate(rows):
            pass1[r], reasons[r] = list(batch.completion_ids[i]), batch.finish_reasons[i]
            counters.rows[r] = counter.rows[i]
    results: list[ChatResult | None] = [None] * len(prompt_ids)
    second: dict[int, list[tuple[int, list[int]]]] = {}
    for r, ids in enumerate(pass1):
        finished = any(t in stop_ids for t in ids) or reasons[r] == "stop"
        still_thinking = modes[r] and counters.rows[r].state == "thinking"
        if finished or len(ids) >= max_new_tokens or first_limits[r] == max_new_tokens:
            thinking_tokens = counters.rows[r].thinking_tokens if modes[r] else 0
            results[r] = _result(tokenizer, ids, modes[r], params, thinking_tokens, False, reasons[r], 1)
            continue
        prefix = ids + (forced if still_thinking else [])
        remaining = max_new_tokens - len(prefix)
        second.setdefault(remaining, []).append((r, prefix))
        counters.rows[r].budget_hit = still_thinking
        if still_thinking:
            counters.rows[r].thinking_tokens = len(ids)
    for remaining, items in second.items():
        if remaining <= 0:
            for r, prefix in items:
                state = counters.rows[r]
                results[r] = _result(tokenizer, prefix[:max_new_tokens], modes[r], params, state.thinking_tokens,
                                     state.budget_hit, "length", 2)
            continue
        batch = _sample(model, tokenizer, [prompt_ids[r] + prefix for r, prefix in items], remaining, params,
                        list(processors))
        for i, (r, prefix) in enumerate(items):
            results[r] = _result(tokenizer, prefix + list(batch.completion_ids[i]), modes[r], params,
                                 counters.rows[r].thinking_tokens, counters.rows[r].budget_hit,
                                 batch.finish_reasons[i], 2)
    return results  # type: ignore[return-value]


def _result(tokenizer, ids, thinking, params, thinking_tokens, budget_hit, reason, passes) -> ChatResult:
    reasoning, content = _reply(tokenizer, ids, thinking, params.get("stop") or [])
    return ChatResult(reasoning=reasoning, content=content, thinking_tokens=thinking_tokens or 0,
                      budget_hit=budget_hit, finish_reason=reason, passes=passes, token_ids=list(ids),
                      strategy="two_pass", thinking=thinking)
