"""The TensorMask head: classification, box and mask towers shared over the pyramid levels.

The mask branch predicts, at every location of a level, a V x U window mask (V = U =
``mask_size``) as V*U channels, in the natural representation, or in the aligned one (then
converted by ``swap_align2nat``). With the tensor bipyramid the level-l masks are upsampled
to the finest level's pixel resolution: ``swap_align2nat`` with lambda = 2^(l - l0) turns an
aligned (V*U, H, W) prediction at the finer grid into natural (lambda V)^2 masks at the level's
own grid.

Shape shorthand: N images, A anchors per location, K classes, H_l x W_l level l's grid.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from torchdet.layers import ShapeSpec

from .swap_align2nat import swap_align2nat

__all__ = ["TensorMaskHead"]


def _tower(in_channels: int, channels: int, num_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU()]
        in_channels = channels
    return nn.Sequential(*layers)


class TensorMaskHead(nn.Module):
    """Args:
    input_shape: the levels' shapes (same channels), finest first.
    num_classes, num_anchors: per location outputs.
    num_convs, cls_channels, bbox_channels, mask_channels: the towers.
    mask_size: window side V of the finest level (natural masks of level l have side
        ``mask_size`` without bipyramid, ``mask_size * 2^l`` with it).
    aligned_on, bipyramid_on: the representation options.
    prior_prob: initial foreground probability of the classifier.
    """

    def __init__(
        self,
        input_shape: list[ShapeSpec],
        *,
        num_classes: int,
        num_anchors: int = 1,
        num_convs: int = 4,
        cls_channels: int = 256,
        bbox_channels: int = 128,
        mask_channels: int = 128,
        mask_size: int = 15,
        aligned_on: bool = False,
        bipyramid_on: bool = False,
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"TensorMaskHead: levels must share channels, got {channels}")
        in_channels = channels.pop()
        self.num_levels = len(input_shape)
        self.num_classes, self.num_anchors = num_classes, num_anchors
        self.mask_size = mask_size
        self.aligned_on, self.bipyramid_on = aligned_on, bipyramid_on
        self.cls_subnet = _tower(in_channels, cls_channels, num_convs)
        self.cls_score = nn.Conv2d(
            cls_channels if num_convs else in_channels, num_anchors * num_classes, 3, padding=1
        )
        self.bbox_subnet = _tower(in_channels, bbox_channels, num_convs)
        self.bbox_pred = nn.Conv2d(
            bbox_channels if num_convs else in_channels, num_anchors * 4, 3, padding=1
        )
        self.mask_subnet = _tower(in_channels, mask_channels, num_convs)
        self.mask_pred = nn.Conv2d(
            mask_channels if num_convs else in_channels, num_anchors * mask_size * mask_size, 1
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.constant_(m.bias, 0)
        nn.init.constant_(self.cls_score.bias, -math.log((1 - prior_prob) / prior_prob))

    def mask_side(self, level: int) -> int:
        """The natural mask side of ``level`` (0 = finest)."""
        return self.mask_size * (2**level if self.bipyramid_on else 1)

    def forward(self, features: list[torch.Tensor]):
        """
        Args:
            features: the levels' maps (Tensor[N, C, H_l, W_l]), finest first; with the
                bipyramid every level must be 2x coarser than the previous.

        Returns:
            logits (list[Tensor[N, A*K, H_l, W_l]]), bbox deltas (list[Tensor[N, A*4, H_l,
            W_l]]), masks (list[Tensor[N, A, S_l * S_l, H_l, W_l]] natural-representation
            logits, S_l = ``mask_side(l)``).
        """
        if len(features) != self.num_levels:
            raise ValueError(f"TensorMaskHead: {len(features)} levels, expected {self.num_levels}")
        logits = [self.cls_score(self.cls_subnet(f)) for f in features]
        deltas = [self.bbox_pred(self.bbox_subnet(f)) for f in features]
        masks = []
        a, v = self.num_anchors, self.mask_size
        for level, f in enumerate(features):
            n, _, h, w = f.shape
            tower = self.mask_subnet(f)
            if self.bipyramid_on and level > 0:
                lam = 2**level
                # Predict aligned masks at the finest grid, then swap to natural masks of side
                # lam * V at this level's grid.
                up = F.interpolate(tower, scale_factor=lam, mode="nearest")
                pred = self.mask_pred(up).view(n * a, v * v, h * lam, w * lam)
                pred = swap_align2nat(pred, lam)
            else:
                pred = self.mask_pred(tower).view(n * a, v * v, h, w)
                if self.aligned_on:
                    pred = swap_align2nat(pred, 1)
            masks.append(pred.view(n, a, -1, h, w))
        return logits, deltas, masks
