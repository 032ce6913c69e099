"""Training batches rendered on the fly: T2I under the curriculum, TI2I edit pairs, I2I reconstruction.

Batch ``i`` is a pure function of ``(seed, i)`` (its own RNG stream), so ``core.loop.train_loop`` can address it
directly and a resumed run sees exactly the batches it would have seen. Each batch holds one task (all its samples
share one sequence layout); the task is drawn per batch from ``tasks`` (Qwen-Image's multi-task training mixes
T2I, TI2I and I2I).

Edit pairs are synthesised with the renderer, so the ground-truth edited image is known exactly: change the word
(``replace with "NEW"``), the colour (``make text red``), or the position (``move text left``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from qwenkit.image.render import COLORS, render
from qwenkit.image.synth import CurriculumSchedule, Sample, make_spec

EDIT_KINDS = ("word", "color", "position")


def to_tensor(images: Sequence) -> torch.Tensor:
    """PIL RGB images -> (B, 3, H, W) float in [-1, 1]."""
    array = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


def to_images(tensor: torch.Tensor) -> list:
    """(B, 3, H, W) in [-1, 1] -> PIL RGB images (clipped)."""
    from PIL import Image

    array = ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, "RGB") for a in array]


@dataclasses.dataclass(frozen=True)
class EditPair:
    source: Sample
    target: Sample
    instruction: str
    kind: str
    expected_text: str


def make_edit_pair(seed: int, index: int, *, width: int, height: int, stage: str = "glyph", language: str = "en",
                   kinds: Sequence[str] = EDIT_KINDS, glyphs: str | None = None,
                   words: Sequence[str] | None = None, texture: str | None = None, bg: str | None = None,
                   font: str | None = None, colors: Sequence[str] | None = None) -> EditPair:
    """A (source, edited target, instruction) triple drawn deterministically from ``(seed, index)``.

    ``bg`` and ``font`` fix the background colour and the font (None: drawn per pair); ``colors`` is the palette the
    source text colour and a colour edit's new colour are drawn from (None: any contrasting colour)."""
    rng = np.random.default_rng([seed, index, 7])
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind not in EDIT_KINDS:
        raise ValueError(f"unknown edit kind {kind!r}; use {EDIT_KINDS}")
    palette = [c for c in colors if c != bg] if colors else None
    if palette is not None and len(palette) < 2:
        raise ValueError(f"colors={list(colors)} leaves fewer than 2 text colours besides bg={bg!r}; a colour edit "
                         "needs a source colour and another one")
    fg = palette[int(rng.integers(len(palette)))] if palette else None
    source = make_spec(seed, index, stage, width=width, height=height, language=language, glyphs=glyphs,
                       words=words, jitter=0.3, texture=texture, fg=fg, bg=bg, font=font)
    spec = source.spec
    if kind == "word":
        new_text, offset = spec.text, 1
        while new_text == spec.text:  # another draw of the same stage; terminates for any pool of >= 2 texts
            new_text = make_spec(seed + offset, index, stage, width=width, height=height, language=language,
                                 glyphs=glyphs, words=words).text
            offset += 1
        target_spec = dataclasses.replace(spec, text=new_text)
        instruction = f'replace with "{new_text}"'
    elif kind == "color":
        choices = [c for c in (palette or COLORS) if c not in (spec.fg, spec.bg) and _far(c, spec.bg)]
        if not choices:
            raise ValueError(f"no colour in {palette} differs from the text colour {spec.fg!r} and stands out on "
                             f"{spec.bg!r}; add colours to edit_colors")
        new_fg = choices[int(rng.integers(len(choices)))]
        target_spec = dataclasses.replace(spec, fg=new_fg)
        instruction = f"make text {new_fg}"
    else:
        direction = ("left", "right")[int(rng.integers(2))]
        target_spec = dataclasses.replace(spec, offset=(-0.9 if direction == "left" else 0.9, spec.offset[1]))
        instruction = f"move text {direction}"
    target = Sample(index, stage, language, target_spec, instruction)
    return EditPair(source, target, instruction, kind, target_spec.text)


def _far(a: str, b: str) -> bool:
    return sum(abs(x - y) for x, y in zip(COLORS[a], COLORS[b], strict=True)) > 200


class BatchMaker:
    """``batch(i)`` -> dict with ``task``, ``target`` images, ``prompts`` and (edit/I2I) ``source`` images."""

    def __init__(self, *, seed: int, batch_size: int, width: int, height: int, max_steps: int,
                 curriculum: CurriculumSchedule, tasks: dict[str, float], language: str = "en",
                 edit_stage: str = "glyph", edit_kinds: Sequence[str] = EDIT_KINDS, grad_accum_steps: int = 1,
                 style: str = "pure", glyphs: str | None = None, words: Sequence[str] | None = None,
                 texture: str | None = None, fg: str | None = None, bg: str | None = None,
                 font: str | None = None, edit_colors: Sequence[str] | None = None):
        self.seed, self.batch_size, self.width, self.height = seed, batch_size, width, height
        self.max_steps, self.curriculum, self.language = max_steps, curriculum, language
        self.edit_stage, self.edit_kinds, self.grad_accum_steps = edit_stage, tuple(edit_kinds), grad_accum_steps
        self.style, self.glyphs, self.words, self.texture = style, glyphs, words, texture
        self.fg, self.bg, self.font, self.edit_colors = fg, bg, font, edit_colors
        active = {t: w for t, w in tasks.items() if w > 0}
        if not active:
            raise ValueError(f"no task has a positive weight in {tasks}; give t2i, ti2i or i2i a weight > 0")
        self.tasks = list(active)
        self.task_p = np.array([active[t] for t in self.tasks]) / sum(active.values())

    def progress(self, index: int) -> float:
        return min(1.0, (index // self.grad_accum_steps) / max(1, self.max_steps))

    def __call__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index, 1])
        task = self.tasks[int(rng.choice(len(self.tasks), p=self.task_p))]
        base = index * self.batch_size
        if task == "ti2i":
            pairs = [make_edit_pair(self.seed, base + j, width=self.width, height=self.height, stage=self.edit_stage,
                                    language=self.language, kinds=self.edit_kinds, glyphs=self.glyphs,
                                    words=self.words, texture=self.texture, bg=self.bg, font=self.font,
                                    colors=self.edit_colors) for j in range(self.batch_size)]
            return {"task": task, "target": to_tensor([p.target.image() for p in pairs]),
                    "source": to_tensor([p.source.image() for p in pairs]),
                    "prompts": [p.instruction for p in pairs]}
        samples = [self.sample(base + j, rng) for j in range(self.batch_size)]
        images = to_tensor([render(s.spec) for s in samples])
        if task == "i2i":
            return {"task": task, "target": images, "source": images, "prompts": [""] * len(samples)}
        return {"task": task, "target": images, "prompts": [s.caption for s in samples],
                "stages": [s.stage for s in samples]}

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        stage = self.curriculum.sample_stage(self.progress(index // self.batch_size), rng)
        return make_spec(self.seed, index, stage, width=self.width, height=self.height, language=self.language,
                         style=self.style, glyphs=self.glyphs, words=self.words, texture=self.texture,
                         fg=self.fg, bg=self.bg, font=self.font)
