"""Evaluation: OCR-scored text rendering (of a kit, a folder, or any diffusers pipeline) and editing
consistency vs instruction success.

Editing is scored on synthetic pairs whose ground truth is rendered exactly (:func:`qwenkit.image.data.make_edit_pair`),
with metrics named for what they measure (:data:`EDIT_METRICS`): consistency outside the edit region (the text and
background that should stay), and, per edit kind, whether the instruction was followed (the new word read by OCR,
the instructed colour inside the glyph mask, the ink moved the instructed way) apart from whether the text was kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qwenkit.core.errors import DataError
from qwenkit.image.metrics import (
    edit_consistency,
    edit_region_mask,
    glyph_colour_error,
    glyph_mask,
    ink_centroid_x,
    masked_psnr,
    nearest_colour,
    word_match,
)
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
                           kinds=config.edit_kinds, glyphs=config.glyphs, texture=config.texture, bg=config.bg,
                           font=config.font, colors=config.edit_colors) for i in range(n)]


EDIT_METRICS = {
    "psnr_to_target": "PSNR (dB) of the whole edited image against the rendered ground truth",
    "psnr_outside_edit": "PSNR (dB) of the edited image against the source outside the region the true edit changes "
                         "(consistency: what should stay, stayed)",
    "changed_outside_edit": "fraction of pixels outside that region changed by more than 24/255",
    "new_text_ocr": "word edits: OCR reads the instructed new text (instruction followed)",
    "text_kept_ocr": "colour and position edits: OCR still reads the source text (text kept, not the edit)",
    "colour_applied": "colour edits: the mean colour inside the ground truth's glyph mask is nearest (RGB) to the "
                      "instructed colour among the colours the text can take (the run's edit_colors; without "
                      "them every renderer colour but the background) (instruction followed)",
    "glyph_colour_error": "colour edits: mean RGB distance (0..441) between the edited pixels inside the ground "
                          "truth's glyph mask and the instructed colour",
    "moved_as_told": "position edits: the ink's centroid moved the instructed way by at least half the true shift "
                     "(instruction followed)",
}
"""What each edit metric measures (the report prints these next to the tables)."""


def score_edit_pair(pair, edited, read: str, *, palette: Sequence[str] | None = None) -> dict:
    """The metrics of :data:`EDIT_METRICS` that apply to one edit pair (its kind), for the edited image and its OCR
    read; ``palette`` names the colours the text can take (None: every renderer colour but the background). PSNRs
    are capped at 99 dB (an identical region would be infinite)."""
    from qwenkit.image.render import COLORS

    source, target = pair.source.image(), pair.target.image()
    region = edit_region_mask(source, target)
    row = {"kind": pair.kind, "read": read,
           "psnr_to_target": min(99.0, masked_psnr(edited, target, np.ones(region.shape, dtype=bool)))}
    if (~region).any():
        consistency = edit_consistency(source, edited, region)
        row.update(psnr_outside_edit=min(99.0, consistency["outside_psnr"]),
                   changed_outside_edit=consistency["outside_changed"])
    spec = pair.target.spec
    if pair.kind == "word":
        row["new_text_ocr"] = float(word_match(read, pair.expected_text))
        return row
    row["text_kept_ocr"] = float(word_match(read, pair.source.text))
    bg = COLORS[spec.bg]
    if pair.kind == "color":
        mask = glyph_mask(target, COLORS[spec.fg], bg)
        mean_rgb = np.asarray(edited, dtype=np.float64)[mask].mean(axis=0)
        names = [c for c in palette or COLORS if c != spec.bg]
        row["colour_applied"] = float(nearest_colour(mean_rgb, {c: COLORS[c] for c in names}) == spec.fg)
        row["glyph_colour_error"] = glyph_colour_error(edited, mask, COLORS[spec.fg])
    else:
        start, goal, moved = (ink_centroid_x(im, bg) for im in (source, target, edited))
        wanted = goal - start
        row["moved_as_told"] = float(moved is not None and (moved - start) * wanted >= 0.5 * wanted**2)
    return row


def score_edits(pairs: Sequence, edited: Sequence, reader="rapidocr", *, palette: Sequence[str] | None = None) -> dict:
    """Score edited images against their synthetic pairs: the means of :data:`EDIT_METRICS` over all pairs (the
    kind-free ones) and per edit kind (``by_kind``), plus every pair's row (``pairs``)."""
    reads = text_rendering_scores(list(edited), [p.expected_text for p in pairs], reader=reader,
                                  return_reads=True)["reads"]
    rows = [score_edit_pair(p, im, read, palette=palette) for p, im, read in zip(pairs, edited, reads, strict=True)]

    def means(subset: list[dict]) -> dict:
        keys = [k for k in EDIT_METRICS if any(k in r for r in subset)]
        return {"n": len(subset)} | {k: float(np.mean([r[k] for r in subset if k in r])) for k in keys}

    overall = means(rows)
    kind_free = {k: overall[k] for k in ("n", "psnr_to_target", "psnr_outside_edit", "changed_outside_edit")
                 if k in overall}
    kinds = sorted({r["kind"] for r in rows})
    return kind_free | {"by_kind": {k: means([r for r in rows if r["kind"] == k]) for k in kinds}, "pairs": rows}


def evaluate_edit(kit, n: int = 32, *, steps: int = 20, cfg_scale: float = 2.0, seed: int = 20_011,
                  reader="rapidocr") -> tuple[dict, list]:
    """Edit held-out synthetic pairs with the kit; returns (scores, [source, edited, target] image triples)."""
    from qwenkit.image.sample import generate

    pairs = edit_eval_set(kit.config, n, seed)
    sources = [p.source.image() for p in pairs]
    targets = [p.target.image() for p in pairs]
    edited = generate(kit, [p.instruction for p in pairs], steps=steps, cfg_scale=cfg_scale, seed=seed,
                      source_images=sources)
    scores = score_edits(pairs, edited, reader=reader, palette=kit.config.edit_colors)
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
