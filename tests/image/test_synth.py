import json
import shutil

import numpy as np
import pytest

from qwenkit.core.config import ConfigError, load_config
from qwenkit.image.render import FontError, RenderSpec, available_fonts, font_covers, render
from qwenkit.image.synth import (
    CurriculumSchedule,
    SynthConfig,
    iter_samples,
    make_spec,
    plan_samples,
    read_manifest,
    synthesize,
)

HAS_CJK = bool(available_fonts()["cjk"])
needs_cjk = pytest.mark.skipif(not HAS_CJK, reason="no CJK font (apt-get install fonts-wqy-zenhei)")


def _has_rapidocr() -> bool:
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


needs_rapidocr = pytest.mark.skipif(not _has_rapidocr(), reason="rapidocr-onnxruntime is not installed")


def test_font_coverage_detects_tofu():
    latin = available_fonts()["latin"][0]
    assert font_covers(latin, "Hello 42")
    assert not font_covers(latin, "猫")
    if HAS_CJK:
        assert font_covers(available_fonts()["cjk"][0], "猫 cat")
    with pytest.raises(FontError, match="cannot draw"):
        render(RenderSpec("pure", "猫", 32, 32, font=latin))


def test_make_spec_is_deterministic_and_index_addressed():
    a = make_spec(5, 17, "word", width=64, height=32)
    b = make_spec(5, 17, "word", width=64, height=32)
    c = make_spec(5, 18, "word", width=64, height=32)
    assert a == b and a.spec != c.spec
    assert np.array_equal(np.asarray(a.image()), np.asarray(b.image()))
    assert a.text in a.caption  # the caption states the exact text
    assert make_spec(5, 3, "non_text", width=32, height=32).text == ""


@needs_cjk
def test_plan_covers_styles_languages_and_stages():
    samples = list(plan_samples(SynthConfig(count=60, seed=1)))
    assert {s.spec.style for s in samples} == {"pure", "compositional", "layout"}
    assert {"en", "zh"} <= {s.language for s in samples}
    assert {s.stage for s in samples} == {"glyph", "word", "multi_word", "paragraph"}
    assert any("\n" in s.text for s in samples)  # paragraph blocks
    for s in samples:
        image = s.image()
        assert image.size == (128, 64) and np.asarray(image).std() > 5  # something was drawn


@needs_cjk
def test_synthesize_writes_shards_and_manifest_deterministically(tmp_path):
    config = SynthConfig(count=7, shard_size=3, seed=4, width=64, height=32)
    manifest = synthesize(config, tmp_path / "a", quiet=True)
    synthesize(config, tmp_path / "b", quiet=True)
    assert [s["count"] for s in manifest["shards"]] == [3, 3, 1]
    assert read_manifest(tmp_path / "a")["kept"] == 7
    rows_a = list(iter_samples(tmp_path / "a"))
    rows_b = list(iter_samples(tmp_path / "b"))
    assert [r for r, _ in rows_a] == [r for r, _ in rows_b]
    for (_, pa), (_, pb) in zip(rows_a, rows_b, strict=True):
        assert pa.read_bytes() == pb.read_bytes()
    # a tampered shard index is detected
    index = tmp_path / "a" / "shard-00000" / "index.jsonl"
    index.write_text(index.read_text().replace('"text"', '"txt"'))
    with pytest.raises(ValueError, match="hash"):
        list(iter_samples(tmp_path / "a"))
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["config"]["seed"] == 4


def test_curriculum_schedule_phases():
    schedule = CurriculumSchedule.default("word")
    assert schedule.stage_probabilities(0.0) == {"non_text": 1.0}
    assert set(schedule.stage_probabilities(0.35)) == {"glyph", "non_text"}
    assert schedule.stage_probabilities(0.99) == {"word": pytest.approx(0.8), "glyph": pytest.approx(0.2)}
    assert schedule.stage_probabilities(1.0) == schedule.stage_probabilities(0.99)
    rng = np.random.default_rng(0)
    early = [schedule.sample_stage(0.05, rng) for _ in range(50)]
    late = [schedule.sample_stage(0.9, rng) for _ in range(400)]
    assert set(early) == {"non_text"}
    assert 0.7 < late.count("word") / 400 < 0.9
    assert CurriculumSchedule.constant("word").stage_probabilities(0.0) == {"word": 1.0}
    paragraph = CurriculumSchedule.default("paragraph")
    firsts = [next(iter(paragraph.stage_probabilities(p))) for p in (0.0, 0.2, 0.35, 0.5, 0.9)]
    assert firsts == ["non_text", "glyph", "word", "multi_word", "paragraph"]


def test_curriculum_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown stage"):
        load_config(CurriculumSchedule, {"phases": [{"until": 1.0, "mix": {"sentences": 1.0}}]})
    with pytest.raises(ConfigError, match="end at 1.0"):
        load_config(CurriculumSchedule, {"phases": [{"until": 0.5, "mix": {"word": 1.0}}]})
    with pytest.raises(ValueError, match="progress"):
        CurriculumSchedule.constant("word").stage_probabilities(1.5)


@needs_rapidocr
@needs_cjk
def test_rendered_samples_are_legible_to_ocr(tmp_path):
    from qwenkit.image.ocr import text_rendering_scores

    en = [make_spec(0, i, "word", width=128, height=48, language="en") for i in range(6)]
    zh = [make_spec(0, i, "word", width=128, height=48, language="zh") for i in range(6)]
    for group in (en, zh):
        scores = text_rendering_scores([s.image() for s in group], [s.text for s in group])
        assert scores["word_accuracy"] >= 5 / 6, scores
    # the OCR filter drops what it cannot read back: three words squeezed into 24x8 px cannot be read
    config = SynthConfig(count=6, seed=2, width=24, height=8, stages=["multi_word"], ocr_filter=True,
                         languages=["en"], styles=["pure"])
    manifest = synthesize(config, tmp_path / "f", quiet=True)
    assert manifest["dropped_by_ocr"] >= 1 and manifest["kept"] + manifest["dropped_by_ocr"] == 6
    shutil.rmtree(tmp_path / "f")
