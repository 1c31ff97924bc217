"""Tests of torchdet.modeling.matcher."""

from __future__ import annotations

import pytest
import torch

from torchdet.modeling.matcher import Matcher


def test_matcher_parity_rpn(ops_cases):
    case = ops_cases["matcher_rpn"]
    args = case["args"]
    matcher = Matcher(
        args["thresholds"],
        args["labels"],
        allow_low_quality_matches=args["allow_low_quality_matches"],
    )
    matches, match_labels = matcher(case["inputs"]["match_quality_matrix"])
    ref_matches, ref_labels = case["output"]
    assert matches.dtype == torch.int64 and match_labels.dtype == torch.int8
    assert torch.equal(matches, ref_matches)
    assert torch.equal(match_labels, ref_labels.to(torch.int8))


def test_matcher_bands_hand_computed():
    # 2 gt x 5 predictions; thresholds 0.3 / 0.7 -> bands [<0.3]=0, [0.3, 0.7)=-1, [>=0.7]=1.
    iou = torch.tensor(
        [
            [0.10, 0.30, 0.69, 0.70, 0.00],
            [0.20, 0.05, 0.10, 0.90, 0.25],
        ]
    )
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=False)
    matches, labels = matcher(iou)
    assert matches.tolist() == [1, 0, 0, 1, 1]
    assert labels.tolist() == [0, -1, -1, 1, 0]


def test_matcher_low_quality_matches_include_ties():
    # gt 0's best prediction has IoU 0.4 (shared by predictions 0 and 2): both become positive.
    iou = torch.tensor(
        [
            [0.40, 0.10, 0.40, 0.00],
            [0.00, 0.80, 0.00, 0.20],
        ]
    )
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    matches, labels = matcher(iou)
    assert labels.tolist() == [1, 1, 1, 0]
    assert matches.tolist() == [0, 1, 0, 1]


def test_matcher_empty_ground_truth():
    matcher = Matcher([0.5], [0, 1])
    matches, labels = matcher(torch.zeros((0, 7)))
    assert matches.tolist() == [0] * 7
    assert labels.tolist() == [0] * 7
    assert labels.dtype == torch.int8


def test_matcher_invalid_arguments():
    with pytest.raises(ValueError, match="labels"):
        Matcher([0.3, 0.7], [0, 1])
    with pytest.raises(ValueError, match="increasing"):
        Matcher([0.7, 0.3], [0, -1, 1])
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        Matcher([0.5], [0, 2])
    with pytest.raises(ValueError, match="M ground truth"):
        Matcher([0.5], [0, 1])(torch.zeros(3))
