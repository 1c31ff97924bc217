"""Shared fixtures: where the reference fixtures and the shapes data live.

Parity tests read Detectron2's outputs from ``$TORCHDET_PARITY_DIR`` (default ``../shared/parity``
beside the repository) and skip, saying so, when the bundle is absent.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def _parity_root() -> Path:
    return Path(os.environ.get("TORCHDET_PARITY_DIR", REPO_ROOT.parent / "shared" / "parity"))


def _shapes_root() -> Path:
    return Path(
        os.environ.get("TORCHDET_SHAPES_DIR", REPO_ROOT.parent / "shared" / "data" / "shapes")
    )


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """The reference fixtures folder; skips the test when it is absent."""
    root = _parity_root()
    if not (root / "README.md").is_file():
        pytest.skip(f"parity bundle not found at {root} (set TORCHDET_PARITY_DIR)")
    return root


@pytest.fixture(scope="session")
def ops_cases(parity_dir: Path) -> dict:
    """The 34 operator cases of ``ops.pt``."""
    return torch.load(parity_dir / "ops.pt", weights_only=True)


@pytest.fixture(scope="session")
def shapes_dir() -> Path:
    """The shared synthetic shapes dataset (``train/`` and ``val/``); skips when absent."""
    root = _shapes_root()
    if not (root / "val" / "instances.json").is_file():
        pytest.skip(f"shapes dataset not found at {root} (set TORCHDET_SHAPES_DIR)")
    return root


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _forget_shapes_datasets():
    """Remove the ``shapes*`` datasets a test module registered, once the module is done.

    Modules register the shapes splits under the same names with different roots (the shared
    copy, a generated one in a tmp dir); ``register_shapes`` rightly refuses to re-point a
    name, so one module's registrations must not outlive it.
    """
    catalog = sys.modules.get("torchdet.data.catalog")
    before = set(catalog.DatasetCatalog.list()) if catalog else set()
    yield
    catalog = sys.modules.get("torchdet.data.catalog")
    if catalog is None:
        return
    for name in set(catalog.DatasetCatalog.list()) - before:
        if name.startswith("shapes"):
            catalog.DatasetCatalog.remove(name)
            if name in catalog.MetadataCatalog.list():
                catalog.MetadataCatalog.remove(name)
