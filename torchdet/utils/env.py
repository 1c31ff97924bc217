"""Random seeding and a description of the software environment."""

from __future__ import annotations

import logging
import os
import platform
import random
import sys
from datetime import datetime

import numpy as np
import torch

__all__ = ["collect_env_info", "seed_all_rng"]


def seed_all_rng(seed: int | None = None) -> int:
    """Seed the python, numpy and torch (CPU and CUDA) random generators.

    Args:
        seed: the seed; None draws one from the process id, the time and ``os.urandom``.

    Returns:
        The seed used.
    """
    if seed is None:
        seed = (
            os.getpid()
            + int(datetime.now().strftime("%S%f"))
            + int.from_bytes(os.urandom(2), "big")
        )
        logging.getLogger(__name__).info("Using a generated random seed %d", seed)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed_all_rng: seed must be an int, got {type(seed).__name__}")
    np.random.seed(seed % 2**32)  # numpy only takes 32-bit seeds
    torch.manual_seed(seed)  # also seeds every CUDA device
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    return seed


def collect_env_info() -> str:
    """A table of the platform, Python, numpy, PyTorch and accelerator versions."""
    from tabulate import tabulate

    import torchdet

    data = [
        ("sys.platform", sys.platform),
        ("Platform", platform.platform()),
        ("Python", sys.version.replace("\n", "")),
        ("numpy", np.__version__),
        (
            "torchdet",
            f"{getattr(torchdet, '__version__', 'unknown')} @{os.path.dirname(torchdet.__file__)}",
        ),
        ("PyTorch", f"{torch.__version__} @{os.path.dirname(torch.__file__)}"),
        ("PyTorch debug build", torch.version.debug),
        ("torch threads", torch.get_num_threads()),
        ("CUDA available", torch.cuda.is_available()),
    ]
    if torch.cuda.is_available():
        data.append(("CUDA", torch.version.cuda))
        names: dict[str, list[str]] = {}
        for k in range(torch.cuda.device_count()):
            cap = ".".join(str(x) for x in torch.cuda.get_device_capability(k))
            names.setdefault(f"{torch.cuda.get_device_name(k)} (arch={cap})", []).append(str(k))
        for name, devids in names.items():
            data.append((f"GPU {','.join(devids)}", name))
    for mod in ("cv2", "PIL", "pycocotools", "omegaconf"):
        try:
            module = __import__(mod)
            data.append((mod, getattr(module, "__version__", "unknown")))
        except ImportError:
            data.append((mod, "not found"))
    return tabulate(data)
