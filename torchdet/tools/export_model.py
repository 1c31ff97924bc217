"""Export a model to TorchScript, ONNX or a torch.export program (Detectron2's
``tools/deploy/export_model.py``).

    torchdet export --config-file cfg.yaml --format onnx --output out/ \
        [--sample-image img.jpg] [--run-eval] [MODEL.WEIGHTS model.pth ...]

Writes ``out/model.onnx`` / ``out/model.ts`` / ``out/model.pt2`` and ``out/outputs_schema.pkl``
(the pickled schema that rebuilds the flat outputs into ``Instances``; optional at run time).
The graph takes one image ``Tensor[C, H, W]`` already resized by the config's test-time
``ResizeShortestEdge`` and in ``INPUT.FORMAT``.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import time

import numpy as np
import torch

from torchdet.checkpoint import DetectionCheckpointer
from torchdet.data import detection_utils as utils
from torchdet.data import transforms as T
from torchdet.export import export_onnx, export_torchscript, postprocess_outputs
from torchdet.export.torch_export import export_program
from torchdet.modeling import build_model

from .common import load_config

__all__ = ["get_parser", "invoke_main"]

logger = logging.getLogger("torchdet.tools.export_model")

_FILES = {"onnx": "model.onnx", "torchscript": "model.ts", "torch_export": "model.pt2"}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchdet export", description="Export a model for deployment."
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="config or zoo name")
    parser.add_argument("--format", choices=sorted(_FILES), default="onnx")
    parser.add_argument(
        "--export-method",
        choices=["tracing"],
        default="tracing",
        help="only tracing is supported (see torchdet/export/README.md)",
    )
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument(
        "--sample-image", default="", help="image to trace with (default: a random image)"
    )
    parser.add_argument(
        "--run-eval",
        action="store_true",
        help="run the exported model on the sample image and compare with eager",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    return parser


def _sample_input(cfg, path: str) -> dict:
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--sample-image {path!r} does not exist")
        image = utils.read_image(path, format=cfg.INPUT.FORMAT)
    else:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST * 4 // 3, 3))
        image = image.astype(np.uint8)
    aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    resized = aug.get_transform(image).apply_image(image)
    tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    return {"image": tensor, "height": image.shape[0], "width": image.shape[1]}


def _run_exported(fmt: str, path: str, image: torch.Tensor) -> tuple:
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return tuple(torch.from_numpy(o) for o in session.run(None, {"image": image.numpy()}))
    if fmt == "torchscript":
        with torch.jit.optimized_execution(False):
            return torch.jit.load(path)(image)
    return torch.export.load(path).module()(image)


def invoke_main(argv: list[str] | None = None) -> int:
    """Run ``torchdet export``; returns the exit status."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    cfg = load_config(args, freeze=False)
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    sample = _sample_input(cfg, args.sample_image)
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, _FILES[args.format])
    start = time.perf_counter()
    if args.format == "onnx":
        adapter = export_onnx(model, sample["image"], path)
    elif args.format == "torchscript":
        _, adapter = export_torchscript(model, sample["image"], path)
    else:
        program, adapter = export_program(model, sample["image"])
        torch.export.save(program, path)
    logger.info("exported %s in %.1f s", path, time.perf_counter() - start)
    with open(os.path.join(args.output, "outputs_schema.pkl"), "wb") as f:
        pickle.dump(adapter.outputs_schema, f)

    if args.run_eval:
        flat = _run_exported(args.format, path, sample["image"])
        size = tuple(sample["image"].shape[-2:])
        got = postprocess_outputs(
            model, adapter.outputs_schema(flat), size, sample["height"], sample["width"]
        )
        with torch.no_grad():
            ref = model([sample])[0]
        if "instances" in ref:
            n_ref, n_got = len(ref["instances"]), len(got["instances"])
            logger.info("eager: %d detections, exported: %d", n_ref, n_got)
            if n_ref != n_got:
                print(f"MISMATCH: eager {n_ref} detections, exported {n_got}")
                return 1
        print(f"exported model runs; outputs match eager on the sample ({path})")
    return 0
