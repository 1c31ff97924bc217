"""Shared code of the model-parity tests: run a model on the shapes val split as
``DatasetMapper(cfg, is_train=False)`` would feed it, turn its outputs into COCO results, and
match them against the reference's results with the rule of ``shared/parity/README.md``.

Imported by path (pytest runs with ``--import-mode=importlib``)::

    spec = importlib.util.spec_from_file_location("parity_utils", Path(__file__).with_name(...))
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import torch

from torchdet.data import detection_utils as utils
from torchdet.data import transforms as T

# The matching rule of the README.
BOX_IOU = 0.99
SCORE_DIFF = 0.005
MIN_REF_SCORE = 0.05


def load_images(shapes_val: Path, json_name: str = "instances.json") -> tuple[list[dict], dict]:
    """The val images (sorted by id) and the contiguous-to-dataset category map.

    Returns:
        images: dicts with ``id``, ``file_name`` (absolute), ``height``, ``width``.
        contiguous_to_dataset: ``{contiguous id: dataset category id}`` (categories sorted
        by id, as ``load_coco_json`` maps them).
    """
    data = json.loads((shapes_val / json_name).read_text())
    images = sorted(data["images"], key=lambda x: x["id"])
    for im in images:
        im["file_name"] = str(shapes_val / "images" / im["file_name"])
    cat_ids = sorted(c["id"] for c in data["categories"])
    return images, dict(enumerate(cat_ids))


def model_inputs(cfg, images: list[dict]) -> list[dict]:
    """The test-time inputs of ``DatasetMapper(cfg, is_train=False)``: the image read in
    ``INPUT.FORMAT`` and resized by ``ResizeShortestEdge``, with the original size."""
    aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    inputs = []
    for im in images:
        image = utils.read_image(im["file_name"], format=cfg.INPUT.FORMAT)
        resized = aug.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        inputs.append(
            {
                "image": tensor,
                "height": image.shape[0],
                "width": image.shape[1],
                "image_id": im["id"],
                "file_name": im["file_name"],
            }
        )
    return inputs


def run_model(model, inputs: list[dict], batch_size: int = 4) -> list[dict]:
    """The model's outputs of every input, in order, in batches."""
    outputs = []
    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            outputs.extend(model(inputs[i : i + batch_size]))
    return outputs


def instances_to_coco(instances, image_id: int, contiguous_to_dataset: dict) -> list[dict]:
    """COCO results of one image's ``Instances`` (boxes XYWH, dataset category ids, RLE
    masks, flat keypoints)."""
    n = len(instances)
    if n == 0:
        return []
    boxes = instances.pred_boxes.tensor.numpy().copy()
    boxes[:, 2:] -= boxes[:, :2]
    scores = instances.scores.tolist()
    classes = instances.pred_classes.tolist()
    rles = None
    if instances.has("pred_masks"):
        masks = np.asarray(instances.pred_masks.numpy(), dtype=np.uint8, order="F")
        rles = [mask_util.encode(np.asfortranarray(m)) for m in masks]
    keypoints = None
    if instances.has("pred_keypoints"):
        keypoints = instances.pred_keypoints.numpy()
    results = []
    for k in range(n):
        r = {
            "image_id": image_id,
            "category_id": contiguous_to_dataset[classes[k]],
            "bbox": boxes[k].tolist(),
            "score": scores[k],
        }
        if rles is not None:
            r["segmentation"] = rles[k]
        if keypoints is not None:
            r["keypoints"] = keypoints[k].flatten().tolist()
        results.append(r)
    return results


def _iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one XYWH box ``a`` with each of ``b`` (M, 4)."""
    ax1, ay1 = a[0] + a[2], a[1] + a[3]
    bx1, by1 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = iw * ih
    union = a[2] * a[3] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-12)


@dataclass
class MatchReport:
    num_reference: int = 0
    num_matched: int = 0
    num_ours: int = 0
    mask_ious: list = field(default_factory=list)
    keypoints_close: list = field(default_factory=list)
    unmatched: list = field(default_factory=list)

    @property
    def match_rate(self) -> float:
        return self.num_matched / max(self.num_reference, 1)

    @property
    def mean_mask_iou(self) -> float:
        return float(np.mean(self.mask_ious)) if self.mask_ious else float("nan")

    @property
    def keypoint_rate(self) -> float:
        return float(np.mean(self.keypoints_close)) if self.keypoints_close else float("nan")

    def summary(self, name: str) -> str:
        s = (
            f"{name}: matched {self.num_matched}/{self.num_reference} reference detections "
            f"(score >= {MIN_REF_SCORE}) = {100 * self.match_rate:.2f}%; ours {self.num_ours}"
        )
        if self.mask_ious:
            s += f"; mean mask IoU {self.mean_mask_iou:.4f}"
        if self.keypoints_close:
            s += f"; keypoints within 1 px {100 * self.keypoint_rate:.2f}%"
        return s


def match_results(reference: list[dict], ours: list[dict]) -> MatchReport:
    """Match reference detections (score >= 0.05) to ours: same image and category, box IoU
    >= 0.99, |score difference| <= 0.005; each of ours is used at most once (best IoU)."""
    report = MatchReport(num_ours=len(ours))
    by_key = defaultdict(list)
    for r in ours:
        by_key[(r["image_id"], r["category_id"])].append(r)
    used = {k: np.zeros(len(v), dtype=bool) for k, v in by_key.items()}
    boxes = {k: np.array([r["bbox"] for r in v], dtype=np.float64) for k, v in by_key.items()}
    scores = {k: np.array([r["score"] for r in v]) for k, v in by_key.items()}

    for ref in sorted(reference, key=lambda r: -r["score"]):
        if ref["score"] < MIN_REF_SCORE:
            continue
        report.num_reference += 1
        key = (ref["image_id"], ref["category_id"])
        if key not in by_key:
            report.unmatched.append(ref)
            continue
        ious = _iou_xywh(np.asarray(ref["bbox"], dtype=np.float64), boxes[key])
        ok = (ious >= BOX_IOU) & (np.abs(scores[key] - ref["score"]) <= SCORE_DIFF) & ~used[key]
        if not ok.any():
            report.unmatched.append(ref)
            continue
        j = int(np.argmax(np.where(ok, ious, -1)))
        used[key][j] = True
        report.num_matched += 1
        mine = by_key[key][j]
        if "segmentation" in ref and "segmentation" in mine:
            ref_rle = dict(ref["segmentation"])
            if isinstance(ref_rle["counts"], str):
                ref_rle["counts"] = ref_rle["counts"].encode()
            iou = mask_util.iou([mine["segmentation"]], [ref_rle], [0])[0, 0]
            report.mask_ious.append(float(iou))
        if "keypoints" in ref and "keypoints" in mine:
            a = np.asarray(ref["keypoints"]).reshape(-1, 3)[:, :2]
            b = np.asarray(mine["keypoints"]).reshape(-1, 3)[:, :2]
            report.keypoints_close.extend((np.abs(a - b).max(axis=1) <= 1.0).tolist())
    return report


def load_reference(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def sem_seg_argmax_from_predictions(
    predictions: list[dict], dataset_to_contiguous: dict[int, int]
) -> dict[str, np.ndarray]:
    """Per image (file stem), the semantic label map (contiguous ids) of
    ``sem_seg_predictions.json``: one RLE per class present, in dataset ids (the evaluator
    maps through the metadata's ``stuff_dataset_id_to_contiguous_id``)."""
    import ast

    maps: dict[str, np.ndarray] = {}
    for p in predictions:
        rle = p["segmentation"]
        if isinstance(rle, str):  # the reference wrote the RLE dict's repr
            rle = ast.literal_eval(rle)
        rle = dict(rle)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode()
        mask = mask_util.decode(rle).astype(bool)
        stem = Path(p["file_name"]).stem
        if stem not in maps:
            maps[stem] = np.full(mask.shape, -1, dtype=np.int64)
        maps[stem][mask] = dataset_to_contiguous[p["category_id"]]
    return maps
