"""TorchScript export (tracing) of the parity models: the saved program, reloaded, matches eager
torchdet on val images of other sizes than the trace sample, and runs with torch alone."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from torchdet.export import (
    dump_torchscript_IR,
    export_torchscript,
    postprocess_outputs,
    scripting_with_instances,
)


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


@pytest.mark.slow
@pytest.mark.parametrize("parity_model", h.PARITY_MODELS, indirect=True)
def test_torchscript_matches_eager(parity_model, tmp_path):
    name, model, sample, others = parity_model
    path = tmp_path / f"{name}.ts"
    _, adapter = export_torchscript(model, sample["image"], path)
    program = torch.jit.load(str(path))
    # One image of another size per model keeps the suite short (ONNX checks three).
    x = others[0]
    assert x["image"].shape != sample["image"].shape
    with torch.jit.optimized_execution(False):
        flat = program(x["image"])
    size = tuple(x["image"].shape[-2:])
    got = postprocess_outputs(model, adapter.outputs_schema(flat), size, x["height"], x["width"])
    ref = h.eager_outputs(model, x)
    h.assert_same_outputs(ref, got, f"{name} {size}")
    assert len(ref.get("instances", ())) > 0


@pytest.mark.parametrize("parity_model", ["faster_rcnn_R50_FPN"], indirect=True)
def test_torchscript_runs_with_torch_only(parity_model, tmp_path):
    name, model, sample, others = parity_model
    export_torchscript(model, sample["image"], tmp_path / "model.ts")
    torch.save(others[0]["image"], tmp_path / "image.pt")
    h.run_without_torchdet(
        textwrap.dedent(
            """
            import torch

            program = torch.jit.load("model.ts")
            with torch.jit.optimized_execution(False):
                outputs = program(torch.load("image.pt"))
            torch.save(list(outputs), "outputs.pt")
            """
        ),
        tmp_path,
    )
    got = torch.load(tmp_path / "outputs.pt")
    with torch.no_grad():
        ref = model.inference([{"image": others[0]["image"]}], do_postprocess=False)[0]
    # flat order: pred_boxes, pred_classes, scores (sorted field names), image size
    boxes, classes, scores, size = got
    assert len(ref) > 0
    assert torch.equal(classes, ref.pred_classes)
    torch.testing.assert_close(boxes, ref.pred_boxes.tensor, atol=1e-2, rtol=1e-3)
    torch.testing.assert_close(scores, ref.scores, atol=1e-4, rtol=0)
    assert size.tolist() == list(others[0]["image"].shape[-2:])


def test_dump_torchscript_IR(tmp_path):
    program = torch.jit.trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), torch.zeros(1, 3, 8, 8))
    dump_torchscript_IR(program, tmp_path / "ir")
    code = (tmp_path / "ir" / "model_ts_code.txt").read_text()
    assert "Code for model" in code and "conv2d" in code.lower()
    assert "aten::relu" in (tmp_path / "ir" / "model_ts_IR.txt").read_text()
    with pytest.raises(TypeError, match="ScriptModule"):
        dump_torchscript_IR(nn.ReLU(), tmp_path)


def test_scripting_with_instances():
    scripted = scripting_with_instances(nn.Sequential(nn.Linear(2, 3)), {})
    x = torch.randn(4, 2)
    torch.testing.assert_close(scripted(x), scripted.original_name and scripted(x))
    with pytest.raises(TypeError, match="fields must be a dict"):
        scripting_with_instances(nn.Linear(2, 3), ["pred_boxes"])
