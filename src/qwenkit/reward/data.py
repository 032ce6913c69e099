"""Preference pairs: the JSONL format, validated at load, and the reward-bench loader.

One pair per line::

    {"prompt": "What is 2+3?", "chosen": "5", "rejected": "6",
     "margin": 1.0, "category": "objective", "subset": "add-1", "source": "synthetic", "votes": [12, 3], "id": "q1"}

``prompt`` is a string (one user turn) or ``conversation`` a list of ``{"role", "content"}`` messages (exactly one of
the two); ``chosen`` and ``rejected`` are the two responses (the final assistant turn). ``margin`` (used by the loss
when set), ``category`` (e.g. adversarial / objective / subjective), ``subset``, ``source``, ``votes`` (net votes of
chosen and rejected) and ``id`` are optional. Unknown fields are errors, named with file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from qwenkit.core.config import StrictModel
from qwenkit.reward.errors import RewardDataError


class Message(StrictModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class PreferencePair(StrictModel):
    """One preference: ``chosen`` is preferred over ``rejected`` as the answer to ``prompt`` / ``conversation``."""

    prompt: str | None = None
    conversation: list[Message] | None = None
    chosen: str = Field(min_length=1)
    rejected: str = Field(min_length=1)
    margin: float | None = None
    category: str | None = None
    subset: str | None = None
    source: str | None = None
    votes: tuple[int, int] | None = None
    id: str | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> PreferencePair:
        if (self.prompt is None) == (self.conversation is None):
            raise ValueError("give exactly one of 'prompt' (a string) or 'conversation' (a list of messages)")
        if self.conversation is not None and not self.conversation:
            raise ValueError("'conversation' is empty; it needs at least one user message")
        return self

    @property
    def context(self) -> str | list[dict]:
        """What the reward model is conditioned on: the prompt string or the conversation as plain dicts."""
        if self.prompt is not None:
            return self.prompt
        return [m.model_dump() for m in self.conversation or []]


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<record>"
        if err["type"] == "extra_forbidden":
            problems.append(f"field {field!r}: unknown field; remove it or check its spelling")
        elif err["type"] == "missing":
            problems.append(f"field {field!r}: required field is missing")
        else:
            problems.append(f"field {field!r}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(problems)


def parse_pair(record: object, where: str) -> PreferencePair:
    """Validate one decoded JSON record; ``where`` ("file:line") prefixes every error."""
    if not isinstance(record, dict):
        raise RewardDataError(f"{where}: a pair must be a JSON object, got {type(record).__name__}")
    try:
        return PreferencePair.model_validate(record)
    except ValidationError as exc:
        raise RewardDataError(f"{where}: {_describe(exc)}") from None


def _records(path: Path) -> Iterable[tuple[int, object]]:
    """(line number, decoded record) of a JSONL file, or of a JSON array file (numbered by position)."""
    if not path.is_file():
        raise RewardDataError(f"pair file {str(path)!r} does not exist; pass a .jsonl file of preference pairs")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RewardDataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, list):
            raise RewardDataError(f"{path}: a .json pair file must hold a list of records")
        yield from enumerate(data, start=1)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise RewardDataError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None


def load_pairs(path: str | Path) -> list[PreferencePair]:
    """Read and validate every pair of a ``.jsonl`` (or ``.json`` list) file; errors name file, line and field."""
    path = Path(path)
    pairs = [parse_pair(record, f"{path}:{number}") for number, record in _records(path)]
    if not pairs:
        raise RewardDataError(f"pair file {str(path)!r} holds no pairs")
    return pairs


def save_pairs(path: str | Path, pairs: Sequence[PreferencePair]) -> Path:
    """Write pairs as JSONL (fields that are unset are left out)."""
    from qwenkit.core.checkpoint import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(p.model_dump(mode="json", exclude_none=True), ensure_ascii=False) + "\n" for p in pairs)
    atomic_write_text(path, text)
    return path


# allenai/reward-bench rewardbench/constants.py: v1 sections and the example counts that weight their subsets
# (math-prm is up-weighted to 984 "to be equal to code").
REWARD_BENCH_EXAMPLE_COUNTS = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28, "mt-bench-med": 40,
    "mt-bench-hard": 37, "math-prm": 984, "refusals-dangerous": 100, "refusals-offensive": 100,
    "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46, "xstest-should-refuse": 250, "xstest-should-respond": 154, "donotanswer": 136,
    "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}
REWARD_BENCH_SECTIONS = {
    "Chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "Chat Hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "Safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"],
    "Reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}


def load_reward_bench(path: str | Path) -> list[PreferencePair]:
    """Pairs from a reward-bench-format file (``.jsonl`` or ``.json``: ``prompt, chosen, rejected, subset[, id]``).

    The v1 section of a known subset becomes the pair's ``category``; other columns of the file are ignored.
    """
    path = Path(path)
    section_of = {subset: section for section, subsets in REWARD_BENCH_SECTIONS.items() for subset in subsets}
    pairs = []
    for number, record in _records(path):
        where = f"{path}:{number}"
        if not isinstance(record, dict):
            raise RewardDataError(f"{where}: a reward-bench row must be a JSON object")
        missing = [k for k in ("prompt", "chosen", "rejected", "subset") if k not in record]
        if missing:
            raise RewardDataError(f"{where}: field {missing[0]!r}: required reward-bench column is missing")
        subset = record["subset"]
        fields = {
            "prompt": record["prompt"], "chosen": record["chosen"], "rejected": record["rejected"],
            "subset": subset, "category": section_of.get(subset) if isinstance(subset, str) else None,
            "source": "reward-bench",
        }
        if record.get("id") is not None:
            fields["id"] = str(record["id"])
        pairs.append(parse_pair(fields, where))
    if not pairs:
        raise RewardDataError(f"reward-bench file {str(path)!r} holds no rows")
    return pairs
