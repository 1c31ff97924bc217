"""Tests of torchdet.modeling.backbone.resnet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchdet.config import get_cfg
from torchdet.layers import FrozenBatchNorm2d, ShapeSpec
from torchdet.modeling.backbone import (
    BACKBONE_REGISTRY,
    BasicBlock,
    BasicStem,
    BottleneckBlock,
    DeformBottleneckBlock,
    ResNet,
    build_backbone,
    build_resnet_backbone,
)

_R50_NUM_BLOCKS = [3, 4, 6, 3]


def _parity_cfg(parity_dir, name: str = "faster_rcnn_R50_FPN"):
    cfg = get_cfg()
    cfg.merge_from_file(str(parity_dir / "models" / name / "config.yaml"))
    return cfg


def _checkpoint(parity_dir, name: str = "faster_rcnn_R50_FPN") -> dict:
    path = parity_dir / "models" / name / "model_final.pth"
    return torch.load(path, weights_only=True)["model"]


def _sub_state_dict(sd: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _ref_conv_bn(sd: dict, name: str, x, stride=1, padding=0, dilation=1, groups=1):
    """conv (no bias) + frozen BN, from raw checkpoint tensors."""
    y = F.conv2d(x, sd[name + ".weight"], None, stride, padding, dilation, groups)
    scale = sd[name + ".norm.weight"] / torch.sqrt(sd[name + ".norm.running_var"] + 1e-5)
    shift = sd[name + ".norm.bias"] - sd[name + ".norm.running_mean"] * scale
    return y * scale[None, :, None, None] + shift[None, :, None, None]


def _ref_resnet50(sd: dict, x: torch.Tensor, stride_in_1x1: bool) -> dict:
    """An independent functional ResNet-50 (MSRA or torchvision stride placement)."""
    x = F.relu(_ref_conv_bn(sd, "stem.conv1", x, stride=2, padding=3))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    outs = {}
    for s, n in enumerate(_R50_NUM_BLOCKS):
        for b in range(n):
            p = f"res{s + 2}.{b}"
            stride = 2 if (b == 0 and s > 0) else 1
            s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
            y = F.relu(_ref_conv_bn(sd, p + ".conv1", x, stride=s1))
            y = F.relu(_ref_conv_bn(sd, p + ".conv2", y, stride=s3, padding=1))
            y = _ref_conv_bn(sd, p + ".conv3", y)
            short = _ref_conv_bn(sd, p + ".shortcut", x, stride=stride) if b == 0 else x
            x = F.relu(y + short)
        outs[f"res{s + 2}"] = x
    return outs


def _max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def test_resnet50_loads_detectron2_weights_and_matches_reference(parity_dir):
    cfg = _parity_cfg(parity_dir)
    model = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    sd = _sub_state_dict(_checkpoint(parity_dir), "backbone.bottom_up.")
    ckpt_keys = {k for k in sd if not k.endswith("num_batches_tracked")}
    assert set(model.state_dict()) == ckpt_keys
    incompatible = model.load_state_dict(sd, strict=True)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys

    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
        ref = _ref_resnet50(sd, x, stride_in_1x1=True)
    expected_shapes = {
        "res2": (2, 64, 16, 24),
        "res3": (2, 128, 8, 12),
        "res4": (2, 256, 4, 6),
        "res5": (2, 512, 2, 3),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == expected_shapes
    for k in expected_shapes:
        assert _max_rel_err(out[k], ref[k]) < 1e-4, k
    # Folded weights follow in-place changes of the parameters, even through ``.data``.
    with torch.no_grad():
        model.stem.conv1.weight.data.mul_(2.0)
        sd2 = dict(sd)
        sd2["stem.conv1.weight"] = model.stem.conv1.weight.clone()
        assert _max_rel_err(model(x)["res2"], _ref_resnet50(sd2, x, True)["res2"]) < 1e-4


def test_resnet_output_shape_and_strides(parity_dir):
    cfg = _parity_cfg(parity_dir)
    model = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    shapes = model.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "res2": (64, 4),
        "res3": (128, 8),
        "res4": (256, 16),
        "res5": (512, 32),
    }
    # bottleneck width: NUM_GROUPS * WIDTH_PER_GROUP = 16 at res2, doubling per stage
    assert model.res2[0].conv2.weight.shape == (16, 16, 3, 3)
    assert model.res5[0].conv2.weight.shape == (128, 128, 3, 3)
    # STRIDE_IN_1X1: the 1x1 conv strides
    assert model.res3[0].conv1.stride == (2, 2) and model.res3[0].conv2.stride == (1, 1)


def test_torchvision_style_stride_and_registry(parity_dir):
    cfg = _parity_cfg(parity_dir)
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    model = build_backbone(cfg).eval()
    assert model.res3[0].conv1.stride == (1, 1) and model.res3[0].conv2.stride == (2, 2)
    sd = {k: v for k, v in model.state_dict().items()}
    for k, v in sd.items():  # non-trivial frozen BN statistics
        if k.endswith("running_var"):
            v.uniform_(0.5, 2.0)
        elif k.endswith("running_mean") or k.endswith("norm.bias"):
            v.normal_(0, 0.1)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        ref = _ref_resnet50(sd, x, stride_in_1x1=False)
    for k in ref:
        assert _max_rel_err(out[k], ref[k]) < 1e-4
    cfg.MODEL.BACKBONE.NAME = "no_such_backbone"
    with pytest.raises(KeyError, match="no_such_backbone"):
        build_backbone(cfg)


def test_freeze_at(parity_dir):
    cfg = _parity_cfg(parity_dir)
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    model = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    for name, p in model.named_parameters():
        frozen = name.startswith(("stem.", "res2."))
        assert p.requires_grad is not frozen, name
    assert isinstance(model.stem.conv1.norm, FrozenBatchNorm2d)
    assert isinstance(model.res2[2].conv3.norm, FrozenBatchNorm2d)
    assert isinstance(model.res3[0].conv1.norm, nn.BatchNorm2d)
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    model = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    assert all(p.requires_grad for p in model.parameters())
    cfg.MODEL.BACKBONE.FREEZE_AT = 5
    model = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    assert not any(p.requires_grad for p in model.parameters())


def test_frozen_bn_training_gradients_match_unfolded():
    """With FrozenBN but trainable convs, the folded path gives the reference gradients."""
    torch.manual_seed(0)
    block = BottleneckBlock(8, 16, bottleneck_channels=4, stride=2, norm="FrozenBN")
    for m in block.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.normal_()
    x = torch.randn(2, 8, 10, 10, requires_grad=True)
    block(x).sum().backward()
    grads = {n: p.grad.clone() for n, p in block.named_parameters()}
    gx = x.grad.clone()

    block.zero_grad()
    x.grad = None
    # unfolded: each Conv2d module's own forward (conv, then FrozenBN)
    out = F.relu(block.conv1(x))
    out = F.relu(block.conv2(out))
    out = block.conv3(out) + block.shortcut(x)
    F.relu(out).sum().backward()
    for n, p in block.named_parameters():
        assert torch.allclose(grads[n], p.grad, rtol=1e-4, atol=1e-6), n
    assert torch.allclose(gx, x.grad, rtol=1e-4, atol=1e-6)


def test_resnet18_basic_blocks():
    stages = ResNet.make_default_stages(18, norm="BN")
    assert [len(s) for s in stages] == [2, 2, 2, 2]
    assert all(isinstance(b, BasicBlock) for s in stages for b in s)
    model = ResNet(BasicStem(3, 64, "BN"), stages, out_features=["res3", "res5"])
    out = model(torch.randn(1, 3, 64, 64))
    assert out["res3"].shape == (1, 128, 8, 8) and out["res5"].shape == (1, 512, 2, 2)
    assert model.res2[0].shortcut is None and model.res3[0].shortcut is not None


def test_resnet_truncates_unused_stages_and_classifier():
    stages = ResNet.make_default_stages(50)
    model = ResNet(BasicStem(), stages, out_features=["res3"])
    assert model.stage_names == ("res2", "res3")
    assert not hasattr(model, "res4")
    clf = ResNet(BasicStem(), ResNet.make_default_stages(18), num_classes=7)
    assert clf(torch.randn(2, 3, 32, 32))["linear"].shape == (2, 7)
    with pytest.raises(ValueError, match="out_features"):
        ResNet(BasicStem(), ResNet.make_default_stages(18), out_features=["res6"])


def test_dc5_and_resnext(parity_dir):
    cfg = _parity_cfg(parity_dir)
    cfg.MODEL.RESNETS.RES5_DILATION = 2
    cfg.MODEL.RESNETS.NUM_GROUPS = 4
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    model = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    assert model.output_shape()["res5"].stride == 16
    conv2 = model.res5[0].conv2
    assert conv2.dilation == (2, 2) and conv2.padding == (2, 2) and conv2.stride == (1, 1)
    assert conv2.groups == 4 and model.res2[0].conv2.weight.shape == (32, 8, 3, 3)
    out = model(torch.randn(1, 3, 64, 64))
    assert out["res5"].shape == (1, 512, 4, 4)


def test_make_stage_per_block_kwargs_and_errors(parity_dir):
    blocks = ResNet.make_stage(
        BottleneckBlock,
        3,
        in_channels=8,
        out_channels=16,
        bottleneck_channels=4,
        stride_per_block=[2, 1, 1],
    )
    assert [b.stride for b in blocks] == [2, 1, 1]
    assert [b.in_channels for b in blocks] == [8, 16, 16]
    with pytest.raises(ValueError, match="stride_per_block"):
        ResNet.make_stage(BasicBlock, 2, in_channels=8, out_channels=8, stride_per_block=[1])
    cfg = _parity_cfg(parity_dir)
    cfg.MODEL.RESNETS.DEPTH = 34
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
    with pytest.raises(ValueError, match="RES2_OUT_CHANNELS"):
        build_resnet_backbone(cfg, ShapeSpec(channels=3))
    cfg.MODEL.RESNETS.DEPTH = 42
    with pytest.raises(ValueError, match="DEPTH"):
        build_resnet_backbone(cfg, ShapeSpec(channels=3))
    assert "build_resnet_backbone" in BACKBONE_REGISTRY


def test_deform_bottleneck_starts_as_plain_bottleneck():
    for modulated in (False, True):
        torch.manual_seed(0)
        deform = DeformBottleneckBlock(
            8, 16, bottleneck_channels=4, stride=1, norm="FrozenBN", deform_modulated=modulated
        ).eval()
        plain = BottleneckBlock(8, 16, bottleneck_channels=4, stride=1, norm="FrozenBN").eval()
        sd = {k: v for k, v in deform.state_dict().items() if not k.startswith("conv2_offset")}
        plain.load_state_dict(sd)
        x = torch.randn(1, 8, 9, 9)
        with torch.no_grad():
            out_deform = deform(x)
            out_plain = plain(x)
        if modulated:
            # zero offsets and mask sigmoid(0) = 0.5 halve the 3x3 conv's (pre-norm) output
            plain.conv2.weight.data *= 0.5
            with torch.no_grad():
                out_plain = plain(x)
        assert torch.allclose(out_deform, out_plain, atol=1e-4)


def test_deformable_stages_from_config(parity_dir):
    cfg = _parity_cfg(parity_dir)
    plain = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, False, True, True]
    cfg.MODEL.RESNETS.DEFORM_NUM_GROUPS = 2
    deform = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    assert isinstance(deform.res4[0], DeformBottleneckBlock)
    assert isinstance(deform.res3[0], BottleneckBlock)
    assert deform.res5[1].conv2_offset.weight.shape == (2 * 18, 128, 3, 3)
    incompatible = deform.load_state_dict(plain.state_dict(), strict=False)
    assert not incompatible.unexpected_keys
    assert all("conv2_offset" in k for k in incompatible.missing_keys)
    # Offsets start at zero, so the deformable network computes the plain one.
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = plain(x), deform(x)
    for k in a:
        assert _max_rel_err(b[k], a[k]) < 1e-4, k
    cfg.MODEL.RESNETS.DEFORM_MODULATED = True
    modulated = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    assert modulated.res5[0].conv2_offset.out_channels == 2 * 27
    assert modulated(x)["res5"].shape == (1, 512, 2, 2)


@pytest.mark.parametrize("norm", ["BN", "GN", ""])
def test_trainable_norms_run_channels_last_like_contiguous(norm):
    """Non-frozen norms (and none) give the same outputs and gradients in either layout."""
    torch.manual_seed(0)
    stages = [
        ResNet.make_stage(
            BottleneckBlock,
            1,
            in_channels=c_in,
            out_channels=c_out,
            bottleneck_channels=32,
            stride=s,
            norm=norm,
        )
        for c_in, c_out, s in ((32, 64, 1), (64, 96, 2), (96, 128, 2), (128, 160, 2))
    ]
    model = ResNet(BasicStem(3, 32, norm), stages, out_features=["res3", "res5"]).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    loss = out["res3"].square().mean() + out["res5"].mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    # the same network evaluated module by module in NCHW (each Conv2d's own forward)
    def block(b, t):
        y = F.relu(b.conv1(t))
        y = F.relu(b.conv2(y))
        y = b.conv3(y)
        return F.relu(y + (b.shortcut(t) if b.shortcut is not None else t))

    t = F.max_pool2d(F.relu(model.stem.conv1(x)), 3, 2, 1)
    refs = {}
    for name, stage in zip(model.stage_names, model.stages):
        t = block(stage[0], t)
        refs[name] = t
    ref_loss = refs["res3"].square().mean() + refs["res5"].mean()
    ref_loss.backward()
    assert torch.allclose(loss, ref_loss, rtol=1e-4)
    for n, p in model.named_parameters():
        assert _max_rel_err(grads[n], p.grad) < 1e-3, n
