"""The ``torchdet`` console command and its tools, run in process."""

import json

import pytest

from torchdet import cli
from torchdet.tools import analyze_model


def test_help_lists_subcommands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("train", "eval", "benchmark", "analyze"):
        assert f"  {name}" in out
    assert cli.main([]) == 2  # no subcommand: usage, error status


def test_unknown_subcommand(capsys):
    assert cli.main(["nope"]) == 2
    assert "unknown subcommand 'nope'" in capsys.readouterr().err


def test_register_subcommand(capsys):
    # builtins.len(argv) as the subcommand: its result is the exit status.
    cli.register_subcommand("_len_test", "builtins", "test", function="len")
    assert cli.main(["_len_test"]) == 0
    assert cli.main(["_len_test", "a", "b"]) == 2
    assert "_len_test" in cli._usage()
    with pytest.raises(KeyError, match="already registered"):
        cli.register_subcommand("train", "other.module", "x")


def test_bad_config_file():
    with pytest.raises(FileNotFoundError, match="neither a file nor a model-zoo config"):
        cli.main(["analyze", "--config-file", "no/such.yaml", "--tasks", "parameter"])


def _parity_cfg(parity_dir):
    return str(parity_dir / "models" / "mask_rcnn_R50_FPN" / "config.yaml")


def test_analyze_parameter_count_matches_reference(parity_dir):
    args = analyze_model.get_parser().parse_args(
        ["--config-file", _parity_cfg(parity_dir), "--tasks", "parameter", "structure"]
    )
    res = analyze_model.main(args)
    ref = json.loads((parity_dir / "models" / "mask_rcnn_R50_FPN" / "results.json").read_text())
    assert res["parameters"] == ref["params"] == 2755970
    assert res["structure"].startswith("GeneralizedRCNN(")


@pytest.mark.slow
def test_train_then_eval_cli(parity_dir, shapes_dir, tmp_path):
    try:
        from torchdet.modeling.roi_heads import StandardROIHeads  # noqa: F401
    except ImportError as e:
        pytest.skip(f"RoI heads not available yet: {e}")
    cfg = _parity_cfg(parity_dir)
    common = ["--config-file", cfg, "--shapes-root", str(shapes_dir)]
    out = tmp_path / "train"
    opts = ["OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "1"]
    opts += ["MODEL.RESNETS.NORM", "BN", "DATALOADER.NUM_WORKERS", "0", "DATASETS.TEST", "()"]
    opts += ["MODEL.WEIGHTS", str(parity_dir / "models" / "mask_rcnn_R50_FPN" / "model_final.pth")]
    assert cli.main(["train", *common, *opts]) == 0
    assert (out / "model_final.pth").exists() and (out / "config.yaml").exists()
    lines = (out / "metrics.json").read_text().splitlines()
    assert json.loads(lines[-1])["iteration"] == 1

    # Evaluate the reference weights on shapes_val through the CLI: the reference's AP.
    from torchdet.tools import train_net

    weights = str(parity_dir / "models" / "mask_rcnn_R50_FPN" / "model_final.pth")
    args = train_net.get_parser().parse_args(
        [*common, "--eval-only", "OUTPUT_DIR", str(tmp_path / "eval"), "MODEL.WEIGHTS", weights]
    )
    res = train_net.main(args)
    ref = json.loads((parity_dir / "models" / "mask_rcnn_R50_FPN" / "results.json").read_text())
    ref = ref["eval_shapes_val"]
    assert res["bbox"]["AP"] == pytest.approx(ref["bbox"]["AP"], abs=0.5)
    assert res["segm"]["AP"] == pytest.approx(ref["segm"]["AP"], abs=0.5)
