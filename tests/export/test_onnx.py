"""ONNX export of the 8 parity models, run in ONNX Runtime (CPU) on val images of other sizes
than the export sample, against eager torchdet; and the exported file runs in a process that
never imports torchdet."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
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
    for i, x in enumerate(others[:2]):  # two sizes keep the 8 exports under 3 minutes
        assert x["image"].shape != sample["image"].shape
        ref = h.eager_outputs(model, x)
        got = _run_onnx(session, adapter, model, x)
        h.assert_same_outputs(ref, got, f"{name} image {i} {tuple(x['image'].shape)}")
        detections += len(ref.get("instances", ()))
    assert detections > 0, f"{name}: no detections on the test images, the check would be empty"


@pytest.mark.parametrize("parity_model", ["mask_rcnn_R50_FPN"], indirect=True)
def test_onnx_runs_without_torchdet(parity_model, tmp_path):
    name, model, sample, others = parity_model
    path = tmp_path / "model.onnx"
    adapter = export_onnx(model, sample["image"], path)
    image = others[0]["image"].numpy()
    np.save(tmp_path / "image.npy", image)
    h.run_without_torchdet(
        textwrap.dedent(
            """
            import numpy as np
            import onnxruntime as ort

            session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
            outputs = session.run(None, {"image": np.load("image.npy")})
            np.savez("outputs.npz", *outputs)
            """
        ),
        tmp_path,
    )
    outputs = np.load(tmp_path / "outputs.npz")
    flat = tuple(torch.from_numpy(outputs[f"arr_{i}"]) for i in range(len(outputs.files)))
    got = adapter.outputs_schema(flat)
    with torch.no_grad():
        ref = model.inference([{"image": others[0]["image"]}], do_postprocess=False)[0]
    assert len(got) == len(ref) > 0
    assert torch.equal(got.pred_classes, ref.pred_classes)
    torch.testing.assert_close(got.pred_boxes.tensor, ref.pred_boxes.tensor, atol=1e-2, rtol=1e-3)
    torch.testing.assert_close(got.pred_masks, ref.pred_masks, atol=1e-3, rtol=0)
    assert tuple(got.image_size) == tuple(image.shape[-2:])


def test_export_onnx_rejects_bad_input(tmp_path):
    from torch import nn

    with pytest.raises(ValueError, match="Tensor\\[C, H, W\\]"):
        export_onnx(nn.Identity().eval(), torch.zeros(1, 3, 8, 8), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="model.eval"):
        export_onnx(nn.Identity().train(), torch.zeros(3, 8, 8), tmp_path / "x.onnx")
