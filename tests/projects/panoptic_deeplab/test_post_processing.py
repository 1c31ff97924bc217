"""Panoptic-DeepLab post-processing on hand-built maps."""

from __future__ import annotations

import pytest
import torch

from torchdet.projects.panoptic_deeplab import (
    find_instance_center,
    get_panoptic_segmentation,
    group_pixels,
    merge_semantic_and_instance,
)


def test_find_instance_center_nms_threshold_top_k():
    heat = torch.zeros(1, 5, 7)
    heat[0, 1, 1] = 0.9
    heat[0, 1, 2] = 0.5  # suppressed by its 0.9 neighbour
    heat[0, 3, 5] = 0.6
    heat[0, 4, 0] = 0.05  # below threshold
    centers = find_instance_center(heat, threshold=0.1, nms_kernel=3)
    assert centers.tolist() == [[1, 1], [3, 5]]
    # As the reference: strictly above the k-th score, so top_k=2 keeps one centre.
    assert find_instance_center(heat, threshold=0.1, nms_kernel=3, top_k=2).tolist() == [[1, 1]]
    assert find_instance_center(heat, threshold=0.1, nms_kernel=3, top_k=1).shape == (0, 2)
    assert find_instance_center(torch.zeros(1, 4, 4)).shape == (0, 2)
    with pytest.raises(ValueError, match="center_heatmap"):
        find_instance_center(torch.zeros(4, 4))


def test_group_pixels_nearest_center():
    centers = torch.tensor([[0, 0], [0, 3]])
    offsets = torch.zeros(2, 1, 4)
    offsets[1, 0, 1] = 2.0  # pixel (0, 1) points at x = 3
    assert group_pixels(centers, offsets).tolist() == [[[1, 2, 2, 2]]]


def test_merge_majority_vote_renumbering_and_stuff_area():
    # classes 0, 1 things; 2, 3 stuff; divisor 10.
    sem = torch.tensor([[[0, 0, 1, 1, 2, 2, 3]]])
    ins = torch.tensor([[[1, 1, 1, 2, 0, 0, 0]]])
    thing = torch.tensor([[[1, 1, 1, 1, 0, 0, 0]]])
    pan = merge_semantic_and_instance(sem, ins, thing, 10, [0, 1], stuff_area=2, void_label=-1)
    # instance 1 votes class 0 (2 of 3 pixels) -> 1; instance 2 is class 1's first -> 11;
    # stuff class 2 has 2 pixels (kept), class 3 has 1 (< stuff_area -> void).
    assert pan.tolist() == [[[1, 1, 1, 11, 20, 20, -1]]]
    ins2 = torch.tensor([[[1, 1, 2, 2, 0, 0, 0]]])
    sem2 = torch.tensor([[[0, 0, 0, 0, 2, 2, 3]]])
    pan2 = merge_semantic_and_instance(sem2, ins2, thing, 10, [0, 1], 1, -1)
    assert pan2.tolist() == [[[1, 1, 2, 2, 20, 20, 30]]]


def test_get_panoptic_segmentation_end_to_end():
    sem = torch.tensor([[[0, 0, 2, 2, 0, 0]]])
    heat = torch.tensor([[[0.0, 0.9, 0.0, 0.0, 0.0, 0.8]]])
    offsets = torch.zeros(2, 1, 6)
    offsets[1, 0] = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    pan, centers = get_panoptic_segmentation(
        sem,
        heat,
        offsets,
        thing_ids=[0, 1],
        label_divisor=1000,
        stuff_area=1,
        void_label=-1,
        threshold=0.1,
        nms_kernel=3,
        top_k=10,
    )
    assert centers.tolist() == [[[0, 1], [0, 5]]]
    assert pan.tolist() == [[[1, 1, 2000, 2000, 2, 2]]]
    with pytest.raises(ValueError, match="offsets"):
        get_panoptic_segmentation(sem, heat, offsets[:1], [0], 1000, 1, -1)
    # No centre: every thing pixel is void, stuff stays.
    pan, _ = get_panoptic_segmentation(sem, torch.zeros_like(heat), offsets, [0], 1000, 1, -1)
    assert pan.tolist() == [[[-1, -1, 2000, 2000, -1, -1]]]
