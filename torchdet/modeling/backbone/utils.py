"""Shared pieces of the transformer backbones (ViT, MViTv2, Swin).

Shape shorthand: B batch, H/W token grid height/width, C channels, ws window size,
nW number of windows. Token maps are channels-last ``(B, H, W, C)`` unless stated.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DropPath",
    "Mlp",
    "PatchEmbed",
    "add_decomposed_rel_pos",
    "get_abs_pos",
    "get_rel_pos",
    "trunc_normal_",
    "window_partition",
    "window_unpartition",
]


def trunc_normal_(tensor: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """Fill ``tensor`` in place from N(0, std^2) truncated to [-2, 2] (absolute, as timm)."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2.0, b=2.0)


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample with probability ``drop_prob``.

    The kept samples are rescaled by ``1 / (1 - drop_prob)`` so the expectation is unchanged.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"DropPath: drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    """Two linear layers with an activation between (timm's ``Mlp``, same parameter names).

    Args:
        in_features: input channels.
        hidden_features: hidden channels (default ``in_features``).
        out_features: output channels (default ``in_features``).
        act_layer: activation class.
        drop: dropout probability after each linear layer.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act(self.fc1(x)))
        return self.drop2(self.fc2(x))


def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Cut a token map into non-overlapping windows, zero-padding the bottom/right edges.

    Args:
        x (Tensor[B, H, W, C]): token map.
        window_size: window side ws.

    Returns:
        windows (Tensor[B * nW, ws, ws, C]) in row-major window order, and the padded (Hp, Wp).
    """
    B, H, W, C = x.shape
    pad_h = (window_size - H % window_size) % window_size
    pad_w = (window_size - W % window_size) % window_size
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window_size, window_size, Wp // window_size, window_size, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, C)
    return windows, (Hp, Wp)


def window_unpartition(
    windows: torch.Tensor, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: reassemble windows and crop the padding.

    Args:
        windows (Tensor[B * nW, ws, ws, C]): windows.
        window_size: window side ws.
        pad_hw: padded (Hp, Wp).
        hw: original (H, W).

    Returns:
        Tensor[B, H, W, C].
    """
    Hp, Wp = pad_hw
    H, W = hw
    B = windows.shape[0] // ((Hp // window_size) * (Wp // window_size))
    x = windows.view(B, Hp // window_size, Wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    if Hp > H or Wp > W:
        x = x[:, :H, :W, :].contiguous()
    return x


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative position embeddings for every (query, key) pair along one axis.

    The table is linearly resized when its length differs from ``2 * max(q_size, k_size) - 1``;
    when query and key sizes differ the coordinates are scaled to the finer of the two grids.

    Args:
        q_size: number of query positions along the axis.
        k_size: number of key positions along the axis.
        rel_pos (Tensor[L, C]): embedding table.

    Returns:
        Tensor[q_size, k_size, C].
    """
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != max_rel_dist:
        table = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1),
            size=max_rel_dist,
            mode="linear",
        )
        table = table.reshape(-1, max_rel_dist).permute(1, 0)
    else:
        table = rel_pos
    q_scale = max(k_size / q_size, 1.0)
    k_scale = max(q_size / k_size, 1.0)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * q_scale
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * k_scale
    relative = (q_coords - k_coords) + (k_size - 1) * k_scale
    return table[relative.long()]


def add_decomposed_rel_pos(
    attn: torch.Tensor,
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: tuple[int, int],
    k_size: tuple[int, int],
) -> torch.Tensor:
    """Add MViTv2's decomposed relative position bias (height term + width term) to logits.

    Args:
        attn (Tensor[B, q_h * q_w, k_h * k_w]): attention logits.
        q (Tensor[B, q_h * q_w, C]): queries.
        rel_pos_h (Tensor[Lh, C]), rel_pos_w (Tensor[Lw, C]): embedding tables.
        q_size: (q_h, q_w); k_size: (k_h, k_w).

    Returns:
        Tensor[B, q_h * q_w, k_h * k_w].
    """
    q_h, q_w = q_size
    k_h, k_w = k_size
    Rh = get_rel_pos(q_h, k_h, rel_pos_h)  # (q_h, k_h, C)
    Rw = get_rel_pos(q_w, k_w, rel_pos_w)  # (q_w, k_w, C)
    B, _, dim = q.shape
    r_q = q.reshape(B, q_h, q_w, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
    attn = attn.view(B, q_h, q_w, k_h, k_w) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
    return attn.view(B, q_h * q_w, k_h * k_w)


def get_abs_pos(abs_pos: torch.Tensor, has_cls_token: bool, hw: tuple[int, int]) -> torch.Tensor:
    """Absolute position embeddings for an ``H x W`` grid, bicubically resized from pretraining.

    Args:
        abs_pos (Tensor[1, L, C]): embeddings of a square pretraining grid (plus a leading class
            token when ``has_cls_token``).
        has_cls_token: drop the first embedding.
        hw: target (H, W).

    Returns:
        Tensor[1, H, W, C].
    """
    h, w = hw
    if has_cls_token:
        abs_pos = abs_pos[:, 1:]
    num = abs_pos.shape[1]
    size = int(math.sqrt(num))
    if size * size != num:
        raise ValueError(
            f"get_abs_pos: expected a square number of position embeddings, got {num} "
            f"(has_cls_token={has_cls_token})"
        )
    grid = abs_pos.reshape(1, size, size, -1)
    if size == h and size == w:
        return grid
    grid = F.interpolate(grid.permute(0, 3, 1, 2), size=(h, w), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """Image to patch tokens by one strided convolution.

    Args:
        kernel_size, stride, padding: of the projection convolution.
        in_chans: input image channels.
        embed_dim: token channels.
    """

    def __init__(
        self,
        kernel_size: tuple[int, int] = (16, 16),
        stride: tuple[int, int] = (16, 16),
        padding: tuple[int, int] = (0, 0),
        in_chans: int = 3,
        embed_dim: int = 768,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            in_chans, embed_dim, kernel_size=kernel_size, stride=stride, padding=padding
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, H', W', embed_dim)."""
        return self.proj(x).permute(0, 2, 3, 1)
