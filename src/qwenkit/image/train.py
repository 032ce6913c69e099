"""Training a tiny Qwen-Image MMDiT: config, the step function handed to ``core.loop.train_loop``, save/reload.

Per step (one task per batch, see :mod:`qwenkit.image.data`): encode the target to latent tokens, draw
``sigma`` (logit-normal, shifted), noise ``x_t = (1 - sigma) x_0 + sigma eps``, encode the prompt (replaced by the
null prompt with probability ``cfg_dropout``), add the edit conditions the run's ``edit_conditioning`` allows, and
regress the velocity ``eps - x_0`` (:func:`qwenkit.image.flow.flow_matching_loss`). EMA weights are a ``stateful``
of the loop (checkpointed and resumed exactly) and are what gets saved for sampling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator

from qwenkit.core.config import StrictModel
from qwenkit.core.loop import LoopResult, TrainConfig, train_loop
from qwenkit.core.runs import RunDir
from qwenkit.image.data import EDIT_KINDS, BatchMaker
from qwenkit.image.flow import EMA, add_noise, flow_matching_loss, resolution_shift, sample_sigmas
from qwenkit.image.model import (
    ImageDenoiser,
    PatchPCACodec,
    PooledPatchImageEncoder,
    TextConditionEncoder,
    tiny_text_encoder,
    tiny_transformer,
)
from qwenkit.image.synth import STAGES, CurriculumSchedule, default_alphabet


class ModelConfig(StrictModel):
    layers: int = Field(3, ge=1)
    heads: int = Field(4, ge=1)
    head_dim: int = Field(24, ge=4)
    axes_dims_rope: tuple[int, int, int] = (8, 8, 8)
    codec_patch: int = Field(4, ge=1)
    codec_channels: int = Field(16, ge=1)
    text_encoder_size: Literal["nano", "tiny", "small"] = "nano"
    semantic_grid: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _rope(self) -> ModelConfig:
        if sum(self.axes_dims_rope) != self.head_dim or any(d % 2 for d in self.axes_dims_rope):
            raise ValueError(f"axes_dims_rope {self.axes_dims_rope} must be even and sum to head_dim={self.head_dim}")
        return self


class ImageTrainConfig(StrictModel):
    """``qwenkit image train`` config (YAML); ``trainer:`` is the shared loop's ``TrainConfig``."""

    width: int = Field(32, ge=8)
    height: int = Field(32, ge=8)
    batch_size: int = Field(32, ge=1)
    language: Literal["en", "zh", "mixed"] = "en"
    style: Literal["pure", "compositional", "layout"] = "pure"
    glyphs: str | None = Field(None, description="restrict single glyphs to these characters")
    texture: Literal["plain", "noise", "gradient"] | None = Field(None, description="fix the background texture "
                                                                   "of pure renders (null: drawn per sample)")
    target_stage: str = "glyph"
    curriculum: bool = Field(True, description="non-text -> glyph -> ... -> target_stage; false: target only")
    schedule: CurriculumSchedule | None = Field(None, description="explicit schedule (overrides curriculum)")
    tasks: dict[Literal["t2i", "ti2i", "i2i"], float] = {"t2i": 1.0}
    edit_kinds: list[Literal["word", "color", "position"]] = list(EDIT_KINDS)
    edit_stage: str = "glyph"
    edit_conditioning: Literal["dual", "semantic", "vae"] = "dual"
    cfg_dropout: float = Field(0.1, ge=0, lt=1)
    ema_decay: float = Field(0.99, ge=0, lt=1)
    timestep_shift: float | Literal["dynamic"] = "dynamic"
    timestep_scheme: Literal["logit_normal", "uniform"] = "logit_normal"
    codec_fit_samples: int = Field(512, ge=16)
    model: ModelConfig = ModelConfig()
    trainer: TrainConfig = TrainConfig(max_steps=200, lr=1e-3, max_grad_norm=1.0)

    @model_validator(mode="after")
    def _check(self) -> ImageTrainConfig:
        for name in ("target_stage", "edit_stage"):
            if getattr(self, name) not in STAGES:
                raise ValueError(f"{name}={getattr(self, name)!r} is not a stage; use one of {list(STAGES)}")
        p = self.model.codec_patch
        if self.width % p or self.height % p:
            raise ValueError(f"width/height ({self.width}x{self.height}) must be multiples of model.codec_patch={p}")
        if self.tasks.get("i2i", 0) > 0 and self.edit_conditioning == "vae":
            raise ValueError("i2i reconstruction goes through the semantic channel; with edit_conditioning=vae it "
                             "would copy the input: set tasks.i2i=0 or use dual/semantic")
        return self

    def curriculum_schedule(self) -> CurriculumSchedule:
        if self.schedule is not None:
            return self.schedule
        if self.curriculum:
            return CurriculumSchedule.default(self.target_stage)
        return CurriculumSchedule.constant(self.target_stage)

    def shift(self) -> float:
        if self.timestep_shift == "dynamic":
            grid = (self.height // self.model.codec_patch) * (self.width // self.model.codec_patch)
            return resolution_shift(grid)
        return float(self.timestep_shift)


@dataclass
class ImageKit:
    """Everything a sampler needs: the trained denoiser, the latent codec, the frozen text encoder, the config."""

    denoiser: ImageDenoiser
    codec: PatchPCACodec
    text_encoder: TextConditionEncoder
    config: ImageTrainConfig

    @property
    def grid(self) -> tuple[int, int]:
        return self.codec.grid(self.config.height, self.config.width)

    @property
    def uses_semantic(self) -> bool:
        return self.config.edit_conditioning in ("dual", "semantic")

    @property
    def uses_vae(self) -> bool:
        return self.config.edit_conditioning in ("dual", "vae")


def batch_maker(config: ImageTrainConfig, seed: int | None = None) -> BatchMaker:
    return BatchMaker(
        seed=config.trainer.seed if seed is None else seed, batch_size=config.batch_size, width=config.width,
        height=config.height, max_steps=config.trainer.max_steps, curriculum=config.curriculum_schedule(),
        tasks=dict(config.tasks), language=config.language, edit_stage=config.edit_stage,
        edit_kinds=config.edit_kinds, grad_accum_steps=config.trainer.grad_accum_steps, style=config.style,
        glyphs=config.glyphs, texture=config.texture,
    )


def build_kit(config: ImageTrainConfig) -> ImageKit:
    """A fresh kit: codec fitted on renders of every stage the run will see, a seeded MMDiT and text encoder."""
    seed = config.trainer.seed
    text_encoder = tiny_text_encoder(default_alphabet(), config.model.text_encoder_size, seed=seed)
    codec = PatchPCACodec(config.model.codec_patch, config.model.codec_channels)
    fit_config = config.model_copy(update={"tasks": {t: 1.0 for t, w in config.tasks.items() if w > 0},
                                           "batch_size": 32})
    maker = batch_maker(fit_config, seed=seed + 10_000)
    # spread the fitting batches over the whole schedule so every stage's patches are represented
    images = [maker(i * max(1, config.trainer.max_steps // 16))["target"]
              for i in range(-(-config.codec_fit_samples // 32))]
    codec.fit(torch.cat(images)[: config.codec_fit_samples])
    m = config.model
    transformer = tiny_transformer(m.codec_channels, text_encoder.dim, layers=m.layers, heads=m.heads,
                                   head_dim=m.head_dim, axes_dims_rope=m.axes_dims_rope, seed=seed)
    semantic = PooledPatchImageEncoder(text_encoder.dim, m.semantic_grid) if config.edit_conditioning != "vae" else None
    return ImageKit(ImageDenoiser(transformer, semantic), codec, text_encoder, config)


def make_step_fn(kit: ImageKit):
    """``step_fn(denoiser, batch) -> (loss, metrics)`` for ``core.loop.train_loop`` (global torch RNG: resumable)."""
    config, codec, encoder = kit.config, kit.codec, kit.text_encoder
    shift, grid = config.shift(), kit.grid

    def step_fn(denoiser: ImageDenoiser, batch: dict) -> tuple[torch.Tensor, dict]:
        target = batch["target"]
        b = target.shape[0]
        with torch.no_grad():
            x0 = codec.encode(target)
        noise = torch.randn_like(x0)
        sigma = sample_sigmas(b, shift=shift, scheme=config.timestep_scheme)
        noisy = add_noise(x0, noise, sigma)
        drop = torch.rand(b) < config.cfg_dropout
        prompts = ["" if d else p for d, p in zip(drop.tolist(), batch["prompts"], strict=True)]
        text, mask = encoder.encode(prompts)
        source_tokens = source_images = None
        if batch["task"] in ("ti2i", "i2i"):
            source_images = batch["source"] if kit.uses_semantic else None
            if batch["task"] == "ti2i" and kit.uses_vae:
                with torch.no_grad():
                    source_tokens = codec.encode(batch["source"])
        prediction = denoiser(noisy, sigma, grid, text, mask, source_tokens=source_tokens,
                              source_images=source_images)
        loss = flow_matching_loss(prediction, x0, noise)
        return loss, {f"loss/{batch['task']}": float(loss.detach()), "sigma_mean": float(sigma.mean())}

    return step_fn


def train(config: ImageTrainConfig, *, run: RunDir | None = None, resume: bool = False, kit: ImageKit | None = None,
          eval_fn=None, quiet: bool | None = None, description: str = "image train") -> tuple[ImageKit, LoopResult]:
    """Train with the shared loop; afterwards the kit's denoiser holds the EMA weights."""
    kit = kit or build_kit(config)
    ema = EMA(kit.denoiser, config.ema_decay)
    if run is not None:
        run.save_config(config)

    def eval_with_ema(model):
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        ema.copy_to(model)
        try:
            return eval_fn(model)
        finally:
            model.load_state_dict(raw)

    result = train_loop(kit.denoiser, make_step_fn(kit), batch_maker(config), config.trainer, run=run,
                        resume=resume, callbacks=[ema], stateful={"ema": ema},
                        eval_fn=eval_with_ema if eval_fn is not None else None, quiet=quiet, description=description)
    ema.copy_to(kit.denoiser)
    kit.denoiser.eval()
    return kit, result


def save_kit(kit: ImageKit, directory: str | Path) -> Path:
    """``transformer/`` (diffusers ``save_pretrained``), ``text_encoder/`` (transformers, with tokenizer),
    ``codec.safetensors``, ``semantic_encoder.safetensors`` and ``qwenkit_image.json`` (the run's config)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kit.denoiser.transformer.save_pretrained(directory / "transformer")
    kit.text_encoder.model.save_pretrained(directory / "text_encoder")
    kit.text_encoder.tokenizer.save_pretrained(directory / "text_encoder")
    save_file({k: v.contiguous() for k, v in kit.codec.state_dict().items()}, directory / "codec.safetensors")
    if kit.denoiser.semantic_encoder is not None:
        save_file({k: v.contiguous() for k, v in kit.denoiser.semantic_encoder.state_dict().items()},
                  directory / "semantic_encoder.safetensors")
    (directory / "qwenkit_image.json").write_text(json.dumps(kit.config.model_dump(mode="json"), indent=2),
                                                   encoding="utf-8")
    return directory


def load_kit(directory: str | Path) -> ImageKit:
    """Inverse of :func:`save_kit` (local directory only)."""
    from diffusers import QwenImageTransformer2DModel
    from safetensors.torch import load_file

    from qwenkit.core.config import load_config
    from qwenkit.lm import load_causal_lm, load_tokenizer

    directory = Path(directory)
    if not (directory / "qwenkit_image.json").is_file():
        raise FileNotFoundError(f"{directory} is not a qwenkit image model (no qwenkit_image.json); "
                                "train one with `qwenkit image train`")
    config = load_config(ImageTrainConfig, json.loads((directory / "qwenkit_image.json").read_text("utf-8")))
    transformer = QwenImageTransformer2DModel.from_pretrained(directory / "transformer")
    text_dir = directory / "text_encoder"
    encoder = TextConditionEncoder(load_causal_lm(text_dir), load_tokenizer(text_dir))
    codec = PatchPCACodec(config.model.codec_patch, config.model.codec_channels)
    codec.load_state_dict(load_file(directory / "codec.safetensors"))
    semantic = None
    if (directory / "semantic_encoder.safetensors").is_file():
        semantic = PooledPatchImageEncoder(encoder.dim, config.model.semantic_grid)
        semantic.load_state_dict(load_file(directory / "semantic_encoder.safetensors"))
    return ImageKit(ImageDenoiser(transformer, semantic).eval(), codec, encoder, config)
