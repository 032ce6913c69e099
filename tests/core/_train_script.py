"""A small training run used by the loop tests: run in a subprocess (kill/resume) or under torchrun (DDP).

usage: python _train_script.py RUN_DIR MAX_STEPS [--resume] [--kill-after STEP] [--out weights.pt]
"""

import argparse
import os
import signal

import torch

from qwenkit.core.loop import TrainConfig, train_loop
from qwenkit.core.runs import RunDir


def build_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Dropout(0.2), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def batch_at(index: int) -> dict:
    generator = torch.Generator().manual_seed(1000 + index)
    x = torch.randn(8, 6, generator=generator)
    return {"x": x, "y": x.sum(-1, keepdim=True).sin()}


NOISE = {"scale": 0.01}


def step_fn(model, batch):
    noise = NOISE["scale"] * torch.randn_like(batch["y"])  # global RNG: resume must restore it exactly
    loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"] + noise)
    return loss, {"mse": loss.detach()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("max_steps", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-after", type=int, default=0)
    parser.add_argument("--out", default="")
    parser.add_argument("--accum", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--noise", type=float, default=0.01, help="0 for DDP: each rank draws its own noise")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = build_model()
    model[1].p = args.dropout
    NOISE["scale"] = args.noise
    config = TrainConfig(
        max_steps=args.max_steps, grad_accum_steps=args.accum, lr=0.05, lr_schedule="cosine", warmup_steps=2,
        checkpoint_every=3, max_grad_norm=0.5, seed=123,
    )

    def kill(state):
        if args.kill_after and state.step == args.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    train_loop(model, step_fn, batch_at, config, run=RunDir(args.run_dir), resume=args.resume, callbacks=[kill])
    rank = int(os.environ.get("RANK", "0"))
    if args.out and rank == 0:
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, args.out)


if __name__ == "__main__":
    main()
