"""Start a function in one process per device (GPU, or CPU worker) on top of
``torch.distributed``: NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import torchdet.utils.comm as comm

__all__ = ["DEFAULT_TIMEOUT", "launch"]

DEFAULT_TIMEOUT = timedelta(minutes=30)


def _find_free_port() -> int:
    """A TCP port that is free now (it may be taken again before it is used, rarely)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = None,
    args: tuple = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes on each of
    ``num_machines`` machines, with a process group over all of them.

    With CUDA each process drives one GPU (backend NCCL); without, ``num_gpus_per_machine`` is
    the number of CPU worker processes (backend gloo). A world of one process runs
    ``main_func`` directly, in this process.

    Args:
        main_func: a picklable (module-level) function.
        num_gpus_per_machine: processes per machine.
        num_machines: number of machines.
        machine_rank: this machine's index.
        dist_url: the rendezvous URL, e.g. ``"tcp://127.0.0.1:12345"``; ``None`` or ``"auto"``
            picks a free local port (one machine only).
        args: arguments of ``main_func``.
        timeout: timeout of collective operations.
    """
    if int(num_gpus_per_machine) <= 0 or int(num_machines) <= 0:
        raise ValueError(
            f"launch: num_gpus_per_machine ({num_gpus_per_machine}) and num_machines "
            f"({num_machines}) must be positive"
        )
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"launch: machine_rank {machine_rank} not in [0, {num_machines})")
    world_size = num_machines * num_gpus_per_machine
    if world_size > 1:
        if dist_url is None or dist_url == "auto":
            if num_machines != 1:
                raise ValueError("launch: dist_url='auto' only works with one machine")
            dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
        if num_machines > 1 and dist_url.startswith("file://"):
            logging.getLogger(__name__).warning(
                "file:// is not a reliable init_method in multi-machine jobs; prefer tcp://"
            )
        if torch.cuda.is_available() and num_gpus_per_machine > torch.cuda.device_count():
            raise ValueError(
                f"launch: {num_gpus_per_machine} processes per machine but only "
                f"{torch.cuda.device_count()} GPUs"
            )
        mp.start_processes(
            _distributed_worker,
            nprocs=num_gpus_per_machine,
            args=(
                main_func,
                world_size,
                num_gpus_per_machine,
                machine_rank,
                dist_url,
                args,
                timeout,
            ),
            daemon=False,
            start_method="spawn",
        )
    else:
        main_func(*args)


def _distributed_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: tuple,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    else:
        # Worker processes share the machine's cores: one thread each avoids oversubscription
        # unless the user chose otherwise.
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_gpus_per_machine))
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    try:
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            init_method=dist_url,
            world_size=world_size,
            rank=global_rank,
            timeout=timeout,
        )
    except Exception as e:
        logging.getLogger(__name__).error("Process group URL: %s", dist_url)
        raise e
    # The local group lets the processes of one machine talk (e.g. comm.get_local_rank()).
    comm.create_local_process_group(num_gpus_per_machine)
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        # Wait for every rank before tearing the groups down: a rank that destroys its gloo
        # groups while a peer still has a connection open can abort (SIGABRT) at exit.
        with contextlib.suppress(Exception):
            dist.barrier()
        dist.destroy_process_group()
