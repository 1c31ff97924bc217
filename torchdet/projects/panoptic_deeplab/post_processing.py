"""Panoptic-DeepLab's post-processing: centre keypoints from the heatmap, pixels grouped to
their nearest predicted centre, then thing instances (majority-vote class) and stuff merged.

Shape shorthand: H x W the image, K the centres, C the semantic classes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

__all__ = [
    "find_instance_center",
    "group_pixels",
    "get_instance_segmentation",
    "merge_semantic_and_instance",
    "get_panoptic_segmentation",
]


def find_instance_center(
    center_heatmap: torch.Tensor,
    threshold: float = 0.1,
    nms_kernel: int = 3,
    top_k: int | None = None,
) -> torch.Tensor:
    """Centres: local maxima (``nms_kernel`` window) of the heatmap above ``threshold``.

    Args:
        center_heatmap (Tensor[1, H, W]): centre scores.
        top_k: keep only the centres scoring strictly above the ``top_k``-th largest value
            (as the reference: at most ``top_k - 1`` centres).

    Returns:
        Tensor[K, 2] int64: (y, x) of each centre, in row-major order.
    """
    if center_heatmap.dim() != 3 or center_heatmap.shape[0] != 1:
        raise ValueError(
            f"find_instance_center: center_heatmap must be (1, H, W), got "
            f"{tuple(center_heatmap.shape)}"
        )
    heat = F.threshold(center_heatmap, threshold, -1.0)
    pooled = F.max_pool2d(heat, kernel_size=nms_kernel, stride=1, padding=(nms_kernel - 1) // 2)
    heat = torch.where(heat == pooled, heat, torch.full_like(heat, -1.0))[0]
    if top_k is None:
        return torch.nonzero(heat > 0)
    k = min(top_k, heat.numel())
    top_scores, _ = torch.topk(heat.flatten(), k)
    return torch.nonzero(heat > top_scores[-1].clamp(min=0))


def group_pixels(center_points: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Assign every pixel to the centre nearest to where its offset points.

    Args:
        center_points (Tensor[K, 2]): (y, x) centres, K >= 1.
        offsets (Tensor[2, H, W]): (dy, dx) from each pixel to its centre.

    Returns:
        Tensor[1, H, W] int64: 1-based index of the nearest centre (0 is kept for stuff).
    """
    height, width = offsets.shape[1:]
    y = torch.arange(height, dtype=offsets.dtype, device=offsets.device)
    x = torch.arange(width, dtype=offsets.dtype, device=offsets.device)
    coord = torch.stack(torch.meshgrid(y, x, indexing="ij"))  # (2, H, W)
    center_loc = (coord + offsets).flatten(1).T.unsqueeze(0)  # (1, H*W, 2)
    distance = torch.norm(center_points.to(offsets.dtype).unsqueeze(1) - center_loc, dim=-1)
    return torch.argmin(distance, dim=0).reshape(1, height, width) + 1


def get_instance_segmentation(
    sem_seg: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    thing_seg: torch.Tensor,
    thing_ids: Iterable[int],
    threshold: float = 0.1,
    nms_kernel: int = 3,
    top_k: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance ids of thing pixels (0 elsewhere) and the centres.

    Args:
        sem_seg (Tensor[1, H, W]): semantic labels.
        center_heatmap (Tensor[1, H, W]), offsets (Tensor[2, H, W]): the instance branch.
        thing_seg (Tensor[1, H, W]): 1 on thing pixels.

    Returns:
        ins_seg (Tensor[1, H, W]), centers (Tensor[1, K, 2]).
    """
    center_points = find_instance_center(
        center_heatmap, threshold=threshold, nms_kernel=nms_kernel, top_k=top_k
    )
    if center_points.shape[0] == 0:
        return torch.zeros_like(sem_seg), center_points.unsqueeze(0)
    ins_seg = group_pixels(center_points, offsets)
    return thing_seg * ins_seg, center_points.unsqueeze(0)


def merge_semantic_and_instance(
    sem_seg: torch.Tensor,
    ins_seg: torch.Tensor,
    semantic_thing_seg: torch.Tensor,
    label_divisor: int,
    thing_ids: Iterable[int],
    stuff_area: int,
    void_label: int,
) -> torch.Tensor:
    """The panoptic map: ``class * label_divisor + k`` for the k-th (1-based, in instance-id
    order) instance of a thing class, whose class is the majority semantic label over its
    pixels; ``class * label_divisor`` for stuff regions of at least ``stuff_area`` pixels
    outside every instance; ``void_label`` elsewhere.

    Args:
        sem_seg, ins_seg, semantic_thing_seg (Tensor[1, H, W]).

    Returns:
        Tensor[1, H, W] of ``sem_seg``'s dtype.
    """
    pan_seg = torch.full_like(sem_seg, void_label)
    is_thing = (ins_seg > 0) & (semantic_thing_seg > 0)
    thing_ids = torch.as_tensor(list(thing_ids), dtype=sem_seg.dtype, device=sem_seg.device)

    if is_thing.any():
        num_classes = int(sem_seg.max()) + 1
        ins_ids, ins_index = torch.unique(ins_seg[is_thing], return_inverse=True)  # sorted
        num_ins = ins_ids.numel()
        # Majority vote: per-instance histogram of the semantic labels; ties go to the
        # smallest class, as torch.mode does.
        votes = torch.bincount(
            ins_index * num_classes + sem_seg[is_thing], minlength=num_ins * num_classes
        ).reshape(num_ins, num_classes)
        cls = votes.argmax(dim=1)
        # k-th instance of its class, counting in increasing instance id.
        same = cls.unsqueeze(0) == cls.unsqueeze(1)  # (num_ins, num_ins)
        rank = torch.tril(same).sum(dim=1)
        labels = cls * label_divisor + rank
        pan_seg[is_thing] = labels[ins_index].to(pan_seg.dtype)

    stuff = (ins_seg == 0) & ~torch.isin(sem_seg, thing_ids)
    if stuff.any():
        num_classes = int(sem_seg.max()) + 1
        area = torch.bincount(sem_seg[stuff], minlength=num_classes)
        keep = stuff & (area[sem_seg] >= stuff_area)
        pan_seg[keep] = sem_seg[keep] * label_divisor
    return pan_seg


def get_panoptic_segmentation(
    sem_seg: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    thing_ids: Iterable[int],
    label_divisor: int,
    stuff_area: int,
    void_label: int,
    threshold: float = 0.1,
    nms_kernel: int = 7,
    top_k: int = 200,
    foreground_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Panoptic map of one image from the three branches.

    Args:
        sem_seg (Tensor[1, H, W] int64): semantic labels (argmax).
        center_heatmap (Tensor[1, H, W]): centre scores.
        offsets (Tensor[2, H, W]): (dy, dx) in pixels.
        thing_ids: contiguous semantic ids of the thing classes.
        foreground_mask (Tensor[1, H, W], optional): thing pixels; default from ``thing_ids``.

    Returns:
        panoptic (Tensor[1, H, W]), centers (Tensor[1, K, 2]).
    """
    if sem_seg.dim() != 3 or sem_seg.shape[0] != 1:
        raise ValueError(
            f"get_panoptic_segmentation: sem_seg must be (1, H, W), got {tuple(sem_seg.shape)}"
        )
    if center_heatmap.shape != sem_seg.shape:
        raise ValueError(
            f"get_panoptic_segmentation: center_heatmap {tuple(center_heatmap.shape)} must "
            f"match sem_seg {tuple(sem_seg.shape)}"
        )
    if offsets.dim() != 3 or offsets.shape[0] != 2 or offsets.shape[1:] != sem_seg.shape[1:]:
        raise ValueError(
            f"get_panoptic_segmentation: offsets must be (2, H, W) = (2, "
            f"{sem_seg.shape[1]}, {sem_seg.shape[2]}), got {tuple(offsets.shape)}"
        )
    thing_ids = list(thing_ids)
    if foreground_mask is not None:
        if foreground_mask.shape != sem_seg.shape:
            raise ValueError(
                f"get_panoptic_segmentation: foreground_mask {tuple(foreground_mask.shape)} "
                f"must match sem_seg {tuple(sem_seg.shape)}"
            )
        thing_seg = foreground_mask.to(sem_seg.dtype)
    else:
        ids = torch.as_tensor(thing_ids, dtype=sem_seg.dtype, device=sem_seg.device)
        thing_seg = torch.isin(sem_seg, ids).to(sem_seg.dtype)
    instance, center = get_instance_segmentation(
        sem_seg,
        center_heatmap,
        offsets,
        thing_seg,
        thing_ids,
        threshold=threshold,
        nms_kernel=nms_kernel,
        top_k=top_k,
    )
    panoptic = merge_semantic_and_instance(
        sem_seg, instance, thing_seg, label_divisor, thing_ids, stuff_area, void_label
    )
    return panoptic, center
