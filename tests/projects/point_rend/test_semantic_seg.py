"""PointRendSemSegHead: losses, gradients and subdivision inference."""

from __future__ import annotations

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.layers import ShapeSpec
from torchdet.modeling import build_sem_seg_head
from torchdet.projects.point_rend import PointRendSemSegHead, add_pointrend_config
from torchdet.projects.point_rend.semantic_seg import calculate_sem_seg_uncertainty


def _cfg():
    cfg = get_cfg()
    add_pointrend_config(cfg)
    cfg.MODEL.SEM_SEG_HEAD.NAME = "PointRendSemSegHead"
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 4
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 8
    cfg.MODEL.SEM_SEG_HEAD.NORM = ""
    cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
    cfg.MODEL.POINT_HEAD.NUM_CLASSES = 4
    cfg.MODEL.POINT_HEAD.FC_DIM = 8
    cfg.MODEL.POINT_HEAD.TRAIN_NUM_POINTS = 64
    cfg.MODEL.POINT_HEAD.SUBDIVISION_STEPS = 2
    cfg.MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS = 100
    return cfg


SHAPES = {f"p{i}": ShapeSpec(channels=8, stride=2**i) for i in range(2, 6)}


def _features(n=2, h=64, w=96):
    return {f"p{i}": torch.randn(n, 8, h // 2**i, w // 2**i) for i in range(2, 6)}


def test_uncertainty_is_top2_margin():
    logits = torch.tensor([[[3.0], [1.0], [2.5]], [[0.0], [-1.0], [-4.0]]])
    torch.testing.assert_close(
        calculate_sem_seg_uncertainty(logits), torch.tensor([[[-0.5]], [[-1.0]]])
    )


def test_training_losses_and_gradients():
    torch.manual_seed(0)
    head = build_sem_seg_head(_cfg(), SHAPES)
    assert isinstance(head, PointRendSemSegHead)
    head.train()
    targets = torch.randint(0, 4, (2, 64, 96))
    targets[0, :8] = 255
    _, losses = head(_features(), targets)
    assert set(losses) == {"loss_sem_seg", "loss_sem_seg_point"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None]
    assert missing == []
    with pytest.raises(ValueError, match="targets"):
        head(_features(), None)


def test_inference_refines_only_selected_points():
    torch.manual_seed(0)
    head = build_sem_seg_head(_cfg(), SHAPES).eval()
    features = _features()
    with torch.no_grad():
        logits, losses = head(features)
        coarse = head.coarse_sem_seg_head.layers(features)
    assert losses == {}
    # Stride 4 features, 2 steps of 2x: logits at the input resolution.
    assert logits.shape == (2, 4, 64, 96)
    # Each step re-predicts at most 100 points per image, so the refined map agrees with the
    # upsampled coarse prediction almost everywhere.
    up = torch.nn.functional.interpolate(
        coarse, size=(64, 96), mode="bilinear", align_corners=False
    )
    assert (logits.argmax(1) == up.argmax(1)).float().mean() > 0.9


def test_bad_config():
    cfg = _cfg()
    cfg.MODEL.POINT_HEAD.NUM_CLASSES = 3
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        PointRendSemSegHead(cfg, SHAPES)
