"""Evaluation: OCR-scored text rendering (of a kit, a folder, or any diffusers pipeline) and editing
consistency vs instruction success.

Editing is scored on synthetic pairs whose ground truth is rendered exactly (:func:`qwenkit.image.data.make_edit_pair`):
``psnr_to_target`` (whole image vs the ground truth), ``outside_psnr``/``outside_changed`` (how much the edit leaked
outside the region the ground-truth edit changes, :func:`qwenkit.image.metrics.edit_consistency`), and
``ocr_success`` (the OCR of the edited image equals the expected text: the instruction was followed for word
edits, and the text survived for colour/position edits).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qwenkit.core.errors import DataError
from qwenkit.image.metrics import edit_consistency, edit_region_mask, masked_psnr, word_match
from qwenkit.image.ocr import text_rendering_scores


def t2i_eval_set(config, n: int, seed: int = 10_007) -> list:
    """``n`` held-out T2I samples at the run's target stage (seed disjoint from training's)."""
    from qwenkit.image.synth import make_spec

    return [make_spec(seed, i, config.target_stage, width=config.width, height=config.height,
                      language=config.language, style=config.style, glyphs=config.glyphs, texture=config.texture,
                      fg=config.fg, bg=config.bg, font=config.font)
            for i in range(n)]


def evaluate_t2i(kit, n: int = 64, *, steps: int = 20, cfg_scale: float = 3.0, seed: int = 10_007,
                 reader="rapidocr") -> tuple[dict, list]:
    """Generate the held-out captions and OCR-score them; returns (scores, images)."""
    from qwenkit.image.sample import generate

    samples = t2i_eval_set(kit.config, n, seed)
    images = generate(kit, [s.caption for s in samples], steps=steps, cfg_scale=cfg_scale, seed=seed)
    scores = text_rendering_scores(images, [s.text for s in samples], reader=reader)
    return scores, images


def edit_eval_set(config, n: int, seed: int = 20_011) -> list:
    from qwenkit.image.data import make_edit_pair

    return [make_edit_pair(seed, i, width=config.width, height=config.height, stage=config.edit_stage,
                           language=config.language if config.language != "mixed" else "en",
                           kinds=config.edit_kinds, glyphs=config.glyphs, texture=config.texture) for i in range(n)]


def score_edits(sources: Sequence, edited: Sequence, targets: Sequence, expected_texts: Sequence[str],
                reader="rapidocr") -> dict:
    """Mean consistency and success of edited images against their sources and ground-truth targets."""
    rows = []
    ocr = text_rendering_scores(list(edited), list(expected_texts), reader=reader, return_reads=True)
    for source, out, target, read, text in zip(sources, edited, targets, ocr["reads"], expected_texts, strict=True):
        region = edit_region_mask(source, target)
        full = np.ones(region.shape, dtype=bool)
        row = {"psnr_to_target": masked_psnr(out, target, full), "ocr_success": float(word_match(read, text))}
        if (~region).any():
            consistency = edit_consistency(source, out, region)
            row.update(outside_psnr=consistency["outside_psnr"], outside_changed=consistency["outside_changed"])
        rows.append(row)
    keys = sorted({k for r in rows for k in r})
    return {k: float(np.mean([min(r[k], 99.0) for r in rows if k in r])) for k in keys} | {"n": len(rows)}


def evaluate_edit(kit, n: int = 32, *, steps: int = 20, cfg_scale: float = 2.0, seed: int = 20_011,
                  reader="rapidocr") -> tuple[dict, list]:
    """Edit held-out synthetic pairs with the kit; returns (scores, [source, edited, target] image triples)."""
    from qwenkit.image.sample import generate

    pairs = edit_eval_set(kit.config, n, seed)
    sources = [p.source.image() for p in pairs]
    targets = [p.target.image() for p in pairs]
    edited = generate(kit, [p.instruction for p in pairs], steps=steps, cfg_scale=cfg_scale, seed=seed,
                      source_images=sources)
    scores = score_edits(sources, edited, targets, [p.expected_text for p in pairs], reader=reader)
    return scores, list(zip(sources, edited, targets, strict=True))


def read_text_folder(folder: str | Path) -> tuple[list, list[str]]:
    """Images and target texts of a folder: a ``qwenkit image synth`` output (``manifest.json``), or any folder with
    a ``texts.jsonl`` of ``{"file": ..., "text": ...}`` lines."""
    from PIL import Image

    from qwenkit.image.synth import iter_samples

    folder = Path(folder)
    if (folder / "manifest.json").is_file():
        pairs = [(path, row["text"]) for row, path in iter_samples(folder)]
    elif (folder / "texts.jsonl").is_file():
        rows = [json.loads(line) for line in (folder / "texts.jsonl").read_text("utf-8").splitlines() if line.strip()]
        pairs = [(folder / r["file"], r["text"]) for r in rows]
    else:
        raise DataError(f"{folder} has neither manifest.json nor texts.jsonl; write texts.jsonl with one "
                                '{"file": "0001.png", "text": "HELLO"} per line')
    missing = [str(p) for p, _ in pairs if not p.is_file()]
    if missing:
        raise DataError(f"{folder}: {len(missing)} listed images are missing, e.g. {missing[0]}")
    return [Image.open(p).convert("RGB") for p, _ in pairs], [t for _, t in pairs]


def evaluate_pipeline(pipe, prompts: Sequence[str | dict], texts: Sequence[str], *, reader="rapidocr", seed: int = 0,
                      **pipe_kwargs) -> tuple[dict, list]:
    """OCR-score any diffusers text-to-image pipeline (e.g. ``QwenImagePipeline``): one image per prompt, scored
    against ``texts`` (the text each prompt asks to render). A prompt may be a dict of call arguments instead (e.g.
    ``{"prompt_embeds": ..., "prompt_embeds_mask": ...}`` for a pipeline without its text encoder)."""
    import torch

    images = []
    for i, prompt in enumerate(prompts):
        generator = torch.Generator().manual_seed(seed + i)
        call = dict(prompt) if isinstance(prompt, dict) else {"prompt": prompt}
        images.append(pipe(generator=generator, **call, **pipe_kwargs).images[0])
    return text_rendering_scores(images, list(texts), reader=reader), images
