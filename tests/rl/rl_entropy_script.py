"""Run under torchrun with 2 processes: each rank computes the 80/20 mask of its (unequal, possibly empty) shard.

usage: python -m torch.distributed.run --nproc_per_node=2 rl_entropy_script.py OUT_DIR
Each rank saves {"mask", "threshold"} to OUT_DIR/rank{r}.pt.
"""

import os
import sys

import torch
import torch.distributed as dist

from qwenkit.rl.losses import entropy_threshold, high_entropy_mask


def shards() -> tuple[torch.Tensor, torch.Tensor]:
    """6 rows of entropies; rank 0 gets rows 0-2 (60 valid tokens), rank 1 rows 3-5 (no valid token)."""
    g = torch.Generator().manual_seed(0)
    entropy = torch.rand(6, 40, generator=g)
    lengths = torch.tensor([40, 3, 17, 0, 0, 0])
    return entropy, torch.arange(40)[None] < lengths[:, None]


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    entropy, mask = shards()
    rows = slice(rank * 3, (rank + 1) * 3)
    local = high_entropy_mask(entropy[rows], mask[rows], rho=0.2)
    threshold = entropy_threshold(entropy[rows], mask[rows], 0.2)
    torch.save({"mask": local, "threshold": threshold}, os.path.join(sys.argv[1], f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
