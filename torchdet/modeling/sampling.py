"""``subsample_labels``: draw a fixed-size, class-balanced minibatch of anchors or proposals."""

from __future__ import annotations

import torch

from torchdet.layers import nonzero_tuple

__all__ = ["subsample_labels"]


def subsample_labels(
    labels: torch.Tensor, num_samples: int, positive_fraction: float, bg_label: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly pick at most ``num_samples`` elements, at most ``positive_fraction`` positive.

    If there are too few positives, negatives fill the rest of the batch.

    Args:
        labels (Tensor[N] int): -1 ignore, ``bg_label`` background, anything else foreground.
        num_samples (int): the total number to return (at most).
        positive_fraction (float): the largest share of foreground, in [0, 1].
        bg_label (int): the background label.

    Returns:
        pos_idx, neg_idx (Tensor[int64]): indices into ``labels`` of the sampled foreground and
        background elements; disjoint, each in random order.
    """
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    positive = nonzero_tuple((labels != -1) & (labels != bg_label))[0]
    negative = nonzero_tuple(labels == bg_label)[0]

    num_pos = int(num_samples * positive_fraction)
    num_pos = min(positive.numel(), num_pos)
    num_neg = num_samples - num_pos
    num_neg = min(negative.numel(), num_neg)

    perm1 = torch.randperm(positive.numel(), device=positive.device)[:num_pos]
    perm2 = torch.randperm(negative.numel(), device=negative.device)[:num_neg]
    return positive[perm1], negative[perm2]
