"""Models of Qwen-Image through diffusers: the MMDiT (``QwenImageTransformer2DModel``), pluggable latent codecs and
condition encoders, and the dual-encoding input assembly of Qwen-Image-Edit.

- Latent codec: :class:`PatchPCACodec` (a fixed, whitened PCA of pixel patches, fitted once: the compact latent a CPU
  run can afford) or :class:`DiffusersVAECodec` (the real ``AutoencoderKLQwenImage``: 8x VAE + 2x2 packing, with
  ``latents_mean/std`` normalisation as ``QwenImagePipeline`` does).
- Condition encoder: :class:`TextConditionEncoder`, the last hidden states of a causal LM (a tiny ``qwenkit.lm`` Qwen3
  on CPU; any local Qwen checkpoint through the same code), frozen as Qwen-Image freezes Qwen2.5-VL.
- Semantic image encoder: :class:`PooledPatchImageEncoder`, a low-resolution pooled-patch view projected into the text
  stream; it stands in for Qwen2.5-VL's vision tokens (a real VLM is not trainable or runnable here).
- :func:`assemble_inputs`: T2I, TI2I (editing) and I2I inputs. Dual encoding (Qwen-Image-Edit): semantic tokens of
  the source image go *before* the instruction in the text stream; the source's latent tokens are concatenated
  *after* the noisy target tokens in the image stream, with ``img_shapes = [(1,h,w), (1,h,w)]`` so MSRoPE gives them
  their own frame index; the prediction is sliced back to the target tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from qwenkit.core.errors import QwenkitError


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU when it has none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


class PatchPCACodec(nn.Module):
    """Whitened PCA of ``patch x patch x 3`` pixel patches: ``z = ((x - mu) W_k) / s_k``, back ``x = z s_k W_k^T + mu``.

    ``W_k`` are the top-k principal directions of the fitted patches, ``s_k`` their standard deviations, so each
    latent channel has unit variance on the training distribution (what the flow's Gaussian prior assumes).
    """

    def __init__(self, patch: int = 4, channels: int = 16):
        super().__init__()
        self.patch, self.channels = patch, channels
        dim = 3 * patch * patch
        if channels > dim:
            raise ValueError(f"channels={channels} exceeds the patch dimension 3*{patch}^2={dim}")
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("components", torch.zeros(dim, channels))
        self.register_buffer("scale", torch.ones(channels))

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, H/p * W/p, 3 p^2), row-major over the patch grid."""
        b, c, h, w = images.shape
        p = self.patch
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not a multiple of the codec patch {p}")
        x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def fit(self, images: torch.Tensor) -> PatchPCACodec:
        """Fit mean, top-k directions and scales on (N, 3, H, W) images in [-1, 1] (float64 SVD, sign-fixed)."""
        x = self.patches(images).reshape(-1, self.mean.numel()).double()
        mean = x.mean(0)
        _, singular, vh = torch.linalg.svd(x - mean, full_matrices=False)
        comps = vh[: self.channels].T
        signs = torch.sign(comps[comps.abs().argmax(0), torch.arange(self.channels)])
        comps = comps * signs
        std = singular[: self.channels] / max(1, x.shape[0] - 1) ** 0.5
        self.mean.copy_(mean.float())
        self.components.copy_(comps.float())
        self.scale.copy_(std.clamp_min(1e-6).float())
        return self

    def grid(self, height: int, width: int) -> tuple[int, int]:
        return height // self.patch, width // self.patch

    def noise(self, batch: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """The sampler's initial latents: ``N(0, 1)`` tokens (B, H/p * W/p, channels), drawn on the CPU."""
        h, w = self.grid(height, width)
        return torch.randn(batch, h * w, self.channels, generator=generator)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> latent tokens (B, H/p * W/p, channels)."""
        return ((self.patches(images) - self.mean) @ self.components) / self.scale

    def decode(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Latent tokens -> (B, 3, H, W) images (not clipped)."""
        b = tokens.shape[0]
        p = self.patch
        x = (tokens * self.scale) @ self.components.T + self.mean
        x = x.reshape(b, height // p, width // p, 3, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, 3, height, width)


class DiffusersVAECodec(nn.Module):
    """``AutoencoderKLQwenImage`` as a token codec: encode (mode of the posterior), normalise with the VAE's
    ``latents_mean/std``, pack 2x2 latent patches into tokens of ``4 z_dim`` channels
    (``QwenImagePipeline._pack_latents``).
    """

    def __init__(self, vae):
        super().__init__()
        self.vae = vae
        z = vae.config.z_dim
        self.channels = 4 * z
        self.factor = 2 ** len(vae.temperal_downsample) * 2
        self.register_buffer("lat_mean", torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(1, z, 1, 1))
        self.register_buffer("lat_std", torch.tensor(vae.config.latents_std, dtype=torch.float32).view(1, z, 1, 1))

    def grid(self, height: int, width: int) -> tuple[int, int]:
        return height // self.factor, width // self.factor

    @staticmethod
    def pack(latents: torch.Tensor) -> torch.Tensor:
        """(B, z, h, w) -> (B, h/2 * w/2, 4 z): 2x2 latent patches as tokens (``QwenImagePipeline._pack_latents``)."""
        b, c, h, w = latents.shape
        x = latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // 2) * (w // 2), c * 4)

    def noise(self, batch: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """The initial latents as ``QwenImagePipeline.prepare_latents`` draws them: ``randn`` of shape
        ``(B, 1, z, 2 gh, 2 gw)`` from ``generator`` on the CPU, then packed, so one seed gives diffusers' image."""
        gh, gw = self.grid(height, width)
        z = self.channels // 4
        return self.pack(torch.randn(batch, 1, z, 2 * gh, 2 * gw, generator=generator)[:, 0])

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        vae_dtype = next(self.vae.parameters()).dtype
        latents = self.vae.encode(images.to(vae_dtype).unsqueeze(2)).latent_dist.mode()[:, :, 0].float()
        return self.pack((latents - self.lat_mean) / self.lat_std)

    def decode(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        b = tokens.shape[0]
        gh, gw = self.grid(height, width)
        c = self.channels // 4
        x = tokens.reshape(b, gh, gw, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, gh * 2, gw * 2)
        x = x * self.lat_std + self.lat_mean
        vae_dtype = next(self.vae.parameters()).dtype
        return self.vae.decode(x.to(vae_dtype).unsqueeze(2)).sample[:, :, 0].float()


class TextConditionEncoder:
    """Prompt -> (hidden states (B, L, D), mask (B, L)): the last hidden layer of a causal LM, right-padded, with the
    end-of-turn token appended so that even the empty (CFG-null) prompt has one token. Frozen (no gradients)."""

    def __init__(self, model, tokenizer, max_length: int = 96):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.dim = model.config.hidden_size

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        eos = self.tokenizer.eos_token or ""
        batch = self.tokenizer([p + eos for p in prompts], padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt", padding_side="right")
        device = module_device(self.model)
        mask = batch["attention_mask"].to(device)
        out = self.model(input_ids=batch["input_ids"].to(device), attention_mask=mask, output_hidden_states=True)
        return out.hidden_states[-1].float(), mask.bool()


def tiny_text_encoder(alphabet: str, size: str = "nano", seed: int = 0) -> TextConditionEncoder:
    """A random, frozen tiny Qwen3 from ``qwenkit.lm`` over a character tokenizer of ``alphabet``."""
    from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for

    tokenizer = build_synthetic_tokenizer(alphabet)
    return TextConditionEncoder(tiny_qwen3_for(tokenizer, size, seed=seed), tokenizer)


class PooledPatchImageEncoder(nn.Module):
    """Semantic tokens of an image: average-pool to a ``grid x grid`` map, flatten each cell's RGB, project to the
    condition width and add a learned position embedding: ``grid^2`` tokens that see layout and colour coarsely
    but not pixel detail (the role Qwen2.5-VL's merged vision tokens play in Qwen-Image-Edit)."""

    def __init__(self, dim: int, grid: int = 4, cell: int = 2):
        super().__init__()
        self.grid, self.cell = grid, cell
        self.proj = nn.Sequential(nn.Linear(3 * cell * cell, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.pos = nn.Parameter(torch.zeros(grid * grid, dim))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = images.shape[0]
        g, c = self.grid, self.cell
        pooled = torch.nn.functional.adaptive_avg_pool2d(images, (g * c, g * c))
        cells = pooled.reshape(b, 3, g, c, g, c).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, 3 * c * c)
        tokens = self.proj(cells) + self.pos
        return tokens, torch.ones(b, g * g, dtype=torch.bool, device=images.device)


@dataclass
class DenoiserInputs:
    """What ``QwenImageTransformer2DModel.forward`` takes, plus how many leading image tokens are the target."""

    hidden_states: torch.Tensor
    encoder_hidden_states: torch.Tensor
    encoder_hidden_states_mask: torch.Tensor
    img_shapes: list[list[tuple[int, int, int]]]
    target_tokens: int


def assemble_inputs(
    noisy_tokens: torch.Tensor,
    grid: tuple[int, int],
    text_embeds: torch.Tensor,
    text_mask: torch.Tensor,
    *,
    source_tokens: torch.Tensor | None = None,
    source_grid: tuple[int, int] | None = None,
    semantic_embeds: torch.Tensor | None = None,
    semantic_mask: torch.Tensor | None = None,
) -> DenoiserInputs:
    """Build the joint sequences. Image stream: ``[noisy target ; source latents]`` (source present = VAE channel;
    ``source_grid`` its token grid, the target's by default: Qwen-Image-Edit conditions on a source of its own size).
    Text stream: ``[semantic tokens ; prompt tokens]`` (semantic present = VLM channel), masks concatenated alike."""
    b = noisy_tokens.shape[0]
    h, w = grid
    if noisy_tokens.shape[1] != h * w:
        raise ValueError(f"{noisy_tokens.shape[1]} noisy tokens do not fill a {h}x{w} grid")
    shapes = [(1, h, w)]
    hidden = noisy_tokens
    if source_tokens is not None:
        sh, sw = source_grid or grid
        expected = (b, sh * sw, noisy_tokens.shape[2])
        if tuple(source_tokens.shape) != expected:
            raise ValueError(f"source latents {tuple(source_tokens.shape)} do not fill the source grid {sh}x{sw} "
                             f"(expected {expected})")
        hidden = torch.cat([noisy_tokens, source_tokens.to(noisy_tokens.dtype)], dim=1)
        shapes.append((1, sh, sw))
    text, mask = text_embeds, text_mask.bool()
    if semantic_embeds is not None:
        if semantic_mask is None:
            semantic_mask = torch.ones(semantic_embeds.shape[:2], dtype=torch.bool, device=semantic_embeds.device)
        text = torch.cat([semantic_embeds.to(text_embeds.dtype), text_embeds], dim=1)
        mask = torch.cat([semantic_mask.bool(), mask], dim=1)
    return DenoiserInputs(hidden, text, mask, [shapes] * b, noisy_tokens.shape[1])


class ImageDenoiser(nn.Module):
    """The trained part: the diffusers MMDiT plus (optionally) the semantic image encoder."""

    def __init__(self, transformer, semantic_encoder: nn.Module | None = None):
        super().__init__()
        self.transformer = transformer
        self.semantic_encoder = semantic_encoder

    def forward(self, noisy_tokens, sigma, grid, text_embeds, text_mask, *, source_tokens=None,
                source_images=None, source_grid=None) -> torch.Tensor:
        """Velocity prediction for the target tokens. ``source_images`` feed the semantic channel (when this model
        has a semantic encoder), ``source_tokens`` the VAE channel."""
        semantic = semantic_mask = None
        if source_images is not None and self.semantic_encoder is not None:
            semantic, semantic_mask = self.semantic_encoder(source_images)
        inputs = assemble_inputs(noisy_tokens, grid, text_embeds, text_mask, source_tokens=source_tokens,
                                 source_grid=source_grid, semantic_embeds=semantic, semantic_mask=semantic_mask)
        dtype = self.transformer.dtype
        out = self.transformer(
            hidden_states=inputs.hidden_states.to(dtype),
            encoder_hidden_states=inputs.encoder_hidden_states.to(dtype),
            encoder_hidden_states_mask=inputs.encoder_hidden_states_mask,
            timestep=sigma.to(dtype),
            img_shapes=inputs.img_shapes,
            return_dict=False,
        )[0]
        return out[:, : inputs.target_tokens].to(noisy_tokens.dtype)


class ModelFolderError(QwenkitError, FileNotFoundError):
    """A model folder lacks what a Qwen-Image / qwenkit image model has; the message names the folder and part."""


class ModelFormatError(QwenkitError, ValueError):
    """A model folder's parts are of the wrong kind or do not fit together."""


class TransformerLoadError(QwenkitError):
    """A saved transformer's weights do not match its config (missing, unexpected or mis-shaped keys)."""


def load_transformer(directory, **kwargs):
    """``QwenImageTransformer2DModel.from_pretrained(directory)``, strictly: where diffusers would re-initialise
    missing weights with only a warning (e.g. a file of ``base_layer`` / ``lora_*`` keys saved from a model with a
    LoRA adapter), this raises ``TransformerLoadError`` naming the keys."""
    from diffusers import QwenImageTransformer2DModel

    model, info = QwenImageTransformer2DModel.from_pretrained(directory, output_loading_info=True, **kwargs)
    problems = {name: list(info.get(name) or []) for name in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    problems = {k: v for k, v in problems.items() if v}
    if problems or info.get("error_msgs"):
        detail = "; ".join(f"{len(v)} {k.replace('_', ' ')} (e.g. {[str(x) for x in v[:2]]})"
                           for k, v in problems.items())
        raise TransformerLoadError(f"{directory}: the saved weights do not match the transformer's config: "
                                   f"{detail or info['error_msgs'][:2]}; the file is corrupt or holds an unmerged "
                                   "LoRA (save with qwenkit.image.train.save_kit, which merges adapters)")
    return model


def tiny_transformer(latent_channels: int, text_dim: int, *, layers: int = 3, heads: int = 4, head_dim: int = 24,
                     axes_dims_rope: tuple[int, int, int] = (8, 8, 8), seed: int = 0):
    """A tiny ``QwenImageTransformer2DModel`` over ready-made latent tokens (``patch_size=1``: the codec patchifies)."""
    from diffusers import QwenImageTransformer2DModel

    if sum(axes_dims_rope) != head_dim:
        raise ValueError(f"sum(axes_dims_rope)={sum(axes_dims_rope)} must equal head_dim={head_dim}")
    torch.manual_seed(seed)
    return QwenImageTransformer2DModel(
        patch_size=1, in_channels=latent_channels, out_channels=latent_channels, num_layers=layers,
        attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=text_dim,
        axes_dims_rope=tuple(axes_dims_rope),
    )
