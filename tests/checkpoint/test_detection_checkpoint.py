"""DetectionCheckpointer: Detectron1/Caffe2 and Detectron2 .pkl files, torchvision ResNets,
the restricted unpickler, the catalog, and the parity models' checkpoints."""

from __future__ import annotations

import builtins
import logging
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from torchdet.checkpoint import DetectionCheckpointer, ModelCatalog, UnsafeCheckpointError
from torchdet.layers import Conv2d, FrozenBatchNorm2d
from torchdet.utils.file_io import PathManager

K = 3  # foreground classes


def _conv(cin: int, cout: int, norm: bool = True, k: int = 1) -> Conv2d:
    return Conv2d(cin, cout, k, bias=not norm, norm=FrozenBatchNorm2d(cout) if norm else None)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = _conv(4, 2), _conv(2, 2, k=3), _conv(2, 6)
        self.shortcut = _conv(4, 6)


class _BottomUp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Module()
        self.stem.conv1 = _conv(3, 4, k=7)
        self.res2 = nn.Sequential(_Block())


class TinyRCNN(nn.Module):
    """Parameter names of a Detectron2 R-CNN (FPN + RPN + box/mask/keypoint heads), tiny sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.zeros(3, 1, 1), persistent=True)
        self.register_buffer("pixel_std", torch.ones(3, 1, 1), persistent=True)
        self.backbone = nn.Module()
        self.backbone.bottom_up = _BottomUp()
        self.backbone.fpn_lateral2 = _conv(6, 5, norm=False)
        self.backbone.fpn_output2 = _conv(5, 5, norm=False, k=3)
        self.proposal_generator = nn.Module()
        head = self.proposal_generator.rpn_head = nn.Module()
        head.conv = _conv(5, 5, norm=False, k=3)
        head.objectness_logits = _conv(5, 3, norm=False)
        head.anchor_deltas = _conv(5, 12, norm=False)
        self.roi_heads = nn.Module()
        self.roi_heads.box_head = nn.Module()
        self.roi_heads.box_head.fc1 = nn.Linear(20, 8)
        self.roi_heads.box_head.fc2 = nn.Linear(8, 8)
        self.roi_heads.box_predictor = nn.Module()
        self.roi_heads.box_predictor.cls_score = nn.Linear(8, K + 1)
        self.roi_heads.box_predictor.bbox_pred = nn.Linear(8, 4 * K)
        self.roi_heads.mask_head = nn.Module()
        self.roi_heads.mask_head.mask_fcn1 = _conv(5, 5, norm=False, k=3)
        self.roi_heads.mask_head.deconv = nn.ConvTranspose2d(5, 5, 2, stride=2)
        self.roi_heads.mask_head.predictor = _conv(5, K, norm=False)
        self.roi_heads.keypoint_head = nn.Module()
        self.roi_heads.keypoint_head.conv_fcn1 = _conv(5, 5, norm=False, k=3)
        self.roi_heads.keypoint_head.score_lowres = nn.ConvTranspose2d(5, 2, 4, stride=2)


def _randomized(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if "pixel_" not in name:
                t.copy_(torch.randn(t.shape, generator=g))
    return model


# Detectron2 name -> Caffe2 blob name, written from the documented conversion table
_NORM = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}


def _c2_name(d2: str) -> str:
    *mod, leaf = d2.split(".")
    path = ".".join(mod)
    short = {"weight": "w", "bias": "b"}
    bottom = "backbone.bottom_up."
    if path == bottom + "stem.conv1":
        return "conv1_w"
    if path == bottom + "stem.conv1.norm":
        return f"res_conv1_bn_{_NORM[leaf]}"
    if path.startswith(bottom + "res"):
        _, _, stage, idx, conv, *rest = d2.split(".")
        branch = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c"}.get(
            conv, "branch1"
        )
        if rest[0] == "norm":
            return f"{stage}_{idx}_{branch}_bn_{_NORM[rest[1]]}"
        return f"{stage}_{idx}_{branch}_{short[leaf]}"
    for pattern, c2 in [
        # Detectron1 names FPN convs after the last block of the stage they read (any index)
        (r"backbone\.fpn_lateral(\d)", r"fpn_inner_res\1_2_sum"),
        (r"backbone\.fpn_output(\d)", r"fpn_res\1_2_sum"),
        (r"roi_heads\.mask_head\.mask_fcn(\d)", r"_[mask]_fcn\1"),
        (r"roi_heads\.keypoint_head\.conv_fcn(\d)", r"conv_fcn\1"),
    ]:
        if re.fullmatch(pattern, path):
            return f"{re.sub(pattern, c2, path)}_{short[leaf]}"
    table = {
        "proposal_generator.rpn_head.conv": "conv_rpn_fpn2",
        "proposal_generator.rpn_head.objectness_logits": "rpn_cls_logits_fpn2",
        "proposal_generator.rpn_head.anchor_deltas": "rpn_bbox_pred_fpn2",
        "roi_heads.box_head.fc1": "fc6",
        "roi_heads.box_head.fc2": "fc7",
        "roi_heads.box_predictor.cls_score": "cls_score",
        "roi_heads.box_predictor.bbox_pred": "bbox_pred",
        "roi_heads.mask_head.deconv": "conv5_mask",
        "roi_heads.mask_head.predictor": "mask_fcn_logits",
        "roi_heads.keypoint_head.score_lowres": "kps_score_lowres",
    }
    return f"{table[path]}_{short[leaf]}"


def _c2_blobs(ref: nn.Module) -> dict[str, np.ndarray]:
    """Caffe2 blobs for ``ref``: background first in the class-specific predictors."""
    blobs = {}
    for name, t in ref.state_dict().items():
        if "pixel_" in name:
            continue
        a = t.numpy().copy()
        if "cls_score" in name:
            a = np.concatenate([a[-1:], a[:-1]])  # Caffe2 puts background at index 0
        elif "bbox_pred" in name:
            a = np.concatenate([np.full((4,) + a.shape[1:], 99.0, np.float32), a])
        elif "mask_head.predictor" in name:
            a = np.concatenate([np.full((1,) + a.shape[1:], 99.0, np.float32), a])
        blobs[_c2_name(name)] = a
    return blobs


def _assert_loaded(model: nn.Module, ref: nn.Module) -> None:
    got, want = model.state_dict(), ref.state_dict()
    for k in want:
        assert torch.equal(got[k], want[k]), k


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_caffe2_detectron_pkl_loads_identically(tmp_path, caplog):
    ref = _randomized(TinyRCNN(), 1)
    blobs = _c2_blobs(ref)
    assert "res2_0_branch2a_w" in blobs and "res_conv1_bn_riv" in blobs
    blobs["res2_0_branch2a_w_momentum"] = np.zeros(1, np.float32)  # solver state: dropped
    path = tmp_path / "model_final.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs, "cfg": "MODEL: ..."}, f, protocol=2)

    model = _randomized(TinyRCNN(), 2)
    with caplog.at_level(logging.INFO, logger="torchdet.checkpoint"):
        DetectionCheckpointer(model).load(str(path), strict=True)
    _assert_loaded(model, ref)
    assert _warnings(caplog) == []
    # the mapping table names both sides
    assert "res2_0_branch2a_w" in caplog.text and "Names in Checkpoint" in caplog.text


def test_caffe2_imagenet_pkl_without_blobs_key(tmp_path):
    ref = _randomized(TinyRCNN(), 3)
    bottom = {k: v for k, v in _c2_blobs(ref).items() if k.startswith(("conv1", "res"))}
    path = tmp_path / "R-50.pkl"
    with open(path, "wb") as f:
        pickle.dump(bottom, f)
    model = TinyRCNN()
    DetectionCheckpointer(model).load(str(path))
    for k, v in ref.backbone.bottom_up.state_dict().items():
        assert torch.equal(model.backbone.bottom_up.state_dict()[k], v), k


@pytest.mark.parametrize("heuristics", [True, False])
def test_detectron2_zoo_pkl(tmp_path, heuristics):
    ref = _randomized(TinyRCNN(), 4)
    data = {"model": {k: v.numpy() for k, v in ref.state_dict().items()}, "__author__": "D2"}
    if heuristics:
        data["matching_heuristics"] = True
    path = tmp_path / "model_final_abcdef.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    model = TinyRCNN()
    extra = DetectionCheckpointer(model).load(str(path), strict=True)
    _assert_loaded(model, ref)
    assert extra["__author__"] == "D2"


def test_detectron2_pth_loads_directly(tmp_path):
    ref = _randomized(TinyRCNN(), 5)
    for i, payload in enumerate([{"model": ref.state_dict()}, ref.state_dict()]):
        path = tmp_path / f"m{i}.pth"
        torch.save(payload, path)
        model = TinyRCNN()
        DetectionCheckpointer(model).load(str(path), strict=True)
        _assert_loaded(model, ref)


def test_pixel_stats_and_cell_anchors_not_reported(tmp_path, caplog):
    ref = _randomized(TinyRCNN(), 6)
    sd = {k: v for k, v in ref.state_dict().items() if "pixel_" not in k}
    sd["proposal_generator.anchor_generator.cell_anchors.0"] = torch.zeros(3, 4)
    torch.save({"model": sd}, tmp_path / "old.pth")
    model = TinyRCNN()
    with caplog.at_level(logging.WARNING, logger="torchdet.checkpoint"):
        DetectionCheckpointer(model).load(str(tmp_path / "old.pth"), strict=True)
    assert _warnings(caplog) == []


def test_matching_heuristics_query(tmp_path):
    ref = _randomized(TinyRCNN(), 7)
    # a backbone-only checkpoint with short names: needs suffix matching
    torch.save(ref.backbone.bottom_up.state_dict(), tmp_path / "bb.pth")
    model = TinyRCNN()
    DetectionCheckpointer(model).load(str(tmp_path / "bb.pth") + "?matching_heuristics=True")
    for k, v in ref.backbone.bottom_up.state_dict().items():
        assert torch.equal(model.backbone.bottom_up.state_dict()[k], v), k
    with pytest.raises(ValueError, match="Unsupported query"):
        DetectionCheckpointer(model).load(str(tmp_path / "bb.pth") + "?foo=1")


def test_torchvision_resnet_state_dict(tmp_path, caplog):
    ref = _randomized(TinyRCNN(), 8)
    bu = ref.backbone.bottom_up
    tv = {"conv1.weight": bu.stem.conv1.weight}
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        tv[f"bn1.{leaf}"] = getattr(bu.stem.conv1.norm, leaf)
    tv["bn1.num_batches_tracked"] = torch.tensor(5)
    block = bu.res2[0]
    for i, conv in enumerate([block.conv1, block.conv2, block.conv3], start=1):
        tv[f"layer1.0.conv{i}.weight"] = conv.weight
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            tv[f"layer1.0.bn{i}.{leaf}"] = getattr(conv.norm, leaf)
        tv[f"layer1.0.bn{i}.num_batches_tracked"] = torch.tensor(5)
    tv["layer1.0.downsample.0.weight"] = block.shortcut.weight
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        tv[f"layer1.0.downsample.1.{leaf}"] = getattr(block.shortcut.norm, leaf)
    tv["fc.weight"], tv["fc.bias"] = torch.ones(10, 6), torch.ones(10)
    torch.save({k: v.detach().clone() for k, v in tv.items()}, tmp_path / "resnet.pth")

    model = TinyRCNN()
    with caplog.at_level(logging.WARNING, logger="torchdet.checkpoint"):
        DetectionCheckpointer(model).load(str(tmp_path / "resnet.pth"))
    for k, v in bu.state_dict().items():
        assert torch.equal(model.backbone.bottom_up.state_dict()[k], v), k
    text = "\n".join(_warnings(caplog))
    assert "linear.weight" in text and "linear.bias" in text  # the classifier: unexpected
    assert "num_batches_tracked" not in text


class _Exploit:
    def __reduce__(self):
        return (builtins.exec, ("raise SystemExit('pickle code ran')",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {}, "__author__": "x", "payload": _Exploit()}, f)
    with pytest.raises(UnsafeCheckpointError, match=r"builtins\.exec.*allow_unsafe=True"):
        DetectionCheckpointer(TinyRCNN()).load(str(path))


def test_restricted_unpickler_names_arbitrary_class(tmp_path):
    import fractions

    path = tmp_path / "obj.pkl"
    ref = _randomized(TinyRCNN(), 9)
    data = {
        "model": {k: v.numpy() for k, v in ref.state_dict().items()},
        "__author__": "x",
        "ratio": fractions.Fraction(1, 3),
    }
    with open(path, "wb") as f:
        pickle.dump(data, f)
    with pytest.raises(UnsafeCheckpointError, match=r"fractions\.Fraction"):
        DetectionCheckpointer(TinyRCNN()).load(str(path))
    model = TinyRCNN()
    extra = DetectionCheckpointer(model).load(str(path), allow_unsafe=True)
    assert extra["ratio"] == fractions.Fraction(1, 3)
    _assert_loaded(model, ref)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_restricted_unpickler_accepts_plain_data(tmp_path, protocol):
    from collections import OrderedDict

    data = {
        "blobs": OrderedDict(w=np.arange(6, dtype=np.float32).reshape(2, 3)),
        "meta": [1, 2.5, "s", b"bytes", (True, None), {3}, np.float64(1.5), np.int64(4)],
    }
    path = tmp_path / "plain.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    from torchdet.checkpoint.detection_checkpoint import load_pickle_safe

    out = load_pickle_safe(str(path))
    np.testing.assert_array_equal(out["blobs"]["w"], data["blobs"]["w"])
    assert out["meta"] == data["meta"]


def test_catalog_urls_and_prefix():
    assert ModelCatalog.get("ImageNetPretrained/MSRA/R-50") == (
        "https://dl.fbaipublicfiles.com/detectron/ImageNetPretrained/MSRA/R-50.pkl"
    )
    assert PathManager._resolve("catalog://ImageNetPretrained/FAIR/X-101-32x8d") == (
        "https://dl.fbaipublicfiles.com/detectron/ImageNetPretrained/20171220/X-101-32x8d.pkl"
    )
    assert ModelCatalog.get("Caffe2Detectron/COCO/37697547/e2e_keypoint_rcnn_R-50-FPN_1x") == (
        "https://dl.fbaipublicfiles.com/detectron/37697547/12_2017_baselines/"
        "e2e_keypoint_rcnn_R-50-FPN_1x.yaml.08_42_54.kdzV35ao/output/train/"
        "keypoints_coco_2014_train%3Akeypoints_coco_2014_valminusminival/generalized_rcnn/"
        "model_final.pkl"
    )
    assert "/rpn/model_final.pkl" in ModelCatalog.get(
        "Caffe2Detectron/COCO/35998355/rpn_R-50-C4_1x"
    )
    assert len(ModelCatalog.names()) == 7 + 13
    with pytest.raises(KeyError, match="did you mean ImageNetPretrained/MSRA/R-50"):
        ModelCatalog.get("ImageNetPretrained/MSRA/R50")


def _parity_model_names() -> list[str]:
    default = Path(__file__).resolve().parents[2].parent / "shared" / "parity"
    root = Path(os.environ.get("TORCHDET_PARITY_DIR", default)) / "models"
    names = sorted(p.name for p in root.glob("*") if (p / "config.yaml").is_file())
    return names or ["<no parity models>"]


@pytest.mark.parametrize("name", _parity_model_names())
def test_parity_checkpoints_load_without_missing_or_unexpected_keys(parity_dir, name, caplog):
    model_dir = parity_dir / "models" / name
    if not (model_dir / "model_final.pth").is_file():
        pytest.skip(f"no parity model checkpoints under {parity_dir / 'models'}")
    try:
        from torchdet.config import get_cfg
        from torchdet.modeling import build_model
    except ImportError as e:
        pytest.skip(f"torchdet.modeling.build_model / torchdet.config.get_cfg not available: {e}")
    cfg = get_cfg()
    cfg.merge_from_file(str(model_dir / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    try:
        model = build_model(cfg)
    except ImportError as e:  # a torchdet module that is not (fully) written yet
        if not (e.name or "").startswith("torchdet."):
            raise
        pytest.skip(f"{name}: a torchdet module is not written yet: {e}")
    except KeyError as e:
        if "No object named" not in str(e):
            raise
        pytest.skip(f"{name}: a component is not registered yet: {e}")
    ckpt = DetectionCheckpointer(model)
    with caplog.at_level(logging.WARNING, logger="torchdet.checkpoint"):
        ckpt.load(str(model_dir / "model_final.pth"), strict=True)
    assert _warnings(caplog) == []


def _module_tree(state: dict[str, torch.Tensor]) -> nn.Module:
    """A module with one zero buffer per key, at the key's path."""
    root = nn.Module()
    for key, value in state.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_buffer(leaf, torch.zeros_like(value))
    return root


@pytest.mark.parametrize("name", _parity_model_names())
def test_parity_checkpoint_loads_safely_into_frozen_bn_names(parity_dir, name, caplog):
    """The reference checkpoints load with the safe loader; their ``num_batches_tracked``
    entries (BN folded into FrozenBN) are dropped without a warning."""
    path = parity_dir / "models" / name / "model_final.pth"
    if not path.is_file():
        pytest.skip(f"no parity model checkpoints under {parity_dir / 'models'}")
    state = torch.load(path, weights_only=True)["model"]
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    assert counters, "the reference checkpoints carry BN counters"
    model = _module_tree({k: v for k, v in state.items() if k not in counters})
    with caplog.at_level(logging.WARNING, logger="torchdet.checkpoint"):
        DetectionCheckpointer(model).load(str(path), strict=True)
    assert _warnings(caplog) == []
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items() if k not in counters)


_DDP_WORKER = """
import sys
import torch
import torch.distributed as dist
from torch import nn
from torchdet.checkpoint import DetectionCheckpointer

rank, store, ckpt, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
model = nn.parallel.DistributedDataParallel(nn.Linear(2, 3))
with torch.no_grad():
    model.module.weight.fill_(float(rank + 100))  # diverge after DDP's initial sync
# only the main worker can read the checkpoint
DetectionCheckpointer(model).load(ckpt if rank == 0 else ckpt + ".not_here")
torch.save(model.module.state_dict(), out)
dist.destroy_process_group()
"""


def test_ddp_checkpoint_only_on_main_worker_is_broadcast(tmp_path):
    import subprocess
    import sys

    ref = nn.Linear(2, 3)
    torch.save({"model": ref.state_dict()}, tmp_path / "ckpt.pth")
    script = tmp_path / "worker.py"
    script.write_text(_DDP_WORKER)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(rank),
                str(tmp_path / "store"),
                str(tmp_path / "ckpt.pth"),
                str(tmp_path / f"out{rank}.pth"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in (0, 1)
    ]
    for p in procs:
        output, _ = p.communicate(timeout=120)
        assert p.returncode == 0, output.decode()[-3000:]
    for rank in (0, 1):
        got = torch.load(tmp_path / f"out{rank}.pth", weights_only=True)
        assert torch.equal(got["weight"], ref.weight.detach()), rank
        assert torch.equal(got["bias"], ref.bias.detach()), rank


@pytest.mark.parametrize("name", _parity_model_names())
def test_parity_backbone_and_rpn_names_match(parity_dir, name):
    """The reference R-CNN checkpoints' backbone and RPN load into torchdet's
    ``ProposalNetwork`` with nothing missing; only the RoI heads' entries are left over."""
    model_dir = parity_dir / "models" / name
    if not (model_dir / "model_final.pth").is_file():
        pytest.skip(f"no parity model checkpoints under {parity_dir / 'models'}")
    try:
        from torchdet.config import get_cfg
        from torchdet.modeling import build_model
    except ImportError as e:
        pytest.skip(f"torchdet.modeling.build_model / torchdet.config.get_cfg not available: {e}")
    cfg = get_cfg()
    cfg.merge_from_file(str(model_dir / "config.yaml"))
    if cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN":
        pytest.skip(f"{name} is a {cfg.MODEL.META_ARCHITECTURE}, not an R-CNN")
    cfg.MODEL.META_ARCHITECTURE = "ProposalNetwork"
    cfg.MODEL.DEVICE = "cpu"
    checkpointer = DetectionCheckpointer(build_model(cfg))
    incompatible = checkpointer._load_model(
        checkpointer._load_file(str(model_dir / "model_final.pth"))
    )
    assert incompatible.missing_keys == []
    assert incompatible.incorrect_shapes == []
    assert incompatible.unexpected_keys, "the RoI heads are not part of a ProposalNetwork"
    assert [k for k in incompatible.unexpected_keys if not k.startswith("roi_heads.")] == []


def test_torchvision_resnet_into_torchdet_resnet(parity_dir, tmp_path):
    """A torchvision-layout ResNet state dict (written by hand-inverting the names of torchdet's
    own ResNet) loads into every bottom-up parameter of a torchdet R-CNN."""
    import re

    try:
        from torchdet.config import get_cfg
        from torchdet.modeling import build_model
    except ImportError as e:
        pytest.skip(f"torchdet.modeling.build_model / torchdet.config.get_cfg not available: {e}")
    cfg = get_cfg()
    cfg.merge_from_file(str(parity_dir / "models" / "mask_rcnn_R50_FPN" / "config.yaml"))
    cfg.MODEL.META_ARCHITECTURE = "ProposalNetwork"
    cfg.MODEL.DEVICE = "cpu"
    reference = _randomized(build_model(cfg), 11)
    prefix = "backbone.bottom_up."
    tv = {}
    for key, value in reference.state_dict().items():
        if not key.startswith(prefix):
            continue
        k = key[len(prefix) :]
        k = k.replace("stem.conv1.norm.", "bn1.").replace("stem.conv1.", "conv1.")
        k = re.sub(r"^res(\d)\.", lambda m: f"layer{int(m.group(1)) - 1}.", k)
        k = k.replace(".shortcut.norm.", ".downsample.1.").replace(".shortcut.", ".downsample.0.")
        k = re.sub(r"\.conv(\d)\.norm\.", r".bn\1.", k)
        tv[k] = value.clone()
    assert "layer1.0.downsample.1.running_var" in tv and "bn1.bias" in tv
    for bn in [k[: -len(".running_mean")] for k in tv if k.endswith("running_mean")]:
        tv[f"{bn}.num_batches_tracked"] = torch.tensor(100)
    tv["fc.weight"], tv["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)

    model = build_model(cfg)
    checkpointer = DetectionCheckpointer(model)
    torch.save(tv, tmp_path / "resnet50.pth")
    incompatible = checkpointer._load_model(checkpointer._load_file(str(tmp_path / "resnet50.pth")))
    assert incompatible.unexpected_keys == ["linear.bias", "linear.weight"]
    assert incompatible.incorrect_shapes == []
    assert [k for k in incompatible.missing_keys if k.startswith(prefix)] == []
    got = model.state_dict()
    for key, value in reference.state_dict().items():
        if key.startswith(prefix):
            assert torch.equal(got[key], value), key


def test_caffe2_imagenet_resnet_into_torchdet_resnet(parity_dir, tmp_path, caplog):
    """MSRA-style ImageNet blobs (BN folded into an affine ``_bn_s``/``_bn_b``, no running
    statistics) fill every bottom-up parameter; the statistics become 0 / 1."""
    import re

    try:
        from torchdet.config import get_cfg
        from torchdet.modeling import build_model
    except ImportError as e:
        pytest.skip(f"torchdet.modeling.build_model / torchdet.config.get_cfg not available: {e}")
    cfg = get_cfg()
    cfg.merge_from_file(str(parity_dir / "models" / "mask_rcnn_R50_FPN" / "config.yaml"))
    cfg.MODEL.META_ARCHITECTURE = "ProposalNetwork"
    cfg.MODEL.DEVICE = "cpu"
    reference = _randomized(build_model(cfg), 12)
    prefix = "backbone.bottom_up."
    blobs = {}
    branch = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "shortcut": "branch1"}
    for key, value in reference.state_dict().items():
        if not key.startswith(prefix) or key.endswith(("running_mean", "running_var")):
            continue
        k = key[len(prefix) :]
        k = re.sub(r"^stem\.conv1\.norm\.", "res_conv1_bn_", k)
        k = re.sub(r"^stem\.conv1\.", "conv1_", k)
        k = re.sub(
            r"^(res\d)\.(\d+)\.(conv\d|shortcut)\.(norm\.)?",
            lambda m: f"{m[1]}_{m[2]}_{branch[m[3]]}_" + ("bn_" if m[4] else ""),
            k,
        )
        k = re.sub(r"(bn_)weight$", r"\1s", k)
        k = re.sub(r"(bn_)bias$", r"\1b", k)
        k = re.sub(r"_weight$", "_w", k).replace("_bias", "_b")
        blobs[k] = value.numpy().copy()
    assert "res2_0_branch1_bn_s" in blobs and "res_conv1_bn_b" in blobs and "conv1_w" in blobs
    blobs["pred_w"], blobs["pred_b"] = np.zeros((10, 4), np.float32), np.zeros(10, np.float32)
    with open(tmp_path / "R-50.pkl", "wb") as f:
        pickle.dump(blobs, f, protocol=2)

    model = build_model(cfg)
    checkpointer = DetectionCheckpointer(model)
    incompatible = checkpointer._load_model(checkpointer._load_file(str(tmp_path / "R-50.pkl")))
    assert sorted(incompatible.unexpected_keys) == ["pred_b", "pred_w"]
    assert [k for k in incompatible.missing_keys if k.startswith(prefix)] == []
    got = model.state_dict()
    for key, value in reference.state_dict().items():
        if key.startswith(prefix):
            if key.endswith("running_mean"):
                assert torch.equal(got[key], torch.zeros_like(value)), key
            elif key.endswith("running_var"):
                assert torch.equal(got[key], torch.ones_like(value)), key
            else:
                assert torch.equal(got[key], value), key


def test_detectron1_mask_rcnn_into_torchdet_mask_rcnn(parity_dir, tmp_path, caplog):
    """Detectron1-named blobs of a whole torchdet Mask R-CNN FPN (every stage, FPN level and
    mask conv) load back into it identically, strictly and without warnings."""
    try:
        from torchdet.config import get_cfg
        from torchdet.modeling import build_model
    except ImportError as e:
        pytest.skip(f"torchdet.modeling.build_model / torchdet.config.get_cfg not available: {e}")
    cfg = get_cfg()
    cfg.merge_from_file(str(parity_dir / "models" / "mask_rcnn_R50_FPN" / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    try:
        reference = _randomized(build_model(cfg), 13)
    except ImportError as e:
        pytest.skip(f"a torchdet module is not written yet: {e}")
    blobs = _c2_blobs(reference)
    assert "res5_2_branch2c_w" in blobs and "fpn_inner_res5_2_sum_w" in blobs
    assert "_[mask]_fcn4_w" in blobs
    with open(tmp_path / "model_final.pkl", "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    model = build_model(cfg)
    with caplog.at_level(logging.WARNING, logger="torchdet.checkpoint"):
        DetectionCheckpointer(model).load(str(tmp_path / "model_final.pkl"), strict=True)
    assert _warnings(caplog) == []
    _assert_loaded(model, reference)
