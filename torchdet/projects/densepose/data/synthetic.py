"""A synthetic DensePose-style dataset for tests: each image shows a few axis-aligned
"people" (rectangles); a person's 2 x 2 quadrants are surface patches 1..4 with U, V the
position inside the quadrant, and its coarse part masks are the quadrants (parts 1..4)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util

__all__ = ["make_synthetic_densepose_dataset", "synthetic_iuv"]


def synthetic_iuv(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground-truth patch I (1..4), U and V of box-relative points ``x``, ``y`` in [0, 256)."""
    qx, qy = (x >= 128).astype(np.int64), (y >= 128).astype(np.int64)
    i = 1 + qx + 2 * qy
    u = (x - 128 * qx) / 128.0
    v = (y - 128 * qy) / 128.0
    return i, u, v


def make_synthetic_densepose_dataset(
    root: str | Path, num_images: int = 4, seed: int = 0, points_per_person: int = 40
) -> Path:
    """Write ``root/images/*.png`` and ``root/densepose.json``; return the json path."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    yy, xx = np.mgrid[0:256, 0:256]
    quadrant = 1 + (xx >= 128) + 2 * (yy >= 128)
    dp_masks = [
        mask_util.encode(np.asfortranarray((quadrant == k + 1).astype(np.uint8))) for k in range(4)
    ]
    for m in dp_masks:
        m["counts"] = m["counts"].decode()
    dp_masks += [[] for _ in range(10)]  # 14 coarse parts, the last 10 empty
    for image_id in range(1, num_images + 1):
        h, w = 160, 192
        img = np.full((h, w, 3), 40, np.uint8)
        for _ in range(int(rng.integers(1, 3))):
            bw, bh = int(rng.integers(40, 90)), int(rng.integers(50, 110))
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            colors = [(200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60)]
            for k, (qx, qy) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
                cx0, cy0 = x0 + qx * bw // 2, y0 + qy * bh // 2
                cv2.rectangle(img, (cx0, cy0), (cx0 + bw // 2, cy0 + bh // 2), colors[k], -1)
            px = rng.uniform(0, 255.99, points_per_person)
            py = rng.uniform(0, 255.99, points_per_person)
            i, u, v = synthetic_iuv(px, py)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "bbox": [x0, y0, bw, bh],
                    "area": bw * bh,
                    "dp_x": px.tolist(),
                    "dp_y": py.tolist(),
                    "dp_I": i.astype(float).tolist(),
                    "dp_U": u.tolist(),
                    "dp_V": v.tolist(),
                    "dp_masks": dp_masks,
                }
            )
        name = f"{image_id:06d}.png"
        cv2.imwrite(str(root / "images" / name), img)
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }
    path = root / "densepose.json"
    path.write_text(json.dumps(data))
    return path
