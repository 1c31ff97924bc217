"""GPS / GPSm on hand-built chart estimates, and the evaluator's AP on the synthetic set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torchdet.data import DatasetCatalog
from torchdet.projects.densepose import DensePoseChartPredictorOutput, DensePoseDataRelative
from torchdet.projects.densepose.data import (
    make_synthetic_densepose_dataset,
    register_densepose_coco,
)
from torchdet.projects.densepose.evaluation import (
    DensePoseEvaluator,
    average_precision,
    gps,
    gpsm,
)
from torchdet.structures import Boxes, Instances

M = 64


def _perfect_output(u_shift: float = 0.0) -> DensePoseChartPredictorOutput:
    """Charts of the synthetic person: quadrant patches 1..4, U/V the position in it."""
    c = (torch.arange(M, dtype=torch.float32) + 0.5) / M * 256  # box-relative cell centres
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    qx, qy = (xx >= 128).long(), (yy >= 128).long()
    patch = 1 + qx + 2 * qy
    fine = torch.nn.functional.one_hot(patch, 25).permute(2, 0, 1).float() * 20
    u = ((xx - 128 * qx) / 128 + u_shift).expand(25, M, M)
    v = ((yy - 128 * qy) / 128).expand(25, M, M)
    coarse = torch.stack([torch.zeros(M, M), torch.full((M, M), 10.0)])
    return DensePoseChartPredictorOutput(
        coarse_segm=coarse[None], fine_segm=fine[None], u=u[None].clone(), v=v[None].clone()
    )


def _person(x, y):
    i = 1 + (np.asarray(x) >= 128) + 2 * (np.asarray(y) >= 128)
    u = (np.asarray(x) % 128) / 128
    v = (np.asarray(y) % 128) / 128
    return DensePoseDataRelative(
        {
            "dp_x": x,
            "dp_y": y,
            "dp_I": i.astype(float).tolist(),
            "dp_U": u.tolist(),
            "dp_V": v.tolist(),
            "dp_masks": torch.ones(256, 256),
        }
    )


BOX = torch.tensor([10.0, 20.0, 74.0, 84.0])
# Points at cell centres away from the quadrant borders (bilinear sampling is exact there).
PTS_X = [20.0, 60.0, 180.0, 220.0]
PTS_Y = [36.0, 200.0, 60.0, 164.0]


def test_gps_perfect_and_shifted():
    gt = _person(PTS_X, PTS_Y)
    assert gps(_perfect_output(), BOX, gt, BOX) == pytest.approx(1.0, abs=1e-4)
    # Every U off by kappa: exp(-1/2) per point.
    assert gps(_perfect_output(0.255), BOX, gt, BOX) == pytest.approx(math.exp(-0.5), rel=1e-3)
    # A detection box far away puts every point outside: GPS 0.
    far = BOX + 200
    assert gps(_perfect_output(), far, gt, BOX) == 0.0
    # dp_masks cover the whole box and so does the estimate: GPSm = sqrt(GPS * 1).
    assert gpsm(_perfect_output(), BOX, gt, BOX) == pytest.approx(1.0, abs=1e-3)


def test_average_precision_hand_computed():
    # Image 1: two detections, one matches. Image 2: one detection matching. 3 GT in all.
    scores = [np.array([0.9, 0.8]), np.array([0.7])]
    sims = [np.array([[0.99, 0.0], [0.0, 0.1]]), np.array([[0.99]])]
    ap = average_precision(scores, sims, num_gt=3)
    # Ranked: TP, FP, TP -> precision envelope 1 up to recall 1/3, then 2/3 up to 2/3, then 0.
    expected = (34 * 1.0 + 33 * (2 / 3)) / 101 * 100
    assert ap["AP50"] == pytest.approx(expected, rel=1e-6)
    assert ap["AP"] == pytest.approx(expected, rel=1e-6)


def test_evaluator_on_synthetic(tmp_path):
    json_file = make_synthetic_densepose_dataset(tmp_path, num_images=2, seed=3)
    name = "densepose_synthetic_eval_test"
    if name not in DatasetCatalog.list():
        register_densepose_coco(name, {}, json_file, tmp_path / "images")
    evaluator = DensePoseEvaluator(name)
    evaluator.reset()
    for d in DatasetCatalog.get(name):
        boxes = torch.tensor(
            [
                [
                    a["bbox"][0],
                    a["bbox"][1],
                    a["bbox"][0] + a["bbox"][2],
                    a["bbox"][1] + a["bbox"][3],
                ]
                for a in d["annotations"]
            ],
            dtype=torch.float32,
        )
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(boxes)
        inst.scores = torch.linspace(0.9, 0.8, len(boxes))
        inst.pred_classes = torch.zeros(len(boxes), dtype=torch.long)
        out = _perfect_output()
        inst.pred_densepose = DensePoseChartPredictorOutput(
            coarse_segm=out.coarse_segm.expand(len(boxes), -1, -1, -1),
            fine_segm=out.fine_segm.expand(len(boxes), -1, -1, -1),
            u=out.u.expand(len(boxes), -1, -1, -1),
            v=out.v.expand(len(boxes), -1, -1, -1),
        )
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
    res = evaluator.evaluate()
    # Perfect charts on the true boxes: GPS near 1 for every person (random points near the
    # quadrant borders lose a little to bilinear sampling), so AP50 is 100.
    assert res["densepose_gps"]["AP50"] == pytest.approx(100.0)
    assert res["densepose_gpsm"]["AP50"] == pytest.approx(100.0)
    with pytest.raises(KeyError, match="image_id"):
        evaluator.process([{"image_id": 999}], [{"instances": inst}])
