"""Exercise torchdet.utils.comm in processes started by torchdet.engine.launch (run as a
script by test_launch.py): each rank writes what it observed to ``<out>/rank<r>.json``.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

from torchdet.engine import launch
from torchdet.utils import comm


def main(out: str) -> None:
    rank = comm.get_rank()
    np.random.seed(100 + rank)  # different on each rank: the shared seed must still agree
    reduced = comm.reduce_dict({"b": torch.tensor(float(rank + 1)), "a": torch.tensor(10.0)})
    summed = comm.reduce_dict({"x": torch.tensor(float(rank + 1))}, average=False)
    result = {
        "rank": rank,
        "world_size": comm.get_world_size(),
        "local_rank": comm.get_local_rank(),
        "local_size": comm.get_local_size(),
        "is_main": comm.is_main_process(),
        "all_gather": comm.all_gather({"r": rank}),
        "gather": comm.gather(rank * 10, dst=1),
        "seed": comm.shared_random_seed(),
        "reduced": {k: float(v) for k, v in reduced.items()},
        "summed": float(summed["x"]),
        "backend": torch.distributed.get_backend(),
    }
    comm.synchronize()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    launch(main, int(sys.argv[2]), args=(sys.argv[1],))
