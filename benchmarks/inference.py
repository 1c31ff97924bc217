"""Inference speed, peak memory and accuracy of torchdet, against the reference's figures.

Two parts, each job in its own subprocess so that its peak memory (max RSS) is its own:

* ``parity``: each of the 8 small reference models of ``shared/parity/models`` runs over the 60
  shapes val images through ``inference_on_dataset`` and the dataset's evaluators, in fp32 and in
  bf16 (``torch.autocast`` on CPU). Printed: seconds per image, evaluation wall time against
  the reference's ``eval_seconds_*`` (``results.json``, the same 60 images, also with
  evaluation), peak RSS, and the main metric (box AP, or PQ) against the reference's.
* ``fullsize``: full-width R50-FPN models of the model zoo with random weights on a random
  800x1333 image, batch 1 and 4, against ``shared/parity/fullsize_timings.json``.

Usage::

    python benchmarks/inference.py [--part parity fullsize] [--modes fp32 bf16] [--out out.json]

Threads are set to the number of cores (2 on the project machines, as in the reference).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARITY = Path(os.environ.get("TORCHDET_PARITY_DIR", REPO.parent / "shared" / "parity"))
SHAPES = Path(os.environ.get("TORCHDET_SHAPES_DIR", REPO.parent / "shared" / "data" / "shapes"))
PARITY_MODELS = [
    "faster_rcnn_R50_FPN",
    "mask_rcnn_R50_FPN",
    "mask_rcnn_R50_C4",
    "mask_rcnn_R50_DC5",
    "cascade_mask_rcnn_R50_FPN",
    "retinanet_R50_FPN",
    "keypoint_rcnn_R50_FPN",
    "panoptic_fpn_R50",
]
FULLSIZE = [
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml",
    "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml",
    "COCO-Detection/retinanet_R_50_FPN_3x.yaml",
]


def _register_shapes(split: str) -> None:
    """Register the shapes split under the names the reference used (see parity README)."""
    from torchdet.data import DatasetCatalog, MetadataCatalog
    from torchdet.data.datasets import register_coco_instances, register_coco_panoptic_separated

    root = SHAPES / split
    if f"shapes_{split}" in DatasetCatalog.list():
        return
    register_coco_instances(f"shapes_{split}", {}, root / "instances.json", root / "images")
    register_coco_instances(f"shapes_kp_{split}", {}, root / "keypoints.json", root / "images")
    MetadataCatalog.get(f"shapes_kp_{split}").set(
        keypoint_names=["apex", "base_left", "base_right"],
        keypoint_flip_map=[("base_left", "base_right")],
    )
    register_coco_panoptic_separated(
        f"shapes_pan_{split}",
        {
            "stuff_classes": ["things", "sky", "ground"],
            "stuff_dataset_id_to_contiguous_id": {0: 0, 4: 1, 5: 2},
        },
        root / "images",
        root / "panoptic",
        root / "panoptic.json",
        root / "panoptic_stuff",
        root / "instances.json",
    )


def _evaluators(dataset: str, output_dir: str) -> list:
    from torchdet.evaluation import COCOEvaluator, COCOPanopticEvaluator, SemSegEvaluator

    evaluators = [COCOEvaluator(dataset, output_dir=output_dir, distributed=False)]
    if "_pan_" in dataset:
        evaluators.append(SemSegEvaluator(dataset, distributed=False, output_dir=output_dir))
        evaluators.append(COCOPanopticEvaluator(dataset, output_dir=output_dir))
    return evaluators


def _autocast(mode: str):
    import contextlib

    import torch

    if mode == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_parity_job(name: str, mode: str) -> dict:
    """One parity model over the val split: timing, peak memory and metrics."""
    import tempfile

    import torch

    from torchdet.checkpoint import DetectionCheckpointer
    from torchdet.config import get_cfg
    from torchdet.data import build_detection_test_loader
    from torchdet.evaluation import DatasetEvaluators, inference_on_dataset
    from torchdet.modeling import build_model

    model_dir = PARITY / "models" / name
    reference = json.loads((model_dir / "results.json").read_text())
    eval_key = next(k for k in reference if k.startswith("eval_") and "seconds" not in k)
    dataset = eval_key[len("eval_") :].replace("_separated", "") + (
        "_separated" if eval_key.endswith("_separated") else ""
    )
    _register_shapes("val")
    cfg = get_cfg()
    cfg.merge_from_file(str(model_dir / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(model_dir / "model_final.pth"))
    model.eval()
    loader = build_detection_test_loader(cfg, dataset)

    class _Timed:  # pure model time per image, excluding data loading and evaluation
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def __call__(self, batch):
            start = time.perf_counter()
            with _autocast(mode):
                out = model(batch)
            self.seconds.append(time.perf_counter() - start)
            return out

    timed = _Timed()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        results = inference_on_dataset(timed, loader, DatasetEvaluators(_evaluators(dataset, tmp)))
        wall = time.perf_counter() - start
    model_seconds = sorted(timed.seconds[5:])
    ref_metrics = reference[eval_key]
    task = "panoptic_seg" if "panoptic_seg" in ref_metrics else "bbox"
    metric = "PQ" if task == "panoptic_seg" else "AP"
    return {
        "model": name,
        "mode": mode,
        "threads": torch.get_num_threads(),
        "seconds_per_image_median": model_seconds[len(model_seconds) // 2],
        "eval_wall_seconds": wall,
        "reference_eval_seconds": reference[f"eval_seconds_{dataset}"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "metric": f"{task}/{metric}",
        "value": results[task][metric],
        "reference_value": ref_metrics[task][metric],
        "all_metrics": {
            t: {k: v for k, v in m.items() if "-" not in k} for t, m in results.items()
        },
    }


def run_fullsize_job(config: str, mode: str, batch: int, repeats: int = 3) -> dict:
    """A full-width zoo model, random weights, random 800x1333 images."""
    import torch

    from torchdet import model_zoo
    from torchdet.modeling import build_model

    cfg = model_zoo.get_config(config)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    inputs = [
        {"image": torch.randint(0, 256, (3, 800, 1333), dtype=torch.uint8, generator=gen)}
        for _ in range(batch)
    ]
    seconds = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            with _autocast(mode):
                model(inputs)
            seconds.append((time.perf_counter() - start) / batch)
    seconds = sorted(seconds[1:])  # first run is warm-up
    reference = json.loads((PARITY / "fullsize_timings.json").read_text())["results"]
    ref = reference.get(config, {}).get("seconds_per_image_median_of_3")
    return {
        "model": config,
        "mode": mode,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "seconds_per_image_median": seconds[len(seconds) // 2],
        "reference_seconds_per_image": ref,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _subprocess(args: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--job", *args], capture_output=True, text=True, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"job": args, "error": proc.stderr.strip().splitlines()[-1:] or ["no output"]}
    return json.loads(lines[-1])


def _fmt(x, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", nargs="+", default=["parity", "fullsize"])
    parser.add_argument("--modes", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--models", nargs="+", default=PARITY_MODELS)
    parser.add_argument("--fullsize-configs", nargs="+", default=FULLSIZE)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--out", default="output/benchmarks/inference.json")
    parser.add_argument("--job", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    if args.job:
        kind, *rest = args.job
        if kind == "parity":
            result = run_parity_job(rest[0], rest[1])
        else:
            result = run_fullsize_job(rest[0], rest[1], int(rest[2]))
        print(json.dumps(result))
        return

    from tabulate import tabulate

    report: dict[str, list] = {"parity": [], "fullsize": []}
    if "parity" in args.part:
        if not (PARITY / "models").is_dir():
            sys.exit(f"parity bundle not found at {PARITY} (set TORCHDET_PARITY_DIR)")
        rows = []
        for name in args.models:
            for mode in args.modes:
                r = _subprocess(["parity", name, mode])
                report["parity"].append(r)
                if "error" in r:
                    rows.append([name, mode, "error: " + " ".join(r["error"])] + [""] * 6)
                    continue
                rows.append([
                    name, mode, _fmt(r["seconds_per_image_median"]),
                    _fmt(r["eval_wall_seconds"], ".1f"), _fmt(r["reference_eval_seconds"], ".1f"),
                    _fmt(r["reference_eval_seconds"] / r["eval_wall_seconds"], ".2f"),
                    _fmt(r["peak_rss_mb"], ".0f"), r["metric"],
                    f"{r['value']:.2f} / {r['reference_value']:.2f}",
                ])  # fmt: skip
        print(tabulate(rows, headers=[
            "parity model", "mode", "s/img (model)", "eval s", "ref eval s", "speed-up",
            "peak MB", "metric", "ours / ref",
        ]))  # fmt: skip
    if "fullsize" in args.part:
        rows = []
        for config in args.fullsize_configs:
            for mode in args.modes:
                for batch in args.batches:
                    r = _subprocess(["fullsize", config, mode, str(batch)])
                    report["fullsize"].append(r)
                    if "error" in r:
                        rows.append([config, mode, batch, "error: " + " ".join(r["error"])])
                        continue
                    ref = r["reference_seconds_per_image"]
                    speedup = ref / r["seconds_per_image_median"] if ref else None
                    rows.append([
                        config, mode, batch, _fmt(r["seconds_per_image_median"]), _fmt(ref),
                        _fmt(speedup, ".2f"), _fmt(r["peak_rss_mb"], ".0f"),
                    ])  # fmt: skip
        print(tabulate(rows, headers=[
            "800x1333 model", "mode", "batch", "s/img", "ref s/img (fp32, b1)", "speed-up",
            "peak MB",
        ]))  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
