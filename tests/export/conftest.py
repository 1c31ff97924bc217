"""Fixtures of the export tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch


def load_helpers():
    """``export_helpers.py`` of this folder, imported by path (pytest uses importlib mode)."""
    name = "torchdet_tests_export_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("export_helpers.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def parity_model(parity_dir, shapes_dir, request):
    """``(name, model, sample input, [3 inputs of other sizes])`` of a parity model."""
    name = request.param
    if not (parity_dir / "models" / name / "model_final.pth").is_file():
        pytest.skip(f"no parity model {name} under {parity_dir / 'models'}")
    torch.set_num_threads(2)
    model, sample, others = load_helpers().load_parity_model(str(parity_dir), str(shapes_dir), name)
    return name, model, sample, others
