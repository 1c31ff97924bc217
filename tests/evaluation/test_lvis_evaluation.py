"""LVISEvaluator: a clear error when the optional ``lvis`` package is missing."""

from __future__ import annotations

import importlib.util
import uuid

import pytest

from torchdet.data import MetadataCatalog
from torchdet.evaluation import LVISEvaluator


def test_missing_lvis_package_says_how_to_install():
    if importlib.util.find_spec("lvis") is not None:
        pytest.skip("the lvis package is installed")
    name = f"evaltest_lvis_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).json_file = "/nonexistent.json"
    with pytest.raises(ImportError, match="pip install lvis"):
        LVISEvaluator(name)
