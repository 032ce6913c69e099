"""Qwen-Image (arXiv 2508.02324): text-rendering data synthesis and curriculum, tiny MMDiT training through diffusers
(rectified flow, CFG dropout, EMA, multi-task T2I/TI2I/I2I with dual encoding), sampling and OCR-scored evaluation.

Light at import: heavy modules (torch, diffusers, OCR engines) load on first use of the names below.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "text_rendering_scores": "qwenkit.image.ocr",
    "RapidOCRReader": "qwenkit.image.ocr",
    "TesseractReader": "qwenkit.image.ocr",
    "ned": "qwenkit.image.metrics",
    "edit_distance": "qwenkit.image.metrics",
    "edit_consistency": "qwenkit.image.metrics",
    "edit_region_mask": "qwenkit.image.metrics",
    "masked_psnr": "qwenkit.image.metrics",
    "CurriculumSchedule": "qwenkit.image.synth",
    "SynthConfig": "qwenkit.image.synth",
    "synthesize": "qwenkit.image.synth",
    "make_spec": "qwenkit.image.synth",
    "RenderSpec": "qwenkit.image.render",
    "render": "qwenkit.image.render",
    "load_pretrained": "qwenkit.image.pretrained",
    "QwenVLPromptEncoder": "qwenkit.image.pretrained",
    "load_kit": "qwenkit.image.train",
    "generate": "qwenkit.image.sample",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'qwenkit.image' has no attribute {name!r}")
