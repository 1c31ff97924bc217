"""DatasetMapper on a shapes val record, in training and test mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchdet.config import get_cfg
from torchdet.data import DatasetMapper
from torchdet.data import transforms as T
from torchdet.data.common import DataMappingError
from torchdet.structures import BoxMode, PolygonMasks

# shapes val 000001.jpg is 305 (h) x 289 (w): short side 800 -> (844, 800) (305 * 800/289 = 844.3)
NEW_H, NEW_W = 844, 800


def _record(shapes_dir: Path, image_id: int = 1) -> dict:
    """A standard dataset dict built straight from the COCO json (category ids made 0-based)."""
    root = shapes_dir / "val"
    data = json.loads((root / "instances.json").read_text())
    img = next(i for i in data["images"] if i["id"] == image_id)
    annos = [
        {
            "id": a["id"],
            "bbox": a["bbox"],
            "bbox_mode": BoxMode.XYWH_ABS,
            "category_id": a["category_id"] - 1,
            "segmentation": a["segmentation"],
            "iscrowd": a["iscrowd"],
        }
        for a in data["annotations"]
        if a["image_id"] == image_id
    ]
    return {
        "file_name": str(root / "images" / img["file_name"]),
        "image_id": image_id,
        "height": img["height"],
        "width": img["width"],
        "annotations": annos,
    }


def _expected_boxes(record: dict) -> torch.Tensor:
    xywh = torch.tensor([a["bbox"] for a in record["annotations"]], dtype=torch.float64)
    xyxy = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
    scale = torch.tensor([NEW_W / 289, NEW_H / 305] * 2, dtype=torch.float64)
    return (xyxy * scale).float()


def test_mapper_test_mode(shapes_dir):
    record = _record(shapes_dir)
    assert (record["height"], record["width"]) == (305, 289)
    mapper = DatasetMapper(
        is_train=False,
        augmentations=[T.ResizeShortestEdge(800, 1333, "choice")],
        image_format="BGR",
    )
    out = mapper(record)
    assert out["image"].shape == (3, NEW_H, NEW_W) and out["image"].dtype == torch.uint8
    assert "annotations" not in out and "instances" not in out
    assert (out["height"], out["width"]) == (305, 289)  # the size to predict at
    assert "annotations" in record  # the input dict is not modified
    # Pixels are PIL's bilinear resize of the RGB file, in BGR order, channels first.
    ref = Image.open(record["file_name"]).convert("RGB").resize((NEW_W, NEW_H), Image.BILINEAR)
    ref = torch.from_numpy(np.ascontiguousarray(np.asarray(ref)[:, :, ::-1].transpose(2, 0, 1)))
    assert torch.equal(out["image"], ref)


@pytest.mark.parametrize("flip", [False, True])
def test_mapper_train_mode_scales_boxes_and_masks(shapes_dir, flip):
    record = _record(shapes_dir)
    augs = [T.ResizeShortestEdge((800,), 1333, "choice")]
    if flip:
        augs.append(T.RandomFlip(prob=1.0))
    mapper = DatasetMapper(
        is_train=True, augmentations=augs, image_format="RGB", use_instance_mask=True
    )
    out = mapper(record)
    inst = out["instances"]
    assert out["image"].shape == (3, NEW_H, NEW_W)
    assert inst.image_size == (NEW_H, NEW_W)
    expected = _expected_boxes(record)
    if flip:
        expected = torch.stack(
            [NEW_W - expected[:, 2], expected[:, 1], NEW_W - expected[:, 0], expected[:, 3]], 1
        )
    torch.testing.assert_close(inst.gt_boxes.tensor, expected, rtol=0, atol=1e-3)
    assert inst.gt_classes.tolist() == [a["category_id"] for a in record["annotations"]]
    assert isinstance(inst.gt_masks, PolygonMasks)
    # The masks' bounding boxes are the boxes (shapes boxes are the polygon extents).
    torch.testing.assert_close(
        inst.gt_masks.get_bounding_boxes().tensor, expected, rtol=0, atol=0.05
    )


def test_mapper_drops_crowd_and_reads_sem_seg(shapes_dir):
    record = _record(shapes_dir)
    crowd = dict(record["annotations"][0], iscrowd=1, id=9999)
    record["annotations"].append(crowd)
    record["sem_seg_file_name"] = str(shapes_dir / "val" / "sem_seg" / "000001.png")
    mapper = DatasetMapper(
        is_train=True,
        augmentations=[T.ResizeShortestEdge(800, 1333, "choice")],
        image_format="BGR",
        use_instance_mask=True,
        instance_mask_format="bitmask",
    )
    out = mapper(record)
    assert len(out["instances"]) == len(record["annotations"]) - 1
    assert out["instances"].gt_masks.tensor.shape[1:] == (NEW_H, NEW_W)
    sem = out["sem_seg"]
    assert sem.dtype == torch.int64 and sem.shape == (NEW_H, NEW_W)
    raw = np.asarray(Image.open(record["sem_seg_file_name"]))
    assert set(sem.unique().tolist()) == set(np.unique(raw).tolist())  # nearest: no new labels


def test_mapper_errors_name_file_and_image_id(shapes_dir, tmp_path):
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="BGR")
    record = _record(shapes_dir)
    missing = dict(record, file_name=str(tmp_path / "gone.jpg"), image_id=42)
    with pytest.raises(DataMappingError, match=r"gone\.jpg.*image_id=42.*FileNotFoundError"):
        mapper(missing)
    wrong_size = dict(record, height=300, image_id=43)
    with pytest.raises(DataMappingError, match=r"000001\.jpg.*image_id=43.*SizeMismatchError"):
        mapper(wrong_size)


def test_mapper_from_config():
    cfg = get_cfg()
    cfg.MODEL.MASK_ON = True
    cfg.INPUT.CROP.ENABLED = True
    m = DatasetMapper(cfg, is_train=True)
    names = [type(a).__name__ for a in m.augmentations.augs]
    assert names == ["RandomCrop", "ResizeShortestEdge", "RandomFlip"]
    assert m.image_format == "BGR" and m.use_instance_mask and m.recompute_boxes
    test = DatasetMapper(cfg, False)
    assert [type(a).__name__ for a in test.augmentations.augs] == ["ResizeShortestEdge"]
    assert not test.is_train and not test.recompute_boxes
    override = DatasetMapper(cfg, True, image_format="RGB")
    assert override.image_format == "RGB"
    with pytest.raises(ValueError, match="use_instance_mask"):
        DatasetMapper(is_train=True, augmentations=[], image_format="BGR", recompute_boxes=True)


def test_mapper_precomputed_proposals(shapes_dir):
    record = _record(shapes_dir)
    record["proposal_boxes"] = np.array([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 289.0, 305.0]])
    record["proposal_objectness_logits"] = np.array([2.0, 1.0])
    record["proposal_bbox_mode"] = BoxMode.XYXY_ABS
    mapper = DatasetMapper(
        is_train=False,
        augmentations=[T.ResizeShortestEdge(800, 1333, "choice")],
        image_format="BGR",
        precomputed_proposal_topk=1,
    )
    props = mapper(record)["proposals"]
    assert props.image_size == (NEW_H, NEW_W) and len(props) == 1
    sx, sy = NEW_W / 289, NEW_H / 305
    torch.testing.assert_close(
        props.proposal_boxes.tensor, torch.tensor([[10 * sx, 20 * sy, 30 * sx, 40 * sy]])
    )
    torch.testing.assert_close(props.objectness_logits, torch.tensor([2.0]))
