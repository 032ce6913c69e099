"""``qwenkit infer``: chat with a thinking budget, measure the budget curve, serve an OpenAI-compatible API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from qwenkit.core.cli_options import QuietOption, ThreadsOption, apply_run_options

app = typer.Typer(help="Qwen3 inference: thinking modes, an exact thinking budget, OpenAI-compatible serving.",
                  no_args_is_help=True)

ModelOption = Annotated[str, typer.Option("--model", help="Model directory (HF or GGUF), 'smollm2', or 'tiny-qwen3'.")]
GgufOption = Annotated[str | None, typer.Option("--gguf-file", help="GGUF file name inside the model directory.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed.")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="torch device, e.g. cuda (default: cpu).")]


@app.command()
def chat(
    model: ModelOption = "smollm2",
    gguf_file: GgufOption = None,
    no_think: Annotated[bool, typer.Option("--no-think", help="Non-thinking mode (empty think block).")] = False,
    thinking_budget: Annotated[int | None, typer.Option("--thinking-budget", help="Cap thinking at N tokens.")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Tokens per reply (forced included).")] = 256,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (default: Qwen3's per mode).")] = None,
    stop_text: Annotated[str | None, typer.Option("--stop-text", help="'docs' (default), 'paper' or a text.")] = None,
    system: Annotated[str | None, typer.Option("--system", help="System message.")] = None,
    message: Annotated[list[str] | None, typer.Option("--message", "-m", help="Send these and exit.")] = None,
    seed: SeedOption = 0,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Chat in the terminal, streaming the reasoning (dimmed) and the answer. Empty line or Ctrl-D ends."""
    apply_run_options(threads, quiet, seed)
    from qwenkit.lm.loading import resolve_model

    resolved = resolve_model(model, gguf_file=gguf_file, device=device)
    loaded, tokenizer, name = resolved.model, resolved.tokenizer, resolved.name
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    inputs = iter(message) if message else _read_lines()
    for text in inputs:
        history.append({"role": "user", "content": text})
        result = _stream_reply(loaded, tokenizer, history, max_new_tokens=max_new_tokens, no_think=no_think,
                               thinking_budget=thinking_budget, temperature=temperature, stop_text=stop_text,
                               seed=seed)
        # the history rule: the reply's reasoning is not kept for later turns
        history.append({"role": "assistant", "content": result.content})
        budget = f", budget hit at {result.thinking_tokens}" if result.budget_hit else ""
        typer.secho(f"[{name}: {result.thinking_tokens} thinking tokens{budget}, {result.finish_reason}]", dim=True,
                    err=True)


def _read_lines():
    while True:
        try:
            line = input("> " if sys.stdin.isatty() else "")
        except EOFError:
            return
        if not line.strip():
            return
        yield line


def _stream_reply(model, tokenizer, history, *, max_new_tokens, no_think, thinking_budget, temperature, stop_text,
                  seed):
    from qwenkit.infer.generate import NON_THINKING_SAMPLING, THINKING_SAMPLING, chat_stop_token_ids, generate_ids
    from qwenkit.lm.chat import ReasoningStreamParser, generation_prompt

    prompt, thinking = generation_prompt(history, tokenizer=tokenizer, enable_thinking=not no_think)
    params = dict(THINKING_SAMPLING if thinking else NON_THINKING_SAMPLING, seed=seed, stop=[])
    if temperature is not None:
        params["temperature"] = temperature
    parser = ReasoningStreamParser(in_reasoning=thinking)
    ids: list[int] = []
    printed = [0]
    section = [""]

    stop_ids = set(chat_stop_token_ids(tokenizer))

    def on_token(_row: int, token: int) -> None:
        if token in stop_ids:
            return
        ids.append(token)
        text = tokenizer.decode(ids, skip_special_tokens=False)
        if text.endswith("\ufffd"):
            return
        for kind, piece in parser.feed(text[printed[0] :]):
            if kind != section[0]:  # label the sections: dimming alone is lost when the output is not a terminal
                typer.secho(("\n" if section[0] else "") + ("[thinking] " if kind == "reasoning" else "[answer] "),
                            nl=False, bold=True)
                section[0] = kind
            typer.secho(piece, nl=False, dim=kind == "reasoning")
        printed[0] = len(text)

    prompt_ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    (result,) = generate_ids(model, tokenizer, [prompt_ids], [thinking], [thinking_budget], [max_new_tokens],
                             stop_text, params, on_token=on_token)
    for kind, piece in parser.flush():
        typer.secho(piece, nl=False, dim=kind == "reasoning")
    typer.echo("")
    return result


@app.command("budget-sweep")
def budget_sweep_command(
    model: Annotated[str, typer.Option("--model", help="'toy' (trains one first) or as chat.")] = "toy",
    gguf_file: GgufOption = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML with sweep: and toy: sections.")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. sweep.questions=50.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/infer-budget-sweep"),
    seed: SeedOption = 0,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Accuracy against thinking budget on a verifiable task (the paper's budget curve), with a plot and a report."""
    apply_run_options(threads, quiet, seed)
    from qwenkit.core.config import load_config
    from qwenkit.core.runs import RunDir
    from qwenkit.infer.repro import SweepRunConfig, run_sweep

    settings = load_config(SweepRunConfig, config, list(overrides or []))
    run = RunDir(out)
    run.save_config(settings)
    summary = run_sweep(settings, run, model=model, gguf_file=gguf_file, seed=seed, quiet=quiet)
    typer.echo(summary)
    typer.echo(f"report: {run.path / 'report.html'}")


@app.command()
def serve(
    model: ModelOption = "smollm2",
    gguf_file: GgufOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    model_name: Annotated[str | None, typer.Option("--model-name", help="Name clients send.")] = None,
    max_batch_size: Annotated[int, typer.Option("--max-batch-size", help="Requests decoding together.")] = 32,
    prefill_chunk: Annotated[int, typer.Option(
        "--prefill-chunk", help="Longest prompt prefilled in one step; longer ones go this many per step.")] = 256,
    prefill_budget: Annotated[int, typer.Option(
        "--prefill-budget", help="Prompt tokens of short prompts prefilled together in one step.")] = 2048,
    prefix_cache_tokens: Annotated[int, typer.Option(
        "--prefix-cache-tokens", help="Prompt-prefix KV kept for reuse by prompts that start with it (a shared "
                                      "system prompt); 0 switches the prefix cache off.")] = 4096,
    max_request_bytes: Annotated[int, typer.Option("--max-request-bytes", help="Largest request body.")] = 2_000_000,
    max_prompt_tokens: Annotated[int | None, typer.Option("--max-prompt-tokens",
                                                          help="Longest prompt (default: the context).")] = None,
    stop_text: Annotated[str | None, typer.Option("--stop-text", help="'docs' (default), 'paper' or a text.")] = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Serve the model over an OpenAI-compatible API (chat and text completions, /tokenize, /metrics, /health)."""
    apply_run_options(threads, quiet)
    import uvicorn

    from qwenkit.core.errors import ConfigError
    from qwenkit.infer.server import create_app
    from qwenkit.lm.loading import resolve_model

    for flag, value in (("--max-batch-size", max_batch_size), ("--prefill-chunk", prefill_chunk),
                        ("--prefill-budget", prefill_budget), ("--max-request-bytes", max_request_bytes),
                        ("--max-prompt-tokens", max_prompt_tokens)):
        if value is not None and value < 1:  # refused before the model loads
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    if prefix_cache_tokens < 0:
        raise ConfigError(f"--prefix-cache-tokens must be >= 0 (0 switches the prefix cache off), got "
                          f"{prefix_cache_tokens}")
    resolved = resolve_model(model, gguf_file=gguf_file, device=device)
    loaded, tokenizer, name = resolved.model, resolved.tokenizer, resolved.name
    app_ = create_app(loaded, tokenizer, model_name=model_name or name, max_batch_size=max_batch_size,
                      prefill_chunk=prefill_chunk, prefill_budget=prefill_budget,
                      prefix_cache_tokens=prefix_cache_tokens, max_request_bytes=max_request_bytes,
                      max_prompt_tokens=max_prompt_tokens, stop_text=stop_text)
    typer.echo(f"serving {model_name or name} on http://{host}:{port}/v1")
    uvicorn.run(app_, host=host, port=port, log_level="warning" if quiet else "info")
