"""DensePose: ground-truth structures, the COCO DensePose loader and mapper on the synthetic
dataset, the chart losses on hand-built estimates and one training step / inference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torchdet.config import get_cfg
from torchdet.modeling import build_model
from torchdet.projects.densepose import (
    DensePoseChartLoss,
    DensePoseChartPredictorOutput,
    DensePoseDataRelative,
    add_densepose_config,
)
from torchdet.projects.densepose.data import (
    DensePoseDatasetMapper,
    load_densepose_coco_json,
    make_synthetic_densepose_dataset,
    synthetic_iuv,
)
from torchdet.projects.densepose.structures import DensePoseList
from torchdet.structures import Boxes, Instances


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("densepose_synthetic")
    json_file = make_synthetic_densepose_dataset(root, num_images=3)
    # A dataset name makes the loader map category ids to contiguous ids (person -> 0).
    return load_densepose_coco_json(json_file, root / "images", "densepose_synthetic_test")


def test_loader_keeps_densepose_keys(synthetic):
    assert len(synthetic) == 3
    anno = synthetic[0]["annotations"][0]
    for key in ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V", "dp_masks"):
        assert key in anno
    data = DensePoseDataRelative(anno)
    assert data.x.shape == data.i.shape == (40,)
    i, u, v = synthetic_iuv(np.asarray(anno["dp_x"]), np.asarray(anno["dp_y"]))
    assert data.i.tolist() == i.tolist()
    assert torch.allclose(data.u, torch.as_tensor(u, dtype=torch.float32))
    # The 4 quadrant masks merge into labels 1..4.
    assert data.segm[0, 0] == 1 and data.segm[0, 255] == 2 and data.segm[255, 0] == 3
    assert data.segm[255, 255] == 4
    bad = dict(anno)
    del bad["dp_V"]
    with pytest.raises(KeyError, match="dp_V"):
        DensePoseDataRelative(bad)


def test_densepose_list_indexing():
    lst = DensePoseList(["a", None, "c"])
    assert lst[0] == "a"
    assert list(lst[torch.tensor([True, False, True])]) == ["a", "c"]
    assert list(lst[torch.tensor([2, 2])]) == ["c", "c"]
    assert len(lst[1:]) == 2


def _dp(x, y, i, u, v):
    segm = torch.zeros(256, 256)
    segm[:, :128] = 1  # left half is foreground
    return DensePoseDataRelative(
        {"dp_x": x, "dp_y": y, "dp_I": i, "dp_U": u, "dp_V": v, "dp_masks": segm}
    )


def test_chart_loss_hand_computed():
    # One proposal equal to its ground-truth box (0, 0, 4, 4) and a 4 x 4 estimate: the point
    # at box-relative (128, 128) is at grid (2.0, 2.0), exactly on cell (2, 2).
    inst = Instances((8, 8))
    inst.proposal_boxes = Boxes(torch.tensor([[0.0, 0.0, 4.0, 4.0]]))
    inst.gt_boxes = Boxes(torch.tensor([[0.0, 0.0, 4.0, 4.0]]))
    inst.gt_densepose = DensePoseList([_dp([128.0], [128.0], [2.0], [0.5], [0.25])])
    k = 3
    u = torch.zeros(1, k, 4, 4)
    u[0, 2, 2, 2] = 0.7  # |0.7 - 0.5| = 0.2 -> smooth L1 (beta 1) = 0.5 * 0.04 = 0.02
    v = torch.zeros(1, k, 4, 4)
    v[0, 2, 2, 2] = 2.25  # |2.25 - 0.25| = 2 -> 2 - 0.5 = 1.5
    fine = torch.zeros(1, k, 4, 4)  # uniform -> CE = log 3
    coarse = torch.zeros(1, 2, 4, 4)  # uniform -> CE = log 2
    out = DensePoseChartPredictorOutput(coarse_segm=coarse, fine_segm=fine, u=u, v=v)
    loss = DensePoseChartLoss(w_points=0.01, w_part=1.0, w_segm=5.0, n_segm_chan=2)
    losses = loss([inst], out)
    assert losses["loss_densepose_U"].item() == pytest.approx(0.01 * 0.02, rel=1e-5)
    assert losses["loss_densepose_V"].item() == pytest.approx(0.01 * 1.5, rel=1e-5)
    assert losses["loss_densepose_I"].item() == pytest.approx(math.log(3), rel=1e-5)
    assert losses["loss_densepose_S"].item() == pytest.approx(5 * math.log(2), rel=1e-5)
    # No proposal: zero losses that still reach the outputs.
    empty = loss([], None, params=[torch.nn.Parameter(torch.ones(2))])
    assert all(v.item() == 0 for v in empty.values())


def _tiny_cfg():
    cfg = get_cfg()
    add_densepose_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 64
    cfg.MODEL.ROI_HEADS.NAME = "DensePoseROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 1
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    h = cfg.MODEL.ROI_DENSEPOSE_HEAD
    h.NAME = "DensePoseV1ConvXHead"
    h.NUM_STACKED_CONVS = 2
    h.CONV_HEAD_DIM = 16
    h.DECODER_NUM_CLASSES = 16
    h.DECODER_CONV_DIMS = 16
    h.POOLER_RESOLUTION = 7
    h.POOLER_TYPE = "ROIAlign"
    # Low threshold: an untrained RPN's proposals rarely overlap by 0.7.
    h.FG_IOU_THRESHOLD = 0.1
    cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE = 0
    cfg.INPUT.MIN_SIZE_TRAIN = (160,)
    cfg.INPUT.MAX_SIZE_TRAIN = 256
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def test_train_step_and_inference(synthetic):
    torch.manual_seed(0)
    cfg = _tiny_cfg()
    cfg.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT = True
    model = build_model(cfg)
    model.train()
    mapper = DensePoseDatasetMapper(cfg, is_train=True)
    batch = [mapper(d) for d in synthetic[:2]]
    assert isinstance(batch[0]["instances"].gt_densepose, DensePoseList)
    losses = model(batch)
    for key in ("loss_densepose_U", "loss_densepose_V", "loss_densepose_I", "loss_densepose_S"):
        assert key in losses and torch.isfinite(losses[key]), key
    assert losses["loss_densepose_S"].item() > 0
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []

    model.eval()
    with torch.no_grad():
        out = model([{"image": batch[0]["image"], "height": 160, "width": 192}])
    inst = out[0]["instances"]
    assert len(inst) > 0
    dp = inst.pred_densepose
    assert len(dp) == len(inst)
    assert dp.coarse_segm.shape[1:] == (2, 28, 28)
    assert dp.fine_segm.shape[1:] == dp.u.shape[1:] == (25, 28, 28)
