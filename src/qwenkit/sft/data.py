"""SFT data: the JSONL record format, chat-formatted examples with loss on the target only, and packing.

Record format (one JSON object per line)::

    {"question": "...", "answer": "14", "rationale": "3 + 4 = 7. 7 * 2 = 14.", "choices": ["...", "..."],
     "kind": "number"}

``question`` and ``answer`` are required (an answer may be a JSON number); ``rationale``, ``choices`` (a list of
strings) and ``kind`` (``number`` | ``choice`` | ``label``) are optional. Without ``kind``: a numeric answer is a
``number``, a single letter with ``choices`` is a ``choice``, anything else is a ``label`` (its label set is
``choices`` when given). Every problem raises :class:`~qwenkit.core.errors.DataError` naming file, line and field.

Examples (after the paper's ``train.py``): the prompt is the chat-rendered user turn, the target is
``"{rationale} The answer is {answer}."`` (rationale mode) or ``"The answer is {answer}."`` (answer-only mode), both
configurable, followed by the end-of-turn token. Labels are ``-100`` on every prompt token, so only target tokens
carry loss. In rationale mode the user turn ends with "Let's think step by step." as the paper's prompts do.

Packing concatenates examples into rows of at most ``max_length`` tokens; each row carries a block-diagonal causal
4-D attention mask (a token attends only to earlier tokens of its own example) and positions restarting at 0 for
each example, so a packed example computes exactly what it computes alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qwenkit.core.errors import DataError
from qwenkit.sft.metrics import AnswerKind, parse_number

IGNORE_INDEX = -100
TargetMode = Literal["answer", "rationale"]
ANSWER_TEMPLATE = "The answer is {answer}."
RATIONALE_TEMPLATE = "{rationale} The answer is {answer}."
STEP_BY_STEP = "Let's think step by step."
KINDS = ("number", "choice", "label")


@dataclass(frozen=True)
class SFTRecord:
    """One question with its gold answer and, optionally, a rationale and answer choices."""

    question: str
    answer: str
    kind: AnswerKind
    rationale: str | None = None
    choices: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    """Free-form provenance (task name, difficulty, source line) carried into evaluation results."""


def infer_kind(answer: str, choices: Sequence[str] | None) -> AnswerKind:
    """``number`` for a numeric answer, ``choice`` for a single letter with choices, else ``label``."""
    stripped = answer.strip()
    if choices and len(stripped.strip("()")) == 1 and stripped.strip("()").isalpha():
        return "choice"
    if parse_number(stripped) is not None and stripped.replace(",", "").replace("$", "").lstrip("+-").replace(
        ".", "", 1
    ).isdigit():
        return "number"
    return "label"


def record_from_mapping(data: Any, where: str) -> SFTRecord:
    """Validate one record; ``where`` ("file.jsonl line 3") starts every error message."""
    if not isinstance(data, dict):
        raise DataError(f"{where}: a record must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {"question", "answer", "rationale", "choices", "kind", "meta"})
    if unknown:
        raise DataError(f"{where}: unknown field(s) {unknown}; allowed: question, answer, rationale, choices, kind, "
                        "meta")
    for name in ("question", "answer"):
        if name not in data:
            raise DataError(f"{where}: field {name!r} is missing; every record needs question and answer")
    question, answer = data["question"], data["answer"]
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: field 'question' must be a non-empty string, got {question!r}")
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        raise DataError(f"{where}: field 'answer' must be a string or a number, got {answer!r}")
    answer = str(answer).strip()
    if not answer:
        raise DataError(f"{where}: field 'answer' is empty")
    rationale = data.get("rationale")
    if rationale is not None and (not isinstance(rationale, str) or not rationale.strip()):
        raise DataError(f"{where}: field 'rationale' must be a non-empty string or absent, got {rationale!r}")
    choices = data.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise DataError(f"{where}: field 'choices' must be a list of at least two non-empty strings, got "
                            f"{choices!r}")
        choices = tuple(choices)
    kind = data.get("kind") or infer_kind(answer, choices)
    if kind not in KINDS:
        raise DataError(f"{where}: field 'kind' is {kind!r}; use one of {list(KINDS)}")
    if kind == "number" and parse_number(answer) is None:
        raise DataError(f"{where}: field 'answer' is {answer!r} but kind is 'number'; give a number")
    if kind == "choice":
        if not choices:
            raise DataError(f"{where}: kind 'choice' needs field 'choices'")
        letter = answer.strip("()").upper()
        if not (len(letter) == 1 and 0 <= ord(letter) - ord("A") < len(choices)):
            raise DataError(f"{where}: field 'answer' is {answer!r}; a choice answer is a letter A-"
                            f"{chr(ord('A') + len(choices) - 1)}")
        answer = letter
    if kind == "label" and choices and answer.lower() not in {c.lower() for c in choices}:
        raise DataError(f"{where}: field 'answer' is {answer!r}, which is not one of the labels in 'choices' "
                        f"{list(choices)}")
    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        raise DataError(f"{where}: field 'meta' must be an object")
    return SFTRecord(question.strip(), answer, kind, rationale.strip() if rationale else None, choices, dict(meta))


def load_records(path: str | Path, *, require_rationale: bool = False) -> list[SFTRecord]:
    """Read and validate a JSONL file of records (blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist; pass a JSONL file (see docs/sft.md)")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        record = record_from_mapping(data, where)
        if require_rationale and record.rationale is None:
            raise DataError(f"{where}: field 'rationale' is missing, and rationale targets need one on every record "
                            "(generate them with `qwenkit sft rationales`, or train with --set target=answer)")
        records.append(record)
    if not records:
        raise DataError(f"data file {str(path)!r} holds no records")
    return records


def write_records(path: str | Path, records: Sequence[SFTRecord]) -> Path:
    """Write records as JSONL in the format :func:`load_records` reads."""
    from qwenkit.core.checkpoint import atomic_write_text

    lines = []
    for r in records:
        row: dict[str, Any] = {"question": r.question, "answer": r.answer, "kind": r.kind}
        if r.rationale is not None:
            row["rationale"] = r.rationale
        if r.choices is not None:
            row["choices"] = list(r.choices)
        if r.meta:
            row["meta"] = r.meta
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(Path(path), "\n".join(lines) + "\n")
    return Path(path)


def user_message(record: SFTRecord, mode: TargetMode) -> str:
    """The user turn: the question, its lettered choices, and in rationale mode the step-by-step cue."""
    text = record.question
    if record.choices and record.kind == "choice":
        text += "\n" + " ".join(f"({chr(ord('A') + i)}) {c}" for i, c in enumerate(record.choices))
    elif record.choices:
        text += "\nOptions: " + ", ".join(record.choices)
    if mode == "rationale":
        text += "\n" + STEP_BY_STEP
    return text


def target_text(record: SFTRecord, mode: TargetMode, *, answer_template: str = ANSWER_TEMPLATE,
                rationale_template: str = RATIONALE_TEMPLATE) -> str:
    """The assistant's target: ``answer_template`` or ``rationale_template`` filled with the record."""
    if mode == "answer":
        return answer_template.format(answer=record.answer)
    if record.rationale is None:
        raise DataError(f"record {record.question[:40]!r}... has no rationale; rationale targets need one")
    return rationale_template.format(rationale=record.rationale, answer=record.answer)


def prompt_text(record: SFTRecord, mode: TargetMode, tokenizer) -> str:
    """The chat-rendered prompt ending with the assistant header (the same text evaluation generates from)."""
    from qwenkit.lm.chat import render_chat

    return render_chat([{"role": "user", "content": user_message(record, mode)}], tokenizer=tokenizer,
                       add_generation_prompt=True)


def end_of_turn_id(tokenizer) -> int:
    """``<|im_end|>`` when the vocabulary has it (Qwen, SmolLM2 ChatML), else the tokenizer's EOS."""
    vocab = tokenizer.get_vocab()
    if "<|im_end|>" in vocab:
        return vocab["<|im_end|>"]
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has neither <|im_end|> nor an EOS token to end the target with")
    return int(tokenizer.eos_token_id)


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    """``IGNORE_INDEX`` on prompt tokens, the token id on target tokens."""

    @property
    def target_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


def tokenize_example(record: SFTRecord, tokenizer, mode: TargetMode, **templates: str) -> TokenizedExample:
    """Prompt and target tokenized separately and concatenated; loss labels only on the target (and its end token)."""
    prompt = tokenizer(prompt_text(record, mode, tokenizer), add_special_tokens=False)["input_ids"]
    target = tokenizer(target_text(record, mode, **templates), add_special_tokens=False)["input_ids"]
    target = [*target, end_of_turn_id(tokenizer)]
    return TokenizedExample([*prompt, *target], [IGNORE_INDEX] * len(prompt) + target)


def tokenize_records(records: Sequence[SFTRecord], tokenizer, mode: TargetMode, max_length: int,
                     **templates: str) -> tuple[list[TokenizedExample], int]:
    """(examples, dropped): examples longer than ``max_length`` tokens are dropped (and counted), never cut."""
    examples, dropped = [], 0
    for record in records:
        example = tokenize_example(record, tokenizer, mode, **templates)
        if len(example.input_ids) > max_length:
            dropped += 1
            continue
        examples.append(example)
    if not examples:
        raise DataError(f"every example is longer than max_length={max_length} tokens; raise data.max_length")
    return examples, dropped


@dataclass(frozen=True)
class PackedRow:
    """Several examples in one row; ``segment_ids[i]`` says which example token i belongs to."""

    input_ids: list[int]
    labels: list[int]
    segment_ids: list[int]
    position_ids: list[int]


def pack_examples(examples: Sequence[TokenizedExample], max_length: int) -> list[PackedRow]:
    """Greedy in-order packing: an example goes into the current row while it fits, else starts a new row."""
    rows: list[PackedRow] = []
    ids: list[int] = []
    labels: list[int] = []
    segments: list[int] = []
    positions: list[int] = []
    for example in examples:
        if len(example.input_ids) > max_length:
            raise ValueError(f"an example of {len(example.input_ids)} tokens does not fit max_length={max_length}")
        if ids and len(ids) + len(example.input_ids) > max_length:
            rows.append(PackedRow(ids, labels, segments, positions))
            ids, labels, segments, positions = [], [], [], []
        segment = segments[-1] + 1 if segments else 0
        ids += example.input_ids
        labels += example.labels
        segments += [segment] * len(example.input_ids)
        positions += list(range(len(example.input_ids)))
    if ids:
        rows.append(PackedRow(ids, labels, segments, positions))
    return rows


def collate_examples(examples: Sequence[TokenizedExample], pad_id: int) -> dict[str, Any]:
    """A right-padded batch: ``input_ids``, ``labels`` (pad = -100), 2-D ``attention_mask``, ``position_ids``."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    positions = torch.arange(width).expand(len(examples), width).clone()
    return {"input_ids": ids, "labels": labels, "attention_mask": mask, "position_ids": positions}


def block_causal_mask(segment_ids) -> Any:
    """``[B, 1, L, L]`` boolean mask: query i sees key j iff j <= i and both belong to the same segment."""
    import torch

    length = segment_ids.shape[-1]
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=segment_ids.device))
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    return (same & causal)[:, None]


def collate_packed(rows: Sequence[PackedRow], pad_id: int) -> dict[str, Any]:
    """A batch of packed rows with the block-diagonal causal mask; padding forms its own segment (-1, no loss)."""
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    segments = torch.full((len(rows), width), -1, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for row, packed in enumerate(rows):
        n = len(packed.input_ids)
        ids[row, :n] = torch.tensor(packed.input_ids)
        labels[row, :n] = torch.tensor(packed.labels)
        segments[row, :n] = torch.tensor(packed.segment_ids)
        positions[row, :n] = torch.tensor(packed.position_ids)
        positions[row, n:] = torch.arange(width - n)
    return {"input_ids": ids, "labels": labels, "attention_mask": block_causal_mask(segments),
            "position_ids": positions}
