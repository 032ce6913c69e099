"""Fine-tuning a saved checkpoint (a local diffusers Qwen-Image directory or a ``qwenkit image train`` model) on
image-caption folders, with LoRA (``peft``) or all weights, through ``core.loop.train_loop``.

The step is the training step of :mod:`qwenkit.image.train` (rectified flow, logit-normal sigmas shifted by the
checkpoint's own scheduler, CFG dropout) on text-to-image batches drawn from the folder; checkpoints and exact resume
are the loop's. Outputs under ``out``: ``lora/pytorch_lora_weights.safetensors`` (diffusers' LoRA format: load it
with :func:`qwenkit.image.lora.load_lora` or ``QwenImagePipeline.load_lora_weights``) and ``model/`` with the LoRA
merged (a diffusers directory for a diffusers checkpoint, a qwenkit model folder otherwise); a full fine-tune writes
``model/`` only.

Data folders (:class:`CaptionFolder`): a ``qwenkit image synth`` output (``manifest.json``: the caption is the prompt,
the rendered text the OCR target), ``captions.jsonl`` lines ``{"file": "a.png", "caption": "..."}``, or image files
each with a same-named ``.txt`` caption (the DreamBooth / kohya layout). Images are resized to the training size.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from qwenkit.core.config import StrictModel
from qwenkit.core.errors import DataError
from qwenkit.core.loop import TrainConfig, train_loop
from qwenkit.image.data import to_tensor
from qwenkit.image.flow import EMA
from qwenkit.image.lora import LoraSettings, add_lora, save_lora
from qwenkit.image.train import ImageKit, load_kit, make_step_fn, merged_transformer, save_kit

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class FinetuneConfig(StrictModel):
    """``qwenkit image finetune`` config (YAML); ``model`` and ``data`` are the local folders."""

    model: str = Field(description="a diffusers Qwen-Image directory or a qwenkit image model folder")
    data: str = Field(description="an image-caption folder (see qwenkit.image.finetune)")
    method: Literal["lora", "full"] = "lora"
    lora: LoraSettings = LoraSettings()
    height: int | None = Field(None, ge=8, description="training size (default: the model's)")
    width: int | None = Field(None, ge=8)
    batch_size: int = Field(8, ge=1)
    cfg_dropout: float = Field(0.1, ge=0, lt=1)
    timestep_scheme: Literal["logit_normal", "uniform"] = "logit_normal"
    ema_decay: float = Field(0.0, ge=0, lt=1, description="0: no EMA (the last weights are saved)")
    trainer: TrainConfig = TrainConfig(max_steps=100, lr=1e-4, max_grad_norm=1.0, checkpoint_every=50)


class CaptionFolder:
    """Images and captions of a folder, resized to ``width`` x ``height``; ``batch(i)`` draws batch ``i``
    (indices from ``numpy.random.default_rng([seed, i])``: the same batch for the same index, so resume is exact).

    ``texts`` holds the rendered text of each image where the folder says it (synth output), else None."""

    def __init__(self, folder: str | Path, *, height: int, width: int, batch_size: int, seed: int):
        from PIL import Image

        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"--data {folder} is not a folder; pass a synth output, a folder with captions.jsonl, "
                            "or images with same-named .txt captions")
        pairs = _caption_pairs(folder)
        missing = [str(p) for p, _, _ in pairs if not p.is_file()]
        if missing:
            raise DataError(f"{folder}: {len(missing)} listed images are missing, e.g. {missing[0]}")
        self.captions = [c for _, c, _ in pairs]
        self.texts = [t for _, _, t in pairs]
        self.images = [Image.open(p).convert("RGB").resize((width, height), Image.LANCZOS) for p, _, _ in pairs]
        self.pixels = to_tensor(self.images)
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return len(self.captions)

    def __call__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        picks = rng.choice(len(self), self.batch_size, replace=len(self) < self.batch_size)
        return {"task": "t2i", "target": self.pixels[picks], "prompts": [self.captions[i] for i in picks],
                "source": None}


def _caption_pairs(folder: Path) -> list[tuple[Path, str, str | None]]:
    if (folder / "manifest.json").is_file():
        from qwenkit.image.synth import iter_samples

        return [(path, row["caption"], row["text"]) for row, path in iter_samples(folder)]
    if (folder / "captions.jsonl").is_file():
        pairs = []
        lines = (folder / "captions.jsonl").read_text("utf-8").splitlines()
        for line_no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{folder / 'captions.jsonl'}: line {line_no} is not JSON ({exc.msg})") from exc
            for key in ("file", "caption"):
                if not isinstance(row, dict) or not isinstance(row.get(key), str):
                    raise DataError(f"{folder / 'captions.jsonl'}: line {line_no} lacks the string field '{key}'")
            pairs.append((folder / row["file"], row["caption"], row.get("text")))
        if not pairs:
            raise DataError(f"{folder / 'captions.jsonl'} has no records")
        return pairs
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"{folder} holds no manifest.json, no captions.jsonl and no images")
    without = [p.name for p in images if not p.with_suffix(".txt").is_file()]
    if without:
        raise DataError(f"{folder}: {len(without)} images have no same-named .txt caption, e.g. {without[0]}")
    return [(p, p.with_suffix(".txt").read_text("utf-8").strip(), None) for p in images]


def prepare_kit(config: FinetuneConfig) -> ImageKit:
    """The checkpoint at the training size, with the run's step settings, LoRA injected or every weight trainable
    (the codec and the text encoder stay frozen)."""
    kit = load_kit(config.model, height=config.height, width=config.width)
    kit.config = kit.config.model_copy(update={"cfg_dropout": config.cfg_dropout,
                                               "timestep_scheme": config.timestep_scheme})
    denoiser = kit.denoiser.train()
    if config.method == "lora":
        denoiser.requires_grad_(False)
        add_lora(denoiser.transformer, config.lora, seed=config.trainer.seed)
    else:
        denoiser.requires_grad_(True)
    if torch.cuda.is_available():  # where accelerate puts the denoiser; the frozen parts follow it
        kit.codec.to("cuda")
        kit.text_encoder.model.to("cuda")
    return kit


def finetune(config: FinetuneConfig, out: str | Path, *, resume=False, quiet: bool | None = None,
             eval_samples: int = 0, eval_steps: int = 20) -> dict:
    """Fine-tune and save; returns ``{"kit", "result", "lora", "model", "ocr_before", "ocr_after"}``.

    With ``eval_samples`` and a folder that records rendered texts, the first ``eval_samples`` captions are generated
    before and after training and OCR-scored against their texts (the same seed both times)."""
    from qwenkit.core.runs import start_run

    kit = prepare_kit(config)
    data = CaptionFolder(config.data, height=kit.config.height, width=kit.config.width,
                         batch_size=config.batch_size, seed=config.trainer.seed)
    run = start_run(out, config, resume=resume)
    scored = [(c, t) for c, t in zip(data.captions, data.texts, strict=True) if t][:eval_samples]
    before = _ocr(kit, scored, eval_steps) if scored else None
    stateful, callbacks = {}, []
    if config.ema_decay > 0:
        ema = EMA(kit.denoiser, config.ema_decay)
        stateful, callbacks = {"ema": ema}, [ema]
    result = train_loop(kit.denoiser, make_step_fn(kit), data, config.trainer, run=run, resume=resume,
                        callbacks=callbacks, stateful=stateful, quiet=quiet, description="image finetune")
    if config.ema_decay > 0:
        stateful["ema"].copy_to(kit.denoiser)
    kit.denoiser.eval()
    lora_dir = save_lora(kit.denoiser.transformer, config.lora, run.path / "lora").parent \
        if config.method == "lora" else None
    model_dir = save_merged(kit, config.model, run.path / "model")
    after = _ocr(kit, scored, eval_steps) if scored else None
    return {"kit": kit, "result": result, "lora": lora_dir, "model": model_dir, "ocr_before": before,
            "ocr_after": after, "run": run}


def _ocr(kit: ImageKit, scored: list[tuple[str, str]], steps: int) -> dict:
    from qwenkit.image.ocr import text_rendering_scores
    from qwenkit.image.sample import generate

    images = generate(kit, [c for c, _ in scored], steps=steps, seed=10_007)
    scores = text_rendering_scores(images, [t for _, t in scored], return_reads=True)
    return scores | {"images": images}


def save_merged(kit: ImageKit, source: str | Path, directory: str | Path) -> Path:
    """The fine-tuned model with any LoRA merged: for a diffusers checkpoint, a diffusers directory (the source's
    other parts hard-linked, or copied across file systems, and the merged ``transformer/``); else ``save_kit``."""
    source, directory = Path(source), Path(directory)
    if not (source / "model_index.json").is_file():
        return save_kit(kit, directory)
    if directory.exists():
        shutil.rmtree(directory)
    shutil.copytree(source, directory, ignore=shutil.ignore_patterns("transformer"), copy_function=_link_or_copy)
    merged_transformer(kit.denoiser.transformer).save_pretrained(directory / "transformer")
    return directory


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
