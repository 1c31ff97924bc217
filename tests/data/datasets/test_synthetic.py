"""The shapes generator: determinism, self-consistency, reference layout, registrations."""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image

from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets.coco import register_coco_instances
from torchdet.data.datasets.synthetic import generate_shapes_dataset, main, register_shapes

N = 12


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes_dataset(root, N, seed=3, split="val")
    return root / "val"


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _pan_ids(png: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(png), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def _inside_and_distance(poly: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Even-odd test of every pixel centre (x, y) against a polygon, and its distance to the
    polygon's boundary; both (H, W)."""
    xy = poly.reshape(-1, 2)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    inside = np.zeros((h, w), bool)
    dist = np.full((h, w), np.inf)
    for (x0, y0), (x1, y1) in zip(xy, np.roll(xy, -1, axis=0)):
        crosses = (y0 > ys) != (y1 > ys)
        x_at = x0 + (ys - y0) * (x1 - x0) / ((y1 - y0) if y1 != y0 else 1.0)
        inside ^= crosses & (xs < x_at)
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0, 1)
        dist = np.minimum(dist, np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy)))
    return inside, dist


def test_same_seed_is_byte_identical(tmp_path: Path, generated: Path) -> None:
    generate_shapes_dataset(tmp_path, N, seed=3, split="val")
    again = tmp_path / "val"
    for rel in (
        "instances.json",
        "keypoints.json",
        "panoptic.json",
        "images/000005.jpg",
        "panoptic/000005.png",
        "sem_seg/000005.png",
        "panoptic_stuff/000005.png",
    ):
        assert (again / rel).read_bytes() == (generated / rel).read_bytes(), rel


def test_other_seed_or_split_differs(tmp_path: Path, generated: Path) -> None:
    generate_shapes_dataset(tmp_path / "a", N, seed=4, split="val")
    generate_shapes_dataset(tmp_path / "b", N, seed=3, split="train")
    ref = (generated / "instances.json").read_bytes()
    assert (tmp_path / "a" / "val" / "instances.json").read_bytes() != ref
    assert (tmp_path / "b" / "train" / "instances.json").read_bytes() != ref


def test_layout_matches_reference(generated: Path, shapes_dir: Path) -> None:
    ref_root = shapes_dir / "val"
    for name in ("instances.json", "keypoints.json", "panoptic.json"):
        ours, ref = _load(generated / name), _load(ref_root / name)
        assert ours.keys() == ref.keys(), name
        assert ours["categories"] == ref["categories"], name
        assert ours["images"][0].keys() == ref["images"][0].keys()
        assert ours["annotations"][0].keys() == ref["annotations"][0].keys(), name
    ours, ref = _load(generated / "panoptic.json"), _load(ref_root / "panoptic.json")
    seg_keys = lambda d, thing: {  # noqa: E731
        tuple(s)
        for a in d["annotations"]
        for s in a["segments_info"]
        if (s["category_id"] <= 3) == thing
    }
    assert seg_keys(ours, True) == seg_keys(ref, True)
    assert seg_keys(ours, False) == seg_keys(ref, False)
    with (
        Image.open(generated / "images" / "000001.jpg") as im,
        Image.open(ref_root / "images" / "000001.jpg") as rim,
    ):
        assert (im.format, im.mode) == (rim.format, rim.mode)
    for folder in ("sem_seg", "panoptic_stuff", "panoptic"):
        with (
            Image.open(generated / folder / "000001.png") as im,
            Image.open(ref_root / folder / "000001.png") as rim,
        ):
            assert im.mode == rim.mode, folder


def test_images_and_objects_geometry(generated: Path) -> None:
    inst = _load(generated / "instances.json")
    assert [im["id"] for im in inst["images"]] == list(range(1, N + 1))
    assert [im["file_name"] for im in inst["images"]] == [f"{i:06d}.jpg" for i in range(1, N + 1)]
    per_image = collections.Counter(a["image_id"] for a in inst["annotations"])
    sizes = {im["id"]: (im["height"], im["width"]) for im in inst["images"]}
    for im in inst["images"]:
        assert 224 <= im["height"] <= 320 and 256 <= im["width"] <= 384
        with Image.open(generated / "images" / im["file_name"]) as pil:
            assert pil.size == (im["width"], im["height"])
        assert 1 <= per_image[im["id"]] <= 5
    assert [a["id"] for a in inst["annotations"]] == list(range(1, len(inst["annotations"]) + 1))
    for a in inst["annotations"]:
        h, w = sizes[a["image_id"]]
        x, y, bw, bh = a["bbox"]
        assert x >= 0 and y >= 0 and x + bw <= w and y + bh <= h
        assert 15 <= max(bw, bh) <= 97
        (poly,) = a["segmentation"]
        assert len(poly) == {1: 64, 2: 8, 3: 6}[a["category_id"]]
        xy = np.asarray(poly).reshape(-1, 2)
        assert np.allclose([*xy.min(0), *(xy.max(0) - xy.min(0))], a["bbox"], atol=0.011)
        assert a["iscrowd"] == 0


def test_masks_agree_with_polygons_and_panoptic(generated: Path) -> None:
    inst, pan = _load(generated / "instances.json"), _load(generated / "panoptic.json")
    anns = collections.defaultdict(list)
    for a in inst["annotations"]:
        anns[a["image_id"]].append(a)
    pan_by_image = {p["image_id"]: p for p in pan["annotations"]}
    for im in inst["images"]:
        h, w = im["height"], im["width"]
        p = pan_by_image[im["id"]]
        ids = _pan_ids(generated / "panoptic" / p["file_name"])
        segs = {s["id"]: s for s in p["segments_info"]}
        # every pixel belongs to a listed segment, and the areas are the pixel counts
        values, counts = np.unique(ids, return_counts=True)
        assert set(values.tolist()) == set(segs)
        for v, c in zip(values.tolist(), counts.tolist()):
            assert segs[v]["area"] == c
        sem = np.asarray(Image.open(generated / "sem_seg" / p["file_name"]))
        stuff = np.asarray(Image.open(generated / "panoptic_stuff" / p["file_name"]))
        assert np.array_equal(sem, ids // 1000 - 1)  # 0-2 things, 3 sky, 4 ground
        assert np.array_equal(stuff, np.maximum(ids // 1000 - 3, 0))  # 0 things, 1 sky, 2 ground
        for k, a in enumerate(anns[im["id"]], start=1):
            seg_id = a["category_id"] * 1000 + k
            s = segs[seg_id]
            assert (
                s["bbox"] == a["bbox"]
                and s["area"] == a["area"]
                and s["category_id"] == a["category_id"]
            )
            mask = ids == seg_id
            # OpenCV's fill (pixel centres at integer coordinates, as in the reference data):
            # every pixel centre inside the polygon plus the boundary pixels it touches
            inside, dist = _inside_and_distance(np.asarray(a["segmentation"][0]), h, w)
            assert (inside & ~mask).sum() <= 2
            assert (dist[inside != mask] <= 1.5).all()
        for stuff_id in (4000, 5000):
            if stuff_id in segs:
                ys, xs = np.nonzero(ids == stuff_id)
                x0, y0 = xs.min(), ys.min()
                assert segs[stuff_id]["bbox"] == [x0, y0, xs.max() - x0 + 1, ys.max() - y0 + 1]


def test_objects_do_not_overlap(generated: Path) -> None:
    inst = _load(generated / "instances.json")
    anns = collections.defaultdict(list)
    for a in inst["annotations"]:
        anns[a["image_id"]].append(a)
    for im in inst["images"]:
        masks = [
            mask_util.decode(mask_util.frPyObjects(a["segmentation"], im["height"], im["width"]))[
                ..., 0
            ]
            for a in anns[im["id"]]
        ]
        assert (np.sum(masks, axis=0) <= 1).all()


def test_keypoints_are_triangle_corners(generated: Path) -> None:
    inst, kpt = _load(generated / "instances.json"), _load(generated / "keypoints.json")
    triangles = {a["id"]: a for a in inst["annotations"] if a["category_id"] == 3}
    assert [a["id"] for a in kpt["annotations"]] == sorted(triangles)
    assert kpt["images"] == inst["images"]
    (cat,) = kpt["categories"]
    assert cat["keypoints"] == ["apex", "base_left", "base_right"]
    for a in kpt["annotations"]:
        k = np.asarray(a["keypoints"]).reshape(3, 3)
        assert k[:, :2].reshape(-1).tolist() == triangles[a["id"]]["segmentation"][0]
        assert (k[:, 2] == 2).all() and a["num_keypoints"] == 3
        apex, left, right = k[:, :2]
        assert left[0] < right[0]  # base_left is on the left
        assert apex[1] < (left[1] + right[1]) / 2  # apex up


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_images"):
        generate_shapes_dataset(tmp_path, 0)
    with pytest.raises(ValueError, match="image_size_range"):
        generate_shapes_dataset(tmp_path, 1, image_size_range=((300, 200), (256, 384)))


def test_generation_speed_and_cli(tmp_path: Path) -> None:
    start = time.perf_counter()
    main(["--out", str(tmp_path), "--num-train", "40", "--num-val", "6"])
    elapsed = time.perf_counter() - start
    assert len(list((tmp_path / "train" / "images").glob("*.jpg"))) == 40
    assert len(_load(tmp_path / "val" / "panoptic.json")["annotations"]) == 6
    # 460 images must take seconds: allow 10x margin for a loaded CI machine on 46
    assert elapsed < 10.0, elapsed


def test_register_shapes_loads_like_reference(generated: Path) -> None:
    prefix = "_test_synth"
    try:
        names = register_shapes(generated.parent, name_prefix=prefix, splits=("val",))
        assert names == [
            f"{prefix}_val",
            f"{prefix}_kpt_val",
            f"{prefix}_pan_val_separated",
            f"{prefix}_pan_val_stuffonly",
            f"{prefix}_sem_val",
            f"{prefix}_pdl_val",
        ]
        assert register_shapes(generated.parent, name_prefix=prefix, splits=("val",)) == names
        with pytest.raises(ValueError, match="already registered with different paths"):
            register_shapes(generated.parent / "elsewhere", name_prefix=prefix, splits=("val",))

        inst = _load(generated / "instances.json")
        dicts = DatasetCatalog.get(f"{prefix}_val")
        assert sum(len(d["annotations"]) for d in dicts) == len(inst["annotations"])
        kpt = DatasetCatalog.get(f"{prefix}_kpt_val")
        assert {a["category_id"] for d in kpt for a in d["annotations"]} <= {0}
        meta = MetadataCatalog.get(f"{prefix}_kpt_val")
        assert list(meta.keypoint_names) == ["apex", "base_left", "base_right"]
        assert [tuple(p) for p in meta.keypoint_flip_map] == [("base_left", "base_right")]
        assert len(meta.keypoint_connection_rules) == 3
        pan = DatasetCatalog.get(f"{prefix}_pan_val_separated")
        assert all(
            d["sem_seg_file_name"].endswith(".png") and "panoptic_stuff" in d["sem_seg_file_name"]
            for d in pan
        )
        sem_meta = MetadataCatalog.get(f"{prefix}_sem_val")
        assert sem_meta.stuff_classes == ["circle", "square", "triangle", "sky", "ground"]
        assert sem_meta.ignore_label == 255
        assert len(DatasetCatalog.get(f"{prefix}_sem_val")) == N
        pdl = DatasetCatalog.get(f"{prefix}_pdl_val")
        assert MetadataCatalog.get(f"{prefix}_pdl_val").label_divisor == 1000
        assert {s["category_id"] for d in pdl for s in d["segments_info"] if not s["isthing"]} <= {
            3,
            4,
        }
    finally:
        for catalog in (DatasetCatalog, MetadataCatalog):
            for n in catalog.list():
                if n.startswith(prefix):
                    catalog.remove(n)


def test_register_shapes_on_shared_data(shapes_dir: Path) -> None:
    prefix = "_test_synth_shared"
    try:
        # a dataset registered by hand as the reference did, with Path objects: kept as is
        val = shapes_dir / "val"
        register_coco_instances(f"{prefix}_val", {}, val / "instances.json", val / "images")
        register_shapes(shapes_dir, name_prefix=prefix)
        assert len(DatasetCatalog.get(f"{prefix}_val")) == 60
        raw = _load(shapes_dir / "train" / "keypoints.json")
        kpt = DatasetCatalog.get(f"{prefix}_kpt_train")
        assert sum(len(d["annotations"]) for d in kpt) == len(raw["annotations"])
        assert len(DatasetCatalog.get(f"{prefix}_pan_val_separated")) == 60
    finally:
        for catalog in (DatasetCatalog, MetadataCatalog):
            for n in catalog.list():
                if n.startswith(prefix):
                    catalog.remove(n)


def _split_stats(root: Path, n_images: int) -> dict[str, float]:
    """Cheap statistics of a shapes split: object sizes, counts, image noise and colours."""
    inst = _load(root / "instances.json")
    images = inst["images"][:n_images]
    ids = {im["id"] for im in images}
    anns = [a for a in inst["annotations"] if a["image_id"] in ids]
    stats: dict[str, float] = {"objects_per_image": len(anns) / len(images)}
    for cat in (1, 2, 3):
        stats[f"size_{cat}"] = float(
            np.mean([max(a["bbox"][2:]) for a in anns if a["category_id"] == cat])
        )
    noise, corr, sky_g, ground_b = [], [], [], []
    for im in images:
        rgb = np.asarray(Image.open(root / "images" / im["file_name"]), dtype=np.float64)
        sem = np.asarray(Image.open(root / "sem_seg" / (Path(im["file_name"]).stem + ".png")))
        sky = sem == 3
        inner = sky[1:-1, 1:-1] & sky[:-2, 1:-1] & sky[2:, 1:-1]
        # vertical second difference removes the smooth background: 6 sigma^2 for white noise
        d2 = (rgb[:-2, 1:-1] - 2 * rgb[1:-1, 1:-1] + rgb[2:, 1:-1])[inner]
        noise.append(d2.std() / np.sqrt(6))
        corr.append(np.corrcoef(d2.T)[0, 1])
        sky_g.append(rgb[sky][:, 1].mean())
        ground_b.append(rgb[sem == 4][:, 2].mean())
    stats.update(
        noise=np.mean(noise), corr=np.mean(corr), sky_g=np.mean(sky_g), ground_b=np.mean(ground_b)
    )
    return stats


def test_statistics_match_reference(tmp_path: Path, shapes_dir: Path) -> None:
    generate_shapes_dataset(tmp_path, 60, seed=0, split="val")
    ours, ref = _split_stats(tmp_path / "val", 60), _split_stats(shapes_dir / "train", 100)
    # tolerances are about 4 standard deviations of the sampling noise of the means
    assert abs(ours["objects_per_image"] - ref["objects_per_image"]) < 0.6
    for cat in (1, 2, 3):
        assert abs(ours[f"size_{cat}"] - ref[f"size_{cat}"]) < 10, cat
    assert abs(ours["noise"] - ref["noise"]) < 0.3
    assert abs(ours["corr"] - ref["corr"]) < 0.01  # grey noise alone would give ~1.0
    assert abs(ours["sky_g"] - ref["sky_g"]) < 12
    assert abs(ours["ground_b"] - ref["ground_b"]) < 12
