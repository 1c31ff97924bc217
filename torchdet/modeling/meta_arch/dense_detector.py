"""``DenseDetector``: the base of one-stage detectors (RetinaNet, FCOS) that predict a class
and a box for every anchor of every feature level.

Shape shorthand: N images, L levels, Hi x Wi the size of level i, A anchors per cell,
R = sum_i Hi*Wi*A anchors, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from torchdet.layers import move_device_like
from torchdet.structures import Boxes, ImageList, Instances

from ..backbone import Backbone
from ..postprocessing import detector_postprocess
from .rcnn import _check_batched_inputs, _normalize_and_pad

__all__ = ["DenseDetector", "permute_to_N_HWA_K"]


def permute_to_N_HWA_K(tensor: torch.Tensor, K: int) -> torch.Tensor:
    """Flatten a head output to anchor order.

    Args:
        tensor (Tensor[N, A * K, H, W]): per-cell predictions of A anchors.
        K: values per anchor.

    Returns:
        Tensor[N, H * W * A, K]: in the anchor generator's (H, W, A) order.
    """
    if tensor.dim() != 4:
        raise ValueError(f"permute_to_N_HWA_K: expected (N, A*K, H, W), got {tuple(tensor.shape)}")
    N, _, H, W = tensor.shape
    tensor = tensor.view(N, -1, K, H, W)
    tensor = tensor.permute(0, 3, 4, 1, 2)
    return tensor.reshape(N, -1, K)


class DenseDetector(nn.Module):
    """A backbone and a dense head; subclasses implement ``forward_training`` and
    ``forward_inference``.

    Inference returns, per image, ``{"instances": Instances}`` at the input's
    ``height`` x ``width``.
    """

    def __init__(
        self,
        backbone: Backbone,
        head: nn.Module,
        head_in_features: Sequence[str] | None = None,
        *,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ):
        """
        Args:
            backbone: extracts the features.
            head: predicts from the list of feature maps ``head_in_features``.
            head_in_features: the backbone outputs fed to the head (default: all, finest
                first).
            pixel_mean, pixel_std: per-channel normalisation of the input images.
        """
        super().__init__()
        self.backbone = backbone
        self.head = head
        if head_in_features is None:
            shapes = self.backbone.output_shape()
            self.head_in_features = sorted(shapes.keys(), key=lambda x: shapes[x].stride)
        else:
            self.head_in_features = list(head_in_features)
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"pixel_mean {pixel_mean} and pixel_std {pixel_std} differ in length")
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def _move_to_current_device(self, x):
        return move_device_like(x, self.pixel_mean)

    def forward(self, batched_inputs: list[dict]):
        """
        Args:
            batched_inputs (list[dict]): one dict per image, with ``image`` (Tensor[C, H, W]),
                ``instances`` in training, optionally ``height``/``width`` (output size).

        Returns:
            In training, ``dict[str, Tensor]`` of losses; at inference, ``list[dict]`` with
            ``instances`` (``pred_boxes``, ``scores``, ``pred_classes``) per image.
        """
        _check_batched_inputs(batched_inputs, type(self).__name__)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        missing = [f for f in self.head_in_features if f not in features]
        if missing:
            raise KeyError(f"{type(self).__name__}: features {missing} are not backbone outputs")
        features = [features[f] for f in self.head_in_features]
        predictions = self.head(features)

        if self.training:
            if "instances" not in batched_inputs[0]:
                raise KeyError(f"{type(self).__name__} needs 'instances' in its inputs to train")
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
            return self.forward_training(images, features, predictions, gt_instances)

        results = self.forward_inference(images, features, predictions)
        processed_results = []
        for results_per_image, input_per_image, image_size in zip(
            results, batched_inputs, images.image_sizes
        ):
            height = input_per_image.get("height", image_size[0])
            width = input_per_image.get("width", image_size[1])
            r = detector_postprocess(results_per_image, height, width)
            processed_results.append({"instances": r})
        return processed_results

    def forward_training(self, images, features, predictions, gt_instances):
        raise NotImplementedError()

    def forward_inference(self, images, features, predictions):
        raise NotImplementedError()

    def preprocess_image(self, batched_inputs: list[dict]) -> ImageList:
        """Normalise, pad and batch the input images."""
        return _normalize_and_pad(batched_inputs, self.pixel_mean, self.pixel_std, self.backbone)

    def _transpose_dense_predictions(
        self, predictions: list[list[torch.Tensor]], dims_per_anchor: list[int]
    ) -> list[list[torch.Tensor]]:
        """Flatten each head output to ``(N, Hi*Wi*A, K)``.

        Args:
            predictions: per output type (e.g. logits, deltas), its list of level outputs
                ``Tensor[N, A * K, Hi, Wi]``.
            dims_per_anchor: K of each output type.
        """
        if len(predictions) != len(dims_per_anchor):
            raise ValueError(
                f"{len(predictions)} prediction types for {len(dims_per_anchor)} dimensions"
            )
        return [
            [permute_to_N_HWA_K(x, dim_per_anchor) for x in pred]
            for pred, dim_per_anchor in zip(predictions, dims_per_anchor)
        ]

    def _ema_update(self, name: str, value: float, initial_value: float, momentum: float = 0.9):
        """Exponential moving average of a training statistic (e.g. the loss normaliser),
        kept as an attribute: ``new = old * momentum + value * (1 - momentum)``."""
        old = getattr(self, name) if hasattr(self, name) else initial_value
        new = old * momentum + value * (1 - momentum)
        setattr(self, name, new)
        return new

    def _decode_per_level_predictions(
        self,
        anchors: Boxes,
        pred_scores: torch.Tensor,
        pred_deltas: torch.Tensor,
        score_thresh: float,
        topk_candidates: int,
        image_size: tuple[int, int],
    ) -> Instances:
        """The candidate detections of one level of one image.

        Args:
            anchors (Boxes): the level's R_l anchors.
            pred_scores (Tensor[R_l, K]): per-class probabilities.
            pred_deltas (Tensor[R_l, 4]): box deltas.
            score_thresh: (anchor, class) pairs at or below it are dropped.
            topk_candidates: at most this many pairs are kept (highest scores).

        Returns:
            Instances: ``pred_boxes``, ``scores``, ``pred_classes``.
        """
        keep_idxs = pred_scores > score_thresh
        pred_scores = pred_scores[keep_idxs]
        topk_idxs = torch.nonzero(keep_idxs)  # (D, 2): anchor, class
        num_topk = min(topk_idxs.shape[0], topk_candidates)
        pred_scores, idxs = pred_scores.topk(num_topk)
        topk_idxs = topk_idxs[idxs]
        anchor_idxs, classes_idxs = topk_idxs.unbind(dim=1)
        pred_boxes = self.box2box_transform.apply_deltas(
            pred_deltas[anchor_idxs], anchors.tensor[anchor_idxs]
        )
        return Instances(
            image_size, pred_boxes=Boxes(pred_boxes), scores=pred_scores, pred_classes=classes_idxs
        )

    def _decode_multi_level_predictions(
        self,
        anchors: list[Boxes],
        pred_scores: list[torch.Tensor],
        pred_deltas: list[torch.Tensor],
        score_thresh: float,
        topk_candidates: int,
        image_size: tuple[int, int],
    ) -> Instances:
        """``_decode_per_level_predictions`` on every level, concatenated."""
        predictions = [
            self._decode_per_level_predictions(
                anchors_i, box_cls_i, box_reg_i, score_thresh, topk_candidates, image_size
            )
            for box_cls_i, box_reg_i, anchors_i in zip(pred_scores, pred_deltas, anchors)
        ]
        return Instances.cat(predictions)
