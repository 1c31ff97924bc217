"""Raw outputs of the chart-based (IUV) DensePose predictor.

Shape shorthand: N detections, S = NUM_COARSE_SEGM_CHANNELS, P = NUM_PATCHES + 1 (with the
background), M x M the output resolution (2 x 2 x POOLER_RESOLUTION).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

__all__ = ["DensePoseChartPredictorOutput"]


@dataclass
class DensePoseChartPredictorOutput:
    """Per-detection chart estimates over the detection box.

    Attributes:
        coarse_segm (Tensor[N, S, M, M]): foreground (or coarse part) logits.
        fine_segm (Tensor[N, P, M, M]): surface patch logits (0 = background).
        u, v (Tensor[N, P, M, M]): per-patch U and V coordinates (in [0, 1] when trained).
    """

    coarse_segm: torch.Tensor
    fine_segm: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor

    def __post_init__(self) -> None:
        n = self.coarse_segm.shape[0]
        for f in fields(self):
            t = getattr(self, f.name)
            if t.dim() != 4 or t.shape[0] != n:
                raise ValueError(
                    f"DensePoseChartPredictorOutput.{f.name} must be (N={n}, C, M, M), got "
                    f"{tuple(t.shape)}"
                )

    def __len__(self) -> int:
        return self.coarse_segm.shape[0]

    def __getitem__(self, item) -> DensePoseChartPredictorOutput:
        """Select detections (an int keeps a batch dimension of 1)."""
        if isinstance(item, int):
            item = slice(item, item + 1)
        return DensePoseChartPredictorOutput(
            coarse_segm=self.coarse_segm[item],
            fine_segm=self.fine_segm[item],
            u=self.u[item],
            v=self.v[item],
        )

    def to(self, device) -> DensePoseChartPredictorOutput:
        return DensePoseChartPredictorOutput(
            **{f.name: getattr(self, f.name).to(device) for f in fields(self)}
        )
