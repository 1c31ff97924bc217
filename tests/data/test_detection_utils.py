"""detection_utils: image reading, annotation transforms and ground-truth Instances."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image

from torchdet.config import get_cfg
from torchdet.data import MetadataCatalog
from torchdet.data import detection_utils as utils
from torchdet.data import transforms as T
from torchdet.structures import BitMasks, BoxMode, PolygonMasks

# ---------------------------------------------------------------- read_image


def test_read_image_rgb_bgr_l_yuv(tmp_path: Path):
    arr = np.zeros((6, 8, 3), dtype=np.uint8)
    arr[..., 0] = 255  # pure red
    arr[:, 4:, 2] = 40
    path = tmp_path / "red.png"
    Image.fromarray(arr).save(path)
    rgb = utils.read_image(str(path), format="RGB")
    bgr = utils.read_image(str(path), format="BGR")
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, arr)
    np.testing.assert_array_equal(bgr, arr[..., ::-1])
    gray = utils.read_image(str(path), format="L")
    assert gray.shape == (6, 8, 1)
    assert gray[0, 0, 0] == round(0.299 * 255)  # PIL's L = 299/1000 R + 587/1000 G + ...
    white = tmp_path / "white.png"
    Image.fromarray(np.full((2, 2, 3), 255, np.uint8)).save(white)
    yuv = utils.read_image(str(white), format="YUV-BT.601")
    np.testing.assert_allclose(yuv[0, 0], [1.0, 0.0, 0.0], atol=1e-4)
    # convert_image_to_rgb undoes each format
    np.testing.assert_array_equal(utils.convert_image_to_rgb(bgr, "BGR"), arr)
    np.testing.assert_array_equal(utils.convert_image_to_rgb(rgb, "RGB"), arr)
    back = utils.convert_image_to_rgb(utils.read_image(str(white), "YUV-BT.601"), "YUV-BT.601")
    assert np.abs(back.astype(int) - 255).max() <= 1


@pytest.mark.parametrize(
    ("orientation", "expected_shape", "red_pixel"),
    [
        (1, (10, 20), (5, 2)),  # stored as is: left half red
        (6, (20, 10), (2, 5)),  # rotate 90 clockwise to display: the left half goes on top
        (8, (20, 10), (17, 5)),  # rotate 90 counter-clockwise: the left half goes to the bottom
        (3, (10, 20), (5, 17)),  # 180: left half goes right
    ],
)
def test_read_image_applies_exif_orientation(tmp_path, orientation, expected_shape, red_pixel):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :10, 0] = 255
    exif = Image.Exif()
    exif[274] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    img = utils.read_image(str(path), format="RGB")
    assert img.shape[:2] == expected_shape
    y, x = red_pixel
    assert img[y, x, 0] > 200 and img[y, x, 1] < 60
    # the mirrored position is dark
    h, w = expected_shape
    assert img[h - 1 - y, w - 1 - x, 0] < 60


def test_read_image_errors_name_the_file(tmp_path: Path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        utils.read_image(str(missing))
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"definitely not a jpeg")
    with pytest.raises(ValueError, match="garbage.jpg"):
        utils.read_image(str(garbage))
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 64, 3), np.uint8)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:600])
    with pytest.raises(ValueError, match="truncated.jpg"):
        utils.read_image(str(truncated))


def test_check_image_size():
    img = np.zeros((10, 20, 3), np.uint8)
    d = {"file_name": "a.jpg", "image_id": 7}
    utils.check_image_size(d, img)
    assert (d["height"], d["width"]) == (10, 20)
    bad = {"file_name": "b.jpg", "image_id": 8, "height": 20, "width": 10}
    with pytest.raises(utils.SizeMismatchError, match=r"b\.jpg.*image_id=8"):
        utils.check_image_size(bad, img)
    assert issubclass(utils.SizeMismatchError, ValueError)


# ---------------------------------------------------------------- annotations


def test_transform_instance_annotations_box_polygon_rle():
    anno = {
        "bbox": [10.0, 20.0, 30.0, 40.0],  # XYWH
        "bbox_mode": BoxMode.XYWH_ABS,
        "segmentation": [[10.0, 20.0, 40.0, 20.0, 40.0, 60.0]],
        "category_id": 1,
    }
    tfms = T.TransformList([T.ResizeTransform(100, 100, 50, 200), T.HFlipTransform(200)])
    out = utils.transform_instance_annotations(dict(anno), tfms, (50, 200))
    assert out["bbox_mode"] == BoxMode.XYXY_ABS
    # resize: x * 2, y * 0.5 -> (20, 10, 80, 30); flip x -> 200 - x
    np.testing.assert_allclose(out["bbox"], [120, 10, 180, 30])
    np.testing.assert_allclose(out["segmentation"][0], [180, 10, 120, 10, 120, 30])
    # boxes are clipped to the image
    clip = utils.transform_instance_annotations(
        {"bbox": [-5.0, -5.0, 300.0, 300.0], "bbox_mode": BoxMode.XYXY_ABS},
        [T.NoOpTransform()],
        (50, 200),
    )
    np.testing.assert_allclose(clip["bbox"], [0, 0, 200, 50])
    # RLE: decoded, transformed as a segmentation
    mask = np.zeros((100, 100), np.uint8, order="F")
    mask[10:20, 30:50] = 1
    rle = mask_util.encode(np.asfortranarray(mask))
    out = utils.transform_instance_annotations(
        {"bbox": [30, 10, 50, 20], "bbox_mode": BoxMode.XYXY_ABS, "segmentation": rle},
        T.TransformList([T.HFlipTransform(100)]),
        (100, 100),
    )
    assert out["segmentation"].shape == (100, 100)
    assert out["segmentation"][10:20, 50:70].all() and out["segmentation"].sum() == 200


def test_transform_keypoints_hflip_with_indices():
    # 3 keypoints: apex, base_left, base_right; flipping swaps the base ones.
    kps = [10.0, 5.0, 2, 4.0, 30.0, 2, 16.0, 30.0, 1]
    out = utils.transform_keypoint_annotations(
        kps, T.TransformList([T.HFlipTransform(20)]), (40, 20), keypoint_hflip_indices=[0, 2, 1]
    )
    np.testing.assert_allclose(out, [[10, 5, 2], [4, 30, 1], [16, 30, 2]])
    with pytest.raises(ValueError, match="keypoint_hflip_indices"):
        utils.transform_keypoint_annotations(kps, T.TransformList([T.HFlipTransform(20)]), (40, 20))
    # Two flips cancel: no index swap needed.
    two = T.TransformList([T.HFlipTransform(20), T.HFlipTransform(20)])
    np.testing.assert_allclose(
        utils.transform_keypoint_annotations(kps, two, (40, 20)), np.reshape(kps, (3, 3))
    )
    # Keypoints that leave the image get visibility 0 (and are zeroed).
    crop = T.TransformList([T.CropTransform(8, 0, 12, 40)])
    out = utils.transform_keypoint_annotations(kps, crop, (40, 12))
    np.testing.assert_allclose(out, [[2, 5, 2], [0, 0, 0], [8, 30, 1]])


def test_annotations_to_instances_empty():
    inst = utils.annotations_to_instances([], (10, 20))
    assert len(inst) == 0 and inst.gt_boxes.tensor.shape == (0, 4)
    assert inst.gt_classes.dtype == torch.int64
    assert len(utils.filter_empty_instances(inst)) == 0


def _shapes_val_record(shapes_dir: Path, image_id: int) -> tuple[dict, list[dict], list[dict]]:
    data = json.loads((shapes_dir / "val" / "instances.json").read_text())
    img = next(i for i in data["images"] if i["id"] == image_id)
    raw = [a for a in data["annotations"] if a["image_id"] == image_id]
    annos = [
        {
            "bbox": a["bbox"],
            "bbox_mode": BoxMode.XYWH_ABS,
            "category_id": a["category_id"] - 1,
            "segmentation": a["segmentation"],
            "iscrowd": a["iscrowd"],
        }
        for a in raw
    ]
    return img, annos, raw


def test_annotations_to_instances_on_shapes_val(shapes_dir):
    img, annos, raw = _shapes_val_record(shapes_dir, 1)
    h, w = img["height"], img["width"]
    inst = utils.annotations_to_instances(annos, (h, w))
    assert len(inst) == len(raw) > 0
    assert inst.gt_classes.tolist() == [a["category_id"] - 1 for a in raw]
    xywh = torch.tensor([a["bbox"] for a in raw], dtype=torch.float32)
    expected = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
    torch.testing.assert_close(inst.gt_boxes.tensor, expected)
    assert isinstance(inst.gt_masks, PolygonMasks)
    rles = [mask_util.merge(mask_util.frPyObjects(a["segmentation"], h, w)) for a in raw]
    coco_areas = torch.tensor([float(mask_util.area(r)) for r in rles])
    # Polygon (exact) areas vs pycocotools' rasterised areas: equal up to edge pixels.
    torch.testing.assert_close(inst.gt_masks.area().float(), coco_areas, rtol=0.05, atol=0)

    bit = utils.annotations_to_instances(annos, (h, w), mask_format="bitmask")
    assert isinstance(bit.gt_masks, BitMasks)
    assert bit.gt_masks.tensor.shape == (len(raw), h, w)
    # Bitmasks are pycocotools' rasterisation: exactly its areas.
    assert bit.gt_masks.tensor.sum(dim=(1, 2)).tolist() == coco_areas.long().tolist()

    with_rle = [dict(a, segmentation=r) for a, r in zip(annos, rles)]
    with pytest.raises(ValueError, match="bitmask"):
        utils.annotations_to_instances(with_rle, (h, w), mask_format="polygon")
    bit_rle = utils.annotations_to_instances(with_rle, (h, w), mask_format="bitmask")
    assert torch.equal(bit_rle.gt_masks.tensor, bit.gt_masks.tensor)


def test_annotations_to_instances_keypoints_and_rotated():
    annos = [
        {
            "bbox": [0, 0, 10, 10],
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": 2,
            "keypoints": [1.0, 2.0, 2.0, 3.0, 4.0, 0.0],
        },
    ]
    inst = utils.annotations_to_instances(annos, (20, 20))
    assert inst.gt_keypoints.tensor.shape == (1, 2, 3)
    rot = utils.annotations_to_instances_rotated(
        [{"bbox": [5.0, 5.0, 4.0, 2.0, 30.0], "category_id": 1}], (20, 20)
    )
    assert rot.gt_boxes.tensor.shape == (1, 5) and rot.gt_classes.tolist() == [1]


def test_filter_empty_instances():
    annos = [
        {
            "bbox": [0, 0, 10, 10],
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": 0,
            "segmentation": [[0, 0, 10, 0, 10, 10]],
        },
        {
            "bbox": [5, 5, 5, 9],
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": 1,  # zero width
            "segmentation": [[5, 5, 6, 5, 6, 6]],
        },
        {
            "bbox": [1, 1, 4, 4],
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": 2,
            "segmentation": [],
        },  # no polygon left (e.g. cropped away)
    ]
    inst = utils.annotations_to_instances(annos, (20, 20))
    kept, mask = utils.filter_empty_instances(inst, return_mask=True)
    assert mask.tolist() == [True, False, False]
    assert kept.gt_classes.tolist() == [0]
    assert utils.filter_empty_instances(inst, by_mask=False).gt_classes.tolist() == [0, 2]


def test_transform_proposals():
    d = {
        "proposal_boxes": np.array(
            [[0, 0, 10, 10], [5, 5, 5, 5], [-4, 0, 30, 8]], dtype=np.float32
        ),
        "proposal_objectness_logits": np.array([3.0, 2.0, 1.0]),
        "proposal_bbox_mode": BoxMode.XYXY_ABS,
    }
    utils.transform_proposals(
        d, (16, 20), T.TransformList([T.ResizeTransform(8, 10, 16, 20)]), proposal_topk=5
    )
    p = d["proposals"]
    torch.testing.assert_close(
        p.proposal_boxes.tensor,
        torch.tensor([[0, 0, 20, 16], [0, 0, 20, 16.0]]),  # clipped to h = 16
    )
    torch.testing.assert_close(p.objectness_logits, torch.tensor([3.0, 1.0]))
    assert "proposal_boxes" not in d


# ---------------------------------------------------------------- metadata & config


def test_create_keypoint_hflip_indices_and_consistency():
    for name in ("_tdu_kp_a", "_tdu_kp_b", "_tdu_kp_c"):
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)
    names = ["apex", "base_left", "base_right", "tip"]
    MetadataCatalog.get("_tdu_kp_a").set(
        keypoint_names=names, keypoint_flip_map=[("base_left", "base_right")]
    )
    MetadataCatalog.get("_tdu_kp_b").set(
        keypoint_names=names, keypoint_flip_map=[("base_left", "base_right")]
    )
    MetadataCatalog.get("_tdu_kp_c").set(
        keypoint_names=names[:3], keypoint_flip_map=[("base_left", "base_right")]
    )
    idx = utils.create_keypoint_hflip_indices(["_tdu_kp_a", "_tdu_kp_b"])
    assert idx.tolist() == [0, 2, 1, 3]
    with pytest.raises(ValueError, match="keypoint_names"):
        utils.create_keypoint_hflip_indices(["_tdu_kp_a", "_tdu_kp_c"])


def test_gen_crop_transform_with_instance_contains_center():
    inst = {"bbox": [40.0, 30.0, 60.0, 50.0], "bbox_mode": BoxMode.XYXY_ABS}
    for _ in range(20):
        crop = utils.gen_crop_transform_with_instance((20, 30), (100, 120), inst)
        assert (crop.w, crop.h) == (30, 20)
        assert crop.x0 <= 50 <= crop.x0 + crop.w and crop.y0 <= 40 <= crop.y0 + crop.h
        assert crop.x0 + crop.w <= 120 and crop.y0 + crop.h <= 100


def test_build_augmentation_from_cfg():
    cfg = get_cfg()
    train = utils.build_augmentation(cfg, True)
    assert [type(a).__name__ for a in train] == ["ResizeShortestEdge", "RandomFlip"]
    assert tuple(train[0].short_edge_length) == (800,) and train[0].max_size == 1333
    test = utils.build_augmentation(cfg, False)
    assert len(test) == 1 and test[0].is_range is False
    tfm = test[0].get_transform(np.zeros((305, 289, 3), np.uint8))
    assert (tfm.new_h, tfm.new_w) == (844, 800)
    cfg.INPUT.RANDOM_FLIP = "none"
    assert len(utils.build_augmentation(cfg, True)) == 1
    assert utils.build_transform_gen is utils.build_augmentation


def test_get_fed_loss_cls_weights():
    name = "_tdu_fed"
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    counts = [{"id": 2, "image_count": 9}, {"id": 1, "image_count": 4}]
    MetadataCatalog.get(name).set(class_image_count=counts)
    w = utils.get_fed_loss_cls_weights(name, freq_weight_power=0.5)
    torch.testing.assert_close(w, torch.tensor([2.0, 3.0]))  # sorted by id: sqrt(4), sqrt(9)
