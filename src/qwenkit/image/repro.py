"""Quick reproduction (``qwenkit demo``) and pilot-scale run (``qwenkit repro image-text --full``).

Quick (~1-2 min on one core): the tiny MMDiT learns to render 34 Latin glyphs at 16x16 (black on white, one font,
batch 32, 500 steps); RapidOCR word accuracy of held-out captions vs step (EMA weights) goes from chance to
legible, with a sample grid. Nothing else fits in that budget with a measurable effect: the curriculum and
dual-encoding comparisons (arms at chance at this scale) run only under ``--full``.

Full (hours on one core; see :mod:`qwenkit.image.experiments`): E1 pilot-scale T2I glyphs (32x32, random colours,
5 fonts, batch 64, 4,000 steps), E2 curriculum vs direct on the same task, E3 dual vs semantic-only vs VAE-only
editing at 1,000 steps of batch 64. The measured results are committed under ``benchmarks/results/image_e*``.
"""

from __future__ import annotations

from qwenkit.core.repro import Repro, ReproContext


def run_image_text(ctx: ReproContext) -> str:
    import json

    import torch

    from qwenkit.image.experiments import Plan, e1, e2, e3, quick_config, run_t2i_arm, t2i_report

    if ctx.threads is None:
        torch.set_num_threads(1)
    if ctx.full:
        plan = Plan(out=ctx.run.path, work=ctx.run.path / "runs", seed=ctx.seed)
        first = e1(plan)
        curriculum = e2(Plan(out=ctx.run.path, work=ctx.run.path / "runs", seed=ctx.seed, arms=["curriculum"]))
        edits = e3(Plan(out=ctx.run.path, work=ctx.run.path / "runs", seed=ctx.seed, steps=1000))
        _index_report(ctx)
        by_edit = {r["conditioning"]: r for r in edits}
        return (f"E1 OCR {first['final']['word_accuracy']:.2f} at {first['steps']} steps; curriculum "
                f"{curriculum[0]['final']['word_accuracy']:.2f}; edit PSNR dual {by_edit['dual']['psnr_to_target']:.1f}"
                f" / semantic {by_edit['semantic']['psnr_to_target']:.1f} / VAE {by_edit['vae']['psnr_to_target']:.1f}")
    steps = 500
    arm = run_t2i_arm("glyphs16", quick_config(steps, 100, ctx.seed), ctx.run.path, ctx.run.path / "runs",
                      eval_n=50, final_n=100, sample_steps=12, cfg_scale=3.0, save_model=False)
    (ctx.run.path / "result.json").write_text(json.dumps(arm, indent=2))
    t2i_report(
        "Qwen-Image text rendering: a tiny MMDiT learns glyphs (quick)",
        "A 1.07 M-parameter `QwenImageTransformer2DModel` (diffusers MMDiT with MSRoPE, 3 layers, dim 96) trained "
        "with rectified flow (logit-normal timesteps with Qwen-Image's resolution shift), 10% CFG dropout and EMA, "
        "over a fixed PCA patch codec, conditioned on a frozen tiny Qwen3 (`qwenkit.lm`) encoding of the caption "
        "(`\"Q\" black on white`). Task sized for the quick budget: 34 Latin glyphs at 16x16, black on white, one "
        "font, batch 32. Scores: RapidOCR exact match of held-out captions (chance 1/34). The pilot-scale "
        "experiments (32x32, random colours, curriculum and edit ablations) are `qwenkit repro image-text --full`; "
        "their measured results are in `benchmarks/results/image_e1`, `image_e2*`, `image_e3`.",
        [arm], ctx.run.path)
    curve = ", ".join(f"{c['step']}: {c['word_accuracy']:.2f}" for c in arm["curve"])
    return f"OCR word accuracy by step {curve}; final {arm['final']['word_accuracy']:.2f} (n={arm['final_n']})"


def _index_report(ctx: ReproContext) -> None:
    from qwenkit.core.report import Report

    report = Report("Qwen-Image text rendering: full reproduction")
    report.text("Reports: [E1 glyphs](image_e1/report.md), [E2 curriculum](image_e2/report.md), "
                "[E3 edit ablation](image_e3/report.md).")
    report.write(ctx.run.path)


REPROS = [
    Repro(name="image-text", title="Qwen-Image: a tiny MMDiT learns to render glyphs (OCR vs steps)",
          run=run_image_text, quick_minutes=2.0, order=60),
]
