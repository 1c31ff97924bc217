"""Build a backbone described by a ``backbones.pt`` case and compare it with the reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import torchdet.modeling.backbone as B
from torchdet.modeling.backbone import fpn, regnet

_CASES: dict[Path, dict] = {}


def load_case(parity_dir: Path, name: str) -> dict:
    path = parity_dir / "backbones.pt"
    if not path.is_file():
        pytest.skip(f"no backbones.pt under {parity_dir}")
    if path not in _CASES:
        _CASES[path] = torch.load(path, weights_only=True)
    cases = _CASES[path]
    if name not in cases:
        pytest.skip(f"backbones.pt has no case {name!r} (has {sorted(cases)})")
    return cases[name]


def _resolve(value):
    # The fixture names classes by string and nested modules by (class, kwargs).
    if isinstance(value, str):
        if value in ("SimpleStem", "ResBottleneckBlock"):
            return getattr(regnet, value)
        if value == "LastLevelMaxPool":
            return fpn.LastLevelMaxPool()
        return value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        return getattr(B, value[0])(**{k: _resolve(v) for k, v in value[1].items()})
    return value


def build(case: dict) -> torch.nn.Module:
    kwargs = {k: _resolve(v) for k, v in case["kwargs"].items()}
    return getattr(B, case["class"])(**kwargs)


def check_parity(case: dict) -> dict[str, float]:
    """Load the reference weights strictly, run ``input`` and return per-feature relative errors."""
    model = build(case)
    model.load_state_dict(case["state_dict"], strict=True)
    model.eval()
    with torch.no_grad():
        out = model(case["input"])
    assert sorted(out) == sorted(case["output"])
    errors = {}
    for name, ref in case["output"].items():
        assert out[name].shape == ref.shape, name
        errors[name] = ((out[name] - ref).abs().max() / ref.abs().max()).item()
    shapes = {k: [v.channels, v.stride] for k, v in model.output_shape().items()}
    assert shapes == {k: list(v) for k, v in case["output_shape"].items()}
    assert list(model.output_shape()) == list(case["output"])
    return errors
