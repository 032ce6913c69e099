"""Distributed checks, run under torchrun with 2 gloo processes; each rank saves what it computed.

usage: python -m torch.distributed.run --nproc_per_node=2 rl_dist_script.py OUT_DIR
OUT_DIR/rank{r}.pt holds:
- "mask", "threshold": the 80/20 mask of this rank's (unequal, possibly empty) entropy shard;
- "rollout": the global rollout batch assembled from both ranks' shares (shard_generation);
- "micro": the first micro-batch a sharded RolloutSource hands to the loop;
- "history" (rank 0): the metrics of a short data-parallel training run (TRAIN_CONFIG) in OUT_DIR/train.
"""

import os
import sys

import torch
import torch.distributed as dist

from qwenkit.core.config import load_config
from qwenkit.rl.config import RLConfig
from qwenkit.rl.losses import entropy_threshold, high_entropy_mask
from qwenkit.rl.rollout import RolloutSource, gather_rollout, generate_rollout
from qwenkit.rl.tasks import TASKS, Task, get_task
from qwenkit.rl.train import build_model_and_tokenizer, train

CONFIG = {"model": {"size": "nano"}, "rollout": {"prompts": 4, "group_size": 4, "num_mini_batches": 2,
                                                 "shard_generation": True}}


TRAIN_CONFIG = {
    "task": "digit_share",
    "model": {"size": "nano", "moe": False},
    "algorithm": {"level": "token", "aggregation": "token-mean", "rho": 0.2, "clip_low": 0.2, "clip_high": 0.28},
    "rollout": {"prompts": 4, "group_size": 4, "num_mini_batches": 2},
    "rollouts": 2,
    "eval_prompts": 0,
    "trainer": {"lr": 1e-2, "grad_accum_steps": 2, "max_grad_norm": None},
}


def digit_share(prompt: str, completion: str, reference: str) -> float:
    """Share of digits in the completion: varied rewards even from an untrained model."""
    return sum(c.isdigit() for c in completion) / max(1, len(completion))


def register_digit_share_task(tasks: dict) -> None:
    tasks["digit_share"] = lambda: Task("digit_share", get_task("sort3").draw, digit_share, 6, "test task")


def entropy_shards() -> tuple[torch.Tensor, torch.Tensor]:
    """6 rows of entropies; rank 0 gets rows 0-2 (60 valid tokens), rank 1 rows 3-5 (no valid token)."""
    g = torch.Generator().manual_seed(0)
    entropy = torch.rand(6, 40, generator=g)
    lengths = torch.tensor([40, 3, 17, 0, 0, 0])
    return entropy, torch.arange(40)[None] < lengths[:, None]


def main() -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    entropy, mask = entropy_shards()
    rows = slice(rank * 3, (rank + 1) * 3)
    result = {
        "mask": high_entropy_mask(entropy[rows], mask[rows], rho=0.2),
        "threshold": entropy_threshold(entropy[rows], mask[rows], 0.2),
    }
    config = load_config(RLConfig, CONFIG)
    model, tokenizer = build_model_and_tokenizer(config)
    share = generate_rollout(model, tokenizer, get_task("sort3"), config, index=0, seed=7, shard=(rank, 2))
    result["rollout"] = gather_rollout(share).tensors
    source = RolloutSource(model, tokenizer, get_task("sort3"), config, seed=7, world_size=2)
    result["micro"] = {k: v for k, v in source(0).items() if torch.is_tensor(v)}
    register_digit_share_task(TASKS)
    run = train(load_config(RLConfig, TRAIN_CONFIG), os.path.join(sys.argv[1], "train"), seed=3, quiet=True,
                report=False)
    result["history"] = run.history
    torch.save(result, os.path.join(sys.argv[1], f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
