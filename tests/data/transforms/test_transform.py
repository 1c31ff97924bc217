"""Deterministic transforms: geometry consistency between images and annotations, inverses."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from torchdet.data import transforms as T


def _rect_image(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """uint8 (h, w, 3) image, 255 inside the pixel rectangle box = (x0, y0, x1, y1)."""
    img = np.zeros((h, w, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = 255
    return img


def _pixel_extent(img: np.ndarray) -> np.ndarray:
    """XYXY extent (exclusive end) of pixels brighter than half intensity."""
    ys, xs = np.nonzero(img[..., 0] > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


@pytest.mark.parametrize("new_hw", [(120, 160), (45, 60), (90, 50)])
def test_resize_box_matches_drawn_rectangle(new_hw):
    box = (20, 10, 40, 30)
    img = _rect_image(60, 80, box)
    tfm = T.ResizeTransform(60, 80, *new_hw)
    out = tfm.apply_image(img)
    assert out.shape == (*new_hw, 3) and out.dtype == np.uint8
    tbox = tfm.apply_box(np.array([box], dtype=np.float64))[0]
    sx, sy = new_hw[1] / 80, new_hw[0] / 60
    np.testing.assert_allclose(tbox, [20 * sx, 10 * sy, 40 * sx, 30 * sy])
    # The resized rectangle's pixels lie within one pixel of the transformed box.
    np.testing.assert_allclose(_pixel_extent(out), tbox, atol=1.0)


def test_resize_2x_exact_pixel_extent():
    # Bilinear 2x upsampling: output pixel centres map to source x = (i + 0.5) / 2 - 0.5, so the
    # half-intensity boundary falls exactly on the transformed box.
    img = _rect_image(60, 80, (20, 10, 40, 30))
    out = T.ResizeTransform(60, 80, 120, 160).apply_image(img)
    np.testing.assert_array_equal(_pixel_extent(out), [40, 20, 80, 60])


def test_resize_uses_pil_bilinear_for_uint8():
    img = np.random.RandomState(0).randint(0, 256, (37, 53, 3)).astype(np.uint8)
    out = T.ResizeTransform(37, 53, 70, 101).apply_image(img)
    ref = np.asarray(Image.fromarray(img).resize((101, 70), Image.BILINEAR))
    np.testing.assert_array_equal(out, ref)


def test_resize_single_channel_and_float_images():
    img = np.random.RandomState(0).randint(0, 256, (10, 12, 1)).astype(np.uint8)
    out = T.ResizeTransform(10, 12, 20, 24).apply_image(img)
    assert out.shape == (20, 24, 1)
    flat = np.full((10, 12, 3), 0.25, dtype=np.float32)
    outf = T.ResizeTransform(10, 12, 5, 7).apply_image(flat)
    assert outf.shape == (5, 7, 3) and outf.dtype == np.float32
    np.testing.assert_allclose(outf, 0.25, atol=1e-6)
    # A float ramp along x stays a ramp (bilinear, align_corners=False): mean is preserved.
    ramp = np.tile(np.arange(12, dtype=np.float32), (10, 1))
    outr = T.ResizeTransform(10, 12, 10, 24).apply_image(ramp)
    assert outr.shape == (10, 24)
    assert abs(outr.mean() - ramp.mean()) < 1e-5


def test_resize_segmentation_is_nearest():
    seg = np.zeros((4, 4), dtype=np.uint8)
    seg[:, 2:] = 7
    out = T.ResizeTransform(4, 4, 8, 8).apply_segmentation(seg)
    assert set(np.unique(out).tolist()) == {0, 7}
    np.testing.assert_array_equal(out[:, :4], 0)
    np.testing.assert_array_equal(out[:, 4:], 7)


def test_resize_rejects_wrong_image_size():
    with pytest.raises(ValueError, match=r"\(h, w\) = \(10, 12\)"):
        T.ResizeTransform(10, 12, 5, 6).apply_image(np.zeros((11, 12, 3), np.uint8))


def test_resize_polygons_follow_coords():
    poly = np.array([[10.0, 5.0], [30.0, 5.0], [20.0, 25.0]])
    out = T.ResizeTransform(40, 40, 20, 80).apply_polygons([poly])
    np.testing.assert_allclose(out[0], [[20, 2.5], [60, 2.5], [40, 12.5]])


def test_hflip_vflip():
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    h = T.HFlipTransform(4)
    np.testing.assert_array_equal(h.apply_image(img), img[:, ::-1])
    np.testing.assert_allclose(h.apply_coords(np.array([[1.0, 2.0]])), [[3.0, 2.0]])
    np.testing.assert_allclose(h.apply_box(np.array([[0.0, 0.0, 1.0, 2.0]])), [[3, 0, 4, 2]])
    v = T.VFlipTransform(3)
    np.testing.assert_array_equal(v.apply_image(img), img[::-1])
    np.testing.assert_allclose(v.apply_coords(np.array([[1.0, 2.0]])), [[1.0, 1.0]])
    # rotated boxes: centre mirrored, angle negated
    np.testing.assert_allclose(
        h.apply_rotated_box(np.array([[1.0, 2.0, 3.0, 1.0, 30.0]])), [[3.0, 2.0, 3.0, 1.0, -30.0]]
    )


def test_crop_and_pad():
    img = np.arange(20, dtype=np.uint8).reshape(4, 5)
    crop = T.CropTransform(1, 2, 3, 2, orig_w=5, orig_h=4)
    np.testing.assert_array_equal(crop.apply_image(img), img[2:4, 1:4])
    np.testing.assert_allclose(crop.apply_coords(np.array([[1.0, 2.0]])), [[0.0, 0.0]])
    pad = crop.inverse()
    assert isinstance(pad, T.PadTransform)
    back = pad.apply_image(crop.apply_image(img))
    assert back.shape == img.shape
    np.testing.assert_array_equal(back[2:4, 1:4], img[2:4, 1:4])
    assert back[0].sum() == 0
    seg_pad = T.PadTransform(1, 0, 0, 2, seg_pad_value=255)
    assert seg_pad.apply_segmentation(np.zeros((2, 2), np.uint8)).tolist() == [
        [255, 0, 0],
        [255, 0, 0],
        [255, 255, 255],
        [255, 255, 255],
    ]


def test_crop_clips_polygons():
    square = np.array([[0.0, 0.0], [20.0, 0.0], [20.0, 20.0], [0.0, 20.0]])
    out = T.CropTransform(5, 5, 10, 10).apply_polygons([square])
    assert len(out) == 1
    np.testing.assert_allclose(out[0].min(axis=0), [0, 0])
    np.testing.assert_allclose(out[0].max(axis=0), [10, 10])
    # Triangle partly outside: area of the clipped part (hand computed).
    tri = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    clipped = T.CropTransform(0, 0, 5, 10).apply_polygons([tri])[0]
    x, y = clipped[:, 0], clipped[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    assert area == pytest.approx(50 - 12.5)  # full triangle minus the part x > 5
    # A polygon fully outside the window is dropped.
    assert T.CropTransform(50, 50, 5, 5).apply_polygons([tri]) == []


def test_rotation_90_moves_pixels_and_coords():
    img = np.zeros((30, 40), dtype=np.uint8)
    img[0, 0] = 255
    tfm = T.RotationTransform(30, 40, 90)
    out = tfm.apply_image(img)
    assert out.shape == (40, 30)
    # Counter-clockwise: the top-left pixel goes to the bottom-left.
    assert out[39, 0] == 255 and out.sum() == 255
    np.testing.assert_allclose(tfm.apply_coords(np.array([[0.0, 0.0]])), [[0.0, 40.0]], atol=1e-6)


@pytest.mark.parametrize(
    "tfm",
    [
        T.ResizeTransform(30, 40, 47, 13),
        T.HFlipTransform(40),
        T.VFlipTransform(30),
        T.CropTransform(3, 4, 20, 15, orig_w=40, orig_h=30),
        T.PadTransform(2, 3, 4, 5, orig_w=40, orig_h=30),
        T.RotationTransform(30, 40, 90.0),
        T.TransformList([T.ResizeTransform(30, 40, 60, 80), T.HFlipTransform(80)]),
    ],
    ids=lambda t: type(t).__name__,
)
def test_inverse_round_trip_coords(tfm):
    coords = np.random.RandomState(0).uniform(0, 30, (10, 2))
    back = tfm.inverse().apply_coords(tfm.apply_coords(coords))
    np.testing.assert_allclose(back, coords, atol=1e-6)


def test_rotation_inverse_within_half_pixel():
    # The inverse crops the re-expanded canvas at an integer offset ((bound - size) // 2, as in
    # Detectron2), so odd size differences leave up to half a pixel.
    tfm = T.RotationTransform(30, 40, 33.0)
    coords = np.random.RandomState(0).uniform(0, 30, (10, 2))
    back = tfm.inverse().apply_coords(tfm.apply_coords(coords))
    np.testing.assert_allclose(back, coords, atol=0.5 + 1e-6)


def test_inverse_round_trip_images():
    img = np.random.RandomState(0).randint(0, 256, (30, 40, 3)).astype(np.uint8)
    for tfm in (T.HFlipTransform(40), T.VFlipTransform(30)):
        np.testing.assert_array_equal(tfm.inverse().apply_image(tfm.apply_image(img)), img)
    inv = T.ResizeTransform(30, 40, 60, 80).inverse()
    assert (inv.h, inv.w, inv.new_h, inv.new_w) == (60, 80, 30, 40)
    with pytest.raises(NotImplementedError):
        T.CropTransform(0, 0, 5, 5).inverse()


def test_extent_blend_color_noop():
    ext = T.ExtentTransform(src_rect=(0, 0, 40, 30), output_size=(60, 80))
    np.testing.assert_allclose(ext.apply_coords(np.array([[10.0, 10.0]])), [[20.0, 20.0]])
    assert ext.apply_image(np.zeros((30, 40, 3), np.uint8)).shape == (60, 80, 3)
    img = np.full((2, 2, 3), 200, dtype=np.uint8)
    blend = T.BlendTransform(src_image=100, src_weight=0.5, dst_weight=1.0)
    np.testing.assert_array_equal(blend.apply_image(img), 250)  # 50 + 200
    blend = T.BlendTransform(src_image=100, src_weight=0.5, dst_weight=1.5)
    np.testing.assert_array_equal(blend.apply_image(img), 255)  # 50 + 300, clipped
    col = T.ColorTransform(lambda x: 255 - x)
    np.testing.assert_array_equal(col.apply_image(img), 55)
    np.testing.assert_allclose(col.apply_coords(np.array([[1.0, 2.0]])), [[1.0, 2.0]])
    noop = T.NoOpTransform()
    assert noop.apply_rotated_box(img) is img and noop.inverse() is noop


def test_transform_list_and_register_type():
    class _Shift(T.Transform):
        def __init__(self, dx: float):
            self.dx = dx

        def apply_image(self, img):
            return img

        def apply_coords(self, coords):
            return coords + np.array([self.dx, 0.0])

    _Shift.register_type("offset", lambda t, x: x + t.dx)
    tl = T.TransformList([_Shift(1.0), T.TransformList([_Shift(2.0), _Shift(3.0)])])
    assert len(tl) == 3  # nested lists are flattened
    assert tl.apply_offset(0.0) == 6.0
    assert isinstance(tl[1], _Shift) and tl[1].dx == 2.0
    assert len(tl + _Shift(1.0)) == 4 and len(_Shift(1.0) + tl) == 4
    np.testing.assert_allclose(tl.apply_coords(np.zeros((1, 2))), [[6.0, 0.0]])
    with pytest.raises(TypeError, match="Transform objects"):
        T.TransformList([object()])
    with pytest.raises(TypeError, match="transform, data"):
        _Shift.register_type("bad", lambda x: x)


def test_repr_lists_arguments():
    assert (
        repr(T.ResizeTransform(1, 2, 3, 4))
        == "ResizeTransform(h=1, w=2, new_h=3, new_w=4, interp=2)"
    )
    assert repr(T.CropTransform(1, 2, 3, 4)) == "CropTransform(x0=1, y0=2, w=3, h=4)"


def test_empty_coords_and_boxes():
    tfm = T.TransformList([T.ResizeTransform(10, 10, 20, 20), T.HFlipTransform(20)])
    assert tfm.apply_box(np.zeros((0, 4))).shape == (0, 4)
    assert tfm.apply_coords(np.zeros((0, 2))).shape == (0, 2)
    assert T.RotationTransform(10, 10, 45).apply_coords(np.zeros((0, 2))).shape == (0, 2)


def test_resize_channel_reversed_view_matches_copy():
    rgb = np.random.RandomState(1).randint(0, 256, (21, 34, 3)).astype(np.uint8)
    bgr_view = rgb[:, :, ::-1]
    tfm = T.ResizeTransform(21, 34, 50, 17)
    np.testing.assert_array_equal(
        tfm.apply_image(bgr_view), tfm.apply_image(np.ascontiguousarray(bgr_view))
    )


def _rotated_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 4, 2) corners of (cx, cy, w, h, angle) boxes, angle counter-clockwise (y down)."""
    cx, cy, w, h, a = boxes.T
    c, s = np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))
    dx = np.stack([-w, w, w, -w], 1) / 2
    dy = np.stack([-h, -h, h, h], 1) / 2
    x = cx[:, None] + dx * c[:, None] + dy * s[:, None]
    y = cy[:, None] - dx * s[:, None] + dy * c[:, None]
    return np.stack([x, y], axis=2)


@pytest.mark.parametrize(
    "tfm",
    [
        T.HFlipTransform(40),
        T.VFlipTransform(30),
        T.ResizeTransform(30, 40, 60, 80),
        T.CropTransform(3, 4, 20, 15),
        T.PadTransform(2, 3, 4, 5),
        T.RotationTransform(30, 40, 33.0),
        T.NoOpTransform(),
    ],
    ids=lambda t: type(t).__name__,
)
def test_rotated_box_corners_follow_coords(tfm):
    boxes = np.array([[12.0, 10.0, 8.0, 4.0, 0.0], [20.0, 15.0, 10.0, 6.0, 30.0]])
    out = tfm.apply_rotated_box(boxes)
    got = _rotated_corners(np.asarray(out, dtype=np.float64))
    want = tfm.apply_coords(_rotated_corners(boxes).reshape(-1, 2)).reshape(-1, 4, 2)
    for g, w in zip(got, want):  # same corner sets, in any order
        dist = np.linalg.norm(g[:, None, :] - w[None, :, :], axis=2)
        assert dist.min(axis=1).max() < 1e-6


@pytest.mark.parametrize(
    "tfm",
    [
        T.ResizeTransform(40, 50, 80, 75),
        T.HFlipTransform(50),
        T.CropTransform(4, 6, 30, 30),
        T.RotationTransform(40, 50, 90.0),
    ],
    ids=lambda t: type(t).__name__,
)
def test_keypoint_follows_drawn_blob(tfm):
    # A 4x4 blob covering pixels x 10..13, y 20..23: its centre is the point (12, 22) in
    # continuous coordinates (pixel i spans [i, i + 1)).
    img = np.zeros((40, 50, 3), dtype=np.uint8)
    img[20:24, 10:14] = 255
    out = tfm.apply_image(img)[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    centroid = np.array([(out * (xs + 0.5)).sum(), (out * (ys + 0.5)).sum()]) / out.sum()
    kp = tfm.apply_coords(np.array([[12.0, 22.0]]))[0]
    np.testing.assert_allclose(centroid, kp, atol=0.1)


def test_resize_integer_segmentation_matches_torch_nearest():
    import torch
    import torch.nn.functional as F

    seg = np.random.RandomState(0).randint(0, 1000, (7, 9)).astype(np.int32)
    for new_hw in [(14, 18), (5, 4), (7, 13)]:
        out = T.ResizeTransform(7, 9, *new_hw).apply_segmentation(seg)
        ref = F.interpolate(torch.from_numpy(seg.astype(np.float64))[None, None], new_hw)[0, 0]
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, ref.numpy().astype(np.int32))


def test_scale_and_grid_sample_transforms():
    img = np.random.RandomState(0).randint(0, 256, (6, 8, 3)).astype(np.uint8)
    up = T.ScaleTransform(6, 8, 12, 16, interp="nearest").apply_image(img)
    assert up.dtype == np.uint8 and up.shape == (12, 16, 3)
    np.testing.assert_array_equal(up[::2, ::2], img)  # 2x nearest repeats each pixel
    flat = np.full((6, 8), 0.5, dtype=np.float32)
    assert np.allclose(T.ScaleTransform(6, 8, 3, 5).apply_image(flat), 0.5)
    sc = T.ScaleTransform(6, 8, 12, 4)
    np.testing.assert_allclose(sc.apply_coords(np.array([[2.0, 3.0]])), [[1.0, 6.0]])
    assert sc.inverse().new_h == 6
    # Identity grid (pixel centres in [-1, 1]) reproduces the image.
    ys = (np.arange(6) + 0.5) / 6 * 2 - 1
    xs = (np.arange(8) + 0.5) / 8 * 2 - 1
    grid = np.stack(np.meshgrid(xs, ys), axis=-1)[None]  # (1, 6, 8, 2) as (x, y)
    out = T.GridSampleTransform(grid, "bilinear").apply_image(img)
    np.testing.assert_array_equal(out, img)
    with pytest.raises(NotImplementedError):
        T.GridSampleTransform(grid, "nearest").apply_coords(np.zeros((1, 2)))
