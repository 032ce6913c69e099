"""Does the role-play harness keep a slow server busy? The same run at concurrency 1 and 16 against a loopback server.

The server (:func:`delayed_app` under uvicorn, in its own process as a real server would be, so it does not share this
process's interpreter lock) answers every chat request after a fixed delay with the deterministic scripted backend,
so wall time measures the harness's scheduling, not a model. Player,
judge and user simulator all go through the OpenAI-compatible HTTP path (:class:`qwenkit.lm.OpenAIChatBackend`).
The peer is the sequential harness: concurrency 1, one request in flight at a time, as MT-Bench's judge script and
most single-script role-play evaluations run. Each run starts from an empty run directory (no cache hits); the
outputs of the two runs are compared byte for byte. Run under ``qk-cpu quiet``; writes
``benchmarks/results/roleplay_concurrency.{json,md}``.

    .venv/bin/python benchmarks/roleplay_concurrency.py [--delay 0.05] [--dialogues 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from fastapi import FastAPI, Request

RESULTS = Path(__file__).parent / "results"


def delayed_app(delay_s: float):
    """A stand-in for a slow engine: ``/v1/chat/completions`` answers with the scripted backend after ``delay_s``
    (``asyncio.sleep``: requests in flight overlap, as on a real batching server). Benchmark only: the body is read
    as the harness sends it, with no validation."""
    import asyncio

    from qwenkit.roleplay.backends import ScriptedBackend

    backend = ScriptedBackend("delayed")
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        body = await request.json()
        await asyncio.sleep(delay_s)
        completion = backend.complete(body["messages"], max_tokens=body["max_tokens"], seed=body.get("seed"))
        return {"id": "delayed", "object": "chat.completion", "model": "delayed",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": completion.text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": completion.usage.get("prompt_tokens", 0),
                          "completion_tokens": completion.usage.get("completion_tokens", 0)}}

    return app


def serve_delayed(delay_s: float, urls, stop) -> None:
    """Child process: serve :func:`delayed_app` until ``stop`` is set."""
    from qwenkit.core.serving import serve_in_background

    with serve_in_background(delayed_app(delay_s)) as url:
        urls.put(url)
        stop.wait()


def one_run(url: str, dialogues: list[str], concurrency: int, out: Path) -> tuple[float, int]:
    from qwenkit.roleplay.run import RunConfig, execute_run

    spec = {"kind": "openai", "base_url": f"{url}/v1", "model": "delayed", "max_tokens": 32}
    config = RunConfig.model_validate({"players": {"p": spec}, "simulator": spec, "judges": {"j": spec},
                                       "select": {"ids": dialogues}, "concurrency": concurrency,
                                       "bootstrap_reps": 100})
    started = time.perf_counter()
    execute_run(config, out, quiet=True)
    seconds = time.perf_counter() - started
    usage = json.loads((out / "usage.json").read_text())
    return seconds, sum(u["calls"] for u in usage.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.05, help="Seconds the server waits before each answer.")
    parser.add_argument("--dialogues", type=int, default=16, help="Scripted dialogues of the shipped dataset.")
    args = parser.parse_args()

    import multiprocessing

    from qwenkit.roleplay.data import load_shipped_dataset

    scripted = [d.id for d in load_shipped_dataset().dialogues if d.turns is not None]
    chosen = scripted[:: max(1, len(scripted) // args.dialogues)][: args.dialogues]
    rows, load_at_start = [], os.getloadavg()
    context = multiprocessing.get_context("spawn")
    urls, stop = context.Queue(), context.Event()
    server = context.Process(target=serve_delayed, args=(args.delay, urls, stop), daemon=True)
    server.start()
    url = urls.get(timeout=120)
    with tempfile.TemporaryDirectory() as tmp:
        for concurrency in (1, 16):
            seconds, calls = one_run(url, chosen, concurrency, Path(tmp) / f"c{concurrency}")
            rows.append({"concurrency": concurrency, "calls": calls, "seconds": round(seconds, 3),
                         "calls_per_s": round(calls / seconds, 2)})
        identical = all((Path(tmp) / "c1" / name).read_bytes() == (Path(tmp) / "c16" / name).read_bytes()
                        for name in ("transcripts.jsonl", "judgments.jsonl", "summary.json"))
    stop.set()
    server.join(timeout=30)
    speedup = rows[0]["seconds"] / rows[1]["seconds"]
    result = {"delay_s": args.delay, "dialogues": len(chosen), "runs": rows, "speedup_16_vs_1": round(speedup, 2),
              "outputs_identical": identical, "load_average_at_start": load_at_start,
              "load_average_at_end": os.getloadavg(),
              "machine": platform.machine(), "cores": os.cpu_count()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "roleplay_concurrency.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    lines = ["# Role-play harness against a delayed loopback server", "",
             f"Server (its own process) delay {args.delay} s per request; {len(chosen)} scripted dialogues of the "
             "shipped dataset (player, user simulator and judge all over HTTP); each run from an empty cache.", "",
             "| concurrency | calls | wall s | calls/s |", "|---|---|---|---|"]
    lines += [f"| {r['concurrency']} | {r['calls']} | {r['seconds']:.2f} | {r['calls_per_s']:.1f} |" for r in rows]
    lines += ["", f"Speed-up at concurrency 16 over 1: **{speedup:.1f}x**; outputs byte-identical: {identical}. "
              f"Load average (1/5/15 min) at the start {', '.join(f'{x:.2f}' for x in load_at_start)}, at the end "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"({os.cpu_count()} cores, {platform.machine()})."]
    (RESULTS / "roleplay_concurrency.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
