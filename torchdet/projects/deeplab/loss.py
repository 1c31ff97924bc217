"""DeepLab's bootstrapped cross-entropy ("hard pixel mining")."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DeepLabCE"]


class DeepLabCE(nn.Module):
    """Per-pixel cross-entropy averaged over the ``top_k_percent_pixels`` largest losses.

    Ignored pixels have a zero loss, so they only count when fewer than the top-k pixels
    have a positive loss (as in the reference).

    Args:
        ignore_label: the label of pixels without a loss.
        top_k_percent_pixels: fraction in (0, 1] of the pixels to average over.
        weight (Tensor[C], optional): per-class weights of the cross-entropy.
    """

    def __init__(
        self,
        ignore_label: int = -1,
        top_k_percent_pixels: float = 1.0,
        weight: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < top_k_percent_pixels <= 1.0:
            raise ValueError(
                f"DeepLabCE: top_k_percent_pixels must be in (0, 1], got {top_k_percent_pixels}"
            )
        self.top_k_percent_pixels = top_k_percent_pixels
        self.ignore_label = ignore_label
        self.weight = weight

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """
        Args:
            logits (Tensor[N, C, H, W]): class scores.
            labels (Tensor[N, H, W] int64): class ids or ``ignore_label``.
            weights (Tensor[N, H, W], optional): per-pixel loss weights.

        Returns:
            Tensor[]: the loss.
        """
        if logits.dim() != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(
                f"DeepLabCE: logits must be (N, C, H, W) and labels (N, H, W); got "
                f"{tuple(logits.shape)} and {tuple(labels.shape)}"
            )
        pixel_losses = F.cross_entropy(
            logits, labels, weight=self.weight, ignore_index=self.ignore_label, reduction="none"
        )
        if weights is not None:
            pixel_losses = pixel_losses * weights
        pixel_losses = pixel_losses.reshape(-1)
        if self.top_k_percent_pixels == 1.0:
            return pixel_losses.mean()
        top_k = int(self.top_k_percent_pixels * pixel_losses.numel())
        pixel_losses, _ = torch.topk(pixel_losses, top_k)
        return pixel_losses.mean()
