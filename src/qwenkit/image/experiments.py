"""Pilot-scale experiments of the Qwen-Image text-rendering recipe on CPU (research note section 6.2), shared by
``qwenkit repro image-text --full`` and ``benchmarks/image_repro_full.py``.

- E1: T2I on single glyphs (34 Latin glyphs, 32x32, plain background), direct training, the pilot's settings
  (dim 96, 3 layers, AdamW lr 1e-3, batch 64, logit-normal t, EMA 0.995, PCA codec 4x4x3 -> 16 whitened comps);
  RapidOCR word accuracy vs step (EMA weights, true CFG 3, 20 Euler steps), final score on >= 300 held-out captions.
- E2: the curriculum arm (non-text -> glyph) with the same settings, against E1's direct arm.
- E3: editing: dual vs semantic-only vs VAE-only conditioning at an equal edit budget (every arm trains on TI2I
  pairs only, same steps, batch 64).

Each function writes ``result*.json`` + ``report.md`` under ``out``; run directories (checkpoints, trained models)
go under ``work`` (not meant to be committed).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Plan:
    """Sizes of one experiment: steps per arm, eval cadence and sample counts, sampler settings, output folders."""

    out: Path
    work: Path
    steps: int = 4000
    eval_every: int = 500
    eval_n: int = 100
    final_n: int = 300
    sample_steps: int = 20
    cfg: float = 3.0
    seed: int = 0
    arms: list[str] = field(default_factory=list)
    small: bool = False
    report_only: bool = False


def quick_config(steps: int, eval_every: int, seed: int, **overrides) -> dict:
    """A glyph task that becomes legible within minutes of one CPU thread: 34 Latin glyphs at 16x16 (4x4 latent
    grid), black on white, one font (DejaVuSans-Bold), batch 32, lr 2e-3, EMA 0.98, PCA to 8 components."""
    config = {
        "width": 16, "height": 16, "batch_size": 32, "ema_decay": 0.98, "target_stage": "glyph", "texture": "plain",
        "curriculum": False, "fg": "black", "bg": "white", "font": "DejaVuSans-Bold", "codec_fit_samples": 256,
        "model": {"layers": 3, "heads": 4, "head_dim": 24, "codec_patch": 4, "codec_channels": 8},
        "trainer": {"max_steps": steps, "lr": 2e-3, "warmup_steps": 10, "eval_every": eval_every, "seed": seed,
                    "checkpoint_every": 0, "log_every": 10},
    }
    config.update(overrides)
    return config


def pilot_config(steps: int, eval_every: int, seed: int, **overrides) -> dict:
    """The research pilot's settings (section 6.1 B) in ``ImageTrainConfig`` terms."""
    config = {
        "width": 32, "height": 32, "batch_size": 64, "ema_decay": 0.995, "target_stage": "glyph", "texture": "plain",
        "curriculum": False, "codec_fit_samples": 1024,
        "model": {"layers": 3, "heads": 4, "head_dim": 24, "codec_patch": 4, "codec_channels": 16},
        "trainer": {"max_steps": steps, "lr": 1e-3, "warmup_steps": 50, "eval_every": eval_every, "seed": seed,
                    "checkpoint_every": 0, "log_every": 10},
    }
    config.update(overrides)
    return config


def run_t2i_arm(name: str, config_dict: dict, out: Path, work: Path, *, eval_n: int, final_n: int, sample_steps: int,
                cfg_scale: float, save_model: bool = True) -> dict:
    """Train one T2I arm with OCR evals along the way; the final EMA model is scored on ``final_n`` captions."""
    from qwenkit.core.config import load_config
    from qwenkit.core.runs import RunDir
    from qwenkit.image.evaluate import evaluate_t2i
    from qwenkit.image.sample import image_grid
    from qwenkit.image.train import ImageTrainConfig, build_kit, save_kit, train

    config = load_config(ImageTrainConfig, config_dict)
    kit = build_kit(config)
    eval_cpu = [0.0]

    def eval_fn(_model) -> dict:
        started = time.process_time()
        scores, _ = evaluate_t2i(kit, eval_n, steps=sample_steps, cfg_scale=cfg_scale)
        eval_cpu[0] += time.process_time() - started
        return {"word_accuracy": scores["word_accuracy"], "ned": scores["ned"]}

    cpu0, wall0 = time.process_time(), time.perf_counter()
    kit, result = train(config, run=RunDir(work / name), kit=kit, eval_fn=eval_fn, quiet=True, description=name)
    train_cpu = time.process_time() - cpu0 - eval_cpu[0]
    wall = time.perf_counter() - wall0
    final, images = evaluate_t2i(kit, final_n, steps=sample_steps, cfg_scale=cfg_scale)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    image_grid([im.resize((im.width * 3, im.height * 3)) for im in images[:32]], columns=8).save(
        out / "plots" / f"samples_{name}.png")
    if save_model:
        save_kit(kit, work / name / "model")
    losses = [h["loss"] for h in result.history]
    tail = losses[-50:]
    return {
        "arm": name, "steps": result.step, "batch": config.batch_size, "final_n": final_n, "eval_n": eval_n,
        "final": {k: v for k, v in final.items()}, "curve": [
            {"step": e["step"], "word_accuracy": e["eval/word_accuracy"], "ned": e["eval/ned"]}
            for e in result.eval_history],
        "loss_first": sum(losses[:10]) / max(1, len(losses[:10])), "loss_last50": sum(tail) / max(1, len(tail)),
        "train_cpu_s": train_cpu, "train_cpu_s_per_step": train_cpu / max(1, result.step), "wall_s": wall,
        "eval_cpu_s": eval_cpu[0], "sample_steps": sample_steps, "cfg_scale": cfg_scale,
        "config": config.model_dump(mode="json"),
    }


def t2i_report(title: str, intro: str, arms: list[dict], out: Path) -> None:
    from qwenkit.core.report import Report

    report = Report(title)
    report.text(intro)
    add_t2i_section(report, arms, out)
    report.write(out)


def add_t2i_section(report, arms: list[dict], out: Path) -> None:
    """Final scores per arm, OCR accuracy vs step (table and curve) and each arm's sample grid."""
    from qwenkit.core.plots import line_plot

    report.table([{"arm": a["arm"], "steps": a["steps"], "batch": a["batch"],
                   f"OCR word acc (n={a['final_n']})": a["final"]["word_accuracy"], "NED": a["final"]["ned"],
                   "loss (last 50)": a["loss_last50"], "train CPU-s/step": a["train_cpu_s_per_step"],
                   "train CPU-s": a["train_cpu_s"]} for a in arms],
                 caption="final EMA model, RapidOCR on held-out captions; chance = 1/34 = 0.029")
    curve_rows = []
    for a in arms:
        curve_rows += [{"arm": a["arm"], "step": c["step"], f"word acc (n={a['eval_n']})": c["word_accuracy"],
                        "NED": c["ned"]} for c in a["curve"]]
    report.table(curve_rows, caption="OCR vs step (EMA weights)")
    report.image(line_plot(out / "plots" / "ocr_vs_step.png",
                           {a["arm"]: ([c["step"] for c in a["curve"]], [c["word_accuracy"] for c in a["curve"]])
                            for a in arms}, ylabel="OCR word accuracy", title="OCR accuracy vs step"),
                 "OCR word accuracy vs step")
    for a in arms:
        report.image(out / "plots" / f"samples_{a['arm']}.png", f"samples, {a['arm']} (held-out captions, x3)")


CURRICULUM = {"phases": [{"until": 0.1, "mix": {"non_text": 1.0}},
                         {"until": 1.0, "mix": {"glyph": 0.9, "non_text": 0.1}}]}
E1_INTRO = ("A 1.07 M-parameter `QwenImageTransformer2DModel` (dim 96, 3 layers) trained with rectified flow on "
            "34 Latin glyphs rendered at 32x32 (5 DejaVu fonts, random contrasting colours, plain background), "
            "conditioned on a frozen tiny Qwen3 encoding of the caption (`\"Q\" red on white`). Settings as the "
            "research pilot: AdamW lr 1e-3, batch 64, logit-normal t with the resolution shift, EMA 0.995, PCA "
            "codec 4x4x3 -> 16 whitened components. Sampling: 20 Euler steps, true CFG 3.")


def _t2i_kwargs(plan: Plan) -> dict:
    return {"eval_n": plan.eval_n, "final_n": plan.final_n, "sample_steps": plan.sample_steps, "cfg_scale": plan.cfg}


def e1(plan: Plan) -> dict:
    """E1: pilot-scale T2I glyphs, direct training."""
    out = plan.out / "image_e1"
    arm = run_t2i_arm("direct", pilot_config(plan.steps, plan.eval_every, plan.seed), out, plan.work / "e1",
                      **_t2i_kwargs(plan))
    (out / "result.json").write_text(json.dumps(arm, indent=2))
    t2i_report("E1: text-to-image glyphs, pilot settings", E1_INTRO, [arm], out)
    return arm


def e2(plan: Plan) -> list[dict]:
    """E2: curriculum (10% non-text first, then 90/10 glyph/non-text) vs direct, same steps and seed.

    ``plan.small``: the 16x16 fixed-colour task of :func:`quick_config` instead of the pilot's 32x32 one."""
    out = plan.out / ("image_e2_small" if plan.small else "image_e2")
    make = quick_config if plan.small else pilot_config
    for name, extra in (("curriculum", {"schedule": CURRICULUM}), ("direct", {})):
        if name in (plan.arms or ["curriculum", "direct"]) and not plan.report_only:
            arm = run_t2i_arm(name, make(plan.steps, plan.eval_every, plan.seed, **extra), out, plan.work / out.name,
                              save_model=not plan.small, **_t2i_kwargs(plan))
            (out / f"result_{name}.json").write_text(json.dumps(arm, indent=2))
    e1_result = plan.out / "image_e1" / "result.json"
    if not plan.small and not (out / "result_direct.json").is_file() and e1_result.is_file():
        # E1 is the direct arm (same config, seed and batches): reuse it when it ran for the same steps
        direct = json.loads(e1_result.read_text())
        if direct["steps"] == plan.steps:
            (out / "result_direct.json").write_text(json.dumps(direct, indent=2))
            (out / "plots").mkdir(parents=True, exist_ok=True)
            (out / "plots" / "samples_direct.png").write_bytes(
                (plan.out / "image_e1" / "plots" / "samples_direct.png").read_bytes())
    arms = [json.loads((out / f"result_{n}.json").read_text()) for n in ("curriculum", "direct")
            if (out / f"result_{n}.json").is_file()]
    (out / "result.json").write_text(json.dumps(arms, indent=2))
    task = ("34 Latin glyphs at 16x16, black on white, DejaVuSans-Bold, batch 32 (the quick task)" if plan.small
            else "the E1 task and settings")
    t2i_report("E2: curriculum (non-text -> glyphs) vs direct", f"Task: {task}. The curriculum arm spends the first "
               "10% of steps on non-text renders (coloured shapes, captions like `red circle on blue`) and keeps 10% "
               "non-text afterwards; the direct arm trains on glyphs only. Same seed, same evaluation captions.",
               arms, out)
    return arms


EDIT_INTRO = ("Edit pairs rendered with the synthesiser, so every edit has an exact ground truth: change the glyph "
              "(`replace with \"K\"`), the colour (`make text red`) or the position (`move text left`). Equal "
              "budgets: every arm trains on the same edit pairs, same steps and seed; only the channels that carry "
              "the source image differ (semantic tokens through the condition encoder, VAE latents beside the noisy "
              "latents, or both). Sampling: CFG 2 on the instruction (image conditions kept in both branches). Two "
              "reference rows need no model: `ground truth` scores the rendered targets (the ceiling, and how well "
              "the OCR reads these renders) and `no edit` scores the unchanged source (what copying the input "
              "earns: full consistency, no instruction followed).")
EDIT_COLORS = ["black", "red", "green", "blue"]


def edit_task_config(steps: int, seed: int, *, kinds: tuple[str, ...] = ("color",), **overrides) -> dict:
    """The quick edit task, small enough that a few CPU-minutes per arm show the edit: 34 Latin glyphs at 16x16
    (4x4 latent grid), one font (DejaVuSans-Bold) on white, text in black, red, green or blue; ``kinds`` of edits
    (default: colour edits only)."""
    return quick_config(steps, 0, seed, edit_kinds=list(kinds), edit_colors=EDIT_COLORS, **overrides)


def _summary(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if k != "pairs"}


def run_edit_arm(conditioning: str, config_dict: dict, out: Path, work: Path, *, n: int, sample_steps: int,
                 cfg_scale: float = 2.0, shown: int = 8) -> dict:
    """Train one editing arm (TI2I pairs only) and score ``n`` held-out edits; saves a source | edited | ground truth
    grid of the first ``shown`` pairs, whose per-pair metrics come back in ``shown_pairs``."""
    from qwenkit.core.config import load_config
    from qwenkit.core.runs import RunDir
    from qwenkit.image.evaluate import evaluate_edit
    from qwenkit.image.train import ImageTrainConfig, train

    config = load_config(ImageTrainConfig, {**config_dict, "tasks": {"ti2i": 1.0},
                                            "edit_conditioning": conditioning})
    cpu0, wall0 = time.process_time(), time.perf_counter()
    kit, result = train(config, run=RunDir(work / conditioning), quiet=True, description=f"edit {conditioning}")
    train_cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    scores, triples = evaluate_edit(kit, n, steps=sample_steps, cfg_scale=cfg_scale)
    _save_edit_grid(out / "plots" / f"edit_{conditioning}.png", triples[:shown])
    losses = [h["loss"] for h in result.history]
    return {"conditioning": conditioning, "steps": result.step, "batch": config.batch_size, **_summary(scores),
            "shown_pairs": scores["pairs"][:shown], "loss_last50": sum(losses[-50:]) / len(losses[-50:]),
            "train_cpu_s": train_cpu, "wall_s": wall}


def reference_edit_rows(config_dict: dict, n: int, *, seed: int = 20_011) -> list[dict]:
    """The two model-free rows on the held-out pairs of an arm's config: ``ground truth`` (the rendered targets)
    and ``no edit`` (the unchanged sources)."""
    from qwenkit.core.config import load_config
    from qwenkit.image.evaluate import edit_eval_set, score_edits
    from qwenkit.image.train import ImageTrainConfig

    config = load_config(ImageTrainConfig, {**config_dict, "tasks": {"ti2i": 1.0}})
    pairs = edit_eval_set(config, n, seed)
    rows = []
    for name, images in (("ground truth", [p.target.image() for p in pairs]),
                         ("no edit", [p.source.image() for p in pairs])):
        rows.append({"conditioning": name, **_summary(score_edits(pairs, images, palette=config.edit_colors))})
    return rows


def _save_edit_grid(path: Path, triples: list) -> None:
    from qwenkit.image.sample import image_grid

    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid([im.resize((96, 96)) for triple in triples for im in triple], columns=6).save(path)


INSTRUCTION_FOLLOWED = {"color": "colour_applied", "word": "new_text_ocr", "position": "moved_as_told"}
KIND_METRICS = {"color": ("colour_applied", "glyph_colour_error", "text_kept_ocr", "psnr_outside_edit"),
                "word": ("new_text_ocr", "psnr_outside_edit"),
                "position": ("moved_as_told", "text_kept_ocr", "psnr_outside_edit")}


def add_edit_section(report, rows: list[dict], out: Path, *, reference: list[dict] = ()) -> None:
    """Per edit kind a table of the metrics that kind is judged by (arms and the model-free reference rows), what
    each metric measures, a consistency-vs-instruction scatter, and each arm's grid with what it shows in words."""
    from qwenkit.core.plots import scatter_plot
    from qwenkit.image.evaluate import EDIT_METRICS

    every = [*reference, *rows]
    kinds = [k for k in ("color", "word", "position") if any(k in r["by_kind"] for r in every)]
    report.table([{"conditioning": r["conditioning"], "n": r["n"], "psnr_to_target": r["psnr_to_target"],
                   "psnr_outside_edit": r.get("psnr_outside_edit", float("nan")),
                   "changed_outside_edit": r.get("changed_outside_edit", float("nan")),
                   **({"loss (last 50)": r["loss_last50"], "train CPU-s": r["train_cpu_s"]}
                      if "loss_last50" in r else {})} for r in every],
                 caption="all held-out pairs (every kind): closeness to the ground truth and consistency outside "
                         "the edit region")
    for kind in kinds:
        metrics = KIND_METRICS[kind]
        report.table([{"conditioning": r["conditioning"], "n": r["by_kind"][kind]["n"],
                       **{m: r["by_kind"][kind].get(m, float("nan")) for m in metrics}}
                      for r in every if kind in r["by_kind"]],
                     caption=f"{kind} edits: instruction followed (`{INSTRUCTION_FOLLOWED[kind]}`) vs text kept and "
                             "consistency")
    used = [m for m in EDIT_METRICS if m in {"psnr_to_target", "changed_outside_edit"}
            or any(m in KIND_METRICS[k] for k in kinds)]
    report.text("What each metric measures:\n\n" + "\n".join(f"- `{m}`: {EDIT_METRICS[m]}" for m in used))
    main = kinds[0]
    followed = INSTRUCTION_FOLLOWED[main]
    report.image(scatter_plot(out / "plots" / "edit_tradeoff.png",
                              {r["conditioning"]: (r["by_kind"][main]["psnr_outside_edit"],
                                                   r["by_kind"][main][followed]) for r in every},
                              xlabel="PSNR outside the edit region (dB): consistency",
                              ylabel=f"{followed} ({main} edits): instruction followed",
                              title="Editing: consistency vs instruction followed"),
                 f"consistency vs instruction followed on {main} edits, per conditioning (the `no edit` point is "
                 "what copying the source scores)")
    no_edit = next((r for r in reference if r["conditioning"] == "no edit"), None)
    ground_truth = next((r for r in reference if r["conditioning"] == "ground truth"), None)
    for row in rows:
        report.image(out / "plots" / f"edit_{row['conditioning']}.png",
                     f"{row['conditioning']}: source | edited | ground truth (two pairs per row)")
        report.text(describe_edit_grid(row, no_edit, ground_truth))


def describe_edit_grid(row: dict, no_edit: dict | None, ground_truth: dict | None = None) -> str:
    """What an arm's grid shows, in words, from the metrics of the pairs it shows and of all held-out pairs; says
    outright when the arm does not follow the instruction more often than copying the source does, and, for colour
    edits, when the colour is far from the instructed one although it is the nearest of the text colours (the
    glyph colour error above three times the rendered ground truth's)."""
    shown = row["shown_pairs"]
    parts = []
    for kind in ("color", "word", "position"):
        pairs = [p for p in shown if p["kind"] == kind]
        if kind not in row["by_kind"]:
            continue
        followed = INSTRUCTION_FOLLOWED[kind]
        rate = row["by_kind"][kind][followed]
        what = {"color": "the instructed colour applied", "word": "the new text legible",
                "position": "the text moved the instructed way"}[kind]
        sentence = (f"{kind} edits: {what} in {sum(p[followed] for p in pairs):.0f} of the {len(pairs)} shown "
                    f"({rate:.2f} of {row['by_kind'][kind]['n']} held-out pairs)")
        if "text_kept_ocr" in row["by_kind"][kind]:
            sentence += (f"; the source text still read by OCR in {sum(p['text_kept_ocr'] for p in pairs):.0f} of "
                         f"{len(pairs)} ({row['by_kind'][kind]['text_kept_ocr']:.2f} overall)")
        error = row["by_kind"][kind].get("glyph_colour_error")
        exact = (ground_truth or {}).get("by_kind", {}).get(kind, {}).get("glyph_colour_error")
        if error is not None and exact is not None:
            sentence += (f"; mean RGB distance to the instructed colour inside the glyph {error:.0f} of 441 "
                         f"(rendered ground truth {exact:.0f})")
            if error > 3 * exact:
                sentence += ", so the colour is only approximately the instructed one"
        baseline = no_edit["by_kind"][kind][followed] if no_edit and kind in no_edit["by_kind"] else 0.0
        if rate <= baseline + 0.05:
            sentence += (f". **This arm shows no {kind} edit**: it follows the instruction no more often than "
                         f"returning the source unchanged does ({baseline:.2f})")
        parts.append(sentence + ".")
    return f"**{row['conditioning']}** ({row['steps']} steps): " + " ".join(parts)


def e3(plan: Plan) -> list[dict]:
    """E3: editing with dual encoding vs semantic-only vs VAE-only (pilot settings, 32x32 glyphs).

    Equal budgets: every arm trains on the same TI2I edit pairs (no I2I reconstruction batches), same steps and seed,
    so the arms differ only in which channels carry the source image."""
    from qwenkit.core.report import Report

    out = plan.out / "image_e3"
    config = pilot_config(plan.steps, 0, plan.seed)
    for name in [] if plan.report_only else plan.arms or ["dual", "semantic", "vae"]:
        row = run_edit_arm(name, config, out, plan.work / "e3", n=plan.final_n, sample_steps=plan.sample_steps)
        (out / f"result_{name}.json").write_text(json.dumps(row, indent=2))
    rows = [json.loads((out / f"result_{n}.json").read_text()) for n in ("dual", "semantic", "vae")
            if (out / f"result_{n}.json").is_file()]
    reference = reference_edit_rows(config, plan.final_n)
    (out / "result.json").write_text(json.dumps({"arms": rows, "reference": reference}, indent=2))
    report = Report("E3: editing, dual encoding vs semantic-only vs VAE-only")
    report.text(f"Same model and optimiser settings as E1 (32x32 glyphs, batch 64), {plan.sample_steps} Euler steps. "
                + EDIT_INTRO)
    add_edit_section(report, rows, out, reference=reference)
    report.write(out)
    return rows


def edit_study(title: str, intro: str, config_dict: dict, out: Path, work: Path, *, n: int, sample_steps: int,
               run_arms=None) -> list[dict]:
    """The three conditioning arms on one edit task and the two model-free reference rows: ``result.json`` and a
    report under ``out``. ``run_arms(jobs)`` runs the three ``(fn, args, kwargs)`` arm jobs (default: one after the
    other) and returns their rows in order."""
    from qwenkit.core.report import Report

    jobs = [(run_edit_arm, (c, config_dict, out, work), {"n": n, "sample_steps": sample_steps})
            for c in ("dual", "semantic", "vae")]
    rows = run_arms(jobs) if run_arms else [fn(*args, **kwargs) for fn, args, kwargs in jobs]
    reference = reference_edit_rows(config_dict, n)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"arms": rows, "reference": reference}, indent=2))
    report = Report(title)
    report.text(intro + " " + EDIT_INTRO)
    add_edit_section(report, rows, out, reference=reference)
    report.write(out)
    return rows
