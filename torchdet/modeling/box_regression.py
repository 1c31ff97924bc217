"""Box coders: boxes <-> regression deltas, and the box-regression loss of dense heads."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from torchdet.layers import cat, ciou_loss, diou_loss, giou_loss, smooth_l1_loss
from torchdet.structures import Boxes

__all__ = [
    "Box2BoxTransform",
    "Box2BoxTransformRotated",
    "Box2BoxTransformLinear",
    "_dense_box_regression_loss",
]

# Largest log-scale step: keeps exp(dw) from overflowing when predictions are wild.
_DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def _check_boxes(name: str, boxes: torch.Tensor, box_dim: int) -> None:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != box_dim:
        raise ValueError(f"{name} must have shape (N, {box_dim}), got {tuple(boxes.shape)}")


class Box2BoxTransform:
    """The R-CNN box coder: ``(dx, dy, dw, dh)`` deltas between boxes.

    ``dx = wx * (x_target - x_src) / w_src``, ``dw = ww * log(w_target / w_src)`` (centres and
    sizes; y and h likewise), with ``weights = (wx, wy, ww, wh)``.
    """

    def __init__(self, weights: Sequence[float], scale_clamp: float = _DEFAULT_SCALE_CLAMP) -> None:
        """
        Args:
            weights (4-element tuple): scaling factors ``(wx, wy, ww, wh)`` of the deltas.
            scale_clamp (float): ``dw`` and ``dh`` are clamped to this before ``exp``.
        """
        if len(weights) != 4:
            raise ValueError(f"Box2BoxTransform takes 4 weights, got {weights}")
        self.weights = tuple(weights)
        self.scale_clamp = scale_clamp

    def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
        """The deltas that turn ``src_boxes`` into ``target_boxes``.

        Args:
            src_boxes (Tensor[N, 4]): x0, y0, x1, y1 source boxes (e.g. anchors), positive size.
            target_boxes (Tensor[N, 4]): x0, y0, x1, y1 targets (e.g. ground truth).

        Returns:
            Tensor[N, 4]: ``(dx, dy, dw, dh)``.
        """
        _check_boxes("src_boxes", src_boxes, 4)
        _check_boxes("target_boxes", target_boxes, 4)
        src_widths = src_boxes[:, 2] - src_boxes[:, 0]
        src_heights = src_boxes[:, 3] - src_boxes[:, 1]
        src_ctr_x = src_boxes[:, 0] + 0.5 * src_widths
        src_ctr_y = src_boxes[:, 1] + 0.5 * src_heights

        target_widths = target_boxes[:, 2] - target_boxes[:, 0]
        target_heights = target_boxes[:, 3] - target_boxes[:, 1]
        target_ctr_x = target_boxes[:, 0] + 0.5 * target_widths
        target_ctr_y = target_boxes[:, 1] + 0.5 * target_heights

        wx, wy, ww, wh = self.weights
        dx = wx * (target_ctr_x - src_ctr_x) / src_widths
        dy = wy * (target_ctr_y - src_ctr_y) / src_heights
        dw = ww * torch.log(target_widths / src_widths)
        dh = wh * torch.log(target_heights / src_heights)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Apply ``deltas`` to ``boxes``.

        Args:
            deltas (Tensor[N, 4 * k]): ``k`` sets of deltas per box (e.g. one per class).
            boxes (Tensor[N, 4]): x0, y0, x1, y1 boxes the deltas are relative to.

        Returns:
            Tensor[N, 4 * k]: the decoded x0, y0, x1, y1 boxes, float32 (or deltas' float type).
        """
        if deltas.dim() != 2 or deltas.shape[1] % 4 != 0:
            raise ValueError(f"deltas must have shape (N, 4 * k), got {tuple(deltas.shape)}")
        _check_boxes("boxes", boxes, 4)
        if deltas.shape[0] != boxes.shape[0]:
            raise ValueError(f"deltas has {deltas.shape[0]} rows but boxes has {boxes.shape[0]}")
        deltas = deltas.float()  # decode in fp32 even for half-precision predictions
        boxes = boxes.to(deltas.dtype)

        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        wx, wy, ww, wh = self.weights
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = deltas[:, 2::4] / ww
        dh = deltas[:, 3::4] / wh
        dw = torch.clamp(dw, max=self.scale_clamp)
        dh = torch.clamp(dh, max=self.scale_clamp)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]

        x1 = pred_ctr_x - 0.5 * pred_w
        y1 = pred_ctr_y - 0.5 * pred_h
        x2 = pred_ctr_x + 0.5 * pred_w
        y2 = pred_ctr_y + 0.5 * pred_h
        pred_boxes = torch.stack((x1, y1, x2, y2), dim=-1)  # (N, k, 4)
        return pred_boxes.reshape(deltas.shape)


class Box2BoxTransformRotated:
    """The rotated box coder: ``(dx, dy, dw, dh, da)`` deltas between ``(cx, cy, w, h, a)`` boxes.

    Angles are in degrees; ``da`` is the angle difference wrapped to [-180, 180), in radians
    times ``wa``.
    """

    def __init__(self, weights: Sequence[float], scale_clamp: float = _DEFAULT_SCALE_CLAMP) -> None:
        """
        Args:
            weights (5-element tuple): scaling factors ``(wx, wy, ww, wh, wa)``.
            scale_clamp (float): ``dw`` and ``dh`` are clamped to this before ``exp``.
        """
        if len(weights) != 5:
            raise ValueError(f"Box2BoxTransformRotated takes 5 weights, got {weights}")
        self.weights = tuple(weights)
        self.scale_clamp = scale_clamp

    def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
        """
        Args:
            src_boxes (Tensor[N, 5]): cx, cy, w, h, angle (degrees) source boxes.
            target_boxes (Tensor[N, 5]): the same for the targets.

        Returns:
            Tensor[N, 5]: ``(dx, dy, dw, dh, da)``.
        """
        _check_boxes("src_boxes", src_boxes, 5)
        _check_boxes("target_boxes", target_boxes, 5)
        src_ctr_x, src_ctr_y, src_widths, src_heights, src_angles = torch.unbind(src_boxes, dim=1)
        target_ctr_x, target_ctr_y, target_widths, target_heights, target_angles = torch.unbind(
            target_boxes, dim=1
        )
        wx, wy, ww, wh, wa = self.weights
        dx = wx * (target_ctr_x - src_ctr_x) / src_widths
        dy = wy * (target_ctr_y - src_ctr_y) / src_heights
        dw = ww * torch.log(target_widths / src_widths)
        dh = wh * torch.log(target_heights / src_heights)
        # Angle difference in [-180, 180), then to radians.
        da = target_angles - src_angles
        da = (da + 180.0) % 360.0 - 180.0
        da *= wa * math.pi / 180.0
        return torch.stack((dx, dy, dw, dh, da), dim=1)

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """
        Args:
            deltas (Tensor[N, 5 * k]): ``k`` sets of deltas per box.
            boxes (Tensor[N, 5]): cx, cy, w, h, angle boxes.

        Returns:
            Tensor[N, 5 * k]: the decoded boxes, angles wrapped to [-180, 180).
        """
        if deltas.dim() != 2 or deltas.shape[1] % 5 != 0:
            raise ValueError(f"deltas must have shape (N, 5 * k), got {tuple(deltas.shape)}")
        _check_boxes("boxes", boxes, 5)
        boxes = boxes.to(deltas.dtype).unsqueeze(2)  # (N, 5, 1)
        ctr_x = boxes[:, 0]
        ctr_y = boxes[:, 1]
        widths = boxes[:, 2]
        heights = boxes[:, 3]
        angles = boxes[:, 4]

        wx, wy, ww, wh, wa = self.weights
        dx = deltas[:, 0::5] / wx
        dy = deltas[:, 1::5] / wy
        dw = deltas[:, 2::5] / ww
        dh = deltas[:, 3::5] / wh
        da = deltas[:, 4::5] / wa
        dw = torch.clamp(dw, max=self.scale_clamp)
        dh = torch.clamp(dh, max=self.scale_clamp)

        pred_boxes = torch.zeros_like(deltas)
        pred_boxes[:, 0::5] = dx * widths + ctr_x
        pred_boxes[:, 1::5] = dy * heights + ctr_y
        pred_boxes[:, 2::5] = torch.exp(dw) * widths
        pred_boxes[:, 3::5] = torch.exp(dh) * heights
        pred_angle = da * 180.0 / math.pi + angles
        pred_boxes[:, 4::5] = (pred_angle + 180.0) % 360.0 - 180.0
        return pred_boxes


class Box2BoxTransformLinear:
    """The FCOS box coder: distances ``(l, t, r, b)`` from the source box centre to the target's
    sides, divided by the source box size when ``normalize_by_size``.
    """

    def __init__(self, normalize_by_size: bool = True) -> None:
        self.normalize_by_size = normalize_by_size

    def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
        """
        Args:
            src_boxes (Tensor[N, 4]): x0, y0, x1, y1 source boxes (anchors / points).
            target_boxes (Tensor[N, 4]): x0, y0, x1, y1 targets.

        Returns:
            Tensor[N, 4]: ``(l, t, r, b)``.
        """
        _check_boxes("src_boxes", src_boxes, 4)
        _check_boxes("target_boxes", target_boxes, 4)
        src_ctr_x = 0.5 * (src_boxes[:, 0] + src_boxes[:, 2])
        src_ctr_y = 0.5 * (src_boxes[:, 1] + src_boxes[:, 3])
        target_l = src_ctr_x - target_boxes[:, 0]
        target_t = src_ctr_y - target_boxes[:, 1]
        target_r = target_boxes[:, 2] - src_ctr_x
        target_b = target_boxes[:, 3] - src_ctr_y
        deltas = torch.stack((target_l, target_t, target_r, target_b), dim=1)
        if self.normalize_by_size:
            stride_w = src_boxes[:, 2] - src_boxes[:, 0]
            stride_h = src_boxes[:, 3] - src_boxes[:, 1]
            deltas = deltas / torch.stack([stride_w, stride_h, stride_w, stride_h], dim=1)
        return deltas

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """
        Args:
            deltas (Tensor[N, 4 * k]): ``(l, t, r, b)`` distances (negative ones count as 0).
            boxes (Tensor[N, 4]): the source boxes.

        Returns:
            Tensor[N, 4 * k]: decoded x0, y0, x1, y1 boxes.
        """
        if deltas.dim() != 2 or deltas.shape[1] % 4 != 0:
            raise ValueError(f"deltas must have shape (N, 4 * k), got {tuple(deltas.shape)}")
        _check_boxes("boxes", boxes, 4)
        # Distances are non-negative by construction.
        deltas = F.relu(deltas)
        boxes = boxes.to(deltas.dtype)
        ctr_x = 0.5 * (boxes[:, 0] + boxes[:, 2])
        ctr_y = 0.5 * (boxes[:, 1] + boxes[:, 3])
        if self.normalize_by_size:
            stride_w = boxes[:, 2] - boxes[:, 0]
            stride_h = boxes[:, 3] - boxes[:, 1]
            strides = torch.stack([stride_w, stride_h, stride_w, stride_h], dim=1)
            deltas = deltas * strides.repeat(1, deltas.shape[1] // 4)
        pred_boxes = torch.zeros_like(deltas)
        pred_boxes[:, 0::4] = ctr_x[:, None] - deltas[:, 0::4]
        pred_boxes[:, 1::4] = ctr_y[:, None] - deltas[:, 1::4]
        pred_boxes[:, 2::4] = ctr_x[:, None] + deltas[:, 2::4]
        pred_boxes[:, 3::4] = ctr_y[:, None] + deltas[:, 3::4]
        return pred_boxes


_BOX_LOSS_TYPES = ("smooth_l1", "giou", "diou", "ciou")


def _dense_box_regression_loss(
    anchors: list[Boxes] | list[torch.Tensor],
    box2box_transform: Box2BoxTransform | Box2BoxTransformLinear,
    pred_anchor_deltas: list[torch.Tensor],
    gt_boxes: list[torch.Tensor],
    fg_mask: torch.Tensor,
    box_reg_loss_type: str = "smooth_l1",
    smooth_l1_beta: float = 0.0,
) -> torch.Tensor:
    """The summed box-regression loss of a dense head (RPN, RetinaNet, FCOS) over foreground.

    Shape shorthand: N images, R anchors over all levels, B box dim (4).

    Args:
        anchors (list[Boxes] or list[Tensor[R_l, B]]): the anchors of each level.
        box2box_transform: the coder relating anchors, deltas and boxes.
        pred_anchor_deltas (list[Tensor[N, R_l, 4]]): predicted deltas of each level.
        gt_boxes (list[Tensor[R, 4]]): per image, the ground-truth box matched to each anchor.
        fg_mask (Tensor[N, R] of bool): the foreground anchors (only these are counted).
        box_reg_loss_type: "smooth_l1" (on deltas), or "giou", "diou", "ciou" (on boxes).
        smooth_l1_beta: beta of the smooth L1 loss (0 is L1).

    Returns:
        Tensor[]: the loss, summed (not normalised).
    """
    if box_reg_loss_type not in _BOX_LOSS_TYPES:
        raise ValueError(
            f"Invalid dense box regression loss type {box_reg_loss_type!r}; "
            f"expected one of {_BOX_LOSS_TYPES}"
        )
    if not isinstance(anchors[0], torch.Tensor):  # Boxes or RotatedBoxes
        anchors = type(anchors[0]).cat(anchors).tensor  # (R, B)
    else:
        anchors = cat(anchors)
    pred = cat(pred_anchor_deltas, dim=1)  # (N, R, 4)
    gt = torch.stack(gt_boxes)  # (N, R, 4)
    # Only foreground anchors contribute: decode / encode just those.
    _, anchor_idx = fg_mask.nonzero(as_tuple=True)
    fg_anchors = anchors[anchor_idx]
    fg_pred = pred[fg_mask]
    fg_gt = gt[fg_mask]
    if box_reg_loss_type == "smooth_l1":
        gt_deltas = box2box_transform.get_deltas(fg_anchors, fg_gt)
        return smooth_l1_loss(fg_pred, gt_deltas, beta=smooth_l1_beta, reduction="sum")
    pred_boxes = box2box_transform.apply_deltas(fg_pred, fg_anchors)
    loss_fn = {"giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}[box_reg_loss_type]
    return loss_fn(pred_boxes, fg_gt, reduction="sum")
