"""DeepLab v3+ units: the hard-pixel-mining loss, the poly schedule, the DeepLab ResNet and
one training step / inference of the whole model."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.modeling import build_backbone, build_model
from torchdet.projects.deeplab import DeepLabCE, WarmupPolyLR, add_deeplab_config


def test_deeplab_ce_top_k_hand_computed():
    # 1 image, 2 classes, 1 x 4 pixels; logits 0 for class 0, so the CE of label 0 is
    # log(1 + e^z) and of label 1 is log(1 + e^-z).
    z = torch.tensor([0.0, 1.0, 2.0, -3.0])
    logits = torch.stack([torch.zeros(4), z]).reshape(1, 2, 1, 4)
    labels = torch.tensor([[[0, 0, 1, 255]]])
    per_pixel = [math.log(2), math.log(1 + math.e), math.log(1 + math.exp(-2)), 0.0]
    loss = DeepLabCE(ignore_label=255, top_k_percent_pixels=0.5)(logits, labels)
    assert loss.item() == pytest.approx((per_pixel[0] + per_pixel[1]) / 2, rel=1e-6)
    full = DeepLabCE(ignore_label=255)(logits, labels)
    assert full.item() == pytest.approx(sum(per_pixel) / 4, rel=1e-6)
    with pytest.raises(ValueError, match="top_k_percent_pixels"):
        DeepLabCE(top_k_percent_pixels=0.0)
    with pytest.raises(ValueError, match="labels"):
        DeepLabCE()(logits, labels[0])


def test_warmup_poly_lr():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupPolyLR(opt, 100, warmup_factor=0.1, warmup_iters=10, power=0.9)
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1)  # warmup factor at iter 0, poly(0) = 1
    assert lrs[5] == pytest.approx((0.1 * 0.5 + 0.5) * 0.95**0.9)
    assert lrs[20] == pytest.approx(0.8**0.9)
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = WarmupPolyLR(opt2, 10, warmup_iters=0, power=1.0, constant_ending=0.5)
    for _ in range(8):
        opt2.step()
        sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.5)  # 1 - 8/10 = 0.2 floored at 0.5


def _tiny_cfg():
    cfg = get_cfg()
    add_deeplab_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "SemanticSegmentor"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_deeplab_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res5"]
    cfg.MODEL.RESNETS.RES5_DILATION = 2
    cfg.MODEL.SEM_SEG_HEAD.NAME = "DeepLabV3PlusHead"
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res5"]
    cfg.MODEL.SEM_SEG_HEAD.ASPP_CHANNELS = 16
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 16
    cfg.MODEL.SEM_SEG_HEAD.PROJECT_CHANNELS = [8]
    cfg.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 3
    cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
    cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def test_deeplab_backbone_strides_and_dilations():
    cfg = _tiny_cfg()
    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    # res5 keeps res4's stride 16 and dilates its blocks by 2 * (1, 2, 4).
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "res2": (32, 4),
        "res5": (256, 16),
    }
    assert [b.conv2.dilation for b in backbone.res5] == [(2, 2), (4, 4), (8, 8)]
    assert [c.kernel_size for c in (backbone.stem.conv1, backbone.stem.conv3)] == [(3, 3)] * 2
    out = backbone(torch.randn(1, 3, 64, 96))
    assert out["res2"].shape == (1, 32, 16, 24) and out["res5"].shape == (1, 256, 4, 6)
    cfg.MODEL.RESNETS.STEM_TYPE = "fancy"
    with pytest.raises(ValueError, match="STEM_TYPE"):
        build_backbone(cfg)
    cfg = _tiny_cfg()
    cfg.MODEL.RESNETS.RES4_DILATION = 2
    with pytest.raises(ValueError, match="RES5_DILATION must be 4"):
        build_backbone(cfg)


@pytest.mark.parametrize("loss_type", ["hard_pixel_mining", "cross_entropy"])
def test_deeplab_train_step_and_inference(loss_type):
    torch.manual_seed(0)
    cfg = _tiny_cfg()
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = loss_type
    model = build_model(cfg)
    model.train()
    inputs = [
        {
            "image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8),
            "sem_seg": torch.randint(0, 3, (64, 64)),
        }
        for _ in range(2)
    ]
    inputs[0]["sem_seg"][:8] = 255
    losses = model(inputs)
    assert set(losses) == {"loss_sem_seg"}
    assert torch.isfinite(losses["loss_sem_seg"])
    losses["loss_sem_seg"].backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    model.eval()
    with torch.no_grad():
        out = model([{"image": inputs[0]["image"], "height": 32, "width": 40}])
    assert out[0]["sem_seg"].shape == (3, 32, 40)
    assert torch.isfinite(out[0]["sem_seg"]).all()


def test_deeplab_head_bad_config():
    cfg = _tiny_cfg()
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "dice"
    with pytest.raises(ValueError, match="LOSS_TYPE"):
        build_model(cfg)
    cfg = _tiny_cfg()
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res3", "res5"]
    with pytest.raises(KeyError, match="res3"):
        build_model(cfg)
