"""``qwenkit roleplay``: run the role-play benchmark, write its report, validate a judge, check data files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qwenkit.core.cli_options import (
    ConfigOption,
    QuietOption,
    ResumeOption,
    SetOption,
    ThreadsOption,
    apply_run_options,
    with_seed,
)

app = typer.Typer(help="RMTBench-style role-play benchmark: bilingual multi-turn dialogues, per-dimension LLM judge.",
                  no_args_is_help=True)
data_app = typer.Typer(help="Role-play data files.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def _user_errors() -> tuple[type[BaseException], ...]:
    from qwenkit.core.errors import QwenkitError
    from qwenkit.lm.backends import BackendError
    from qwenkit.lm.loading import ModelLoadError
    from qwenkit.roleplay.data import RoleplayDataError

    return QwenkitError, RoleplayDataError, BackendError, ModelLoadError, FileExistsError, FileNotFoundError, \
        ValueError


@app.command()
def run(
    config: ConfigOption = None,
    set_: SetOption = None,
    out: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/roleplay"),
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (overrides the config's seed).")] = None,
    resume: ResumeOption = None,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Play and judge every selected dialogue (config: players, simulator, judges as backend specs); `--resume`
    continues a run in --out from its call cache (no finished call is repeated)."""
    apply_run_options(threads, quiet)
    from qwenkit.core.config import load_config
    from qwenkit.roleplay.run import RunConfig, RunStopped, execute_run

    if config is None:
        raise _fail("--config is required (a YAML file with players, judges and optionally simulator)")
    overrides = with_seed(set_, seed, "seed")
    try:
        settings = load_config(RunConfig, config, overrides)
        summary = execute_run(settings, out, resume=resume, quiet=quiet)
    except RunStopped as exc:
        raise _fail(f"stopped cleanly: {exc}", code=3) from None
    except _user_errors() as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{summary['judgments']} judgments ({summary['invalid']} invalid) in {out}; "
               f"report: qwenkit roleplay report {out}")


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (their judgments are reported together).")],
    out: Annotated[Path | None, typer.Option("--out", help="Report directory (default: the first run).")] = None,
) -> None:
    """Markdown + HTML report: scores with intervals by dimension, language and scenario; rounds; radar; worst."""
    from qwenkit.roleplay.report import build_report

    try:
        markdown, html = build_report(list(runs), out or runs[0])
    except _user_errors() as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"report: {markdown} and {html}")


@app.command()
def agreement(
    labels: Annotated[Path, typer.Argument(help="Label file (CSV or JSONL: item, dimension, rater, score).")],
    judge: Annotated[str, typer.Option("--judge", help="The judge's rater name (seeds: NAME@SEED).")] = "judge",
    run_dir: Annotated[Path | None, typer.Option("--run", help="Take the judge's labels from this run.")] = None,
    run_judge: Annotated[str | None, typer.Option("--run-judge", help="Judge label inside --run.")] = None,
) -> None:
    """Judge validation: agreement with the annotators' majority, Cohen/Fleiss kappa, Krippendorff alpha, Spearman."""
    from qwenkit.roleplay.run import read_jsonl
    from qwenkit.roleplay.validation import agreement_table, judge_labels_from_run, read_labels

    try:
        rows = read_labels(labels)
        if run_dir is not None:
            if not (run_dir / "judgments.jsonl").is_file():
                raise FileNotFoundError(f"--run {run_dir}: no judgments.jsonl; pass a finished run directory")
            judgments = read_jsonl(run_dir / "judgments.jsonl")
            name = run_judge or sorted({j["judge"] for j in judgments})[0]
            labelled = {(r["item"], r["dimension"]) for r in rows}
            rows += [r for r in judge_labels_from_run(judgments, name, rater=judge)
                     if (r["item"], r["dimension"]) in labelled]
        table = agreement_table(rows, judge)
    except _user_errors() as exc:
        raise _fail(str(exc)) from None
    columns = list(dict.fromkeys(k for row in table for k in row))
    typer.echo("| " + " | ".join(columns) + " |")
    typer.echo("|" + "---|" * len(columns))
    for row in table:
        cells = [f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
        typer.echo("| " + " | ".join(cells) + " |")


@data_app.command("validate")
def validate(
    path: Annotated[Path, typer.Argument(help="A dataset file or directory.")],
    rmtbench: Annotated[bool, typer.Option("--rmtbench", help="Read RMTBench-format files.")] = False,
) -> None:
    """Check a dataset; every problem names the file, the record and the field."""
    from qwenkit.roleplay.data import RoleplayDataError, load_dataset
    from qwenkit.roleplay.rmtbench import load_rmtbench

    try:
        dataset = load_rmtbench(path) if rmtbench else load_dataset(path)
    except RoleplayDataError as exc:
        raise _fail(str(exc)) from None
    scripted = sum(1 for d in dataset.dialogues if d.turns is not None)
    typer.echo(f"ok: {len(dataset.characters)} characters, {len(dataset.dialogues)} dialogues ({scripted} scripted, "
               f"{len(dataset.dialogues) - scripted} simulated) in {len(dataset.sources)} file(s)")
