"""Renaming foreign checkpoints (Caffe2/Detectron1, torchvision, timm) and matching names by suffix.

Caffe2 blobs are flat names with underscores (``res2_0_branch2a_w``). They are first turned into
dotted names (``res2.0.conv1.weight``) by an ordered list of rewrite rules, the same table as
Detectron2 v0.6, then matched to the model's names with :func:`align_and_update_state_dicts`:
each model key takes the longest checkpoint key that is a suffix of it at a ``.`` boundary, so
``backbone.bottom_up.res2.0.conv1.weight`` picks up ``res2.0.conv1.weight``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from tabulate import tabulate

__all__ = [
    "align_and_update_state_dicts",
    "convert_basic_c2_names",
    "convert_c2_detectron_names",
    "convert_torchvision_resnet_names",
    "is_torchvision_resnet_state_dict",
]

logger = logging.getLogger(__name__)


def _regex(pattern: str, repl: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)
    return lambda k: compiled.sub(repl, k)


def _literal(old: str, new: str) -> Callable[[str], str]:
    return lambda k: k.replace(old, new)


# Order matters: every rule sees the output of the previous ones.
_BASIC_C2_RULES: list[Callable[[str], str]] = [
    _literal("_", "."),
    _regex(r"\.b$", ".bias"),
    _regex(r"\.w$", ".weight"),
    # BatchNorm (affine "bn_s/bn_b", running stats) and GroupNorm become "norm"
    _regex(r"bn\.s$", "norm.weight"),
    _regex(r"bn\.bias$", "norm.bias"),
    _regex(r"bn\.rm", "norm.running_mean"),
    _regex(r"bn\.running.mean$", "norm.running_mean"),
    _regex(r"bn\.riv$", "norm.running_var"),
    _regex(r"bn\.running.var$", "norm.running_var"),
    _regex(r"bn\.gamma$", "norm.weight"),
    _regex(r"bn\.beta$", "norm.bias"),
    _regex(r"gn\.s$", "norm.weight"),
    _regex(r"gn\.bias$", "norm.bias"),
    # stem: "res_conv1_bn_*" is the stem's norm; anchor "conv1" at the start so head convs
    # named conv1 elsewhere are left alone
    _regex(r"^res\.conv1\.norm\.", "conv1.norm."),
    _regex(r"^conv1\.", "stem.conv1."),
    # residual blocks
    _literal(".branch1.", ".shortcut."),
    _literal(".branch2a.", ".conv1."),
    _literal(".branch2b.", ".conv2."),
    _literal(".branch2c.", ".conv3."),
    # DensePose heads
    _regex(r"^body.conv.fcn", "body_conv_fcn"),
    _literal("AnnIndex.lowres", "ann_index_lowres"),
    _literal("Index.UV.lowres", "index_uv_lowres"),
    _literal("U.lowres", "u_lowres"),
    _literal("V.lowres", "v_lowres"),
]

_DETECTRON_RULES: list[Callable[[str], str]] = [
    # RPN: in FPN models the head is defined at level 2 ("fpn2") and shared by every level
    _literal("conv.rpn.fpn2", "proposal_generator.rpn_head.conv"),
    _literal("conv.rpn", "proposal_generator.rpn_head.conv"),
    _literal("rpn.conv.3x3", "proposal_generator.rpn_head.conv"),  # py-faster-rcnn naming
    _literal("rpn.bbox.pred.fpn2", "proposal_generator.rpn_head.anchor_deltas"),
    _literal("rpn.cls.logits.fpn2", "proposal_generator.rpn_head.objectness_logits"),
    _literal("rpn.bbox.pred", "proposal_generator.rpn_head.anchor_deltas"),
    _literal("rpn.cls.logits", "proposal_generator.rpn_head.objectness_logits"),
    # Fast R-CNN box head and predictor
    _regex(r"^bbox\.pred", "bbox_pred"),
    _regex(r"^cls\.score", "cls_score"),
    _regex(r"^fc6\.", "box_head.fc1."),
    _regex(r"^fc7\.", "box_head.fc2."),
    _regex(r"^head\.conv", "box_head.conv"),  # 4conv1fc heads: head_conv1_w, head_conv1_gn_s
]

_MASK_KEYPOINT_RULES: list[Callable[[str], str]] = [
    # Mask head: StandardROIHeads ("_[mask]_fcnN"), Res5ROIHeads ("conv5_mask")
    _literal(".[mask].fcn", "mask_head.mask_fcn"),
    _regex(r"^\.mask\.fcn", "mask_head.mask_fcn"),
    _regex(r"^mask\.fcn(\d+)\.", r"mask_head.mask_fcn\1."),  # "mask_fcnN" without brackets
    _literal("mask.fcn.logits", "mask_head.predictor"),
    _literal("conv5.mask", "mask_head.deconv"),
    # Keypoint head: its convs are plainly "conv_fcnN"
    _literal("conv.fcn", "roi_heads.keypoint_head.conv_fcn"),
    _literal("kps.score.lowres", "roi_heads.keypoint_head.score_lowres"),
    _literal("kps.score.", "roi_heads.keypoint_head.score."),
]


def convert_basic_c2_names(original_keys: Iterable[str]) -> list[str]:
    """Rename Caffe2 backbone blobs to torchdet names (``res2_0_branch2a_w`` ->
    ``res2.0.conv1.weight``, ``res_conv1_bn_s`` -> ``stem.conv1.norm.weight``).

    Args:
        original_keys: Caffe2 blob names.

    Returns:
        The renamed keys, in the same order.
    """
    keys = [{"pred_b": "linear_b", "pred_w": "linear_w"}.get(k, k) for k in original_keys]
    for rule in _BASIC_C2_RULES:
        keys = [rule(k) for k in keys]
    return keys


def _fpn_name(name: str) -> str:
    """``fpn.inner.res5.2.sum[.lateral].weight`` -> ``fpn_lateral5.weight``;
    ``fpn.res5.2.sum.weight`` -> ``fpn_output5.weight`` (keeping a ``.norm`` level)."""
    parts = name.split(".")
    norm = ".norm" if "norm" in parts else ""
    if name.startswith("fpn.inner."):
        return f"fpn_lateral{int(parts[2][len('res') :])}{norm}.{parts[-1]}"
    if name.startswith("fpn.res"):
        return f"fpn_output{int(parts[1][len('res') :])}{norm}.{parts[-1]}"
    return name


def convert_c2_detectron_names(
    weights: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Rename a Detectron1/Caffe2 detection model's blobs to torchdet names.

    Besides renaming, the class-specific predictors are re-laid out: Caffe2 puts the background
    class first, torchdet last. ``cls_score`` rows move from ``[bg, c1..cK]`` to ``[c1..cK, bg]``;
    ``bbox_pred`` drops its first 4 rows (background deltas) and ``mask_head.predictor`` its
    first channel (background mask).

    Args:
        weights: Caffe2 blob name -> array or tensor.

    Returns:
        ``(renamed weights, renamed name -> original name)``.

    Raises:
        ValueError: two blobs map to the same name.
    """
    original_keys = sorted(weights.keys())
    keys = convert_basic_c2_names(original_keys)
    for rule in _DETECTRON_RULES:
        keys = [rule(k) for k in keys]
    keys = [_fpn_name(k) for k in keys]
    for rule in _MASK_KEYPOINT_RULES:
        keys = [rule(k) for k in keys]

    if len(set(keys)) != len(keys):
        seen: dict[str, str] = {}
        clashes = []
        for orig, new in zip(original_keys, keys):
            if new in seen:
                clashes.append(f"{seen[new]} and {orig} -> {new}")
            seen[new] = orig
        raise ValueError("Caffe2 blob names collide after renaming: " + "; ".join(clashes))

    new_weights: dict[str, Any] = {}
    new_to_original: dict[str, str] = {}
    for orig, renamed in zip(original_keys, keys):
        new_to_original[renamed] = orig
        value = weights[orig]
        if renamed.startswith(("bbox_pred.", "mask_head.predictor.")):
            start = 4 if renamed.startswith("bbox_pred.") else 1
            new_weights[renamed] = value[start:]
            logger.info(
                "Dropped the background-class rows of %s: shape %s -> %s",
                renamed,
                tuple(value.shape),
                tuple(new_weights[renamed].shape),
            )
        elif renamed.startswith("cls_score."):
            if isinstance(value, torch.Tensor):
                new_weights[renamed] = torch.cat([value[1:], value[:1]])
            else:
                import numpy as np

                new_weights[renamed] = np.concatenate([value[1:], value[:1]])
            logger.info(
                "Moved the background class of %s from index 0 to index %d",
                renamed,
                value.shape[0] - 1,
            )
        else:
            new_weights[renamed] = value
    return new_weights, new_to_original


# ---------------------------------------------------------------------------- torchvision / timm


def is_torchvision_resnet_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """Whether keys look like a torchvision or timm ResNet (``conv1.weight``, ``bn1.*``,
    ``layer1.0.conv1.weight``) rather than torchdet names."""
    return (
        "conv1.weight" in state_dict
        and "bn1.weight" in state_dict
        and any(k.startswith("layer1.0.conv1.") for k in state_dict)
    )


def convert_torchvision_resnet_names(keys: Iterable[str]) -> list[str]:
    """Rename torchvision/timm ResNet keys to torchdet ResNet keys.

    ``conv1.weight`` -> ``stem.conv1.weight``, ``bn1.*`` -> ``stem.conv1.norm.*``,
    ``layer1.0.conv1.weight`` -> ``res2.0.conv1.weight``, ``layer1.0.bn2.*`` ->
    ``res2.0.conv2.norm.*``, ``layer1.0.downsample.{0,1}.*`` -> ``res2.0.shortcut{,.norm}.*``,
    ``fc.*`` -> ``linear.*`` (the classifier of a torchdet ``ResNet(num_classes=...)``). BN running
    statistics keep their names (``running_mean``/``running_var``), which FrozenBatchNorm2d shares.

    Args:
        keys: torchvision/timm state-dict keys.

    Returns:
        The renamed keys, in the same order.
    """
    out = []
    for k in keys:
        m = re.match(r"^layer([1-4])\.", k)
        if m:
            k = f"res{int(m.group(1)) + 1}." + k[m.end() :]
            k = re.sub(r"\.downsample\.0\.", ".shortcut.", k)
            k = re.sub(r"\.downsample\.1\.", ".shortcut.norm.", k)
            k = re.sub(r"\.bn([1-3])\.", r".conv\1.norm.", k)
        elif k.startswith("fc."):
            k = "linear." + k[len("fc.") :]
        else:
            k = re.sub(r"^bn1\.", "conv1.norm.", k)
            k = "stem." + k
        out.append(k)
    return out


# ---------------------------------------------------------------------------- suffix matching
def _longest_common_prefix(names: list[str]) -> str:
    """Common leading dot-components: ``["a.b.c", "a.b.d"] -> "a.b."``."""
    if not names:
        return ""
    split = [n.split(".") for n in names]
    first, last = min(split), max(split)
    common = []
    for a, b in zip(first[:-1], last[:-1]):
        if a != b:
            break
        common.append(a)
    return ".".join(common) + "." if common else ""


def _longest_common_prefix_str(names: list[str]) -> str:
    first, last = min(names), max(names)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def _mapping_table(
    matched: dict[str, str], original: Mapping[str, str], shapes: Mapping[str, tuple]
) -> str:
    """Rows ``model name | checkpoint name | shape``, one per module when names group nicely.

    Args:
        matched: model key -> checkpoint key (after renaming).
        original: checkpoint key -> name in the file.
        shapes: model key -> shape.
    """
    model_keys = sorted(matched)
    common = _longest_common_prefix(model_keys)
    groups: dict[str, list[str]] = {}
    for k in model_keys:
        groups.setdefault(k.rsplit(".", 1)[0] if "." in k else k, []).append(k)
    rows = []
    for module, keys in groups.items():
        names = [original[matched[k]] for k in keys]
        lcp = _longest_common_prefix_str(names)
        if len(keys) > 1 and lcp:
            rest = ",".join(n[len(lcp) :] for n in names)
            rows.append(
                (
                    module[len(common) :] + ".*",
                    f"{lcp}{{{rest}}}",
                    " ".join(str(tuple(shapes[k])).replace(" ", "") for k in keys),
                )
            )
        else:
            rows += [(k[len(common) :], original[matched[k]], str(tuple(shapes[k]))) for k in keys]
    where = f"submodule {common[:-1]}" if common else "model"
    table = tabulate(
        rows, headers=["Names in Model", "Names in Checkpoint", "Shapes"], tablefmt="pipe"
    )
    return f"Weights matched with {where}:\n{table}"


def align_and_update_state_dicts(
    model_state_dict: Mapping[str, Any],
    ckpt_state_dict: Mapping[str, Any],
    c2_conversion: bool = True,
) -> dict[str, Any]:
    """Rename checkpoint keys to the model keys they match by dot-boundary suffix.

    Each model key is matched to the longest checkpoint key ``c`` with ``key == c`` or
    ``key.endswith("." + c)`` (so ``roi_heads.mesh_head.whatever_conv1`` does not take
    ``conv1``). A checkpoint key matched by two model keys is ambiguous and raises. Matched
    entries are returned under the model's name, even when the shapes differ (the loader then
    reports and skips them); unmatched checkpoint entries keep their name (reported as
    unexpected). The mapping is logged as a table.

    Args:
        model_state_dict: the model's state dict (only keys and shapes are read).
        ckpt_state_dict: checkpoint name -> tensor.
        c2_conversion: first rename Caffe2 blobs with :func:`convert_c2_detectron_names`.

    Returns:
        A new state dict keyed by model names (plus the unmatched checkpoint names).

    Raises:
        ValueError: one checkpoint key matches several model keys.
    """
    if c2_conversion:
        ckpt_state_dict, original_keys = convert_c2_detectron_names(ckpt_state_dict)
    else:
        original_keys = {k: k for k in ckpt_state_dict}

    # The longest matching checkpoint key is the model key's longest dot-suffix that exists
    # in the checkpoint: try suffixes from the whole key downwards.
    matched: dict[str, str] = {}  # model key -> checkpoint key
    claimed: dict[str, str] = {}  # checkpoint key -> model key
    for key_model in sorted(model_state_dict.keys()):
        parts = key_model.split(".")
        key_ckpt = next(
            (s for s in (".".join(parts[i:]) for i in range(len(parts))) if s in ckpt_state_dict),
            None,
        )
        if key_ckpt is None:
            continue
        if key_ckpt in claimed:
            raise ValueError(
                f"Ambiguous checkpoint key {original_keys[key_ckpt]!r}: it matches both model "
                f"keys {claimed[key_ckpt]!r} and {key_model!r}. Rename the checkpoint keys "
                "to the model's full names."
            )
        claimed[key_ckpt] = key_model
        matched[key_model] = key_ckpt

    result: dict[str, Any] = {}
    shapes = {}
    for key_model, key_ckpt in matched.items():
        value = ckpt_state_dict[key_ckpt]
        shape_model = tuple(model_state_dict[key_model].shape)
        shapes[key_model] = shape_model
        if tuple(value.shape) != shape_model:
            logger.warning(
                "Shape of %s in checkpoint is %s, while shape of %s in model is %s; "
                "it will not be loaded",
                original_keys[key_ckpt],
                tuple(value.shape),
                key_model,
                shape_model,
            )
        result[key_model] = value
    if matched:
        logger.info(_mapping_table(matched, original_keys, shapes))
    for key_ckpt in sorted(ckpt_state_dict.keys()):
        if key_ckpt not in claimed:
            # keep the unmatched entry (reported as unexpected), under its name in the file
            result.setdefault(original_keys[key_ckpt], ckpt_state_dict[key_ckpt])
    return result
