"""``torchdet export``: the CLI writes an ONNX / TorchScript file of a parity model that runs and
matches eager on the sample image (``--run-eval``)."""

from __future__ import annotations

import pickle

import pytest

from torchdet.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("fmt,file", [("onnx", "model.onnx"), ("torchscript", "model.ts")])
def test_export_cli(parity_dir, shapes_dir, tmp_path, capsys, fmt, file):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="onnxruntime is an optional test dependency")
    model_dir = parity_dir / "models" / "faster_rcnn_R50_FPN"
    if not (model_dir / "model_final.pth").is_file():
        pytest.skip(f"no parity model under {model_dir}")
    image = sorted((shapes_dir / "val" / "images").iterdir())[0]
    status = main(
        [
            "export",
            "--config-file",
            str(model_dir / "config.yaml"),
            "--format",
            fmt,
            "--output",
            str(tmp_path),
            "--sample-image",
            str(image),
            "--run-eval",
            "MODEL.WEIGHTS",
            str(model_dir / "model_final.pth"),
        ]
    )
    assert status == 0
    assert "outputs match eager" in capsys.readouterr().out
    assert (tmp_path / file).stat().st_size > 100_000
    with open(tmp_path / "outputs_schema.pkl", "rb") as f:
        schema = pickle.load(f)
    assert type(schema).__name__ == "InstancesSchema"
    assert schema.keys == ["pred_boxes", "pred_classes", "scores"]


def test_export_cli_missing_image(parity_dir, tmp_path):
    model_dir = parity_dir / "models" / "faster_rcnn_R50_FPN"
    if not (model_dir / "config.yaml").is_file():
        pytest.skip(f"no parity model under {model_dir}")
    with pytest.raises(FileNotFoundError, match="--sample-image"):
        main(
            [
                "export",
                "--config-file",
                str(model_dir / "config.yaml"),
                "--output",
                str(tmp_path),
                "--sample-image",
                str(tmp_path / "nope.jpg"),
            ]
        )
