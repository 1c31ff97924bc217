"""Shared code of the export tests (loaded by path): the parity models of
``shared/parity/models`` with a few val images, and the comparison of an exported model's
outputs with eager torchdet's."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

PARITY_MODELS = [
    "faster_rcnn_R50_FPN",
    "mask_rcnn_R50_FPN",
    "mask_rcnn_R50_C4",
    "mask_rcnn_R50_DC5",
    "cascade_mask_rcnn_R50_FPN",
    "keypoint_rcnn_R50_FPN",
    "retinanet_R50_FPN",
    "panoptic_fpn_R50",
]


@functools.cache
def load_parity_model(parity_root: str, shapes_root: str, name: str):
    from torchdet.checkpoint import DetectionCheckpointer
    from torchdet.config import get_cfg
    from torchdet.data import detection_utils as utils
    from torchdet.data import transforms as T
    from torchdet.modeling import build_model

    model_dir = Path(parity_root) / "models" / name
    cfg = get_cfg()
    cfg.merge_from_file(str(model_dir / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(model_dir / "model_final.pth"))
    model.eval()
    images_dir = Path(shapes_root) / "val" / "images"
    files = sorted(images_dir.iterdir())
    aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    inputs = []
    for f in files:
        image = utils.read_image(str(f), format=cfg.INPUT.FORMAT)
        resized = aug.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        inputs.append({"image": tensor, "height": image.shape[0], "width": image.shape[1]})
    # The export sample is the first image; the checks use 3 images of other sizes.
    sample = inputs[0]
    others = []
    for x in inputs[1:]:
        if x["image"].shape != sample["image"].shape and all(
            x["image"].shape != o["image"].shape for o in others
        ):
            others.append(x)
        if len(others) == 3:
            break
    return model, sample, others


def eager_outputs(model, x: dict) -> dict:
    with torch.no_grad():
        return model([x])[0]


def assert_same_outputs(ref: dict, got: dict, what: str) -> None:
    """The acceptance rule: same detections (classes, boxes within 1e-3 relative, scores within
    1e-4), masks >= 99% pixels equal, keypoints within 1e-3 relative, sem_seg argmax and
    panoptic ids >= 99% pixels equal."""
    if "instances" in ref:
        r, g = ref["instances"], got["instances"]
        assert len(r) == len(g), f"{what}: {len(g)} detections, eager has {len(r)}"
        assert r.image_size == g.image_size
        assert torch.equal(r.pred_classes, g.pred_classes), what
        rb, gb = r.pred_boxes.tensor, g.pred_boxes.tensor
        assert torch.all((rb - gb).abs() <= 1e-3 * rb.abs().clamp(min=1.0)), (
            f"{what}: boxes differ by {(rb - gb).abs().max()}"
        )
        torch.testing.assert_close(g.scores, r.scores, atol=1e-4, rtol=0)
        if r.has("pred_masks"):
            rm, gm = r.pred_masks, g.pred_masks
            assert rm.shape == gm.shape and rm.dtype == gm.dtype == torch.bool
            if rm.numel():
                agree = (rm == gm).float().mean().item()
                assert agree >= 0.99, f"{what}: masks agree on {agree:.4f} of pixels"
        if r.has("pred_keypoints"):
            rk, gk = r.pred_keypoints, g.pred_keypoints
            assert torch.all((rk - gk).abs() <= 1e-3 * rk.abs().clamp(min=1.0)), (
                f"{what}: keypoints differ by {(rk - gk).abs().max()}"
            )
    if "sem_seg" in ref:
        rs, gs = ref["sem_seg"], got["sem_seg"]
        assert rs.shape == gs.shape
        agree = (rs.argmax(0) == gs.argmax(0)).float().mean().item()
        assert agree >= 0.99, f"{what}: sem_seg argmax agrees on {agree:.4f} of pixels"
    if "panoptic_seg" in ref:
        (rp, rinfo), (gp, ginfo) = ref["panoptic_seg"], got["panoptic_seg"]
        assert rp.shape == gp.shape
        agree = (rp == gp).float().mean().item()
        assert agree >= 0.99, f"{what}: panoptic ids agree on {agree:.4f} of pixels"
        assert [s["category_id"] for s in rinfo] == [s["category_id"] for s in ginfo]


# Run in a fresh interpreter: any attempt to import torchdet fails, so the exported file must be
# self-contained.
_BLOCK_TORCHDET = """
import sys


class _NoTorchdet:
    def find_spec(self, name, path=None, target=None):
        if name == "torchdet" or name.startswith("torchdet."):
            raise ImportError("the exported model must run without torchdet")
        return None


sys.meta_path.insert(0, _NoTorchdet())
"""


def run_without_torchdet(script: str, cwd) -> None:
    """Run ``script`` with ``sys.executable`` in ``cwd``, torchdet imports blocked; raise with its
    output if it fails."""
    import subprocess
    import sys

    full = (
        _BLOCK_TORCHDET
        + script
        + "\nassert not any(m.startswith('torchdet') for m in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", full], cwd=str(cwd), capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
