"""Quick reproduction (``qwenkit demo``, about 90 s on 2 idle cores) and ``qwenkit repro face-style --full``.

Quick: 24 synthetic speakers (6 held out) x 8 sentences (6 for training) on a 400-vertex face; five arms of 300 steps
(ours, one-hot, no primitives, no enhancement, no sync losses), zero motion as the floor; a rendered clip.
Full: 40 speakers (8 held out) x 12 sentences, 800 steps per arm. 2,000 or 1,500 steps do not fit the ~40 min bound
at one thread on the shared machine (1,500 reached step 700 of the first of five arms in 7 min at load average 11).

Arms run in parallel worker processes of one torch thread each: as many as ``--threads`` (default 2, at most the
cores this process may use).
"""

from __future__ import annotations

from qwenkit.core.repro import Repro, ReproContext

QUICK = {"speakers": 24, "unseen_speakers": 6, "sentences": 8, "train_sentences": 6, "steps": 300}
FULL = {"speakers": 40, "unseen_speakers": 8, "sentences": 12, "train_sentences": 8, "steps": 800}


def run_face_style(ctx: ReproContext) -> str:
    import json
    import os
    import time

    from qwenkit.face.experiments import ARMS, Plan, render_comparison, run_arms
    from qwenkit.face.report_repro import write_repro_report
    from qwenkit.face.synthetic import SyntheticConfig, make_synthetic

    sizes = FULL if ctx.full else QUICK
    out = ctx.run.path
    started, load_at_start = time.perf_counter(), os.getloadavg()
    corpus_config = SyntheticConfig(speakers=sizes["speakers"], unseen_speakers=sizes["unseen_speakers"],
                                    sentences=sizes["sentences"], train_sentences=sizes["train_sentences"],
                                    seed=ctx.seed)
    make_synthetic(corpus_config, out / "corpus", quiet=True)
    corpus_s = time.perf_counter() - started
    plan = Plan(out / "corpus", out / "arms", sizes["steps"], ctx.seed)
    from qwenkit.core.parallel import default_workers

    threads = ctx.threads or 1
    workers = default_workers(len(ARMS), threads)
    results = run_arms(plan, list(ARMS), threads=threads, workers=workers)
    by_arm = {r["arm"]: r for r in results}
    video, strip = render_comparison(out / "corpus", {"ours": by_arm["ours"]["model"],
                                                      "one-hot": by_arm["one-hot"]["model"]}, out)
    timing = {"corpus_s": corpus_s, "total_s": time.perf_counter() - started, "workers": workers,
              "load_average_start": load_at_start, "load_average": os.getloadavg()}
    (out / "result.json").write_text(json.dumps({"sizes": sizes, "arms": results, "timing": timing}, indent=2))
    write_repro_report(out, sizes, results, timing, video, strip)
    ours = by_arm["ours"]["evaluations"]
    own, other = ours["unseen_own"]["lve"], ours["unseen_other"]["lve"]
    return (f"unseen-speaker LVE: own reference {own:.3g} vs other speaker's {other:.3g} "
            f"({(own / other - 1) * 100:+.0f}%); one-hot {by_arm['one-hot']['evaluations']['unseen_own']['lve']:.3g}; "
            f"zero motion {ours['unseen_own']['zero_lve']:.3g}")


REPROS = [Repro("face-style", "StyleSpeaker: speaking styles from a reference clip (synthetic talking faces)",
                run_face_style, quick_minutes=1.9, order=80)]
