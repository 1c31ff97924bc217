"""The model zoo: packaged Detectron2 configs and the URLs of their trained weights.

Example:
    >>> from torchdet import model_zoo
    >>> cfg = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml")
    >>> model = model_zoo.get("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml", trained=True)
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchdet.checkpoint import DetectionCheckpointer
from torchdet.utils.file_io import DETECTRON2_URL_PREFIX

__all__ = [
    "CONFIG_PATH_TO_URL_SUFFIX",
    "ModelZooError",
    "get",
    "get_checkpoint_url",
    "get_config",
    "get_config_file",
    "list_configs",
]

_CONFIG_ROOT = Path(__file__).resolve().parent / "configs"


class ModelZooError(RuntimeError, ValueError):
    """A name that is not in the model zoo (a ``RuntimeError`` as in Detectron2, and a
    ``ValueError`` as a bad argument)."""


# config name (relative to configs/, without extension) -> "<model id>/<file name>" below
# https://dl.fbaipublicfiles.com/detectron2/<config name>/. The six hex digits at the end of a
# file name identify the build of the weights.
CONFIG_PATH_TO_URL_SUFFIX: dict[str, str] = {
    # COCO detection: Faster R-CNN, RetinaNet, RPN and Fast R-CNN
    "COCO-Detection/faster_rcnn_R_50_C4_1x": "137257644/model_final_721ade.pkl",
    "COCO-Detection/faster_rcnn_R_50_DC5_1x": "137847829/model_final_51d356.pkl",
    "COCO-Detection/faster_rcnn_R_50_FPN_1x": "137257794/model_final_b275ba.pkl",
    "COCO-Detection/faster_rcnn_R_50_C4_3x": "137849393/model_final_f97cb7.pkl",
    "COCO-Detection/faster_rcnn_R_50_DC5_3x": "137849425/model_final_68d202.pkl",
    "COCO-Detection/faster_rcnn_R_50_FPN_3x": "137849458/model_final_280758.pkl",
    "COCO-Detection/faster_rcnn_R_101_C4_3x": "138204752/model_final_298dad.pkl",
    "COCO-Detection/faster_rcnn_R_101_DC5_3x": "138204841/model_final_3e0943.pkl",
    "COCO-Detection/faster_rcnn_R_101_FPN_3x": "137851257/model_final_f6e8b1.pkl",
    "COCO-Detection/faster_rcnn_X_101_32x8d_FPN_3x": "139173657/model_final_68b088.pkl",
    "COCO-Detection/retinanet_R_50_FPN_1x": "190397773/model_final_bfca0b.pkl",
    "COCO-Detection/retinanet_R_50_FPN_3x": "190397829/model_final_5bd44e.pkl",
    "COCO-Detection/retinanet_R_101_FPN_3x": "190397697/model_final_971ab9.pkl",
    "COCO-Detection/rpn_R_50_C4_1x": "137258005/model_final_450694.pkl",
    "COCO-Detection/rpn_R_50_FPN_1x": "137258492/model_final_02ce48.pkl",
    "COCO-Detection/fast_rcnn_R_50_FPN_1x": "137635226/model_final_e5f7ce.pkl",
    # COCO instance segmentation: Mask R-CNN
    "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x": "137259246/model_final_9243eb.pkl",
    "COCO-InstanceSegmentation/mask_rcnn_R_50_DC5_1x": "137260150/model_final_4f86c3.pkl",
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x": "137260431/model_final_a54504.pkl",
    "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_3x": "137849525/model_final_4ce675.pkl",
    "COCO-InstanceSegmentation/mask_rcnn_R_50_DC5_3x": "137849551/model_final_84107b.pkl",
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x": "137849600/model_final_f10217.pkl",
    "COCO-InstanceSegmentation/mask_rcnn_R_101_C4_3x": "138363239/model_final_a2914c.pkl",
    "COCO-InstanceSegmentation/mask_rcnn_R_101_DC5_3x": "138363294/model_final_0464b7.pkl",
    "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x": "138205316/model_final_a3ec72.pkl",
    "COCO-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_3x": "139653917/model_final_2d9806.pkl",
    # Mask R-CNN with large-scale jitter and long schedules (LazyConfig .py files)
    "new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ": "42047764/model_final_bb69de.pkl",
    "new_baselines/mask_rcnn_R_50_FPN_200ep_LSJ": "42047638/model_final_89a8d3.pkl",
    "new_baselines/mask_rcnn_R_50_FPN_400ep_LSJ": "42019571/model_final_14d201.pkl",
    "new_baselines/mask_rcnn_R_101_FPN_100ep_LSJ": "42025812/model_final_4f7b58.pkl",
    "new_baselines/mask_rcnn_R_101_FPN_200ep_LSJ": "42131867/model_final_0bb7ae.pkl",
    "new_baselines/mask_rcnn_R_101_FPN_400ep_LSJ": "42073830/model_final_f96b26.pkl",
    "new_baselines/mask_rcnn_regnetx_4gf_dds_FPN_100ep_LSJ": "42047771/model_final_b7fbab.pkl",
    "new_baselines/mask_rcnn_regnetx_4gf_dds_FPN_200ep_LSJ": "42132721/model_final_5d87c1.pkl",
    "new_baselines/mask_rcnn_regnetx_4gf_dds_FPN_400ep_LSJ": "42025447/model_final_f1362d.pkl",
    "new_baselines/mask_rcnn_regnety_4gf_dds_FPN_100ep_LSJ": "42047784/model_final_6ba57e.pkl",
    "new_baselines/mask_rcnn_regnety_4gf_dds_FPN_200ep_LSJ": "42047642/model_final_27b9c1.pkl",
    "new_baselines/mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ": "42045954/model_final_ef3a80.pkl",
    # COCO person keypoints: Keypoint R-CNN
    "COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x": "137261548/model_final_04e291.pkl",
    "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x": "137849621/model_final_a6e10b.pkl",
    "COCO-Keypoints/keypoint_rcnn_R_101_FPN_3x": "138363331/model_final_997cc7.pkl",
    "COCO-Keypoints/keypoint_rcnn_X_101_32x8d_FPN_3x": "139686956/model_final_5ad38f.pkl",
    # COCO panoptic segmentation: Panoptic FPN
    "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x": "139514544/model_final_dbfeb4.pkl",
    "COCO-PanopticSegmentation/panoptic_fpn_R_50_3x": "139514569/model_final_c10459.pkl",
    "COCO-PanopticSegmentation/panoptic_fpn_R_101_3x": "139514519/model_final_cafdb1.pkl",
    # LVIS v0.5 instance segmentation
    "LVISv0.5-InstanceSegmentation/mask_rcnn_R_50_FPN_1x": "144219072/model_final_571f7c.pkl",
    "LVISv0.5-InstanceSegmentation/mask_rcnn_R_101_FPN_1x": "144219035/model_final_824ab5.pkl",
    "LVISv0.5-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_1x": "144219108/model_final_5e3439.pkl",  # noqa: E501
    # Cityscapes
    "Cityscapes/mask_rcnn_R_50_FPN": "142423278/model_final_af9cf5.pkl",
    # Pascal VOC
    "PascalVOC-Detection/faster_rcnn_R_50_C4": "142202221/model_final_b1acc2.pkl",
    # Other settings: deformable convs, cascade, GN/SyncBN, from scratch
    "Misc/mask_rcnn_R_50_FPN_1x_dconv_c3-c5": "138602867/model_final_65c703.pkl",
    "Misc/mask_rcnn_R_50_FPN_3x_dconv_c3-c5": "144998336/model_final_821d0b.pkl",
    "Misc/cascade_mask_rcnn_R_50_FPN_1x": "138602847/model_final_e9d89b.pkl",
    "Misc/cascade_mask_rcnn_R_50_FPN_3x": "144998488/model_final_480dd8.pkl",
    "Misc/mask_rcnn_R_50_FPN_3x_syncbn": "169527823/model_final_3b3c51.pkl",
    "Misc/mask_rcnn_R_50_FPN_3x_gn": "138602888/model_final_dc5d9e.pkl",
    "Misc/scratch_mask_rcnn_R_50_FPN_3x_gn": "138602908/model_final_01ca85.pkl",
    "Misc/scratch_mask_rcnn_R_50_FPN_9x_gn": "183808979/model_final_da7b4c.pkl",
    "Misc/scratch_mask_rcnn_R_50_FPN_9x_syncbn": "184226666/model_final_5ce33e.pkl",
    "Misc/panoptic_fpn_R_101_dconv_cascade_gn_3x": "139797668/model_final_be35db.pkl",
    "Misc/cascade_mask_rcnn_X_152_32x8d_FPN_IN5k_gn_dconv": "18131413/model_0039999_e76410.pkl",
    # Detectron1 comparisons
    "Detectron1-Comparisons/faster_rcnn_R_50_FPN_noaug_1x": "137781054/model_final_7ab50c.pkl",
    "Detectron1-Comparisons/mask_rcnn_R_50_FPN_noaug_1x": "137781281/model_final_62ca52.pkl",
    "Detectron1-Comparisons/keypoint_rcnn_R_50_FPN_1x": "137781195/model_final_cce136.pkl",
}


def _strip_extension(config_path: str) -> str:
    for ext in (".yaml", ".py"):
        if config_path.endswith(ext):
            return config_path[: -len(ext)]
    return config_path


def _close_names(name: str, candidates: list[str]) -> str:
    """``"; did you mean a, b?"`` with the candidates closest to ``name``, or ``""``.

    The same file name in another group comes first (a common slip), then the closest spellings.
    """
    base = os.path.basename(_strip_extension(name))
    same_file = [c for c in candidates if os.path.basename(_strip_extension(c)) == base]
    close = same_file + difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    close = list(dict.fromkeys(close))[:3]
    return f"; did you mean {', '.join(close)}?" if close else ""


def get_checkpoint_url(config_path: str) -> str:
    """The URL of the weights trained with a model-zoo config.

    Args:
        config_path: config name relative to ``configs/``, e.g.
            ``"COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"`` (``.yaml``, ``.py`` or no
            extension).

    Returns:
        ``https://dl.fbaipublicfiles.com/detectron2/<name>/<id>/model_final_<hash>.pkl``.

    Raises:
        ModelZooError: no trained weights are published for that config.
    """
    name = _strip_extension(config_path)
    suffix = CONFIG_PATH_TO_URL_SUFFIX.get(name)
    if suffix is None:
        raise ModelZooError(
            f"No trained weights for {config_path!r} in the model zoo"
            + _close_names(name, list(CONFIG_PATH_TO_URL_SUFFIX))
        )
    return f"{DETECTRON2_URL_PREFIX}{name}/{suffix}"


def list_configs() -> list[str]:
    """Every packaged config, as paths relative to ``configs/`` (``.yaml`` and ``.py``)."""
    if not _CONFIG_ROOT.is_dir():
        return []
    return sorted(
        p.relative_to(_CONFIG_ROOT).as_posix()
        for p in _CONFIG_ROOT.rglob("*")
        if p.suffix in (".yaml", ".py") and p.is_file() and p.name != "__init__.py"
    )


def get_config_file(config_path: str) -> str:
    """The real path of a packaged config file.

    Args:
        config_path: config name relative to ``configs/``, e.g.
            ``"COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"``.

    Raises:
        ModelZooError: no such config (the message suggests close names).
    """
    cfg_file = (_CONFIG_ROOT / config_path).resolve()
    if _CONFIG_ROOT in cfg_file.parents and cfg_file.is_file():
        return str(cfg_file)
    available = list_configs()
    if not available:
        raise ModelZooError(
            f"{config_path!r} is not in the model zoo: no configs under {_CONFIG_ROOT}"
        )
    raise ModelZooError(
        f"{config_path!r} is not in the model zoo ({len(available)} configs under {_CONFIG_ROOT})"
        + _close_names(config_path, available)
    )


def get_config(config_path: str, trained: bool = False) -> Any:
    """Load a model-zoo config.

    Args:
        config_path: config name relative to ``configs/``.
        trained: point the weights at the zoo's trained model (``MODEL.WEIGHTS`` for YAML,
            ``train.init_checkpoint`` for LazyConfig); otherwise the config's own initial
            weights (usually an ImageNet backbone) are kept.

    Returns:
        A ``CfgNode`` for ``.yaml`` files, an omegaconf ``DictConfig`` for ``.py`` files.
    """
    cfg_file = get_config_file(config_path)
    if cfg_file.endswith(".yaml"):
        from torchdet.config import get_cfg

        cfg = get_cfg()
        cfg.merge_from_file(cfg_file)
        if trained:
            cfg.MODEL.WEIGHTS = get_checkpoint_url(config_path)
        return cfg
    from torchdet.config import LazyConfig

    cfg = LazyConfig.load(cfg_file)
    if trained:
        if "train" not in cfg or "init_checkpoint" not in cfg.train:
            raise ModelZooError(f"{config_path} has no train.init_checkpoint to set")
        cfg.train.init_checkpoint = get_checkpoint_url(config_path)
    return cfg


def get(config_path: str, trained: bool = False, device: str | None = None) -> nn.Module:
    """Build a model-zoo model and load its weights.

    Args:
        config_path: config name relative to ``configs/``.
        trained: load the zoo's trained weights (downloaded once into the cache); otherwise the
            config's initial weights.
        device: e.g. ``"cpu"`` or ``"cuda"``; default CUDA when available.

    Returns:
        The model, in training mode.

    Example:
        >>> model = get("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml", trained=True)
    """
    from torchdet.config import CfgNode

    cfg = get_config(config_path, trained)
    if device is None and not torch.cuda.is_available():
        device = "cpu"
    if isinstance(cfg, CfgNode):
        from torchdet.modeling import build_model

        if device is not None:
            cfg.MODEL.DEVICE = device
        model = build_model(cfg)
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
        return model
    from torchdet.config import instantiate

    model = instantiate(cfg.model)
    if device is not None:
        model = model.to(device)
    if "train" in cfg and "init_checkpoint" in cfg.train:
        DetectionCheckpointer(model).load(cfg.train.init_checkpoint)
    return model
