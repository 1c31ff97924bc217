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


def test_semantic_segmentor_from_the_packaged_config_trains_and_infers():
    from pathlib import Path

    import torchdet.projects.point_rend as point_rend
    from torchdet.modeling import build_model
    from torchdet.utils.events import EventStorage

    torch.manual_seed(0)
    cfg = get_cfg()
    add_pointrend_config(cfg)
    cfg.merge_from_file(
        str(
            Path(point_rend.__file__).parent
            / "configs/SemanticSegmentation/Base-PointRend-Semantic-FPN.yaml"
        )
    )
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.NUM_GROUPS = 1
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 16
    cfg.MODEL.SEM_SEG_HEAD.NORM = ""
    cfg.MODEL.POINT_HEAD.NUM_CLASSES = 5
    cfg.MODEL.POINT_HEAD.FC_DIM = 16
    cfg.MODEL.POINT_HEAD.TRAIN_NUM_POINTS = 128
    cfg.MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS = 256
    model = build_model(cfg)
    assert isinstance(model.sem_seg_head, PointRendSemSegHead)
    image = torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8)
    sem_seg = torch.randint(0, 5, (64, 96))
    model.train()
    with EventStorage():
        losses = model([{"image": image, "sem_seg": sem_seg}])
    assert set(losses) == {"loss_sem_seg", "loss_sem_seg_point"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.sem_seg_head.point_head.predictor.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 32, "width": 48}])
    assert out["sem_seg"].shape == (5, 32, 48)
