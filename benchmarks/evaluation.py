"""Time COCO bbox + segm evaluation: torchdet's COCOEvaluator against plain pycocotools.

Usage:
    .venv/bin/python benchmarks/evaluation.py [--images 5000] [--dets 100] [--out eval.json]

Synthetic data (seeded): 480x640 images with 1-15 ground-truth objects each (80 categories,
polygon masks, sizes spanning the small/medium/large ranges, 5% crowd), and ``--dets``
detections per image: jittered copies of the ground truth (true positives at various IoUs, some
with the wrong category) plus random boxes from the categories present, with RLE masks. Both
paths get the same records in the same process:

- ``pycocotools``: ``loadRes`` + ``COCOeval.evaluate/accumulate/summarize`` per task;
- ``torchdet``: ``COCOEvaluator.evaluate_results`` (record checks, ``loadRes`` and
  :class:`~torchdet.evaluation.fast_eval_api.COCOeval_opt`), the path ``evaluate()`` takes.

The table gives wall-clock and CPU (process) seconds per task and the speed-ups; CPU time is
the steadier figure on a shared machine. The run fails if any statistic differs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tabulate import tabulate

from torchdet.data.datasets import register_coco_instances
from torchdet.evaluation import COCOEvaluator

H, W = 480, 640
NUM_CATS = 80


def _polygon(x: float, y: float, w: float, h: float, rng: np.random.Generator) -> list[float]:
    """An octagon-ish polygon inside the box (so mask and box areas differ)."""
    t = np.linspace(0, 2 * np.pi, 8, endpoint=False) + rng.uniform(0, 0.5)
    px = x + w / 2 + (w / 2) * np.cos(t)
    py = y + h / 2 + (h / 2) * np.sin(t)
    return np.stack([px, py], 1).ravel().round(2).tolist()


def make_data(num_images: int, dets_per_image: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """Synthetic COCO ground truth and detection records (see the module docstring)."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    ann_id = 1
    for img_id in range(1, num_images + 1):
        images.append({"id": img_id, "file_name": f"{img_id:06d}.jpg", "height": H, "width": W})
        n_gt = int(rng.integers(1, 16))
        sizes = np.exp(rng.uniform(np.log(8), np.log(300), (n_gt, 2)))
        xy = rng.uniform(0, 1, (n_gt, 2)) * (np.array([W, H]) - sizes)
        cats = rng.integers(1, NUM_CATS + 1, n_gt)
        gt_boxes = []
        for (x, y), (w, h), c in zip(xy, sizes, cats):
            poly = _polygon(x, y, w, h, rng)
            rle = mask_util.frPyObjects([poly], H, W)
            anns.append(
                {
                    "id": ann_id,
                    "image_id": img_id,
                    "category_id": int(c),
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(mask_util.area(rle).sum()),
                    "iscrowd": int(rng.uniform() < 0.05),
                    "segmentation": [poly],
                }
            )
            gt_boxes.append((x, y, w, h, int(c)))
            ann_id += 1
        # detections: jittered ground truth first, then random boxes
        boxes, labels = [], []
        for x, y, w, h, c in gt_boxes:
            for _ in range(int(rng.integers(1, 4))):
                j = rng.normal(0, 0.08, 4) * np.array([w, h, w, h])
                boxes.append([x + j[0], y + j[1], max(w + j[2], 2), max(h + j[3], 2)])
                labels.append(c if rng.uniform() < 0.85 else int(rng.integers(1, NUM_CATS + 1)))
        present = sorted({c for *_, c in gt_boxes})
        n_rand = max(dets_per_image - len(boxes), 0)
        sz = np.exp(rng.uniform(np.log(8), np.log(300), (n_rand, 2)))
        pos = rng.uniform(0, 1, (n_rand, 2)) * (np.array([W, H]) - sz)
        boxes += np.concatenate([pos, sz], 1).tolist()
        labels += rng.choice(present, n_rand).tolist()
        boxes, labels = boxes[:dets_per_image], labels[:dets_per_image]
        scores = rng.uniform(0.05, 1, len(boxes)).round(4)  # rounded: ties happen
        polys = [_polygon(*b, rng) for b in boxes]
        rles = mask_util.frPyObjects(polys, H, W)
        for b, c, s, r in zip(boxes, labels, scores, rles):
            r["counts"] = r["counts"].decode("utf-8")
            dets.append(
                {
                    "image_id": img_id,
                    "category_id": int(c),
                    "bbox": [float(v) for v in b],
                    "score": float(s),
                    "segmentation": r,
                }
            )
    cats = [{"id": c, "name": f"cat{c}"} for c in range(1, NUM_CATS + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def run_pycocotools(gt_file: str, dets: list[dict], task: str) -> tuple[float, float, np.ndarray]:
    """Wall and CPU seconds and stats of plain pycocotools (ground-truth loading not timed)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_file)
        records = [dict(d) for d in dets]
        if task == "segm":
            for r in records:
                r.pop("bbox")
        t0, c0 = time.perf_counter(), time.process_time()
        ev = COCOeval(gt, gt.loadRes(records), task)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return time.perf_counter() - t0, time.process_time() - c0, ev.stats


def run_torchdet(dataset: str, dets: list[dict], task: str) -> tuple[float, float, np.ndarray]:
    """Wall and CPU seconds and stats of COCOEvaluator (ground truth loaded at construction,
    not timed)."""
    evaluator = COCOEvaluator(dataset, tasks=(task,), distributed=False)
    t0, c0 = time.perf_counter(), time.process_time()
    evaluator.evaluate_results(dets)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, evaluator.coco_evals[task].stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets", type=int, default=100, help="detections per image")
    parser.add_argument("--tasks", nargs="+", default=["bbox", "segm"])
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON")
    args = parser.parse_args()

    t0 = time.perf_counter()
    gt, dets = make_data(args.images, args.dets)
    print(
        f"data: {args.images} images, {len(gt['annotations'])} ground truth, {len(dets)} "
        f"detections ({time.perf_counter() - t0:.1f}s to generate)"
    )
    rows, payload = [], {"images": args.images, "detections": len(dets), "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        gt_file = str(Path(tmp) / "gt.json")
        Path(gt_file).write_text(json.dumps(gt))
        dataset = f"bench_eval_{args.images}_{args.dets}"
        register_coco_instances(dataset, {}, gt_file, tmp)
        for task in args.tasks:
            ours_s, ours_cpu, ours_stats = run_torchdet(dataset, dets, task)
            ref_s, ref_cpu, ref_stats = run_pycocotools(gt_file, dets, task)
            identical = bool(np.array_equal(ours_stats, ref_stats))
            rows.append(
                [task, ref_s, ours_s, ref_s / ours_s, ref_cpu, ours_cpu, ref_cpu / ours_cpu,
                 identical, 100 * ref_stats[0]]
            )  # fmt: skip
            payload["tasks"][task] = {
                "pycocotools_s": ref_s,
                "torchdet_s": ours_s,
                "speedup": ref_s / ours_s,
                "pycocotools_cpu_s": ref_cpu,
                "torchdet_cpu_s": ours_cpu,
                "cpu_speedup": ref_cpu / ours_cpu,
                "identical_stats": identical,
                "stats": ref_stats.tolist(),
            }
    tot = [sum(r[i] for r in rows) for i in (1, 2, 4, 5)]
    rows.append(
        ["total", tot[0], tot[1], tot[0] / tot[1], tot[2], tot[3], tot[2] / tot[3],
         all(r[7] for r in rows), ""]
    )  # fmt: skip
    payload["total"] = {
        "pycocotools_s": tot[0],
        "torchdet_s": tot[1],
        "speedup": tot[0] / tot[1],
        "pycocotools_cpu_s": tot[2],
        "torchdet_cpu_s": tot[3],
        "cpu_speedup": tot[2] / tot[3],
    }
    headers = ["task", "pycocotools wall (s)", "torchdet wall (s)", "speed-up",
               "pycocotools CPU (s)", "torchdet CPU (s)", "CPU speed-up",
               "identical", "AP"]  # fmt: skip
    print(tabulate(rows, headers=headers, floatfmt=".2f", tablefmt="pipe"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=1))
    if not all(r[7] for r in rows):
        raise SystemExit("statistics differ between torchdet and pycocotools")


if __name__ == "__main__":
    main()
