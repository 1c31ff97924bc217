"""Seconds per image on CPU: eager torchdet vs its TorchScript export vs its ONNX export in ONNX
Runtime, for the parity Mask R-CNN (shapes val images) and a full-width R50-FPN Mask R-CNN
(random weights, 800x1333 random image).

    .venv/bin/python benchmarks/export.py [--threads 2] [--repeats 5] [--json out.json]
        [--skip-full] [--skip-torchscript]

Each row gives the median wall-clock seconds per image and the median CPU seconds (process time,
all threads) per image; the CPU time is the better comparison on a shared, loaded machine. The
exported graphs stop before mask pasting (see torchdet/export/inference.py), so every backend is
timed on the same work: eager runs ``model.inference(..., do_postprocess=False)``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torchdet.checkpoint import DetectionCheckpointer  # noqa: E402
from torchdet.config import get_cfg  # noqa: E402
from torchdet.data import detection_utils as utils  # noqa: E402
from torchdet.data import transforms as T  # noqa: E402
from torchdet.export import export_inference_func, export_onnx, export_torchscript  # noqa: E402
from torchdet.model_zoo import get_config_file  # noqa: E402
from torchdet.modeling import build_model  # noqa: E402

PARITY = ROOT.parent / "shared" / "parity" / "models" / "mask_rcnn_R50_FPN"
SHAPES_VAL = ROOT.parent / "shared" / "data" / "shapes" / "val" / "images"


def _time(fn, images: list[torch.Tensor], repeats: int) -> tuple[float, float]:
    """Median (wall, cpu) seconds per image over ``repeats`` passes after one warm-up pass."""
    for x in images:
        fn(x)
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for x in images:
            fn(x)
        walls.append((time.perf_counter() - w0) / len(images))
        cpus.append((time.process_time() - c0) / len(images))
    return statistics.median(walls), statistics.median(cpus)


def _bench_model(name, model, sample, images, repeats, torchscript: bool) -> list[dict]:
    import onnxruntime as ort

    rows = []
    infer = export_inference_func(model)

    def eager(x):
        with torch.no_grad():
            return infer(model, x)

    rows.append(("eager", *_time(eager, images, repeats)))
    print(f"{name}: eager {rows[-1][1]:.3f} s/img wall, {rows[-1][2]:.3f} cpu", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if torchscript:
            program, _ = export_torchscript(model, sample)

            def ts(x):
                with torch.no_grad(), torch.jit.optimized_execution(False):
                    return program(x)

            rows.append(("torchscript", *_time(ts, images, repeats)))
            print(f"{name}: torchscript {rows[-1][1]:.3f} s/img wall", flush=True)
        path = Path(tmp) / "model.onnx"
        export_onnx(model, sample, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def onnx(x):
            return session.run(None, {"image": x.numpy()})

        rows.append(("onnxruntime", *_time(onnx, images, repeats)))
        print(f"{name}: onnxruntime {rows[-1][1]:.3f} s/img wall", flush=True)
    eager_wall, eager_cpu = rows[0][1], rows[0][2]
    return [
        {
            "model": name,
            "backend": backend,
            "seconds_per_image": wall,
            "cpu_seconds_per_image": cpu,
            "speedup_vs_eager_wall": eager_wall / wall,
            "speedup_vs_eager_cpu": eager_cpu / cpu,
        }
        for backend, wall, cpu in rows
    ]


def _parity_model():
    cfg = get_cfg()
    cfg.merge_from_file(str(PARITY / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(PARITY / "model_final.pth"))
    model.eval()
    aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    images = []
    for f in sorted(SHAPES_VAL.iterdir())[:9]:
        image = utils.read_image(str(f), format=cfg.INPUT.FORMAT)
        resized = aug.get_transform(image).apply_image(image)
        images.append(torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))))
    return model, images[0], images[1:]


def _full_model():
    cfg = get_cfg()
    cfg.merge_from_file(get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 800, 1333), dtype=torch.uint8, generator=generator)
    sample = torch.randint(0, 256, (3, 800, 1216), dtype=torch.uint8, generator=generator)
    return model, sample, [image]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--skip-full", action="store_true", help="parity model only")
    parser.add_argument("--skip-torchscript", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")

    results = []
    if PARITY.is_dir():
        model, sample, images = _parity_model()
        results += _bench_model(
            "parity mask_rcnn_R50_FPN (shapes val)",
            model,
            sample,
            images,
            args.repeats,
            not args.skip_torchscript,
        )
    if not args.skip_full:
        model, sample, images = _full_model()
        results += _bench_model(
            "R50-FPN Mask R-CNN 800x1333 (random weights)",
            model,
            sample,
            images,
            max(1, args.repeats // 2),
            not args.skip_torchscript,
        )

    columns = ("s/img", "cpu s/img", "x wall", "x cpu")
    header = f"{'model':46s} {'backend':12s} " + " ".join(f"{c:>9s}" for c in columns)
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['model']:46s} {r['backend']:12s} {r['seconds_per_image']:9.3f} "
            f"{r['cpu_seconds_per_image']:9.3f} {r['speedup_vs_eager_wall']:9.2f} "
            f"{r['speedup_vs_eager_cpu']:9.2f}"
        )
    payload = {"threads": args.threads, "torch": torch.__version__, "results": results}
    text = json.dumps(payload, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
