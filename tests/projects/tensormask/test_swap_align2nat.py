"""swap_align2nat on hand-computed cases (no reference fixture: the reference op is
CUDA-only)."""

from __future__ import annotations

import pytest
import torch

from torchdet.projects.tensormask import SwapAlign2Nat, swap_align2nat


def test_lambda_1_single_cell_is_identity():
    x = torch.randn(2, 1, 3, 4)
    assert torch.equal(swap_align2nat(x, 1), x)


def test_lambda_1_shifts_each_cell_by_its_offset():
    # V = U = 3, lambda 1: out[v, u, y, x] = in[v, u, y + v - 1, x + u - 1], pad outside.
    x = torch.arange(9 * 4 * 5, dtype=torch.float32).view(1, 9, 4, 5)
    out = swap_align2nat(x, 1, pad_val=-100.0).view(3, 3, 4, 5)
    xin = x.view(3, 3, 4, 5)
    for v in range(3):
        for u in range(3):
            for y in range(4):
                for xx in range(5):
                    yy, xs = y + v - 1, xx + u - 1
                    inside = 0 <= yy < 4 and 0 <= xs < 5
                    expected = xin[v, u, yy, xs] if inside else -100.0
                    assert out[v, u, y, xx] == expected


def test_lambda_2_interpolates_pixels_and_cells():
    # V = U = 1, lambda 2: output side 2, grid halved. Pixel row 2y' + v' - 0.5 (mean of two
    # rows), cell (v' + 0.5) / 2 - 0.5 = -0.25 or 0.25 (3/4 of cell 0, 1/4 padding).
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    pad = -6.0
    out = swap_align2nat(x, 2, pad).view(2, 2, 2, 2)
    img = x[0, 0]

    def pix(r, c):
        return img[r, c] if 0 <= r < 4 and 0 <= c < 4 else pad

    for v in range(2):
        for u in range(2):
            for y in range(2):
                for xx in range(2):
                    r0, c0 = 2 * y + v - 1, 2 * xx + u - 1
                    spatial = sum(0.25 * pix(r0 + a, c0 + b) for a in (0, 1) for b in (0, 1))
                    # Cell weights: 0.75 of cell 0 (with the spatial mean), 0.25 padding in v
                    # and in u.
                    expected = 0.75 * 0.75 * spatial + (1 - 0.75 * 0.75) * pad
                    assert out[v, u, y, xx].item() == pytest.approx(float(expected), rel=1e-5)


def test_gradient_and_errors():
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: swap_align2nat(t, 2), (x,))
    with pytest.raises(ValueError, match="V x U"):
        swap_align2nat(torch.zeros(1, 3, 4, 4), 1)
    with pytest.raises(ValueError, match="divisible"):
        swap_align2nat(torch.zeros(1, 4, 5, 4), 2)
    assert "lambda_val=2" in repr(SwapAlign2Nat(2))
