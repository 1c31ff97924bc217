"""Tests for ``torchdet.structures.ImageList``."""

from __future__ import annotations

import pytest
import torch

from torchdet.structures import ImageList


def test_from_tensors_pads_to_max_size_with_pad_value():
    a = torch.ones(3, 5, 7)
    b = torch.full((3, 8, 4), 2.0)
    il = ImageList.from_tensors([a, b], pad_value=-1.0)
    assert il.tensor.shape == (2, 3, 8, 7)
    assert il.image_sizes == [(5, 7), (8, 4)]
    assert all(isinstance(v, int) for s in il.image_sizes for v in s)
    assert len(il) == 2
    # valid regions hold the images, the rest is the pad value
    assert il[0].shape == (3, 5, 7) and (il[0] == 1).all()
    assert il[1].shape == (3, 8, 4) and (il[1] == 2).all()
    assert (il.tensor[0, :, 5:, :] == -1).all()
    assert (il.tensor[1, :, :, 4:] == -1).all()
    assert int((il.tensor == -1).sum()) == 3 * (8 * 7 - 5 * 7) + 3 * (8 * 7 - 8 * 4)
    assert il.tensor.is_contiguous()


def test_size_divisibility():
    il = ImageList.from_tensors([torch.zeros(3, 33, 17), torch.zeros(3, 20, 40)], 32)
    assert il.tensor.shape == (2, 3, 64, 64)
    assert il.image_sizes == [(33, 17), (20, 40)]
    # exact multiples stay as they are; a single image is padded too
    single = ImageList.from_tensors([torch.ones(1, 32, 64)], size_divisibility=32)
    assert single.tensor.shape == (1, 1, 32, 64)
    single = ImageList.from_tensors([torch.ones(1, 30, 50)], size_divisibility=16, pad_value=7)
    assert single.tensor.shape == (1, 1, 32, 64)
    assert (single.tensor[0, 0, 30:] == 7).all() and (single.tensor[0, 0, :30, 50:] == 7).all()
    assert (single[0] == 1).all()


def test_padding_constraints_square_size_and_divisibility():
    imgs = [torch.zeros(3, 100, 60), torch.zeros(3, 50, 120)]
    il = ImageList.from_tensors(imgs, padding_constraints={"square_size": 128})
    assert il.tensor.shape == (2, 3, 128, 128)
    # size_divisibility in the constraints overrides the argument
    il = ImageList.from_tensors(
        imgs, size_divisibility=4, padding_constraints={"size_divisibility": 64}
    )
    assert il.tensor.shape == (2, 3, 128, 128)
    il = ImageList.from_tensors(imgs, size_divisibility=32, padding_constraints={"square_size": 0})
    assert il.tensor.shape == (2, 3, 128, 128)
    with pytest.raises(ValueError, match="square_size 64"):
        ImageList.from_tensors(imgs, padding_constraints={"square_size": 64})


def test_batch_without_channels_and_dtype():
    il = ImageList.from_tensors(
        [torch.ones(4, 5, dtype=torch.uint8), torch.ones(6, 2, dtype=torch.uint8)]
    )
    assert il.tensor.shape == (2, 6, 5) and il.tensor.dtype == torch.uint8
    assert il[1].shape == (6, 2)


def test_errors():
    with pytest.raises(ValueError, match="image 1 .* channels"):
        ImageList.from_tensors([torch.zeros(3, 4, 4), torch.zeros(1, 4, 4)])
    with pytest.raises(ValueError, match="image 1"):
        ImageList.from_tensors([torch.zeros(3, 4, 4), torch.zeros(4, 4)])
    with pytest.raises(ValueError, match="empty"):
        ImageList.from_tensors([])
    with pytest.raises(TypeError, match="list"):
        ImageList.from_tensors(torch.zeros(2, 3, 4, 4))
    with pytest.raises(TypeError, match="image 0"):
        ImageList.from_tensors([[1, 2]])


def test_to_and_device():
    il = ImageList.from_tensors([torch.zeros(3, 4, 4)])
    moved = il.to(torch.float64)
    assert moved.tensor.dtype == torch.float64 and moved.image_sizes == il.image_sizes
    assert il.device == torch.device("cpu")
