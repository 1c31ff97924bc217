"""``torch.export`` programs: feature extractors of the parity models and a SemanticSegmentor
with symbolic H/W match eager on another input size."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.export.torch_export import export_program
from torchdet.modeling import build_model, sem_seg_postprocess


def _helpers():
    name = "torchdet_tests_export_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("export_helpers.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


h = _helpers()


def _features(model, image):
    return model.backbone(((image.float() - model.pixel_mean) / model.pixel_std)[None])


@pytest.mark.slow
@pytest.mark.parametrize("parity_model", ["mask_rcnn_R50_FPN"], indirect=True)
def test_backbone_program_matches_eager(parity_model):
    _, model, sample, others = parity_model

    def crop(image):  # the backbone alone takes multiples of its size_divisibility (32)
        return image[:, : image.shape[1] // 32 * 32, : image.shape[2] // 32 * 32]

    program, adapter = export_program(model, crop(sample["image"]), inference_func=_features)
    x = crop(others[0]["image"])
    assert x.shape != crop(sample["image"]).shape
    got = adapter.outputs_schema(program.module()(x))
    with torch.no_grad():
        ref = _features(model, x)
    assert sorted(got) == sorted(ref) == ["p2", "p3", "p4", "p5", "p6"]
    for k in ref:
        assert got[k].shape == ref[k].shape
        torch.testing.assert_close(got[k], ref[k], atol=1e-4, rtol=1e-4)


def _semantic_model():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "SemanticSegmentor"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 16
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    return build_model(cfg).eval()


def test_semantic_segmentor_program_matches_eager():
    torch.set_num_threads(2)
    model = _semantic_model()
    generator = torch.Generator().manual_seed(0)
    sample = torch.randint(0, 256, (3, 150, 180), dtype=torch.uint8, generator=generator)
    program, adapter = export_program(model, sample)
    x = torch.randint(0, 256, (3, 200, 232), dtype=torch.uint8, generator=generator)
    logits = adapter.outputs_schema(program.module()(x))
    assert logits.shape == (5, 224, 256)  # padded to a multiple of 32
    got = sem_seg_postprocess(logits, (200, 232), 200, 232)
    with torch.no_grad():
        ref = model([{"image": x}])[0]["sem_seg"]
    assert got.shape == ref.shape == (5, 200, 232)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_bad_inputs():
    model = _semantic_model()
    with pytest.raises(ValueError, match="Tensor\\[C, H, W\\]"):
        export_program(model, torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="model.eval"):
        export_program(model.train(), torch.zeros(3, 64, 64))
