"""Swin Transformer backbone ("Swin Transformer: Hierarchical Vision Transformer using Shifted
Windows", Liu et al. 2021), in the detection variant Detectron2 uses (inputs of any size are
padded to whole windows and even patch-merge grids).

Shape shorthand: B batch, L = H * W tokens, C channels, ws window side, nW windows, nH heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .backbone import Backbone
from .utils import DropPath, Mlp, trunc_normal_

__all__ = ["SwinTransformer"]


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of ws -> (B * nW, ws, ws, C)."""
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, C)


def window_reverse(windows: torch.Tensor, window_size: int, H: int, W: int) -> torch.Tensor:
    """(B * nW, ws, ws, C) -> (B, H, W, C); inverse of :func:`window_partition`."""
    B = windows.shape[0] // ((H // window_size) * (W // window_size))
    x = windows.view(B, H // window_size, W // window_size, window_size, window_size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, -1)


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative position bias table.

    Args:
        dim: channels.
        window_size: (Wh, Ww).
        num_heads: heads.
        qkv_bias: bias in the qkv projection.
        qk_scale: override of the ``head_dim ** -0.5`` scale.
        attn_drop, proj_drop: dropout rates.
    """

    def __init__(
        self,
        dim: int,
        window_size: tuple[int, int],
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5
        Wh, Ww = window_size
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * Wh - 1) * (2 * Ww - 1), num_heads)
        )
        # Index of the bias of every (query, key) pair of a window: offsets (dy, dx) shifted to
        # be non-negative and flattened row-major over the (2Wh-1) x (2Ww-1) table.
        coords = torch.stack(
            torch.meshgrid(torch.arange(Wh), torch.arange(Ww), indexing="ij")
        ).flatten(1)  # (2, Wh*Ww)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 2)
        index = (rel[..., 0] + Wh - 1) * (2 * Ww - 1) + (rel[..., 1] + Ww - 1)
        self.register_buffer("relative_position_index", index)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
        x (Tensor[B * nW, N, C]): window tokens, N = Wh * Ww.
        mask (Tensor[nW, N, N], optional): 0 / -100 additive mask of shifted windows.
        """
        B_, N, C = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B_, nH, N, head_dim)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(N, N, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(B_ // nW, nW, self.num_heads, N, N) + mask[None, :, None]
            attn = attn.view(-1, self.num_heads, N, N)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(B_, N, C)
        return self.proj_drop(self.proj(x))


class SwinTransformerBlock(nn.Module):
    """Swin block: (shifted) window attention and an MLP, pre-normed with residuals.

    The token grid size is set in ``self.H`` / ``self.W`` by the enclosing layer before calling.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: Any = nn.LayerNorm,
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(
                f"SwinTransformerBlock: shift_size must be in [0, window_size={window_size}), "
                f"got {shift_size}"
            )
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.mlp_ratio = mlp_ratio
        self.norm1 = norm_layer(dim)
        self.attn = WindowAttention(
            dim,
            window_size=(window_size, window_size),
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop,
            proj_drop=drop,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(
            in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop
        )
        self.H: int | None = None
        self.W: int | None = None

    def forward(self, x: torch.Tensor, mask_matrix: torch.Tensor | None) -> torch.Tensor:
        """Args: x (Tensor[B, H*W, C]); mask_matrix (Tensor[nW, N, N]) for shifted windows."""
        B, L, C = x.shape
        H, W = self.H, self.W
        if H is None or W is None or L != H * W:
            raise ValueError(f"SwinTransformerBlock: {L} tokens do not match the grid {H}x{W}")
        ws = self.window_size
        shortcut = x
        x = self.norm1(x).view(B, H, W, C)
        pad_r = (ws - W % ws) % ws
        pad_b = (ws - H % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        Hp, Wp = x.shape[1], x.shape[2]
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
            attn_mask = mask_matrix
        else:
            attn_mask = None
        windows = window_partition(x, ws).reshape(-1, ws * ws, C)
        windows = self.attn(windows, mask=attn_mask).reshape(-1, ws, ws, C)
        x = window_reverse(windows, ws, Hp, Wp)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        if pad_r > 0 or pad_b > 0:
            x = x[:, :H, :W, :].contiguous()
        x = shortcut + self.drop_path(x.view(B, H * W, C))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Halve the grid: concatenate each 2x2 neighbourhood (4C), normalise, project to 2C."""

    def __init__(self, dim: int, norm_layer: Any = nn.LayerNorm) -> None:
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = norm_layer(4 * dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """(B, H*W, C) -> (B, ceil(H/2)*ceil(W/2), 2C); odd sides are zero-padded."""
        B, L, C = x.shape
        if L != H * W:
            raise ValueError(f"PatchMerging: {L} tokens do not match the grid {H}x{W}")
        x = x.view(B, H, W, C)
        if H % 2 == 1 or W % 2 == 1:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x0 = x[:, 0::2, 0::2, :]
        x1 = x[:, 1::2, 0::2, :]
        x2 = x[:, 0::2, 1::2, :]
        x3 = x[:, 1::2, 1::2, :]
        x = torch.cat([x0, x1, x2, x3], -1).view(B, -1, 4 * C)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    """One Swin stage: ``depth`` blocks alternating regular and shifted windows, then an
    optional downsampling (patch merging)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float | Sequence[float] = 0.0,
        norm_layer: Any = nn.LayerNorm,
        downsample: type[nn.Module] | None = None,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.depth = depth
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim=dim,
                num_heads=num_heads,
                window_size=window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=drop_path[i] if isinstance(drop_path, Sequence) else drop_path,
                norm_layer=norm_layer,
            )
            for i in range(depth)
        )
        self.downsample = downsample(dim=dim, norm_layer=norm_layer) if downsample else None

    def _shift_mask(self, H: int, W: int, x: torch.Tensor) -> torch.Tensor:
        """(nW, N, N) additive mask keeping attention inside the regions a cyclic shift joins."""
        ws, s = self.window_size, self.shift_size
        Hp = -(-H // ws) * ws
        Wp = -(-W // ws) * ws

        # Region label of each position of the padded grid: 3 bands per axis.
        def bands(n: int) -> torch.Tensor:
            idx = torch.arange(n, device=x.device)
            return (idx >= n - ws).long() + (idx >= n - s).long()

        img_mask = (bands(Hp)[:, None] * 3 + bands(Wp)[None, :]).to(x.dtype)
        mask_windows = window_partition(img_mask[None, :, :, None], ws).reshape(-1, ws * ws)
        diff = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
        return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)

    def forward(self, x: torch.Tensor, H: int, W: int):
        """Args: x (Tensor[B, H*W, C]).

        Returns:
            (stage output (B, H*W, C), H, W, next input, next H, next W).
        """
        attn_mask = self._shift_mask(H, W, x)
        for blk in self.blocks:
            blk.H, blk.W = H, W
            if self.use_checkpoint and self.training:
                x = torch.utils.checkpoint.checkpoint(blk, x, attn_mask, use_reentrant=False)
            else:
                x = blk(x, attn_mask)
        if self.downsample is not None:
            x_down = self.downsample(x, H, W)
            return x, H, W, x_down, (H + 1) // 2, (W + 1) // 2
        return x, H, W, x, H, W


class PatchEmbed(nn.Module):
    """Image to patch tokens; pads the image to a multiple of the patch size first.

    Args:
        patch_size: patch side.
        in_chans: image channels.
        embed_dim: token channels.
        norm_layer: optional norm applied to the tokens.
    """

    def __init__(
        self,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        norm_layer: Any = None,
    ) -> None:
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, embed_dim, ceil(H/p), ceil(W/p))."""
        _, _, H, W = x.shape
        ph, pw = self.patch_size
        if W % pw != 0 or H % ph != 0:
            x = F.pad(x, (0, (pw - W % pw) % pw, 0, (ph - H % ph) % ph))
        x = self.proj(x)
        if self.norm is not None:
            Wh, Ww = x.shape[2], x.shape[3]
            x = self.norm(x.flatten(2).transpose(1, 2))
            x = x.transpose(1, 2).view(-1, self.embed_dim, Wh, Ww)
        return x


class SwinTransformer(Backbone):
    """Swin Transformer backbone; outputs ``p<i>`` for ``i`` in ``out_indices`` (stride 2**(i+2),
    channels ``embed_dim * 2**i``).

    Args:
        pretrain_img_size: image side of pretraining (sizes the absolute embedding).
        patch_size: patch side.
        in_chans: image channels.
        embed_dim: channels of the first stage.
        depths: blocks per stage.
        num_heads: heads per stage.
        window_size: window side.
        mlp_ratio: MLP hidden width ratio.
        qkv_bias, qk_scale: attention options.
        drop_rate, attn_drop_rate, drop_path_rate: regularisation.
        norm_layer: norm class.
        ape: absolute position embedding.
        patch_norm: normalise the patch embeddings.
        out_indices: stages to output.
        frozen_stages: freeze the patch embedding (0), ape (1) and stages up to this (-1: none).
        use_checkpoint: activation checkpointing in training.
    """

    def __init__(
        self,
        pretrain_img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        norm_layer: Any = nn.LayerNorm,
        ape: bool = False,
        patch_norm: bool = True,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        frozen_stages: int = -1,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(
                f"SwinTransformer: depths {list(depths)} and num_heads {list(num_heads)} differ "
                "in length"
            )
        self.pretrain_img_size = pretrain_img_size
        self.num_layers = len(depths)
        self.embed_dim = embed_dim
        self.ape = ape
        self.patch_norm = patch_norm
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        bad = [i for i in self.out_indices if not 0 <= i < self.num_layers]
        if bad:
            raise ValueError(
                f"SwinTransformer: out_indices {bad} out of range [0, {self.num_layers})"
            )

        self.patch_embed = PatchEmbed(
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            norm_layer=norm_layer if patch_norm else None,
        )
        if ape:
            res = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, res, res))
            trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(p=drop_rate)

        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i in range(self.num_layers):
            self.layers.append(
                BasicLayer(
                    dim=int(embed_dim * 2**i),
                    depth=depths[i],
                    num_heads=num_heads[i],
                    window_size=window_size,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=dpr[sum(depths[:i]) : sum(depths[: i + 1])],
                    norm_layer=norm_layer,
                    downsample=PatchMerging if i < self.num_layers - 1 else None,
                    use_checkpoint=use_checkpoint,
                )
            )
        self.num_features = [int(embed_dim * 2**i) for i in range(self.num_layers)]
        for i in self.out_indices:
            self.add_module(f"norm{i}", norm_layer(self.num_features[i]))

        self._freeze_stages()
        self._out_features = [f"p{i}" for i in self.out_indices]
        self._out_feature_channels = {f"p{i}": self.embed_dim * 2**i for i in self.out_indices}
        self._out_feature_strides = {f"p{i}": 2 ** (i + 2) for i in self.out_indices}
        self.apply(self._init_weights)

    @property
    def size_divisibility(self) -> int:
        return 32

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.patch_embed.eval()
            for p in self.patch_embed.parameters():
                p.requires_grad = False
        if self.frozen_stages >= 1 and self.ape:
            self.absolute_pos_embed.requires_grad = False
        if self.frozen_stages >= 2:
            self.pos_drop.eval()
            for i in range(self.frozen_stages - 1):
                m = self.layers[i]
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: x (Tensor[B, 3, H, W]).

        Returns: ``{"p<i>": Tensor[B, C_i, H / 2^(i+2), W / 2^(i+2)]}`` (sizes rounded up).
        """
        if x.dim() != 4:
            raise ValueError(
                f"SwinTransformer takes an input of shape (B, C, H, W), got {tuple(x.shape)}"
            )
        x = self.patch_embed(x)
        Wh, Ww = x.shape[2], x.shape[3]
        if self.ape:
            pos = F.interpolate(self.absolute_pos_embed, size=(Wh, Ww), mode="bicubic")
            x = x + pos
        x = self.pos_drop(x.flatten(2).transpose(1, 2))
        outs = {}
        for i, layer in enumerate(self.layers):
            x_out, H, W, x, Wh, Ww = layer(x, Wh, Ww)
            if i in self.out_indices:
                x_out = getattr(self, f"norm{i}")(x_out)
                outs[f"p{i}"] = (
                    x_out.view(-1, H, W, self.num_features[i]).permute(0, 3, 1, 2).contiguous()
                )
        return outs
