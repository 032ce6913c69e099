"""Prompt files of CVTG-2K, LongText-Bench and ChineseWord from local paths, and their scoring protocols.

Formats read (nothing is downloaded):

- ``cvtg-2k``: TextCrafter's ``CVTG/{n}.json`` / ``CVTG-Style/{n}.json`` (``n`` = number of text regions), each
  ``{"data_list": [{"index", "prompt", "sentence_list", "carrier_list"?}, ...]}``; a file or a folder of them.
  Group: ``{n} regions`` (from the file name).
- ``longtext-bench``: X-Omni's ``textbench`` prompt files, JSON lines (or one JSON list) of
  ``{"prompt_id", "prompt", "text"}`` (``text`` a string or a list of strings); a file or a folder of ``*.jsonl``.
  Group: ``zh`` when the target holds CJK ideographs (scored per character), else ``en`` (scored per word).
- ``chineseword``: a folder with ``level1.txt``, ``level2.txt``, ``level3.txt`` (the three levels of the Table of
  General Standard Chinese Characters), one character (or word) per line; the prompt is ``template`` filled with
  it. Group: ``level1`` ... ``level3``.

Each benchmark has a default :class:`~qwenkit.image.text_metrics.TextNormalization` (ours, documented in
``docs/image.md``); every option can be overridden.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from qwenkit.core.errors import DataError
from qwenkit.image.text_metrics import TextNormalization, bag_recall, cvtg_ned, cvtg_word_accuracy, has_cjk

CHINESEWORD_TEMPLATE = '一张白色卡片，上面用黑色楷体写着一个汉字“{}”'


class BenchmarkFormatError(DataError):
    """A prompt file is not in the benchmark's format; the message names the file, the record and the field."""


@dataclass(frozen=True)
class BenchItem:
    """One prompt: ``targets`` are the texts the image must show (CVTG-2K: one per region)."""

    id: str
    prompt: str
    targets: tuple[str, ...]
    group: str


@dataclass(frozen=True)
class TextBenchmark:
    name: str
    load: Callable[[Path], list[BenchItem]]
    normalization: TextNormalization
    score: Callable[[str, BenchItem, TextNormalization], dict[str, float]]
    multiline: bool = True
    metrics: tuple[str, ...] = field(default=())


def _read_json(path: Path):
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise BenchmarkFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def _files(path: Path, pattern: str) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass the benchmark's prompt file or folder")
    files = sorted(path.rglob(pattern)) if path.is_dir() else [path]
    if not files:
        raise BenchmarkFormatError(f"{path} holds no {pattern} prompt files")
    return files


def _text_list(value, where: str) -> tuple[str, ...]:
    texts = (value,) if isinstance(value, str) else value
    if not isinstance(texts, list | tuple) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise BenchmarkFormatError(f"{where}: expected a non-empty string or list of non-empty strings, got {value!r}")
    return tuple(texts)


def load_cvtg2k(path: str | Path) -> list[BenchItem]:
    """CVTG-2K items from ``{n}.json`` files (``data_list`` of ``index``/``prompt``/``sentence_list``)."""
    items = []
    for file in _files(Path(path), "*.json"):
        data = _read_json(file)
        records = data.get("data_list") if isinstance(data, dict) else None
        if not isinstance(records, list):
            raise BenchmarkFormatError(f"{file}: expected {{\"data_list\": [...]}} (TextCrafter's CVTG-2K format)")
        group = f"{file.stem} regions" if file.stem.isdigit() else file.stem
        prefix = f"{file.parent.name}/{file.stem}" if Path(path).is_dir() else file.stem
        for i, record in enumerate(records):
            where = f"{file}: data_list[{i}]"
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise BenchmarkFormatError(f"{where}: missing the string field 'prompt'")
            targets = _text_list(record.get("sentence_list"), f"{where}.sentence_list")
            items.append(BenchItem(f"{prefix}-{record.get('index', i)}", record["prompt"], targets, group))
    return items


def load_longtext(path: str | Path) -> list[BenchItem]:
    """LongText-Bench items from JSON-lines (or JSON-list) files of ``prompt_id``/``prompt``/``text``."""
    items = []
    for file in _files(Path(path), "*.jsonl"):
        content = file.read_text("utf-8")
        if content.lstrip().startswith("["):
            records = [(i + 1, r) for i, r in enumerate(_read_json(file))]
        else:
            records = []
            for line_no, line in enumerate(content.splitlines(), 1):
                if line.strip():
                    try:
                        records.append((line_no, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise BenchmarkFormatError(f"{file}: line {line_no} is not JSON ({exc.msg})") from exc
        for line_no, record in records:
            where = f"{file}: record {line_no}"
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise BenchmarkFormatError(f"{where}: missing the string field 'prompt'")
            targets = _text_list(record.get("text"), f"{where}.text")
            group = "zh" if has_cjk("".join(targets)) else "en"
            items.append(BenchItem(str(record.get("prompt_id", f"{file.stem}-{line_no}")), record["prompt"],
                                   targets, group))
    return items


def load_chineseword(path: str | Path, template: str = CHINESEWORD_TEMPLATE) -> list[BenchItem]:
    """ChineseWord items from ``level{1,2,3}.txt`` (one character per line), prompts from ``template``."""
    if "{}" not in template:
        raise ValueError(f"template {template!r} must contain '{{}}' where the character goes")
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a folder; pass the folder holding level1.txt ... level3.txt")
    files = sorted(directory.glob("level*.txt"))
    if not files:
        raise BenchmarkFormatError(f"{directory} holds no level*.txt files (one character per line)")
    items = []
    for file in files:
        for line_no, line in enumerate(file.read_text("utf-8").splitlines(), 1):
            text = line.strip()
            if text:
                items.append(BenchItem(f"{file.stem}-{line_no}", template.format(text), (text,), file.stem))
    return items


def _score_cvtg(read: str, item: BenchItem, normalization: TextNormalization) -> dict[str, float]:
    return {"word_accuracy": cvtg_word_accuracy(read, item.targets, normalization),
            "ned": cvtg_ned(read, item.targets, normalization)}


def _score_longtext(read: str, item: BenchItem, normalization: TextNormalization) -> dict[str, float]:
    unit = "char" if item.group == "zh" else "word"
    return {"text_recall": bag_recall(read, " ".join(item.targets), normalization, unit)}


def _score_chineseword(read: str, item: BenchItem, normalization: TextNormalization) -> dict[str, float]:
    return {"char_accuracy": bag_recall(read, item.targets[0], normalization, "char")}


BENCHMARKS: dict[str, TextBenchmark] = {
    "cvtg-2k": TextBenchmark("cvtg-2k", load_cvtg2k, TextNormalization(punctuation=True), _score_cvtg,
                             metrics=("word_accuracy", "ned")),
    "longtext-bench": TextBenchmark("longtext-bench", load_longtext, TextNormalization(punctuation=True),
                                    _score_longtext, metrics=("text_recall",)),
    "chineseword": TextBenchmark("chineseword", load_chineseword,
                                 TextNormalization(punctuation=True, simplified=True), _score_chineseword,
                                 multiline=False, metrics=("char_accuracy",)),
}


def get_benchmark(name: str) -> TextBenchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; use one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]


def normalization_for(benchmark: TextBenchmark, **overrides) -> TextNormalization:
    """The benchmark's default normalisation with the given fields replaced (``None`` values keep the default)."""
    return replace(benchmark.normalization, **{k: v for k, v in overrides.items() if v is not None})


def score_reads(benchmark: TextBenchmark, items: Sequence[BenchItem], reads: Sequence[str],
                normalization: TextNormalization | None = None) -> dict:
    """Per-item rows and the means: ``overall`` and per ``group`` (regions / language / level), each with ``n``."""
    if len(items) != len(reads):
        raise ValueError(f"{len(reads)} reads for {len(items)} items; pass one OCR read per item")
    if not items:
        raise ValueError("no items to score")
    normalization = normalization or benchmark.normalization
    rows = [{"id": it.id, "group": it.group, "read": r, "targets": list(it.targets),
             **benchmark.score(r, it, normalization)} for it, r in zip(items, reads, strict=True)]

    def summary(selected: list[dict]) -> dict:
        return {"n": len(selected), **{m: float(np.mean([r[m] for r in selected])) for m in benchmark.metrics}}

    groups = sorted({r["group"] for r in rows})
    return {"benchmark": benchmark.name, "normalization": asdict(normalization),
            "overall": summary(rows), "groups": {g: summary([r for r in rows if r["group"] == g]) for g in groups},
            "rows": rows}


def run_text_benchmark(benchmark: TextBenchmark, items: Sequence[BenchItem], out: str | Path, *, kit=None,
                       images: Sequence | None = None, reader="rapidocr", steps: int = 20, cfg_scale: float = 3.0,
                       seed: int = 0, normalization: TextNormalization | None = None) -> dict:
    """Generate one image per prompt with ``kit`` (or take ``images``), OCR them, score, and write
    ``scores.json``, ``images/{id}.png`` and ``report.md``/``report.html`` under ``out``."""
    from qwenkit.core.report import Report
    from qwenkit.image.ocr import get_reader

    if (kit is None) == (images is None):
        raise ValueError("pass exactly one of kit= (generate the prompts) or images= (score given images)")
    if kit is not None:
        from qwenkit.image.sample import generate

        images = generate(kit, [it.prompt for it in items], steps=steps, cfg_scale=cfg_scale, seed=seed)
    if len(images) != len(items):
        raise ValueError(f"{len(images)} images for {len(items)} prompts")
    ocr = get_reader(reader) if isinstance(reader, str) else reader
    reads = [ocr.read(image, multiline=benchmark.multiline) for image in images]
    result = score_reads(benchmark, items, reads, normalization)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for item, image in zip(items, images, strict=True):
        image.save(out / "images" / f"{item.id.replace('/', '_')}.png")
    (out / "scores.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report = Report(f"qwenkit image bench-text: {benchmark.name}")
    reader_name = getattr(ocr, "name", type(ocr).__name__)
    report.text(f"{len(items)} prompts, OCR by `{reader_name}`, normalisation `{result['normalization']}`. "
                f"Metrics: {', '.join(benchmark.metrics)} (definitions and sources in docs/image.md); the reader "
                "differs from the benchmark's own, so compare models under this reader only.")
    report.table([{"group": "overall", **result["overall"]}]
                 + [{"group": g, **s} for g, s in result["groups"].items()])
    report.heading("Reads")
    report.table([{"id": r["id"], "target": " | ".join(r["targets"]), "OCR read": r["read"],
                   **{m: r[m] for m in benchmark.metrics}} for r in result["rows"]])
    report.write(out)
    return result
