"""Quick reproductions (``qwenkit demo``) and pilot-scale runs (``qwenkit repro NAME --full``).

``image-text`` (quick): the tiny MMDiT learns to render 34 Latin glyphs at 16x16 (black on white, one font, batch 32,
500 steps) with and without the curriculum: RapidOCR word accuracy of held-out captions vs step (EMA weights) and
sample grids. ``--full``: E1 (pilot-scale glyphs: 32x32, random colours, 5 fonts, batch 64, 4,000 steps) and E2
(curriculum vs direct on that task); see :mod:`qwenkit.image.experiments`.

``image-edit`` (quick): dual encoding vs semantic-only vs VAE-only editing at equal budgets on a task small enough
that the edit shows within the budget: colour edits (`make text red`) of 16x16 glyphs in one font on white, text in
four colours, 300 steps of batch 32 per arm; metrics named for what they measure (the instructed colour inside the
glyph mask vs the text kept vs consistency outside the edit). ``--full``: the same task with all three edit kinds
(colour, position, word) and a larger budget.
"""

from __future__ import annotations

from qwenkit.core.repro import Repro, ReproContext

QUICK_T2I_STEPS = 500
QUICK_EDIT_STEPS, FULL_EDIT_STEPS = 300, 600


def run_image_text(ctx: ReproContext) -> str:
    import torch

    if ctx.threads is None:
        torch.set_num_threads(1)
    if ctx.full:
        return _full_text(ctx)
    return _quick_text(ctx)


def _full_text(ctx: ReproContext) -> str:
    from qwenkit.core.report import Report
    from qwenkit.image.experiments import Plan, e1, e2

    plan = Plan(out=ctx.run.path, work=ctx.run.path / "runs", seed=ctx.seed)
    first = e1(plan)
    curriculum = e2(Plan(out=ctx.run.path, work=ctx.run.path / "runs", seed=ctx.seed, arms=["curriculum"]))
    report = Report("Qwen-Image text rendering: full reproduction")
    report.text("Reports: [E1 glyphs](image_e1/report.md), [E2 curriculum](image_e2/report.md).")
    report.write(ctx.run.path)
    return (f"E1 OCR {first['final']['word_accuracy']:.2f} at {first['steps']} steps; curriculum "
            f"{curriculum[0]['final']['word_accuracy']:.2f}")


def _quick_text(ctx: ReproContext) -> str:
    import json

    from qwenkit.core.report import Report
    from qwenkit.image.experiments import CURRICULUM, add_t2i_section, quick_config, run_t2i_arm

    out, work = ctx.run.path, ctx.run.path / "runs"
    jobs = [(run_t2i_arm, (name, quick_config(QUICK_T2I_STEPS, 100, ctx.seed, **extra), out, work),
             {"eval_n": 50, "final_n": 100, "sample_steps": 12, "cfg_scale": 3.0, "save_model": False})
            for name, extra in (("direct", {}), ("curriculum", {"schedule": CURRICULUM}))]
    t2i = _run_arms(jobs)
    (out / "result.json").write_text(json.dumps({"t2i": t2i}, indent=2))
    report = Report("Qwen-Image text rendering: a tiny MMDiT learns glyphs with and without the curriculum (quick)")
    report.text(
        "A 1.07 M-parameter `QwenImageTransformer2DModel` (diffusers MMDiT with MSRoPE, 3 layers, dim 96) trained "
        "with rectified flow (logit-normal timesteps with Qwen-Image's resolution shift), 10% CFG dropout and EMA, "
        "over a fixed PCA patch codec, conditioned on a frozen tiny Qwen3 (`qwenkit.lm`) encoding of the caption "
        "(`\"Q\" black on white`). Task sized for the quick budget: 34 Latin glyphs at 16x16, black on white, one "
        f"font, batch 32, {QUICK_T2I_STEPS} steps per arm. Scores: RapidOCR exact match of held-out captions "
        "(chance 1/34). The curriculum arm spends the first 10% of steps on non-text renders (coloured shapes) and "
        "keeps 10% non-text afterwards; the direct arm trains on glyphs only. Same seed and evaluation captions. At "
        "this scale the curriculum's non-text steps are steps not spent on glyphs; the pilot-scale run is "
        "`benchmarks/results/image_e2`. Editing is the `image-edit` reproduction.")
    add_t2i_section(report, t2i, out)
    report.write(out)
    by_arm = {a["arm"]: a["final"]["word_accuracy"] for a in t2i}
    return (f"OCR word accuracy direct {by_arm['direct']:.2f} / curriculum {by_arm['curriculum']:.2f} after "
            f"{QUICK_T2I_STEPS} steps (n=100)")


def run_image_edit(ctx: ReproContext) -> str:
    import torch

    from qwenkit.image.experiments import edit_study, edit_task_config

    if ctx.threads is None:
        torch.set_num_threads(1)
    out = ctx.run.path
    if ctx.full:
        config = edit_task_config(FULL_EDIT_STEPS, ctx.seed, kinds=("color", "position", "word"))
        intro = (f"Full run: the quick task's look (16x16 glyphs, DejaVuSans-Bold on white, text in black, red, "
                 f"green or blue) with all three edit kinds drawn evenly, {FULL_EDIT_STEPS} steps of batch 32 per "
                 "arm, 120 held-out pairs (about 40 per kind), 12 Euler steps.")
        rows = edit_study("Qwen-Image editing: dual vs semantic vs VAE, three edit kinds (full)", intro, config,
                          out, out / "runs", n=120, sample_steps=12,
                          run_arms=_run_arms)
    else:
        config = edit_task_config(QUICK_EDIT_STEPS, ctx.seed)
        intro = ("A 1.07 M-parameter `QwenImageTransformer2DModel` (3 layers, dim 96) over a fixed PCA patch codec, "
                 "trained with rectified flow on edit pairs only. Task sized so the edit can show within the quick "
                 f"budget: colour edits (`make text red`) of 34 Latin glyphs at 16x16, one font (DejaVuSans-Bold) on "
                 f"white, text in black, red, green or blue; {QUICK_EDIT_STEPS} steps of batch 32 per arm; 100 "
                 "held-out pairs, 12 Euler steps. Glyph and position edits are in the `--full` run.")
        rows = edit_study("Qwen-Image editing: dual encoding vs semantic-only vs VAE-only (quick)", intro, config,
                          out, out / "runs", n=100, sample_steps=12,
                          run_arms=_run_arms)
    by = {r["conditioning"]: r for r in rows}
    return "colour applied / text kept / outside PSNR dB: " + ", ".join(
        f"{c} {by[c]['by_kind']['color']['colour_applied']:.2f}/{by[c]['by_kind']['color']['text_kept_ocr']:.2f}/"
        f"{by[c]['by_kind']['color']['psnr_outside_edit']:.1f}" for c in ("dual", "semantic", "vae"))


def _run_arms(jobs: list) -> list:
    """Independent training arms ``(fn, args, kwargs)`` in one worker process per usable core, one torch thread each,
    whatever ``--threads`` says: the tiny MMDiT's matrices are too small for intra-op threads to pay, and on a loaded
    machine two threads per arm spin-wait at several times the CPU time. Each arm is seeded on its own, so the
    results do not depend on where it ran; results in the order of ``jobs``."""
    from qwenkit.core.parallel import run_in_processes

    return run_in_processes(_call, jobs, threads=1)


def _call(fn, args: tuple, kwargs: dict):
    return fn(*args, **kwargs)


REPROS = [
    Repro(name="image-text", title="Qwen-Image: a tiny MMDiT learns glyphs with and without the curriculum",
          run=run_image_text, quick_minutes=3.5, order=60),
    Repro(name="image-edit", title="Qwen-Image editing: dual vs semantic vs VAE conditioning, the edit visible",
          run=run_image_edit, quick_minutes=4.3, order=61),
]
