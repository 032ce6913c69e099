"""Training a tiny Qwen-Image MMDiT: config, the step function handed to ``core.loop.train_loop``, save/reload.

Per step (one task per batch, see :mod:`qwenkit.image.data`): encode the target to latent tokens, draw
``sigma`` (logit-normal, shifted), noise ``x_t = (1 - sigma) x_0 + sigma eps``, encode the prompt (replaced by the
null prompt with probability ``cfg_dropout``), add the edit conditions the run's ``edit_conditioning`` allows, and
regress the velocity ``eps - x_0`` (:func:`qwenkit.image.flow.flow_matching_loss`). EMA weights are a ``stateful``
of the loop (checkpointed and resumed exactly) and are what gets saved for sampling.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator

from qwenkit.core.config import StrictModel
from qwenkit.core.loop import LoopResult, TrainConfig, train_loop
from qwenkit.core.runs import RunDir
from qwenkit.image.data import EDIT_KINDS, BatchMaker, to_images
from qwenkit.image.flow import EMA, add_noise, flow_matching_loss, sample_sigmas, scheduler_mu_and_shift
from qwenkit.image.model import (
    DiffusersVAECodec,
    ImageDenoiser,
    ModelFolderError,
    PatchPCACodec,
    PooledPatchImageEncoder,
    TextConditionEncoder,
    load_transformer,
    module_device,
    tiny_text_encoder,
    tiny_transformer,
)
from qwenkit.image.pretrained import QwenVLPromptEncoder
from qwenkit.image.synth import STAGES, CurriculumSchedule, default_alphabet


class ModelConfig(StrictModel):
    layers: int = Field(3, ge=1)
    heads: int = Field(4, ge=1)
    head_dim: int = Field(24, ge=4)
    axes_dims_rope: tuple[int, int, int] = (8, 8, 8)
    codec: Literal["pca", "vae"] = Field("pca", description="pca: fixed whitened PCA of pixel patches (fitted at "
                                         "build time); vae: a frozen AutoencoderKLQwenImage from vae_path")
    vae_path: str | None = Field(None, description="local AutoencoderKLQwenImage directory (codec=vae), e.g. the "
                                                   "vae/ folder of a Qwen-Image snapshot")
    codec_patch: int = Field(4, ge=1)
    codec_channels: int = Field(16, ge=1, description="PCA components (codec=pca); codec=vae uses 4 * z_dim")
    text_encoder_size: Literal["nano", "tiny", "small"] = "nano"
    semantic_grid: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _rope(self) -> ModelConfig:
        if sum(self.axes_dims_rope) != self.head_dim or any(d % 2 for d in self.axes_dims_rope):
            raise ValueError(f"axes_dims_rope {self.axes_dims_rope} must be even and sum to head_dim={self.head_dim}")
        if self.codec == "vae":
            if not self.vae_path:
                raise ValueError("model.codec=vae needs model.vae_path (a local AutoencoderKLQwenImage directory)")
            if not (Path(self.vae_path) / "config.json").is_file():
                raise ValueError(f"model.vae_path={self.vae_path!r} has no config.json; point it at an "
                                 "AutoencoderKLQwenImage directory saved with save_pretrained (e.g. Qwen-Image's vae/)")
        return self

    def vae_config(self) -> dict:
        return json.loads((Path(self.vae_path) / "config.json").read_text("utf-8"))

    def latent_factor(self) -> int:
        """Pixels per latent token side: the PCA patch, or the VAE's 2^len(temperal_downsample) times the 2x2 packing
        (``DiffusersVAECodec.factor``: 16 for Qwen-Image's VAE)."""
        if self.codec == "pca":
            return self.codec_patch
        return 2 ** len(self.vae_config()["temperal_downsample"]) * 2


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
    fg: str | None = Field(None, description="fix the text colour of T2I renders (a qwenkit.image.render.COLORS name)")
    bg: str | None = Field(None, description="fix the background colour of T2I renders and edit pairs")
    font: str | None = Field(None, description="T2I renders and edit pairs use only fonts whose file name contains "
                                               "this (e.g. DejaVuSans-Bold)")
    edit_colors: list[str] | None = Field(None, description="edit pairs draw the source text colour and a colour "
                                                            "edit's new colour from these (null: any contrasting)")
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
        from qwenkit.image.render import COLORS

        for name in ("fg", "bg"):
            if getattr(self, name) is not None and getattr(self, name) not in COLORS:
                raise ValueError(f"{name}={getattr(self, name)!r} is not a colour; use one of {list(COLORS)}")
        unknown = [c for c in self.edit_colors or () if c not in COLORS]
        if unknown:
            raise ValueError(f"edit_colors {unknown} are not colours; use names from {list(COLORS)}")
        if self.edit_colors is not None and len([c for c in self.edit_colors if c != self.bg]) < 2:
            raise ValueError(f"edit_colors={self.edit_colors} needs at least 2 colours besides bg={self.bg!r}")
        for name in ("target_stage", "edit_stage"):
            if getattr(self, name) not in STAGES:
                raise ValueError(f"{name}={getattr(self, name)!r} is not a stage; use one of {list(STAGES)}")
        p = self.model.latent_factor()
        if self.width % p or self.height % p:
            what = "model.codec_patch" if self.model.codec == "pca" else "the VAE's factor (8x, then 2x2 packing)"
            raise ValueError(f"width/height ({self.width}x{self.height}) must be multiples of {what}={p}")
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
        """The shift factor of a fresh kit's schedule (a loaded checkpoint's comes from its scheduler config:
        :meth:`ImageKit.schedule`)."""
        if self.timestep_shift == "dynamic":
            factor = self.model.latent_factor()
            grid = (self.height // factor) * (self.width // factor)
            return scheduler_mu_and_shift(None, grid)[1]
        return float(self.timestep_shift)


@dataclass
class ImageKit:
    """Everything a sampler needs: the trained denoiser, the latent codec, the frozen text encoder, the config."""

    denoiser: ImageDenoiser
    codec: PatchPCACodec | DiffusersVAECodec
    text_encoder: TextConditionEncoder | QwenVLPromptEncoder
    config: ImageTrainConfig
    scheduler_config: dict | None = None
    edit_condition_area: int | None = None
    edit_condition_multiple: int | None = None

    @property
    def grid(self) -> tuple[int, int]:
        return self.codec.grid(self.config.height, self.config.width)

    @property
    def uses_semantic(self) -> bool:
        return self.config.edit_conditioning in ("dual", "semantic")

    @property
    def uses_vae(self) -> bool:
        return self.config.edit_conditioning in ("dual", "vae")

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ImageKit:
        """Move the denoiser, the codec and the text encoder to ``device`` (and the denoiser, the VAE and the text
        encoder to ``dtype``; the PCA codec and the VAE's latent statistics stay float32). In place; returns self."""
        self.denoiser.to(device, dtype)
        self.codec.to(device)
        if dtype is not None and isinstance(self.codec, DiffusersVAECodec):
            self.codec.vae.to(dtype)
        self.text_encoder.model.to(device, dtype)
        return self

    def resized(self, height: int, width: int) -> ImageKit:
        """The same kit generating ``width`` x ``height`` images (validated: multiples of the latent factor)."""
        from qwenkit.core.config import load_config

        config = load_config(ImageTrainConfig, self.config.model_dump(mode="json") | {"height": height,
                                                                                      "width": width})
        return dataclasses.replace(self, config=config)

    def schedule(self) -> tuple[float | None, float]:
        """``(mu, shift)`` of this kit's noise schedule, used by both the training step and the sampler
        (:func:`qwenkit.image.flow.scheduler_mu_and_shift` on the checkpoint's scheduler config, or on the default
        one of a fresh kit; a fixed ``timestep_shift`` in the config overrides both)."""
        if self.config.timestep_shift != "dynamic":
            shift = float(self.config.timestep_shift)
            return math.log(shift), shift
        h, w = self.grid
        return scheduler_mu_and_shift(self.scheduler_config, h * w)

    def encode_condition(self, prompts: list[str], source_images: torch.Tensor | None = None):
        """Prompt embeddings and mask. An encoder that ``accepts_images`` (Qwen2.5-VL) also sees the edit's source
        images when the kit uses the semantic channel; returns (embeds, mask, source images left for the
        separate semantic encoder or None)."""
        if getattr(self.text_encoder, "wants_image", False):
            if source_images is None:
                raise ValueError("this kit's encoder is an edit (image + instruction) encoder: pass source images")
            text, mask = self.text_encoder.encode(prompts, images=to_images(source_images))
            return text, mask, None
        text, mask = self.text_encoder.encode(prompts)
        return text, mask, source_images if self.uses_semantic else None


def batch_maker(config: ImageTrainConfig, seed: int | None = None) -> BatchMaker:
    return BatchMaker(
        seed=config.trainer.seed if seed is None else seed, batch_size=config.batch_size, width=config.width,
        height=config.height, max_steps=config.trainer.max_steps, curriculum=config.curriculum_schedule(),
        tasks=dict(config.tasks), language=config.language, edit_stage=config.edit_stage,
        edit_kinds=config.edit_kinds, grad_accum_steps=config.trainer.grad_accum_steps, style=config.style,
        glyphs=config.glyphs, texture=config.texture, fg=config.fg, bg=config.bg, font=config.font,
        edit_colors=config.edit_colors,
    )


def vae_codec(path: str | Path) -> DiffusersVAECodec:
    """A frozen ``AutoencoderKLQwenImage`` from a local directory, as a token codec."""
    from diffusers import AutoencoderKLQwenImage

    return DiffusersVAECodec(AutoencoderKLQwenImage.from_pretrained(path).eval().requires_grad_(False))


def fit_pca_codec(config: ImageTrainConfig) -> PatchPCACodec:
    """The PCA codec fitted on renders of every stage the run will see (batches spread over the schedule)."""
    codec = PatchPCACodec(config.model.codec_patch, config.model.codec_channels)
    fit_config = config.model_copy(update={"tasks": {t: 1.0 for t, w in config.tasks.items() if w > 0},
                                           "batch_size": 32})
    maker = batch_maker(fit_config, seed=config.trainer.seed + 10_000)
    images = [maker(i * max(1, config.trainer.max_steps // 16))["target"]
              for i in range(-(-config.codec_fit_samples // 32))]
    return codec.fit(torch.cat(images)[: config.codec_fit_samples])


def build_kit(config: ImageTrainConfig) -> ImageKit:
    """A fresh kit: the codec (PCA fitted on renders of every stage the run will see, or the frozen VAE of
    ``model.vae_path``), a seeded MMDiT and text encoder."""
    seed = config.trainer.seed
    text_encoder = tiny_text_encoder(default_alphabet(), config.model.text_encoder_size, seed=seed)
    codec = vae_codec(config.model.vae_path) if config.model.codec == "vae" else fit_pca_codec(config)
    m = config.model
    transformer = tiny_transformer(codec.channels, text_encoder.dim, layers=m.layers, heads=m.heads,
                                   head_dim=m.head_dim, axes_dims_rope=m.axes_dims_rope, seed=seed)
    semantic = PooledPatchImageEncoder(text_encoder.dim, m.semantic_grid) if config.edit_conditioning != "vae" else None
    return ImageKit(ImageDenoiser(transformer, semantic), codec, text_encoder, config)


def make_step_fn(kit: ImageKit):
    """``step_fn(denoiser, batch) -> (loss, metrics)`` for ``core.loop.train_loop`` (global torch RNG: resumable)."""
    config, codec = kit.config, kit.codec
    shift, grid = kit.schedule()[1], kit.grid

    def step_fn(denoiser: ImageDenoiser, batch: dict) -> tuple[torch.Tensor, dict]:
        device, codec_device = module_device(denoiser), module_device(codec)
        target = batch["target"]
        b = target.shape[0]
        with torch.no_grad():
            x0 = codec.encode(target.to(codec_device)).to(device)
        noise = torch.randn_like(x0)
        sigma = sample_sigmas(b, shift=shift, scheme=config.timestep_scheme).to(device)
        noisy = add_noise(x0, noise, sigma)
        drop = torch.rand(b) < config.cfg_dropout
        prompts = ["" if d else p for d, p in zip(drop.tolist(), batch["prompts"], strict=True)]
        is_edit = batch["task"] in ("ti2i", "i2i")
        text, mask, source_images = kit.encode_condition(prompts, batch["source"] if is_edit else None)
        text, mask = text.to(device), mask.to(device)
        source_images = None if source_images is None else source_images.to(device)
        source_tokens = None
        if batch["task"] == "ti2i" and kit.uses_vae:
            with torch.no_grad():
                source_tokens = codec.encode(batch["source"].to(codec_device)).to(device)
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


def merged_transformer(transformer):
    """``transformer`` itself, or a copy with its LoRA adapter folded into the weights (no ``lora_*`` keys)."""
    from qwenkit.image.lora import has_lora, merged_copy

    return merged_copy(transformer) if has_lora(transformer) else transformer


def save_kit(kit: ImageKit, directory: str | Path) -> Path:
    """``transformer/`` (diffusers ``save_pretrained``), ``text_encoder/`` (transformers, with tokenizer), the codec
    (``codec.safetensors`` for PCA, ``vae/`` for the VAE), ``semantic_encoder.safetensors`` and
    ``qwenkit_image.json`` (the run's config; a VAE codec's ``vae_path`` is rewritten to the saved ``vae/``)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    merged_transformer(kit.denoiser.transformer).save_pretrained(directory / "transformer")
    kit.text_encoder.model.save_pretrained(directory / "text_encoder")
    kit.text_encoder.tokenizer.save_pretrained(directory / "text_encoder")
    config = kit.config
    if isinstance(kit.codec, DiffusersVAECodec):
        kit.codec.vae.save_pretrained(directory / "vae")
        config = config.model_copy(update={"model": config.model.model_copy(update={"vae_path": "vae"})})
    else:
        save_file({k: v.contiguous() for k, v in kit.codec.state_dict().items()}, directory / "codec.safetensors")
    if kit.denoiser.semantic_encoder is not None:
        save_file({k: v.contiguous() for k, v in kit.denoiser.semantic_encoder.state_dict().items()},
                  directory / "semantic_encoder.safetensors")
    (directory / "qwenkit_image.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2),
                                                   encoding="utf-8")
    return directory


def load_kit(directory: str | Path, *, height: int | None = None, width: int | None = None) -> ImageKit:
    """Inverse of :func:`save_kit` (local directory only); a diffusers Qwen-Image(-Edit) directory goes through
    :func:`qwenkit.image.pretrained.load_pretrained`. ``height``/``width`` set the generation size (default: the
    kit's training size, 1024x1024 for a diffusers checkpoint); they must be multiples of the latent factor."""
    from safetensors.torch import load_file

    from qwenkit.core.config import load_config
    from qwenkit.lm import load_causal_lm, load_tokenizer

    directory = Path(directory)
    if (directory / "model_index.json").is_file():  # a diffusers Qwen-Image / Qwen-Image-Edit directory
        from qwenkit.image.pretrained import load_pretrained

        return load_pretrained(directory, height=height or 1024, width=width or 1024)
    if not (directory / "qwenkit_image.json").is_file():
        raise ModelFolderError(f"{directory} is not a qwenkit image model (no qwenkit_image.json) nor a diffusers "
                                "Qwen-Image directory (no model_index.json); train one with `qwenkit image train`")
    raw = json.loads((directory / "qwenkit_image.json").read_text("utf-8"))
    if raw.get("model", {}).get("codec") == "vae":
        raw["model"]["vae_path"] = str(directory / "vae")
    config = load_config(ImageTrainConfig, raw)
    transformer = load_transformer(directory / "transformer")
    text_dir = directory / "text_encoder"
    encoder = TextConditionEncoder(load_causal_lm(text_dir), load_tokenizer(text_dir))
    if config.model.codec == "vae":
        codec = vae_codec(directory / "vae")
    else:
        codec = PatchPCACodec(config.model.codec_patch, config.model.codec_channels)
        codec.load_state_dict(load_file(directory / "codec.safetensors"))
    semantic = None
    if (directory / "semantic_encoder.safetensors").is_file():
        semantic = PooledPatchImageEncoder(encoder.dim, config.model.semantic_grid)
        semantic.load_state_dict(load_file(directory / "semantic_encoder.safetensors"))
    kit = ImageKit(ImageDenoiser(transformer, semantic).eval(), codec, encoder, config)
    return kit if height is None and width is None else kit.resized(height or config.height, width or config.width)
