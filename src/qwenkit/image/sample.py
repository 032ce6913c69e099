"""Sampling: text-to-image and editing with diffusers' ``FlowMatchEulerDiscreteScheduler`` and Qwen-Image's true CFG.

The scheduler gets Qwen-Image's sigmas ``linspace(1, 1/N, N)`` shifted by the kit's ``mu``
(:meth:`~qwenkit.image.train.ImageKit.schedule`: from the checkpoint's scheduler config, or the run's fixed shift),
the schedule the training step samples from; guidance is
:func:`qwenkit.image.flow.cfg_combine` (``u + w (c - u)`` with norm rescale) against the null prompt, keeping the edit's
image conditions in both branches (so guidance strengthens the instruction, not the copy of the input).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from qwenkit.image.data import to_images, to_tensor
from qwenkit.image.flow import cfg_combine
from qwenkit.image.train import ImageKit


def make_scheduler(kit: ImageKit, steps: int):
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
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps).tolist(), mu=mu)
    return scheduler


@torch.no_grad()
def generate(kit: ImageKit, prompts: Sequence[str], *, steps: int = 20, cfg_scale: float = 3.0, seed: int = 0,
             source_images: Sequence | None = None, batch_size: int = 64) -> list:
    """Images for ``prompts`` (PIL, the kit's resolution). With ``source_images`` this is editing: prompts are the
    instructions and each source feeds the channels of the kit's ``edit_conditioning``."""
    if source_images is not None and len(source_images) != len(prompts):
        raise ValueError(f"{len(source_images)} source images for {len(prompts)} instructions; pass one each")
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        sources = None if source_images is None else source_images[start : start + batch_size]
        out += _generate_chunk(kit, chunk, steps, cfg_scale, seed + start, sources)
    return out


def _generate_chunk(kit: ImageKit, prompts: list[str], steps: int, cfg_scale: float, seed: int, sources) -> list:
    config, codec = kit.config, kit.codec
    h, w = kit.grid
    b = len(prompts)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(b, h * w, codec.channels, generator=generator)
    guided = cfg_scale != 1.0
    source_tokens = pixels = None
    if sources is not None:
        pixels = to_tensor(sources)
        source_tokens = codec.encode(pixels) if kit.uses_vae else None
        if guided:
            pixels = torch.cat([pixels, pixels])
            source_tokens = None if source_tokens is None else torch.cat([source_tokens, source_tokens])
    text, mask, source_pixels = kit.encode_condition(prompts + ([""] * b if guided else []), pixels)
    scheduler = make_scheduler(kit, steps)
    for t in scheduler.timesteps:
        x = torch.cat([latents, latents]) if guided else latents
        sigma = torch.full((x.shape[0],), float(t) / 1000.0)
        velocity = kit.denoiser(x, sigma, (h, w), text, mask, source_tokens=source_tokens,
                                source_images=source_pixels)
        if guided:
            velocity = cfg_combine(velocity[:b], velocity[b:], cfg_scale)
        latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
    return to_images(codec.decode(latents, config.height, config.width))


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
