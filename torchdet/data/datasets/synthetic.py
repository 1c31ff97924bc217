"""The "shapes" synthetic dataset: circles, squares and triangles on a sky / ground background.

Small enough to train a detector on a CPU in minutes, rich enough to exercise every task: boxes,
polygon masks, keypoints (triangle corners), semantic, "separated" and standard panoptic
segmentation. The layout and conventions are those of the shared ``data/shapes/{train,val}``
splits the reference models were trained on:

- ``images/NNNNNN.jpg``: 224-320 x 256-384 (height x width) RGB JPEGs, grey Gaussian noise;
- ``instances.json``: COCO instances, categories circle=1, square=2, triangle=3, one polygon per
  object (32 points for circles), ``area`` = the object's pixel count;
- ``keypoints.json``: the triangles only, keypoints apex / base_left / base_right (visibility 2);
- ``panoptic.json`` + ``panoptic/NNNNNN.png``: COCO panoptic (RGB id encoding
  ``id = R + 256 G + 256^2 B``), thing segment ``id = category * 1000 + index in image`` (from 1),
  stuff segments sky=4 (id 4000) and ground=5 (id 5000);
- ``sem_seg/NNNNNN.png``: labels 0-2 things, 3 sky, 4 ground;
- ``panoptic_stuff/NNNNNN.png``: Panoptic-FPN "separated" labels 0 things, 1 sky, 2 ground.

Objects never overlap (rejection sampling on their circumscribed circles) and lie fully inside
the image. Every mask is the OpenCV rasterisation (1/16 pixel precision) of the polygon written
to the json, so masks, areas and polygons agree exactly. Everything is a function of
``(seed, split)``: the same arguments give byte-identical files.

Usage::

    python -m torchdet.data.datasets.synthetic --out datasets/shapes  # train (400) + val (60)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np

from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets.coco import load_sem_seg, register_coco_instances
from torchdet.data.datasets.coco_panoptic import (
    register_coco_panoptic,
    register_coco_panoptic_separated,
)

__all__ = [
    "SHAPES_CATEGORIES",
    "SHAPES_THING_CLASSES",
    "SHAPES_STUFF_CLASSES",
    "SHAPES_KEYPOINT_NAMES",
    "SHAPES_KEYPOINT_FLIP_MAP",
    "SHAPES_KEYPOINT_CONNECTION_RULES",
    "SHAPES_KEYPOINT_OKS_SIGMAS",
    "generate_shapes_dataset",
    "register_shapes",
]

logger = logging.getLogger(__name__)

#: Panoptic categories; instances.json carries the first three.
SHAPES_CATEGORIES = [
    {"id": 1, "name": "circle", "supercategory": "shape", "isthing": 1},
    {"id": 2, "name": "square", "supercategory": "shape", "isthing": 1},
    {"id": 3, "name": "triangle", "supercategory": "shape", "isthing": 1},
    {"id": 4, "name": "sky", "supercategory": "stuff", "isthing": 0},
    {"id": 5, "name": "ground", "supercategory": "stuff", "isthing": 0},
]
SHAPES_THING_CLASSES = ["circle", "square", "triangle"]
#: Class names of the ``sem_seg/`` labels 0..4.
SHAPES_STUFF_CLASSES = ["circle", "square", "triangle", "sky", "ground"]
SHAPES_KEYPOINT_NAMES = ("apex", "base_left", "base_right")
SHAPES_KEYPOINT_FLIP_MAP = (("base_left", "base_right"),)
SHAPES_KEYPOINT_CONNECTION_RULES = [
    ("apex", "base_left", (255, 128, 0)),
    ("base_left", "base_right", (51, 153, 255)),
    ("base_right", "apex", (153, 255, 153)),
]
#: ``TEST.KEYPOINT_OKS_SIGMAS`` the reference evaluated keypoints with.
SHAPES_KEYPOINT_OKS_SIGMAS = [0.05, 0.05, 0.05]

_CIRCLE_POINTS = 32
_SKY, _GROUND = 4, 5
# Colour ranges (RGB, inclusive low / exclusive high) and geometry measured on the shared splits.
# The ranges are of the region means, which include the average of the vertical ramp below
# (about +7 over the sky, +22 over the ground); the base colours are drawn without it.
_SKY_RGB = ((38, 111), (108, 191), (148, 230))
_GROUND_RGB = ((38, 112), (108, 181), (28, 92))
_SIZE_RANGE = (24.0, 96.0)  # circle diameter; squares and triangles scale with it
_MIN_COLOR_CONTRAST = 25.0  # mean absolute RGB difference between an object and both stuffs
_JPEG_QUALITY = 92
_NOISE_STD = 8.0  # per channel, before JPEG
_OBJECT_TEXTURE_STD = 8.0  # shared by the channels, on objects only
_RAMP = 30.0  # the background brightens by this much from the top row to the bottom row
_PLACEMENT_ATTEMPTS = 20


def _shape_polygon(rng: np.random.Generator, category: int, size: float) -> np.ndarray:
    """Vertices (K, 2) of a shape centred on the origin; triangles are apex, base_l, base_r."""
    if category == 1:  # circle of diameter `size`
        t = np.arange(_CIRCLE_POINTS) * (2 * np.pi / _CIRCLE_POINTS)
        return 0.5 * size * np.stack([np.cos(t), np.sin(t)], axis=1)
    if category == 2:  # square inscribed in that circle, random rotation
        t = rng.uniform(0, np.pi / 2) + np.arange(4) * (np.pi / 2)
        return 0.5 * size * np.stack([np.cos(t), np.sin(t)], axis=1)
    # isosceles triangle, apex up (y grows downwards), base tilted by at most 25 degrees
    height = 0.9 * size
    base = height * rng.uniform(1 / 1.5, 1 / 0.9)  # height / base in [0.9, 1.5]
    pts = np.array([[0.0, -height / 2], [-base / 2, height / 2], [base / 2, height / 2]])
    a = np.deg2rad(rng.uniform(-25, 25))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return pts @ rot.T


def _random_color(rng: np.random.Generator, backgrounds: Sequence[np.ndarray]) -> np.ndarray:
    for _ in range(50):
        color = rng.integers(0, 256, size=3).astype(np.float32)
        if min(np.abs(color - b).mean() for b in backgrounds) >= _MIN_COLOR_CONTRAST:
            break
    return color


def _render_image(
    rng: np.random.Generator,
    image_id: int,
    image_size_range: tuple[tuple[int, int], tuple[int, int]],
    max_objects: int,
) -> dict[str, Any]:
    """Draw one image and its annotations (all in memory)."""
    (h_lo, h_hi), (w_lo, w_hi) = image_size_range
    h = int(rng.integers(h_lo, h_hi + 1))
    w = int(rng.integers(w_lo, w_hi + 1))
    sky_rgb = np.array([rng.integers(lo, hi) for lo, hi in _SKY_RGB], dtype=np.float32)
    ground_rgb = np.array([rng.integers(lo, hi) for lo, hi in _GROUND_RGB], dtype=np.float32)

    # wavy horizon: ground below y(x) = mid + amp * sin(2 pi x / period + phase)
    mid = h * rng.uniform(0.35, 0.6)
    amp = h * rng.uniform(0.05, 0.107)
    period = w * rng.uniform(1.05, 3.35)
    phase = rng.uniform(0, 2 * np.pi)
    horizon = mid + amp * np.sin(2 * np.pi * (np.arange(w) + 0.5) / period + phase)
    ground = (np.arange(h)[:, None] + 0.5) >= horizon[None, :]  # (H, W) bool
    pan = np.where(ground, _GROUND * 1000, _SKY * 1000).astype(np.int32)  # (H, W) segment ids
    image = np.where(ground[..., None], ground_rgb, sky_rgb)  # (H, W, 3) float RGB
    # lighting: a vertical ramp on the background (objects are drawn flat on top)
    image += (_RAMP / h) * np.arange(h, dtype=np.float32)[:, None, None]

    objects: list[dict[str, Any]] = []
    placed: list[tuple[float, float, float]] = []  # centre x, y, circumscribed radius
    for _ in range(int(rng.integers(1, max_objects + 1))):
        category = int(rng.integers(1, 4))
        # each attempt draws a new size and position, which favours small objects in crowded
        # images (as in the reference splits)
        for _attempt in range(_PLACEMENT_ATTEMPTS):
            local = _shape_polygon(rng, category, rng.uniform(*_SIZE_RANGE))
            radius = float(np.linalg.norm(local, axis=1).max())
            if 2 * radius + 4 > min(h, w):
                continue
            cx = rng.uniform(radius + 1, w - radius - 1)
            cy = rng.uniform(radius + 1, h - radius - 1)
            if all(np.hypot(cx - px, cy - py) >= radius + pr + 2 for px, py, pr in placed):
                break
        else:
            continue  # no room left for this object
        placed.append((cx, cy, radius))
        # the json keeps 2 decimals; rasterise exactly the written polygon
        poly = np.round(local + np.array([cx, cy]), 2)
        seg_id = category * 1000 + len(objects) + 1
        # one rasterisation rule (OpenCV, 4 fractional bits) for the id map and the pixels
        fixed_point = [np.round(poly * 16).astype(np.int32)]
        color = _random_color(rng, (sky_rgb, ground_rgb))
        cv2.fillPoly(pan, fixed_point, seg_id, cv2.LINE_8, shift=4)
        cv2.fillPoly(image, fixed_point, color.tolist(), cv2.LINE_8, shift=4)
        objects.append({"category_id": category, "polygon": poly, "seg_id": seg_id})

    # independent noise per channel; JPEG's chroma subsampling then correlates the channels.
    # Objects also get a grey texture, as in the reference images.
    image += _NOISE_STD * rng.standard_normal(size=(h, w, 3), dtype=np.float32)
    texture = _OBJECT_TEXTURE_STD * rng.standard_normal(size=(h, w), dtype=np.float32)
    image += np.where(pan < _SKY * 1000, texture, 0.0)[..., None]
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)  # round half up
    return {"id": image_id, "height": h, "width": w, "image": image, "pan": pan, "objects": objects}


def _encode_panoptic(pan: np.ndarray) -> np.ndarray:
    """(H, W) int ids -> (H, W, 3) uint8 RGB with id = R + 256 G + 256^2 B."""
    return np.stack([pan % 256, (pan // 256) % 256, pan // 65536], axis=-1).astype(np.uint8)


def _round_bbox(poly: np.ndarray) -> list[float]:
    x0, y0 = poly.min(axis=0)
    x1, y1 = poly.max(axis=0)
    return [
        round(float(x0), 2),
        round(float(y0), 2),
        round(float(x1 - x0), 2),
        round(float(y1 - y0), 2),
    ]


def _dump_json(obj: Any, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


_SEM_LUT = np.array([0, 0, 1, 2, 3, 4], np.uint8)  # category (1..5) -> sem_seg label
_STUFF_LUT = np.array([0, 0, 0, 0, 1, 2], np.uint8)  # category (1..5) -> panoptic_stuff label


def _write_image(
    rng: np.random.Generator,
    image_id: int,
    image_size_range: tuple[tuple[int, int], tuple[int, int]],
    max_objects: int,
    folders: dict[str, str],
) -> dict[str, Any]:
    """Render one image, write its JPEG and PNGs, return its json entries (ids but ann ids)."""
    r = _render_image(rng, image_id, image_size_range, max_objects)
    stem = f"{image_id:06d}"
    h, w, pan = r["height"], r["width"], r["pan"]
    ok, buf = cv2.imencode(".jpg", r["image"][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for image {image_id}")
    buf.tofile(os.path.join(folders["images"], stem + ".jpg"))
    cv2.imwrite(os.path.join(folders["panoptic"], stem + ".png"), _encode_panoptic(pan)[..., ::-1])
    category_map = pan // 1000  # (H, W) category 1..5
    cv2.imwrite(os.path.join(folders["sem_seg"], stem + ".png"), _SEM_LUT[category_map])
    cv2.imwrite(os.path.join(folders["panoptic_stuff"], stem + ".png"), _STUFF_LUT[category_map])

    counts = np.bincount(pan.reshape(-1))
    objects, segments_info = [], []
    for obj in r["objects"]:
        bbox = _round_bbox(obj["polygon"])
        area = int(counts[obj["seg_id"]])
        objects.append(
            {
                "category_id": obj["category_id"],
                "bbox": bbox,
                "area": area,
                "polygon": [float(v) for v in obj["polygon"].reshape(-1)],
            }
        )
        segments_info.append(
            {
                "id": obj["seg_id"],
                "category_id": obj["category_id"],
                "iscrowd": 0,
                "bbox": bbox,
                "area": area,
            }
        )
    for stuff in (_SKY, _GROUND):
        area = int(counts[stuff * 1000]) if len(counts) > stuff * 1000 else 0
        if area == 0:
            continue
        m = pan == stuff * 1000
        ys, xs = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        x0, y0 = int(xs[0]), int(ys[0])
        segments_info.append(
            {
                "id": stuff * 1000,
                "category_id": stuff,
                "iscrowd": 0,
                "area": area,
                "bbox": [x0, y0, int(xs[-1]) - x0 + 1, int(ys[-1]) - y0 + 1],
            }
        )
    return {
        "image": {"id": image_id, "file_name": stem + ".jpg", "height": h, "width": w},
        "objects": objects,
        "panoptic": {
            "image_id": image_id,
            "file_name": stem + ".png",
            "segments_info": segments_info,
        },
    }


def generate_shapes_dataset(
    root: str | os.PathLike,
    num_images: int,
    seed: int = 0,
    split: str = "train",
    image_size_range: tuple[tuple[int, int], tuple[int, int]] = ((224, 320), (256, 384)),
    max_objects: int = 5,
) -> str:
    """Write one split of the shapes dataset under ``<root>/<split>/``.

    Args:
        root: output root; the split goes to ``root/split`` (created, files overwritten).
        num_images: number of images (>= 1).
        seed: random seed; together with ``split`` it determines every byte written.
        split: split name, also the sub-folder name.
        image_size_range: ((min_height, max_height), (min_width, max_width)), inclusive.
        max_objects: each image has 1..max_objects objects (fewer when they do not fit).

    Returns:
        The split folder.

    Raises:
        ValueError: ``num_images`` < 1, an empty/invalid size range or ``max_objects`` < 1.
    """
    if int(num_images) < 1:
        raise ValueError(f"generate_shapes_dataset: num_images must be >= 1, got {num_images}")
    if int(max_objects) < 1:
        raise ValueError(f"generate_shapes_dataset: max_objects must be >= 1, got {max_objects}")
    (h_lo, h_hi), (w_lo, w_hi) = image_size_range
    if not (64 <= h_lo <= h_hi and 64 <= w_lo <= w_hi):
        raise ValueError(
            "generate_shapes_dataset: image_size_range must be ((min_h, max_h), (min_w, max_w)) "
            f"with 64 <= min <= max, got {image_size_range}"
        )
    out = os.path.join(os.fspath(root), split)
    folders = {k: os.path.join(out, k) for k in ("images", "panoptic", "sem_seg", "panoptic_stuff")}
    for d in folders.values():
        os.makedirs(d, exist_ok=True)

    # one independent stream per image: the output does not depend on generation order
    seeds = np.random.SeedSequence([int(seed), zlib.crc32(split.encode("utf-8"))])
    child_seeds = seeds.spawn(int(num_images))

    size_range = ((h_lo, h_hi), (w_lo, w_hi))

    def job(index: int) -> dict[str, Any]:
        rng = np.random.default_rng(child_seeds[index])
        return _write_image(rng, index + 1, size_range, int(max_objects), folders)

    # OpenCV and numpy release the GIL: threads overlap the drawing and the encoding
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        results = list(pool.map(job, range(int(num_images))))

    images, instances, keypoints, panoptic = [], [], [], []
    for r in results:
        image_id = r["image"]["id"]
        images.append(r["image"])
        for obj in r["objects"]:
            ann = {
                "id": len(instances) + 1,
                "image_id": image_id,
                "category_id": obj["category_id"],
                "bbox": obj["bbox"],
                "area": float(obj["area"]),
                "iscrowd": 0,
                "segmentation": [obj["polygon"]],
            }
            instances.append(ann)
            if obj["category_id"] == 3:
                kpts = []
                for x, y in zip(obj["polygon"][0::2], obj["polygon"][1::2]):
                    kpts += [x, y, 2.0]
                keypoints.append(dict(ann, keypoints=kpts, num_keypoints=3))
        panoptic.append(r["panoptic"])

    things = [c for c in SHAPES_CATEGORIES if c["isthing"]]
    triangle = dict(
        {k: v for k, v in things[2].items() if k != "isthing"},
        keypoints=list(SHAPES_KEYPOINT_NAMES),
        skeleton=[[1, 2], [2, 3], [3, 1]],
    )
    _dump_json(
        {"images": images, "annotations": instances, "categories": things},
        os.path.join(out, "instances.json"),
    )
    _dump_json(
        {"images": images, "annotations": keypoints, "categories": [triangle]},
        os.path.join(out, "keypoints.json"),
    )
    _dump_json(
        {"images": images, "annotations": panoptic, "categories": SHAPES_CATEGORIES},
        os.path.join(out, "panoptic.json"),
    )
    return out


def _same_registration(name: str, **expected: str) -> bool:
    """Whether ``name`` is registered already with these paths (False: not registered)."""
    if name not in DatasetCatalog.list():
        return False
    meta = MetadataCatalog.get(name)

    def same(a: Any, b: str) -> bool:
        return isinstance(a, (str, os.PathLike)) and os.path.normpath(a) == os.path.normpath(b)

    if all(same(meta.get(k), v) for k, v in expected.items()):
        return True
    raise ValueError(
        f"register_shapes: dataset '{name}' is already registered with different paths "
        f"({ {k: meta.get(k) for k in expected} }); use another name_prefix"
    )


def register_shapes(
    root: str | os.PathLike,
    name_prefix: str = "shapes",
    splits: Sequence[str] = ("train", "val"),
) -> list[str]:
    """Register the shapes splits of ``root`` the way the reference models were trained.

    For each split ``s`` (folder ``root/s``) this registers, without reading any file:

    - ``<prefix>_<s>``: instances (``instances.json``);
    - ``<prefix>_kpt_<s>``: triangle keypoints (``keypoints.json``) with ``keypoint_names``,
      ``keypoint_flip_map`` and ``keypoint_connection_rules``;
    - ``<prefix>_pan_<s>_separated`` / ``<prefix>_pan_<s>_stuffonly``: Panoptic-FPN data (stuff
      classes things / sky / ground from ``panoptic_stuff/``);
    - ``<prefix>_sem_<s>``: semantic segmentation (``sem_seg/``, 5 classes, ignore 255);
    - ``<prefix>_pdl_<s>``: standard COCO panoptic (Panoptic-DeepLab).

    Calling it again with the same root is a no-op; with another root it raises ``ValueError``.

    Returns:
        The registered dataset names.
    """
    root = os.fspath(root)
    names = []
    thing_map = {1: 0, 2: 1, 3: 2}
    for split in splits:
        d = os.path.join(root, split)
        images = os.path.join(d, "images")

        name = f"{name_prefix}_{split}"
        json_file = os.path.join(d, "instances.json")
        if not _same_registration(name, json_file=json_file, image_root=images):
            register_coco_instances(
                name,
                {
                    "thing_classes": SHAPES_THING_CLASSES,
                    "thing_dataset_id_to_contiguous_id": thing_map,
                },
                json_file,
                images,
            )
        names.append(name)

        name = f"{name_prefix}_kpt_{split}"
        json_file = os.path.join(d, "keypoints.json")
        if not _same_registration(name, json_file=json_file, image_root=images):
            register_coco_instances(
                name,
                {
                    "thing_classes": ["triangle"],
                    "thing_dataset_id_to_contiguous_id": {3: 0},
                    "keypoint_names": SHAPES_KEYPOINT_NAMES,
                    "keypoint_flip_map": SHAPES_KEYPOINT_FLIP_MAP,
                    "keypoint_connection_rules": SHAPES_KEYPOINT_CONNECTION_RULES,
                },
                json_file,
                images,
            )
        names.append(name)

        prefix = f"{name_prefix}_pan_{split}"
        instances_json = os.path.join(d, "instances.json")
        if not _same_registration(
            prefix + "_separated", json_file=instances_json, image_root=images
        ):
            register_coco_panoptic_separated(
                prefix,
                {
                    "stuff_classes": ["things", "sky", "ground"],
                    "stuff_dataset_id_to_contiguous_id": {0: 0, 4: 1, 5: 2},
                    "thing_classes": SHAPES_THING_CLASSES,
                    "thing_dataset_id_to_contiguous_id": thing_map,
                },
                images,
                os.path.join(d, "panoptic"),
                os.path.join(d, "panoptic.json"),
                os.path.join(d, "panoptic_stuff"),
                instances_json,
            )
        names += [prefix + "_separated", prefix + "_stuffonly"]

        name = f"{name_prefix}_sem_{split}"
        sem_root = os.path.join(d, "sem_seg")
        if not _same_registration(name, sem_seg_root=sem_root, image_root=images):
            DatasetCatalog.register(
                name, lambda s=sem_root, i=images: load_sem_seg(s, i, "png", "jpg")
            )
            MetadataCatalog.get(name).set(
                stuff_classes=list(SHAPES_STUFF_CLASSES),
                ignore_label=255,
                evaluator_type="sem_seg",
                image_root=images,
                sem_seg_root=sem_root,
            )
        names.append(name)

        name = f"{name_prefix}_pdl_{split}"
        panoptic_json = os.path.join(d, "panoptic.json")
        if not _same_registration(name, panoptic_json=panoptic_json, image_root=images):
            register_coco_panoptic(
                name,
                {
                    "thing_classes": SHAPES_THING_CLASSES,
                    "stuff_classes": list(SHAPES_STUFF_CLASSES),
                    "thing_dataset_id_to_contiguous_id": thing_map,
                    "stuff_dataset_id_to_contiguous_id": {1: 0, 2: 1, 3: 2, 4: 3, 5: 4},
                },
                images,
                os.path.join(d, "panoptic"),
                panoptic_json,
                instances_json,
            )
        names.append(name)
    return names


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the synthetic shapes dataset.")
    parser.add_argument("--out", required=True, help="output root (train/ and val/ go under it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=400)
    parser.add_argument("--num-val", type=int, default=60)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    for split, n in (("train", args.num_train), ("val", args.num_val)):
        if n > 0:
            path = generate_shapes_dataset(args.out, n, seed=args.seed, split=split)
            print(f"wrote {n} images to {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
