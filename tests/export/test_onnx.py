"""ONNX export of the 8 parity models, run in ONNX Runtime (CPU) on val images of other sizes
than the export sample, against eager torchdet; and the exported file runs in a process that
never imports torchdet."""

from __future__ import annotations

import sys

import pytest
import torch

from torchdet.export import export_onnx, postprocess_outputs


def _helpers():
    import importlib.util
    from pathlib import Path

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

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is an optional test dependency")


def _run_onnx(session, adapter, model, x: dict) -> dict:
    flat = session.run(None, {"image": x["image"].numpy()})
    outputs = adapter.outputs_schema(tuple(torch.from_numpy(o) for o in flat))
    size = tuple(x["image"].shape[-2:])
    return postprocess_outputs(model, outputs, size, x["height"], x["width"])


@pytest.mark.slow
@pytest.mark.parametrize("parity_model", h.PARITY_MODELS, indirect=True)
def test_onnx_matches_eager(parity_model, tmp_path):
    name, model, sample, others = parity_model
    path = tmp_path / f"{name}.onnx"
    adapter = export_onnx(model, sample["image"], path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    detections = 0
    for i, x in enumerate(others):
        assert x["image"].shape != sample["image"].shape
        ref = h.eager_outputs(model, x)
        got = _run_onnx(session, adapter, model, x)
        h.assert_same_outputs(ref, got, f"{name} image {i} {tuple(x['image'].shape)}")
        detections += len(ref.get("instances", ()))
    assert detections > 0, f"{name}: no detections on the test images, the check would be empty"
