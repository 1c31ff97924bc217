"""Draw a dataset's ground truth, or what the train loader feeds the model
(Detectron2's ``tools/visualize_data.py``).

    torchdet visualize-data --config-file CFG --source annotation --output-dir out/ \\
        [--shapes-root DIR] [--max-images N] [--opts KEY VALUE ...]
    torchdet visualize-data --config-file CFG --source dataloader --output-dir out/

``annotation`` draws every dict of ``DATASETS.TRAIN`` as registered (boxes, masks, keypoints,
segmentations); ``dataloader`` draws the train loader's augmented images with their
``instances`` (resized, flipped, ...), which is what training sees.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

import cv2

from torchdet.config import CfgNode, get_cfg
from torchdet.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader
from torchdet.data.detection_utils import convert_image_to_rgb, read_image
from torchdet.utils.logger import setup_logger
from torchdet.utils.visualizer import Visualizer

__all__ = ["get_parser", "invoke_main", "main"]


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchdet visualize-data", description=__doc__.split("\n")[0])
    p.add_argument("--config-file", required=True, metavar="FILE", help="config file or zoo name")
    p.add_argument("--source", choices=["annotation", "dataloader"], required=True)
    p.add_argument("--output-dir", required=True, help="folder for the drawings")
    p.add_argument("--max-images", type=int, default=0, help="stop after N images (0: all)")
    p.add_argument("--scale", type=float, default=1.0, help="drawing scale")
    p.add_argument(
        "--shapes-root",
        default=os.environ.get("TORCHDET_SHAPES_DIR", ""),
        help="register the synthetic shapes dataset from this folder first",
    )
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    return p


def _setup_cfg(args: argparse.Namespace) -> CfgNode:
    config_file = args.config_file
    if not os.path.isfile(config_file):
        from torchdet.model_zoo import get_config_file

        config_file = get_config_file(config_file)
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(args.opts))
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.freeze()
    return cfg


def main(args: argparse.Namespace) -> list[str]:
    """Draw and save; returns the written paths."""
    setup_logger()
    if args.shapes_root:
        from torchdet.data.datasets.synthetic import register_shapes

        register_shapes(args.shapes_root)
    cfg = _setup_cfg(args)
    if len(cfg.DATASETS.TRAIN) == 0:
        raise ValueError("visualize-data: cfg.DATASETS.TRAIN is empty")
    os.makedirs(args.output_dir, exist_ok=True)
    metadata = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
    limit = args.max_images if args.max_images > 0 else None
    written: list[str] = []

    def save(vis_rgb, name: str) -> None:
        path = os.path.join(args.output_dir, name)
        if not cv2.imwrite(path, vis_rgb[:, :, ::-1]):
            raise OSError(f"visualize-data: cannot write {path}")
        written.append(path)

    if args.source == "annotation":
        dicts = itertools.chain.from_iterable(DatasetCatalog.get(k) for k in cfg.DATASETS.TRAIN)
        for dic in itertools.islice(dicts, limit):
            img = read_image(dic["file_name"], "RGB")
            vis = Visualizer(img, metadata, scale=args.scale).draw_dataset_dict(dic)
            save(vis.get_image(), os.path.basename(dic["file_name"]))
        return written

    loader = build_detection_train_loader(cfg)
    thing_classes = getattr(metadata, "thing_classes", None)
    for batch in loader:
        for per_image in batch:
            img = per_image["image"].permute(1, 2, 0).cpu().numpy()
            img = convert_image_to_rgb(img, cfg.INPUT.FORMAT)
            vis = Visualizer(img, metadata, scale=args.scale)
            target = per_image["instances"]
            classes = target.gt_classes.tolist()
            labels = [thing_classes[i] for i in classes] if thing_classes else None
            vis.overlay_instances(
                labels=labels,
                boxes=target.gt_boxes if target.has("gt_boxes") else None,
                masks=target.gt_masks if target.has("gt_masks") else None,
                keypoints=target.gt_keypoints if target.has("gt_keypoints") else None,
            )
            # an image may come several times (the loader is infinite): number the drawings
            save(vis.output.get_image(), f"{len(written):05d}_{per_image['image_id']}.jpg")
            if limit is not None and len(written) >= limit:
                return written
        if limit is None:
            raise ValueError("visualize-data: --source dataloader needs --max-images (endless)")
    return written


def invoke_main(argv: list[str] | None = None) -> int:
    main(get_parser().parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(invoke_main())
