"""Throughput of qwenkit.infer against plain ``model.generate``, and of batched serving against sequential requests.

Part 1 (local generation, same model, prompts, greedy settings and token counts in every variant):
  - ``hf_generate``: ``model.generate`` (the peer);
  - ``hf_generate+budget``: ``model.generate`` with our ThinkingBudgetProcessor;
  - ``qwenkit_sample``: ``qwenkit.lm.sampling.sample`` without a budget;
  - ``generate_chat+budget``: ``qwenkit.infer.generate_chat`` with the exact budget (``logits`` strategy).
  End-of-turn tokens are banned in all four so every row generates exactly ``max_new_tokens`` tokens.
Part 2 (server): ``qwenkit infer serve``'s app on 127.0.0.1; 32 requests sent with 1, 8 and 32 concurrent clients.

Goals from issue 4: the budget costs < 5 % throughput; 32 clients reach >= 4x the tokens/s of sequential requests.

    .venv/bin/python benchmarks/infer_throughput.py [--size small] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from transformers import SuppressTokensLogitsProcessor

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def code_state() -> dict:
    """The commit measured and the files under src/qwenkit/infer that differed from it (uncommitted edits)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted": git("status", "--porcelain", "--", "src/qwenkit/infer").splitlines()}


def local_generation(model, tokenizer, *, batch: int, new_tokens: int, repeats: int) -> list[dict]:
    from transformers import LogitsProcessorList

    from qwenkit.infer import ThinkingBudgetProcessor, generate_chat
    from qwenkit.infer.generate import chat_stop_token_ids
    from qwenkit.lm.chat import generation_prompt
    from qwenkit.lm.sampling import SamplingParams, left_pad, sample

    conversations = [[{"role": "user", "content": f"question number {i} " + "x" * (i % 5)}] for i in range(batch)]
    prompts = [tokenizer(generation_prompt(c)[0], add_special_tokens=False)["input_ids"] for c in conversations]
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    stop_ids = chat_stop_token_ids(tokenizer)
    ban = SuppressTokensLogitsProcessor(stop_ids)
    budget = new_tokens // 4

    def hf(with_budget: bool) -> int:
        processors = [ban]
        if with_budget:
            processors.append(ThinkingBudgetProcessor(tokenizer, [budget] * batch, stop_token_ids=stop_ids))
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                             logits_processor=LogitsProcessorList(processors), pad_token_id=tokenizer.pad_token_id)
        return (out.shape[1] - ids.shape[1]) * batch

    def ours_plain() -> int:
        params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0, stop_token_ids=stop_ids)
        result = sample(model, tokenizer, prompts, params, logits_processors=[ban])
        return sum(len(c) for c in result.completion_ids)

    def ours_budget() -> int:
        results = generate_chat(model, tokenizer, conversations, max_new_tokens=new_tokens, thinking_budget=budget,
                                temperature=0.0, logits_processors=[ban])
        assert all(r.thinking_tokens == budget for r in results)
        return sum(len(r.token_ids) for r in results)

    variants = {"hf_generate": lambda: hf(False), "hf_generate+budget": lambda: hf(True),
                "qwenkit_sample": ours_plain, "generate_chat+budget": ours_budget}
    timings: dict[str, list[float]] = {name: [] for name in variants}
    tokens: dict[str, int] = {}
    for fn in variants.values():  # warm-up
        fn()
    for _ in range(repeats):  # interleaved, so background load hits every variant alike
        for name, fn in variants.items():
            started = time.perf_counter()
            tokens[name] = fn()
            timings[name].append(time.perf_counter() - started)
    rows = []
    base = tokens["hf_generate"] / statistics.median(timings["hf_generate"])
    for name in variants:
        rate = tokens[name] / statistics.median(timings[name])
        rows.append({"variant": name, "tokens": tokens[name], "median_s": statistics.median(timings[name]),
                     "tokens_per_s": rate, "ratio_vs_hf_generate": rate / base})
    return rows


def server_throughput(model, tokenizer, *, requests: int, new_tokens: int, clients: list[int]) -> list[dict]:
    import httpx

    from qwenkit.core.serving import serve_in_background
    from qwenkit.infer.server import create_app

    app = create_app(model, tokenizer, model_name="bench", max_batch_size=max(clients), batch_wait_s=0.02)
    rows = []
    with serve_in_background(app) as base_url:
        url = f"{base_url}/v1/chat/completions"

        def one(i: int) -> int:
            body = {"model": "bench", "messages": [{"role": "user", "content": f"request {i}"}],
                    "max_tokens": new_tokens, "temperature": 0.0, "thinking_budget": new_tokens // 4}
            response = httpx.post(url, json=body, timeout=600)
            response.raise_for_status()
            return response.json()["usage"]["completion_tokens"]

        one(0)  # warm-up
        for concurrency in clients:
            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                produced = sum(pool.map(one, range(requests)))
            seconds = time.perf_counter() - started
            rows.append({"clients": concurrency, "requests": requests, "completion_tokens": produced,
                         "seconds": seconds, "tokens_per_s": produced / seconds})
    sequential = rows[0]["tokens_per_s"]
    for row in rows:
        row["ratio_vs_sequential"] = row["tokens_per_s"] / sequential
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", help="tiny Qwen3 size (nano, tiny, small, base)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load, code = os.getloadavg(), code_state()
    from qwenkit.core.system import cpu_model
    from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for

    tokenizer = build_synthetic_tokenizer()
    model = tiny_qwen3_for(tokenizer, size=args.size).eval()
    local = local_generation(model, tokenizer, batch=args.batch, new_tokens=args.new_tokens, repeats=args.repeats)
    serving = server_throughput(model, tokenizer, requests=args.requests, new_tokens=args.new_tokens,
                                clients=[1, 8, 32])
    meta = {"model": f"tiny Qwen3 {args.size} (random weights, synthetic tokenizer)", "threads": args.threads,
            "cpu": cpu_model(), "torch": torch.__version__, "batch": args.batch, "new_tokens": args.new_tokens,
            "repeats": args.repeats, "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
            "code": code}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "infer_throughput.json").write_text(json.dumps({"meta": meta, "local": local, "serving": serving},
                                                              indent=2))
    loads = [", ".join(f"{x:.2f}" for x in meta[k]) for k in ("load_average_at_start", "load_average_at_end")]
    dirty = f"; uncommitted then: {', '.join(code['uncommitted'])}" if code["uncommitted"] else ""
    lines = [f"# qwenkit.infer throughput ({meta['model']}, {args.threads} thread(s), {meta['cpu']})", "",
             f"Shared machine: load average {loads[0]} at start, {loads[1]} at end. Code: commit "
             f"{code['commit']}{dirty}.", "",
             f"Local generation: batch {args.batch}, {args.new_tokens} new tokens per row, greedy, median of "
             f"{args.repeats}; budget = {args.new_tokens // 4} thinking tokens.", "",
             "| variant | tokens | median s | tokens/s | ratio vs hf_generate |", "|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['tokens']} | {r['median_s']:.3f} | {r['tokens_per_s']:.0f} | "
              f"{r['ratio_vs_hf_generate']:.3f} |" for r in local]
    lines += ["", f"Server: {args.requests} requests of {args.new_tokens} tokens, by concurrent clients.", "",
              "| clients | completion tokens | seconds | tokens/s | ratio vs sequential |", "|---|---|---|---|---|"]
    lines += [f"| {r['clients']} | {r['completion_tokens']} | {r['seconds']:.2f} | {r['tokens_per_s']:.0f} | "
              f"{r['ratio_vs_sequential']:.2f} |" for r in serving]
    (RESULTS / "infer_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
