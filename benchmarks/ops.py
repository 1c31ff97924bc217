"""Time torchdet's heavy operators at realistic sizes against the reference kernels' timings.

Usage:
    python benchmarks/ops.py [--threads 2] [--repeat 5] [--only roi_align] [--out ops.json]

Every op runs forward under ``torch.inference_mode`` on seeded random inputs, once to warm up and
then ``--repeat`` times; the median is compared with the reference system's median from
``op_timings.json`` (torchvision / Detectron2 C++ CPU kernels, 2 threads, same sizes):

- RoIAlign / RoIAlignRotated: an FPN level of an 800x1333 image, feature map 1x256x200x336 at scale
  1/4, sampling_ratio 0 (adaptive), aligned. RoIs are random boxes in the image with centres
  uniform over it and widths / heights log-uniform in [16, 512] pixels (clipped to the image),
  like proposals; rotated RoIs have the same centres and sizes and angles uniform in [-90, 90).
- deform conv / modulated deform conv: 3x3, 256 -> 256 channels, input 2x256x100x168, padding 1,
  offsets N(0, 2^2), mask uniform.
- mask pasting: 100 masks of 28x28 into an 800x1333 image, boxes as the RoIs above.
- NMS (if ``torchdet.layers`` provides it): 1k / 3k / 10k random boxes as above with uniform scores,
  IoU 0.7; batched over 80 classes at IoU 0.5; rotated NMS of 3k rotated boxes.

Absolute times drift between machines and with other load; the ratio column compares against the
reference measured on a 2-core machine of the kind the project targets. Where ``torchvision`` is
importable (it is not a torchdet dependency), the same inputs are also run through its C++ kernels
(roi_align, deform_conv2d, nms, batched_nms) and through Detectron2's per-mask CPU pasting loop,
giving a same-machine ratio (``ours / baseline``) that does not depend on the machine.

Two threads are sensitive to other processes on the same cores (every parallel region waits for
both threads), so measure on otherwise idle cores, e.g. ``taskset -c 2,3 python benchmarks/ops.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from torchdet import layers  # noqa: E402

IMAGE_H, IMAGE_W = 800, 1333


def random_boxes(n: int, gen: torch.Generator) -> torch.Tensor:
    """Tensor[n, 4] of x0, y0, x1, y1 boxes inside an 800x1333 image, sizes log-uniform 16-512."""
    centre = torch.rand(n, 2, generator=gen) * torch.tensor([IMAGE_W, IMAGE_H])
    log_size = torch.rand(n, 2, generator=gen) * (math.log(512) - math.log(16)) + math.log(16)
    half = log_size.exp() / 2
    boxes = torch.cat([centre - half, centre + half], dim=1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, IMAGE_W)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, IMAGE_H)
    return boxes


def rotated_from(boxes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Tensor[n, 5] cx, cy, w, h, angle of the same boxes with random angles in [-90, 90)."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1)
    angle = torch.rand(len(boxes), 1, generator=gen) * 180 - 90
    return torch.cat([centre, size, angle], dim=1)


def _detectron2_paste(masks: torch.Tensor, boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Detectron2's CPU strategy (a same-machine baseline): one grid_sample per mask and box."""
    out = torch.zeros(len(masks), h, w, dtype=torch.bool)
    for i in range(len(masks)):
        x0, y0, x1, y1 = boxes[i].tolist()
        xa, ya = max(math.floor(x0) - 1, 0), max(math.floor(y0) - 1, 0)
        xb, yb = min(math.ceil(x1) + 1, w), min(math.ceil(y1) + 1, h)
        gx = (torch.arange(xa, xb, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
        gy = (torch.arange(ya, yb, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
        grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=-1)[None]
        pasted = torch.nn.functional.grid_sample(masks[i][None, None], grid, align_corners=False)
        out[i, ya:yb, xa:xb] = pasted[0, 0] >= 0.5
    return out


def build_cases(
    tv: object | None = None,
) -> dict[
    str, tuple[Callable[[], Callable[[], object]], Callable[[], Callable[[], object]] | None]
]:
    """Name (the reference's key) -> (factory of the callable to time, factory of the baseline).

    ``tv`` is the ``torchvision.ops`` module when available; baselines are None without it.
    """
    cases: dict = {}

    def feature() -> torch.Tensor:
        return torch.randn(1, 256, 200, 336, generator=torch.Generator().manual_seed(1))

    for k in (512, 1000):
        for size in (7, 14):

            def roi_case(k: int = k, size: int = size, base: bool = False) -> Callable[[], object]:
                gen = torch.Generator().manual_seed(k)
                x = feature()
                rois = torch.cat([torch.zeros(k, 1), random_boxes(k, gen)], dim=1)
                if base:
                    return lambda: tv.roi_align(x, rois, (size, size), 0.25, 0, True)
                layer = layers.ROIAlign((size, size), 0.25, 0, aligned=True)
                return lambda: layer(x, rois)

            cases[f"roi_align_{k}rois_256c_{size}x{size}_sr0_aligned"] = (
                roi_case,
                (lambda k=k, size=size: roi_case(k, size, True)) if tv else None,
            )

        def rotated_case(k: int = k) -> Callable[[], object]:
            gen = torch.Generator().manual_seed(k)
            x = feature()
            rois = torch.cat([torch.zeros(k, 1), rotated_from(random_boxes(k, gen), gen)], dim=1)
            layer = layers.ROIAlignRotated((7, 7), 0.25, 0)
            return lambda: layer(x, rois)

        cases[f"roi_align_rotated_{k}rois_256c_7x7_sr0"] = (rotated_case, None)

    def deform_case(modulated: bool, base: bool = False) -> Callable[[], object]:
        gen = torch.Generator().manual_seed(2)
        x = torch.randn(2, 256, 100, 168, generator=gen)
        offset = torch.randn(2, 18, 100, 168, generator=gen) * 2
        mask = torch.rand(2, 9, 100, 168, generator=gen) if modulated else None
        if modulated:
            layer = layers.ModulatedDeformConv(256, 256, 3, padding=1)
        else:
            layer = layers.DeformConv(256, 256, 3, padding=1)
        if base:
            return lambda: tv.deform_conv2d(
                x, offset, layer.weight, layer.bias, padding=1, mask=mask
            )
        if modulated:
            return lambda: layer(x, offset, mask)
        return lambda: layer(x, offset)

    for name, modulated in (("deform_conv", False), ("modulated_deform_conv", True)):
        cases[f"{name}_256c_100x168_b2"] = (
            lambda m=modulated: deform_case(m),
            (lambda m=modulated: deform_case(m, True)) if tv else None,
        )

    def paste_case(base: bool = False) -> Callable[[], object]:
        gen = torch.Generator().manual_seed(3)
        boxes = random_boxes(100, gen)
        masks = torch.rand(100, 28, 28, generator=gen)
        if base:
            return lambda: _detectron2_paste(masks, boxes, IMAGE_H, IMAGE_W)
        return lambda: layers.paste_masks_in_image(masks, boxes, (IMAGE_H, IMAGE_W))

    cases["paste_masks_100_into_800x1333"] = (paste_case, lambda: paste_case(True))

    if hasattr(layers, "nms"):
        for n in (1000, 3000, 10000):

            def nms_case(n: int = n, base: bool = False) -> Callable[[], object]:
                gen = torch.Generator().manual_seed(n)
                boxes, scores = random_boxes(n, gen), torch.rand(n, generator=gen)
                op = tv.nms if base else layers.nms
                return lambda: op(boxes, scores, 0.7)

            def batched_case(n: int = n, base: bool = False) -> Callable[[], object]:
                gen = torch.Generator().manual_seed(n + 1)
                boxes, scores = random_boxes(n, gen), torch.rand(n, generator=gen)
                idxs = torch.randint(0, 80, (n,), generator=gen)
                op = tv.batched_nms if base else layers.batched_nms
                return lambda: op(boxes, scores, idxs, 0.5)

            cases[f"nms_{n}_iou0.7"] = (nms_case, (lambda n=n: nms_case(n, True)) if tv else None)
            cases[f"batched_nms_{n}_80cls_iou0.5"] = (
                batched_case,
                (lambda n=n: batched_case(n, True)) if tv else None,
            )
    if hasattr(layers, "nms_rotated"):

        def rotated_nms_case() -> Callable[[], object]:
            gen = torch.Generator().manual_seed(4)
            boxes = rotated_from(random_boxes(3000, gen), gen)
            scores = torch.rand(3000, generator=gen)
            return lambda: layers.nms_rotated(boxes, scores, 0.7)

        cases["nms_rotated_3000_iou0.7"] = (rotated_nms_case, None)
    return cases


def time_op(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs after one warm-up run."""
    with torch.inference_mode():
        fn()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="", help="run the ops whose name contains this")
    parser.add_argument(
        "--reference",
        type=Path,
        default=REPO.parent / "shared" / "parity" / "op_timings.json",
        help="op_timings.json of the reference system",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the torchvision / per-mask baselines"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    reference = {}
    if args.reference.is_file():
        reference = json.loads(args.reference.read_text())["seconds_median"]
    else:
        print(f"reference timings not found at {args.reference}; ratios left empty")

    tv = None
    if not args.no_baseline:
        try:
            import torchvision.ops as tv
        except Exception:  # torchvision is optional and often unusable: no baseline then
            tv = None

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    rows = []
    for name, (factory, baseline) in build_cases(tv).items():
        if args.only not in name:
            continue
        seconds = time_op(factory(), args.repeat)
        base = time_op(baseline(), args.repeat) if baseline and not args.no_baseline else None
        ref = reference.get(name)
        row = {
            "op": name,
            "seconds": seconds,
            "reference": ref,
            "ratio": seconds / ref if ref else None,
            "baseline": base,
            "ratio_baseline": seconds / base if base else None,
        }
        rows.append(row)
        print(
            f"{name:45s} {seconds:9.4f}s  ref {fmt(ref)}  ratio {fmt(row['ratio'])}  "
            f"baseline {fmt(base)}  ratio {fmt(row['ratio_baseline'])}",
            flush=True,
        )

    try:
        from tabulate import tabulate

        print()
        print(
            tabulate(
                [
                    [
                        r["op"],
                        r["seconds"],
                        r["reference"],
                        r["ratio"],
                        r["baseline"],
                        r["ratio_baseline"],
                    ]  # fmt: skip
                    for r in rows
                ],
                headers=[
                    "op",
                    "seconds (median)",
                    "reference",
                    "ours / ref",
                    "baseline (here)",
                    "ours / baseline",
                ],  # fmt: skip
                floatfmt=".4f",
            )
        )
    except ImportError:  # the progress lines above already hold the numbers
        pass
    result = {"threads": args.threads, "repeat": args.repeat, "results": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
