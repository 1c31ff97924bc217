"""TensorMask's ``swap_align2nat`` op in PyTorch (https://arxiv.org/abs/1903.12174).

A mask tensor predicts, at every location (y, x), a V x U mask of a sliding window. In the
*aligned* representation, entry (v, u) at (y, x) is the value at pixel (y, x) of the window
whose own (v, u) pixel it is; in the *natural* one, entry (v, u) at (y, x) is pixel (v, u) of
the window centred at (y, x). The op converts aligned to natural while swapping the unit
lengths: (V, U) grows by ``lambda_val`` and (H, W) shrinks by it (the coarser pyramid level's
masks at the finer level's pixel resolution). Values are quadrilinearly interpolated over
(y, x, v, u); samples outside the input read ``pad_val`` (-6: sigmoid(-6) ~ 0, no mask).

Shape shorthand: N batch, V = U the input mask side, H x W the input grid, L = lambda_val.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SwapAlign2Nat", "swap_align2nat"]


def _corners(coord: torch.Tensor):
    lo = torch.floor(coord)
    return lo.long(), torch.ceil(coord).long(), coord - lo


def swap_align2nat(x: torch.Tensor, lambda_val: int, pad_val: float = -6.0) -> torch.Tensor:
    """Aligned (N, V*U, H, W) -> natural (N, (L*V)*(L*U), H/L, W/L).

    For output (v', u', y', x') the sample is read at input pixel
    ``y = y' L + v' - L V / 2 + 0.5`` (same for x with u') and input mask cell
    ``v = (v' + 0.5) / L - 0.5`` (same for u with u').

    Args:
        x (Tensor[N, V*U, H, W]) float, with V = U and H, W divisible by ``lambda_val``.
        lambda_val (int >= 1): unit-length ratio.
        pad_val: value outside the input.
    """
    if x.dim() != 4:
        raise ValueError(f"swap_align2nat: x must be (N, V*U, H, W), got {tuple(x.shape)}")
    if not isinstance(lambda_val, int) or lambda_val < 1:
        raise ValueError(f"swap_align2nat: lambda_val must be an int >= 1, got {lambda_val!r}")
    n, c, h, w = x.shape
    side = int(round(c**0.5))
    if side * side != c:
        raise ValueError(f"swap_align2nat: C = {c} must be V x U with V = U")
    if h % lambda_val or w % lambda_val:
        raise ValueError(
            f"swap_align2nat: H, W = {h}, {w} must be divisible by lambda_val {lambda_val}"
        )
    lam = lambda_val
    v_out, h_out, w_out = side * lam, h // lam, w // lam
    dev, dt = x.device, x.dtype
    vo = torch.arange(v_out, device=dev, dtype=dt)
    # Input pixel rows / cols, (V', H') and (U', W'); input mask cells, (V',) and (U',).
    oy = torch.arange(h_out, device=dev, dtype=dt)[None] * lam + vo[:, None] - v_out / 2 + 0.5
    ox = torch.arange(w_out, device=dev, dtype=dt)[None] * lam + vo[:, None] - v_out / 2 + 0.5
    ov = (vo + 0.5) / lam - 0.5

    yf, yc, yw = _corners(oy)
    xf, xc, xw = _corners(ox)
    vf, vc, vw = _corners(ov)
    flat = x.reshape(n, -1)
    out = torch.zeros(n, v_out, v_out, h_out, w_out, device=dev, dtype=dt)

    def bc(t, dim):  # broadcast a (V', H') / (U', W') / (V',) / (U',) grid to (V', U', H', W')
        if dim == "vy":
            return t[:, None, :, None]
        if dim == "ux":
            return t[None, :, None, :]
        if dim == "v":
            return t[:, None, None, None]
        return t[None, :, None, None]

    for yi, ywt in ((yf, 1 - yw), (yc, yw)):
        for xi, xwt in ((xf, 1 - xw), (xc, xw)):
            for vi, vwt in ((vf, 1 - vw), (vc, vw)):
                for ui, uwt in ((vf, 1 - vw), (vc, vw)):
                    y_, x_ = bc(yi, "vy"), bc(xi, "ux")
                    v_, u_ = bc(vi, "v"), bc(ui, "u")
                    valid = (
                        (y_ >= 0)
                        & (y_ < h)
                        & (x_ >= 0)
                        & (x_ < w)
                        & (v_ >= 0)
                        & (v_ < side)
                        & (u_ >= 0)
                        & (u_ < side)
                    )  # (V', U', H', W')
                    index = ((v_ * side + u_) * h + y_) * w + x_
                    index = torch.where(valid, index, torch.zeros_like(index))
                    vals = flat[:, index.flatten()].view(n, *index.shape)
                    vals = torch.where(valid, vals, torch.full_like(vals, pad_val))
                    weight = bc(ywt, "vy") * bc(xwt, "ux") * bc(vwt, "v") * bc(uwt, "u")
                    out = out + weight * vals
    return out.reshape(n, v_out * v_out, h_out, w_out)


class SwapAlign2Nat(nn.Module):
    """Module form of :func:`swap_align2nat` (differentiable through autograd)."""

    def __init__(self, lambda_val: int, pad_val: float = -6.0) -> None:
        super().__init__()
        self.lambda_val = lambda_val
        self.pad_val = pad_val

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swap_align2nat(x, self.lambda_val, self.pad_val)

    def extra_repr(self) -> str:
        return f"lambda_val={self.lambda_val}, pad_val={self.pad_val}"
