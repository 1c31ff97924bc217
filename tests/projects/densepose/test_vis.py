"""DensePose visualisation: pasted IUV map, part colours and contour lines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchdet.projects.densepose import DensePoseChartPredictorOutput
from torchdet.projects.densepose.vis import (
    densepose_to_iuv,
    visualize_part_index,
    visualize_uv_contours,
)


def _output() -> DensePoseChartPredictorOutput:
    m = 8
    fine = torch.zeros(1, 25, m, m)
    fine[0, 3, :, : m // 2] = 10  # left half patch 3
    fine[0, 7, :, m // 2 :] = 10  # right half patch 7
    coarse = torch.stack([torch.zeros(m, m), torch.full((m, m), 5.0)])[None]
    u = torch.full((1, 25, m, m), 0.25)
    v = torch.linspace(0, 0.99, m).view(1, 1, m, 1).expand(1, 25, m, m).clone()
    return DensePoseChartPredictorOutput(coarse_segm=coarse, fine_segm=fine, u=u, v=v)


def test_densepose_to_iuv_pastes_into_box():
    iuv = densepose_to_iuv(_output(), torch.tensor([[4.0, 2.0, 12.0, 10.0]]), (12, 16))
    assert iuv.shape == (3, 12, 16)
    assert iuv[0, 5, 5] == 3 and iuv[0, 5, 10] == 7
    assert iuv[0, 0, 0] == 0 and iuv[0, 5, 13] == 0  # outside the box
    assert iuv[1, 5, 5] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="outputs"):
        densepose_to_iuv(_output(), torch.zeros(2, 4), (12, 16))


def test_part_index_and_contours():
    iuv = densepose_to_iuv(_output(), torch.tensor([[4.0, 2.0, 12.0, 10.0]]), (12, 16))
    image = np.zeros((12, 16, 3), np.uint8)
    parts = visualize_part_index(image, iuv, alpha=1.0)
    assert (parts[0, 0] == 0).all()  # background untouched
    assert not (parts[5, 5] == parts[5, 10]).all()  # patches 3 and 7 differ in colour
    contours = visualize_uv_contours(image, iuv, levels=4)
    # The patch border between x = 7 and 8 is a contour (V lines drawn last, in green).
    assert tuple(contours[5, 7]) == (0, 255, 0)
    assert (contours[0, 0] == 0).all()
