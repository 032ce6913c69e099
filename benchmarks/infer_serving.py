"""qwenkit infer serve against ``transformers serve`` (without and with --continuous-batching), one run, same model.

Each server runs as its own process with the same thread count, all of a model's servers at once on their own ports,
and is driven over HTTP by the same request mix:

- throughput: 1, 8 and 32 concurrent clients, one non-streaming request each (``max_tokens`` short), completion
  tokens (from ``usage``) per wall-clock second; ``--repeats`` runs per point and server, the servers taking turns,
  the median reported (every run is in the JSON);
- time to first token: 8 concurrent streaming clients, p50/p95 of the time to the first content chunk;
- short beside long: a short request's latency alone, then while a long request started first is running;
- peak RSS of the server process (``VmHWM``).

Models: SmolLM2-135M-Instruct (chat) and the tiny random Qwen3 (text completions: its synthetic tokenizer has no
chat template for ``transformers serve``), saved as plain HF directories first. Run under ``qk-cpu quiet``; writes
``benchmarks/results/infer_serving.{json,md}`` (``--name`` changes the stem).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VENV = Path(sys.executable).parent


def code_state() -> dict:
    """The commit measured and the files under src/qwenkit/infer that differed from it (uncommitted edits)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted": git("status", "--porcelain", "--", "src/qwenkit/infer").splitlines()}


def save_models(directory: Path, aliases: list[str]) -> dict[str, Path]:
    from qwenkit.lm.loading import resolve_model

    paths = {}
    for alias in aliases:
        out = directory / alias
        resolved = resolve_model(alias)
        resolved.model.save_pretrained(out)
        resolved.tokenizer.save_pretrained(out)
        paths[alias] = out
    return paths


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def start_server(kind: str, model_dir: Path, port: int, threads: int) -> tuple[subprocess.Popen, str]:
    """Start one server and wait for its /health; refuses a port another process still answers on (the previous
    server's), so every row is measured on the server it names."""
    deadline = time.monotonic() + 30
    while not port_is_free(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} is still in use; cannot start {kind}")
        time.sleep(0.5)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    if kind == "qwenkit":
        command = [str(VENV / "qwenkit"), "infer", "serve", "--model", str(model_dir), "--port", str(port),
                   "--threads", str(threads), "--model-name", "bench", "--quiet"]
        name = "bench"
    else:
        command = [str(VENV / "transformers"), "serve", str(model_dir), "--port", str(port), "--device", "cpu"]
        if kind == "transformers-cb":  # a KV cache of 256 blocks x 32 tokens: by default it takes memory by percent
            command += ["--continuous-batching", "--cb-num-blocks", "256", "--cb-block-size", "32"]
        name = str(model_dir)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=tempfile.gettempdir())
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process, name
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited with {process.returncode}")
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{kind} did not start in 180 s")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Driver:
    """One server's client: a single ``httpx.Client`` whose keep-alive connection pool the concurrent clients share,
    as the ``openai`` SDK's client does. (A new client per request costs the client ~20 ms of CPU each, loading the
    CA bundle, on the same two cores as the server: on the tiny model that cost, not the server, set the rate.)"""

    def __init__(self, url: str, model: str, chat: bool):
        self.url, self.model, self.chat = url, model, chat
        self.http = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    def body(self, text: str, max_tokens: int, stream: bool) -> tuple[str, dict]:
        common = {"model": self.model, "max_tokens": max_tokens, "temperature": 0.0, "stream": stream}
        if self.chat:
            return "/v1/chat/completions", {**common, "messages": [{"role": "user", "content": text}]}
        return "/v1/completions", {**common, "prompt": text}

    def request(self, text: str, max_tokens: int) -> tuple[float, int]:
        path, body = self.body(text, max_tokens, False)
        started = time.perf_counter()
        response = self.http.post(self.url + path, json=body)
        if response.status_code != 200:
            raise ValueError(f"{path} answered {response.status_code}: {response.text[:300]}")
        return time.perf_counter() - started, int(response.json()["usage"]["completion_tokens"])

    def first_token(self, text: str, max_tokens: int) -> float:
        path, body = self.body(text, max_tokens, True)
        started = time.perf_counter()
        with self.http.stream("POST", self.url + path, json=body) as response:
            if response.status_code != 200:
                raise ValueError(f"{path} (stream) answered {response.status_code}: {response.read()[:300]!r}")
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choices = json.loads(line[6:]).get("choices") or [{}]
                delta = choices[0].get("delta") or {}
                if delta.get("content") or delta.get("reasoning_content") or choices[0].get("text"):
                    return time.perf_counter() - started
        return time.perf_counter() - started


PROMPT = "Write one sentence about the sea."


def throughput_run(driver: Driver, clients: int, max_tokens: int) -> dict:
    """``clients`` concurrent non-streaming requests, one each; completion tokens per wall-clock second."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(lambda i: driver.request(f"{PROMPT} ({i})", max_tokens), range(clients)))
    wall = time.perf_counter() - started
    tokens = sum(t for _, t in done)
    return {"tokens": tokens, "seconds": round(wall, 3), "tokens_per_s": round(tokens / wall, 2),
            "latency_p50_s": round(statistics.median(s for s, _ in done), 3)}


def latencies(driver: Driver, short: int, long: int) -> dict:
    """Time to first token of 8 concurrent streams, and a short request alone and beside a long one."""
    with ThreadPoolExecutor(8) as pool:
        ttft = sorted(pool.map(lambda i: driver.first_token(f"{PROMPT} [{i}]", short), range(8)))
    alone, _ = driver.request(PROMPT, 8)
    holder = {}
    long_thread = threading.Thread(target=lambda: holder.update(long=driver.request("Tell me a long story.", long)))
    long_thread.start()
    time.sleep(0.5)
    beside, _ = driver.request(PROMPT, 8)
    long_thread.join()
    return {"ttft_8_clients": {"p50_s": round(statistics.median(ttft), 3),
                               "p95_s": round(ttft[min(7, int(0.95 * 8))], 3)},
            "short_beside_long": {"alone_s": round(alone, 3), "beside_long_s": round(beside, 3),
                                  "ratio": round(beside / alone, 2), "long_s": round(holder["long"][0], 3),
                                  "long_tokens": holder["long"][1]}}


def measure_model(alias: str, model_dir: Path, kinds: list[str], args) -> list[dict]:
    """Every server of ``kinds`` runs at once on its own port; each throughput point is measured ``args.repeats``
    times per server, the servers taking turns (forwards, then backwards), so a change in the machine's load falls
    on all of them alike; the median run is reported."""
    drivers, processes, errors = {}, {}, {}
    try:
        for offset, kind in enumerate(kinds):
            processes[kind], name = start_server(kind, model_dir, args.port + offset, args.threads)
            drivers[kind] = Driver(f"http://127.0.0.1:{args.port + offset}", name, chat=alias != "tiny-qwen3")
        caught = (httpx.HTTPError, KeyError, ValueError)

        def attempt(kind: str, fn):
            if kind in errors:
                return None
            try:
                return fn(drivers[kind])
            except caught as exc:
                errors[kind] = f"{type(exc).__name__}: {exc}"[:300]
                return None

        for kind in kinds:
            attempt(kind, lambda d: d.request(PROMPT, 4))  # warm-up
        runs: dict[str, dict[str, list]] = {kind: {} for kind in kinds}
        for n in args.clients:
            for repeat in range(args.repeats):
                for kind in kinds if repeat % 2 == 0 else kinds[::-1]:
                    run = attempt(kind, lambda d, n=n: throughput_run(d, n, args.short))
                    if run is not None:
                        runs[kind].setdefault(str(n), []).append(run)
        rows = []
        for kind in kinds:
            extra = attempt(kind, lambda d: latencies(d, args.short, args.long))
            row = {"model": alias, "server": kind, "peak_rss_mb": round(peak_rss_mb(processes[kind].pid), 1)}
            if kind in errors:
                row["error"] = errors[kind]
            else:
                row["throughput"] = {n: {**sorted(r, key=lambda x: x["tokens_per_s"])[len(r) // 2], "runs": r}
                                     for n, r in runs[kind].items()}
                row.update(extra)
            rows.append(row)
            print(json.dumps(row), flush=True)
        return rows
    finally:
        for driver in drivers.values():
            driver.http.close()
        for process in processes.values():
            process.terminate()
            process.wait(timeout=30)


def engine_cpu(alias: str, clients: int, max_tokens: int, repeats: int) -> dict:
    """CPU seconds of the engines alone, in this process at one torch thread: our ``ContinuousEngine`` and
    transformers' ``ContinuousBatchingManager`` (the engine of ``transformers serve --continuous-batching``, same KV
    cache size) on the same prompts, all submitted at once, greedy; interleaved repeats. CPU time, not wall time, so
    other jobs on the shared machine inflate it less."""
    import asyncio

    import torch
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    from qwenkit.infer.engine import ContinuousEngine, EngineRequest
    from qwenkit.lm.loading import resolve_model

    torch.set_num_threads(1)
    resolved = resolve_model(alias)
    model, tokenizer = resolved.model, resolved.tokenizer
    texts = [f"Write one sentence about the sea. ({i})" for i in range(clients)]
    if alias == "tiny-qwen3":
        prompts = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    else:
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True,
                                                 tokenize=True, return_dict=True)["input_ids"] for t in texts]
    ours = ContinuousEngine(model, tokenizer)

    async def run_ours() -> int:
        loop = asyncio.get_running_loop()
        requests = [EngineRequest(prompt_ids=list(p), thinking=False, max_tokens=max_tokens, temperature=0.0)
                    for p in prompts]
        for request in requests:
            request.loop, request.events = loop, asyncio.Queue()
            ours.submit(request)
        tokens = 0
        for request in requests:
            while True:
                _, kind, value = await request.events.get()
                if kind == "done":
                    tokens += len(value.token_ids)
                    break
                if kind == "error":
                    raise RuntimeError(value)
        return tokens

    config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, eos_token_id=sorted(ours.stop_ids),
                              pad_token_id=tokenizer.pad_token_id)
    manager = model.init_continuous_batching(
        generation_config=config, continuous_batching_config=ContinuousBatchingConfig(num_blocks=256, block_size=32))

    def run_theirs() -> int:
        ids = [manager.add_request(list(p), max_new_tokens=max_tokens) for p in prompts]
        tokens = 0
        for request_id in ids:
            output = None
            while output is None or not output.is_finished():
                output = manager.get_result(request_id, timeout=600)
            tokens += len(output.generated_tokens)
        return tokens

    def timed(fn) -> tuple[int, float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        tokens = fn()
        return tokens, time.perf_counter() - wall, time.process_time() - cpu

    ours.start()
    manager.start()
    try:
        asyncio.run(run_ours())
        run_theirs()  # warm-up
        rows: dict[str, list] = {"qwenkit": [], "transformers-cb": []}
        for _ in range(repeats):
            rows["qwenkit"].append(timed(lambda: asyncio.run(run_ours())))
            rows["transformers-cb"].append(timed(run_theirs))
    finally:
        manager.stop(block=True)
        ours.stop()
    summary = {}
    for name, runs in rows.items():
        cpu = statistics.median(r[2] for r in runs)
        tokens = runs[0][0]
        summary[name] = {"tokens": tokens, "cpu_s_median": round(cpu, 3), "tokens_per_cpu_s": round(tokens / cpu, 1),
                         "runs": [{"tokens": t, "wall_s": round(w, 3), "cpu_s": round(c, 3)} for t, w, c in runs]}
    return {"model": alias, "clients": clients, "max_tokens": max_tokens, "prompt_tokens": [len(p) for p in prompts],
            **summary}


def engine_markdown(report: dict) -> str:
    loads = [", ".join(f"{x:.2f}" for x in report[k]) for k in ("load_average_at_start", "load_average_at_end")]
    lines = [f"Engines alone, in one process at 1 torch thread (shared machine: load average {loads[0]} at start, "
             f"{loads[1]} at end); {_code_line(report['code'])} All prompts submitted at once, greedy, each engine's "
             "CPU seconds (median of the repeats).", "",
             "| model | requests x max tokens | engine | tokens | CPU s | tokens per CPU s | ratio |",
             "|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        base = row["transformers-cb"]["tokens_per_cpu_s"]
        for name in ("qwenkit", "transformers-cb"):
            cell = row[name]
            lines.append(f"| {row['model']} | {row['clients']} x {row['max_tokens']} | {name} | {cell['tokens']} | "
                         f"{cell['cpu_s_median']} | {cell['tokens_per_cpu_s']} | "
                         f"{cell['tokens_per_cpu_s'] / base:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2", "tiny-qwen3"])
    parser.add_argument("--servers", nargs="+", default=["qwenkit", "transformers", "transformers-cb"])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--short", type=int, default=16, help="max_tokens of the short requests")
    parser.add_argument("--long", type=int, default=128, help="max_tokens of the long request")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=8931)
    parser.add_argument("--name", default="infer_serving", help="results file stem in benchmarks/results")
    parser.add_argument("--engine-only", action="store_true",
                        help="compare the engines alone (CPU seconds, in-process) instead of the servers")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per throughput point and server (the median is reported), or of --engine-only")
    args = parser.parse_args()
    load, code = os.getloadavg(), code_state()
    if args.engine_only:
        rows = [engine_cpu(alias, max(args.clients), args.short, args.repeats) for alias in args.models]
        report = {"load_average_at_start": load, "load_average_at_end": os.getloadavg(), "code": code, "rows": rows}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / f"{args.name}.md").write_text(engine_markdown(report))
        print(engine_markdown(report))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = save_models(Path(tmp), args.models)
        for alias in args.models:
            rows += measure_model(alias, paths[alias], args.servers, args)
    report = {"load_average_at_start": load, "load_average_at_end": os.getloadavg(), "code": code,
              "threads": args.threads, "repeats": args.repeats,
              "short_max_tokens": args.short,
              "long_max_tokens": args.long, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))


def _code_line(code: dict | None) -> str:
    if not code:
        return ""
    dirty = f"; uncommitted then: {', '.join(code['uncommitted'])}" if code["uncommitted"] else ""
    return f"Code: commit {code['commit']}{dirty}."


def markdown(report: dict) -> str:
    clients = sorted({n for r in report["rows"] for n in r.get("throughput", {})}, key=int)
    head = ["model", "server", *[f"tok/s @{n}" for n in clients], "TTFT p50 / p95 (s, 8 streams)",
            "short alone / beside long (s)", "ratio", "peak RSS (MB)"]
    loads = [", ".join(f"{x:.2f}" for x in report.get(k, ())) for k in ("load_average_at_start", "load_average_at_end")]
    lines = [f"Load average {loads[0]} at start, "
             f"{loads[1] or 'not recorded'} at end; {report['threads']} threads per server, "
             f"short = {report['short_max_tokens']} tokens, long = {report['long_max_tokens']} tokens, greedy; "
             f"a model's servers ran at once, tok/s is the median of {report.get('repeats', 1)} runs per point, the "
             "servers taking turns.",
             _code_line(report.get("code")), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["rows"]:
        if "error" in row:
            error = " ".join(row["error"].split()).replace("|", "/")
            lines.append(f"| {row['model']} | {row['server']} | failed: {error} |")
            continue
        tput = [str(row["throughput"][n]["tokens_per_s"]) for n in clients]
        ttft, side = row["ttft_8_clients"], row["short_beside_long"]
        lines.append(f"| {row['model']} | {row['server']} | " + " | ".join(tput)
                     + f" | {ttft['p50_s']} / {ttft['p95_s']} | {side['alone_s']} / {side['beside_long_s']} | "
                     f"{side['ratio']} | {row['peak_rss_mb']} |")
    lines += ["", "Ratios qwenkit / peer (throughput at the largest client count):", ""]
    for model in dict.fromkeys(r["model"] for r in report["rows"]):
        ours = next((r for r in report["rows"] if r["model"] == model and r["server"] == "qwenkit"), None)
        for peer in report["rows"]:
            if peer["model"] != model or peer["server"] == "qwenkit" or not ours or "error" in ours \
                    or "error" in peer:
                continue
            top = clients[-1]
            ratio = ours["throughput"][top]["tokens_per_s"] / peer["throughput"][top]["tokens_per_s"]
            lines.append(f"- {model}: qwenkit / {peer['server']} at {top} clients = {ratio:.2f}x")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
