"""COCO DensePose json: COCO instances whose annotations also carry ``dp_x``, ``dp_y``,
``dp_I``, ``dp_U``, ``dp_V`` and ``dp_masks``."""

from __future__ import annotations

import os

from torchdet.data import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets import load_coco_json

__all__ = ["DENSEPOSE_KEYS", "load_densepose_coco_json", "register_densepose_coco"]

DENSEPOSE_KEYS = ["dp_x", "dp_y", "dp_I", "dp_U", "dp_V", "dp_masks"]


def load_densepose_coco_json(
    json_file: str | os.PathLike,
    image_root: str | os.PathLike,
    dataset_name: str | None = None,
) -> list[dict]:
    """Dataset dicts of a COCO DensePose json: the core COCO loader keeping the DensePose keys
    on the annotations that have them (others, e.g. crowd or unannotated people, keep only the
    box). An annotation with some DensePose keys but not all raises ``KeyError`` naming it."""
    dicts = load_coco_json(
        json_file, image_root, dataset_name, extra_annotation_keys=DENSEPOSE_KEYS
    )
    for d in dicts:
        for anno in d.get("annotations", []):
            present = [k for k in DENSEPOSE_KEYS if k in anno]
            if present and len(present) != len(DENSEPOSE_KEYS):
                missing = sorted(set(DENSEPOSE_KEYS) - set(present))
                raise KeyError(
                    f"{json_file}: annotation {anno.get('id', '?')} of image "
                    f"{d.get('image_id')} has DensePose keys {present} but lacks {missing}"
                )
    return dicts


def register_densepose_coco(
    name: str, metadata: dict, json_file: str | os.PathLike, image_root: str | os.PathLike
) -> None:
    """Register a COCO DensePose dataset under ``name`` (evaluator type ``densepose``)."""
    DatasetCatalog.register(name, lambda: load_densepose_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=str(json_file),
        image_root=str(image_root),
        evaluator_type="densepose",
        **metadata,
    )
