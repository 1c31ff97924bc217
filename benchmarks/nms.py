"""Time torchdet's NMS operators against the reference kernels' timings.

Usage:
    .venv/bin/python benchmarks/nms.py [--threads 2] [--repeat 7] [--only batched] [--out nms.json]

Inputs follow the reference measurement: boxes with centres uniform over an 800x1333 image and
widths / heights uniform in [10, 200] pixels, uniform scores (seeded). ``nms`` at IoU 0.7 for 1k,
3k and 10k boxes; ``batched_nms`` over 80 random classes at IoU 0.5; ``nms_rotated`` of 3k rotated
boxes (same centres and sizes, angles uniform in [-90, 90) degrees) at IoU 0.7.

Each case runs once to warm up, then ``--repeat`` times; the table shows the median (and the
minimum, less sensitive to other load on a shared CPU) against the reference median from
``op_timings.json`` of the parity bundle (torchvision / Detectron2 C++ CPU kernels, 2 threads).
``ratio`` is ours / reference: below 1 is faster than the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tabulate import tabulate

from torchdet.layers import batched_nms, nms, nms_rotated

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REF = (
    Path(os.environ.get("TORCHDET_PARITY_DIR", REPO.parent / "shared" / "parity"))
    / "op_timings.json"
)
IMAGE_HW = (800.0, 1333.0)


def random_boxes(n: int, g: torch.Generator) -> torch.Tensor:
    """(n, 4) XYXY boxes: centres uniform over the image, sides uniform in [10, 200] px."""
    centers = torch.rand(n, 2, generator=g) * torch.tensor([IMAGE_HW[1], IMAGE_HW[0]])
    sizes = torch.rand(n, 2, generator=g) * 190 + 10
    return torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1)


def random_rotated_boxes(n: int, g: torch.Generator) -> torch.Tensor:
    """(n, 5) cx, cy, w, h, angle boxes with the same centres and sizes, angles in [-90, 90)."""
    centers = torch.rand(n, 2, generator=g) * torch.tensor([IMAGE_HW[1], IMAGE_HW[0]])
    sizes = torch.rand(n, 2, generator=g) * 190 + 10
    angles = torch.rand(n, 1, generator=g) * 180 - 90
    return torch.cat([centers, sizes, angles], dim=1)


def cases() -> dict[str, Callable[[], torch.Tensor]]:
    """Benchmark name (as in op_timings.json) -> a closure running the op on fixed inputs."""
    out: dict[str, Callable[[], torch.Tensor]] = {}
    for n in (1000, 3000, 10000):
        g = torch.Generator().manual_seed(n)
        boxes, scores = random_boxes(n, g), torch.rand(n, generator=g)
        idxs = torch.randint(0, 80, (n,), generator=g)
        out[f"nms_{n}_iou0.7"] = lambda b=boxes, s=scores: nms(b, s, 0.7)
        out[f"batched_nms_{n}_80cls_iou0.5"] = lambda b=boxes, s=scores, i=idxs: batched_nms(
            b, s, i, 0.5
        )
    g = torch.Generator().manual_seed(3)
    rboxes, rscores = random_rotated_boxes(3000, g), torch.rand(3000, generator=g)
    out["nms_rotated_3000_iou0.7"] = lambda: nms_rotated(rboxes, rscores, 0.7)
    return out


def time_case(fn: Callable[[], torch.Tensor], repeat: int) -> tuple[list[float], int]:
    with torch.inference_mode():
        kept = fn().numel()  # warm-up
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return times, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--ref", type=Path, default=DEFAULT_REF, help="op_timings.json")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    reference = {}
    if args.ref.is_file():
        reference = json.loads(args.ref.read_text())["seconds_median"]
    else:
        print(f"reference timings not found at {args.ref}: no ratio column")

    rows, results = [], {}
    for name, fn in cases().items():
        if args.only and args.only not in name:
            continue
        times, kept = time_case(fn, args.repeat)
        median, best = statistics.median(times), min(times)
        ref = reference.get(name)
        ratio = median / ref if ref else None
        results[name] = {"median_s": median, "min_s": best, "kept": kept, "reference_s": ref}
        results[name]["ratio"] = ratio
        rows.append(
            [
                name,
                kept,
                f"{median:.5f}",
                f"{best:.5f}",
                f"{ref:.5f}" if ref else "-",
                f"{ratio:.3f}" if ratio else "-",
            ]
        )
    print(
        tabulate(
            rows,
            headers=["case", "kept", "median s", "min s", "reference s", "ratio (ours/ref)"],
        )
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "threads": args.threads,
            "repeat": args.repeat,
            "torch": torch.__version__,
            "results": results,
        }
        args.out.write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
