"""Run a model on images or a video and draw its predictions (Detectron2's ``demo/demo.py``).

    torchdet demo --config-file CFG --input a.jpg folder/ 'glob*.png' --output out/ \\
        [--confidence-threshold 0.5] [--opts MODEL.WEIGHTS model_final.pth ...]
    torchdet demo --config-file CFG --video-input clip.mp4 --output out/
    torchdet demo --config-file CFG --webcam --output out/   # records camera 0

Images: each input (a file, a folder of images or a glob pattern) is drawn to
``<output>/<file name>`` and all predictions go to ``<output>/predictions.json``: per image its
``file_name``, ``height``, ``width`` and ``instances`` (``bbox`` XYXY absolute, ``score``,
``category_id`` (contiguous), ``category_name``, ``segmentation`` (COCO RLE) and ``keypoints``
when the model predicts them). Videos are drawn frame by frame with ``VideoVisualizer`` and a
``BBoxIOUTracker``, so an object keeps its colour, into ``<output>/<video name>.mp4``.

Class names come from the metadata of ``DATASETS.TEST[0]``; ``--shapes-root DIR`` registers the
synthetic shapes dataset first (as the quickstart model needs).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
import time
from typing import Any

import cv2
import numpy as np
import pycocotools.mask as mask_util

from torchdet.config import CfgNode, get_cfg
from torchdet.data import MetadataCatalog
from torchdet.engine import DefaultPredictor
from torchdet.utils.logger import setup_logger
from torchdet.utils.video_visualizer import VideoVisualizer
from torchdet.utils.visualizer import ColorMode, Visualizer

__all__ = ["collect_inputs", "get_parser", "instances_to_json", "invoke_main", "main", "setup_cfg"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
logger = logging.getLogger("torchdet.demo")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchdet demo", description="torchdet inference demo")
    p.add_argument("--config-file", required=True, metavar="FILE", help="config file or zoo name")
    p.add_argument("--input", nargs="+", default=[], help="images, folders or glob patterns")
    p.add_argument("--video-input", default="", help="a video file")
    p.add_argument("--webcam", action="store_true", help="read camera 0 (needs --output)")
    p.add_argument("--output", default="", help="output folder (or a file for one input)")
    p.add_argument("--confidence-threshold", type=float, default=0.5)
    p.add_argument("--max-frames", type=int, default=0, help="stop videos after N frames (0: all)")
    p.add_argument(
        "--shapes-root",
        default=os.environ.get("TORCHDET_SHAPES_DIR", ""),
        help="register the synthetic shapes dataset from this folder (class names)",
    )
    p.add_argument(
        "--opts", nargs=argparse.REMAINDER, default=[], help="config overrides KEY VALUE ..."
    )
    return p


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    """The config of the command line, with score thresholds set to ``--confidence-threshold``."""
    config_file = args.config_file
    if not os.path.isfile(config_file):
        from torchdet.model_zoo import get_config_file

        config_file = get_config_file(config_file)
    if len(args.opts) % 2:
        raise ValueError(f"--opts takes KEY VALUE pairs, got {args.opts}")
    if not 0.0 <= args.confidence_threshold <= 1.0:
        raise ValueError(
            f"--confidence-threshold must be in [0, 1], got {args.confidence_threshold}"
        )
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(args.opts))
    t = args.confidence_threshold
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = t
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = t
    cfg.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = t
    cfg.freeze()
    return cfg


def collect_inputs(patterns: list[str]) -> list[str]:
    """Expand files, folders (their images, sorted) and glob patterns, keeping order.

    Raises:
        FileNotFoundError: a pattern matches nothing.
    """
    files: list[str] = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = sorted(
                os.path.join(pattern, f)
                for f in os.listdir(pattern)
                if f.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif os.path.isfile(pattern):
            found = [pattern]
        else:
            found = sorted(glob.glob(os.path.expanduser(pattern)))
        if not found:
            raise FileNotFoundError(f"--input {pattern!r}: no such file, folder or matching image")
        files.extend(found)
    return list(dict.fromkeys(files))  # drop duplicates, keep order


def instances_to_json(instances: Any, class_names: list[str] | None) -> list[dict]:
    """JSON-able records of an ``Instances`` of predictions (on CPU)."""
    n = len(instances)
    boxes = instances.pred_boxes.tensor.tolist() if instances.has("pred_boxes") else [None] * n
    scores = instances.scores.tolist() if instances.has("scores") else [None] * n
    classes = instances.pred_classes.tolist() if instances.has("pred_classes") else [None] * n
    rles: list[Any] = [None] * n
    if instances.has("pred_masks") and n:
        masks = np.asarray(instances.pred_masks, dtype=np.uint8)
        rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
    keypoints = instances.pred_keypoints.tolist() if instances.has("pred_keypoints") else None
    out = []
    for i in range(n):
        rec: dict[str, Any] = {"bbox": [round(v, 2) for v in boxes[i]] if boxes[i] else None}
        rec["bbox_mode"] = "XYXY_ABS"
        rec["score"] = round(scores[i], 4) if scores[i] is not None else None
        rec["category_id"] = classes[i]
        if class_names and classes[i] is not None and 0 <= classes[i] < len(class_names):
            rec["category_name"] = class_names[classes[i]]
        if rles[i] is not None:
            rles[i]["counts"] = rles[i]["counts"].decode("ascii")
            rec["segmentation"] = rles[i]
        if keypoints is not None:
            rec["keypoints"] = [[round(v, 2) for v in kp] for kp in keypoints[i]]
        out.append(rec)
    return out


def _draw(predictions: dict, image_rgb: np.ndarray, metadata: Any) -> np.ndarray:
    vis = Visualizer(image_rgb, metadata, instance_mode=ColorMode.IMAGE)
    if "panoptic_seg" in predictions:
        seg, info = predictions["panoptic_seg"]
        out = vis.draw_panoptic_seg(seg.to("cpu"), info)
    else:
        if "sem_seg" in predictions:
            vis.draw_sem_seg(predictions["sem_seg"].argmax(dim=0).to("cpu"))
        if "instances" in predictions:
            vis.draw_instance_predictions(predictions["instances"].to("cpu"))
        out = vis.output
    return out.get_image()


def run_on_images(cfg: CfgNode, files: list[str], output: str) -> list[dict]:
    """Predict, draw and record every image; returns the ``predictions.json`` records."""
    predictor = DefaultPredictor(cfg)
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0]) if len(cfg.DATASETS.TEST) else None
    class_names = getattr(metadata, "thing_classes", None) if metadata is not None else None
    single_file = bool(output) and len(files) == 1 and output.lower().endswith(IMAGE_EXTENSIONS)
    if output and not single_file:
        os.makedirs(output, exist_ok=True)
    records = []
    for path in files:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"--input: cannot read {path} as an image")
        start = time.perf_counter()
        predictions = predictor(img)
        n = len(predictions["instances"]) if "instances" in predictions else 0
        logger.info("%s: %d instances in %.2f s", path, n, time.perf_counter() - start)
        drawn = _draw(predictions, img[:, :, ::-1], metadata)
        if output:
            target = output if single_file else os.path.join(output, os.path.basename(path))
            if not cv2.imwrite(target, drawn[:, :, ::-1]):
                raise OSError(f"cannot write {target}")
        rec: dict[str, Any] = {"file_name": path, "height": img.shape[0], "width": img.shape[1]}
        if "instances" in predictions:
            rec["instances"] = instances_to_json(predictions["instances"].to("cpu"), class_names)
        records.append(rec)
    if output:
        folder = os.path.dirname(output) if single_file else output
        with open(os.path.join(folder or ".", "predictions.json"), "w") as f:
            json.dump(records, f)
    return records


def run_on_video(cfg: CfgNode, source: str | int, output: str, max_frames: int = 0) -> int:
    """Draw every frame of a video (or camera ``source`` 0) into ``<output>/<name>.mp4``;
    returns the number of frames written."""
    from torchdet.tracking import BBoxIOUTracker

    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video source {source!r}")
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS) or 15.0
    predictor = DefaultPredictor(cfg)
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0]) if len(cfg.DATASETS.TEST) else None
    tracker = BBoxIOUTracker(video_height=max(height, 1), video_width=max(width, 1))
    visualizer = VideoVisualizer(metadata, ColorMode.IMAGE)
    os.makedirs(output, exist_ok=True)
    name = "webcam" if isinstance(source, int) else os.path.splitext(os.path.basename(source))[0]
    target = os.path.join(output, name + ".mp4")
    writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    count = 0
    try:
        while max_frames <= 0 or count < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            instances = predictor(frame)["instances"].to("cpu")
            instances = tracker.update(instances)
            drawn = visualizer.draw_instance_predictions(frame[:, :, ::-1], instances)
            writer.write(np.ascontiguousarray(drawn.get_image()[:, :, ::-1]))
            count += 1
    finally:
        cap.release()
        writer.release()
    logger.info("wrote %d frames to %s", count, target)
    return count


def main(args: argparse.Namespace) -> Any:
    setup_logger(name="torchdet.demo")
    setup_logger()
    if args.shapes_root:
        from torchdet.data.datasets.synthetic import register_shapes

        register_shapes(args.shapes_root)
    sources = bool(args.input) + bool(args.video_input) + bool(args.webcam)
    if sources != 1:
        raise ValueError("give exactly one of --input, --video-input and --webcam")
    cfg = setup_cfg(args)
    if args.input:
        return run_on_images(cfg, collect_inputs(args.input), args.output)
    if not args.output:
        # opencv-python-headless has no windows: the frames can only be written
        raise ValueError("--video-input and --webcam need --output (no display window here)")
    if args.video_input and not os.path.isfile(args.video_input):
        raise FileNotFoundError(f"--video-input: no such file {args.video_input}")
    source: str | int = args.video_input if args.video_input else 0
    return run_on_video(cfg, source, args.output, args.max_frames)


def invoke_main(argv: list[str] | None = None) -> int:
    """Entry point of ``torchdet demo`` and ``python -m torchdet.tools.demo``."""
    main(get_parser().parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(invoke_main())
