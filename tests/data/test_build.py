"""Dataset lists and data loaders built from a registered shapes dataset."""

from __future__ import annotations

import itertools
import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest

from torchdet.config import get_cfg
from torchdet.data import (
    DatasetCatalog,
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
    load_proposals_into_dataset,
)
from torchdet.data import transforms as T
from torchdet.data.build import filter_images_with_few_keypoints, trivial_batch_collator
from torchdet.data.common import DataMappingError
from torchdet.data.samplers import RepeatFactorTrainingSampler
from torchdet.structures import BoxMode

NAME = "_test_build_shapes_val"
CLASSES = ["circle", "square", "triangle"]


def _load_shapes(root: Path) -> list[dict]:
    """Minimal COCO json -> standard dicts (0-based categories, XYWH boxes, polygons)."""
    data = json.loads((root / "instances.json").read_text())
    per_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        per_image.setdefault(a["image_id"], []).append(
            {
                "bbox": a["bbox"],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": a["category_id"] - 1,
                "segmentation": a["segmentation"],
                "iscrowd": a["iscrowd"],
            }
        )
    return [
        {
            "file_name": str(root / "images" / img["file_name"]),
            "image_id": img["id"],
            "height": img["height"],
            "width": img["width"],
            "annotations": per_image.get(img["id"], []),
        }
        for img in sorted(data["images"], key=lambda x: x["id"])
    ]


@pytest.fixture(scope="module")
def shapes_val(shapes_dir):
    dicts = _load_shapes(shapes_dir / "val")
    if NAME not in DatasetCatalog.list():
        DatasetCatalog.register(NAME, lambda: _load_shapes(shapes_dir / "val"))
        MetadataCatalog.get(NAME).set(thing_classes=CLASSES)
    yield dicts


def _small_cfg():
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = (NAME,)
    cfg.DATASETS.TEST = (NAME,)
    cfg.INPUT.MIN_SIZE_TRAIN = (64,)
    cfg.INPUT.MAX_SIZE_TRAIN = 100
    cfg.INPUT.MIN_SIZE_TEST = 64
    cfg.INPUT.MAX_SIZE_TEST = 100
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.MODEL.MASK_ON = True
    return cfg


def test_get_detection_dataset_dicts_filters_and_logs(shapes_val, caplog):
    extra = "_test_build_with_empty"
    if extra not in DatasetCatalog.list():
        crowd = dict(shapes_val[0], image_id=10001)
        crowd["annotations"] = [dict(a, iscrowd=1) for a in crowd["annotations"]]
        empty = dict(shapes_val[1], image_id=10002, annotations=[])
        DatasetCatalog.register(extra, lambda: shapes_val[:3] + [crowd, empty])
        MetadataCatalog.get(extra).set(thing_classes=CLASSES)
    with caplog.at_level(logging.INFO, logger="torchdet.data.build"):
        dicts = get_detection_dataset_dicts(extra)
    assert [d["image_id"] for d in dicts] == [d["image_id"] for d in shapes_val[:3]]
    text = caplog.text
    assert "Removed 2 images with no usable annotations. 3 images left." in text
    n = sum(len(d["annotations"]) for d in shapes_val[:3])
    assert "Distribution of instances among all 3 categories" in text
    assert "total" in text and str(n) in text
    assert len(get_detection_dataset_dicts(extra, filter_empty=False)) == 5
    # two datasets concatenate
    assert len(get_detection_dataset_dicts([NAME, extra])) == 63
    with pytest.raises(KeyError, match="_nope_"):
        get_detection_dataset_dicts("_nope_")


def test_train_loader_from_registered_dataset(shapes_val):
    mapper = DatasetMapper(
        is_train=True,
        augmentations=[T.ResizeShortestEdge(64, 100, "choice"), T.RandomFlip()],
        image_format="BGR",
        use_instance_mask=True,
    )
    loader = build_detection_train_loader(
        get_detection_dataset_dicts(NAME), mapper=mapper, total_batch_size=4
    )
    for batch in itertools.islice(iter(loader), 3):
        assert isinstance(batch, list) and len(batch) == 4
        landscape = {d["width"] > d["height"] for d in batch}
        assert len(landscape) == 1  # aspect-ratio grouping
        for d in batch:
            assert d["image"].shape[0] == 3 and min(d["image"].shape[1:]) == 64
            inst = d["instances"]
            assert len(inst) > 0 and inst.has("gt_masks")
            assert inst.image_size == tuple(d["image"].shape[1:])


def test_train_loader_from_cfg_with_workers(shapes_val):
    cfg = _small_cfg()
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 2
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    loader = build_detection_train_loader(cfg)
    batches = list(itertools.islice(iter(loader), 3))
    assert [len(b) for b in batches] == [2, 2, 2]
    assert all(d["instances"].has("gt_masks") for b in batches for d in b)


def test_train_loader_samplers_from_cfg(shapes_val):
    cfg = _small_cfg()
    cfg.DATALOADER.SAMPLER_TRAIN = "RepeatFactorTrainingSampler"
    cfg.DATALOADER.REPEAT_THRESHOLD = 0.5
    args = build_detection_train_loader.from_config(cfg)
    assert isinstance(args["sampler"], RepeatFactorTrainingSampler)
    assert args["total_batch_size"] == 4 and args["aspect_ratio_grouping"] is True
    cfg.DATALOADER.SAMPLER_TRAIN = "NoSuchSampler"
    with pytest.raises(ValueError, match="SAMPLER_TRAIN.*NoSuchSampler"):
        build_detection_train_loader(cfg)


def test_bad_image_error_names_file_and_id(shapes_val, tmp_path):
    bad = dict(shapes_val[0], file_name=str(tmp_path / "broken.jpg"), image_id=777)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="BGR")
    for workers in (0, 1):
        loader = build_detection_train_loader(
            [bad] * 4,
            mapper=mapper,
            total_batch_size=2,
            num_workers=workers,
            aspect_ratio_grouping=False,
        )
        it = iter(loader)
        # In a worker, the DataLoader re-raises the same exception type with the message.
        with pytest.raises(
            DataMappingError, match=r"broken\.jpg', image_id=777: ValueError"
        ) as excinfo:
            next(it)
        # The traceback's frames hold the iterator in a reference cycle; a worker shut down by
        # the cycle collector waits out a 5 s join timeout. Break the cycle and close it now.
        excinfo.value.__traceback__ = None
        del excinfo, it


def test_test_loader(shapes_val):
    cfg = _small_cfg()
    loader = build_detection_test_loader(cfg, NAME)
    assert len(loader) == len(shapes_val) == 60
    seen = []
    for batch in loader:
        assert len(batch) == 1
        d = batch[0]
        assert "instances" not in d and "annotations" not in d
        assert min(d["image"].shape[1:]) == 64 or max(d["image"].shape[1:]) == 100
        seen.append(d["image_id"])
    assert seen == [d["image_id"] for d in shapes_val]  # each image once, in order
    loader = build_detection_test_loader(shapes_val[:5], mapper=None, batch_size=2)
    assert [len(b) for b in loader] == [2, 2, 1]


def test_load_proposals_and_keypoint_filter(tmp_path):
    dicts = [{"image_id": 1}, {"image_id": "b"}]
    props = {
        "indexes": [1, "b", 3],
        "boxes": [np.array([[0, 0, 1, 1], [0, 0, 2, 2.0]]), np.zeros((1, 4)), np.zeros((0, 4))],
        "scores": [np.array([0.1, 0.9]), np.array([0.5]), np.zeros(0)],
    }
    path = tmp_path / "props.pkl"
    path.write_bytes(pickle.dumps(props))
    out = load_proposals_into_dataset(dicts, str(path))
    np.testing.assert_allclose(out[0]["proposal_boxes"], [[0, 0, 2, 2], [0, 0, 1, 1]])
    np.testing.assert_allclose(out[0]["proposal_objectness_logits"], [0.9, 0.1])
    assert out[1]["proposal_bbox_mode"] == BoxMode.XYXY_ABS
    with pytest.raises(KeyError, match="image_id 9"):
        load_proposals_into_dataset([{"image_id": 9}], str(path))
    kp = [
        {"annotations": [{"keypoints": [1, 1, 2, 1, 1, 0, 1, 1, 1]}]},
        {"annotations": [{"keypoints": [1, 1, 0, 1, 1, 0, 1, 1, 2]}, {"bbox": []}]},
    ]
    assert len(filter_images_with_few_keypoints(kp, 2)) == 1
    assert trivial_batch_collator([1, 2]) == [1, 2]


def test_package_exports():
    import torchdet.data as data
    from torchdet.data import catalog, datasets

    assert data.DatasetCatalog is catalog.DatasetCatalog
    assert data.Metadata is catalog.Metadata and data.datasets is datasets
    assert "coco_2017_val" in data.DatasetCatalog.list()  # builtins registered with the catalog
    assert data.detection_utils.read_image is not None
    for name in data.__all__:
        assert getattr(data, name) is not None
    with pytest.raises(AttributeError, match="no_such_name"):
        data.no_such_name  # noqa: B018


@pytest.mark.parametrize("workers", [0, 1])
def test_train_loader_resumes_exactly(workers):
    from torchdet.data.samplers import TrainingSampler

    dicts = [{"image_id": i, "width": 3, "height": 2} for i in range(7)]

    def ids(start: int, n: int) -> list[list[int]]:
        loader = build_detection_train_loader(
            dicts,
            mapper=None,
            sampler=TrainingSampler(len(dicts), seed=5, start=start),
            total_batch_size=2,
            aspect_ratio_grouping=False,
            num_workers=workers,
        )
        return [[d["image_id"] for d in b] for b in itertools.islice(iter(loader), n)]

    full = ids(0, 8)
    assert sorted(sum(full[:4], [])[:7]) == list(range(7))  # first epoch: each image once
    assert ids(3 * 2, 5) == full[3:]  # resumed after 3 iterations of batch 2
