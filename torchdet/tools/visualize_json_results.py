"""Draw a COCO-format results json over its dataset: predictions beside ground truth
(Detectron2's ``tools/visualize_json_results.py``).

    torchdet visualize-results --input coco_instances_results.json --dataset shapes_val \\
        --output out/ [--conf-threshold 0.5] [--shapes-root DIR]

Each output picture is the image with the predictions (left) and with the annotations (right).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch

from torchdet.data import DatasetCatalog, MetadataCatalog
from torchdet.data.detection_utils import read_image
from torchdet.structures import Boxes, BoxMode, Instances
from torchdet.utils.logger import setup_logger
from torchdet.utils.visualizer import Visualizer

__all__ = ["create_instances", "get_parser", "invoke_main", "main"]


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torchdet visualize-results", description=__doc__.split("\n")[0]
    )
    p.add_argument("--input", required=True, help="COCO results json (a list of detections)")
    p.add_argument("--dataset", required=True, help="the registered dataset they belong to")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--conf-threshold", type=float, default=0.5, help="least score drawn")
    p.add_argument("--max-images", type=int, default=0, help="stop after N images (0: all)")
    p.add_argument(
        "--shapes-root",
        default=os.environ.get("TORCHDET_SHAPES_DIR", ""),
        help="register the synthetic shapes dataset from this folder first",
    )
    return p


def create_instances(
    predictions: list[dict], image_size: tuple[int, int], conf_threshold: float, id_map: dict | None
) -> Instances:
    """An ``Instances`` of one image's COCO results with ``score >= conf_threshold``.

    Args:
        predictions: COCO results (``bbox`` XYWH, ``score``, ``category_id`` in dataset ids,
            optional ``segmentation`` RLE).
        image_size: (height, width).
        id_map: dataset id -> contiguous id (``thing_dataset_id_to_contiguous_id``), or None.
    """
    ret = Instances(image_size)
    keep = [p for p in predictions if p["score"] >= conf_threshold]
    ret.scores = torch.tensor([p["score"] for p in keep], dtype=torch.float32)
    boxes = np.array([p["bbox"] for p in keep], dtype=np.float64).reshape(-1, 4)
    boxes = BoxMode.convert(boxes, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
    ret.pred_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
    try:
        classes = [id_map[p["category_id"]] if id_map else p["category_id"] for p in keep]
    except KeyError as e:
        raise KeyError(f"category id {e.args[0]} of the results is not in the dataset") from e
    ret.pred_classes = torch.tensor(classes, dtype=torch.int64)
    if keep and all("segmentation" in p for p in keep):
        masks = [mask_util.decode(p["segmentation"]) for p in keep]
        ret.pred_masks = torch.from_numpy(np.stack(masks)).bool()
    return ret


def main(args: argparse.Namespace) -> list[str]:
    """Draw and save; returns the written paths."""
    setup_logger()
    if args.shapes_root:
        from torchdet.data.datasets.synthetic import register_shapes

        register_shapes(args.shapes_root)
    with open(args.input) as f:
        results = json.load(f)
    if not isinstance(results, list):
        raise ValueError(f"{args.input}: a COCO results file is a list of detections")
    by_image: dict[int, list[dict]] = defaultdict(list)
    for r in results:
        by_image[r["image_id"]].append(r)
    dicts = DatasetCatalog.get(args.dataset)
    metadata = MetadataCatalog.get(args.dataset)
    id_map = getattr(metadata, "thing_dataset_id_to_contiguous_id", None)
    os.makedirs(args.output, exist_ok=True)
    written = []
    for dic in dicts:
        if args.max_images > 0 and len(written) >= args.max_images:
            break
        img = read_image(dic["file_name"], "RGB")
        preds = create_instances(
            by_image.get(dic["image_id"], []), img.shape[:2], args.conf_threshold, id_map
        )
        vis_pred = Visualizer(img, metadata).draw_instance_predictions(preds).get_image()
        vis_gt = Visualizer(img, metadata).draw_dataset_dict(dic).get_image()
        path = os.path.join(args.output, os.path.basename(dic["file_name"]))
        if not cv2.imwrite(path, np.concatenate([vis_pred, vis_gt], axis=1)[:, :, ::-1]):
            raise OSError(f"visualize-results: cannot write {path}")
        written.append(path)
    return written


def invoke_main(argv: list[str] | None = None) -> int:
    main(get_parser().parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(invoke_main())
