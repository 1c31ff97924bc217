"""Augmentations: Detectron2's resize rule, crops, flips, AugInput plumbing."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from torchdet.data import transforms as T

# (h, w, short, max) -> (new_h, new_w), each computed by hand from Detectron2's rule:
# scale = short / min(h, w); cap the long side at max; round each side with int(x + 0.5).
RESIZE_TABLE = [
    ((480, 640, 800, 1333), (800, 1067)),  # 640 * 800/480 = 1066.67
    ((640, 480, 800, 1333), (1067, 800)),
    ((300, 1000, 800, 1333), (400, 1333)),  # 2666.7 > 1333: scale 0.49988 -> 399.9
    ((305, 289, 800, 1333), (844, 800)),  # shapes val 000001.jpg: 305 * 800/289 = 844.29
    ((224, 256, 800, 1333), (800, 914)),  # 256 * 800/224 = 914.29
    ((500, 500, 800, 1000), (800, 800)),
    ((333, 500, 600, 1000), (600, 901)),  # 500 * 600/333 = 900.90
    ((2, 5, 1, 100), (1, 3)),  # 2.5 rounds up (int(x + 0.5)), unlike round()
    ((100, 1000, 50, 333), (33, 333)),  # 500 > 333: newh = 50 * 0.666 = 33.3
    ((427, 640, 800, 1333), (800, 1199)),  # 640 * 800/427 = 1199.06
]


@pytest.mark.parametrize(("args", "expected"), RESIZE_TABLE)
def test_resize_shortest_edge_output_shape(args, expected):
    assert T.ResizeShortestEdge.get_output_shape(*args) == expected


@pytest.mark.parametrize(("args", "expected"), RESIZE_TABLE[:7])
def test_resize_shortest_edge_transform(args, expected):
    h, w, short, max_size = args
    aug = T.ResizeShortestEdge(short, max_size, "choice")
    tfm = aug.get_transform(np.zeros((h, w, 3), dtype=np.uint8))
    assert isinstance(tfm, T.ResizeTransform)
    assert (tfm.new_h, tfm.new_w) == expected


def test_resize_shortest_edge_sampling():
    img = np.zeros((100, 200, 3), dtype=np.uint8)
    rng_aug = T.ResizeShortestEdge((10, 12), sys.maxsize, "range")
    sizes = {rng_aug.get_transform(img).new_h for _ in range(200)}
    assert sizes == {10, 11, 12}  # inclusive integer range
    choice = T.ResizeShortestEdge((10, 30), sys.maxsize, "choice")
    assert {choice.get_transform(img).new_h for _ in range(100)} == {10, 30}
    assert isinstance(T.ResizeShortestEdge(0).get_transform(img), T.NoOpTransform)
    with pytest.raises(ValueError, match="two values"):
        T.ResizeShortestEdge((1, 2, 3), 10, "range")
    with pytest.raises(ValueError, match="sample_style"):
        T.ResizeShortestEdge(10, 10, "uniform")


def test_augmentation_repr():
    assert repr(T.ResizeShortestEdge(800, 1333)) == (
        "ResizeShortestEdge(short_edge_length=(800, 800), max_size=1333)"
    )
    assert repr(T.RandomFlip(0.3)) == "RandomFlip(prob=0.3)"
    assert repr(T.RandomCrop("absolute", (5, 6))) == (
        "RandomCrop(crop_type='absolute', crop_size=(5, 6))"
    )


@pytest.mark.parametrize(
    ("crop_type", "crop_size", "h_range", "w_range"),
    [
        ("relative", (0.5, 0.25), (50, 50), (50, 50)),
        ("absolute", (300, 50), (100, 100), (50, 50)),
        ("relative_range", (0.5, 0.5), (50, 100), (100, 200)),
        ("absolute_range", (30, 60), (30, 60), (30, 60)),
    ],
)
def test_random_crop_types(crop_type, crop_size, h_range, w_range):
    img = np.zeros((100, 200, 3), dtype=np.uint8)
    aug = T.RandomCrop(crop_type, crop_size)
    for _ in range(30):
        tfm = aug.get_transform(img)
        assert isinstance(tfm, T.CropTransform)
        assert h_range[0] <= tfm.h <= h_range[1] and w_range[0] <= tfm.w <= w_range[1]
        assert tfm.x0 >= 0 and tfm.x0 + tfm.w <= 200 and tfm.y0 >= 0 and tfm.y0 + tfm.h <= 100
        assert tfm.apply_image(img).shape == (tfm.h, tfm.w, 3)
    with pytest.raises(ValueError, match="crop_type"):
        T.RandomCrop("middle", (1, 1))


def test_random_crop_category_area_constraint():
    sem = np.zeros((40, 40), dtype=np.uint8)
    sem[:, 20:] = 1
    aug = T.RandomCrop_CategoryAreaConstraint("absolute", (20, 20), 0.9)
    np.random.seed(0)
    for _ in range(10):
        tfm = aug.get_transform(np.zeros((40, 40, 3), np.uint8), sem)
        window = tfm.apply_segmentation(sem)
        assert window.shape == (20, 20)
        assert len(np.unique(window)) == 2  # a crop holding one category only is rejected


def test_random_flip_and_apply():
    img = np.zeros((10, 20, 3), dtype=np.uint8)
    assert isinstance(T.RandomFlip(1.0).get_transform(img), T.HFlipTransform)
    vf = T.RandomFlip(1.0, horizontal=False, vertical=True).get_transform(img)
    assert isinstance(vf, T.VFlipTransform) and vf.height == 10
    assert isinstance(T.RandomFlip(0.0).get_transform(img), T.NoOpTransform)
    with pytest.raises(ValueError):
        T.RandomFlip(horizontal=True, vertical=True)
    assert isinstance(T.RandomApply(T.HFlipTransform(20), 0.0).get_transform(img), T.NoOpTransform)
    assert isinstance(T.RandomApply(T.HFlipTransform(20), 1.0).get_transform(img), T.HFlipTransform)


def test_aug_input_applies_to_all_fields():
    img = np.zeros((40, 60, 3), dtype=np.uint8)
    sem = np.zeros((40, 60), dtype=np.uint8)
    sem[:, :30] = 3
    aug_input = T.AugInput(img, boxes=np.array([[10.0, 10.0, 20.0, 30.0]]), sem_seg=sem)
    tfms = aug_input.apply_augmentations([T.Resize((80, 120)), T.RandomFlip(1.0)])
    assert isinstance(tfms, T.TransformList) and len(tfms) == 2
    assert aug_input.image.shape == (80, 120, 3)
    np.testing.assert_allclose(aug_input.boxes, [[80.0, 20.0, 100.0, 60.0]])
    assert aug_input.sem_seg.shape == (80, 120)
    assert (aug_input.sem_seg[:, 60:] == 3).all() and (aug_input.sem_seg[:, :60] == 0).all()
    out, tfms2 = T.apply_augmentations([T.Resize(5)], img)
    assert out.shape == (5, 5, 3) and len(tfms2) == 1
    assert T.StandardAugInput is T.AugInput


def test_aug_input_validates():
    with pytest.raises(TypeError, match="numpy"):
        T.AugInput([[0]])
    with pytest.raises(TypeError, match="uint8"):
        T.AugInput(np.zeros((2, 2), dtype=np.int32))
    with pytest.raises(AttributeError, match="boxes"):
        T.MinIoURandomCrop()(_OnlyImage(np.zeros((4, 4, 3), np.uint8)))


class _OnlyImage:
    def __init__(self, image):
        self.image = image


def test_resize_scale_and_random_resize():
    img = np.zeros((100, 200, 3), dtype=np.uint8)
    tfm = T.ResizeScale(0.5, 0.5, 400, 400).get_transform(img)
    # target 200x200 at scale 0.5; fit 100x200 into it: scale min(2, 1) = 1
    assert (tfm.new_h, tfm.new_w) == (100, 200)
    tfm = T.RandomResize([(30, 40)]).get_transform(img)
    assert (tfm.new_h, tfm.new_w) == (30, 40)


def test_fixed_size_crop_pads_small_and_crops_large():
    small = np.ones((50, 60, 3), dtype=np.uint8)
    out, _ = T.apply_augmentations([T.FixedSizeCrop((64, 64))], small)
    assert out.shape == (64, 64, 3)
    assert out[50:, :, 0].tolist() == [[128] * 64] * 14
    large = np.ones((100, 90, 3), dtype=np.uint8)
    out, _ = T.apply_augmentations([T.FixedSizeCrop((64, 64))], large)
    assert out.shape == (64, 64, 3) and (out == 1).all()


def test_color_augmentations():
    img = np.full((4, 4, 3), 100, dtype=np.uint8)
    out, _ = T.apply_augmentations([T.RandomBrightness(0.5, 0.5)], img)
    np.testing.assert_array_equal(out, 50)
    img2 = np.zeros((4, 4, 3), dtype=np.uint8)
    img2[:2] = 200
    out, _ = T.apply_augmentations([T.RandomContrast(0.0, 0.0)], img2)
    np.testing.assert_array_equal(out, 100)  # fully blended to the mean
    out, _ = T.apply_augmentations([T.RandomSaturation(0.0, 0.0)], img)
    np.testing.assert_array_equal(out, 100)  # gray stays gray
    out, _ = T.apply_augmentations([T.RandomLighting(0.0)], img.astype(np.float32))
    np.testing.assert_allclose(out, 100.0)


def test_rotation_extent_min_iou_crop():
    img = np.zeros((30, 40, 3), dtype=np.uint8)
    tfm = T.RandomRotation([90, 90]).get_transform(img)
    assert (tfm.bound_h, tfm.bound_w) == (40, 30)
    assert isinstance(T.RandomRotation([0, 0]).get_transform(img), T.NoOpTransform)
    ext = T.RandomExtent((2.0, 2.0), (0.0, 0.0)).get_transform(img)
    assert ext.output_size == (60, 80)
    np.random.seed(0)
    boxes = np.array([[5.0, 5.0, 25.0, 20.0]])
    for _ in range(10):
        tfm = T.MinIoURandomCrop().get_transform(img, boxes)
        if isinstance(tfm, T.CropTransform):
            cx, cy = 15.0, 12.5
            assert tfm.x0 < cx < tfm.x0 + tfm.w + 1 and tfm.y0 < cy < tfm.y0 + tfm.h + 1
    assert isinstance(T.MinIoURandomCrop().get_transform(img, None), T.NoOpTransform)
