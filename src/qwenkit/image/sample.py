"""Sampling: text-to-image and editing with diffusers' ``FlowMatchEulerDiscreteScheduler`` and Qwen-Image's true CFG.

The scheduler gets Qwen-Image's sigmas ``linspace(1, 1/N, N)`` shifted by the kit's ``mu``
(:meth:`~qwenkit.image.train.ImageKit.schedule`: from the checkpoint's scheduler config, or the run's fixed shift),
the schedule the training step samples from; guidance is
:func:`qwenkit.image.flow.cfg_combine` (``u + w (c - u)`` with norm rescale) against the null prompt, keeping the edit's
image conditions in both branches (so guidance strengthens the instruction, not the copy of the input).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from qwenkit.image.data import to_images, to_tensor
from qwenkit.image.flow import cfg_combine
from qwenkit.image.model import module_device
from qwenkit.image.train import ImageKit


def make_scheduler(kit: ImageKit, steps: int, device: torch.device | str | None = None):
    """The kit's ``FlowMatchEulerDiscreteScheduler`` (the checkpoint's config, or diffusers' default with dynamic
    exponential shifting for a fresh kit; a fixed ``timestep_shift`` uses the default one) set to Qwen-Image's
    sigmas ``linspace(1, 1/N, N)`` with the ``mu`` of :meth:`ImageKit.schedule`, the schedule training draws from."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    fixed = kit.config.timestep_shift != "dynamic"
    if kit.scheduler_config is None or fixed:
        scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential")
    else:
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(kit.scheduler_config)
    mu, _ = kit.schedule()
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps).tolist(), mu=mu, device=device)
    return scheduler


def edit_condition_size(image_size: tuple[int, int], target_area: int, multiple: int) -> tuple[int, int]:
    """``(width, height)`` of an edit's source as ``QwenImageEditPipeline`` sizes it (``calculate_dimensions``):
    the source's aspect ratio ``r = W/H`` at ``target_area`` pixels, ``w = sqrt(area r)``, ``h = w / r``, each
    rounded to the nearest ``multiple`` (32 there; at least one multiple here)."""
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"source image size {image_size} is empty")
    ratio = width / height
    w = math.sqrt(target_area * ratio)
    h = w / ratio
    return max(multiple, round(w / multiple) * multiple), max(multiple, round(h / multiple) * multiple)


def prepare_edit_sources(kit: ImageKit, images: Sequence) -> list:
    """Each source resized (Lanczos, as diffusers' ``VaeImageProcessor.resize``) to :func:`edit_condition_size`
    with the kit's condition area (1024^2 for a Qwen-Image-Edit checkpoint, the output area for a tiny kit)."""
    from PIL import Image

    area = kit.edit_condition_area or kit.config.width * kit.config.height
    multiple = kit.edit_condition_multiple or kit.config.model.latent_factor()
    out = []
    for image in images:
        image = image.convert("RGB")
        size = edit_condition_size(image.size, area, multiple)
        out.append(image if image.size == size else image.resize(size, Image.LANCZOS))
    return out


@torch.no_grad()
def generate(kit: ImageKit, prompts: Sequence[str], *, steps: int = 20, cfg_scale: float = 3.0, seed: int = 0,
             source_images: Sequence | None = None, batch_size: int = 64) -> list:
    """Images for ``prompts`` (PIL, the kit's ``config.width`` x ``config.height``), on the denoiser's device.

    The initial latents come from ``torch.Generator().manual_seed(seed + first index of the batch)`` in the
    codec's :meth:`noise` layout, so a single batch with a diffusers checkpoint starts from the latents
    ``QwenImagePipeline(generator=torch.Generator().manual_seed(seed))`` draws. With ``source_images`` this is
    editing: prompts are the instructions, each source is resized by :func:`prepare_edit_sources` and feeds the
    channels of the kit's ``edit_conditioning``; sources of different condition sizes go in separate batches.
    """
    if source_images is not None and len(source_images) != len(prompts):
        raise ValueError(f"{len(source_images)} source images for {len(prompts)} instructions; pass one each")
    sources = None if source_images is None else prepare_edit_sources(kit, source_images)
    out = []
    start = 0
    while start < len(prompts):
        end = min(start + batch_size, len(prompts))
        if sources is not None:
            end = next((i for i in range(start + 1, end) if sources[i].size != sources[start].size), end)
        chunk_sources = None if sources is None else sources[start:end]
        out += _generate_chunk(kit, list(prompts[start:end]), steps, cfg_scale, seed + start, chunk_sources)
        start = end
    return out


def _generate_chunk(kit: ImageKit, prompts: list[str], steps: int, cfg_scale: float, seed: int, sources) -> list:
    config, codec = kit.config, kit.codec
    grid = kit.grid
    device, codec_device = module_device(kit.denoiser), module_device(codec)
    b = len(prompts)
    latents = codec.noise(b, config.height, config.width, torch.Generator().manual_seed(seed)).to(device)
    guided = cfg_scale != 1.0
    source_tokens = pixels = source_grid = None
    if sources is not None:
        source_grid = codec.grid(sources[0].height, sources[0].width)
        pixels = to_tensor(sources)
        source_tokens = codec.encode(pixels.to(codec_device)).to(device) if kit.uses_vae else None
        if guided:
            pixels = torch.cat([pixels, pixels])
            source_tokens = None if source_tokens is None else torch.cat([source_tokens, source_tokens])
    text, mask, source_pixels = kit.encode_condition(prompts + ([""] * b if guided else []), pixels)
    text, mask = text.to(device), mask.to(device)
    source_pixels = None if source_pixels is None else source_pixels.to(device)
    scheduler = make_scheduler(kit, steps, device)
    for t in scheduler.timesteps:
        x = torch.cat([latents, latents]) if guided else latents
        sigma = torch.full((x.shape[0],), float(t) / 1000.0, device=device)
        velocity = kit.denoiser(x, sigma, grid, text, mask, source_tokens=source_tokens,
                                source_images=source_pixels, source_grid=source_grid)
        if guided:
            velocity = cfg_combine(velocity[:b], velocity[b:], cfg_scale)
        latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
    return to_images(codec.decode(latents.to(codec_device), config.height, config.width))


def image_grid(images: Sequence, columns: int = 8, pad: int = 2, background=(255, 255, 255)):
    """Tile PIL images row-major into one image (for reports and the ``generate`` CLI)."""
    from PIL import Image

    if not images:
        raise ValueError("no images to tile")
    w, h = images[0].size
    rows = -(-len(images) // columns)
    cols = min(columns, len(images))
    grid = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), background)
    for i, image in enumerate(images):
        grid.paste(image, (pad + (i % columns) * (w + pad), pad + (i // columns) * (h + pad)))
    return grid
