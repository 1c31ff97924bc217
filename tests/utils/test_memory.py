"""retry_if_cuda_oom: retries after freeing the cache, then on CPU; other errors pass."""

import pytest
import torch

from torchdet.utils.memory import retry_if_cuda_oom


def _failing(n_ooms):
    calls = []

    def f(x, *, scale=1.0):
        calls.append(x)
        if len(calls) <= n_ooms:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x * scale

    return f, calls


@pytest.mark.parametrize("n_ooms", [0, 1, 2])
def test_retries(n_ooms):
    f, calls = _failing(n_ooms)
    out = retry_if_cuda_oom(f)(torch.ones(2), scale=3.0)
    assert torch.equal(out, torch.full((2,), 3.0))
    assert len(calls) == n_ooms + 1


def test_third_oom_propagates():
    f, _ = _failing(3)
    with pytest.raises(RuntimeError, match="out of memory"):
        retry_if_cuda_oom(f)(torch.ones(1))


def test_other_errors_propagate_at_once():
    calls = []

    def g(x):
        calls.append(x)
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        retry_if_cuda_oom(g)(torch.ones(1))
    assert len(calls) == 1
