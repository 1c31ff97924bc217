"""Helpers for multi-process (distributed) training on top of ``torch.distributed``.

Every helper also works without an initialised process group, as a world of one process.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "all_gather",
    "create_local_process_group",
    "gather",
    "get_local_process_group",
    "get_local_rank",
    "get_local_size",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "reduce_dict",
    "shared_random_seed",
    "synchronize",
]

# The group of the processes on this machine; set by ``create_local_process_group``.
_LOCAL_PROCESS_GROUP = None
_MISSING_LOCAL_PG_ERROR = (
    "Local process group is not created! Call comm.create_local_process_group(num_workers_per_"
    "machine) first (torchdet.engine.launch does it)."
)


def _is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the default group (1 without distributed)."""
    return dist.get_world_size() if _is_dist() else 1


def get_rank() -> int:
    """Rank of this process in the default group (0 without distributed)."""
    return dist.get_rank() if _is_dist() else 0


@functools.lru_cache
def create_local_process_group(num_workers_per_machine: int) -> None:
    """Create the group of the ``num_workers_per_machine`` processes of each machine.

    Must be called by every process of the default group (it creates one group per machine).
    The machine index of a rank is ``rank // num_workers_per_machine``.
    """
    global _LOCAL_PROCESS_GROUP
    if _LOCAL_PROCESS_GROUP is not None:
        raise RuntimeError("create_local_process_group: the local group already exists")
    world_size = get_world_size()
    if num_workers_per_machine <= 0 or world_size % num_workers_per_machine != 0:
        raise ValueError(
            f"create_local_process_group: world size {world_size} is not a multiple of "
            f"num_workers_per_machine={num_workers_per_machine}"
        )
    machine = get_rank() // num_workers_per_machine
    for i in range(world_size // num_workers_per_machine):
        ranks = list(range(i * num_workers_per_machine, (i + 1) * num_workers_per_machine))
        group = dist.new_group(ranks)  # every rank must take part in creating every group
        if i == machine:
            _LOCAL_PROCESS_GROUP = group


def get_local_process_group():
    """The group of processes on this machine (see :func:`create_local_process_group`)."""
    if _LOCAL_PROCESS_GROUP is None:
        raise RuntimeError(_MISSING_LOCAL_PG_ERROR)
    return _LOCAL_PROCESS_GROUP


def get_local_rank() -> int:
    """Rank of this process among the processes of its machine (0 without distributed)."""
    if not _is_dist():
        return 0
    return dist.get_rank(group=get_local_process_group())


def get_local_size() -> int:
    """Number of processes on this machine (1 without distributed)."""
    if not _is_dist():
        return 1
    return dist.get_world_size(group=get_local_process_group())


def is_main_process() -> bool:
    """True on rank 0 (the process that writes logs and checkpoints)."""
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes; a no-op with one process."""
    if not _is_dist() or dist.get_world_size() == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL and torch.cuda.is_available():
        # The barrier must run on this process's own GPU, or NCCL guesses (and may hang).
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@functools.lru_cache
def _get_global_gloo_group():
    """A gloo group over all ranks: object collectives go through CPU memory."""
    if dist.get_backend() == "nccl":
        return dist.new_group(backend="gloo")
    return dist.group.WORLD


def all_gather(data: Any, group=None) -> list[Any]:
    """Gather a picklable object from every rank, on every rank.

    Args:
        data: any picklable object.
        group: a process group; default all ranks (through a gloo group).

    Returns:
        The objects of all ranks of ``group``, in rank order.
    """
    if get_world_size() == 1:
        return [data]
    if group is None:
        group = _get_global_gloo_group()
    world_size = dist.get_world_size(group)
    if world_size == 1:
        return [data]
    output: list[Any] = [None] * world_size
    dist.all_gather_object(output, data, group=group)
    return output


def gather(data: Any, dst: int = 0, group=None) -> list[Any]:
    """Gather a picklable object from every rank on rank ``dst``.

    Returns:
        On ``dst``: the objects of all ranks in rank order. Elsewhere: ``[]``.
    """
    if get_world_size() == 1:
        return [data]
    if group is None:
        group = _get_global_gloo_group()
    world_size = dist.get_world_size(group=group)
    if world_size == 1:
        return [data]
    rank = dist.get_rank(group=group)
    if rank == dst:
        output: list[Any] = [None] * world_size
        dist.gather_object(data, output, dst=dst, group=group)
        return output
    dist.gather_object(data, None, dst=dst, group=group)
    return []


def shared_random_seed() -> int:
    """A random integer in ``[0, 2**31)`` that is the same on every rank (rank 0's draw).

    All ranks must call it together.
    """
    ints = np.random.randint(2**31)
    return int(all_gather(ints)[0])


def reduce_dict(
    input_dict: dict[str, torch.Tensor], average: bool = True
) -> dict[str, torch.Tensor]:
    """Sum (or average) scalar tensors over all ranks; the result is only valid on rank 0.

    Args:
        input_dict: name -> scalar tensor; every rank must have the same keys.
        average: divide the sums by the world size.

    Returns:
        A dict with the same keys (sorted), holding the reduced values on rank 0.
    """
    world_size = get_world_size()
    if world_size < 2:
        return input_dict
    with torch.no_grad():
        names = sorted(input_dict.keys())
        values = torch.stack([input_dict[k] for k in names], dim=0)
        dist.reduce(values, dst=0)
        if dist.get_rank() == 0 and average:
            values /= world_size
        return dict(zip(names, values, strict=True))
