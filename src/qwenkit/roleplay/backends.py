"""Backend specs of a run (player, user simulator, judge) and the deterministic scripted backend for tests.

A spec is data (``kind: openai | transformers | scripted | rules``) turned into a :class:`qwenkit.lm.ChatBackend`
by :func:`build_backend`. ``identity()`` is what names the backend in the call cache's key: kind and model, not the
URL, key, timeouts or limits, so that the same model served from another host resumes the same run.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from qwenkit.core.config import StrictModel
from qwenkit.lm.backends import Completion


class RateLimit(StrictModel):
    requests_per_s: float | None = Field(default=None, gt=0)
    tokens_per_min: float | None = Field(default=None, gt=0)
    """Estimated tokens per request: prompt characters / 4 plus ``max_tokens`` (a conservative upper bound)."""


class Price(StrictModel):
    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)
    """US dollars per million prompt / completion tokens (reasoning tokens are completion tokens)."""


class _RoleSettings(StrictModel):
    max_tokens: int = Field(default=160, ge=1)
    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=0.9, gt=0, le=1)
    top_k: int = Field(default=0, ge=0)
    enable_thinking: bool | None = None
    """Qwen3's hard switch (sent as ``chat_template_kwargs.enable_thinking``); None: the backend's default."""
    thinking_budget: int | None = Field(default=None, ge=0)
    """An exact thinking budget through :func:`qwenkit.infer.generate_chat` (player only)."""
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    price: Price = Field(default_factory=Price)
    score_from: Literal["text", "logprobs"] = "text"
    """Judge role: ``text`` reads the score from the generated answer (:func:`parse_judge_score`, retried, then
    ``invalid``); ``logprobs`` from the next-token distribution after the answer's prefill
    (:mod:`qwenkit.roleplay.logprob_judge`: one greedy call, no retries)."""
    calibrate: bool = False
    """``score_from: logprobs``: divide out the judge's distribution for a content-free reply (Zhao et al. 2021)."""
    top_logprobs: int = Field(default=20, ge=1, le=20)
    """``score_from: logprobs``: how many of the most likely tokens the server returns (OpenAI allows 20)."""
    min_score_mass: float = Field(default=0.5, ge=0, le=1)
    """``score_from: logprobs``: below this probability on the scale's score tokens the judgment is ``invalid``."""


class OpenAISpec(_RoleSettings):
    kind: Literal["openai"]
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    budget_field: str | None = None

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model}


class TransformersSpec(_RoleSettings):
    kind: Literal["transformers"]
    model: str = "smollm2"
    """Anything :func:`qwenkit.lm.loading.resolve_model` takes: a local HF directory, a ``.gguf`` file, a directory
    holding one, or an alias (``smollm2``, ``tiny-qwen3``, ``tiny-qwen3-moe``)."""
    gguf_file: str | None = None

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "gguf_file": self.gguf_file}


class ScriptedSpec(_RoleSettings):
    kind: Literal["scripted"]
    name: str = "scripted"
    invalid_every: int = Field(default=0, ge=0)
    """Judge role: about one prompt in n always gets garbage (recorded ``invalid``) and about one answer in n is
    garbage once (a retry fixes it), chosen by content hash."""
    think: bool = False
    """Player role: replies carry a ``<think>`` block, to check that reasoning never enters the history."""

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "invalid_every": self.invalid_every, "think": self.think}


class RulesSpec(_RoleSettings):
    kind: Literal["rules"]
    """The rule-based judge (:func:`qwenkit.roleplay.judge.rules_score`): no model, judge role only."""

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind}


BackendSpec = Annotated[OpenAISpec | TransformersSpec | ScriptedSpec | RulesSpec, Field(discriminator="kind")]


def _digest(*parts: Any) -> int:
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


_EN_LINES = ("I hear you, and it matters to me.", "I remember the harbour lights on nights like this.",
             "Tell me more, my friend; what happened next?", "I feel a little nervous, honestly.",
             "Let us walk to the old bridge and see for ourselves.")
_ZH_LINES = ("我明白你的感受，这对我很重要。", "我还记得这样的夜晚港口的灯光。", "再跟我多说一点吧，后来怎么样了？",
             "说实话，我有点紧张。", "我们去老桥那边亲眼看看吧。")


class ScriptedBackend:
    """A deterministic chat backend: the answer is a pure function of the messages and the seed.

    As a player it answers in the language of the last user message (Chinese when it contains CJK characters),
    in the first person, optionally with reasoning (``think``); as a judge (a prompt that asks for JSON with a
    score) it answers ``{"score": n}`` with n in the scale named in the prompt, or garbage (``invalid_every``), and
    a pairwise prompt with a verdict chosen by hash;
    as a user simulator it writes a short question, or ``[END]`` after a few turns.
    """

    budget_field = None

    def __init__(self, name: str = "scripted", *, invalid_every: int = 0, think: bool = False):
        self.name, self.invalid_every, self.think = name, invalid_every, think
        self.calls = 0

    def complete(self, messages: Sequence[Mapping[str, Any]], *, max_tokens: int = 256, temperature: float = 0.7,
                 top_p: float = 1.0, top_k: int = 0, seed: int | None = None, stop: Sequence[str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> Completion:
        self.calls += 1
        value = _digest([dict(m) for m in messages], seed)
        last = str(messages[-1].get("content") or "")
        system = str(messages[0].get("content") or "") if messages[0].get("role") == "system" else ""
        usage = {"prompt_tokens": sum(len(str(m.get("content") or "")) for m in messages) // 4 + 1}
        if ((extra or {}).get("body") or {}).get("logprobs"):
            return self._logprobs(messages, int(extra["body"].get("top_logprobs") or 0), usage)
        if '"winner"' in last:
            verdict = ("A", "B", "tie")[value % 3]
            return Completion(json.dumps({"winner": verdict}), "", {**usage, "completion_tokens": 6})
        if '"score"' in last:
            persistent = _digest([dict(m) for m in messages])
            if self.invalid_every and (persistent % self.invalid_every == 0 or value % self.invalid_every == 0):
                text = "I would rather not say."
            else:
                high = 1 if "0 to 1" in last or "0到1" in last else 5
                low = 0 if high == 1 else 1
                text = json.dumps({"reason": "scripted", "score": low + value % (high - low + 1)})
            return Completion(text, "", {**usage, "completion_tokens": 12})
        zh = any("\u4e00" <= ch <= "\u9fff" for ch in (last if "[END]" not in system else system))
        if "[END]" in system:
            turns = sum(1 for m in messages if m.get("role") == "assistant")
            text = "[END]" if turns >= 3 + value % 3 else ("你还记得我说过的话吗？" if zh else
                                                           "Do you remember what I told you?")
            return Completion(text, "", {**usage, "completion_tokens": 8})
        lines = _ZH_LINES if zh else _EN_LINES
        text = lines[value % len(lines)]
        reasoning = f"(private plan {value % 97})" if self.think else ""
        return Completion(text, reasoning, {**usage, "completion_tokens": 20})

    _LOGPROB_TOKENS = ("0", "1", "2", "3", "4", "5", " 3", "The", "I")

    def _logprobs(self, messages: Sequence[Mapping[str, Any]], k: int, usage: dict[str, int]) -> Completion:
        """An OpenAI-shaped answer with ``logprobs``: log-softmax of hashed logits over a few tokens (digits among
        them), a pure function of the messages; with ``invalid_every``, about one prompt in n gets no digit."""
        plain = [dict(m) for m in messages]
        tokens = self._LOGPROB_TOKENS
        if self.invalid_every and _digest(plain, "logprobs") % self.invalid_every == 0:
            tokens = ("The", "I", " well")
        logits = [(_digest(plain, token) % 1000) / 250.0 for token in tokens]
        top_logit = max(logits)
        norm = top_logit + math.log(sum(math.exp(v - top_logit) for v in logits))
        ranked = sorted(zip(tokens, (v - norm for v in logits), strict=True), key=lambda t: (-t[1], t[0]))
        entry = {"token": ranked[0][0], "logprob": ranked[0][1],
                 "top_logprobs": [{"token": t, "logprob": lp} for t, lp in ranked[:k]]}
        raw = {"choices": [{"index": 0, "message": {"role": "assistant", "content": ranked[0][0]},
                            "logprobs": {"content": [entry]}, "finish_reason": "length"}]}
        return Completion(ranked[0][0], "", {**usage, "completion_tokens": 1}, "length", raw=raw)


def build_backend(spec: OpenAISpec | TransformersSpec | ScriptedSpec | RulesSpec, *, shared: dict | None = None):
    """The chat backend of ``spec``; ``shared`` reuses one loaded local model across roles (keyed by identity)."""
    if isinstance(spec, OpenAISpec):
        from qwenkit.lm.backends import OpenAIChatBackend

        return OpenAIChatBackend(spec.base_url, spec.model, api_key_env=spec.api_key_env, timeout_s=spec.timeout_s,
                                 max_retries=spec.max_retries, budget_field=spec.budget_field)
    if isinstance(spec, ScriptedSpec):
        return ScriptedBackend(spec.name, invalid_every=spec.invalid_every, think=spec.think)
    if isinstance(spec, RulesSpec):
        raise ValueError("the rules judge is not a chat backend; qwenkit.roleplay.judge scores it without calls")
    key = json.dumps(spec.identity(), sort_keys=True)
    if shared is not None and key in shared:
        return shared[key]
    from qwenkit.lm.backends import TransformersBackend
    from qwenkit.lm.loading import resolve_model

    resolved = resolve_model(spec.model, gguf_file=spec.gguf_file)
    backend = TransformersBackend(resolved.model.eval(), resolved.tokenizer, name=resolved.name)
    if shared is not None:
        shared[key] = backend
    return backend
