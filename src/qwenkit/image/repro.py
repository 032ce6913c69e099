"""Quick reproduction (``qwenkit demo``) and pilot-scale run (``qwenkit repro image-text --full``).

Quick (about 4 minutes on one core), all at 16x16 with batch 32: the tiny MMDiT learns to render 34 Latin glyphs
(black on white, one font, 500 steps) with and without the curriculum, RapidOCR word accuracy of held-out captions
vs step (EMA weights) and sample grids; then three editing arms (dual encoding, semantic-only, VAE-only; 300 steps of
colour-edit pairs each) on the consistency (PSNR outside the edit region) vs success (OCR of the edit) trade-off.

Full (hours on one core; see :mod:`qwenkit.image.experiments`): E1 pilot-scale T2I glyphs (32x32, random colours,
5 fonts, batch 64, 4,000 steps), E2 curriculum vs direct on the same task, E3 dual vs semantic-only vs VAE-only
editing at 2,000 steps of batch 64. The measured results are committed under ``benchmarks/results/image_e*``.
"""

from __future__ import annotations

from qwenkit.core.repro import Repro, ReproContext


def run_image_text(ctx: ReproContext) -> str:
    import torch

    from qwenkit.image.experiments import Plan, e1, e2, e3

    if ctx.threads is None:
        torch.set_num_threads(1)
    if ctx.full:
        plan = Plan(out=ctx.run.path, work=ctx.run.path / "runs", seed=ctx.seed)
        first = e1(plan)
        curriculum = e2(Plan(out=ctx.run.path, work=ctx.run.path / "runs", seed=ctx.seed, arms=["curriculum"]))
        edits = e3(Plan(out=ctx.run.path, work=ctx.run.path / "runs", seed=ctx.seed, steps=2000))
        _index_report(ctx)
        by_edit = {r["conditioning"]: r for r in edits}
        return (f"E1 OCR {first['final']['word_accuracy']:.2f} at {first['steps']} steps; curriculum "
                f"{curriculum[0]['final']['word_accuracy']:.2f}; edit PSNR dual {by_edit['dual']['psnr_to_target']:.1f}"
                f" / semantic {by_edit['semantic']['psnr_to_target']:.1f} / VAE {by_edit['vae']['psnr_to_target']:.1f}")
    return _quick(ctx)


QUICK_T2I_STEPS, QUICK_EDIT_STEPS = 500, 300


def _quick(ctx: ReproContext) -> str:
    import json

    from qwenkit.core.report import Report
    from qwenkit.image.experiments import (
        CURRICULUM,
        EDIT_INTRO,
        add_edit_section,
        add_t2i_section,
        quick_config,
        run_edit_arm,
        run_t2i_arm,
    )

    out, work = ctx.run.path, ctx.run.path / "runs"
    edit_config = quick_config(QUICK_EDIT_STEPS, 0, ctx.seed, edit_kinds=["color"])
    jobs = [(run_t2i_arm, (name, quick_config(QUICK_T2I_STEPS, 100, ctx.seed, **extra), out, work),
             {"eval_n": 50, "final_n": 100, "sample_steps": 12, "cfg_scale": 3.0, "save_model": False})
            for name, extra in (("direct", {}), ("curriculum", {"schedule": CURRICULUM}))]
    jobs += [(run_edit_arm, (c, edit_config, out, work / "edit"), {"n": 100, "sample_steps": 12})
             for c in ("dual", "semantic", "vae")]
    results = _run_arms(jobs, threads=ctx.threads or 1)
    t2i, edits = results[:2], results[2:]
    (out / "result.json").write_text(json.dumps({"t2i": t2i, "edit": edits}, indent=2))
    report = Report("Qwen-Image text rendering and editing: a tiny MMDiT (quick)")
    report.text(
        "A 1.07 M-parameter `QwenImageTransformer2DModel` (diffusers MMDiT with MSRoPE, 3 layers, dim 96) trained "
        "with rectified flow (logit-normal timesteps with Qwen-Image's resolution shift), 10% CFG dropout and EMA, "
        "over a fixed PCA patch codec, conditioned on a frozen tiny Qwen3 (`qwenkit.lm`) encoding of the caption "
        "(`\"Q\" black on white`). Task sized for the quick budget: 34 Latin glyphs at 16x16, black on white, one "
        f"font, batch 32, {QUICK_T2I_STEPS} steps per arm. Scores: RapidOCR exact match of held-out captions "
        "(chance 1/34).")
    report.heading("Text rendering: direct vs curriculum")
    report.text("The curriculum arm spends the first 10% of steps on non-text renders (coloured shapes) and keeps 10% "
                "non-text afterwards; the direct arm trains on glyphs only. Same seed and evaluation captions. At "
                "this scale the curriculum's non-text steps are steps not spent on glyphs; the pilot-scale run is "
                "`benchmarks/results/image_e2`.")
    add_t2i_section(report, t2i, out)
    report.heading("Editing: dual encoding vs semantic-only vs VAE-only")
    report.text(f"Sized for the quick budget: colour edits only (`make text red`: the glyph, its font and position "
                f"must survive) on 16x16 glyphs in random colours, {QUICK_EDIT_STEPS} steps of batch 32 per arm, 12 "
                "Euler steps; at this budget glyph and position edits stay at chance in every arm. "
                + EDIT_INTRO + " The pilot-scale ablation with all three edit kinds (32x32, batch 64, 2,000 steps) is "
                "`benchmarks/results/image_e3`.")
    add_edit_section(report, edits, out)
    report.write(out)
    by_arm = {a["arm"]: a["final"]["word_accuracy"] for a in t2i}
    by_edit = {e["conditioning"]: e for e in edits}
    return (f"OCR word accuracy direct {by_arm['direct']:.2f} / curriculum {by_arm['curriculum']:.2f} after "
            f"{QUICK_T2I_STEPS} steps; edits (outside PSNR dB, OCR success): " + ", ".join(
                f"{c} {by_edit[c].get('outside_psnr', float('nan')):.1f}/{by_edit[c]['ocr_success']:.2f}"
                for c in ("dual", "semantic", "vae")))


def _run_arms(jobs: list, *, threads: int) -> list:
    """Run independent training arms, one worker process per ``threads`` usable cores (each arm is seeded on its
    own, so the results do not depend on where it ran); in order of ``jobs``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from qwenkit.core.system import usable_cores

    workers = max(1, min(len(jobs), usable_cores() // threads))
    if workers == 1:
        return [_run_arm(threads, fn, args, kwargs) for fn, args, kwargs in jobs]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_run_arm, threads, fn, args, kwargs) for fn, args, kwargs in jobs]
        return [f.result() for f in futures]


def _run_arm(threads: int, fn, args: tuple, kwargs: dict):
    import torch

    torch.set_num_threads(threads)
    return fn(*args, **kwargs)


def _index_report(ctx: ReproContext) -> None:
    from qwenkit.core.report import Report

    report = Report("Qwen-Image text rendering: full reproduction")
    report.text("Reports: [E1 glyphs](image_e1/report.md), [E2 curriculum](image_e2/report.md), "
                "[E3 edit ablation](image_e3/report.md).")
    report.write(ctx.run.path)


REPROS = [
    Repro(name="image-text", title="Qwen-Image: a tiny MMDiT learns glyphs with and without the curriculum; "
          "dual vs semantic vs VAE editing",
          run=run_image_text, quick_minutes=4.0, order=60),
]
