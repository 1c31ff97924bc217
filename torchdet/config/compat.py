"""Backward compatibility of yacs configs across ``VERSION`` s.

Detectron2 numbers its config schema (``cfg.VERSION``, currently 2). Each version change is a
``ConverterV<k>`` class whose ``upgrade`` turns a v(k-1) config into a vk one and whose
``downgrade`` does the reverse. Old files are read by downgrading the defaults to the file's
version, merging the file, and upgrading the result::

    old = downgrade_config(get_cfg(), to_version=1)
    old.merge_from_file("v1_config.yaml")
    cfg = upgrade_config(old)

:meth:`CfgNode.merge_from_file` does this automatically (with a warning).
"""

from __future__ import annotations

import logging

from .cfg_node import CfgNode

__all__ = [
    "ConverterV1",
    "ConverterV2",
    "downgrade_config",
    "guess_version",
    "latest_version",
    "upgrade_config",
]

logger = logging.getLogger(__name__)


def latest_version() -> int:
    """The ``VERSION`` of torchdet's defaults."""
    from .defaults import _C

    return _C.VERSION


def _converter(version: int) -> type[_RenameConverter]:
    converters = {1: ConverterV1, 2: ConverterV2}
    if version not in converters:
        raise ValueError(f"No config converter for version {version}; known: {sorted(converters)}")
    return converters[version]


def upgrade_config(cfg: CfgNode, to_version: int | None = None) -> CfgNode:
    """Return a copy of ``cfg`` upgraded to ``to_version`` (default: the latest).

    Args:
        cfg: a config of version ``cfg.VERSION``, not modified.
        to_version: the version to reach; must be >= ``cfg.VERSION``.
    """
    cfg = cfg.clone()
    cfg.defrost()
    to_version = latest_version() if to_version is None else to_version
    version = cfg.VERSION
    if version > to_version:
        raise ValueError(f"Cannot upgrade a v{version} config to v{to_version}")
    for k in range(version, to_version):
        _converter(k + 1).upgrade(cfg)
        cfg.VERSION = k + 1
    return cfg


def downgrade_config(cfg: CfgNode, to_version: int) -> CfgNode:
    """Return a copy of ``cfg`` downgraded to ``to_version``.

    Only the renamed keys are converted; keys added since ``to_version`` stay, so that merging an
    old file and upgrading again gives back a complete config.
    """
    cfg = cfg.clone()
    cfg.defrost()
    version = cfg.VERSION
    if version < to_version:
        raise ValueError(f"Cannot downgrade a v{version} config to v{to_version}")
    for k in range(version, to_version, -1):
        _converter(k).downgrade(cfg)
        cfg.VERSION = k - 1
    return cfg


def guess_version(cfg: CfgNode, filename: str) -> int:
    """Guess the version of a partial config that has no ``VERSION`` key.

    Most v1 user configs set ``MODEL.WEIGHT`` or ``TEST.AUG_ON``, which v2 renamed; a config
    with neither is taken to be the latest version.
    """

    def _has(name: str) -> bool:
        cur = cfg
        for n in name.split("."):
            if not isinstance(cur, dict) or n not in cur:
                return False
            cur = cur[n]
        return True

    if _has("MODEL.WEIGHT") or _has("TEST.AUG_ON"):
        logger.warning("Config %r has no VERSION. Assuming it to be v1.", filename)
        return 1
    ret = latest_version()
    logger.warning(
        "Config %r has no VERSION. Assuming it to be compatible with the latest v%d.",
        filename,
        ret,
    )
    return ret


def _rename(cfg: CfgNode, old: str, new: str) -> None:
    """Move the value at dotted key ``old`` to ``new``, dropping sections ``old`` leaves empty."""
    old_keys, new_keys = old.split("."), new.split(".")

    cur = cfg
    for k in old_keys:
        if not isinstance(cur, dict) or k not in cur:
            raise KeyError(f"Cannot rename config key {old} to {new}: {old} does not exist")
        cur = cur[k]
    value = cur

    node = cfg
    for k in new_keys[:-1]:
        if k not in node:
            node[k] = CfgNode()
        node = node[k]
    node[new_keys[-1]] = value

    def _delete(key_seq: list[str]) -> None:
        parent = cfg
        for k in key_seq[:-1]:
            parent = parent[k]
        del parent[key_seq[-1]]
        if len(parent) == 0 and len(key_seq) > 1:
            _delete(key_seq[:-1])

    _delete(old_keys)


class _RenameConverter:
    """A converter that only renames keys: ``RENAME`` holds ``(old, new)`` dotted pairs."""

    RENAME: list[tuple[str, str]] = []

    @classmethod
    def upgrade(cls, cfg: CfgNode) -> None:
        for old, new in cls.RENAME:
            _rename(cfg, old, new)

    @classmethod
    def downgrade(cls, cfg: CfgNode) -> None:
        for old, new in cls.RENAME[::-1]:
            _rename(cfg, new, old)


class ConverterV1(_RenameConverter):
    """v0 -> v1: the RPN head name moved into the RPN section."""

    RENAME = [("MODEL.RPN_HEAD.NAME", "MODEL.RPN.HEAD_NAME")]


class ConverterV2(_RenameConverter):
    """v1 -> v2: "*_THRESH_TEST" naming, ``TEST.AUG`` section, loss weights, anchor generator.

    Besides the renames, the anchor sizes and aspect ratios moved from ``MODEL.RPN`` and
    ``MODEL.RETINANET`` (which v1 had both, one of them unused) to ``MODEL.ANCHOR_GENERATOR``.
    """

    RENAME = [
        ("MODEL.WEIGHT", "MODEL.WEIGHTS"),
        ("MODEL.PANOPTIC_FPN.SEMANTIC_LOSS_SCALE", "MODEL.SEM_SEG_HEAD.LOSS_WEIGHT"),
        ("MODEL.PANOPTIC_FPN.RPN_LOSS_SCALE", "MODEL.RPN.LOSS_WEIGHT"),
        ("MODEL.PANOPTIC_FPN.INSTANCE_LOSS_SCALE", "MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT"),
        ("MODEL.PANOPTIC_FPN.COMBINE_ON", "MODEL.PANOPTIC_FPN.COMBINE.ENABLED"),
        (
            "MODEL.PANOPTIC_FPN.COMBINE_OVERLAP_THRESHOLD",
            "MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH",
        ),
        (
            "MODEL.PANOPTIC_FPN.COMBINE_STUFF_AREA_LIMIT",
            "MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT",
        ),
        (
            "MODEL.PANOPTIC_FPN.COMBINE_INSTANCES_CONFIDENCE_THRESHOLD",
            "MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH",
        ),
        ("MODEL.ROI_HEADS.SCORE_THRESH", "MODEL.ROI_HEADS.SCORE_THRESH_TEST"),
        ("MODEL.ROI_HEADS.NMS", "MODEL.ROI_HEADS.NMS_THRESH_TEST"),
        ("MODEL.RETINANET.INFERENCE_SCORE_THRESHOLD", "MODEL.RETINANET.SCORE_THRESH_TEST"),
        ("MODEL.RETINANET.INFERENCE_TOPK_CANDIDATES", "MODEL.RETINANET.TOPK_CANDIDATES_TEST"),
        ("MODEL.RETINANET.INFERENCE_NMS_THRESHOLD", "MODEL.RETINANET.NMS_THRESH_TEST"),
        ("TEST.DETECTIONS_PER_IMG", "TEST.DETECTIONS_PER_IMAGE"),
        ("TEST.AUG_ON", "TEST.AUG.ENABLED"),
        ("TEST.AUG_MIN_SIZES", "TEST.AUG.MIN_SIZES"),
        ("TEST.AUG_MAX_SIZE", "TEST.AUG.MAX_SIZE"),
        ("TEST.AUG_FLIP", "TEST.AUG.FLIP"),
    ]

    @classmethod
    def upgrade(cls, cfg: CfgNode) -> None:
        super().upgrade(cfg)
        # v1 kept anchors in both RPN and RETINANET; the meta-architecture says which was used.
        used, unused = (
            ("RETINANET", "RPN")
            if cfg.MODEL.META_ARCHITECTURE == "RetinaNet"
            else ("RPN", "RETINANET")
        )
        _rename(cfg, f"MODEL.{used}.ANCHOR_ASPECT_RATIOS", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS")
        _rename(cfg, f"MODEL.{used}.ANCHOR_SIZES", "MODEL.ANCHOR_GENERATOR.SIZES")
        del cfg.MODEL[unused]["ANCHOR_SIZES"]
        del cfg.MODEL[unused]["ANCHOR_ASPECT_RATIOS"]
        del cfg.MODEL.RETINANET["ANCHOR_STRIDES"]

    @classmethod
    def downgrade(cls, cfg: CfgNode) -> None:
        super().downgrade(cfg)
        _rename(cfg, "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "MODEL.RPN.ANCHOR_ASPECT_RATIOS")
        _rename(cfg, "MODEL.ANCHOR_GENERATOR.SIZES", "MODEL.RPN.ANCHOR_SIZES")
        cfg.MODEL.RETINANET.ANCHOR_ASPECT_RATIOS = cfg.MODEL.RPN.ANCHOR_ASPECT_RATIOS
        cfg.MODEL.RETINANET.ANCHOR_SIZES = cfg.MODEL.RPN.ANCHOR_SIZES
        cfg.MODEL.RETINANET.ANCHOR_STRIDES = []  # never read by any version; kept for the schema
