"""RegNet / AnyNet backbones ("Designing Network Design Spaces", Radosavovic et al. 2020).

Parameter names follow Detectron2 (``stem.conv``, ``s1.b1.f.a_bn``, ``s2.b1.proj`` ...), so its
checkpoints load unchanged. Stage ``s<i>`` has stride ``stem_stride * 2**i`` with the default
stride of 2 per stage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from torchdet.layers import CNNBlockBase, ShapeSpec, get_norm

from .backbone import Backbone

__all__ = [
    "AnyNet",
    "BasicTransform",
    "BottleneckTransform",
    "RegNet",
    "ResBasicBlock",
    "ResBottleneckBlock",
    "ResStem",
    "SE",
    "SimpleStem",
    "VanillaBlock",
    "adjust_block_compatibility",
    "generate_regnet_parameters",
]

ActivationClass = Callable[[], nn.Module]


def conv2d(
    w_in: int, w_out: int, k: int, *, stride: int = 1, groups: int = 1, bias: bool = False
) -> nn.Conv2d:
    """A 'same'-padded k x k convolution (k odd)."""
    if k % 2 != 1:
        raise ValueError(f"conv2d: only odd kernel sizes are supported, got {k}")
    return nn.Conv2d(w_in, w_out, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=bias)


def gap2d() -> nn.Module:
    """Global average pooling to 1 x 1."""
    return nn.AdaptiveAvgPool2d((1, 1))


def pool2d(k: int, *, stride: int = 1) -> nn.Module:
    """A 'same'-padded k x k max pool (k odd)."""
    if k % 2 != 1:
        raise ValueError(f"pool2d: only odd kernel sizes are supported, got {k}")
    return nn.MaxPool2d(k, stride=stride, padding=(k - 1) // 2)


def init_weights(m: nn.Module) -> None:
    """pycls initialisation: He normal (fan-out) convs, unit norms, small-normal linears."""
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
        m.weight.data.normal_(mean=0.0, std=np.sqrt(2.0 / fan_out))
    elif isinstance(m, nn.BatchNorm2d):
        m.weight.data.fill_(1.0)
        m.bias.data.zero_()
    elif isinstance(m, nn.Linear):
        m.weight.data.normal_(mean=0.0, std=0.01)
        m.bias.data.zero_()


def _norm(norm: str | Callable[[int], nn.Module], channels: int) -> nn.Module:
    layer = get_norm(norm, channels)
    if layer is None:
        raise ValueError("RegNet: norm must not be empty (every conv is followed by a norm)")
    return layer


class ResStem(CNNBlockBase):
    """ResNet stem for ImageNet: 7x7 conv stride 2, norm, activation, 3x3 max pool stride 2."""

    def __init__(self, w_in: int, w_out: int, norm: Any, activation_class: ActivationClass):
        super().__init__(w_in, w_out, 4)
        self.conv = conv2d(w_in, w_out, 7, stride=2)
        self.bn = _norm(norm, w_out)
        self.af = activation_class()
        self.pool = pool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x


class SimpleStem(CNNBlockBase):
    """Simple stem for ImageNet: 3x3 conv stride 2, norm, activation."""

    def __init__(self, w_in: int, w_out: int, norm: Any, activation_class: ActivationClass):
        super().__init__(w_in, w_out, 2)
        self.conv = conv2d(w_in, w_out, 3, stride=2)
        self.bn = _norm(norm, w_out)
        self.af = activation_class()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x


class SE(nn.Module):
    """Squeeze-and-Excitation: rescale channels by a gate computed from their global average.

    Args:
        w_in: channels.
        w_se: bottleneck channels of the gate.
        activation_class: activation between the two 1x1 convs.
    """

    def __init__(self, w_in: int, w_se: int, activation_class: ActivationClass):
        super().__init__()
        self.avg_pool = gap2d()
        self.f_ex = nn.Sequential(
            conv2d(w_in, w_se, 1, bias=True),
            activation_class(),
            conv2d(w_se, w_in, 1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.f_ex(self.avg_pool(x))


class VanillaBlock(CNNBlockBase):
    """Two 3x3 convs (the first strided), each followed by norm and activation; no residual."""

    def __init__(
        self,
        w_in: int,
        w_out: int,
        stride: int,
        norm: Any,
        activation_class: ActivationClass,
        _params: dict | None = None,
    ):
        super().__init__(w_in, w_out, stride)
        self.a = conv2d(w_in, w_out, 3, stride=stride)
        self.a_bn = _norm(norm, w_out)
        self.a_af = activation_class()
        self.b = conv2d(w_out, w_out, 3)
        self.b_bn = _norm(norm, w_out)
        self.b_af = activation_class()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x


class BasicTransform(nn.Module):
    """Residual branch of :class:`ResBasicBlock`: 3x3 (strided), norm, act, 3x3, norm."""

    def __init__(
        self,
        w_in: int,
        w_out: int,
        stride: int,
        norm: Any,
        activation_class: ActivationClass,
        _params: dict | None = None,
    ):
        super().__init__()
        self.a = conv2d(w_in, w_out, 3, stride=stride)
        self.a_bn = _norm(norm, w_out)
        self.a_af = activation_class()
        self.b = conv2d(w_out, w_out, 3)
        self.b_bn = _norm(norm, w_out)
        self.b_bn.final_bn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x


class _ResidualBlock(CNNBlockBase):
    """``activation(shortcut(x) + f(x))``; the shortcut projects when width or stride changes."""

    transform: type[nn.Module]

    def __init__(
        self,
        w_in: int,
        w_out: int,
        stride: int,
        norm: Any,
        activation_class: ActivationClass,
        params: dict | None = None,
    ):
        super().__init__(w_in, w_out, stride)
        self.proj_block = (w_in != w_out) or (stride != 1)
        if self.proj_block:
            self.proj = conv2d(w_in, w_out, 1, stride=stride)
            self.bn = _norm(norm, w_out)
        self.f = self.transform(w_in, w_out, stride, norm, activation_class, params)
        self.af = activation_class()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.bn(self.proj(x)) if self.proj_block else x
        return self.af(shortcut + self.f(x))


class ResBasicBlock(_ResidualBlock):
    """Residual basic block: ``x + BasicTransform(x)``."""

    transform = BasicTransform


class BottleneckTransform(nn.Module):
    """Bottleneck branch: 1x1, 3x3 grouped (strided), optional SE, 1x1, each conv with norm.

    ``params``: ``bot_mul`` (bottleneck width ratio), ``group_w`` (channels per group), ``se_r``
    (SE width as a fraction of the block's input width; 0 disables SE).
    """

    def __init__(
        self,
        w_in: int,
        w_out: int,
        stride: int,
        norm: Any,
        activation_class: ActivationClass,
        params: dict,
    ):
        super().__init__()
        w_b = int(round(w_out * params["bot_mul"]))
        w_se = int(round(w_in * params["se_r"]))
        groups = w_b // params["group_w"]
        self.a = conv2d(w_in, w_b, 1)
        self.a_bn = _norm(norm, w_b)
        self.a_af = activation_class()
        self.b = conv2d(w_b, w_b, 3, stride=stride, groups=groups)
        self.b_bn = _norm(norm, w_b)
        self.b_af = activation_class()
        self.se = SE(w_b, w_se, activation_class) if w_se else None
        self.c = conv2d(w_b, w_out, 1)
        self.c_bn = _norm(norm, w_out)
        self.c_bn.final_bn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x


class ResBottleneckBlock(_ResidualBlock):
    """Residual bottleneck block: ``x + BottleneckTransform(x)``."""

    transform = BottleneckTransform


class AnyStage(nn.Module):
    """``d`` blocks of one width; only the first is strided. Blocks are named ``b1``, ``b2`` ..."""

    def __init__(
        self,
        w_in: int,
        w_out: int,
        stride: int,
        d: int,
        block_class: type[CNNBlockBase],
        norm: Any,
        activation_class: ActivationClass,
        params: dict,
    ):
        super().__init__()
        for i in range(d):
            block = block_class(w_in, w_out, stride, norm, activation_class, params)
            self.add_module(f"b{i + 1}", block)
            stride, w_in = 1, w_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.children():
            x = block(x)
        return x


class AnyNet(Backbone):
    """AnyNet: a stem followed by stages of freely chosen depth, width, stride and groups.

    Args:
        stem_class: stem block class, e.g. :class:`SimpleStem`.
        stem_width: stem output channels.
        block_class: block class, e.g. :class:`ResBottleneckBlock`.
        depths, widths, group_widths, strides, bottleneck_ratios: one entry per stage.
        se_ratio: SE width ratio (0 disables SE).
        activation_class: callable returning a new activation module.
        freeze_at: freeze the stem (1) and the first ``freeze_at - 1`` stages.
        norm: normalization, as accepted by ``get_norm``.
        out_features: among ``"stem"``, ``"s1"``, ``"s2"`` ...; default the last stage.
    """

    def __init__(
        self,
        *,
        stem_class: type[CNNBlockBase],
        stem_width: int,
        block_class: type[CNNBlockBase],
        depths: Sequence[int],
        widths: Sequence[int],
        group_widths: Sequence[int],
        strides: Sequence[int],
        bottleneck_ratios: Sequence[float],
        se_ratio: float,
        activation_class: ActivationClass,
        freeze_at: int = 0,
        norm: Any = "BN",
        out_features: Sequence[str] | None = None,
    ):
        super().__init__()
        lengths = {len(v) for v in (depths, widths, group_widths, strides, bottleneck_ratios)}
        if len(lengths) != 1:
            raise ValueError(
                "AnyNet: depths, widths, group_widths, strides and bottleneck_ratios must have the "
                f"same length, got {[len(depths), len(widths), len(group_widths), len(strides)]}"
                f" and {len(bottleneck_ratios)}"
            )
        self.stem = stem_class(3, stem_width, norm, activation_class)
        current_stride = self.stem.stride
        self._out_feature_strides = {"stem": current_stride}
        self._out_feature_channels = {"stem": self.stem.out_channels}
        self.stages_and_names: list[tuple[nn.Module, str]] = []
        prev_w = stem_width
        for i, (d, w, s, b, g) in enumerate(
            zip(depths, widths, strides, bottleneck_ratios, group_widths)
        ):
            params = {"bot_mul": b, "group_w": g, "se_r": se_ratio}
            stage = AnyStage(prev_w, w, s, d, block_class, norm, activation_class, params)
            name = f"s{i + 1}"
            self.add_module(name, stage)
            self.stages_and_names.append((stage, name))
            for block in stage.children():
                current_stride *= block.stride
            self._out_feature_strides[name] = int(current_stride)
            self._out_feature_channels[name] = list(stage.children())[-1].out_channels
            prev_w = w

        self.apply(init_weights)
        if out_features is None:
            out_features = [self.stages_and_names[-1][1]]
        out_features = list(out_features)
        valid = list(self._out_feature_channels)
        for f in out_features:
            if f not in valid:
                raise KeyError(f"AnyNet: unknown out_feature {f!r}; available: {valid}")
        self._out_features = out_features
        self.freeze(freeze_at)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: x (Tensor[N, 3, H, W]). Returns: ``{name: Tensor[N, C, H / s, W / s]}``."""
        if x.dim() != 4:
            raise ValueError(f"AnyNet takes an input of shape (N, C, H, W), got {tuple(x.shape)}")
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for stage, name in self.stages_and_names:
            x = stage(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }

    def freeze(self, freeze_at: int = 0) -> AnyNet:
        """Freeze the stem when ``freeze_at >= 1`` and stage ``s<k>`` when ``freeze_at >= k + 1``.

        Returns:
            the model itself.
        """
        if freeze_at >= 1:
            self.stem.freeze()
        for idx, (stage, _) in enumerate(self.stages_and_names, start=2):
            if freeze_at >= idx:
                for block in stage.children():
                    block.freeze()
        return self


def adjust_block_compatibility(
    ws: Sequence[int], bs: Sequence[float], gs: Sequence[int]
) -> tuple[list[int], list[float], list[int]]:
    """Round widths so that each stage's bottleneck width is a multiple of its group width.

    Args:
        ws: stage widths; bs: bottleneck ratios; gs: group widths.

    Returns:
        the adjusted (ws, bs, gs).
    """
    if not len(ws) == len(bs) == len(gs):
        raise ValueError(
            f"adjust_block_compatibility: lengths differ ({len(ws)}, {len(bs)}, {len(gs)})"
        )
    if not all(w > 0 and b > 0 and g > 0 for w, b, g in zip(ws, bs, gs)):
        raise ValueError("adjust_block_compatibility: widths, ratios and groups must be positive")
    vs = [int(max(1, w * b)) for w, b in zip(ws, bs)]
    gs = [int(min(g, v)) for g, v in zip(gs, vs)]
    ms = [int(np.lcm(g, int(b))) if b > 1 else g for g, b in zip(gs, bs)]
    vs = [max(m, int(round(v / m) * m)) for v, m in zip(vs, ms)]
    ws = [int(v / b) for v, b in zip(vs, bs)]
    return ws, list(bs), gs


def generate_regnet_parameters(
    w_a: float, w_0: int, w_m: float, d: int, q: int = 8
) -> tuple[list[int], list[int], int, int, list[int], list[float]]:
    """Per-stage widths and depths of a RegNet from its linear width parameterisation.

    Block j gets the continuous width ``w_0 + w_a * j``, quantised to ``w_0 * w_m**k`` (k
    integer) and rounded to a multiple of ``q``; consecutive blocks of equal width form a stage.

    Returns:
        (widths, depths, num_stages, total_stages, per-block widths, per-block continuous widths).
    """
    if not (w_a >= 0 and w_0 > 0 and w_m > 1 and w_0 % q == 0):
        raise ValueError(
            "generate_regnet_parameters: need w_a >= 0, w_0 > 0, w_m > 1 and w_0 % q == 0, got "
            f"w_a={w_a}, w_0={w_0}, w_m={w_m}, q={q}"
        )
    ws_cont = np.arange(d) * w_a + w_0
    ks = np.round(np.log(ws_cont / w_0) / np.log(w_m))
    ws_all = w_0 * np.power(w_m, ks)
    ws_all = np.round(np.divide(ws_all, q)).astype(int) * q
    ws, ds = np.unique(ws_all, return_counts=True)
    num_stages, total_stages = len(ws), int(ks.max() + 1)
    return (
        ws.tolist(),
        ds.tolist(),
        num_stages,
        total_stages,
        ws_all.tolist(),
        ws_cont.tolist(),
    )


def _default_activation() -> nn.Module:
    return nn.ReLU(inplace=True)


class RegNet(AnyNet):
    """RegNetX / RegNetY: an :class:`AnyNet` whose stage widths and depths follow from
    ``(depth, w_a, w_0, w_m)``; RegNetY adds SE (``se_ratio=0.25``).

    Args:
        stem_class, stem_width, block_class: as :class:`AnyNet`.
        depth: total number of blocks.
        w_a, w_0, w_m: width slope, initial width and quantisation multiplier.
        group_width: channels per group of the 3x3 convs.
        stride: stride of each stage.
        bottleneck_ratio: bottleneck width ratio.
        se_ratio: SE width ratio (0 disables SE).
        activation_class: callable returning an activation (default in-place ReLU).
        freeze_at, norm, out_features: as :class:`AnyNet`.
    """

    def __init__(
        self,
        *,
        stem_class: type[CNNBlockBase],
        stem_width: int,
        block_class: type[CNNBlockBase],
        depth: int,
        w_a: float,
        w_0: int,
        w_m: float,
        group_width: int,
        stride: int = 2,
        bottleneck_ratio: float = 1.0,
        se_ratio: float = 0.0,
        activation_class: ActivationClass | None = None,
        freeze_at: int = 0,
        norm: Any = "BN",
        out_features: Sequence[str] | None = None,
    ):
        ws, ds = generate_regnet_parameters(w_a, w_0, w_m, depth)[0:2]
        ss = [stride for _ in ws]
        bs = [bottleneck_ratio for _ in ws]
        gs = [group_width for _ in ws]
        ws, bs, gs = adjust_block_compatibility(ws, bs, gs)
        super().__init__(
            stem_class=stem_class,
            stem_width=stem_width,
            block_class=block_class,
            depths=ds,
            widths=ws,
            strides=ss,
            group_widths=gs,
            bottleneck_ratios=bs,
            se_ratio=se_ratio,
            activation_class=_default_activation if activation_class is None else activation_class,
            freeze_at=freeze_at,
            norm=norm,
            out_features=out_features,
        )
