"""R-CNN meta-architectures: ``GeneralizedRCNN`` (backbone, proposals, RoI heads) and
``ProposalNetwork`` (backbone and proposals only).

Inputs follow Detectron2's contract: a list of dicts, one per image, with ``image``
(``Tensor[C, H, W]`` in ``input_format``, already resized), optionally ``height``/``width`` (the
size to report results at, usually the original image's), and ``instances`` (ground truth,
in training).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from torchdet.config import configurable
from torchdet.layers import move_device_like
from torchdet.structures import ImageList, Instances

from ..backbone import Backbone, build_backbone
from ..postprocessing import detector_postprocess
from ..proposal_generator import build_proposal_generator
from ..roi_heads import build_roi_heads
from .build import META_ARCH_REGISTRY

__all__ = ["GeneralizedRCNN", "ProposalNetwork"]

logger = logging.getLogger(__name__)


def _check_batched_inputs(batched_inputs: Sequence[dict], model_name: str) -> None:
    if not isinstance(batched_inputs, list | tuple) or len(batched_inputs) == 0:
        raise TypeError(
            f"{model_name} takes a non-empty list of dicts (one per image), got "
            f"{type(batched_inputs).__name__}"
        )
    for i, x in enumerate(batched_inputs):
        if not isinstance(x, dict) or "image" not in x:
            raise KeyError(f"{model_name}: input {i} must be a dict with an 'image' key")
        image = x["image"]
        if not isinstance(image, torch.Tensor) or image.dim() != 3:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image)
            raise ValueError(
                f"{model_name}: input {i}'s image must be a (C, H, W) tensor, got {shape}"
            )


def _normalize_and_pad(
    batched_inputs: Sequence[dict],
    pixel_mean: torch.Tensor,
    pixel_std: torch.Tensor,
    backbone: Backbone,
) -> ImageList:
    """Normalise each image by ``(x - mean) / std`` and pad the batch as the backbone needs."""
    images = []
    for i, x in enumerate(batched_inputs):
        image = move_device_like(x["image"], pixel_mean)
        if image.shape[0] != pixel_mean.shape[0]:
            raise ValueError(
                f"input {i}'s image has {image.shape[0]} channels but MODEL.PIXEL_MEAN has "
                f"{pixel_mean.shape[0]}"
            )
        images.append((image - pixel_mean) / pixel_std)
    return ImageList.from_tensors(
        images,
        backbone.size_divisibility,
        padding_constraints=backbone.padding_constraints,
    )


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(nn.Module):
    """Generalized R-CNN: any model made of a backbone, a proposal generator and RoI heads.

    Training returns a dict of losses; inference returns, per image,
    ``{"instances": Instances}`` at the requested output size.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        proposal_generator: nn.Module | None,
        roi_heads: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        input_format: str | None = None,
        vis_period: int = 0,
    ):
        """
        Args:
            backbone: extracts the features.
            proposal_generator: makes proposals from the features; ``None`` when proposals
                come with the inputs (``"proposals"`` key).
            roi_heads: the second stage, predicting instances from features and proposals.
            pixel_mean, pixel_std: per-channel normalisation of the input images.
            input_format: the channel order of the images ("BGR" or "RGB"), for
                visualisation.
            vis_period: visualise training proposals every this many iterations (0: never).
        """
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads

        self.input_format = input_format
        self.vis_period = vis_period
        if vis_period > 0 and input_format is None:
            raise ValueError("GeneralizedRCNN: input_format is required when vis_period > 0")

        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"pixel_mean {pixel_mean} and pixel_std {pixel_std} differ in length")
        # Non-persistent: they come from the config, not from checkpoints.
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self._warned_visualize = False

    @classmethod
    def from_config(cls, cfg) -> dict:
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "proposal_generator": build_proposal_generator(cfg, backbone.output_shape()),
            "roi_heads": build_roi_heads(cfg, backbone.output_shape()),
            "input_format": cfg.INPUT.FORMAT,
            "vis_period": cfg.VIS_PERIOD,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def _move_to_current_device(self, x):
        return move_device_like(x, self.pixel_mean)

    def visualize_training(self, batched_inputs: list[dict], proposals: list[Instances]) -> None:
        """Training visualisation: not drawn by torchdet's model; logs once that it is skipped."""
        if not self._warned_visualize:
            logger.warning(
                "GeneralizedRCNN.visualize_training: proposal visualisation is not implemented; "
                "set VIS_PERIOD=0 to silence this."
            )
            self._warned_visualize = True

    def forward(self, batched_inputs: list[dict]):
        """
        Args:
            batched_inputs (list[dict]): one dict per image, with ``image`` (Tensor[C, H, W]),
                optionally ``instances`` (ground truth, required in training), ``proposals``
                (when there is no proposal generator), ``height`` and ``width`` (output size).

        Returns:
            In training, ``dict[str, Tensor]`` of losses. In inference, ``list[dict]``: per
            image ``{"instances": Instances}`` with ``pred_boxes``, ``scores``,
            ``pred_classes`` (and ``pred_masks``, ``pred_keypoints``...) at the output size.
        """
        if not self.training:
            return self.inference(batched_inputs)

        _check_batched_inputs(batched_inputs, type(self).__name__)
        images = self.preprocess_image(batched_inputs)
        if "instances" in batched_inputs[0]:
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        else:
            gt_instances = None

        features = self.backbone(images.tensor)

        if self.proposal_generator is not None:
            proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        else:
            if "proposals" not in batched_inputs[0]:
                raise KeyError(
                    "GeneralizedRCNN has no proposal generator: inputs need a 'proposals' key"
                )
            proposals = [x["proposals"].to(self.device) for x in batched_inputs]
            proposal_losses = {}

        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        if self.vis_period > 0:
            self.visualize_training(batched_inputs, proposals)

        losses = {}
        losses.update(detector_losses)
        losses.update(proposal_losses)
        return losses

    def inference(
        self,
        batched_inputs: list[dict],
        detected_instances: list[Instances] | None = None,
        do_postprocess: bool = True,
    ):
        """Run inference on the given inputs.

        Args:
            batched_inputs (list[dict]): as in ``forward``.
            detected_instances (list[Instances], optional): if given, per image, known boxes
                and classes: only the remaining outputs (masks, keypoints) are predicted.
            do_postprocess (bool): rescale the outputs to each input's ``height``/``width``.

        Returns:
            list[dict] ``{"instances": ...}`` if ``do_postprocess`` else list[Instances] at
            the network's input resolution.
        """
        if self.training:
            raise RuntimeError("GeneralizedRCNN.inference needs eval mode: call model.eval()")
        _check_batched_inputs(batched_inputs, type(self).__name__)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)

        if detected_instances is None:
            if self.proposal_generator is not None:
                proposals, _ = self.proposal_generator(images, features, None)
            else:
                if "proposals" not in batched_inputs[0]:
                    raise KeyError(
                        "GeneralizedRCNN has no proposal generator: inputs need a 'proposals' key"
                    )
                proposals = [x["proposals"].to(self.device) for x in batched_inputs]
            results, _ = self.roi_heads(images, features, proposals, None)
        else:
            detected_instances = [x.to(self.device) for x in detected_instances]
            results = self.roi_heads.forward_with_given_boxes(features, detected_instances)

        if do_postprocess:
            return GeneralizedRCNN._postprocess(results, batched_inputs, images.image_sizes)
        return results

    def preprocess_image(self, batched_inputs: list[dict]) -> ImageList:
        """Normalise, pad and batch the input images.

        Returns:
            ImageList: ``tensor`` (N, C, H_pad, W_pad), padded to the backbone's
            ``size_divisibility`` / ``padding_constraints``; ``image_sizes`` the unpadded sizes.
        """
        return _normalize_and_pad(batched_inputs, self.pixel_mean, self.pixel_std, self.backbone)

    @staticmethod
    def _postprocess(
        instances: list[Instances],
        batched_inputs: list[dict],
        image_sizes: list[tuple[int, int]],
    ) -> list[dict]:
        """Rescale each image's outputs to its ``height`` x ``width`` (default: input size)."""
        processed_results = []
        for results_per_image, input_per_image, image_size in zip(
            instances, batched_inputs, image_sizes
        ):
            height = input_per_image.get("height", image_size[0])
            width = input_per_image.get("width", image_size[1])
            r = detector_postprocess(results_per_image, height, width)
            processed_results.append({"instances": r})
        return processed_results


@META_ARCH_REGISTRY.register()
class ProposalNetwork(nn.Module):
    """A backbone and a proposal generator: predicts class-agnostic proposals only.

    Training returns the proposal losses; inference returns, per image,
    ``{"proposals": Instances}`` (``proposal_boxes``, ``objectness_logits``) at the output size.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        proposal_generator: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ):
        """
        Args:
            backbone: extracts the features.
            proposal_generator: e.g. an ``RPN``.
            pixel_mean, pixel_std: per-channel normalisation of the input images.
        """
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"pixel_mean {pixel_mean} and pixel_std {pixel_std} differ in length")
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "proposal_generator": build_proposal_generator(cfg, backbone.output_shape()),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: list[dict]) -> ImageList:
        """Normalise, pad and batch the input images (as ``GeneralizedRCNN.preprocess_image``)."""
        return _normalize_and_pad(batched_inputs, self.pixel_mean, self.pixel_std, self.backbone)

    def forward(self, batched_inputs: list[dict]):
        """
        Args:
            batched_inputs (list[dict]): as for ``GeneralizedRCNN.forward``.

        Returns:
            In training, the proposal losses; in inference, per image
            ``{"proposals": Instances}``.
        """
        _check_batched_inputs(batched_inputs, type(self).__name__)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)

        if "instances" in batched_inputs[0]:
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        elif "targets" in batched_inputs[0]:
            logger.warning("'targets' in the model inputs is deprecated: use 'instances'")
            gt_instances = [x["targets"].to(self.device) for x in batched_inputs]
        else:
            gt_instances = None
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        if self.training:
            return proposal_losses

        processed_results = []
        for results_per_image, input_per_image, image_size in zip(
            proposals, batched_inputs, images.image_sizes
        ):
            height = input_per_image.get("height", image_size[0])
            width = input_per_image.get("width", image_size[1])
            r = detector_postprocess(results_per_image, height, width)
            processed_results.append({"proposals": r})
        return processed_results
