"""Tests of torchdet.modeling.sampling."""

from __future__ import annotations

import pytest
import torch

from torchdet.modeling.sampling import subsample_labels


def test_subsample_labels_balanced():
    labels = torch.tensor([1] * 10 + [0] * 30 + [-1] * 5 + [3] * 2)
    pos, neg = subsample_labels(labels, num_samples=16, positive_fraction=0.25, bg_label=0)
    assert len(pos) == 4 and len(neg) == 12
    # Positives are any label other than -1 and bg; no index repeats.
    assert set(labels[pos].tolist()) <= {1, 3}
    assert set(labels[neg].tolist()) == {0}
    assert len(set(pos.tolist())) == 4 and len(set(neg.tolist())) == 12


def test_subsample_labels_few_positives_filled_by_negatives():
    labels = torch.tensor([1, 1, 0, 0, 0, 0, 0, 0, -1, -1])
    pos, neg = subsample_labels(labels, num_samples=6, positive_fraction=0.5, bg_label=0)
    assert sorted(pos.tolist()) == [0, 1]
    assert len(neg) == 4


def test_subsample_labels_not_enough_of_anything():
    labels = torch.tensor([1, 0, -1])
    pos, neg = subsample_labels(labels, num_samples=256, positive_fraction=0.5, bg_label=0)
    assert pos.tolist() == [0] and neg.tolist() == [1]


def test_subsample_labels_empty():
    pos, neg = subsample_labels(torch.zeros(0, dtype=torch.int64), 8, 0.5, 0)
    assert pos.numel() == 0 and neg.numel() == 0


def test_subsample_labels_bad_fraction():
    with pytest.raises(ValueError, match="positive_fraction"):
        subsample_labels(torch.zeros(3), 2, 1.5, 0)
