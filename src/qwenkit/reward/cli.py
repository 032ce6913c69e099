"""``qwenkit reward``: build preference data, train and evaluate Bradley-Terry reward models, run scaling grids."""

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

app = typer.Typer(help="WorldPM-style Bradley-Terry preference models: data, train, eval, scaling.",
                  no_args_is_help=True)
data_app = typer.Typer(help="Build preference-pair files.", no_args_is_help=True)
app.add_typer(data_app, name="data")

OutOption = Annotated[Path, typer.Option("--out", help="Output directory.")]


@app.command()
def train(
    config: ConfigOption = None,
    set_: SetOption = None,
    out: OutOption = Path("runs/reward"),
    seed: SeedOption = None,
    resume: ResumeOption = None,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Train a reward model; writes checkpoints, metrics.jsonl, eval.json and model/ (a transformers classifier)."""
    from qwenkit.core.config import load_config
    from qwenkit.reward.config import RewardTrainConfig
    from qwenkit.reward.train import train_reward_model

    apply_run_options(threads, quiet)
    overrides = with_seed(set_, seed, "trainer.seed")
    settings = load_config(RewardTrainConfig, config, overrides)
    trained = train_reward_model(settings, out, resume=resume or False, quiet=quiet or None)
    summary = f"done: {trained.run.path / 'model'}"
    if trained.evaluation is not None:
        categories = trained.evaluation.by_category.items()
        parts = [f"{name} acc {m.accuracy:.3f} loss {m.bt_loss:.3f}" for name, m in categories]
        summary += "  " + "; ".join(parts or [f"acc {trained.evaluation.overall.accuracy:.3f}"])
    typer.echo(summary)


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="A reward-model directory (RUN/model).")],
    data: Annotated[Path, typer.Option("--data", help="Test pairs (.jsonl; see docs/reward.md).")],
    held_out: Annotated[Path | None, typer.Option("--held-out", help="Held-out pairs for the style-control fit "
                                                  "(never the test pairs).")] = None,
    reward_bench: Annotated[bool, typer.Option("--reward-bench", help="--data is a reward-bench file "
                                               "(prompt, chosen, rejected, subset).")] = False,
    out: OutOption = Path("runs/reward-eval"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the pair orientation in style control.")] = 0,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Accuracy (ties wrong) and BT loss per category and subset, reward-bench v1 sections, style control."""
    from qwenkit.reward.data import load_pairs, load_reward_bench
    from qwenkit.reward.evaluate import write_evaluation
    from qwenkit.reward.model import load_reward_model

    apply_run_options(threads, quiet)
    test_pairs = load_reward_bench(data) if reward_bench else load_pairs(data)
    held_pairs = load_pairs(held_out) if held_out is not None else None
    reward_model = load_reward_model(model)
    record = write_evaluation(reward_model, test_pairs, out, held_out=held_pairs, seed=seed)
    typer.echo(f"accuracy {record['overall']['accuracy']:.3f}  BT loss {record['overall']['bt_loss']:.3f}  "
               f"-> {out / 'eval.json'}")


@app.command()
def scaling(
    config: ConfigOption = None,
    set_: SetOption = None,
    out: OutOption = Path("runs/reward-scaling"),
    cell: Annotated[int | None, typer.Option("--cell", help="Run only this cell (0-based; for job arrays).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Run pending cells in K processes.")] = 1,
    list_cells: Annotated[bool, typer.Option("--list", help="Print the cells and exit.")] = False,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Train a grid over data and model sizes, fit power laws per category, write a report with log-log plots."""
    from qwenkit.core.config import load_config
    from qwenkit.reward.report import write_scaling_report
    from qwenkit.reward.scaling import ScalingGrid, cells, collect_results, fit_grid, run_cell, run_grid

    apply_run_options(threads if cell is not None or workers == 1 else 1, quiet)
    grid = load_config(ScalingGrid, config, set_ or [])
    if list_cells:
        for c in cells(grid):
            typer.echo(f"{c.index}\t{c.name}")
        return
    if cell is not None:
        if not 0 <= cell < len(cells(grid)):
            raise typer.BadParameter(f"cell {cell} does not exist; this grid has cells 0..{len(cells(grid)) - 1}",
                                     param_hint="--cell")
        result = run_cell(grid, cell, out, quiet=quiet or None)
        typer.echo(json.dumps({k: result[k] for k in ("index", "model_size", "data_size", "seed")}))
        remaining = len(cells(grid)) - len(collect_results(grid, out))
        if remaining:
            return
    results = run_grid(grid, out, workers=workers, quiet=quiet or None)
    path = write_scaling_report(grid, results, fit_grid(grid, results), Path(out))
    typer.echo(f"{len(results)} cells -> {path}")


@data_app.command("stackexchange")
def data_stackexchange(
    posts: Annotated[Path, typer.Option("--posts", help="The site's Posts.xml from a StackExchange data dump.")],
    out: OutOption = Path("data/stackexchange"),
    site: Annotated[str | None, typer.Option(help="Site name (default: the folder of Posts.xml).")] = None,
    pairs_per_question: Annotated[int, typer.Option(min=1, help="Pairs drawn per question at most.")] = 1,
    test_fraction: Annotated[float, typer.Option(help="Share of questions in the test split.")] = 0.1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Vote pairs by WorldPM's rule (two answers with different net votes, the higher chosen) -> train/test .jsonl."""
    from qwenkit.reward.data import save_pairs
    from qwenkit.reward.stackexchange import build_vote_pairs

    built = build_vote_pairs(posts, site=site, pairs_per_question=pairs_per_question,
                             test_fraction=test_fraction, seed=seed)
    save_pairs(out / "train.jsonl", built.train)
    save_pairs(out / "test.jsonl", built.test)
    (out / "stats.json").write_text(json.dumps(built.stats, indent=2) + "\n", encoding="utf-8")
    typer.echo(f"{len(built.train)} train / {len(built.test)} test pairs -> {out}  ({built.stats})")


@data_app.command("synthetic")
def data_synthetic(
    out: OutOption = Path("data/synthetic"),
    train_pairs: Annotated[int, typer.Option(min=3, help="Training pairs per category.")] = 1000,
    test_pairs: Annotated[int, typer.Option(min=3, help="Test pairs per category.")] = 200,
    label_noise: Annotated[float, typer.Option(help="Subjective label flip probability.")] = 0.1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """The synthetic adversarial / objective / subjective corpus -> train.jsonl, held_out.jsonl, test.jsonl."""
    from qwenkit.reward.data import save_pairs
    from qwenkit.reward.synthetic import CATEGORIES, make_pairs

    counts = dict.fromkeys(CATEGORIES, train_pairs)
    tests = make_pairs(dict.fromkeys(CATEGORIES, 2 * test_pairs), split="test", seed=seed, label_noise=label_noise)
    by_category: dict[str, list] = {}
    for pair in tests:
        by_category.setdefault(pair.category, []).append(pair)
    held = [p for pairs in by_category.values() for p in pairs[:test_pairs]]
    test = [p for pairs in by_category.values() for p in pairs[test_pairs:]]
    save_pairs(out / "train.jsonl", make_pairs(counts, seed=seed, label_noise=label_noise))
    save_pairs(out / "held_out.jsonl", held)
    save_pairs(out / "test.jsonl", test)
    typer.echo(f"{3 * train_pairs} train, {len(held)} held-out, {len(test)} test pairs -> {out}")
