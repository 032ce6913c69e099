"""Benchmark: qwenkit's image training step (core.loop.train_loop + make_step_fn) vs a plain diffusers-style loop.

Both train the same tiny ``QwenImageTransformer2DModel`` (same init, same PCA codec, same frozen text encoder) on the
same fixed batch, drawing noise, sigmas and CFG-dropout from the torch RNG in the same order; the plain loop follows
diffusers' ``train_dreambooth_lora_qwen_image.py`` (``compute_density_for_timestep_sampling("logit_normal")``,
``(1 - s) x0 + s eps``, target ``eps - x0``, AdamW, gradient clipping). Reported: steps/s of each (median over
interleaved repeats on a shared machine), their ratio, the largest loss difference over the run (should be ~0), and
sampling images/s of ``qwenkit.image.sample.generate`` (20 Euler steps, with and without CFG).

Run: ``.venv/bin/python benchmarks/image_train.py [--steps 30] [--repeats 3] [--threads 1]``.
Writes ``benchmarks/results/image_train.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def _setup(batch_size: int):
    from qwenkit.core.config import load_config
    from qwenkit.image.train import ImageTrainConfig, batch_maker, build_kit

    config = load_config(ImageTrainConfig, {"batch_size": batch_size, "texture": "plain", "codec_fit_samples": 256,
                                            "trainer": {"max_steps": 10, "lr": 1e-3, "weight_decay": 0.0}})
    kit = build_kit(config)
    batch = batch_maker(config)(5)
    return config, kit, batch


def run_qwenkit(config, kit, batch, steps: int, init_state) -> tuple[float, list[float]]:
    from qwenkit.core.loop import train_loop
    from qwenkit.image.train import make_step_fn

    kit.denoiser.load_state_dict(init_state)
    trainer = config.trainer.model_copy(update={"max_steps": steps, "seed": 0})
    started = time.perf_counter()
    result = train_loop(kit.denoiser, make_step_fn(kit), lambda _i: batch, trainer, quiet=True)
    return (time.perf_counter() - started) / steps, [h["loss"] for h in result.history]


def run_plain(config, kit, batch, steps: int, init_state) -> tuple[float, list[float]]:
    from diffusers.training_utils import compute_density_for_timestep_sampling

    from qwenkit.image.flow import time_shift

    model = kit.denoiser
    model.load_state_dict(init_state)
    model.train()
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.trainer.lr, weight_decay=0.0)
    shift, grid = kit.schedule()[1], kit.grid
    losses = []
    started = time.perf_counter()
    for _ in range(steps):
        with torch.no_grad():
            x0 = kit.codec.encode(batch["target"])
        noise = torch.randn_like(x0)
        u = compute_density_for_timestep_sampling("logit_normal", x0.shape[0], logit_mean=0.0, logit_std=1.0)
        sigma = time_shift(u, shift)
        noisy = (1.0 - sigma.view(-1, 1, 1)) * x0 + sigma.view(-1, 1, 1) * noise
        drop = torch.rand(x0.shape[0]) < config.cfg_dropout
        text, mask = kit.text_encoder.encode(["" if d else p for d, p in zip(drop.tolist(), batch["prompts"],
                                                                               strict=True)])
        out = model.transformer(hidden_states=noisy, encoder_hidden_states=text, encoder_hidden_states_mask=mask,
                                timestep=sigma, img_shapes=[[(1, *grid)]] * x0.shape[0], return_dict=False)[0]
        loss = torch.mean((out.float() - (noise - x0).float()) ** 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.trainer.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return (time.perf_counter() - started) / steps, losses


def sampling_rate(kit, n: int, cfg_scale: float) -> float:
    from qwenkit.image.sample import generate

    prompts = [f'"{c}" black on white' for c in "ABCDEFGHJKLMNPQRSTUVWXYZ"[:n]]
    started = time.perf_counter()
    generate(kit, prompts, steps=20, cfg_scale=cfg_scale)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config, kit, batch = _setup(args.batch_size)
    init_state = {k: v.clone() for k, v in kit.denoiser.state_dict().items()}
    ours, plain, max_diff = [], [], 0.0
    for _ in range(args.repeats):
        t_ours, loss_ours = run_qwenkit(config, kit, batch, args.steps, init_state)
        t_plain, loss_plain = run_plain(config, kit, batch, args.steps, init_state)
        ours.append(t_ours)
        plain.append(t_plain)
        max_diff = max(max_diff, max(abs(a - b) for a, b in zip(loss_ours, loss_plain, strict=True)))
    kit.denoiser.eval()
    result = {
        "config": {"batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
                   "threads": args.threads, "image": f"{config.width}x{config.height}",
                   "image_tokens": kit.grid[0] * kit.grid[1],
                   "params": sum(p.numel() for p in kit.denoiser.parameters())},
        "qwenkit_steps_per_s": 1 / statistics.median(ours),
        "plain_diffusers_steps_per_s": 1 / statistics.median(plain),
        "speed_ratio": statistics.median(plain) / statistics.median(ours),
        "max_abs_loss_difference": max_diff,
        "first_losses": {"qwenkit": loss_ours[:3], "plain": loss_plain[:3]},
        "sampling_images_per_s_cfg3": sampling_rate(kit, 16, 3.0),
        "sampling_images_per_s_no_cfg": sampling_rate(kit, 16, 1.0),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "image_train.json").write_text(json.dumps(result, indent=2) + "\n")
    c = result["config"]
    table = [
        "# image: training loop vs plain diffusers loop",
        "",
        f"Tiny QwenImageTransformer2DModel ({c['params']:,} params), {c['image']} images = {c['image_tokens']} "
        f"tokens, batch {c['batch_size']}, {c['threads']} thread(s), median of {c['repeats']} x {c['steps']} steps.",
        "",
        "| loop | steps/s | ratio vs plain | max abs loss diff |",
        "|---|---|---|---|",
        f"| qwenkit (core.loop.train_loop + make_step_fn) | {result['qwenkit_steps_per_s']:.2f} | "
        f"{result['speed_ratio']:.2f}x | {result['max_abs_loss_difference']:.2e} |",
        f"| plain diffusers-style loop | {result['plain_diffusers_steps_per_s']:.2f} | 1.00x | |",
        "",
        "| sampling (20 Euler steps, batch 16) | images/s |",
        "|---|---|",
        f"| CFG 3 (2 forward passes) | {result['sampling_images_per_s_cfg3']:.1f} |",
        f"| no CFG | {result['sampling_images_per_s_no_cfg']:.1f} |",
        "",
    ]
    (RESULTS / "image_train.md").write_text("\n".join(table))
    print("\n".join(table))


if __name__ == "__main__":
    main()
