"""Detection losses: focal losses for dense classification, smooth L1, and the IoU-family box
regression losses (GIoU, DIoU, CIoU), with fvcore/Detectron2's exact formulas."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "ciou_loss",
    "diou_loss",
    "giou_loss",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_star",
    "smooth_l1_loss",
]

_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(fn: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_same_shape(fn: str, a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{fn}: {names[0]} and {names[1]} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        # The mean of nothing is a differentiable 0, not NaN: batches may have no foreground.
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    return loss


def sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = -1,
    gamma: float = 2,
    reduction: str = "none",
) -> torch.Tensor:
    """Focal loss of RetinaNet (https://arxiv.org/abs/1708.02002):
    ``alpha_t * (1 - p_t) ** gamma * BCE(inputs, targets)``.

    Args:
        inputs (Tensor[*]): logits, any shape.
        targets (Tensor[*]): same shape, binary labels (0 negative, 1 positive), float.
        alpha: weight of positives in (0, 1); negatives get 1 - alpha; < 0 disables it.
        gamma: exponent of the modulating factor down-weighting easy examples.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
        The loss, of ``inputs``' shape for ``"none"``, else a scalar (computed in float32 or
        float64).
    """
    _check_reduction("sigmoid_focal_loss", reduction)
    _check_same_shape("sigmoid_focal_loss", inputs, targets, ("inputs", "targets"))
    if inputs.dtype != torch.float64:
        inputs = inputs.float()
    targets = targets.to(inputs.dtype)
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return _reduce(loss, reduction)


def sigmoid_focal_loss_star(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = -1,
    gamma: float = 1,
    reduction: str = "none",
) -> torch.Tensor:
    """FL* of the focal loss paper's appendix: ``-log(sigmoid(gamma * x_t)) / gamma`` with
    ``x_t = inputs`` for positives and ``-inputs`` for negatives.

    Args:
        inputs (Tensor[*]): logits.
        targets (Tensor[*]): same shape, binary float labels.
        alpha: weight of positives; < 0 disables it.
        gamma: sharpness; must be non-zero.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
    """
    _check_reduction("sigmoid_focal_loss_star", reduction)
    _check_same_shape("sigmoid_focal_loss_star", inputs, targets, ("inputs", "targets"))
    if gamma == 0:
        raise ValueError("sigmoid_focal_loss_star: gamma must be non-zero")
    targets = targets.to(inputs.dtype)
    shifted_inputs = gamma * (inputs * (2 * targets - 1))
    loss = -(F.logsigmoid(shifted_inputs)) / gamma
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = loss * alpha_t
    return _reduce(loss, reduction)


def smooth_l1_loss(
    input: torch.Tensor, target: torch.Tensor, beta: float, reduction: str = "none"
) -> torch.Tensor:
    """Smooth L1 (Huber-like) loss: ``0.5 * x**2 / beta`` for ``|x| < beta``, else
    ``|x| - 0.5 * beta``, with ``x = input - target``.

    Unlike ``torch.nn.functional.smooth_l1_loss``, ``beta < 1e-5`` gives exactly the L1 loss
    (instead of dividing by a tiny beta).

    Args:
        input, target (Tensor[*]): same shape.
        beta: transition point between the quadratic and linear parts, >= 0.
        reduction: ``"none"``, ``"mean"`` (0 on empty input) or ``"sum"``.
    """
    _check_reduction("smooth_l1_loss", reduction)
    _check_same_shape("smooth_l1_loss", input, target, ("input", "target"))
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    if beta < 1e-5:
        loss = torch.abs(input - target)
    else:
        n = torch.abs(input - target)
        loss = torch.where(n < beta, 0.5 * n**2 / beta, n - 0.5 * beta)
    return _reduce(loss, reduction)


def _unbind_boxes(fn: str, boxes1: torch.Tensor, boxes2: torch.Tensor):
    if boxes1.shape[-1:] != (4,) or boxes1.shape != boxes2.shape:
        raise ValueError(
            f"{fn}: boxes1 and boxes2 must both have shape (..., 4) = x0, y0, x1, y1, "
            f"got {tuple(boxes1.shape)} and {tuple(boxes2.shape)}"
        )
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    if not bool((x2 >= x1).all()) or not bool((y2 >= y1).all()):
        raise ValueError(f"{fn}: bad box in boxes1: x1 < x0 or y1 < y0")
    return (x1, y1, x2, y2), (x1g, y1g, x2g, y2g)


def _intersection(b1, b2) -> torch.Tensor:
    x1, y1, x2, y2 = b1
    x1g, y1g, x2g, y2g = b2
    xkis1 = torch.max(x1, x1g)
    ykis1 = torch.max(y1, y1g)
    xkis2 = torch.min(x2, x2g)
    ykis2 = torch.min(y2, y2g)
    # Masked rather than clamped: disjoint boxes then give exactly 0 with a zero gradient.
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    inter = torch.zeros_like(x1)
    inter[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
    return inter


def giou_loss(
    boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    """Generalized IoU loss ``1 - GIoU`` (https://giou.stanford.edu/).

    Args:
        boxes1, boxes2 (Tensor[..., 4]): x0, y0, x1, y1; ``boxes1`` must be valid (x1 >= x0,
            y1 >= y0).
        reduction: ``"none"``, ``"mean"`` (0 on empty input) or ``"sum"``.
        eps: small number to prevent division by zero.

    Returns:
        Tensor[...] for ``"none"``, else a scalar; values in [0, 2].
    """
    _check_reduction("giou_loss", reduction)
    b1, b2 = _unbind_boxes("giou_loss", boxes1, boxes2)
    x1, y1, x2, y2 = b1
    x1g, y1g, x2g, y2g = b2
    intsctk = _intersection(b1, b2)
    unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk
    iouk = intsctk / (unionk + eps)
    # Smallest enclosing box.
    area_c = (torch.max(x2, x2g) - torch.min(x1, x1g)) * (torch.max(y2, y2g) - torch.min(y1, y1g))
    miouk = iouk - ((area_c - unionk) / (area_c + eps))
    return _reduce(1 - miouk, reduction)


def _diou_terms(b1, b2, eps: float):
    x1, y1, x2, y2 = b1
    x1g, y1g, x2g, y2g = b2
    intsct = _intersection(b1, b2)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsct + eps
    iou = intsct / union
    # Squared diagonal of the smallest enclosing box.
    diag_len = (
        (torch.max(x2, x2g) - torch.min(x1, x1g)) ** 2
        + (torch.max(y2, y2g) - torch.min(y1, y1g)) ** 2
        + eps
    )
    # Squared distance between the box centers.
    distance = ((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2 + ((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2
    return iou, distance / diag_len


def diou_loss(
    boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    """Distance IoU loss ``1 - IoU + d**2 / c**2`` (https://arxiv.org/abs/1911.08287), with d
    the distance between box centers and c the diagonal of the smallest enclosing box.

    Args:
        boxes1, boxes2 (Tensor[..., 4]): x0, y0, x1, y1; ``boxes1`` must be valid.
        reduction: ``"none"``, ``"mean"`` (0 on empty input) or ``"sum"``.
        eps: small number to prevent division by zero.
    """
    _check_reduction("diou_loss", reduction)
    b1, b2 = _unbind_boxes("diou_loss", boxes1, boxes2)
    iou, center_term = _diou_terms(b1, b2, eps)
    return _reduce(1 - iou + center_term, reduction)


def ciou_loss(
    boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    """Complete IoU loss: DIoU plus an aspect-ratio consistency term ``alpha * v``
    (https://arxiv.org/abs/1911.08287); ``alpha`` is treated as a constant in backward.

    Args:
        boxes1, boxes2 (Tensor[..., 4]): x0, y0, x1, y1; ``boxes1`` must be valid, both with
            non-zero heights.
        reduction: ``"none"``, ``"mean"`` (0 on empty input) or ``"sum"``.
        eps: small number to prevent division by zero.
    """
    _check_reduction("ciou_loss", reduction)
    b1, b2 = _unbind_boxes("ciou_loss", boxes1, boxes2)
    iou, center_term = _diou_terms(b1, b2, eps)
    x1, y1, x2, y2 = b1
    x1g, y1g, x2g, y2g = b2
    w_pred, h_pred = x2 - x1, y2 - y1
    w_gt, h_gt = x2g - x1g, y2g - y1g
    v = (4 / (math.pi**2)) * torch.pow(torch.atan(w_gt / h_gt) - torch.atan(w_pred / h_pred), 2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return _reduce(1 - iou + center_term + alpha * v, reduction)
