"""Loaders for the public datasets' usual local layouts, into :class:`~qwenkit.sft.data.SFTRecord` lists.

Nothing is downloaded: point a loader at the file you have. Layouts (as the datasets ship them):

- ``gsm8k``: JSONL ``{"question", "answer"}`` where the answer is the worked solution ending ``#### 72``; the
  solution (calculator annotations ``<<48/2=24>>`` removed) becomes the rationale.
- ``svamp``: a JSON list (or JSONL) of ``{"Body", "Question", "Equation", "Answer"}``; the rationale is
  ``"{Equation} = {Answer}."``.
- ``arc`` and ``csqa``: JSONL ``{"question": {"stem", "choices": [{"label", "text"}]}, "answerKey"}``; numeric choice
  labels ("1".."4", as in some ARC rows) map to letters.
- ``sst2``: GLUE's TSV (``sentence<TAB>label``, header line) or a CSV/JSONL with ``sentence`` and ``label``;
  label 1 is ``positive``, 0 ``negative``.

Errors name the file, the line (or record) and the field.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from qwenkit.core.errors import DataError
from qwenkit.sft.data import SFTRecord, record_from_mapping
from qwenkit.sft.metrics import format_number, parse_number

_CALCULATOR = re.compile(r"<<[^>]*>>")


def _open(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    return path


def _json_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, row) of a JSONL file, or of a JSON file holding a list."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        for index, row in enumerate(rows):
            yield f"{path} record {index}", row
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"{path} line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None


def _field(row: Any, name: str, where: str) -> Any:
    if not isinstance(row, dict) or name not in row:
        raise DataError(f"{where}: field {name!r} is missing")
    return row[name]


def load_gsm8k(path: str | Path) -> list[SFTRecord]:
    records = []
    for where, row in _json_rows(_open(path)):
        solution = str(_field(row, "answer", where))
        if "####" not in solution:
            raise DataError(f"{where}: field 'answer' has no '#### <number>' final answer")
        worked, final = solution.rsplit("####", 1)
        rationale = " ".join(_CALCULATOR.sub("", worked).split())
        records.append(record_from_mapping(
            {"question": _field(row, "question", where), "answer": final.strip().replace(",", ""),
             "rationale": rationale or None, "kind": "number", "meta": {"source": "gsm8k"}}, where))
    return records


def load_svamp(path: str | Path) -> list[SFTRecord]:
    records = []
    for where, row in _json_rows(_open(path)):
        body, question = str(_field(row, "Body", where)).strip(), str(_field(row, "Question", where)).strip()
        value = parse_number(str(_field(row, "Answer", where)))
        if value is None:
            raise DataError(f"{where}: field 'Answer' is not a number")
        answer = format_number(value)
        equation = row.get("Equation")
        rationale = f"{' '.join(str(equation).split())} = {answer}." if equation else None
        records.append(record_from_mapping(
            {"question": f"{body} {question}".strip(), "answer": answer, "rationale": rationale, "kind": "number",
             "meta": {"source": "svamp"}}, where))
    return records


def _load_multiple_choice(path: str | Path, source: str) -> list[SFTRecord]:
    records = []
    for where, row in _json_rows(_open(path)):
        question = _field(row, "question", where)
        stem = _field(question, "stem", f"{where} (question)")
        choices = _field(question, "choices", f"{where} (question)")
        if not isinstance(choices, list) or len(choices) < 2:
            raise DataError(f"{where}: field 'question.choices' must list at least two choices")
        labels = [str(_field(c, "label", f"{where} (question.choices)")) for c in choices]
        texts = [str(_field(c, "text", f"{where} (question.choices)")) for c in choices]
        key = str(_field(row, "answerKey", where)).strip()
        if key not in labels:
            raise DataError(f"{where}: field 'answerKey' is {key!r}, not one of the choice labels {labels}")
        records.append(record_from_mapping(
            {"question": stem, "answer": chr(ord("A") + labels.index(key)), "choices": texts, "kind": "choice",
             "meta": {"source": source, "id": row.get("id")}}, where))
    return records


def load_arc(path: str | Path) -> list[SFTRecord]:
    return _load_multiple_choice(path, "arc")


def load_csqa(path: str | Path) -> list[SFTRecord]:
    return _load_multiple_choice(path, "csqa")


SST2_LABELS = {"1": "positive", "0": "negative", "positive": "positive", "negative": "negative"}


def load_sst2(path: str | Path) -> list[SFTRecord]:
    path = _open(path)
    if path.suffix == ".jsonl" or path.suffix == ".json":
        rows = list(_json_rows(path))
    else:
        text = path.read_text(encoding="utf-8")
        delimiter = "\t" if path.suffix == ".tsv" or "\t" in text.splitlines()[0] else ","
        reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
        rows = [(f"{path} line {i}", row) for i, row in enumerate(reader, start=2)]
    records = []
    for where, row in rows:
        label = str(_field(row, "label", where)).strip().lower()
        if label not in SST2_LABELS:
            raise DataError(f"{where}: field 'label' is {label!r}; SST-2 labels are 0/1 (or negative/positive)")
        records.append(record_from_mapping(
            {"question": str(_field(row, "sentence", where)).strip(), "answer": SST2_LABELS[label],
             "choices": ["positive", "negative"], "kind": "label", "meta": {"source": "sst2"}}, where))
    return records


LOADERS: dict[str, Callable[[str | Path], list[SFTRecord]]] = {
    "gsm8k": load_gsm8k, "svamp": load_svamp, "arc": load_arc, "csqa": load_csqa, "sst2": load_sst2,
}


def load_dataset_file(path: str | Path, layout: str) -> list[SFTRecord]:
    """Records of a local file in one of the :data:`LOADERS` layouts (``qwenkit`` for our own JSONL)."""
    if layout == "qwenkit":
        from qwenkit.sft.data import load_records

        return load_records(path)
    if layout not in LOADERS:
        raise DataError(f"unknown data layout {layout!r}; choose one of {['qwenkit', *LOADERS]}")
    records = LOADERS[layout](path)
    if not records:
        raise DataError(f"data file {str(path)!r} holds no records")
    return records
