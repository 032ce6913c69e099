"""``qwenkit image``: synth, train, finetune, generate, edit, eval-text, bench-text (heavy imports inside commands)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from qwenkit.core.cli_options import (
    ConfigOption,
    QuietOption,
    ResumeOption,
    SeedOption,
    SetOption,
    ThreadsOption,
    apply_run_options,
    with_seed,
)

app = typer.Typer(help="Qwen-Image: text-rendering data synthesis, tiny MMDiT training, generation, editing, "
                  "OCR-scored evaluation.", no_args_is_help=True)

HeightOpt = Annotated[int | None, typer.Option("--height", min=8, help="Output height in pixels (a multiple of "
                                               "the model's latent factor: 16 for Qwen-Image).")]
WidthOpt = Annotated[int | None, typer.Option("--width", min=8, help="Output width in pixels (same rule).")]


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder (shards + manifest.json).")] = Path("runs/synth"),
    config: ConfigOption = None,
    set_: SetOption = None,
    seed: SeedOption = None,
    quiet: QuietOption = False,
) -> None:
    """Render text images (pure / compositional / layout, EN + ZH) with captions, sharded, optionally OCR-filtered."""
    from qwenkit.core.config import load_config
    from qwenkit.core.progress import set_quiet
    from qwenkit.image.synth import SynthConfig, synthesize

    set_quiet(True if quiet else None)
    cfg = load_config(SynthConfig, config, with_seed(set_, seed, "seed"))
    manifest = synthesize(cfg, out)
    typer.echo(f"wrote {manifest['kept']} samples in {len(manifest['shards'])} shards to {out} "
               f"({manifest['dropped_by_ocr']} dropped by the OCR filter)")


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/image-train"),
    config: ConfigOption = None,
    set_: SetOption = None,
    seed: SeedOption = None,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
    resume: ResumeOption = None,
    eval_samples: Annotated[int, typer.Option("--eval-samples", help="OCR-scored samples per eval (0: none).")] = 32,
) -> None:
    """Train a tiny MMDiT (rectified flow, CFG dropout, EMA, curriculum, multi-task, dual encoding); saves out/model."""
    from qwenkit.core.config import load_config
    from qwenkit.core.runs import start_run
    from qwenkit.image.evaluate import evaluate_t2i
    from qwenkit.image.report import write_train_report
    from qwenkit.image.train import ImageTrainConfig, build_kit, save_kit
    from qwenkit.image.train import train as run_training

    apply_run_options(threads, quiet)
    cfg = load_config(ImageTrainConfig, config, with_seed(set_, seed, "trainer.seed"))
    kit = build_kit(cfg)
    run = start_run(out, cfg, resume=resume)

    def eval_fn(_model) -> dict:
        scores, _ = evaluate_t2i(kit, eval_samples, steps=20)
        return {"word_accuracy": scores["word_accuracy"], "ned": scores["ned"]}

    kit, result = run_training(cfg, run=run, resume=resume, kit=kit, eval_fn=eval_fn if eval_samples else None)
    model_dir = save_kit(kit, run.path / "model")
    write_train_report(run, kit)
    typer.echo(f"trained {result.step} steps; model: {model_dir}; report: {run.path / 'report.html'}")


@app.command()
def finetune(
    model: Annotated[Path, typer.Option("--model", help="A local diffusers Qwen-Image directory or a qwenkit image "
                                                        "model folder.")],
    data: Annotated[Path, typer.Option("--data", help="A synth output, a folder with captions.jsonl, or images "
                                                      "with same-named .txt captions.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory (lora/, model/, checkpoints).")]
    = Path("runs/image-finetune"),
    full: Annotated[bool, typer.Option("--full", help="Train every transformer weight instead of a LoRA.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
    seed: SeedOption = None,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
    resume: ResumeOption = None,
    eval_samples: Annotated[int, typer.Option("--eval-samples", help="Captions OCR-scored before and after "
                                                                     "(folders that record the rendered text).")] = 0,
) -> None:
    """Fine-tune a checkpoint with LoRA (peft; diffusers-loadable lora/ and merged model/) or all weights."""
    from qwenkit.core.config import load_config
    from qwenkit.image.finetune import FinetuneConfig
    from qwenkit.image.finetune import finetune as run_finetune

    apply_run_options(threads, quiet)
    overrides = [f"model={model}", f"data={data}"] + (["method=full"] if full else [])
    cfg = load_config(FinetuneConfig, config, overrides + with_seed(set_, seed, "trainer.seed"))
    if not model.is_dir():
        raise typer.BadParameter(f"{model} is not a folder", param_hint="--model")
    done = run_finetune(cfg, out, resume=resume, quiet=quiet, eval_samples=eval_samples)
    typer.echo(f"fine-tuned ({cfg.method}) {done['result'].step} steps; model: {done['model']}"
               + (f"; LoRA: {done['lora']}" if done["lora"] else ""))
    for name in ("ocr_before", "ocr_after"):
        if done[name] is not None:
            typer.echo(f"{name}: word accuracy {done[name]['word_accuracy']:.3f}, NED {done[name]['ned']:.3f} "
                       f"(n={done[name]['n']})")


@app.command()
def generate(
    model: Annotated[Path, typer.Option("--model", help="A model folder written by `qwenkit image train`.")],
    prompt: Annotated[list[str], typer.Option("--prompt", help="Prompt (repeatable).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder for PNGs and grid.png.")] = Path("runs/generate"),
    steps: Annotated[int, typer.Option(help="Euler steps.")] = 20,
    cfg_scale: Annotated[float, typer.Option("--cfg", help="Classifier-free guidance scale (1 = off).")] = 3.0,
    num: Annotated[int, typer.Option("--num", help="Images per prompt.")] = 1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    height: HeightOpt = None,
    width: WidthOpt = None,
    threads: ThreadsOption = None,
) -> None:
    """Text-to-image: PNG per image plus a grid."""
    from qwenkit.image.sample import generate as run_generate

    apply_run_options(threads, True)
    kit = _load_sized(model, height, width)
    prompts = [p for p in prompt for _ in range(num)]
    images = run_generate(kit, prompts, steps=steps, cfg_scale=cfg_scale, seed=seed)
    _write_images(out, images, columns=max(1, num))


@app.command()
def edit(
    model: Annotated[Path, typer.Option("--model", help="A model folder written by `qwenkit image train`.")],
    image: Annotated[list[Path], typer.Option("--image", help="Input image (repeatable).")],
    instruction: Annotated[list[str], typer.Option("--instruction", help="One, or one per image (repeatable).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/edit"),
    steps: Annotated[int, typer.Option(help="Euler steps.")] = 20,
    cfg_scale: Annotated[float, typer.Option("--cfg", help="Guidance scale on the instruction (1 = off).")] = 2.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    height: HeightOpt = None,
    width: WidthOpt = None,
    threads: ThreadsOption = None,
) -> None:
    """Edit images by instruction with the model's edit conditioning (dual / semantic / VAE). Each source is
    resized to the model's condition area at its own aspect ratio (as QwenImageEditPipeline does); the output has
    that size too unless --height/--width are given."""
    from PIL import Image

    from qwenkit.image.sample import edit_condition_size, prepare_edit_sources
    from qwenkit.image.sample import generate as run_generate

    apply_run_options(threads, True)
    if len(instruction) not in (1, len(image)):
        raise typer.BadParameter(f"{len(instruction)} instructions for {len(image)} images; give 1 or one each",
                                 param_hint="--instruction")
    for path in image:
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a file", param_hint="--image")
    kit = _load_sized(model, height, width)
    sources = [Image.open(p).convert("RGB") for p in image]
    instructions = instruction * len(image) if len(instruction) == 1 else instruction
    edited = []
    for source, text in zip(sources, instructions, strict=True):
        size_kit = kit
        if height is None and width is None:  # the output takes the condition size, as the pipeline's default
            factor = kit.config.model.latent_factor()
            w, h = edit_condition_size(source.size, kit.edit_condition_area or kit.config.width * kit.config.height,
                                       kit.edit_condition_multiple or factor)
            size_kit = kit.resized(h // factor * factor, w // factor * factor)
        edited += run_generate(size_kit, [text], steps=steps, cfg_scale=cfg_scale, seed=seed, source_images=[source])
    shown = prepare_edit_sources(kit, sources)
    _write_images(out, [im for pair in zip(shown, edited, strict=True) for im in pair], columns=2)


def _load_sized(model: Path, height: int | None, width: int | None):
    from qwenkit.core.config import ConfigError
    from qwenkit.image.train import load_kit

    if not model.is_dir():
        raise typer.BadParameter(f"{model} is not a folder", param_hint="--model")
    try:
        return load_kit(model, height=height, width=width)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--height/--width") from exc


def _write_images(out: Path, images: list, columns: int) -> None:
    from qwenkit.image.sample import image_grid

    out.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        im.save(out / f"{i:04d}.png")
    image_grid(images, columns=columns).save(out / "grid.png")
    typer.echo(f"wrote {len(images)} images and grid.png to {out}")


@app.command("eval-text")
def eval_text(
    images: Annotated[Path | None, typer.Option("--images", help="Folder with manifest.json or texts.jsonl.")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="Or: a trained model, scored on held-out captions.")]
    = None,
    reader: Annotated[str, typer.Option("--reader", help="rapidocr or tesseract.")] = "rapidocr",
    num: Annotated[int, typer.Option("--num", help="Held-out samples (with --model).")] = 64,
    out: Annotated[Path | None, typer.Option("--out", help="Write the scores as JSON here.")] = None,
    threads: ThreadsOption = None,
) -> None:
    """OCR-scored text rendering: word accuracy, NED and char accuracy of a folder of images or of a model."""
    from qwenkit.image.ocr import text_rendering_scores

    apply_run_options(threads, True)
    if (images is None) == (model is None):
        raise typer.BadParameter("give exactly one of --images FOLDER or --model DIR", param_hint="--images/--model")
    if images is not None:
        from qwenkit.image.evaluate import read_text_folder

        pictures, texts = read_text_folder(images)
        scores = text_rendering_scores(pictures, texts, reader=reader)
    else:
        from qwenkit.image.evaluate import evaluate_t2i
        from qwenkit.image.train import load_kit

        scores, _ = evaluate_t2i(load_kit(model), num, reader=reader)
    text = json.dumps(scores, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    typer.echo(text)


@app.command("bench-text")
def bench_text(
    benchmark: Annotated[str, typer.Option("--benchmark", help="cvtg-2k, longtext-bench or chineseword.")],
    prompts: Annotated[Path, typer.Option("--prompts", help="The benchmark's local prompt file or folder.")],
    model: Annotated[Path | None, typer.Option("--model", help="A qwenkit image model or diffusers Qwen-Image "
                                                              "directory; generates one image per prompt.")] = None,
    images: Annotated[Path | None, typer.Option("--images", help="Or: a folder of already generated images named "
                                                               "{id}.png (ids as in the report).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("runs/bench-text"),
    limit: Annotated[int | None, typer.Option("--limit", help="Score only the first N prompts.", min=1)] = None,
    reader: Annotated[str, typer.Option("--reader", help="rapidocr or tesseract.")] = "rapidocr",
    steps: Annotated[int, typer.Option(help="Euler steps.", min=1)] = 20,
    cfg_scale: Annotated[float, typer.Option("--cfg", help="Guidance scale (1 = off).")] = 3.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    punctuation: Annotated[bool | None, typer.Option("--ignore-punctuation/--keep-punctuation",
                                                     help="Drop punctuation before scoring.")] = None,
    simplified: Annotated[bool | None, typer.Option("--simplify/--no-simplify",
                                                    help="Map traditional to simplified Chinese (OpenCC t2s).")]
    = None,
    casefold: Annotated[bool | None, typer.Option("--ignore-case/--match-case")] = None,
    width: Annotated[bool | None, typer.Option("--fold-width/--keep-width",
                                               help="NFKC: full-width forms to half-width.")] = None,
    whitespace: Annotated[str | None, typer.Option("--whitespace", help="keep, collapse or remove.")] = None,
    threads: ThreadsOption = None,
) -> None:
    """Score text rendering on CVTG-2K, LongText-Bench or ChineseWord prompts: generate, OCR, score, report."""
    from PIL import Image

    from qwenkit.image.text_benchmarks import BenchmarkFormatError, get_benchmark, normalization_for, run_text_benchmark

    apply_run_options(threads, True)
    try:
        bench = get_benchmark(benchmark)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--benchmark") from exc
    if whitespace not in (None, "keep", "collapse", "remove"):
        raise typer.BadParameter(f"{whitespace!r}; use keep, collapse or remove", param_hint="--whitespace")
    if (model is None) == (images is None):
        raise typer.BadParameter("give exactly one of --model DIR or --images FOLDER", param_hint="--model/--images")
    try:
        items = bench.load(prompts)[:limit]
    except (BenchmarkFormatError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--prompts") from exc
    normalization = normalization_for(bench, punctuation=punctuation, simplified=simplified, casefold=casefold,
                                      width=width, whitespace=whitespace)
    if images is not None:
        paths = [images / f"{it.id.replace('/', '_')}.png" for it in items]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise typer.BadParameter(f"{images} lacks {missing[:3]} ({len(missing)} of {len(paths)} images)",
                                     param_hint="--images")
        result = run_text_benchmark(bench, items, out, images=[Image.open(p).convert("RGB") for p in paths],
                                    reader=reader, normalization=normalization)
    else:
        from qwenkit.image.train import load_kit

        if not model.is_dir():
            raise typer.BadParameter(f"{model} is not a folder", param_hint="--model")
        result = run_text_benchmark(bench, items, out, kit=load_kit(model), reader=reader, steps=steps,
                                    cfg_scale=cfg_scale, seed=seed, normalization=normalization)
    summary = {"overall": result["overall"], "groups": result["groups"]}
    typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    typer.echo(f"report: {out / 'report.html'}")
