"""``qwenkit rl``: train with GRPO / GSPO / GSPO-token / 80-20, and analyse token entropies."""

from __future__ import annotations

import os
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
)

app = typer.Typer(help="RLVR: GRPO, GSPO, GSPO-token and the 80/20 forking-token rule.", no_args_is_help=True)


@app.command()
def train(
    config: ConfigOption = None,
    set_: SetOption = None,
    algorithm: Annotated[
        str | None,
        typer.Option("--algorithm", help="Preset for `algorithm`: grpo, gspo, gspo_token, grpo_8020, dapo. It "
                     "overrides the config file's algorithm fields it sets; --set overrides both."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/rl"),
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (default: trainer.seed).")] = None,
    resume: ResumeOption = None,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Train a policy with verifiable rewards; writes metrics.jsonl, checkpoints, plots and report.md into --out.

    The model is `model.path`: a local Hugging Face directory, a .gguf file, a directory holding one, or `smollm2`.
    """
    from qwenkit.core.config import load_config, read_yaml
    from qwenkit.rl.config import ALGORITHMS, RLConfig, apply_algorithm_preset
    from qwenkit.rl.train import train as run_training

    apply_run_options(threads, quiet)
    data = read_yaml(config) if config else {}
    if algorithm is not None:
        if algorithm not in ALGORITHMS:
            raise typer.BadParameter(f"unknown algorithm {algorithm!r}; choose one of {sorted(ALGORITHMS)}",
                                     param_hint="--algorithm")
        data, overridden = apply_algorithm_preset(data, algorithm)
        if overridden:
            typer.echo(f"note: --algorithm {algorithm} overrides the config file's {'; '.join(overridden)}", err=True)
    origin = None
    if config:
        origin = f"config file {str(config)!r}" + (f" with --algorithm {algorithm}" if algorithm else "")
    rl_config = load_config(RLConfig, data, set_ or [], origin=origin)
    result = run_training(rl_config, out, seed=seed, resume=resume, quiet=quiet or None)
    last = result.history[-1] if result.history else {}
    if int(os.environ.get("RANK", "0")) != 0:
        return
    typer.echo(
        f"done: {result.run.path}/report.html  reward {last.get('reward/mean', float('nan')):.3f}  "
        f"clip {last.get('policy/clip_fraction', float('nan')):.3g}"
    )


@app.command()
def entropy(
    model: Annotated[Path, typer.Option("--model", help="HF model dir, `qwenkit rl train` run dir, or RUN/sft.")],
    data: Annotated[str, typer.Option("--data", help="A toy task name (sort3...), a .jsonl (prompt) or .txt file.")],
    compare: Annotated[Path | None, typer.Option("--compare", help="A second model scored on A's sequences.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("runs/rl-entropy"),
    prompts: Annotated[int, typer.Option(help="Number of prompts.")] = 128,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate per prompt.")] = 64,
    temperature: Annotated[float, typer.Option(help="Sampling and entropy temperature.")] = 1.0,
    rho: Annotated[float, typer.Option(help="Top share of positions for the overlap.")] = 0.2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Entropy distribution of generated chains of thought, forking tokens, and high-entropy overlap of two models."""
    from qwenkit.rl.entropy import analyze, load_policy, read_prompts
    from qwenkit.rl.report import write_entropy_report

    apply_run_options(threads, quiet, seed)
    policy, tokenizer = load_policy(model)
    other = load_policy(compare)[0] if compare is not None else None
    result = analyze(policy, tokenizer, read_prompts(data, prompts, seed), compare_model=other,
                     temperature=temperature, max_new_tokens=max_new_tokens, rho=rho, seed=seed)
    path = write_entropy_report(result, out, str(model), str(compare) if compare else None, rho)
    typer.echo(f"{result.tokens} tokens: {result.share_below_001:.1%} below 0.01, p80 {result.p80:.3f}  -> {path}")
