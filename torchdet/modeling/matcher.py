"""``Matcher``: assign each prediction (anchor, proposal) to at most one ground-truth element."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from torchdet.layers import nonzero_tuple

__all__ = ["Matcher"]


class Matcher:
    """Match predictions to ground truth by a quality matrix (e.g. IoU), with threshold bands.

    Each prediction is matched to the ground-truth element of highest quality; its label is
    that of the band ``[thresholds[i - 1], thresholds[i])`` holding that quality. E.g.
    ``thresholds=[0.3, 0.5]`` and ``labels=[0, -1, 1]``: quality < 0.3 is negative (0),
    [0.3, 0.5) is ignored (-1), >= 0.5 is positive (1).
    """

    def __init__(
        self,
        thresholds: Sequence[float],
        labels: Sequence[int],
        allow_low_quality_matches: bool = False,
    ) -> None:
        """
        Args:
            thresholds (list[float]): increasing thresholds splitting qualities into bands.
            labels (list[int]): one label per band (``len(thresholds) + 1``), each -1
                (ignore), 0 (negative) or 1 (positive).
            allow_low_quality_matches (bool): also label positive every prediction that is the
                best match (ties included) of some ground-truth element, whatever its quality
                (Faster R-CNN's RPN rule).
        """
        thresholds = list(thresholds)
        if len(thresholds) == 0 or thresholds[0] <= 0:
            raise ValueError(f"Matcher thresholds must be positive, got {thresholds}")
        thresholds.insert(0, -math.inf)
        thresholds.append(math.inf)
        if not all(low <= high for low, high in zip(thresholds[:-1], thresholds[1:])):
            raise ValueError(f"Matcher thresholds must be increasing, got {thresholds[1:-1]}")
        if not all(label in (-1, 0, 1) for label in labels):
            raise ValueError(f"Matcher labels must be -1, 0 or 1, got {list(labels)}")
        if len(labels) != len(thresholds) - 1:
            raise ValueError(
                f"Matcher needs len(thresholds) + 1 labels: {len(thresholds) - 2} thresholds, "
                f"{len(labels)} labels"
            )
        self.thresholds = thresholds
        self.labels = list(labels)
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            match_quality_matrix (Tensor[M, N]): quality of ground-truth ``m`` for prediction
                ``n``, non-negative (e.g. pairwise IoU).

        Returns:
            matches (Tensor[N] int64): the matched ground-truth index of each prediction.
            match_labels (Tensor[N] int8): the label (-1, 0 or 1) of each prediction.
        """
        if match_quality_matrix.dim() != 2:
            raise ValueError(
                "match_quality_matrix must be (M ground truth, N predictions), got shape "
                f"{tuple(match_quality_matrix.shape)}"
            )
        if match_quality_matrix.numel() == 0:
            # No ground truth (or no prediction): everything gets the label of the lowest band.
            default_matches = match_quality_matrix.new_full(
                (match_quality_matrix.size(1),), 0, dtype=torch.int64
            )
            default_match_labels = match_quality_matrix.new_full(
                (match_quality_matrix.size(1),), self.labels[0], dtype=torch.int8
            )
            return default_matches, default_match_labels

        # Max over ground truth (dim 0) gives the best ground truth for each prediction.
        matched_vals, matches = match_quality_matrix.max(dim=0)
        match_labels = matches.new_full(matches.size(), 1, dtype=torch.int8)
        for label, low, high in zip(self.labels, self.thresholds[:-1], self.thresholds[1:]):
            low_high = (matched_vals >= low) & (matched_vals < high)
            match_labels[low_high] = label

        if self.allow_low_quality_matches:
            self.set_low_quality_matches_(match_labels, match_quality_matrix)
        return matches, match_labels

    def set_low_quality_matches_(
        self, match_labels: torch.Tensor, match_quality_matrix: torch.Tensor
    ) -> None:
        """Label positive the predictions of highest quality for each ground-truth element.

        Ties all count: every prediction reaching a ground truth's best quality is positive.
        ``matches`` is left unchanged, so such a prediction may stay matched to another ground
        truth of (slightly) higher quality, as in Detectron2.
        """
        highest_quality_foreach_gt, _ = match_quality_matrix.max(dim=1)  # (M,)
        _, pred_inds_with_highest_quality = nonzero_tuple(
            match_quality_matrix == highest_quality_foreach_gt[:, None]
        )
        match_labels[pred_inds_with_highest_quality] = 1
