"""Caffe2 / torchvision name conversion and suffix matching."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from torchdet.checkpoint import (
    align_and_update_state_dicts,
    convert_basic_c2_names,
    convert_c2_detectron_names,
    convert_torchvision_resnet_names,
)


@pytest.mark.parametrize(
    "c2, expected",
    [
        ("conv1_w", "stem.conv1.weight"),
        ("res_conv1_bn_s", "stem.conv1.norm.weight"),
        ("res_conv1_bn_b", "stem.conv1.norm.bias"),
        ("res_conv1_bn_rm", "stem.conv1.norm.running_mean"),
        ("res_conv1_bn_riv", "stem.conv1.norm.running_var"),
        ("res2_0_branch2a_w", "res2.0.conv1.weight"),
        ("res2_0_branch2b_bn_s", "res2.0.conv2.norm.weight"),
        ("res3_1_branch2c_bn_b", "res3.1.conv3.norm.bias"),
        ("res2_0_branch1_w", "res2.0.shortcut.weight"),
        ("res2_0_branch1_bn_riv", "res2.0.shortcut.norm.running_var"),
        ("res4_5_branch2a_gn_s", "res4.5.conv1.norm.weight"),
        ("res4_5_branch2a_gn_b", "res4.5.conv1.norm.bias"),
        ("pred_w", "linear.weight"),
    ],
)
def test_convert_basic_c2_names(c2, expected):
    assert convert_basic_c2_names([c2]) == [expected]


@pytest.mark.parametrize(
    "c2, expected",
    [
        ("fpn_inner_res5_2_sum_w", "fpn_lateral5.weight"),
        ("fpn_inner_res2_2_sum_lateral_b", "fpn_lateral2.bias"),
        ("fpn_res5_2_sum_w", "fpn_output5.weight"),
        ("fpn_res3_3_sum_gn_s", "fpn_output3.norm.weight"),
        ("conv_rpn_fpn2_w", "proposal_generator.rpn_head.conv.weight"),
        ("conv_rpn_w", "proposal_generator.rpn_head.conv.weight"),
        ("rpn_conv_3x3_w", "proposal_generator.rpn_head.conv.weight"),
        ("rpn_cls_logits_fpn2_b", "proposal_generator.rpn_head.objectness_logits.bias"),
        ("rpn_bbox_pred_w", "proposal_generator.rpn_head.anchor_deltas.weight"),
        ("fc6_w", "box_head.fc1.weight"),
        ("fc7_b", "box_head.fc2.bias"),
        ("head_conv1_gn_s", "box_head.conv1.norm.weight"),
        ("cls_score_w", "cls_score.weight"),
        ("bbox_pred_b", "bbox_pred.bias"),
        ("_[mask]_fcn1_w", "mask_head.mask_fcn1.weight"),
        ("mask_fcn2_b", "mask_head.mask_fcn2.bias"),
        ("conv5_mask_w", "mask_head.deconv.weight"),
        ("mask_fcn_logits_w", "mask_head.predictor.weight"),
        ("kps_score_lowres_w", "roi_heads.keypoint_head.score_lowres.weight"),
        ("conv_fcn1_b", "roi_heads.keypoint_head.conv_fcn1.bias"),
    ],
)
def test_convert_c2_detectron_names(c2, expected):
    renamed, original = convert_c2_detectron_names({c2: np.zeros((8, 2), dtype=np.float32)})
    assert list(renamed) == [expected]
    assert original == {expected: c2}


def test_background_class_relayout():
    k = 3  # foreground classes
    cls_w = np.arange((k + 1) * 2, dtype=np.float32).reshape(k + 1, 2)  # row 0 = background
    cls_b = np.array([10.0, 11.0, 12.0, 13.0], dtype=np.float32)
    box_w = np.arange(4 * (k + 1) * 2, dtype=np.float32).reshape(4 * (k + 1), 2)
    mask_w = torch.arange(k + 1, dtype=torch.float32).reshape(k + 1, 1, 1, 1)
    renamed, _ = convert_c2_detectron_names(
        {
            "cls_score_w": cls_w,
            "cls_score_b": cls_b,
            "bbox_pred_w": box_w,
            "mask_fcn_logits_w": mask_w,
        }
    )
    np.testing.assert_array_equal(renamed["cls_score.bias"], [11.0, 12.0, 13.0, 10.0])
    np.testing.assert_array_equal(renamed["cls_score.weight"], cls_w[[1, 2, 3, 0]])
    np.testing.assert_array_equal(renamed["bbox_pred.weight"], box_w[4:])
    assert renamed["mask_head.predictor.weight"].flatten().tolist() == [1.0, 2.0, 3.0]


def test_colliding_c2_names_raise():
    with pytest.raises(ValueError, match="collide"):
        convert_c2_detectron_names({"conv_rpn_w": np.zeros(1), "conv_rpn_fpn2_w": np.zeros(1)})


def test_convert_torchvision_resnet_names():
    keys = [
        "conv1.weight",
        "bn1.weight",
        "bn1.running_var",
        "bn1.num_batches_tracked",
        "layer1.0.conv1.weight",
        "layer1.0.bn3.bias",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_mean",
        "layer4.2.bn2.weight",
        "fc.weight",
        "fc.bias",
    ]
    assert convert_torchvision_resnet_names(keys) == [
        "stem.conv1.weight",
        "stem.conv1.norm.weight",
        "stem.conv1.norm.running_var",
        "stem.conv1.norm.num_batches_tracked",
        "res2.0.conv1.weight",
        "res2.0.conv3.norm.bias",
        "res2.0.shortcut.weight",
        "res2.0.shortcut.norm.running_mean",
        "res5.2.conv2.norm.weight",
        "linear.weight",
        "linear.bias",
    ]


def _t(*shape):
    return torch.zeros(shape)


def test_align_picks_longest_dot_suffix(caplog):
    model = {
        "backbone.bottom_up.stem.conv1.weight": _t(4, 3),
        "backbone.bottom_up.res2.0.conv1.weight": _t(4, 4),
        "roi_heads.mesh_head.whatever_conv1.weight": _t(2),
        "roi_heads.box_head.fc1.weight": _t(5, 5),
    }
    a, b, c = torch.ones(4, 3), torch.full((4, 4), 2.0), torch.full((5, 5), 3.0)
    ckpt = {
        "stem.conv1.weight": a,
        "conv1.weight": torch.ones(2),  # must not reach whatever_conv1 (not a dot boundary)
        "res2.0.conv1.weight": b,
        "box_head.fc1.weight": c,
    }
    with caplog.at_level(logging.INFO, logger="torchdet.checkpoint"):
        out = align_and_update_state_dicts(model, ckpt, c2_conversion=False)
    assert out["backbone.bottom_up.stem.conv1.weight"] is a
    assert out["backbone.bottom_up.res2.0.conv1.weight"] is b
    assert out["roi_heads.box_head.fc1.weight"] is c
    assert "roi_heads.mesh_head.whatever_conv1.weight" not in out
    assert "conv1.weight" in out  # unmatched: kept under its own name (reported as unexpected)
    assert "Names in Model" in caplog.text and "res2.0.conv1.weight" in caplog.text


def test_align_ambiguity_raises():
    model = {"a.conv.weight": _t(2), "b.conv.weight": _t(2)}
    with pytest.raises(ValueError, match="Ambiguous checkpoint key 'conv.weight'"):
        align_and_update_state_dicts(model, {"conv.weight": torch.ones(2)}, c2_conversion=False)


def test_align_keeps_shape_mismatch_under_model_name(caplog):
    model = {"roi_heads.box_predictor.cls_score.weight": _t(4, 8)}
    ckpt = {"cls_score.weight": torch.ones(81, 8)}
    with caplog.at_level(logging.WARNING, logger="torchdet.checkpoint"):
        out = align_and_update_state_dicts(model, ckpt, c2_conversion=False)
    assert out["roi_heads.box_predictor.cls_score.weight"].shape == (81, 8)
    assert "(81, 8)" in caplog.text and "(4, 8)" in caplog.text
