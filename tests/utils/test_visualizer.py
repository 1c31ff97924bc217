"""Visualizer tests: render small pictures and check their pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchdet.structures import Boxes, Instances
from torchdet.utils.colormap import colormap, random_color, random_colors
from torchdet.utils.visualizer import ColorMode, GenericMask, VisImage, Visualizer
from torchdet.utils.visualizer import _create_text_labels as create_text_labels

RED, GREEN, BLUE = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def grey_image(h: int = 100, w: int = 120, value: int = 128) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def square_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


# ---------------------------------------------------------------------- masks
def test_mask_colour_inside_and_not_outside():
    img = grey_image()
    mask = square_mask(100, 120, 20, 60, 30, 80)
    v = Visualizer(img)
    out = v.overlay_instances(masks=[mask], assigned_colors=[RED], alpha=0.5).get_image()
    assert out.shape == (100, 120, 3) and out.dtype == np.uint8
    # inside, away from the outline: 0.5 * 128 + 0.5 * (255, 0, 0)
    inside = out[24:56, 34:76].reshape(-1, 3)
    assert (np.abs(inside.astype(int) - [192, 64, 64]) <= 1).all()
    # outside, 3+ pixels from the mask: untouched
    far = np.ones((100, 120), dtype=bool)
    far[17:63, 27:83] = False
    assert (out[far] == 128).all()
    # the outline (alpha <= 0.8: same colour, opaque) runs along the mask border
    assert out[40, 30, 0] > 200 and out[40, 30, 1] < 40


def test_mask_with_holes_painted_pixelwise():
    img = grey_image()
    ring = square_mask(100, 120, 20, 80, 20, 100)
    ring[40:60, 50:70] = 0
    assert GenericMask(ring, 100, 120).has_holes
    out = Visualizer(img).draw_binary_mask(ring, color=BLUE, alpha=0.5).get_image()
    assert (out[45:55, 55:65] == 128).all()  # the hole
    assert (np.abs(out[25, 25].astype(int) - [64, 64, 192]) <= 1).all()
    assert (out[5, 5] == 128).all()


def test_small_mask_part_below_area_threshold_is_skipped():
    img = grey_image()
    m = square_mask(100, 120, 10, 12, 10, 12)  # 4 pixels
    out = Visualizer(img).draw_binary_mask(m, color=RED, area_threshold=10).get_image()
    assert (out == 128).all()


# ---------------------------------------------------------------------- boxes
def test_box_outline_where_the_box_is():
    img = np.zeros((100, 100, 3), dtype=np.uint8)
    out = Visualizer(img).draw_box((20, 30, 70, 80), edge_color=BLUE, alpha=1.0).get_image()
    for y, x in [(55, 20), (55, 70), (30, 45), (80, 45)]:  # the four edges
        assert out[y, x, 2] > 200 and out[y, x, 0] == 0, (y, x)
    assert (out[40:70, 30:60] == 0).all()  # inside
    assert (out[:25] == 0).all() and (out[:, 76:] == 0).all()  # outside


def test_box_alpha_blends_edge():
    img = np.zeros((60, 60, 3), dtype=np.uint8)
    out = Visualizer(img).draw_box((10, 10, 50, 50), edge_color=(1.0, 1.0, 1.0)).get_image()
    assert out[30, 10, 0] == 128  # alpha 0.5 over black, centre of a 3-px line


def test_dashed_box_has_gaps():
    img = np.zeros((200, 200, 3), dtype=np.uint8)
    v = Visualizer(img)
    out = v.draw_box((20, 20, 180, 180), edge_color="w", alpha=1.0, line_style="--").get_image()
    top_edge = out[20, 25:175, 0]
    assert (top_edge > 200).any() and (top_edge == 0).any()


# ---------------------------------------------------------------------- predictions
def make_predictions(h: int, w: int) -> Instances:
    inst = Instances((h, w))
    inst.pred_boxes = Boxes(torch.tensor([[30.0, 20.0, 80.0, 60.0]]))
    inst.scores = torch.tensor([0.923])
    inst.pred_classes = torch.tensor([1])
    inst.pred_masks = torch.from_numpy(square_mask(h, w, 25, 55, 35, 75)).bool()[None]
    return inst


def test_draw_instance_predictions_mask_box_and_label():
    img = grey_image(100, 120)
    v = Visualizer(img, {"thing_classes": ["a", "b"]})
    out = v.draw_instance_predictions(make_predictions(100, 120)).get_image()
    # the mask region is tinted (not grey any more), the far corner is not
    assert (out[40, 55] != 128).any()
    assert (out[90:, 100:] == 128).all()
    # the label sits at the box's top-left corner on a dark background
    label_region = out[20:30, 30:60].astype(int)
    assert label_region.min() < 40


def test_image_bw_greys_the_background():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(100, 120, 3), dtype=np.uint8)
    v = Visualizer(img, instance_mode=ColorMode.IMAGE_BW)
    out = v.draw_instance_predictions(make_predictions(100, 120)).get_image().astype(int)
    bg = out[70:, :]  # far from the mask, box and label
    assert (bg[..., 0] == bg[..., 1]).all() and (bg[..., 1] == bg[..., 2]).all()
    grey = np.rint(img[70:].astype(np.float32).mean(axis=2))
    assert (np.abs(bg[..., 0] - grey) <= 1).all()
    # inside the mask the colour survives: channels differ
    inside = out[30:50, 40:70]
    assert (inside[..., 0] != inside[..., 1]).mean() > 0.5


def test_segmentation_mode_uses_thing_colors():
    np.random.seed(0)
    img = grey_image(100, 120, value=0)
    meta = {"thing_classes": ["a", "b"], "thing_colors": [(0, 0, 0), (255, 0, 0)]}
    v = Visualizer(img, meta, instance_mode=ColorMode.SEGMENTATION)
    out = v.draw_instance_predictions(make_predictions(100, 120)).get_image().astype(float)
    # alpha 0.8 over black: 0.8 * jittered red; the jitter has norm 0.5 with positive parts
    px = out[40, 55] / (0.8 * 255)
    assert px[0] >= 0.99 and np.linalg.norm(px - [1, 0, 0]) <= 0.5 + 1e-2


def test_empty_predictions_leave_the_image():
    img = grey_image()
    inst = Instances((100, 120))
    inst.pred_boxes = Boxes(torch.zeros(0, 4))
    inst.scores = torch.zeros(0)
    inst.pred_classes = torch.zeros(0, dtype=torch.int64)
    out = Visualizer(img).draw_instance_predictions(inst).get_image()
    assert (out == 128).all()


def test_scale_resizes_canvas_and_coordinates():
    img = grey_image(50, 60)
    mask = square_mask(50, 60, 10, 30, 10, 40)
    v = Visualizer(img, scale=2.0)
    out = v.overlay_instances(masks=[mask], assigned_colors=[RED]).get_image()
    assert out.shape == (100, 120, 3)
    assert out[40, 50, 0] > 180 and out[40, 50, 1] < 80  # (20, 25) in image pixels
    assert (out[80:, 100:] == 128).all()


# ---------------------------------------------------------------------- keypoints
def test_keypoints_connected_by_rule_colour():
    img = np.zeros((100, 100, 3), dtype=np.uint8)
    meta = {
        "keypoint_names": ["a", "b", "c", "d"],
        "keypoint_connection_rules": [("a", "b", (0, 255, 0)), ("b", "c", (0, 0, 255))],
    }
    kps = np.array([[[10.0, 50.0, 1.0], [90.0, 50.0, 1.0], [90.0, 90.0, 0.01], [50, 85, 0.9]]])
    out = Visualizer(img, meta).overlay_instances(keypoints=kps).get_image()
    assert out[50, 50, 1] > 200 and out[50, 50, 0] == 0  # green line a-b
    assert out[85, 50, 0] == 255 and out[85, 50, 1] == 0  # red dot on d (no line there)
    assert (out[85, 56] == 0).all()  # the dot's radius is 3 pixels
    assert (out[70, 90] == 0).all()  # no b-c line: c is below the threshold
    assert (out[90, 90] == 0).all()  # no dot on c


# ---------------------------------------------------------------------- semantic / panoptic
def test_draw_sem_seg_colours_regions():
    img = grey_image(60, 80, value=0)
    sem = np.zeros((60, 80), dtype=np.int64)
    sem[30:] = 1
    sem[0:5, 0:5] = 255  # ignored label
    meta = {"stuff_classes": ["sky", "ground"], "stuff_colors": [(0, 0, 255), (0, 255, 0)]}
    out = Visualizer(img, meta).draw_sem_seg(sem, alpha=0.8).get_image()
    assert out[15, 70, 2] == 204 and out[15, 70, 1] == 0  # 0.8 * blue
    assert out[45, 70, 1] == 204 and out[45, 70, 2] == 0  # 0.8 * green
    assert (out[1, 1] == 0).all()


def test_draw_panoptic_seg_with_segments_info_and_raw():
    img = grey_image(60, 80, value=0)
    pan = torch.zeros(60, 80, dtype=torch.int32)
    pan[:, 40:] = 2
    pan[10:30, 5:25] = 3
    meta = {
        "stuff_classes": ["things", "ground"],
        "stuff_colors": [(0, 0, 0), (0, 255, 0)],
        "thing_classes": ["box"],
        "thing_colors": [(255, 0, 0)],
        "label_divisor": 1000,
        "thing_dataset_id_to_contiguous_id": {1: 0},
    }
    info = [
        {"id": 2, "category_id": 1, "isthing": False},
        {"id": 3, "category_id": 0, "isthing": True},
    ]
    out = Visualizer(img, meta).draw_panoptic_seg(pan, info).get_image()
    assert out[50, 70, 1] == 178 and out[50, 70, 0] == 0  # 0.7 * green (stuff)
    assert out[20, 15, 0] > 100  # the thing: reddish
    assert (out[50, 10] == 0).all()  # segment 0 has no info: not drawn
    # raw map: category * 1000 + instance, -1 void
    raw = torch.full((60, 80), -1, dtype=torch.int32)
    raw[:, 40:] = 1000  # ground
    out2 = Visualizer(img, meta).draw_panoptic_seg(raw, None).get_image()
    assert out2[50, 70, 1] == 178 and (out2[50, 10] == 0).all()


def test_draw_dataset_dict_polygons_and_labels():
    img = grey_image(100, 120)
    dic = {
        "annotations": [
            {
                "bbox": [30, 20, 40, 30],  # XYWH
                "bbox_mode": 1,
                "category_id": 0,
                "segmentation": [[30, 20, 70, 20, 70, 50, 30, 50]],
            }
        ]
    }
    out = Visualizer(img, {"thing_classes": ["thing"]}).draw_dataset_dict(dic).get_image()
    assert (out[35, 50] != 128).any()
    assert (out[80:, :20] == 128).all()


# ---------------------------------------------------------------------- text and bad input
def test_draw_text_dark_box_and_bright_text():
    img = grey_image(100, 200, value=200)
    out = Visualizer(img).draw_text("hello", (20, 30), horizontal_alignment="left").get_image()
    region = out[30:45, 20:60].astype(int)
    assert (region == 40).any()  # 0.2 * 200: the black box at alpha 0.8
    assert region.max() > 150  # the text, brightened green
    assert (out[60:] == 200).all()


def test_text_labels():
    assert create_text_labels([0, 1], [0.5, 0.987], ["a", "b"]) == ["a 50%", "b 99%"]
    assert create_text_labels([2], None, None) == ["2"]
    assert create_text_labels(None, [0.25], None) == ["25%"]
    assert create_text_labels([0], None, ["a"], [1]) == ["a|crowd"]
    assert create_text_labels(None, None, None) is None


def test_bad_inputs():
    img = grey_image()
    v = Visualizer(img)
    with pytest.raises(ValueError, match="masks"):
        v.overlay_instances(boxes=np.zeros((2, 4)), masks=[square_mask(100, 120, 0, 5, 0, 5)])
    with pytest.raises(ValueError, match="labels"):
        v.overlay_instances(boxes=np.zeros((1, 4)), labels=["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        v.draw_binary_mask(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="colour"):
        v.draw_box((0, 0, 5, 5), edge_color="notacolour")
    with pytest.raises(ValueError, match="img_rgb"):
        Visualizer(np.zeros((5, 5, 4)))
    with pytest.raises(KeyError, match="stuff_classes"):
        v.draw_sem_seg(np.zeros((100, 120), dtype=np.int64))


# ---------------------------------------------------------------------- GenericMask / VisImage
def test_generic_mask_conversions():
    poly = [[10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 10.0, 20.0]]
    gm = GenericMask(poly, 40, 50)
    assert gm.area() == 200  # 20 x 10 pixels
    assert np.allclose(gm.bbox(), [10, 10, 30, 20])
    assert not gm.has_holes
    m = square_mask(40, 50, 5, 15, 5, 25)
    polys = GenericMask(m, 40, 50).polygons
    # the contour runs through the boundary pixels' centres (5.5 .. 24.5, 5.5 .. 14.5)
    assert len(polys) == 1
    assert np.allclose(polys[0].reshape(-1, 2).min(0), [5.5, 5.5])
    assert np.allclose(polys[0].reshape(-1, 2).max(0), [24.5, 14.5])
    back = GenericMask(polys, 40, 50).mask
    assert (back <= m).all() and back.sum() >= 0.8 * m.sum()
    import pycocotools.mask as mask_util

    rle = mask_util.encode(np.asfortranarray(m))
    assert (GenericMask(rle, 40, 50).mask == m).all()
    empty = GenericMask(np.zeros((40, 50), dtype=np.uint8), 40, 50)
    assert empty.polygons == [] and empty.area() == 0
    with pytest.raises(ValueError, match="shape"):
        GenericMask(np.zeros((3, 3)), 40, 50)


def test_visimage_save_and_reset(tmp_path):
    vis = VisImage(grey_image(10, 20), scale=0.5)
    assert vis.get_image().shape == (5, 10, 3)
    vis.reset_image(np.zeros((10, 20, 3)))
    assert (vis.get_image() == 0).all()
    vis.save(str(tmp_path / "x.png"))
    from PIL import Image

    assert np.asarray(Image.open(tmp_path / "x.png")).shape == (5, 10, 3)


# ---------------------------------------------------------------------- colormap
def test_colormap():
    rgb = colormap(rgb=True, maximum=1)
    assert rgb.shape == (74, 3) and len(np.unique(rgb, axis=0)) == 74
    assert np.allclose(rgb[0], [0.0, 0.447, 0.741])
    assert np.allclose(colormap(rgb=False)[0], [0.741 * 255, 0.447 * 255, 0.0])
    c = random_color(rgb=True, maximum=1)
    assert any(np.allclose(c, row) for row in rgb)
    cs = random_colors(74, rgb=True, maximum=1)
    assert len(np.unique(np.stack(cs), axis=0)) == 74
    with pytest.raises(ValueError):
        random_colors(75)
