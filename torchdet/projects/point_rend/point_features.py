"""Point sampling for PointRend: bilinear features at continuous points, regular grids,
uncertainty-driven point selection and point labels from ground-truth masks.

Shape shorthand: R regions, P points per region, C channels, H x W a map's size. Point
coordinates are ``(x, y)``; "normalized" means in [0, 1] x [0, 1] over a region box or a map
(0 and 1 are the outer edges, so pixel i covers [i / W, (i + 1) / W]).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

from torchdet.layers import cat
from torchdet.structures import BitMasks, Boxes, Instances

__all__ = [
    "generate_regular_grid_point_coords",
    "get_point_coords_wrt_image",
    "get_uncertain_point_coords_on_grid",
    "get_uncertain_point_coords_with_randomness",
    "point_sample",
    "point_sample_fine_grained_features",
    "sample_point_labels",
]


def point_sample(input: torch.Tensor, point_coords: torch.Tensor, **kwargs) -> torch.Tensor:
    """Bilinearly sample ``input`` at normalized points (``F.grid_sample`` with [0, 1] coords).

    Args:
        input (Tensor[N, C, H, W]): maps.
        point_coords (Tensor[N, P, 2] or Tensor[N, Hg, Wg, 2]): normalized (x, y) points.
        **kwargs: passed to ``F.grid_sample`` (PointRend uses ``align_corners=False``).

    Returns:
        Tensor[N, C, P] (or Tensor[N, C, Hg, Wg]).
    """
    if input.dim() != 4:
        raise ValueError(f"point_sample: input must be (N, C, H, W), got {tuple(input.shape)}")
    if point_coords.dim() not in (3, 4) or point_coords.shape[-1] != 2:
        raise ValueError(
            f"point_sample: point_coords must be (N, P, 2) or (N, Hg, Wg, 2), got "
            f"{tuple(point_coords.shape)}"
        )
    add_dim = point_coords.dim() == 3
    if add_dim:
        point_coords = point_coords.unsqueeze(2)
    output = F.grid_sample(input, 2.0 * point_coords - 1.0, **kwargs)
    return output.squeeze(3) if add_dim else output


def generate_regular_grid_point_coords(
    R: int, side_size: int, device: torch.device | str
) -> torch.Tensor:
    """Centres of the cells of a ``side_size x side_size`` grid over the unit square.

    Returns:
        Tensor[R, side_size ** 2, 2]: normalized (x, y), row-major, the same for every region.
    """
    centres = (torch.arange(side_size, dtype=torch.float32, device=device) + 0.5) / side_size
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    grid = torch.stack([xs, ys], dim=-1).view(1, -1, 2)
    return grid.expand(R, -1, -1)


def get_uncertain_point_coords_with_randomness(
    coarse_logits: torch.Tensor,
    uncertainty_func: Callable[[torch.Tensor], torch.Tensor],
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
) -> torch.Tensor:
    """Training point selection: draw ``num_points * oversample_ratio`` uniform points, keep the
    ``importance_sample_ratio * num_points`` most uncertain ones and add uniform points.

    Args:
        coarse_logits (Tensor[R, K, Hm, Wm]): coarse predictions.
        uncertainty_func: maps point logits (Tensor[R, K, P]) to uncertainties (Tensor[R, 1, P]),
            higher meaning more uncertain.
        num_points: P, points per region.
        oversample_ratio: k >= 1.
        importance_sample_ratio: beta in [0, 1].

    Returns:
        Tensor[R, P, 2]: normalized (x, y) points.
    """
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(
            f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}"
        )
    num_boxes = coarse_logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    point_coords = torch.rand(num_boxes, num_sampled, 2, device=coarse_logits.device)
    point_logits = point_sample(coarse_logits, point_coords, align_corners=False)
    # Uncertainty is computed on sampled logits (not on the interpolated uncertainty map):
    # the two differ where the prediction changes sign between cells.
    point_uncertainties = uncertainty_func(point_logits)
    num_uncertain_points = int(importance_sample_ratio * num_points)
    num_random_points = num_points - num_uncertain_points
    idx = torch.topk(point_uncertainties[:, 0, :], k=num_uncertain_points, dim=1)[1]
    point_coords = torch.gather(point_coords, 1, idx[:, :, None].expand(-1, -1, 2))
    if num_random_points > 0:
        random = torch.rand(num_boxes, num_random_points, 2, device=coarse_logits.device)
        point_coords = cat([point_coords, random], dim=1)
    return point_coords


def get_uncertain_point_coords_on_grid(
    uncertainty_map: torch.Tensor, num_points: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``num_points`` most uncertain cells of a map (inference subdivision).

    Args:
        uncertainty_map (Tensor[R, 1, H, W]): higher is more uncertain.
        num_points: cells to select (capped at H * W).

    Returns:
        point_indices (Tensor[R, P]): flat indices into H * W.
        point_coords (Tensor[R, P, 2]): normalized (x, y) centres of those cells.
    """
    R, _, H, W = uncertainty_map.shape
    num_points = min(H * W, num_points)
    point_indices = torch.topk(uncertainty_map.view(R, H * W), k=num_points, dim=1)[1]
    # Written as step/2 + i*step to reproduce the reference's float rounding exactly.
    w_step, h_step = 1.0 / float(W), 1.0 / float(H)
    xs = w_step / 2.0 + (point_indices % W).to(torch.float) * w_step
    ys = h_step / 2.0 + torch.div(point_indices, W, rounding_mode="floor").to(torch.float) * h_step
    return point_indices, torch.stack([xs, ys], dim=2)


def get_point_coords_wrt_image(
    boxes_coords: torch.Tensor, point_coords: torch.Tensor
) -> torch.Tensor:
    """Map box-normalized points to image coordinates.

    Args:
        boxes_coords (Tensor[R, 4]): x0, y0, x1, y1 in absolute pixels.
        point_coords (Tensor[R, P, 2]): normalized (x, y) in each box.

    Returns:
        Tensor[R, P, 2]: absolute (x, y) in the image.
    """
    with torch.no_grad():
        x = point_coords[:, :, 0] * (boxes_coords[:, None, 2] - boxes_coords[:, None, 0])
        y = point_coords[:, :, 1] * (boxes_coords[:, None, 3] - boxes_coords[:, None, 1])
        x = x + boxes_coords[:, None, 0]
        y = y + boxes_coords[:, None, 1]
        return torch.stack([x, y], dim=2)


def point_sample_fine_grained_features(
    features_list: Sequence[torch.Tensor],
    feature_scales: Sequence[float],
    boxes: Sequence[Boxes],
    point_coords: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample feature maps at box-normalized points of every region.

    For a regular grid of points this equals RoIAlign with one sample per bin (aligned).

    Args:
        features_list: per level, Tensor[N, C_l, H_l, W_l] for the N images.
        feature_scales: per level, 1 / stride.
        boxes: per image, the regions' ``Boxes`` (R_i of them, sum R).
        point_coords (Tensor[R, P, 2]): normalized (x, y) in each box.

    Returns:
        point_features (Tensor[R, sum C_l, P]) and the points in image coordinates
        (Tensor[R, P, 2]).
    """
    if len(features_list) != len(feature_scales):
        raise ValueError(
            f"{len(features_list)} feature maps but {len(feature_scales)} feature scales"
        )
    cat_boxes = Boxes.cat(list(boxes))
    num_boxes = [len(b) for b in boxes]
    if point_coords.shape[0] != len(cat_boxes):
        raise ValueError(
            f"point_coords has {point_coords.shape[0]} regions but boxes have {len(cat_boxes)}"
        )
    point_coords_wrt_image = get_point_coords_wrt_image(cat_boxes.tensor, point_coords)
    per_image = torch.split(point_coords_wrt_image, num_boxes)
    point_features = []
    for idx_img, coords in enumerate(per_image):
        per_level = []
        for feature_map, feature_scale in zip(features_list, feature_scales):
            h, w = feature_map.shape[-2:]
            # Image coordinates -> [0, 1] over the feature map (its extent is W_l / scale).
            scale = torch.tensor([w, h], dtype=coords.dtype, device=coords.device) / feature_scale
            sampled = point_sample(
                feature_map[idx_img].unsqueeze(0),
                (coords / scale).unsqueeze(0),
                align_corners=False,
            )  # (1, C_l, R_i, P)
            per_level.append(sampled.squeeze(0).transpose(1, 0))  # (R_i, C_l, P)
        point_features.append(cat(per_level, dim=1))
    return cat(point_features, dim=0), point_coords_wrt_image


def sample_point_labels(instances: Sequence[Instances], point_coords: torch.Tensor) -> torch.Tensor:
    """Ground-truth mask values (bilinear, in [0, 1]) at image points of each region.

    Args:
        instances: per image, the regions with ``gt_masks`` as ``BitMasks``.
        point_coords (Tensor[R, P, 2]): absolute (x, y) image points of the R regions.

    Returns:
        Tensor[R, P] float in [0, 1].
    """
    with torch.no_grad():
        splits = torch.split(point_coords, [len(x) for x in instances])
        labels = []
        for i, instances_per_image in enumerate(instances):
            if len(instances_per_image) == 0:
                continue
            if not isinstance(instances_per_image.gt_masks, BitMasks):
                raise TypeError(
                    "PointRend's point head needs gt_masks as BitMasks, got "
                    f"{type(instances_per_image.gt_masks).__name__} on image {i}: set "
                    "INPUT.MASK_FORMAT to 'bitmask'"
                )
            gt_bit_masks = instances_per_image.gt_masks.tensor
            h, w = instances_per_image.gt_masks.image_size
            scale = torch.tensor([w, h], dtype=torch.float, device=gt_bit_masks.device)
            labels.append(
                point_sample(
                    gt_bit_masks.to(torch.float32).unsqueeze(1),
                    splits[i] / scale,
                    align_corners=False,
                ).squeeze(1)
            )
        if not labels:
            return point_coords.new_zeros((0, point_coords.shape[1]))
        return cat(labels)
