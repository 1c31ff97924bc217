"""The chart-based DensePose losses: smooth-L1 on U/V and cross-entropy on the surface patch
at the annotated points (bilinearly interpolated from the estimates), and cross-entropy on
the coarse segmentation against the resampled ``dp_masks``.

Shape shorthand: N proposals with DensePose ground truth, P annotated points in all,
M x M the estimate side, K = NUM_PATCHES + 1.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from torchdet.structures import Instances

from ..structures import DensePoseChartPredictorOutput

__all__ = ["DensePoseChartLoss", "resample_data"]


def _xywh(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)


def resample_data(
    z: torch.Tensor,
    bbox_xywh_src: torch.Tensor,
    bbox_xywh_dst: torch.Tensor,
    wout: int,
    hout: int,
    mode: str = "nearest",
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Resample ``z`` (Tensor[N, C, H, W], over the source boxes) onto a ``hout`` x ``wout``
    grid over the destination boxes (Tensor[N, 4] XYWH), with ``grid_sample``."""
    n = bbox_xywh_src.shape[0]
    x0s, y0s, ws, hs = bbox_xywh_src.unbind(1)
    x0d, y0d, wd, hd = bbox_xywh_dst.unbind(1)
    # Destination cell centres in source-box normalised coordinates [-1, 1].
    gx = (torch.arange(wout, device=z.device, dtype=z.dtype) + 0.5) / wout
    gy = (torch.arange(hout, device=z.device, dtype=z.dtype) + 0.5) / hout
    x = (x0d[:, None] + gx[None] * wd[:, None] - x0s[:, None]) / ws[:, None] * 2 - 1  # (N, W)
    y = (y0d[:, None] + gy[None] * hd[:, None] - y0s[:, None]) / hs[:, None] * 2 - 1  # (N, H)
    grid = torch.stack(
        [x[:, None, :].expand(n, hout, wout), y[:, :, None].expand(n, hout, wout)], dim=3
    )
    return F.grid_sample(z, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def _interpolation(v_norm, v0_src, size_src, v0_dst, size_dst, size_z: int):
    """Grid cells and weights of points given relative to the ground-truth box (in
    [0, 256)) on an estimate of ``size_z`` cells over the proposal box."""
    v = v0_src + v_norm * size_src / 256.0
    valid = (v - v0_dst >= 0) & (v - v0_dst < size_dst)
    grid = (v - v0_dst) * size_z / size_dst
    lo = grid.floor().long().clamp(min=0, max=size_z - 1)
    hi = (lo + 1).clamp(max=size_z - 1)
    grid = torch.min(hi.to(grid.dtype), grid)
    return lo, hi, grid - lo.to(grid.dtype), valid


class DensePoseChartLoss:
    """``loss_densepose_{U, V}`` (smooth L1, summed, x ``POINT_REGRESSION_WEIGHTS``),
    ``loss_densepose_I`` (patch cross-entropy x ``PART_WEIGHTS``) and ``loss_densepose_S``
    (coarse segmentation cross-entropy x ``INDEX_WEIGHTS``)."""

    def __init__(self, *, w_points: float, w_part: float, w_segm: float, n_segm_chan: int) -> None:
        self.w_points, self.w_part, self.w_segm = w_points, w_part, w_segm
        self.n_segm_chan = n_segm_chan

    @classmethod
    def from_cfg(cls, cfg) -> DensePoseChartLoss:
        h = cfg.MODEL.ROI_DENSEPOSE_HEAD
        return cls(
            w_points=h.POINT_REGRESSION_WEIGHTS,
            w_part=h.PART_WEIGHTS,
            w_segm=h.INDEX_WEIGHTS,
            n_segm_chan=h.NUM_COARSE_SEGM_CHANNELS,
        )

    @staticmethod
    def fake_losses(outputs: DensePoseChartPredictorOutput | None, params) -> dict:
        """Zero losses connected to every output (or parameter), so that every parameter gets
        a gradient even without DensePose ground truth in the batch."""
        if outputs is not None:
            zero = sum(getattr(outputs, k).sum() for k in ("coarse_segm", "fine_segm", "u", "v"))
        else:
            zero = sum(p.sum() for p in params)
        zero = zero * 0
        return {f"loss_densepose_{k}": zero for k in ("U", "V", "I", "S")}

    def __call__(
        self,
        proposals_with_gt: list[Instances],
        outputs: DensePoseChartPredictorOutput | None,
        params=(),
    ) -> dict[str, torch.Tensor]:
        """
        Args:
            proposals_with_gt: per image, proposals with ``proposal_boxes``, ``gt_boxes`` and
                ``gt_densepose`` (``DensePoseDataRelative`` each), in the order of
                ``outputs``.
            outputs: the predictor's outputs on those proposals (None when there are none).
        """
        if outputs is None or len(outputs) == 0:
            return self.fake_losses(outputs, params)
        est, gt, dps = [], [], []
        for p in proposals_with_gt:
            est.append(p.proposal_boxes.tensor)
            gt.append(p.gt_boxes.tensor)
            dps.extend(p.gt_densepose)
        bbox_est, bbox_gt = _xywh(torch.cat(est)), _xywh(torch.cat(gt))
        device = outputs.u.device
        dps = [d.to(device) for d in dps]
        counts = torch.as_tensor([len(d.x) for d in dps], device=device)
        box_of_point = torch.repeat_interleave(torch.arange(len(dps), device=device), counts)
        x = torch.cat([d.x for d in dps])
        y = torch.cat([d.y for d in dps])
        u_gt = torch.cat([d.u for d in dps])
        v_gt = torch.cat([d.v for d in dps])
        i_gt = torch.cat([d.i for d in dps])
        if x.numel() == 0:
            return self.fake_losses(outputs, params)

        h, w = outputs.u.shape[2:]
        bg, be = bbox_gt[box_of_point], bbox_est[box_of_point]
        x_lo, x_hi, x_w, jx = _interpolation(x, bg[:, 0], bg[:, 2], be[:, 0], be[:, 2], w)
        y_lo, y_hi, y_w, jy = _interpolation(y, bg[:, 1], bg[:, 3], be[:, 1], be[:, 3], h)
        valid = jx & jy
        weights = (
            (1 - x_w) * (1 - y_w),  # (y_lo, x_lo)
            x_w * (1 - y_w),  # (y_lo, x_hi)
            (1 - x_w) * y_w,  # (y_hi, x_lo)
            x_w * y_w,  # (y_hi, x_hi)
        )
        corners = ((y_lo, x_lo), (y_lo, x_hi), (y_hi, x_lo), (y_hi, x_hi))

        def at_points(z: torch.Tensor, channel) -> torch.Tensor:
            if channel is None:  # every channel: (P, K)
                return sum(
                    z[box_of_point, :, yy, xx] * ww[:, None]
                    for (yy, xx), ww in zip(corners, weights)
                )
            return sum(
                z[box_of_point, channel, yy, xx] * ww for (yy, xx), ww in zip(corners, weights)
            )

        fg = valid & (i_gt > 0)
        losses = {}
        if fg.any():
            u_est = at_points(outputs.u, i_gt)[fg]
            v_est = at_points(outputs.v, i_gt)[fg]
            losses["loss_densepose_U"] = (
                F.smooth_l1_loss(u_est, u_gt[fg], reduction="sum") * self.w_points
            )
            losses["loss_densepose_V"] = (
                F.smooth_l1_loss(v_est, v_gt[fg], reduction="sum") * self.w_points
            )
        else:
            zero = (outputs.u.sum() + outputs.v.sum()) * 0
            losses["loss_densepose_U"] = losses["loss_densepose_V"] = zero
        if valid.any():
            fine_est = at_points(outputs.fine_segm, None)[valid]
            losses["loss_densepose_I"] = F.cross_entropy(fine_est, i_gt[valid]) * self.w_part
        else:
            losses["loss_densepose_I"] = outputs.fine_segm.sum() * 0

        coarse_est = outputs.coarse_segm
        segm_gt = torch.stack([d.segm for d in dps]).unsqueeze(1)  # (N, 1, 256, 256)
        segm_gt = resample_data(
            segm_gt, bbox_gt, bbox_est, coarse_est.shape[3], coarse_est.shape[2]
        ).squeeze(1)
        if self.n_segm_chan == 2:
            segm_gt = segm_gt > 0
        losses["loss_densepose_S"] = F.cross_entropy(coarse_est, segm_gt.long()) * self.w_segm
        return losses
