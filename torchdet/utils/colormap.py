"""The colour palette used to draw instances (Detectron2's ``detectron2.utils.colormap``).

The palette has 74 well-separated RGB colours: a few hand-picked hues first (so that the first
instances of a picture get distinct, saturated colours), then a regular grid over the RGB cube,
then ramps of pure red, green and blue, then greys.
"""

from __future__ import annotations

import random

import numpy as np

__all__ = ["colormap", "random_color", "random_colors"]


def _build_palette() -> np.ndarray:
    """The (74, 3) float32 palette, RGB in [0, 1]."""
    first = [
        (0.000, 0.447, 0.741),
        (0.850, 0.325, 0.098),
        (0.929, 0.694, 0.125),
        (0.494, 0.184, 0.556),
        (0.466, 0.674, 0.188),
        (0.301, 0.745, 0.933),
        (0.635, 0.078, 0.184),
        (0.300, 0.300, 0.300),
        (0.600, 0.600, 0.600),
        (1.000, 0.000, 0.000),
        (1.000, 0.500, 0.000),
        (0.749, 0.749, 0.000),
        (0.000, 1.000, 0.000),
        (0.000, 0.000, 1.000),
        (0.667, 0.000, 1.000),
    ]
    levels = (0.0, 1 / 3, 2 / 3, 1.0)
    grid = []
    # A grid over the cube (blue in 3 steps, red and green in 4), minus black, greys and the
    # colours already listed above.
    for b in (0.0, 0.5, 1.0):
        for r in levels:
            for g in levels:
                c = (round(r, 3), round(g, 3), b)
                if (r == 0 and g == 0) or c in first or (r == g == b):
                    continue
                grid.append(c)
    ramps = []
    for channel in range(3):
        for v in (1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6):
            c = [0.0, 0.0, 0.0]
            c[channel] = round(v, 3)
            ramps.append(tuple(c))
    greys = [(v, v, v) for v in (0.0, 0.143, 0.857, 1.0, 0.429, 0.714, 0.5)]
    unique: dict[tuple[float, float, float], None] = {}
    for c in first + grid + ramps + greys:
        unique.setdefault(tuple(c), None)  # keeps the first occurrence's position
    palette = np.array(list(unique), dtype=np.float32)
    return palette[:74]


_COLORS = _build_palette()


def colormap(rgb: bool = False, maximum: int | float = 255) -> np.ndarray:
    """The whole palette.

    Args:
        rgb: RGB order if True, else BGR (OpenCV's order).
        maximum: the value of a full channel (255 for uint8 drawing, 1 for float colours).

    Returns:
        ndarray[74, 3] float32.
    """
    c = _COLORS * maximum
    return c if rgb else c[:, ::-1].copy()


def random_color(rgb: bool = False, maximum: int | float = 255) -> np.ndarray:
    """One colour of the palette drawn at random (Python's ``random`` module).

    Returns:
        ndarray[3] float32, in RGB order if ``rgb`` else BGR, scaled to ``maximum``.
    """
    c = _COLORS[random.randint(0, len(_COLORS) - 1)] * maximum
    return c if rgb else c[::-1].copy()


def random_colors(n: int, rgb: bool = False, maximum: int | float = 255) -> list[np.ndarray]:
    """``n`` distinct colours of the palette in random order.

    Raises:
        ValueError: when ``n`` exceeds the palette's size (74) or is negative.
    """
    if not 0 <= n <= len(_COLORS):
        raise ValueError(f"random_colors: n must be in [0, {len(_COLORS)}], got {n}")
    indices = random.sample(range(len(_COLORS)), n)
    out = []
    for i in indices:
        c = _COLORS[i] * maximum
        out.append(c if rgb else c[::-1].copy())
    return out
