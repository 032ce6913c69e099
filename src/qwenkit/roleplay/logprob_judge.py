"""A judge that reads its score from the model's next-token distribution instead of from generated text.

The judge prompt is sent with the answer already begun (the protocol's ``judge.prefill``, ``{"score": ``) and the
model is asked for the log-probabilities of its next token. The tokens whose text is an integer of the dimension's
scale ("1".."5", or "0"/"1" for pass/fail) give a distribution over the scores; small models that never write a
parsable answer still put most of their mass there. This is G-Eval's scoring (Liu et al. 2023, "G-Eval: NLG
Evaluation using GPT-4 with Better Human Alignment", eq. 1: score = sum_i p(s_i) s_i), with the argmax as the label.

Optionally the distribution is calibrated (Zhao et al. 2021, "Calibrate Before Use", sec. 4: q = W p with
W = diag(p_cf)^-1, renormalised): ``p_cf`` is the judge's distribution for a content-free reply ("N/A") in the same
dialogue's prompt, so a judge that says "1" to everything is measured against its own prior.

Where the distributions come from: an OpenAI-compatible server that takes ``logprobs``/``top_logprobs`` and
``continue_final_message`` (``qwenkit infer serve``, vLLM), read from ``choices[0].logprobs.content``; a local
:class:`qwenkit.lm.TransformersBackend`, from one forward pass of its model; or the scripted test backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

SCORE_STEPS = 3
"""Generated positions searched for the score: leading whitespace tokens (a tokenizer that splits " 3" into " "
and "3") are stepped over, greedily."""


def score_distribution(top: Sequence[Sequence[Any]], scale: tuple[int, int]) -> tuple[dict[int, float], float]:
    """The distribution over the scale's scores from one position's top tokens ``[(token_text, logprob), ...]``.

    A token counts for score s when its text, stripped of whitespace, is the integer s (low <= s <= high); several
    tokens of one score add up. Returns ``(p, mass)``: ``p[s] = P(s) / mass`` over the scores that occur, and
    ``mass = sum_s P(s)``, the probability the model put on any score token (0 when none occurs; then p is empty).
    """
    low, high = scale
    probs: dict[int, float] = {}
    for token, logprob in top:
        text = str(token).strip()
        if text.isdigit() and low <= int(text) <= high:
            probs[int(text)] = probs.get(int(text), 0.0) + math.exp(float(logprob))
    mass = sum(probs.values())
    if mass <= 0:
        return {}, 0.0
    return {s: p / mass for s, p in sorted(probs.items())}, mass


def calibrate(p: Mapping[int, float], prior: Mapping[int, float]) -> dict[int, float]:
    """Contextual calibration (Zhao et al. 2021, sec. 4): ``q_s = (p_s / prior_s) / sum_t (p_t / prior_t)`` over the
    scores present in both (a score absent from the prior's top tokens cannot be divided out and is dropped)."""
    weights = {s: p[s] / prior[s] for s in p if prior.get(s, 0.0) > 0}
    total = sum(weights.values())
    if total <= 0:
        return {}
    return {s: w / total for s, w in sorted(weights.items())}


def expected_score(p: Mapping[int, float]) -> float:
    """G-Eval's score (Liu et al. 2023, eq. 1): ``sum_s p_s * s``."""
    return float(sum(s * w for s, w in p.items()))


def argmax_score(p: Mapping[int, float]) -> int:
    """The most probable score; a tie goes to the lower score."""
    return max(sorted(p), key=lambda s: (p[s], -s))


def first_scored_position(content: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
    """The top tokens at the first generated position whose token is not whitespace, from an OpenAI chat response's
    ``choices[0].logprobs.content`` (entries ``{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}``)."""
    for entry in content[:SCORE_STEPS]:
        if str(entry.get("token", "")).strip():
            return [(str(t["token"]), float(t["logprob"])) for t in entry.get("top_logprobs") or []]
    return []


def local_top_logprobs(model, tokenizer, messages: Sequence[Mapping[str, Any]], k: int) -> tuple[list, dict]:
    """The same from a local model: greedy steps past whitespace tokens, then the ``k`` most likely next tokens
    with their log-probabilities (none when every one of the ``SCORE_STEPS`` positions is whitespace). Returns
    ``(top, usage)``."""
    import torch

    from qwenkit.lm.chat import render_chat

    prompt = render_chat(messages, tokenizer=tokenizer, continue_final_message=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(model.device)
    prompt_tokens = int(ids.shape[1])
    with torch.no_grad():
        for step in range(SCORE_STEPS):
            logp = model(input_ids=ids).logits[0, -1].float().log_softmax(-1)
            values, indices = torch.topk(logp, k)
            top = [(tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, indices, strict=True)]
            if top[0][0].strip():
                return top, {"prompt_tokens": prompt_tokens, "completion_tokens": step + 1}
            ids = torch.cat([ids, indices[:1].view(1, 1)], dim=1)
    return [], {"prompt_tokens": prompt_tokens, "completion_tokens": SCORE_STEPS}


def top_logprobs_once(backend: Any, messages: list[dict[str, str]], params: Mapping[str, Any]) -> dict[str, Any]:
    """One scoring call: the top tokens at the score position, as a JSON-able answer for the call cache."""
    from qwenkit.lm.backends import BackendError, TransformersBackend

    k = int(params["top_logprobs"])
    if isinstance(backend, TransformersBackend):
        top, usage = local_top_logprobs(backend.model, backend.tokenizer, messages, k)
        return {"text": top[0][0] if top else "", "top": [list(t) for t in top], "usage": usage}
    extra: dict[str, Any] = {"continue_final_message": True, "body": {"logprobs": True, "top_logprobs": k}}
    completion = backend.complete(messages, max_tokens=SCORE_STEPS, temperature=0.0, top_p=1.0, seed=params["seed"],
                                  extra=extra)
    try:
        content = completion.raw["choices"][0]["logprobs"]["content"]
    except (KeyError, IndexError, TypeError):
        raise BackendError(f"backend {getattr(backend, 'name', backend)!r} returned no logprobs; a judge with "
                           "score_from: logprobs needs a server that supports logprobs, top_logprobs and "
                           "continue_final_message (qwenkit infer serve, vLLM); use score_from: text otherwise"
                           ) from None
    top = first_scored_position(content or [])
    return {"text": completion.text, "top": [list(t) for t in top], "usage": dict(completion.usage)}
