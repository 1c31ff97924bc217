"""Acceptance: the reference's narrow DensePose R-CNN (fixed, perturbed weights) gives the
reference's detections on the first 4 shapes val images (README matching rule) and its raw
chart outputs for the 2 highest-scoring detections per image (within 1e-3 relative)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from torchdet.checkpoint import DetectionCheckpointer
from torchdet.config import get_cfg
from torchdet.modeling import build_model
from torchdet.projects.densepose import add_densepose_config

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


def _rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max().clamp(min=1e-12))


def test_densepose_rcnn_R50_FPN(parity_dir, shapes_dir):
    pu = _load_parity_utils()
    model_dir = parity_dir / "projects" / "densepose_rcnn_R50_FPN"
    if not (model_dir / "model_final.pth").is_file():
        pytest.skip(f"no DensePose reference under {model_dir}")
    torch.set_num_threads(2)
    cfg = get_cfg()
    add_densepose_config(cfg)
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

    images, contiguous_to_dataset = pu.load_images(shapes_dir / "val")
    images = images[:4]
    outputs = pu.run_model(model, pu.model_inputs(cfg, images), batch_size=1)
    reference_outputs = torch.load(model_dir / "outputs_val.pt", weights_only=True)
    ours = []
    worst = 0.0
    for image, output in zip(images, outputs):
        instances = output["instances"]
        ours += pu.instances_to_coco(instances, image["id"], contiguous_to_dataset)
        ref = reference_outputs[Path(image["file_name"]).name]["densepose"]
        order = torch.argsort(instances.scores, descending=True)[:2]
        top = instances[order]
        assert _rel_err(top.pred_boxes.tensor, ref["boxes"]) <= 1e-3
        assert torch.allclose(top.scores, ref["scores"], atol=1e-3)
        dp = top.pred_densepose
        for key in ("coarse_segm", "fine_segm", "u", "v"):
            ours_t = getattr(dp, key)
            assert ours_t.shape == ref[key].shape, key
            err = _rel_err(ours_t, ref[key])
            worst = max(worst, err)
            assert err <= 1e-3, f"{image['file_name']} {key}: relative error {err:.2e}"
    reference = pu.load_reference(model_dir / "coco_instances_val.json")
    report = pu.match_results(reference, ours)
    print("\n" + report.summary("densepose_rcnn_R50_FPN") + f"; worst chart error {worst:.2e}")
    assert report.num_reference >= 8
    assert report.match_rate >= 0.97, report.summary("densepose_rcnn_R50_FPN")
