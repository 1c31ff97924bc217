"""seed_all_rng and collect_env_info."""

import random

import numpy as np
import pytest
import torch

from torchdet.utils.env import collect_env_info, seed_all_rng


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_all_rng_reproducible():
    assert seed_all_rng(3) == 3
    a = _draw()
    seed_all_rng(3)
    assert _draw() == a
    seed_all_rng(4)
    assert _draw() != a
    big = seed_all_rng(2**40)  # larger than numpy's 32-bit seeds: reduced, still works
    assert big == 2**40
    assert isinstance(seed_all_rng(None), int)
    with pytest.raises(TypeError, match="seed"):
        seed_all_rng("3")


def test_collect_env_info():
    info = collect_env_info()
    assert "PyTorch" in info and torch.__version__ in info and "numpy" in info
