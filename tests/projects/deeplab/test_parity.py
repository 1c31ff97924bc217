"""Acceptance: the reference's trained DeepLab v3+ (narrow R50) gives the reference's semantic
argmax maps on every shapes val image (>= 99.5% of pixels equal)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from torchdet.checkpoint import DetectionCheckpointer
from torchdet.config import get_cfg
from torchdet.modeling import build_model
from torchdet.projects.deeplab import add_deeplab_config

pytestmark = pytest.mark.slow

_PARITY_UTILS = Path(__file__).resolve().parents[2] / "modeling" / "parity_utils.py"


def _load_parity_utils():
    name = "torchdet_tests_parity_utils"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _PARITY_UTILS)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while being defined
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_deeplab_v3_plus_R50(parity_dir, shapes_dir):
    pu = _load_parity_utils()
    model_dir = parity_dir / "projects" / "deeplab_v3_plus_R50"
    if not (model_dir / "model_final.pth").is_file():
        pytest.skip(f"no DeepLab reference under {model_dir}")
    torch.set_num_threads(2)
    cfg = get_cfg()
    add_deeplab_config(cfg)
    cfg.merge_from_file(str(model_dir / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    checkpointer = DetectionCheckpointer(model)
    incompatible = checkpointer._load_model(
        checkpointer._load_file(str(model_dir / "model_final.pth"))
    )
    assert incompatible.missing_keys == []
    assert incompatible.unexpected_keys == []
    assert incompatible.incorrect_shapes == []
    model.eval()

    reference = dict(np.load(model_dir / "eval_shapes_sem_val" / "sem_seg_argmax.npz"))
    images, _ = pu.load_images(shapes_dir / "val")
    assert len(images) == len(reference) == 60
    # One image per batch, as the reference evaluated: padding would change ASPP's global pooling.
    outputs = pu.run_model(model, pu.model_inputs(cfg, images), batch_size=1)
    equal = total = 0
    for image, output in zip(images, outputs):
        sem_seg = output["sem_seg"]
        assert sem_seg.shape == (5, image["height"], image["width"])
        ours = sem_seg.argmax(dim=0).numpy()
        ref = reference[Path(image["file_name"]).stem]
        assert ref.shape == ours.shape
        equal += int((ours == ref).sum())
        total += ours.size
    print(f"\ndeeplab_v3_plus_R50: {equal}/{total} pixels equal = {100 * equal / total:.4f}%")
    assert equal / total >= 0.995
