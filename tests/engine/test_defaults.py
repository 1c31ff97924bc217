"""DefaultTrainer's helpers, DefaultPredictor/BatchPredictor, the argument parser, and a smoke
test training a narrow Mask R-CNN on the shapes data.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from torchdet.config import get_cfg
from torchdet.engine import (
    BatchPredictor,
    DefaultPredictor,
    DefaultTrainer,
    create_ddp_model,
    default_argument_parser,
    default_writers,
)
from torchdet.modeling import META_ARCH_REGISTRY
from torchdet.utils.events import CommonMetricPrinter, JSONWriter


def test_auto_scale_workers():
    cfg = get_cfg()
    cfg.SOLVER.REFERENCE_WORLD_SIZE = 8
    cfg.SOLVER.IMS_PER_BATCH = 16
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.MAX_ITER = 5000
    cfg.SOLVER.WARMUP_ITERS = 1000
    cfg.SOLVER.STEPS = (4000,)
    cfg.SOLVER.CHECKPOINT_PERIOD = 500
    cfg.TEST.EVAL_PERIOD = 1000
    cfg.freeze()
    new = DefaultTrainer.auto_scale_workers(cfg, 16)
    assert new.SOLVER.IMS_PER_BATCH == 32
    assert abs(new.SOLVER.BASE_LR - 0.2) < 1e-12
    assert new.SOLVER.MAX_ITER == 2500 and new.SOLVER.WARMUP_ITERS == 500
    assert tuple(new.SOLVER.STEPS) == (2000,) and new.SOLVER.CHECKPOINT_PERIOD == 250
    assert new.TEST.EVAL_PERIOD == 500 and new.SOLVER.REFERENCE_WORLD_SIZE == 16
    assert new.is_frozen() and cfg.SOLVER.IMS_PER_BATCH == 16  # the input is untouched
    assert DefaultTrainer.auto_scale_workers(cfg, 8) is cfg
    cfg2 = cfg.clone()
    cfg2.defrost()
    cfg2.SOLVER.IMS_PER_BATCH = 12
    with pytest.raises(ValueError, match="divisible"):
        DefaultTrainer.auto_scale_workers(cfg2, 16)


def test_default_argument_parser():
    args = default_argument_parser().parse_args(
        ["--config-file", "a.yaml", "--num-gpus", "2", "--resume", "SOLVER.BASE_LR", "0.1"]
    )
    assert args.config_file == "a.yaml" and args.num_gpus == 2 and args.resume
    assert not args.eval_only and args.opts == ["SOLVER.BASE_LR", "0.1"]
    assert args.dist_url.startswith("tcp://127.0.0.1:")


def test_default_writers(tmp_path):
    writers = default_writers(str(tmp_path / "out"), 100)
    assert isinstance(writers[0], CommonMetricPrinter) and isinstance(writers[1], JSONWriter)
    for w in writers:
        w.close()
    assert (tmp_path / "out" / "metrics.json").exists()


def test_build_evaluator_unknown_type():
    from torchdet.data import MetadataCatalog

    MetadataCatalog.get("_engine_test_no_evaluator").set(thing_classes=["a"])
    with pytest.raises(NotImplementedError, match="_engine_test_no_evaluator"):
        DefaultTrainer.build_evaluator(get_cfg(), "_engine_test_no_evaluator")


def test_create_ddp_model_single_process():
    m = nn.Linear(1, 1)
    assert create_ddp_model(m) is m


@META_ARCH_REGISTRY.register()
class _EngineTestEcho(nn.Module):
    """Returns what it was given: the image tensor's shape and first pixel, height, width."""

    def __init__(self, cfg):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, batched_inputs):
        return [
            {
                "shape": tuple(d["image"].shape),
                "pixel": d["image"][:, 0, 0].tolist(),
                "height": d["height"],
                "width": d["width"],
                "batch": len(batched_inputs),
            }
            for d in batched_inputs
        ]


def _predictor_cfg(fmt):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "_EngineTestEcho"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.INPUT.MIN_SIZE_TEST = 50
    cfg.INPUT.MAX_SIZE_TEST = 1000
    cfg.INPUT.FORMAT = fmt
    return cfg


def test_default_predictor_resizes_and_converts():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[:, :] = (1, 2, 3)  # BGR
    out = DefaultPredictor(_predictor_cfg("RGB"))(image)
    assert out["shape"] == (3, 50, 100)  # short side 100 -> 50
    assert out["pixel"] == [3.0, 2.0, 1.0]  # RGB order
    assert (out["height"], out["width"]) == (100, 200)  # original size for the output
    out_bgr = DefaultPredictor(_predictor_cfg("BGR"))(image)
    assert out_bgr["pixel"] == [1.0, 2.0, 3.0]
    pred = DefaultPredictor(_predictor_cfg("BGR"))
    with pytest.raises(TypeError, match="numpy array"):
        pred(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        pred(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="INPUT.FORMAT"):
        DefaultPredictor(_predictor_cfg("YUV"))


def test_batch_predictor_batches():
    pred = BatchPredictor(_predictor_cfg("BGR"), batch_size=2)
    images = [np.full((60 + 10 * i, 80, 3), i, dtype=np.uint8) for i in range(3)]
    outs = pred(images)
    assert [o["batch"] for o in outs] == [2, 2, 1]
    assert [o["height"] for o in outs] == [60, 70, 80]
    assert [o["pixel"][0] for o in outs] == [0.0, 1.0, 2.0]
    assert pred([]) == []
    with pytest.raises(ValueError, match=r"images\[1\]"):
        pred([images[0], np.zeros((0, 3, 3), dtype=np.uint8)])
    with pytest.raises(TypeError, match="list of images"):
        pred(images[0])


@pytest.mark.slow
def test_mask_rcnn_trains_on_shapes(shapes_dir, parity_dir, tmp_path):
    """A narrow Mask R-CNN (the parity model's widths, BatchNorm as it was trained) trains for
    20 iterations with DefaultTrainer: every loss finite, the total loss decreasing.
    """
    try:
        from torchdet.modeling.roi_heads import StandardROIHeads  # noqa: F401
    except ImportError as e:
        pytest.skip(f"RoI heads not available yet: {e}")
    from torchdet.data.datasets.synthetic import register_shapes

    register_shapes(shapes_dir)
    cfg = get_cfg()
    cfg.merge_from_file(str(parity_dir / "models" / "mask_rcnn_R50_FPN" / "config.yaml"))
    cfg.MODEL.RESNETS.NORM = "BN"  # the reference trained with BN, deployed with FrozenBN
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.SOLVER.MAX_ITER = 20
    cfg.SOLVER.WARMUP_ITERS = 5
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.INPUT.MIN_SIZE_TRAIN = (160,)
    cfg.INPUT.MAX_SIZE_TRAIN = 320
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.TEST.EVAL_PERIOD = 0
    cfg.DATASETS.TEST = ()  # no evaluation after training
    cfg.SEED = 1
    torch.manual_seed(1)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    hist = trainer.storage.histories()
    for name in ("loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"):
        assert all(math.isfinite(v) for v, _ in hist[name].values()), name
    total = [v for v, _ in hist["total_loss"].values()]
    assert len(total) == 20
    assert np.mean(total[-5:]) < np.mean(total[:5])
    assert (tmp_path / "model_final.pth").exists()
