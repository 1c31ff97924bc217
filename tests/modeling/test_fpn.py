"""Tests of torchdet.modeling.backbone.fpn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torchdet.config import get_cfg
from torchdet.layers import ShapeSpec
from torchdet.modeling.backbone import (
    FPN,
    BasicStem,
    LastLevelMaxPool,
    LastLevelP6P7,
    ResNet,
    build_backbone,
)


def _parity_cfg(parity_dir, name: str = "faster_rcnn_R50_FPN"):
    cfg = get_cfg()
    cfg.merge_from_file(str(parity_dir / "models" / name / "config.yaml"))
    return cfg


def _backbone_state_dict(parity_dir, name: str = "faster_rcnn_R50_FPN") -> dict:
    sd = torch.load(parity_dir / "models" / name / "model_final.pth", weights_only=True)["model"]
    return {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}


def _ref_top_down(sd: dict, bottom_up: dict, fuse: str = "sum") -> dict:
    """An independent functional FPN (lateral 1x1, nearest x2 top-down, output 3x3, P6 pool)."""
    prev = F.conv2d(bottom_up["res5"], sd["fpn_lateral5.weight"], sd["fpn_lateral5.bias"])
    outs = {"p5": F.conv2d(prev, sd["fpn_output5.weight"], sd["fpn_output5.bias"], padding=1)}
    for level in (4, 3, 2):
        lat = F.conv2d(
            bottom_up[f"res{level}"],
            sd[f"fpn_lateral{level}.weight"],
            sd[f"fpn_lateral{level}.bias"],
        )
        prev = lat + F.interpolate(prev, scale_factor=2.0, mode="nearest")
        if fuse == "avg":
            prev = prev / 2
        outs[f"p{level}"] = F.conv2d(
            prev, sd[f"fpn_output{level}.weight"], sd[f"fpn_output{level}.bias"], padding=1
        )
    outs["p6"] = outs["p5"][:, :, ::2, ::2]  # 1x1 max pool of stride 2
    return outs


def test_fpn_loads_detectron2_weights_and_matches_reference(parity_dir):
    cfg = _parity_cfg(parity_dir)
    model = build_backbone(cfg).eval()
    assert isinstance(model, FPN)
    sd = _backbone_state_dict(parity_dir)
    assert set(model.state_dict()) == {k for k in sd if not k.endswith("num_batches_tracked")}
    incompatible = model.load_state_dict(sd, strict=True)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys

    shapes = model.output_shape()
    assert list(shapes) == ["p2", "p3", "p4", "p5", "p6"]
    assert [(s.channels, s.stride) for s in shapes.values()] == [
        (64, 4),
        (64, 8),
        (64, 16),
        (64, 32),
        (64, 64),
    ]
    assert model.size_divisibility == 32
    assert model.padding_constraints == {"square_size": 0}

    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        out = model(x)
        ref = _ref_top_down(sd, model.bottom_up(x))
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    assert out["p2"].shape == (1, 64, 24, 32) and out["p6"].shape == (1, 64, 2, 2)
    for k in ref:
        err = ((out[k] - ref[k]).abs().max() / ref[k].abs().max()).item()
        assert err < 1e-4, k


def test_fpn_avg_fuse_and_norm():
    bottom_up = ResNet(
        BasicStem(3, 64, "BN"),
        ResNet.make_default_stages(18, norm="BN"),
        out_features=["res3", "res4", "res5"],
    ).eval()
    fpn = FPN(bottom_up, ["res3", "res4", "res5"], 16, fuse_type="avg", top_block=None).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = fpn(x)
        feats = fpn.bottom_up(x)
    sd = fpn.state_dict()
    prev = F.conv2d(feats["res5"], sd["fpn_lateral5.weight"], sd["fpn_lateral5.bias"])
    lat4 = F.conv2d(feats["res4"], sd["fpn_lateral4.weight"], sd["fpn_lateral4.bias"])
    p4_in = (lat4 + F.interpolate(prev, scale_factor=2.0, mode="nearest")) / 2
    p4 = F.conv2d(p4_in, sd["fpn_output4.weight"], sd["fpn_output4.bias"], padding=1)
    assert torch.allclose(out["p4"], p4, atol=1e-5)
    assert list(out) == ["p3", "p4", "p5"]

    gn = FPN(bottom_up, ["res4", "res5"], 32, norm="GN")
    assert gn.fpn_lateral4.bias is None and gn.fpn_lateral4.norm is not None


def test_retinanet_fpn_p6p7(parity_dir):
    cfg = _parity_cfg(parity_dir, "retinanet_R50_FPN")
    model = build_backbone(cfg).eval()
    shapes = model.output_shape()
    assert [(k, s.stride) for k, s in shapes.items()] == [
        ("p3", 8),
        ("p4", 16),
        ("p5", 32),
        ("p6", 64),
        ("p7", 128),
    ]
    sd = _backbone_state_dict(parity_dir, "retinanet_R50_FPN")
    model.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        out = model(x)
        res5 = model.bottom_up(x)["res5"]
    p6 = F.conv2d(res5, sd["top_block.p6.weight"], sd["top_block.p6.bias"], stride=2, padding=1)
    p7 = F.conv2d(
        F.relu(p6), sd["top_block.p7.weight"], sd["top_block.p7.bias"], stride=2, padding=1
    )
    assert torch.allclose(out["p6"], p6, atol=1e-4) and torch.allclose(out["p7"], p7, atol=1e-4)


def test_last_level_p6p7_from_p5():
    bottom_up = ResNet(
        BasicStem(3, 64, "BN"),
        ResNet.make_default_stages(18, norm="BN"),
        out_features=["res4", "res5"],
    )
    fpn = FPN(bottom_up, ["res4", "res5"], 8, top_block=LastLevelP6P7(8, 8, in_feature="p5"))
    assert fpn.top_block.p6.in_channels == 8
    out = fpn(torch.randn(1, 3, 64, 64))
    assert {k: tuple(v.shape[-2:]) for k, v in out.items()} == {
        "p4": (4, 4),
        "p5": (2, 2),
        "p6": (1, 1),
        "p7": (1, 1),
    }
    assert LastLevelMaxPool()(torch.arange(16.0).view(1, 1, 4, 4)).__len__() == 1


def test_fpn_errors():
    bottom_up = ResNet(
        BasicStem(3, 64, "BN"),
        ResNet.make_default_stages(18, norm="BN"),
        out_features=["res3", "res5"],
    )
    with pytest.raises(ValueError, match="double"):
        FPN(bottom_up, ["res3", "res5"], 8)
    with pytest.raises(KeyError, match="res4"):
        FPN(bottom_up, ["res4", "res5"], 8)
    with pytest.raises(ValueError, match="fuse_type"):
        FPN(bottom_up, ["res5"], 8, fuse_type="max")
    assert FPN(bottom_up, ["res5"], 8).output_shape()["p5"] == ShapeSpec(channels=8, stride=32)
