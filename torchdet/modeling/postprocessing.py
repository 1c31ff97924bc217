"""Map model outputs from the network's input resolution back to the original image's."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from torchdet.structures import Instances, ROIMasks

__all__ = ["detector_postprocess", "sem_seg_postprocess"]


def detector_postprocess(
    results: Instances,
    output_height: int | torch.Tensor,
    output_width: int | torch.Tensor,
    mask_threshold: float = 0.5,
) -> Instances:
    """Rescale detections to ``(output_height, output_width)``, e.g. the original image size.

    Boxes (``pred_boxes`` or ``proposal_boxes``) are scaled, clipped to the output size, and
    empty ones dropped; ``pred_masks`` (RoI masks ``(R, 1, M, M)`` or ``ROIMasks``) are pasted
    into full-image boolean masks ``(R, output_height, output_width)``; ``pred_keypoints``
    ``(R, K, 3)`` are scaled.

    Args:
        results (Instances): the predictions of one image, on the input (resized) image.
        output_height, output_width: the size to map to.
        mask_threshold (float): threshold of the pasted mask probabilities.

    Returns:
        Instances: new predictions with ``image_size = (output_height, output_width)``.
    """
    if isinstance(output_width, torch.Tensor):
        # Tracing-friendly: keep the size as tensors.
        output_width_tmp = output_width.float()
        output_height_tmp = output_height.float()
        new_size = torch.stack([output_height, output_width])
    else:
        new_size = (output_height, output_width)
        output_width_tmp = output_width
        output_height_tmp = output_height

    scale_x, scale_y = (
        output_width_tmp / results.image_size[1],
        output_height_tmp / results.image_size[0],
    )
    results = Instances(new_size, **results.get_fields())

    if results.has("pred_boxes"):
        output_boxes = results.pred_boxes
    elif results.has("proposal_boxes"):
        output_boxes = results.proposal_boxes
    else:
        raise ValueError(
            "detector_postprocess: predictions must contain 'pred_boxes' or 'proposal_boxes', "
            f"got fields {list(results.get_fields())}"
        )

    # A copy: the caller's boxes (e.g. the proposals) must keep their input-image coordinates.
    output_boxes = output_boxes.clone()
    output_boxes.scale(scale_x, scale_y)
    output_boxes.clip(results.image_size)
    if results.has("pred_boxes"):
        results.pred_boxes = output_boxes
    else:
        results.proposal_boxes = output_boxes
    results = results[output_boxes.nonempty()]

    if results.has("pred_masks"):
        if isinstance(results.pred_masks, ROIMasks):
            roi_masks = results.pred_masks
        else:
            # (R, 1, M, M) -> (R, M, M)
            roi_masks = ROIMasks(results.pred_masks[:, 0, :, :])
        results.pred_masks = roi_masks.to_bitmasks(
            results.pred_boxes, output_height, output_width, mask_threshold
        ).tensor

    if results.has("pred_keypoints"):
        results.pred_keypoints[:, :, 0] *= scale_x
        results.pred_keypoints[:, :, 1] *= scale_y
    return results


def sem_seg_postprocess(
    result: torch.Tensor, img_size: tuple[int, int], output_height: int, output_width: int
) -> torch.Tensor:
    """Crop a semantic-segmentation output to the unpadded image, then resize it.

    Args:
        result (Tensor[C, H, W]): per-class logits of the padded input image.
        img_size (tuple[int, int]): ``(h, w)`` of the input image before padding.
        output_height, output_width: the size to resize to (the original image's).

    Returns:
        Tensor[C, output_height, output_width]: bilinearly resized logits.
    """
    result = result[:, : img_size[0], : img_size[1]].expand(1, -1, -1, -1)
    result = F.interpolate(
        result, size=(output_height, output_width), mode="bilinear", align_corners=False
    )[0]
    return result
