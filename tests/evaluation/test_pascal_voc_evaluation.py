"""PascalVOCDetectionEvaluator: hand-computed VOC2007 (11-point) and VOC2012 (area) AP."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch

from torchdet.data.datasets import register_pascal_voc
from torchdet.evaluation import PascalVOCDetectionEvaluator
from torchdet.evaluation.pascal_voc_evaluation import voc_ap
from torchdet.structures import Boxes, Instances

_XML = """<annotation><size><width>200</width><height>200</height><depth>3</depth></size>
{}</annotation>"""
_OBJ = """<object><name>{}</name><pose>Unspecified</pose><truncated>0</truncated>
<difficult>{}</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax>
</bndbox></object>"""


def _voc(tmp_path, year: int) -> str:
    root = tmp_path / f"voc{year}"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "test.txt").write_text("a\nb\n")
    (root / "Annotations" / "a.xml").write_text(
        _XML.format(_OBJ.format("cat", 0, 1, 1, 10, 10) + _OBJ.format("cat", 1, 50, 50, 60, 60))
    )
    (root / "Annotations" / "b.xml").write_text(_XML.format(_OBJ.format("cat", 0, 21, 21, 40, 40)))
    name = f"evaltest_voc_{uuid.uuid4().hex[:8]}"
    register_pascal_voc(name, str(root), "test", year, class_names=["cat"])
    return name


def _instances(boxes, scores) -> Instances:
    inst = Instances((200, 200))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.scores = torch.tensor(scores)
    inst.pred_classes = torch.zeros(len(scores), dtype=torch.int64)
    return inst


def _run(name):
    ev = PascalVOCDetectionEvaluator(name)
    ev.reset()
    # image a: a hit on the difficult object (ignored), a TP, a duplicate of it (FP);
    # image b: a FP far away, then a TP.
    ev.process(
        [{"image_id": "a"}, {"image_id": "b"}],
        [
            {
                "instances": _instances(
                    [[49, 49, 60, 60], [0, 0, 10, 10], [0, 0, 10, 10]], [0.95, 0.9, 0.85]
                )
            },  # fmt: skip
            {"instances": _instances([[100, 100, 120, 120], [20, 20, 40, 40]], [0.8, 0.7])},
        ],
    )
    return ev.evaluate()["bbox"]


def test_voc2012_area_ap(tmp_path):
    # ranked: TP, FP (duplicate), FP, TP over 2 objects: recall .5 .5 .5 1, precision 1 .5 1/3 .5
    # area under the envelope: 0.5 * 1 + 0.5 * 0.5 = 0.75; all boxes match exactly (IoU 1)
    res = _run(_voc(tmp_path, 2012))
    assert res["AP50"] == pytest.approx(75.0)
    assert res["AP75"] == pytest.approx(75.0)
    assert res["AP"] == pytest.approx(75.0)


def test_voc2007_eleven_point_ap(tmp_path):
    # recall thresholds 0 .. 0.5 (6 points) at precision 1, 0.6 .. 1.0 (5 points) at 0.5
    res = _run(_voc(tmp_path, 2007))
    assert res["AP50"] == pytest.approx(100 * (6 + 2.5) / 11)


def test_voc_ap_empty_and_bad_input(tmp_path):
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0
    name = _voc(tmp_path, 2012)
    ev = PascalVOCDetectionEvaluator(name)
    inst = _instances([[0, 0, 10, 10]], [0.9])
    inst.pred_classes = torch.tensor([3])
    with pytest.raises(ValueError, match="image a has a detection of class 3"):
        ev.process([{"image_id": "a"}], [{"instances": inst}])
    ev.reset()
    ev.process([{"image_id": "zz"}], [{"instances": _instances([[0, 0, 10, 10]], [0.9])}])
    with pytest.raises(ValueError, match="image 'zz'"):
        ev.evaluate()
