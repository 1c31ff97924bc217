"""MViTv2 backbone ("MViTv2: Improved Multiscale Vision Transformers", Li et al. 2022).

Pooling attention (q, k, v pooled by depthwise convs), decomposed relative positions,
residual pooling and hybrid window attention, as in Detectron2's ViTDet MViT.

Shape shorthand: B batch, H/W token grid, C channels; token maps are ``(B, H, W, C)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.utils.checkpoint
from torch import nn

from .backbone import Backbone
from .utils import (
    DropPath,
    Mlp,
    PatchEmbed,
    add_decomposed_rel_pos,
    get_abs_pos,
    trunc_normal_,
    window_partition,
    window_unpartition,
)

__all__ = ["MViT"]


def attention_pool(x: torch.Tensor, pool: nn.Module, norm: nn.Module | None = None) -> torch.Tensor:
    """Pool a channels-last map: (B, H, W, C) -> (B, H', W', C), then optionally normalise."""
    x = pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    if norm is not None:
        x = norm(x)
    return x


class MultiScaleAttention(nn.Module):
    """Multi-head pooling attention.

    Args:
        dim: input channels; dim_out: output channels.
        num_heads: attention heads.
        qkv_bias: bias in the qkv projection.
        norm_layer: norm class applied after each pooling.
        pool_kernel: kernel of the depthwise pooling convs.
        stride_q, stride_kv: pooling strides of queries and keys/values.
        residual_pooling: add the pooled queries to the output.
        window_size: window attention side before pooling (0: global).
        use_rel_pos, rel_pos_zero_init: relative position bias.
        input_size: (H, W) of the input token grid (square).
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        qkv_bias: bool = True,
        norm_layer: Any = nn.LayerNorm,
        pool_kernel: tuple[int, int] = (3, 3),
        stride_q: int = 1,
        stride_kv: int = 1,
        residual_pooling: bool = True,
        window_size: int = 0,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        input_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim_out // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim_out * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim_out, dim_out)

        pool_padding = [k // 2 for k in pool_kernel]
        dim_conv = dim_out // num_heads

        def pool(stride: int) -> nn.Conv2d:
            return nn.Conv2d(
                dim_conv,
                dim_conv,
                pool_kernel,
                stride=stride,
                padding=pool_padding,
                groups=dim_conv,
                bias=False,
            )

        self.pool_q = pool(stride_q)
        self.norm_q = norm_layer(dim_conv)
        self.pool_k = pool(stride_kv)
        self.norm_k = norm_layer(dim_conv)
        self.pool_v = pool(stride_kv)
        self.norm_v = norm_layer(dim_conv)

        self.window_size = window_size
        if window_size:
            self.q_win_size = window_size // stride_q
            self.kv_win_size = window_size // stride_kv
        self.residual_pooling = residual_pooling
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None or input_size[0] != input_size[1]:
                raise ValueError(
                    f"MultiScaleAttention: use_rel_pos needs a square input_size, got {input_size}"
                )
            size = input_size[0]
            rel_dim = 2 * max(size // stride_q, size // stride_kv) - 1
            self.rel_pos_h = nn.Parameter(torch.zeros(rel_dim, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(rel_dim, head_dim))
            if not rel_pos_zero_init:
                trunc_normal_(self.rel_pos_h, std=0.02)
                trunc_normal_(self.rel_pos_w, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim) -> (B, H / stride_q, W / stride_q, dim_out)."""
        B, H, W, _ = x.shape
        # (3, B, nHeads, H, W, head_dim)
        qkv = self.qkv(x).reshape(B, H, W, 3, self.num_heads, -1).permute(3, 0, 4, 1, 2, 5)
        q, k, v = qkv.reshape(3, B * self.num_heads, H, W, -1).unbind(0)
        q = attention_pool(q, self.pool_q, self.norm_q)
        k = attention_pool(k, self.pool_k, self.norm_k)
        v = attention_pool(v, self.pool_v, self.norm_v)

        ori_q = q
        if self.window_size:
            q, q_hw_pad = window_partition(q, self.q_win_size)
            k, _ = window_partition(k, self.kv_win_size)
            v, _ = window_partition(v, self.kv_win_size)
            q_hw = (self.q_win_size, self.q_win_size)
            kv_hw = (self.kv_win_size, self.kv_win_size)
        else:
            q_hw = (q.shape[1], q.shape[2])
            kv_hw = (k.shape[1], k.shape[2])

        q = q.reshape(q.shape[0], q_hw[0] * q_hw[1], -1)
        k = k.reshape(k.shape[0], kv_hw[0] * kv_hw[1], -1)
        v = v.reshape(v.shape[0], kv_hw[0] * kv_hw[1], -1)

        attn = (q * self.scale) @ k.transpose(-2, -1)
        if self.use_rel_pos:
            attn = add_decomposed_rel_pos(attn, q, self.rel_pos_h, self.rel_pos_w, q_hw, kv_hw)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).view(-1, q_hw[0], q_hw[1], v.shape[-1])

        if self.window_size:
            x = window_unpartition(x, self.q_win_size, q_hw_pad, (ori_q.shape[1], ori_q.shape[2]))
        if self.residual_pooling:
            x = x + ori_q

        H, W = x.shape[1], x.shape[2]
        x = x.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
        return self.proj(x)


class MultiScaleBlock(nn.Module):
    """MViTv2 block: pooling attention and MLP with residuals; the shortcut is projected when the
    width changes and max-pooled when queries are strided.

    Args: as :class:`MultiScaleAttention`, plus ``mlp_ratio``, ``drop_path``, ``act_layer`` and
        ``qkv_pool_kernel`` (the attention's ``pool_kernel``).
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        norm_layer: Any = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        qkv_pool_kernel: tuple[int, int] = (3, 3),
        stride_q: int = 1,
        stride_kv: int = 1,
        residual_pooling: bool = True,
        window_size: int = 0,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        input_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = MultiScaleAttention(
            dim,
            dim_out,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            norm_layer=norm_layer,
            pool_kernel=qkv_pool_kernel,
            stride_q=stride_q,
            stride_kv=stride_kv,
            residual_pooling=residual_pooling,
            window_size=window_size,
            use_rel_pos=use_rel_pos,
            rel_pos_zero_init=rel_pos_zero_init,
            input_size=input_size,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim_out)
        self.mlp = Mlp(
            in_features=dim_out,
            hidden_features=int(dim_out * mlp_ratio),
            out_features=dim_out,
            act_layer=act_layer,
        )
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)
        if stride_q > 1:
            kernel_skip = stride_q + 1
            self.pool_skip = nn.MaxPool2d(
                kernel_skip, stride_q, int(kernel_skip // 2), ceil_mode=False
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_norm = self.norm1(x)
        x_block = self.attn(x_norm)
        if hasattr(self, "proj"):
            # The shortcut is taken after norm1 when the width changes.
            x = self.proj(x_norm)
        if hasattr(self, "pool_skip"):
            x = attention_pool(x, self.pool_skip)
        x = x + self.drop_path(x_block)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class MViT(Backbone):
    """MViTv2 backbone with 4 stages; outputs ``scale2`` ... ``scale5`` (strides 4 to 32).

    Args:
        img_size: input side used to size relative position tables.
        patch_kernel, patch_stride, patch_padding: of the patch embedding conv.
        in_chans: image channels.
        embed_dim: channels of the first stage (doubled at each stage).
        depth: number of blocks.
        num_heads: heads of the first stage (doubled at each stage).
        last_block_indexes: index of the last block of each of the 4 stages.
        qkv_pool_kernel: kernel of the pooling convs.
        adaptive_kv_stride: key/value pooling stride of the first stage (halved per stage).
        adaptive_window_size: window side of the first stage (halved per stage).
        residual_pooling: residual pooling connection.
        mlp_ratio, qkv_bias, drop_path_rate, norm_layer, act_layer: as usual.
        use_abs_pos, use_rel_pos, rel_pos_zero_init: position embeddings.
        use_act_checkpoint: activation checkpointing in training.
        pretrain_img_size, pretrain_use_cls_token: of the absolute embeddings.
        out_features: among ``scale2`` ... ``scale5``.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_kernel: tuple[int, int] = (7, 7),
        patch_stride: tuple[int, int] = (4, 4),
        patch_padding: tuple[int, int] = (3, 3),
        in_chans: int = 3,
        embed_dim: int = 96,
        depth: int = 16,
        num_heads: int = 1,
        last_block_indexes: Sequence[int] = (0, 2, 11, 15),
        qkv_pool_kernel: tuple[int, int] = (3, 3),
        adaptive_kv_stride: int = 4,
        adaptive_window_size: int = 56,
        residual_pooling: bool = True,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        norm_layer: Any = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        use_abs_pos: bool = False,
        use_rel_pos: bool = True,
        rel_pos_zero_init: bool = True,
        use_act_checkpoint: bool = False,
        pretrain_img_size: int = 224,
        pretrain_use_cls_token: bool = True,
        out_features: Sequence[str] = ("scale2", "scale3", "scale4", "scale5"),
    ) -> None:
        super().__init__()
        if len(last_block_indexes) != 4:
            raise ValueError(
                f"MViT: last_block_indexes must give the last block of 4 stages, got "
                f"{list(last_block_indexes)}"
            )
        self.pretrain_use_cls_token = pretrain_use_cls_token
        self.use_act_checkpoint = use_act_checkpoint
        self.patch_embed = PatchEmbed(
            kernel_size=patch_kernel,
            stride=patch_stride,
            padding=patch_padding,
            in_chans=in_chans,
            embed_dim=embed_dim,
        )
        if use_abs_pos:
            num_patches = (pretrain_img_size // patch_stride[0]) * (
                pretrain_img_size // patch_stride[1]
            )
            num_positions = num_patches + 1 if pretrain_use_cls_token else num_patches
            self.pos_embed = nn.Parameter(torch.zeros(1, num_positions, embed_dim))
        else:
            self.pos_embed = None

        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        dim_out = embed_dim
        stride_kv = adaptive_kv_stride
        window_size = adaptive_window_size
        input_size = [img_size // patch_stride[0], img_size // patch_stride[1]]
        stage = 2
        stride = patch_stride[0]
        self._out_feature_strides: dict[str, int] = {}
        self._out_feature_channels: dict[str, int] = {}
        self.blocks = nn.ModuleList()
        for i in range(depth):
            # The last blocks of stages 2 and 3 pool keys/values twice as much, so the
            # next (global-attention) stage starts from a coarser key grid.
            stride_kv_ = (
                stride_kv * 2 if i in (last_block_indexes[1], last_block_indexes[2]) else stride_kv
            )
            # Hybrid window attention: global attention in the last block of stages 3-5.
            window_size_ = 0 if i in last_block_indexes[1:] else window_size
            block = MultiScaleBlock(
                dim=embed_dim,
                dim_out=dim_out,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=dpr[i],
                norm_layer=norm_layer,
                act_layer=act_layer,
                qkv_pool_kernel=qkv_pool_kernel,
                stride_q=2 if i - 1 in last_block_indexes else 1,
                stride_kv=stride_kv_,
                residual_pooling=residual_pooling,
                window_size=window_size_,
                use_rel_pos=use_rel_pos,
                rel_pos_zero_init=rel_pos_zero_init,
                input_size=input_size,
            )
            self.blocks.append(block)
            embed_dim = dim_out
            if i in last_block_indexes:
                name = f"scale{stage}"
                if name in out_features:
                    self._out_feature_channels[name] = dim_out
                    self._out_feature_strides[name] = stride
                    self.add_module(f"{name}_norm", norm_layer(dim_out))
                dim_out *= 2
                num_heads *= 2
                stride_kv = max(stride_kv // 2, 1)
                stride *= 2
                stage += 1
            if i - 1 in last_block_indexes:
                window_size = window_size // 2
                input_size = [s // 2 for s in input_size]

        unknown = [f for f in out_features if f not in self._out_feature_channels]
        if unknown:
            raise KeyError(
                f"MViT: unknown out_features {unknown}; available: scale2 ... scale{stage - 1}"
            )
        self._out_features = list(out_features)
        self._last_block_indexes = list(last_block_indexes)

        if self.pos_embed is not None:
            trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_weights)

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
        """Args: x (Tensor[B, 3, H, W]). Returns: ``{"scale<k>": Tensor[B, C_k, H/2^k, W/2^k]}``."""
        if x.dim() != 4:
            raise ValueError(f"MViT takes an input of shape (B, C, H, W), got {tuple(x.shape)}")
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + get_abs_pos(
                self.pos_embed, self.pretrain_use_cls_token, (x.shape[1], x.shape[2])
            )
        outputs = {}
        stage = 2
        for i, blk in enumerate(self.blocks):
            if self.use_act_checkpoint and self.training:
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
            if i in self._last_block_indexes:
                name = f"scale{stage}"
                if name in self._out_features:
                    outputs[name] = getattr(self, f"{name}_norm")(x).permute(0, 3, 1, 2)
                stage += 1
        return outputs
