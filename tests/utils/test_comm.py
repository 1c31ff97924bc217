"""comm helpers in a single process (the multi-process behaviour is tested through
``torchdet.engine.launch`` in tests/engine/test_launch.py).
"""

import numpy as np
import pytest
import torch

from torchdet.utils import comm


def test_single_process_defaults():
    assert comm.get_world_size() == 1
    assert comm.get_rank() == 0
    assert comm.get_local_rank() == 0
    assert comm.get_local_size() == 1
    assert comm.is_main_process()
    comm.synchronize()  # a no-op
    assert comm.all_gather({"a": 1}) == [{"a": 1}]
    assert comm.gather([1, 2], dst=0) == [[1, 2]]


def test_reduce_dict_identity():
    d = {"b": torch.tensor(2.0), "a": torch.tensor(1.0)}
    assert comm.reduce_dict(d) is d


def test_shared_random_seed_uses_numpy():
    np.random.seed(0)
    a = comm.shared_random_seed()
    np.random.seed(0)
    assert comm.shared_random_seed() == a
    assert 0 <= a < 2**31


def test_local_process_group_needs_distributed():
    with pytest.raises(RuntimeError, match="create_local_process_group"):
        comm.get_local_process_group()
