"""Reading a judge's answer and the deterministic rules that override it.

``parse_judge_score`` accepts the three answer shapes judges produce (JSON ``{"score": n}``, ``Score: n`` (also
``评分：n`` / ``分数：n``, and ``"score": n`` of a JSON object cut short), MT-Bench's ``[[n]]``) and returns None for
anything else, for an out-of-range score and for an answer that gives two different scores: an unreadable answer is
retried and then recorded as invalid, never read as 0. The rules are RMTBench's EE override (a reply not in the
first person scores 1) and ours for CM (a reply that admits being an AI fails).
"""

from __future__ import annotations

import json
import re

_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.S)
_BRACKETS = re.compile(r"\[\[\s*(-?\d+(?:\.\d+)?)\s*\]\]")
_LABELLED = re.compile(r"(?:\bscore\"?|评分|分数|得分)\s*[:：=]\s*\**\s*(-?\d+(?:\.\d+)?)", re.I)
_WINNER = re.compile(r"\"winner\"\s*:\s*\"(A|B|tie)\"", re.I)


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return int(number) if number.is_integer() else None
    return None


def _json_scores(text: str) -> list[int | None]:
    scores = []
    for match in _JSON_OBJECT.finditer(text):
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "score" in data:
            scores.append(_as_int(data["score"]))
    return scores


def parse_judge_score(text: str, scale: tuple[int, int] = (1, 5)) -> int | None:
    """The integer score in ``text``, or None when there is no single valid score within ``scale`` (inclusive).

    Shapes tried in order, the first that occurs decides: a JSON object with ``score``; ``[[n]]``; ``Score: n``.
    Within that shape every occurrence must agree and be an integer in range, otherwise the answer is invalid.
    """
    low, high = scale
    candidates = _json_scores(text)
    if not candidates:
        candidates = [_as_int(m) for m in _BRACKETS.findall(text)]
    if not candidates:
        candidates = [_as_int(m) for m in _LABELLED.findall(text)]
    if not candidates or len(set(candidates)) != 1:
        return None
    score = candidates[0]
    return score if score is not None and low <= score <= high else None


def parse_pairwise_verdict(text: str) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"`` from a pairwise answer ``{"winner": ...}``; None when absent or contradictory."""
    found = {m.upper() if m.lower() != "tie" else "tie" for m in _WINNER.findall(text)}
    return found.pop() if len(found) == 1 else None


_FIRST_PERSON_EN = re.compile(r"\b(I|I'm|I've|I'd|I'll|me|my|mine|myself|we|us|our|ours)\b", re.I)
_FIRST_PERSON_ZH = re.compile(r"[我咱俺吾]|本人|在下|老夫|本姑娘|人家")
_AI_ADMISSION_EN = re.compile(
    r"\b(as an ai\b|i am an ai\b|i'm an ai\b|i am a (large )?language model|i'm a (large )?language model|"
    r"as a (large )?language model|i am an artificial intelligence|i'm an artificial intelligence|"
    r"i am (just )?a chatbot|i'm (just )?a chatbot|i am an ai assistant|i'm an ai assistant)", re.I)
_AI_ADMISSION_ZH = re.compile(
    r"(作为一个?(AI|人工智能|语言模型|助手)|我是一个?(AI|人工智能|语言模型|聊天机器人|AI助手))", re.I)


def is_first_person(reply: str, lang: str) -> bool:
    """True when the reply contains a first-person pronoun (our operational reading of RMTBench's EE rule)."""
    pattern = _FIRST_PERSON_ZH if lang == "zh" else _FIRST_PERSON_EN
    return bool(pattern.search(reply))


def admits_being_ai(reply: str, lang: str) -> bool:
    """True when the reply says it is an AI, a language model or a chatbot (in English, or in Chinese for zh)."""
    if _AI_ADMISSION_EN.search(reply):
        return True
    return lang == "zh" and bool(_AI_ADMISSION_ZH.search(reply))


def rule_override(dimension: str, reply: str, lang: str) -> tuple[int, str] | None:
    """``(score, rule)`` when a deterministic rule fixes the score, else None.

    EE: no first-person pronoun -> 1 (RMTBench: "If the model does not use first-person perspective, please also
    select 1 point"). CM: the reply admits being an AI -> 0 (fail); the form of this rule is ours.
    """
    if dimension == "EE" and not is_first_person(reply, lang):
        return 1, "not first person"
    if dimension == "CM" and admits_being_ai(reply, lang):
        return 0, "admits being an AI"
    return None
