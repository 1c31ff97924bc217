"""Checks on COCO result records (``image_id``, ``category_id``, ``bbox``, ``score``,
``segmentation``, ``keypoints``) before they reach pycocotools, whose own failures on bad
records are cryptic (or silent, e.g. NaN boxes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO

__all__ = ["validate_coco_results"]


def validate_coco_results(
    coco_results: list[dict], coco_gt: COCO, box_dims: Sequence[int] = (4,)
) -> None:
    """Check result records against the ground truth before handing them to pycocotools.

    Args:
        coco_results: result records (dataset category ids).
        coco_gt: the ground truth.
        box_dims: allowed ``bbox`` lengths (4: XYWH; 5: rotated XYWHA).

    Raises:
        KeyError: a record lacks ``image_id``/``category_id``/``score``.
        ValueError: unknown image or category id, a non-finite or malformed box or score, an
            RLE whose size differs from its image's, keypoints of inconsistent length.
    """
    if not coco_results:
        return
    known_imgs, known_cats = coco_gt.imgs, coco_gt.cats
    for i, r in enumerate(coco_results):
        if not isinstance(r, dict):
            raise TypeError(f"COCO results: record {i} is a {type(r).__name__}, expected a dict")
        for key in ("image_id", "category_id", "score"):
            if key not in r:
                raise KeyError(f"COCO results: record {i} has no '{key}'")
    img_ids = [r["image_id"] for r in coco_results]
    bad = next((i for i, x in enumerate(img_ids) if x not in known_imgs), None)
    if bad is not None:
        raise ValueError(
            f"COCO results: record {bad} has image id {img_ids[bad]!r}, which is not in the "
            "ground-truth annotations"
        )
    bad = next((i for i, r in enumerate(coco_results) if r["category_id"] not in known_cats), None)
    if bad is not None:
        raise ValueError(
            f"COCO results: record {bad} (image id {img_ids[bad]}) has category id "
            f"{coco_results[bad]['category_id']!r}, which is not a dataset category "
            f"(known: {sorted(known_cats)})"
        )
    scores = np.asarray([r["score"] for r in coco_results], dtype=np.float64)
    if not np.isfinite(scores).all():
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(
            f"COCO results: record {bad} (image id {img_ids[bad]}) has score {scores[bad]}"
        )
    has_box = [i for i, r in enumerate(coco_results) if "bbox" in r]
    if has_box:
        for i in has_box:
            box = coco_results[i]["bbox"]
            if not isinstance(box, (list, tuple)) or len(box) not in box_dims:
                raise ValueError(
                    f"COCO results: record {i} (image id {img_ids[i]}) has bbox {box!r}; expected "
                    f"a list of {' or '.join(map(str, box_dims))} numbers"
                )
        finite = np.ones(len(has_box), dtype=bool)
        lengths = np.asarray([len(coco_results[i]["bbox"]) for i in has_box])
        for n in np.unique(lengths):
            rows = np.flatnonzero(lengths == n)
            boxes = np.asarray([coco_results[has_box[r]]["bbox"] for r in rows], dtype=np.float64)
            finite[rows] = np.isfinite(boxes).all(axis=1)
        bad_rows = np.flatnonzero(~finite)
        if len(bad_rows):
            i = has_box[int(bad_rows[0])]
            raise ValueError(
                f"COCO results: record {i} (image id {img_ids[i]}) has a non-finite bbox "
                f"{coco_results[i]['bbox']}"
            )
    for i, r in enumerate(coco_results):
        seg = r.get("segmentation")
        if isinstance(seg, dict) and "size" in seg:
            img = known_imgs[r["image_id"]]
            if "height" in img and list(seg["size"]) != [img["height"], img["width"]]:
                raise ValueError(
                    f"COCO results: record {i} (image id {r['image_id']}) has a mask of size "
                    f"{list(seg['size'])}, but the image is {img['height']}x{img['width']}"
                )
    kp_lens = {len(r["keypoints"]) for r in coco_results if "keypoints" in r}
    if len(kp_lens) > 1 or any(n % 3 for n in kp_lens):
        raise ValueError(
            f"COCO results: keypoints must be flat x, y, score triplets of one length, got "
            f"lengths {sorted(kp_lens)}"
        )
