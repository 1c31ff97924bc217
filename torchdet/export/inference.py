"""What an exported model computes, per meta-architecture, and how its flat outputs become the
eager model's outputs again.

Exported graphs take one image ``Tensor[C, H, W]`` (already resized, in the model's input
format) and stop before the resolution-dependent post-processing, like Detectron2's deployment
(``do_postprocess=False``): pasting masks into the full image and combining panoptic segments
are data-dependent, cheap, and easier to do at the original resolution in the caller.
:func:`postprocess_outputs` applies exactly the eager post-processing to the outputs of an
exported model, so both give the same final predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchdet.modeling import GeneralizedRCNN, detector_postprocess, sem_seg_postprocess
from torchdet.modeling.meta_arch.dense_detector import DenseDetector
from torchdet.modeling.meta_arch.panoptic_fpn import (
    PanopticFPN,
    combine_semantic_and_instance_outputs,
)
from torchdet.modeling.meta_arch.rcnn import _normalize_and_pad
from torchdet.modeling.meta_arch.semantic_seg import SemanticSegmentor
from torchdet.structures import Instances, heatmaps_to_keypoints

__all__ = ["export_inference_func", "postprocess_outputs"]


def _rcnn(model: GeneralizedRCNN, image: torch.Tensor) -> Instances:
    return model.inference([{"image": image}], do_postprocess=False)[0]


def _dense(model: DenseDetector, image: torch.Tensor) -> Instances:
    images = model.preprocess_image([{"image": image}])
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    predictions = model.head(features)
    return model.forward_inference(images, features, predictions)[0]


def _panoptic(model: PanopticFPN, image: torch.Tensor) -> tuple[Instances, torch.Tensor]:
    detector_results, sem_seg_results = model.inference([{"image": image}], do_postprocess=False)
    return detector_results[0], sem_seg_results[0]


def _semantic(model: SemanticSegmentor, image: torch.Tensor) -> torch.Tensor:
    images = _normalize_and_pad(
        [{"image": image}], model.pixel_mean, model.pixel_std, model.backbone
    )
    features = model.backbone(images.tensor)
    return model.sem_seg_head(features, None)[0][0]


def export_inference_func(model: nn.Module) -> Callable[[nn.Module, torch.Tensor], Any]:
    """The function ``f(model, image)`` an export traces for ``model``.

    Returns per architecture:
        * GeneralizedRCNN (Faster/Mask/Keypoint/Cascade, FPN or C4), RetinaNet and other
          ``DenseDetector``: ``Instances`` at the input resolution (``pred_masks`` as
          (R, 1, M, M) probabilities, not pasted).
        * PanopticFPN: ``(Instances, sem_seg logits Tensor[K, H_pad, W_pad])``.
        * SemanticSegmentor: sem_seg logits ``Tensor[K, H_pad, W_pad]``.

    Raises:
        TypeError: for an architecture the exporters do not support.
    """
    # PanopticFPN subclasses GeneralizedRCNN: test it first.
    if isinstance(model, PanopticFPN):
        return _panoptic
    if isinstance(model, GeneralizedRCNN):
        return _rcnn
    if isinstance(model, DenseDetector):
        return _dense
    if isinstance(model, SemanticSegmentor):
        return _semantic
    raise TypeError(
        f"export: no inference function for {type(model).__name__}; supported: GeneralizedRCNN, "
        "PanopticFPN, DenseDetector (RetinaNet, FCOS), SemanticSegmentor, or pass "
        "inference_func"
    )


def postprocess_outputs(
    model: nn.Module, outputs: Any, image_size: tuple[int, int], height: int, width: int
) -> dict:
    """Turn the (unflattened) outputs of an exported model into the eager model's output dict.

    Args:
        model: the eager model the export came from (for its post-processing settings).
        outputs: ``adapter.outputs_schema(flat_outputs)``.
        image_size: ``(h, w)`` of the image that was fed to the exported model.
        height, width: the output resolution (the original image's size).

    Returns:
        dict: as the eager model's output for one image (``instances``, ``sem_seg``,
        ``panoptic_seg`` as applicable).
    """
    if isinstance(model, PanopticFPN):
        instances, sem_seg = outputs
        instances = _with_size(instances, image_size)
        sem_seg_r = sem_seg_postprocess(sem_seg, image_size, height, width)
        detector_r = detector_postprocess(instances, height, width)
        panoptic_r = combine_semantic_and_instance_outputs(
            detector_r,
            sem_seg_r.argmax(dim=0),
            model.combine_overlap_thresh,
            model.combine_stuff_area_thresh,
            model.combine_instances_score_thresh,
        )
        return {"sem_seg": sem_seg_r, "instances": detector_r, "panoptic_seg": panoptic_r}
    if isinstance(model, SemanticSegmentor):
        return {"sem_seg": sem_seg_postprocess(outputs, image_size, height, width)}
    if isinstance(model, (GeneralizedRCNN, DenseDetector)):
        return {"instances": detector_postprocess(_with_size(outputs, image_size), height, width)}
    raise TypeError(f"postprocess_outputs: unsupported model {type(model).__name__}")


def _with_size(instances: Instances, image_size: tuple[int, int]) -> Instances:
    # The flattened image size comes back as a tensor; post-processing wants Python ints.
    instances = Instances((int(image_size[0]), int(image_size[1])), **instances.get_fields())
    if instances.has("pred_keypoint_heatmaps") and not instances.has("pred_keypoints"):
        # Keypoint decoding stays outside exported graphs (see keypoint_rcnn_inference).
        decoded = heatmaps_to_keypoints(
            instances.pred_keypoint_heatmaps, instances.pred_boxes.tensor
        )
        instances.pred_keypoints = decoded[:, :, [0, 1, 3]]  # (x, y, logit, score) -> x, y, score
    return instances
