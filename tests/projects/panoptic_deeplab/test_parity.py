"""Acceptance: the reference's trained Panoptic-DeepLab (narrow R50) gives the reference's
``panoptic_seg`` id maps on every shapes val image (>= 99.5% of pixels equal, ids included)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from torchdet.checkpoint import DetectionCheckpointer
from torchdet.config import get_cfg
from torchdet.data import DatasetCatalog
from torchdet.data.datasets import register_coco_panoptic
from torchdet.modeling import build_model
from torchdet.projects.deeplab import add_deeplab_config
from torchdet.projects.panoptic_deeplab import add_panoptic_deeplab_config

pytestmark = pytest.mark.slow

_PARITY_UTILS = Path(__file__).resolve().parents[2] / "modeling" / "parity_utils.py"
_META = {
    "thing_classes": ["circle", "square", "triangle"],
    "stuff_classes": ["circle", "square", "triangle", "sky", "ground"],
    "thing_dataset_id_to_contiguous_id": {1: 0, 2: 1, 3: 2},
    "stuff_dataset_id_to_contiguous_id": {1: 0, 2: 1, 3: 2, 4: 3, 5: 4},
}


def _load_parity_utils():
    name = "torchdet_tests_parity_utils"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _PARITY_UTILS)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while being defined
        spec.loader.exec_module(module)
    return sys.modules[name]


def _register(shapes_dir: Path, split: str) -> None:
    name = f"shapes_pdl_{split}"
    if name in DatasetCatalog.list():
        return
    root = shapes_dir / split
    register_coco_panoptic(
        name,
        dict(_META),
        str(root / "images"),
        str(root / "panoptic"),
        str(root / "panoptic.json"),
        str(root / "instances.json"),
    )


def test_panoptic_deeplab_R50(parity_dir, shapes_dir):
    pu = _load_parity_utils()
    model_dir = parity_dir / "projects" / "panoptic_deeplab_R50"
    if not (model_dir / "model_final.pth").is_file():
        pytest.skip(f"no Panoptic-DeepLab reference under {model_dir}")
    torch.set_num_threads(2)
    _register(shapes_dir, "train")
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_panoptic_deeplab_config(cfg)
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

    reference = dict(np.load(model_dir / "eval_shapes_pdl_val" / "panoptic_seg.npz"))
    images, _ = pu.load_images(shapes_dir / "val")
    assert len(images) == len(reference) == 60
    # One image per batch, as the reference evaluated (padding changes ASPP's pooling).
    outputs = pu.run_model(model, pu.model_inputs(cfg, images), batch_size=1)
    equal = total = 0
    for image, output in zip(images, outputs):
        panoptic, segments = output["panoptic_seg"]
        assert segments is None
        assert panoptic.shape == (image["height"], image["width"])
        ref = reference[Path(image["file_name"]).stem]
        ours = panoptic.numpy()
        equal += int((ours == ref).sum())
        total += ours.size
        if "instances" in output:
            inst = output["instances"]
            assert inst.pred_masks.shape[1:] == (image["height"], image["width"])
            assert (inst.scores >= 0).all()
    print(f"\npanoptic_deeplab_R50: {equal}/{total} pixels equal = {100 * equal / total:.4f}%")
    assert equal / total >= 0.995
