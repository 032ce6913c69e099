"""``qwenkit face``: make-synthetic, train, eval, animate. Heavy imports happen inside the commands."""

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

app = typer.Typer(help="StyleSpeaker-style speech-driven 3D facial animation: synthetic corpus, training, "
                  "CodeTalker-exact LVE/FDD evaluation, MP4 rendering.", no_args_is_help=True)



@app.command("make-synthetic")
def make_synthetic_command(
    out: Annotated[Path, typer.Option("--out", help="Output folder (FaceFormer-processed layout).")] = Path(
        "runs/face-synthetic"),
    config: ConfigOption = None,
    set_: SetOption = None,
    seed: SeedOption = None,
    quiet: QuietOption = False,
) -> None:
    """Synthesise speakers with espeak-ng speech and styled motion of a procedural face."""
    from qwenkit.core.config import load_config
    from qwenkit.core.progress import set_quiet
    from qwenkit.face.synthetic import SyntheticConfig, make_synthetic

    set_quiet(True if quiet else None)
    cfg = load_config(SyntheticConfig, config, with_seed(set_, seed, "seed"))
    manifest = make_synthetic(cfg, out)
    typer.echo(f"wrote {len(manifest['utterances'])} utterances of {cfg.speakers} speakers "
               f"({cfg.unseen_speakers} held out) to {out}")


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/face-train"),
    data: Annotated[Path | None, typer.Option("--data", help="Dataset folder (overrides the config's data).")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    seed: SeedOption = None,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
    resume: ResumeOption = None,
) -> None:
    """Train the face model (or a baseline: --set model.style=onehot) through the core loop; saves out/model."""
    from qwenkit.core.config import load_config
    from qwenkit.face.pipeline import train_run
    from qwenkit.face.report import write_train_report
    from qwenkit.face.train import FaceTrainConfig

    apply_run_options(threads, quiet)
    overrides = with_seed(set_, seed, "trainer.seed") + ([f"data={data}"] if data is not None else [])
    cfg = load_config(FaceTrainConfig, config, overrides)
    kit, view, run = train_run(cfg, out, resume=resume)
    report = write_train_report(run, kit, view)
    typer.echo(f"model: {run.path / 'model'}; report: {report}")


@app.command("eval")
def eval_command(
    model: Annotated[Path, typer.Option("--model", help="A model folder written by `qwenkit face train`.")],
    data: Annotated[Path | None, typer.Option("--data", help="Dataset folder (default: the model's).")] = None,
    split: Annotated[list[str] | None, typer.Option("--split", help="Split(s) to score (default: the test splits).")]
    = None,
    reference: Annotated[str, typer.Option(help="Reference clips: own or other (another speaker's).")] = "own",
    out: Annotated[Path | None, typer.Option("--out", help="Write the metrics as JSON here.")] = None,
    threads: ThreadsOption = None,
) -> None:
    """LVE / FDD (CodeTalker), LVE in mm, MVE, FFE of a model and of zero motion on the test splits."""
    from qwenkit.face.pipeline import EVAL_SPLITS, evaluate_split, open_dataset
    from qwenkit.face.train import load_kit

    apply_run_options(threads, True)
    kit = load_kit(model)
    view = open_dataset(data or kit.config.data, kit.config.dataset, kit.config.lip_region, kit.config.upper_region)
    results = {name: evaluate_split(kit, view, name, reference=reference)
               for name in (split or EVAL_SPLITS[kit.config.dataset])}
    text = json.dumps(results, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    typer.echo(text)


@app.command()
def animate(
    model: Annotated[Path, typer.Option("--model", help="A model folder written by `qwenkit face train`.")],
    audio: Annotated[Path, typer.Option("--audio", help="Driving speech (.wav).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="MP4 to write.")] = Path("face.mp4"),
    reference: Annotated[Path | None, typer.Option("--reference", help="Reference motion clip .npy: vertices "
                                                   "(T, V, 3) or (T, V*3) of the speaker (style-encoder models).")]
    = None,
    reference_audio: Annotated[Path | None, typer.Option("--reference-audio", help="The reference clip's speech "
                                                         "(.wav; needed by style enhancement).")] = None,
    template: Annotated[Path | None, typer.Option("--template", help="Neutral face .npy (V, 3) (default: the "
                                                  "reference's first frame).")] = None,
    speaker: Annotated[int, typer.Option("--speaker", help="Training speaker index (one-hot models).")] = 0,
    triangles: Annotated[Path | None, typer.Option("--triangles", help="Triangles .npy (F, 3) or an .obj "
                                                   "(default: the model's triangles.npy).")] = None,
    size: Annotated[int, typer.Option("--size", help="Frame size in pixels (even).")] = 256,
    renderer: Annotated[str, typer.Option("--renderer", help="pil (Pillow only), or egl / osmesa (OpenGL through "
                                          "pyrender, headless).")] = "pil",
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Animate a face from speech and write an MP4 with the audio."""
    from qwenkit.face.animate import animate_to_mp4

    apply_run_options(threads, quiet)
    path, frames = animate_to_mp4(model, audio, output, reference=reference, reference_audio=reference_audio,
                                  template=template, speaker=speaker, triangles=triangles, size=size,
                                  renderer=renderer)
    typer.echo(f"wrote {frames} frames to {path}")
