"""Pilot-scale reproduction of Qwen-Image's text-rendering recipe on CPU (research note section 6.2).

- ``e1``: T2I on single glyphs (34 Latin glyphs, 32x32, plain background), direct training, pilot settings
  (dim 96, 3 layers, AdamW lr 1e-3, batch 64, logit-normal t, EMA 0.995, PCA codec 4x4x3 -> 16 whitened comps);
  RapidOCR word accuracy vs step (EMA weights, CFG 3, 20 Euler steps), final score on >= 300 held-out captions.
- ``e2``: curriculum (non-text -> glyph) vs direct with the same settings (``--small``: on the quick 16x16
  fixed-colour task instead).
- ``e3``: editing ablation: dual vs semantic-only vs VAE-only conditioning at equal steps, batch 64.

The experiments live in :mod:`qwenkit.image.experiments` (also behind ``qwenkit repro image-text --full``).
Single thread, one experiment at a time; every arm writes its own JSON so a long run can be split across calls:
``.venv/bin/python benchmarks/image_repro_full.py e1 [--steps 4000] [--eval-every 500] [--eval-n 100] [--final-n 300]``.
Results: ``benchmarks/results/image_<exp>/result.json`` + ``report.md`` (+ plots); checkpoints and the trained
models go to ``--work`` (default ``/tmp/qwenkit_image_runs``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from qwenkit.image.experiments import Plan, e1, e2, e3

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=["e1", "e2", "e3"])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-n", type=int, default=100)
    parser.add_argument("--final-n", type=int, default=300)
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arms", nargs="+", default=None)
    parser.add_argument("--small", action="store_true", help="e2 on the quick 16x16 fixed-colour glyph task")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the arms' JSON files")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qwenkit_image_runs"),
                        help="run directories (checkpoints, models): not committed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plan = Plan(out=args.out, work=args.work, steps=args.steps, eval_every=args.eval_every, eval_n=args.eval_n,
                final_n=args.final_n, sample_steps=args.sample_steps, cfg=args.cfg, seed=args.seed,
                arms=args.arms or [], small=args.small, report_only=args.report_only)
    {"e1": e1, "e2": e2, "e3": e3}[args.experiment](plan)


if __name__ == "__main__":
    main()
