"""Peak memory of the RL loss with chunked log-probs/entropy vs a naive full-softmax pass.

One response of T tokens over a V-token vocabulary (defaults: T=4096, V=32768, hidden 256): final hidden states ->
LM head -> per-token log-probs and entropies -> 80/20 mask -> GRPO loss -> backward. The chunked path is qwenkit's
(``qwenkit.lm.logprobs.logprobs_from_hidden``: the head over 256 positions at a time, recomputed in the backward);
the naive path materialises the (T, V) logits, log-softmax and probabilities at once, as most trainers do. Each
variant runs in a fresh subprocess; peak memory is the growth of the process's max RSS over its baseline after setup.

usage: python benchmarks/rl_entropy_memory.py [--tokens 4096] [--vocab 32768]
Writes benchmarks/results/rl_entropy_memory.json and .md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def measure(variant: str, tokens: int, vocab: int, hidden: int) -> dict:
    import torch

    from qwenkit.lm.logprobs import logprobs_from_hidden
    from qwenkit.rl.losses import high_entropy_mask, policy_loss

    torch.set_num_threads(1)
    torch.manual_seed(0)
    head = torch.nn.Linear(hidden, vocab, bias=False)
    states = torch.randn(1, tokens, hidden, requires_grad=True)
    labels = torch.randint(0, vocab, (1, tokens))
    mask = torch.ones(1, tokens, dtype=torch.bool)
    old = torch.randn(1, tokens) * 0.01 - 10
    advantages = torch.tensor([1.0])
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if variant == "chunked":
        logp, entropy = logprobs_from_hidden(states, head, labels, with_entropy=True, chunk_size=256)
    else:
        log_probs = torch.log_softmax(head(states).float(), dim=-1)
        logp = log_probs.gather(-1, labels[..., None]).squeeze(-1)
        with torch.no_grad():
            entropy = -(log_probs.exp() * log_probs).sum(-1)
    token_mask = high_entropy_mask(entropy, mask, 0.2)
    loss, _ = policy_loss(logp, old, advantages, mask, token_mask=token_mask, aggregation="token-mean")
    loss.backward()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"variant": variant, "peak_extra_mib": (peak - baseline) / 1024, "seconds": seconds,
            "loss": float(loss), "grad_norm": float(states.grad.norm())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--variant", choices=["chunked", "naive"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.tokens, args.vocab, args.hidden)))
        return
    results = {}
    for variant in ("chunked", "naive"):
        done = subprocess.run([sys.executable, __file__, "--variant", variant, "--tokens", str(args.tokens),
                               "--vocab", str(args.vocab), "--hidden", str(args.hidden)],
                              capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        print(results[variant])
    assert abs(results["chunked"]["loss"] - results["naive"]["loss"]) < 1e-4
    ratio = results["naive"]["peak_extra_mib"] / max(results["chunked"]["peak_extra_mib"], 1e-9)
    payload = {"benchmark": "rl_entropy_memory", "tokens": args.tokens, "vocab": args.vocab, "hidden": args.hidden,
               "results": results, "naive_over_chunked_memory": ratio}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rl_entropy_memory.json").write_text(json.dumps(payload, indent=2))
    lines = [
        "# RL loss peak memory: chunked log-probs + entropy vs full softmax", "",
        f"one response of {args.tokens} tokens, vocabulary {args.vocab}, hidden {args.hidden}; head -> log-probs + "
        "entropy -> 80/20 mask -> GRPO loss -> backward; fresh process per variant, float32, 1 thread", "",
        "| variant | peak extra memory (MiB) | seconds | loss | ratio (memory) |", "|---|---|---|---|---|",
    ]
    for variant in ("chunked", "naive"):
        r = results[variant]
        lines.append(f"| {variant} | {r['peak_extra_mib']:.0f} | {r['seconds']:.2f} | {r['loss']:.6f} | "
                     f"{r['peak_extra_mib'] / results['chunked']['peak_extra_mib']:.1f}x |")
    (out / "rl_entropy_memory.md").write_text("\n".join(lines) + "\n")
    print(f"naive / chunked peak memory: {ratio:.1f}x")


if __name__ == "__main__":
    main()
