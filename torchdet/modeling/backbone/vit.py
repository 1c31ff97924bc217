"""Plain Vision Transformer backbone and ViTDet's simple feature pyramid
("Exploring Plain Vision Transformer Backbones for Object Detection", Li et al. 2022).

Shape shorthand: B batch, H/W token grid, C = embed_dim. Blocks work on channels-last token
maps ``(B, H, W, C)``; the backbone outputs ``(B, C, H, W)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.utils.checkpoint
from torch import nn

from torchdet.layers import CNNBlockBase, Conv2d, get_norm

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

__all__ = ["ViT", "SimpleFeaturePyramid", "get_vit_lr_decay_rate"]

# ViTDet's LayerNorm (eps 1e-6, as the MAE-pretrained weights expect).
_layer_norm_eps6 = partial(nn.LayerNorm, eps=1e-6)


class Attention(nn.Module):
    """Multi-head self-attention with optional decomposed relative position bias.

    Args:
        dim: channels.
        num_heads: number of heads.
        qkv_bias: bias in the qkv projection.
        use_rel_pos: add relative position bias.
        rel_pos_zero_init: start the relative position tables at zero.
        input_size: (H, W) the tables are sized for (required with ``use_rel_pos``).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"Attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("Attention: input_size is required when use_rel_pos=True")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))
            if not rel_pos_zero_init:
                trunc_normal_(self.rel_pos_h, std=0.02)
                trunc_normal_(self.rel_pos_w, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        B, H, W, _ = x.shape
        # (3, B, nHeads, H*W, head_dim)
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, B * self.num_heads, H * W, -1).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if self.use_rel_pos:
            attn = add_decomposed_rel_pos(attn, q, self.rel_pos_h, self.rel_pos_w, (H, W), (H, W))
        attn = attn.softmax(dim=-1)
        x = (attn @ v).view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
        return self.proj(x)


class ResBottleneckBlock(CNNBlockBase):
    """Residual bottleneck (1x1, 3x3, 1x1 convs with norms) inserted after some ViT blocks.

    The last norm starts at zero so the block is initially the identity.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bottleneck_channels: int,
        norm: Any = "LN",
        act_layer: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__(in_channels, out_channels, 1)
        self.conv1 = Conv2d(in_channels, bottleneck_channels, 1, bias=False)
        self.norm1 = get_norm(norm, bottleneck_channels)
        self.act1 = act_layer()
        self.conv2 = Conv2d(bottleneck_channels, bottleneck_channels, 3, padding=1, bias=False)
        self.norm2 = get_norm(norm, bottleneck_channels)
        self.act2 = act_layer()
        self.conv3 = Conv2d(bottleneck_channels, out_channels, 1, bias=False)
        self.norm3 = get_norm(norm, out_channels)
        for layer in (self.conv1, self.conv2, self.conv3):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        for layer in (self.norm1, self.norm2):
            layer.weight.data.fill_(1.0)
            layer.bias.data.zero_()
        self.norm3.weight.data.zero_()
        self.norm3.bias.data.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.children():
            out = layer(out)
        return x + out


class Block(nn.Module):
    """Transformer block: (window or global) attention and an MLP, each pre-normed with a residual.

    Args:
        dim: channels.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / dim.
        qkv_bias: bias in the qkv projection.
        drop_path: stochastic depth rate.
        norm_layer, act_layer: norm and activation classes.
        use_rel_pos, rel_pos_zero_init: as :class:`Attention`.
        window_size: window attention side (0: global attention).
        use_residual_block: append a :class:`ResBottleneckBlock`.
        input_size: (H, W) of the token grid (for relative position tables).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        norm_layer: Any = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        window_size: int = 0,
        use_residual_block: bool = False,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            rel_pos_zero_init=rel_pos_zero_init,
            input_size=input_size if window_size == 0 else (window_size, window_size),
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer)
        self.window_size = window_size
        self.use_residual_block = use_residual_block
        if use_residual_block:
            self.residual = ResBottleneckBlock(
                in_channels=dim,
                out_channels=dim,
                bottleneck_channels=dim // 2,
                norm="LN",
                act_layer=act_layer,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            H, W = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, pad_hw, (H, W))
        else:
            x = self.attn(x)
        x = shortcut + self.drop_path(x)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        if self.use_residual_block:
            x = self.residual(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x


class ViT(Backbone):
    """Plain ViT backbone with window/global attention blocks (ViTDet).

    Args:
        img_size: input side the relative position tables are sized for.
        patch_size: patch side (= output stride).
        in_chans: image channels.
        embed_dim: token channels.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width ratio.
        qkv_bias: bias in qkv projections.
        drop_path_rate: stochastic depth rate, increasing linearly to this value.
        norm_layer, act_layer: norm and activation classes.
        use_abs_pos: add (interpolated) absolute position embeddings.
        use_rel_pos, rel_pos_zero_init: relative position bias in attention.
        window_size: window side of the window-attention blocks.
        window_block_indexes: blocks using window attention (others are global).
        residual_block_indexes: blocks followed by a residual conv block.
        use_act_checkpoint: activation checkpointing of every block in training.
        pretrain_img_size: image side of pretraining (sizes the absolute embeddings).
        pretrain_use_cls_token: the pretrained embeddings include a class token.
        out_feature: name of the output feature.
    """

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        norm_layer: Any = _layer_norm_eps6,
        act_layer: type[nn.Module] = nn.GELU,
        use_abs_pos: bool = True,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        window_size: int = 0,
        window_block_indexes: Sequence[int] = (),
        residual_block_indexes: Sequence[int] = (),
        use_act_checkpoint: bool = False,
        pretrain_img_size: int = 224,
        pretrain_use_cls_token: bool = True,
        out_feature: str = "last_feat",
    ) -> None:
        super().__init__()
        self.pretrain_use_cls_token = pretrain_use_cls_token
        self.use_act_checkpoint = use_act_checkpoint
        self.patch_embed = PatchEmbed(
            kernel_size=(patch_size, patch_size),
            stride=(patch_size, patch_size),
            in_chans=in_chans,
            embed_dim=embed_dim,
        )
        if use_abs_pos:
            num_patches = (pretrain_img_size // patch_size) * (pretrain_img_size // patch_size)
            num_positions = num_patches + 1 if pretrain_use_cls_token else num_patches
            self.pos_embed = nn.Parameter(torch.zeros(1, num_positions, embed_dim))
        else:
            self.pos_embed = None

        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=dpr[i],
                norm_layer=norm_layer,
                act_layer=act_layer,
                use_rel_pos=use_rel_pos,
                rel_pos_zero_init=rel_pos_zero_init,
                window_size=window_size if i in window_block_indexes else 0,
                use_residual_block=i in residual_block_indexes,
                input_size=(img_size // patch_size, img_size // patch_size),
            )
            for i in range(depth)
        )
        self._out_feature_channels = {out_feature: embed_dim}
        self._out_feature_strides = {out_feature: patch_size}
        self._out_features = [out_feature]

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
        """Args: x (Tensor[B, 3, H, W]). Returns: ``{out_feature: Tensor[B, C, H/p, W/p]}``."""
        if x.dim() != 4:
            raise ValueError(f"ViT takes an input of shape (B, C, H, W), got {tuple(x.shape)}")
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + get_abs_pos(
                self.pos_embed, self.pretrain_use_cls_token, (x.shape[1], x.shape[2])
            )
        for blk in self.blocks:
            if self.use_act_checkpoint and self.training:
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return {self._out_features[0]: x.permute(0, 3, 1, 2)}


def _assert_strides_log2_contiguous(strides: Sequence[int]) -> None:
    for i, stride in enumerate(strides[1:], 1):
        if stride != 2 * strides[i - 1]:
            raise ValueError(
                f"SimpleFeaturePyramid: strides {list(strides)} are not log2 contiguous"
            )


class SimpleFeaturePyramid(Backbone):
    """ViTDet's simple feature pyramid: every level is made from the single last ViT feature map
    by (transposed) convolutions or max pooling, then a 1x1 and a 3x3 conv.

    Args:
        net: a backbone with one output feature (e.g. :class:`ViT`).
        in_feature: that feature's name.
        out_channels: channels of every pyramid level.
        scale_factors: per level, one of 4.0, 2.0, 1.0, 0.5 (relative to ``in_feature``).
        top_block: optional extra-level module (e.g. ``LastLevelMaxPool``) with ``num_levels``
            and ``in_feature`` attributes.
        norm: normalization after the convs (bias is used only when empty).
        square_pad: if > 0, inputs must be padded to this square size.
    """

    def __init__(
        self,
        net: Backbone,
        in_feature: str,
        out_channels: int,
        scale_factors: Sequence[float],
        top_block: nn.Module | None = None,
        norm: Any = "LN",
        square_pad: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(net, Backbone):
            raise TypeError(f"SimpleFeaturePyramid: net must be a Backbone, got {type(net)}")
        self.scale_factors = list(scale_factors)
        input_shapes = net.output_shape()
        if in_feature not in input_shapes:
            raise KeyError(
                f"SimpleFeaturePyramid: in_feature {in_feature!r} is not an output of net "
                f"(outputs: {list(input_shapes)})"
            )
        strides = [int(input_shapes[in_feature].stride / scale) for scale in scale_factors]
        _assert_strides_log2_contiguous(strides)
        dim = input_shapes[in_feature].channels
        use_bias = norm == ""
        self.stages = []
        stage = 0
        for idx, scale in enumerate(scale_factors):
            out_dim = dim
            if scale == 4.0:
                layers: list[nn.Module] = [
                    nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2),
                    get_norm(norm, dim // 2),
                    nn.GELU(),
                    nn.ConvTranspose2d(dim // 2, dim // 4, kernel_size=2, stride=2),
                ]
                out_dim = dim // 4
            elif scale == 2.0:
                layers = [nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2)]
                out_dim = dim // 2
            elif scale == 1.0:
                layers = []
            elif scale == 0.5:
                layers = [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                raise ValueError(
                    f"SimpleFeaturePyramid: scale factor {scale} is not supported "
                    "(use 4.0, 2.0, 1.0 or 0.5)"
                )
            layers.extend(
                [
                    Conv2d(
                        out_dim,
                        out_channels,
                        kernel_size=1,
                        bias=use_bias,
                        norm=get_norm(norm, out_channels),
                    ),
                    Conv2d(
                        out_channels,
                        out_channels,
                        kernel_size=3,
                        padding=1,
                        bias=use_bias,
                        norm=get_norm(norm, out_channels),
                    ),
                ]
            )
            seq = nn.Sequential(*layers)
            stage = int(math.log2(strides[idx]))
            self.add_module(f"simfp_{stage}", seq)
            self.stages.append(seq)

        self.net = net
        self.in_feature = in_feature
        self.top_block = top_block
        self._out_feature_strides = {f"p{int(math.log2(s))}": s for s in strides}
        if self.top_block is not None:
            for s in range(stage, stage + self.top_block.num_levels):
                self._out_feature_strides[f"p{s + 1}"] = 2 ** (s + 1)
        self._out_features = list(self._out_feature_strides)
        self._out_feature_channels = {k: out_channels for k in self._out_features}
        self._size_divisibility = strides[-1]
        self._square_pad = square_pad

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    @property
    def padding_constraints(self) -> dict[str, int]:
        return {"size_divisibility": self._size_divisibility, "square_size": self._square_pad}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: x (Tensor[B, 3, H, W]).

        Returns: ``{"p<k>": Tensor[B, out_channels, H / 2^k, W / 2^k]}``.
        """
        bottom_up = self.net(x)
        features = bottom_up[self.in_feature]
        results = [stage(features) for stage in self.stages]
        if self.top_block is not None:
            if self.top_block.in_feature in bottom_up:
                top_in = bottom_up[self.top_block.in_feature]
            else:
                top_in = results[self._out_features.index(self.top_block.in_feature)]
            results.extend(self.top_block(top_in))
        return dict(zip(self._out_features, results))


def get_vit_lr_decay_rate(name: str, lr_decay_rate: float = 1.0, num_layers: int = 12) -> float:
    """Layer-wise learning-rate decay factor of a parameter of a ViT backbone.

    Embeddings get ``lr_decay_rate ** (num_layers + 1)``, block i gets
    ``lr_decay_rate ** (num_layers - i)``, everything else (neck, heads) 1.

    Args:
        name: parameter name, e.g. ``"backbone.net.blocks.3.attn.qkv.weight"``.
        lr_decay_rate: per-layer decay.
        num_layers: number of ViT blocks.
    """
    layer_id = num_layers + 1
    if name.startswith("backbone"):
        if ".pos_embed" in name or ".patch_embed" in name:
            layer_id = 0
        elif ".blocks." in name and ".residual." not in name:
            layer_id = int(name[name.find(".blocks.") :].split(".")[2]) + 1
    return lr_decay_rate ** (num_layers + 1 - layer_id)
