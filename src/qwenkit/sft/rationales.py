"""Rationale generation by rejection sampling from any chat backend, with every call cached by content hash.

After the paper's ``data/data_synthesize.py``: the teacher is asked to think step by step and to end with
"The answer is X"; a rationale is kept only when that final answer matches the gold label (numbers within 1e-4),
with up to ``tries`` attempts per question (the paper: 10). The yield (kept / asked, and attempts used) is recorded.

Every backend call is stored under ``cache_dir`` as one JSON file named by the SHA-256 of the request (backend
name, messages, sampling settings and the attempt's seed), written atomically before it is used. A killed run that
is started again finds its earlier answers there and repeats no call.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qwenkit.core.checkpoint import atomic_write_text
from qwenkit.sft.data import SFTRecord
from qwenkit.sft.metrics import answers_match, canonical_gold, extract_answer

SYSTEM_PROMPT = "You are a helpful assistant."
INSTRUCTIONS = {
    "number": 'Solve the math problem. Give your answer ending with "The answer is n", where n is a number.',
    "choice": 'Answer the multiple-choice question. Give your answer ending with "The answer is x", where x is the '
              "letter of the correct option.",
    "label": 'Answer the question. Give your answer ending with "The answer is x", where x is one of the options.',
}
_LAST_ANSWER = re.compile(r"the (?:final )?answer is", re.IGNORECASE)


def teacher_messages(record: SFTRecord) -> list[dict[str, str]]:
    """The paper's synthesis prompt: instruction, the question (with its options), "Let's think step by step."."""
    question = record.question
    if record.choices and record.kind == "choice":
        question += "\n" + "\n".join(f"({chr(ord('A') + i)}) {c}" for i, c in enumerate(record.choices))
    elif record.choices:
        question += "\nOptions: " + ", ".join(record.choices)
    user = f"{INSTRUCTIONS[record.kind]}\n\nHere is the question:\n{question}\n\nAnswer: Let's think step by step."
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def rationale_body(text: str) -> str:
    """The reasoning before the last "The answer is" (what becomes the training rationale)."""
    found = list(_LAST_ANSWER.finditer(text))
    return (text[: found[-1].start()] if found else text).strip()


class CallCache:
    """Completed backend calls, one atomically written JSON file per request hash."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(request: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))["text"]

    def put(self, key: str, request: dict[str, Any], text: str) -> None:
        atomic_write_text(self._path(key), json.dumps({"request": request, "text": text}, ensure_ascii=False))


@dataclass
class RationaleYield:
    """What rejection sampling produced."""

    questions: int = 0
    kept: int = 0
    calls: int = 0
    """Backend calls made by this run."""
    cached: int = 0
    """Answers read back from the cache instead of calling."""
    attempts_used: dict[int, int] = field(default_factory=dict)
    """For kept questions: attempts needed -> how many questions."""

    @property
    def rate(self) -> float:
        return self.kept / self.questions if self.questions else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"questions": self.questions, "kept": self.kept, "yield": self.rate, "calls": self.calls,
                "cached": self.cached, "attempts_used": {str(k): v for k, v in sorted(self.attempts_used.items())}}


def generate_rationales(
    records: Sequence[SFTRecord],
    backend,
    cache_dir: str | Path,
    *,
    tries: int = 10,
    temperature: float = 0.7,
    max_tokens: int = 512,
    seed: int = 0,
    quiet: bool | None = None,
) -> tuple[list[SFTRecord], RationaleYield]:
    """(records that got a rationale, the yield). Attempt ``a`` of a question is sampled with seed ``seed + a``."""
    from qwenkit.core.progress import track

    if tries < 1:
        raise ValueError(f"tries must be >= 1, got {tries}")
    cache = CallCache(cache_dir)
    stats = RationaleYield(questions=len(records))
    kept: list[SFTRecord] = []
    for record in track(records, "rationales", total=len(records), quiet=quiet):
        gold = canonical_gold(record.answer, record.kind, record.choices)
        messages = teacher_messages(record)
        for attempt in range(tries):
            request = {"backend": backend.name, "messages": messages, "temperature": temperature,
                       "max_tokens": max_tokens, "seed": seed + attempt}
            key = cache.key(request)
            text = cache.get(key)
            if text is None:
                text = backend.complete(messages, max_tokens=max_tokens, temperature=temperature,
                                        seed=seed + attempt).text
                cache.put(key, request, text)
                stats.calls += 1
            else:
                stats.cached += 1
            predicted = extract_answer(text, record.kind, record.choices)
            body = rationale_body(text)
            if answers_match(predicted, gold, record.kind) and body:
                kept.append(replace(record, rationale=body, meta={**record.meta, "rationale_attempts": attempt + 1}))
                stats.kept += 1
                stats.attempts_used[attempt + 1] = stats.attempts_used.get(attempt + 1, 0) + 1
                break
    return kept, stats
