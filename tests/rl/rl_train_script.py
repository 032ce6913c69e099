"""A tiny RL run for the data-parallel test: run it plainly (1 process) or under torchrun (2 gloo processes).

usage: python rl_train_script.py RUN_DIR OUT.pt
"""

import sys

import torch

from qwenkit.core.config import load_config
from qwenkit.rl.config import RLConfig
from qwenkit.rl.tasks import TASKS, Task


def digit_share(prompt: str, completion: str, reference: str) -> float:
    """Share of digits in the completion: varied rewards even from an untrained model."""
    return sum(c.isdigit() for c in completion) / max(1, len(completion))


TASKS["digit_share"] = lambda: Task("digit_share", TASKS["sort3"]().draw, digit_share, 6, "test task")

CONFIG = {
    "task": "digit_share",
    "model": {"size": "nano", "moe": False},
    "algorithm": {"level": "token", "aggregation": "token-mean", "rho": 0.2, "clip_low": 0.2, "clip_high": 0.28},
    "rollout": {"prompts": 4, "group_size": 4, "num_mini_batches": 2},
    "rollouts": 2,
    "eval_prompts": 0,
    "trainer": {"lr": 1e-2, "grad_accum_steps": 2, "max_grad_norm": None},
}


def main() -> None:
    from qwenkit.rl.train import train

    torch.set_num_threads(1)
    result = train(load_config(RLConfig, CONFIG), sys.argv[1], seed=3, quiet=True, report=False)
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        torch.save({"history": result.history}, sys.argv[2])


if __name__ == "__main__":
    main()
