"""Cityscapes evaluators: metadata checks and a clear error without ``cityscapesscripts``."""

from __future__ import annotations

import importlib.util
import uuid

import pytest
import torch

from torchdet.data import MetadataCatalog
from torchdet.evaluation import CityscapesSemSegEvaluator


def test_needs_gt_dir():
    with pytest.raises(KeyError, match="gt_dir"):
        CityscapesSemSegEvaluator(f"evaltest_cs_{uuid.uuid4().hex[:8]}")


def test_missing_package_says_how_to_install(tmp_path):
    if importlib.util.find_spec("cityscapesscripts") is not None:
        pytest.skip("cityscapesscripts is installed")
    name = f"evaltest_cs_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).gt_dir = str(tmp_path)
    ev = CityscapesSemSegEvaluator(name)
    ev.reset()
    with pytest.raises(ImportError, match="pip install cityscapesscripts"):
        ev.process([{"file_name": "x_leftImg8bit.png"}], [{"sem_seg": torch.zeros(19, 4, 4)}])
