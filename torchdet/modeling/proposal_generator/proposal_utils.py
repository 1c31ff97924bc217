"""Proposal selection shared by the RPN variants, and ground truth as extra proposals."""

from __future__ import annotations

import math

import torch

from torchdet.layers import batched_nms, cat, move_device_like
from torchdet.structures import Boxes, Instances

__all__ = ["find_top_rpn_proposals", "add_ground_truth_to_proposals"]

# Shape shorthand: N images, L levels, Hi_Wi_A anchors of level i, B box dim.


def _is_tracing() -> bool:
    return torch.jit.is_scripting() is False and torch.jit.is_tracing()


def find_top_rpn_proposals(
    proposals: list[torch.Tensor],
    pred_objectness_logits: list[torch.Tensor],
    image_sizes: list[tuple[int, int]],
    nms_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    min_box_size: float,
    training: bool,
) -> list[Instances]:
    """Select the RPN proposals of each image.

    Per image: keep the ``pre_nms_topk`` highest-scoring proposals of each level, clip them to
    the image, drop those smaller than ``min_box_size``, run NMS within each level (one
    ``batched_nms`` over all levels), and keep the ``post_nms_topk`` best (over all levels).

    Args:
        proposals (list[Tensor[N, Hi_Wi_A, 4]]): decoded proposal boxes of each level.
        pred_objectness_logits (list[Tensor[N, Hi_Wi_A]]): their objectness logits.
        image_sizes (list[tuple[int, int]]): ``(h, w)`` of each image.
        nms_thresh (float): IoU threshold of the NMS.
        pre_nms_topk (int): proposals kept per level and image before NMS.
        post_nms_topk (int): proposals kept per image after NMS.
        min_box_size (float): smallest width and height kept, in pixels.
        training (bool): if True, non-finite boxes or scores raise ``FloatingPointError``
            (training diverged); at inference they are dropped.

    Returns:
        list[Instances]: per image, ``proposal_boxes`` (Boxes) and ``objectness_logits``
        (Tensor[K]) sorted by decreasing logit, ``K <= post_nms_topk``.
    """
    num_images = len(image_sizes)
    device = proposals[0].device if proposals else torch.device("cpu")

    # 1. Top-k of each level, for every image at once.
    topk_scores = []
    topk_proposals = []
    level_ids = []
    batch_idx = move_device_like(torch.arange(num_images, device=device), proposals[0])
    for level_id, (proposals_i, logits_i) in enumerate(zip(proposals, pred_objectness_logits)):
        Hi_Wi_A = logits_i.shape[1]
        if isinstance(Hi_Wi_A, torch.Tensor):  # tracing
            num_proposals_i = torch.clamp(Hi_Wi_A, max=pre_nms_topk)
        else:
            num_proposals_i = min(Hi_Wi_A, pre_nms_topk)
        topk_scores_i, topk_idx = logits_i.topk(num_proposals_i, dim=1)  # (N, topk)
        topk_proposals_i = proposals_i[batch_idx[:, None], topk_idx]  # (N, topk, 4)
        topk_proposals.append(topk_proposals_i)
        topk_scores.append(topk_scores_i)
        level_ids.append(
            move_device_like(
                torch.full((num_proposals_i,), level_id, dtype=torch.int64, device=device),
                proposals[0],
            )
        )

    topk_scores = cat(topk_scores, dim=1)  # (N, sum_topk)
    topk_proposals = cat(topk_proposals, dim=1)
    level_ids = cat(level_ids, dim=0)

    # 2. Per image: filter, NMS within levels, top-k.
    results = []
    for n, image_size in enumerate(image_sizes):
        boxes = Boxes(topk_proposals[n])
        scores_per_img = topk_scores[n]
        lvl = level_ids

        valid_mask = torch.isfinite(boxes.tensor).all(dim=1) & torch.isfinite(scores_per_img)
        if not valid_mask.all():
            if training:
                raise FloatingPointError(
                    "Predicted boxes or scores contain Inf/NaN. Training has diverged."
                )
            boxes = boxes[valid_mask]
            scores_per_img = scores_per_img[valid_mask]
            lvl = lvl[valid_mask]
        boxes.clip(image_size)

        keep = boxes.nonempty(threshold=min_box_size)
        if _is_tracing() or keep.sum().item() != len(boxes):
            boxes, scores_per_img, lvl = boxes[keep], scores_per_img[keep], lvl[keep]

        keep = batched_nms(boxes.tensor, scores_per_img, lvl, nms_thresh)
        # NMS returns indices by decreasing score, so this keeps the best post_nms_topk.
        keep = keep[:post_nms_topk]

        res = Instances(image_size)
        res.proposal_boxes = boxes[keep]
        res.objectness_logits = scores_per_img[keep]
        results.append(res)
    return results


def add_ground_truth_to_proposals(
    gt: list[Instances] | list[Boxes], proposals: list[Instances]
) -> list[Instances]:
    """Append each image's ground-truth boxes to its proposals (with a logit of ~23, i.e.
    probability ``1 - 1e-10``), so that the second stage always sees positives in training.

    Args:
        gt (list[Instances] or list[Boxes]): per image, ground truth (Instances with
            ``gt_boxes`` and other ``gt_*`` fields) or boxes.
        proposals (list[Instances]): per image, ``proposal_boxes`` and ``objectness_logits``.

    Returns:
        list[Instances]: per image, the proposals followed by the ground truth.
    """
    if gt is None:
        raise ValueError("add_ground_truth_to_proposals: gt is None")
    if len(proposals) != len(gt):
        raise ValueError(
            f"add_ground_truth_to_proposals: {len(proposals)} proposal lists for "
            f"{len(gt)} ground-truth lists"
        )
    if len(proposals) == 0:
        return proposals
    return [
        add_ground_truth_to_proposals_single_image(gt_i, proposals_i)
        for gt_i, proposals_i in zip(gt, proposals)
    ]


def add_ground_truth_to_proposals_single_image(
    gt: Instances | Boxes, proposals: Instances
) -> Instances:
    """``add_ground_truth_to_proposals`` for one image."""
    if isinstance(gt, Boxes):
        gt = Instances(proposals.image_size, gt_boxes=gt)
    gt_boxes = gt.gt_boxes
    device = proposals.objectness_logits.device
    # Logit of probability 1 - 1e-10: the ground truth is a certain object.
    gt_logit_value = math.log((1.0 - 1e-10) / (1 - (1.0 - 1e-10)))
    gt_logits = gt_logit_value * torch.ones(len(gt_boxes), device=device)

    # Instances.cat needs every field of the proposals on the ground-truth rows too.
    gt_proposal = Instances(proposals.image_size, **gt.get_fields())
    gt_proposal.proposal_boxes = gt_boxes
    gt_proposal.objectness_logits = gt_logits
    for key in proposals.get_fields():
        if not gt_proposal.has(key):
            raise KeyError(
                f"The attribute {key!r} of the proposals does not exist in the ground truth"
            )
    # Only the proposals' fields are kept (extra ground-truth fields are dropped).
    gt_proposal = Instances(
        proposals.image_size, **{k: gt_proposal.get(k) for k in proposals.get_fields()}
    )
    return Instances.cat([proposals, gt_proposal])
