"""Text-rendering data synthesis and the text curriculum of Qwen-Image (arXiv 2508.02324, "Data Synthesis" and
"Training Strategy": non-text -> simple text -> complex text -> paragraph-level).

- :class:`CurriculumSchedule`: which *stage* (``non_text``, ``glyph``, ``word``, ``multi_word``, ``paragraph``) to draw
  at a given point of training, as a piecewise mixture over training progress.
- :func:`make_spec`: one sample's :class:`~qwenkit.image.render.RenderSpec` and caption, a pure function of
  ``(seed, index, stage, style)``; so a data set is reproducible sample by sample, whatever the shard size.
- :func:`synthesize`: render N samples (optionally OCR-filtered) and write them as sharded PNG folders with a
  ``manifest.json``; :func:`read_manifest` / :func:`iter_samples` read them back.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from qwenkit.core.config import StrictModel
from qwenkit.image.render import COLORS, SHAPES, RenderSpec, font_covers, fonts_for, render

STAGES = ("non_text", "glyph", "word", "multi_word", "paragraph")

LATIN_GLYPHS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"  # no I/O: they collide with 1/0 under OCR
EN_WORDS = (
    "cat", "dog", "sun", "map", "box", "red", "sky", "tea", "car", "pen", "cup", "art", "bus", "key", "ice", "owl",
    "fox", "jam", "net", "top", "open", "shop", "sale", "menu", "exit", "park", "book", "cafe", "rain", "snow",
    "time", "city", "road", "home", "milk", "gold", "fish", "star", "tree", "wind", "hello", "world", "qwen",
    "image", "train", "model", "river", "music", "light", "north", "south", "green", "paper", "train", "smile",
)
ZH_GLYPHS = "人大山水火木日月口中天上下小文字书花鱼鸟马车门田"
ZH_WORDS = (
    "通义", "千问", "图像", "文字", "你好", "世界", "北京", "上海", "山水", "花园", "书店",
    "出口", "入口", "咖啡", "音乐", "火车", "天气", "学生", "老师", "中文", "电影", "月亮", "太阳", "大海", "小猫",
)
CJK_ALPHABET = "".join(dict.fromkeys(ZH_GLYPHS + "".join(ZH_WORDS)))
"""Every CJK character the built-in corpora use (pass it to the text encoder's tokenizer alphabet)."""


class CurriculumPhase(StrictModel):
    until: float = Field(..., gt=0, le=1, description="this phase lasts until this fraction of training")
    mix: dict[str, float] = Field(..., description="stage -> sampling weight within the phase")

    @field_validator("mix")
    @classmethod
    def _known_stages(cls, mix: dict[str, float]) -> dict[str, float]:
        unknown = [s for s in mix if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
        if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {mix}")
        return mix


class CurriculumSchedule(StrictModel):
    """A piecewise mixture over stages: phase k is used for progress in ``[until_{k-1}, until_k)``.

    ``stage_probabilities(p)`` is the normalised ``mix`` of the phase containing progress ``p`` (0 <= p <= 1);
    the last phase must reach ``until=1``. ``constant(stage)`` is the no-curriculum baseline.
    """

    phases: list[CurriculumPhase]

    @model_validator(mode="after")
    def _ordered(self) -> CurriculumSchedule:
        ends = [p.until for p in self.phases]
        if not ends or ends != sorted(ends) or len(set(ends)) != len(ends) or ends[-1] != 1.0:
            raise ValueError(f"phase 'until' values must strictly increase and end at 1.0, got {ends}")
        return self

    @classmethod
    def constant(cls, mix: dict[str, float] | str) -> CurriculumSchedule:
        return cls(phases=[CurriculumPhase(until=1.0, mix={mix: 1.0} if isinstance(mix, str) else mix)])

    @classmethod
    def default(cls, target: str = "word") -> CurriculumSchedule:
        """non-text -> glyphs -> ... -> ``target`` (the paper's order), spending the last 40% mostly on ``target``."""
        order = list(STAGES[: STAGES.index(target) + 1])
        if len(order) == 1:
            return cls.constant(target)
        phases, start, span = [], 0.0, 0.6 / (len(order) - 1)
        for i, stage in enumerate(order[:-1]):
            start += span
            mix = {stage: 1.0} if i == 0 else {stage: 0.7, order[i - 1]: 0.3}
            phases.append(CurriculumPhase(until=round(start, 6), mix=mix))
        phases.append(CurriculumPhase(until=1.0, mix={target: 0.8, order[-2]: 0.2}))
        return cls(phases=phases)

    def stage_probabilities(self, progress: float) -> dict[str, float]:
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be in [0, 1], got {progress}")
        phase = next((p for p in self.phases if progress < p.until), self.phases[-1])
        total = sum(phase.mix.values())
        return {s: w / total for s, w in phase.mix.items() if w > 0}

    def sample_stage(self, progress: float, rng: np.random.Generator) -> str:
        probs = self.stage_probabilities(progress)
        stages = list(probs)
        return stages[int(rng.choice(len(stages), p=np.array([probs[s] for s in stages])))]


class SynthConfig(StrictModel):
    """What ``qwenkit image synth`` writes."""

    count: int = Field(64, ge=1)
    width: int = Field(128, ge=8)
    height: int = Field(64, ge=8)
    languages: list[Literal["en", "zh"]] = ["en", "zh"]
    styles: list[Literal["pure", "compositional", "layout"]] = ["pure", "compositional", "layout"]
    stages: list[str] = ["glyph", "word", "multi_word", "paragraph"]
    shard_size: int = Field(256, ge=1)
    seed: int = 0
    max_rotation_deg: float = Field(8.0, ge=0, le=45)
    ocr_filter: bool = Field(False, description="keep only samples whose OCR read-back matches (needs rapidocr)")
    ocr_min_ned: float = Field(1.0, ge=0, le=1, description="OCR filter: minimum 1 - edit distance / length")

    @field_validator("stages")
    @classmethod
    def _known(cls, stages: list[str]) -> list[str]:
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
        return stages


@dataclass(frozen=True)
class Sample:
    """One synthetic example: what to draw, its caption (which states the exact text) and its curriculum stage."""

    index: int
    stage: str
    language: str
    spec: RenderSpec
    caption: str

    @property
    def text(self) -> str:
        return self.spec.text

    def image(self):
        return render(self.spec)


def sample_text(stage: str, language: str, rng: np.random.Generator, *, glyphs: str | None = None,
                words: Sequence[str] | None = None) -> str:
    """The text of one sample at ``stage``: '' (non-text), one glyph, one word, 2-3 words, or 2-3 lines of words.

    Mixed EN/ZH appears in ``multi_word`` and ``paragraph`` when ``language == "mixed"``.
    """
    if stage == "non_text":
        return ""
    en_or_zh = {"en": (LATIN_GLYPHS, EN_WORDS), "zh": (ZH_GLYPHS, ZH_WORDS)}
    if language == "mixed":
        pools = [EN_WORDS, ZH_WORDS]
        pick_glyphs, pick_words = en_or_zh["en"]
    else:
        if language not in en_or_zh:
            raise ValueError(f"unknown language {language!r}; use en, zh or mixed")
        pick_glyphs, pick_words = en_or_zh[language]
        pools = [words or pick_words]
    pick_glyphs = glyphs or pick_glyphs
    pick_words = words or pick_words

    def word() -> str:
        pool = pools[int(rng.integers(len(pools)))]
        text = pool[int(rng.integers(len(pool)))]
        return text.upper() if rng.random() < 0.5 and text.isascii() else text

    if stage == "glyph":
        return pick_glyphs[int(rng.integers(len(pick_glyphs)))]
    if stage == "word":
        text = pick_words[int(rng.integers(len(pick_words)))]
        return text.upper() if text.isascii() and rng.random() < 0.5 else text
    sep = "" if language == "zh" else " "
    if stage == "multi_word":
        return sep.join(word() for _ in range(int(rng.integers(2, 4))))
    if stage == "paragraph":
        return "\n".join(sep.join(word() for _ in range(2)) for _ in range(int(rng.integers(2, 4))))
    raise ValueError(f"unknown stage {stage!r}; stages are {list(STAGES)}")


def _contrasting_colors(rng: np.random.Generator) -> tuple[str, str]:
    names = list(COLORS)
    while True:
        fg, bg = (names[int(i)] for i in rng.choice(len(names), 2, replace=False))
        if abs(_luma(fg) - _luma(bg)) > 80:
            return fg, bg


def _luma(name: str) -> float:
    r, g, b = COLORS[name]
    return 0.299 * r + 0.587 * g + 0.114 * b


def make_caption(spec: RenderSpec, stage: str) -> str:
    """A short caption that states the exact text (quoted) and the colours, as Qwen-Image's captions do."""
    if stage == "non_text":
        return f"{spec.fg} {spec.shape} on {spec.bg}"
    where = {"pure": "", "compositional": f"{spec.board} sign ", "layout": "slide "}[spec.style]
    return f'{where}"{spec.text}" {spec.fg} on {spec.bg if spec.style != "compositional" else spec.board}'


def make_spec(
    seed: int,
    index: int,
    stage: str,
    *,
    width: int,
    height: int,
    language: str = "en",
    style: str = "pure",
    max_rotation_deg: float = 0.0,
    jitter: float = 0.5,
    glyphs: str | None = None,
    words: Sequence[str] | None = None,
    fg: str | None = None,
    bg: str | None = None,
    texture: str | None = None,
    font: str | None = None,
) -> Sample:
    """Sample ``index`` of data set ``seed``: a deterministic function of its arguments (its own RNG stream).
    ``fg``/``bg`` fix the colours; ``font`` keeps only the font files whose name contains it."""
    rng = np.random.default_rng([seed, index, STAGES.index(stage)])
    text = sample_text(stage, language, rng, glyphs=glyphs, words=words)
    fg_pick, bg_pick = _contrasting_colors(rng)
    fg, bg = fg or fg_pick, bg or bg_pick
    offset = (float(rng.uniform(-jitter, jitter)), float(rng.uniform(-jitter, jitter)))
    if stage == "non_text":
        spec = RenderSpec("none", "", width, height, fg=fg, bg=bg, shape=SHAPES[int(rng.integers(len(SHAPES)))],
                          offset=offset)
        return Sample(index, stage, language, spec, make_caption(spec, stage))
    fonts = [f for f in fonts_for(text) if font_covers(f, text) and (font is None or font in Path(f).name)]
    if not fonts:
        raise ValueError(f"no installed font covers {text!r}" + (f" with {font!r} in its name" if font else ""))
    drawn_texture = ("plain", "noise", "gradient")[int(rng.integers(3))]
    texture = texture or ("plain" if style != "pure" else drawn_texture)
    board = "white" if _luma(fg) < 128 else "black"
    spec = RenderSpec(
        style=style,
        text=text,
        width=width,
        height=height,
        font=fonts[int(rng.integers(len(fonts)))],
        fg=fg,
        bg=bg if style != "layout" else ("white" if _luma(fg) < 128 else "black"),
        rotation_deg=float(rng.uniform(-max_rotation_deg, max_rotation_deg)) if max_rotation_deg else 0.0,
        texture=texture,
        board=board if style == "compositional" else ("gray" if _luma(fg) < 100 or _luma(fg) > 200 else "white"),
        offset=offset,
        noise_seed=int(rng.integers(2**31)),
    )
    return Sample(index, stage, language, spec, make_caption(spec, stage))


def plan_samples(config: SynthConfig) -> Iterator[Sample]:
    """The specs of ``config.count`` samples, cycling deterministically over stages, languages and styles."""
    for index in range(config.count):
        rng = np.random.default_rng([config.seed, index, 99])
        stage = config.stages[int(rng.integers(len(config.stages)))]
        language = config.languages[int(rng.integers(len(config.languages)))]
        if len(config.languages) > 1 and stage in ("multi_word", "paragraph") and rng.random() < 0.3:
            language = "mixed"
        style = config.styles[int(rng.integers(len(config.styles)))]
        if stage == "paragraph" and "layout" in config.styles:
            style = "layout"
        yield make_spec(config.seed, index, stage, width=config.width, height=config.height, language=language,
                        style=style, max_rotation_deg=config.max_rotation_deg)


def synthesize(config: SynthConfig, out: str | Path, *, reader=None, quiet: bool | None = None) -> dict:
    """Render ``config.count`` samples into ``out/shard-NNNNN/`` (PNG files + ``index.jsonl``) and ``manifest.json``.

    With ``config.ocr_filter`` each text sample is read back by ``reader`` (default RapidOCR) and dropped when its
    NED to the target is below ``config.ocr_min_ned``; the manifest records how many were kept and dropped.
    """
    from qwenkit.core.checkpoint import atomic_write_text
    from qwenkit.core.progress import track
    from qwenkit.image.metrics import ned

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if config.ocr_filter and reader is None:
        from qwenkit.image.ocr import RapidOCRReader

        reader = RapidOCRReader()
    shards: list[dict] = []
    rows: list[dict] = []
    dropped = 0

    def flush() -> None:
        if not rows:
            return
        name = f"shard-{len(shards):05d}"
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        atomic_write_text(out / name / "index.jsonl", text)
        shards.append({"name": name, "count": len(rows), "sha256": hashlib.sha256(text.encode()).hexdigest()})
        rows.clear()

    for sample in track(plan_samples(config), "synthesizing", total=config.count, quiet=quiet):
        image = sample.image()
        if config.ocr_filter and sample.text:
            read = reader.read(image, multiline="\n" in sample.text)
            if ned(read, sample.text) < config.ocr_min_ned:
                dropped += 1
                continue
        shard_dir = out / f"shard-{len(shards):05d}"
        shard_dir.mkdir(exist_ok=True)
        file = f"{sample.index:06d}.png"
        image.save(shard_dir / file)
        spec = asdict(sample.spec)
        spec.pop("extra")
        rows.append({"file": file, "index": sample.index, "stage": sample.stage, "language": sample.language,
                     "text": sample.text, "caption": sample.caption, "spec": spec})
        if len(rows) == config.shard_size:
            flush()
    flush()
    manifest = {
        "format": "qwenkit.image.synth/1",
        "config": config.model_dump(mode="json"),
        "kept": sum(s["count"] for s in shards),
        "dropped_by_ocr": dropped,
        "shards": shards,
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    manifest_path = path / "manifest.json" if path.is_dir() else path
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no manifest.json in {path}; write one with `qwenkit image synth --out {path}`")
    return json.loads(manifest_path.read_text(encoding="utf-8"))


def iter_samples(path: str | Path) -> Iterator[tuple[dict, Path]]:
    """(index row, PNG path) of every sample of a synthesised data set, shard by shard; verifies shard hashes."""
    root = Path(path)
    for shard in read_manifest(root)["shards"]:
        text = (root / shard["name"] / "index.jsonl").read_text(encoding="utf-8")
        if hashlib.sha256(text.encode()).hexdigest() != shard["sha256"]:
            raise ValueError(f"shard {shard['name']} of {root} does not match its manifest hash; re-run synth")
        for line in text.splitlines():
            row = json.loads(line)
            yield row, root / shard["name"] / row["file"]


def default_alphabet() -> str:
    """Characters a text encoder's tokenizer needs for every built-in caption (ASCII printable + corpus CJK)."""
    return "".join(dict.fromkeys(string.printable.replace("\x0b", "").replace("\x0c", "").replace("\r", "")
                                 + CJK_ALPHABET))
