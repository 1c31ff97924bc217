"""ColorAugSSDTransform: geometry untouched, hand-checked brightness branch."""

from __future__ import annotations

import numpy as np
import pytest

from torchdet.projects.point_rend import ColorAugSSDTransform
from torchdet.projects.point_rend import color_augmentation as ca


def test_no_distortion_is_identity(monkeypatch):
    monkeypatch.setattr(ca.random, "randrange", lambda n: 0)
    img = np.random.RandomState(0).randint(0, 256, (5, 6, 3)).astype(np.uint8)
    out = ColorAugSSDTransform("BGR").apply_image(img)
    np.testing.assert_array_equal(out, img)


def test_brightness_only(monkeypatch):
    # randrange: brightness on, then order choice, saturation, hue, contrast all off.
    draws = iter([1, 0, 0, 0, 0])
    monkeypatch.setattr(ca.random, "randrange", lambda n: next(draws))
    monkeypatch.setattr(ca.random, "uniform", lambda a, b: 10.0)
    img = np.array([[[0, 100, 250]]], dtype=np.uint8)
    out = ColorAugSSDTransform("RGB").apply_image(img)
    np.testing.assert_array_equal(out, np.array([[[10, 110, 255]]], dtype=np.uint8))


def test_geometry_and_dtype():
    t = ColorAugSSDTransform("BGR")
    coords = np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(t.apply_coords(coords), coords)
    seg = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(t.apply_segmentation(seg), seg)
    img = np.random.RandomState(1).randint(0, 256, (4, 4, 3)).astype(np.float32)
    out = t.apply_image(img)
    assert out.dtype == np.float32 and out.shape == (4, 4, 3)
    assert (out >= 0).all() and (out <= 255).all()
    with pytest.raises(ValueError, match="img_format"):
        ColorAugSSDTransform("YUV")
    with pytest.raises(ValueError, match="3"):
        t.apply_image(np.zeros((4, 4), dtype=np.uint8))
