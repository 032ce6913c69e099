"""``qwenkit sft``: train with or without rationales, evaluate accuracy and calibration, generate rationales."""

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

app = typer.Typer(help="SFT with and without rationales, measured for accuracy and calibration.",
                  no_args_is_help=True)


@app.command()
def train(
    config: ConfigOption = None,
    set_: SetOption = None,
    out: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/sft"),
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (default: trainer.seed).")] = None,
    resume: ResumeOption = None,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Fine-tune (answer-only or rationale targets), then evaluate; writes results.json and report.md into --out."""
    from qwenkit.core.config import load_config
    from qwenkit.sft.config import SFTConfig
    from qwenkit.sft.pipeline import train_and_evaluate

    apply_run_options(threads, quiet)
    overrides = with_seed(set_, seed, "trainer.seed")
    sft_config = load_config(SFTConfig, config, overrides)
    summary = train_and_evaluate(sft_config, out, resume=resume, quiet=quiet or None)
    line = f"done: {out}/report.html  loss {summary['final_loss']:.4f}"
    if "accuracy_sc" in summary:
        line += (f"  accuracy {summary['accuracy_greedy']:.3f} (greedy) {summary['accuracy_sc']:.3f} (majority)  "
                 f"ECE {summary['ece_sc']:.3f}")
    typer.echo(line)


@app.command()
def evaluate(
    model: Annotated[str, typer.Option("--model", help="Model spec: a run's OUT/model directory, HF dir, .gguf.")],
    data: Annotated[Path, typer.Option("--data", help="Evaluation file.")],
    layout: Annotated[str, typer.Option("--layout", help="qwenkit, gsm8k, svamp, arc, csqa, sst2.")] = "qwenkit",
    target: Annotated[str, typer.Option("--target", help="Prompt as trained: answer or rationale.")] = "rationale",
    config: ConfigOption = None,
    set_: SetOption = None,
    out: Annotated[Path, typer.Option("--out", help="Where results.json goes.")] = Path("runs/sft-eval"),
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Greedy accuracy, self-consistency and token-probability confidence, ECE/MCE/Brier of a model on a file.

    --config/--set take the evaluation settings (samples, temperature, max_new_tokens, n_bins, batch_size, seed).
    """
    import json

    from qwenkit.core.config import load_config
    from qwenkit.core.errors import ConfigError
    from qwenkit.lm.loading import resolve_model
    from qwenkit.sft.config import EvalConfig
    from qwenkit.sft.evaluate import evaluate_records, summarize
    from qwenkit.sft.loaders import load_dataset_file

    apply_run_options(threads, quiet)
    if target not in ("answer", "rationale"):
        raise ConfigError(f"--target is {target!r}; use answer or rationale")
    eval_config = load_config(EvalConfig, config, list(set_ or []))
    records = load_dataset_file(data, layout)
    resolved = resolve_model(model, dtype="float32")
    summary = summarize(evaluate_records(resolved.model, resolved.tokenizer, records, target, eval_config),
                        eval_config.n_bins)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    typer.echo(f"accuracy {summary['accuracy_greedy']:.3f} (greedy) {summary['accuracy_sc']:.3f} (majority)  "
               f"ECE {summary['ece_sc']:.3f}  MCE {summary['mce_sc']:.3f}  Brier {summary['brier_sc']:.3f}  "
               f"-> {out}/results.json")


@app.command()
def rationales(
    data: Annotated[Path, typer.Option("--data", help="Records needing rationales.")],
    out: Annotated[Path, typer.Option("--out", help="JSONL of the records that got a rationale.")],
    layout: Annotated[str, typer.Option("--layout", help="qwenkit, gsm8k, svamp, arc, csqa, sst2.")] = "qwenkit",
    model: Annotated[str | None, typer.Option("--model", help="Local teacher: a model spec (HF dir, .gguf, "
                                              "smollm2); or the served model name with --base-url.")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server, e.g. "
                                                 "http://localhost:8000/v1.")] = None,
    tries: Annotated[int, typer.Option("--tries", min=1, help="Attempts per question (the paper: 10).")] = 10,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0)] = 0.7,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 512,
    cache: Annotated[Path | None, typer.Option("--cache", help="Call cache (default: OUT.cache/).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Ask a teacher for step-by-step rationales; keep one only when its final answer matches the gold label."""
    import json

    from qwenkit.core.errors import ConfigError
    from qwenkit.sft.data import write_records
    from qwenkit.sft.loaders import load_dataset_file
    from qwenkit.sft.rationales import generate_rationales

    apply_run_options(threads, quiet)
    if model is None:
        raise ConfigError("--model is required: a local model spec, or the served model's name with --base-url")
    records = load_dataset_file(data, layout)
    if base_url is not None:
        from qwenkit.lm.backends import OpenAIChatBackend

        backend = OpenAIChatBackend(base_url, model)
    else:
        from qwenkit.lm.backends import TransformersBackend
        from qwenkit.lm.loading import resolve_model

        resolved = resolve_model(model, dtype="float32")
        backend = TransformersBackend(resolved.model, resolved.tokenizer, name=resolved.name)
    kept, stats = generate_rationales(records, backend, cache or out.with_name(out.name + ".cache"), tries=tries,
                                      temperature=temperature, max_tokens=max_tokens, seed=seed,
                                      quiet=quiet or None)
    write_records(out, kept)
    out.with_name(out.name + ".yield.json").write_text(json.dumps(stats.as_dict(), indent=2), encoding="utf-8")
    typer.echo(f"kept {stats.kept}/{stats.questions} ({stats.rate:.1%}); {stats.calls} calls, {stats.cached} from "
               f"the cache -> {out}")
