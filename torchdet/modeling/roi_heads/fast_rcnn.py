"""The Fast R-CNN box predictor (``FastRCNNOutputLayers``) and its inference
(``fast_rcnn_inference``).

Shape shorthand:
    N: images in the batch
    R: proposals per image (``Ri`` for image i), summed over the batch as ``M``
    K: foreground classes (class ``K`` is background)
    B: box dimension (4; 5 for rotated boxes)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from torchdet.config import configurable
from torchdet.layers import ShapeSpec, batched_nms, cat, cross_entropy, nonzero_tuple
from torchdet.structures import Boxes, Instances

from ..box_regression import Box2BoxTransform, _dense_box_regression_loss
from .events import put_scalars

__all__ = ["fast_rcnn_inference", "FastRCNNOutputLayers"]

logger = logging.getLogger(__name__)


def fast_rcnn_inference(
    boxes: Sequence[torch.Tensor],
    scores: Sequence[torch.Tensor],
    image_shapes: Sequence[tuple[int, int]],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> tuple[list[Instances], list[torch.Tensor]]:
    """Per-image detections: score threshold, per-class NMS and top-k.

    Args:
        boxes (list[Tensor[Ri, K * 4] or Tensor[Ri, 4]]): per image, the class-specific (or
            class-agnostic) predicted boxes, x0, y0, x1, y1 in input-image pixels.
        scores (list[Tensor[Ri, K + 1]]): per image, class probabilities (last: background).
        image_shapes (list[tuple[int, int]]): per image, (height, width) to clip boxes to.
        score_thresh (float): only (box, class) pairs scoring above this are kept.
        nms_thresh (float): IoU threshold of the per-class NMS, in [0, 1].
        topk_per_image (int): the most detections kept per image; negative keeps all.

    Returns:
        instances (list[Instances]): per image, ``pred_boxes`` (Boxes), ``scores`` (Tensor[D]),
            ``pred_classes`` (Tensor[D] int64), sorted by decreasing score.
        kept_indices (list[Tensor[D] int64]): per image, the proposal index of each detection.
    """
    if not (len(boxes) == len(scores) == len(image_shapes)):
        raise ValueError(
            f"fast_rcnn_inference: {len(boxes)} box lists, {len(scores)} score lists and "
            f"{len(image_shapes)} image shapes must agree"
        )
    result_per_image = [
        fast_rcnn_inference_single_image(
            boxes_per_image, scores_per_image, image_shape, score_thresh, nms_thresh, topk_per_image
        )
        for scores_per_image, boxes_per_image, image_shape in zip(scores, boxes, image_shapes)
    ]
    return [x[0] for x in result_per_image], [x[1] for x in result_per_image]


def fast_rcnn_inference_single_image(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_shape: tuple[int, int],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> tuple[Instances, torch.Tensor]:
    """``fast_rcnn_inference`` for one image; see there for the arguments."""
    valid_mask = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    if not valid_mask.all():
        boxes = boxes[valid_mask]
        scores = scores[valid_mask]

    scores = scores[:, :-1]  # drop background
    num_bbox_reg_classes = boxes.shape[1] // 4
    boxes = Boxes(boxes.reshape(-1, 4))
    boxes.clip(image_shape)
    boxes = boxes.tensor.view(-1, num_bbox_reg_classes, 4)  # (R, K or 1, 4)

    # Every (proposal, class) pair above the threshold is a candidate detection.
    filter_mask = scores > score_thresh  # (R, K)
    filter_inds = filter_mask.nonzero()  # (D, 2): proposal, class
    if num_bbox_reg_classes == 1:
        boxes = boxes[filter_inds[:, 0], 0]
    else:
        boxes = boxes[filter_mask]
    scores = scores[filter_mask]

    keep = batched_nms(boxes, scores, filter_inds[:, 1], nms_thresh)
    if topk_per_image >= 0:
        keep = keep[:topk_per_image]
    boxes, scores, filter_inds = boxes[keep], scores[keep], filter_inds[keep]

    result = Instances(image_shape)
    result.pred_boxes = Boxes(boxes)
    result.scores = scores
    result.pred_classes = filter_inds[:, 1]
    return result, filter_inds[:, 0]


def _log_classification_stats(
    pred_logits: torch.Tensor, gt_classes: torch.Tensor, prefix: str = "fast_rcnn"
) -> None:
    """Log the accuracy of the classifier (overall, on foreground, false negatives)."""
    num_instances = gt_classes.numel()
    if num_instances == 0:
        return
    pred_classes = pred_logits.argmax(dim=1)
    bg_class_ind = pred_logits.shape[1] - 1

    fg_inds = (gt_classes >= 0) & (gt_classes < bg_class_ind)
    num_fg = fg_inds.nonzero().numel()
    fg_gt_classes = gt_classes[fg_inds]
    fg_pred_classes = pred_classes[fg_inds]

    num_false_negative = (fg_pred_classes == bg_class_ind).nonzero().numel()
    num_accurate = (pred_classes == gt_classes).nonzero().numel()
    fg_num_accurate = (fg_pred_classes == fg_gt_classes).nonzero().numel()

    scalars = {f"{prefix}/cls_accuracy": num_accurate / num_instances}
    if num_fg > 0:
        scalars[f"{prefix}/fg_cls_accuracy"] = fg_num_accurate / num_fg
        scalars[f"{prefix}/false_negative"] = num_false_negative / num_fg
    put_scalars(**scalars)


class FastRCNNOutputLayers(nn.Module):
    """Two linear layers on the box head's features: class scores (``cls_score``,
    K + 1 logits) and box deltas (``bbox_pred``, per class or class-agnostic).
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        box2box_transform: Box2BoxTransform,
        num_classes: int,
        test_score_thresh: float = 0.0,
        test_nms_thresh: float = 0.5,
        test_topk_per_image: int = 100,
        cls_agnostic_bbox_reg: bool = False,
        smooth_l1_beta: float = 0.0,
        box_reg_loss_type: str = "smooth_l1",
        loss_weight: float | dict[str, float] = 1.0,
        use_fed_loss: bool = False,
        use_sigmoid_ce: bool = False,
        get_fed_loss_cls_weights: Callable[[], torch.Tensor] | None = None,
        fed_loss_num_classes: int = 50,
    ):
        """
        Args:
            input_shape (ShapeSpec): the box head's output (channels, optional height/width).
            box2box_transform: decodes the predicted deltas relative to the proposals.
            num_classes: K, the number of foreground classes.
            test_score_thresh: detections scoring at or below this are dropped at inference.
            test_nms_thresh: IoU threshold of the per-class NMS at inference.
            test_topk_per_image: detections kept per image at inference (negative: all).
            cls_agnostic_bbox_reg: one box per proposal instead of one per class.
            smooth_l1_beta: beta of the smooth L1 box loss (0 is L1).
            box_reg_loss_type: "smooth_l1", "giou", "diou" or "ciou".
            loss_weight: weight of both losses, or a dict ``{"loss_cls": w, "loss_box_reg": w}``
                (a missing key weighs 1).
            use_fed_loss: federated loss (LVIS): sigmoid CE over a sampled subset of classes.
            use_sigmoid_ce: per-class sigmoid cross-entropy instead of the softmax one.
            get_fed_loss_cls_weights: returns the per-class sampling weights (Tensor[K]) of
                the federated loss; required when ``use_fed_loss``.
            fed_loss_num_classes: classes sampled by the federated loss.
        """
        super().__init__()
        if isinstance(input_shape, int):  # some callers give only the channel count
            input_shape = ShapeSpec(channels=input_shape)
        if num_classes <= 0:
            raise ValueError(
                f"FastRCNNOutputLayers: num_classes must be positive, got {num_classes}"
            )
        self.num_classes = num_classes
        input_size = input_shape.channels * (input_shape.width or 1) * (input_shape.height or 1)
        # One extra logit for the background class.
        self.cls_score = nn.Linear(input_size, num_classes + 1)
        num_bbox_reg_classes = 1 if cls_agnostic_bbox_reg else num_classes
        box_dim = len(box2box_transform.weights)
        self.bbox_pred = nn.Linear(input_size, num_bbox_reg_classes * box_dim)

        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.constant_(layer.bias, 0)

        self.box2box_transform = box2box_transform
        self.smooth_l1_beta = smooth_l1_beta
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk_per_image = test_topk_per_image
        if box_reg_loss_type not in ("smooth_l1", "giou", "diou", "ciou"):
            raise ValueError(
                f"FastRCNNOutputLayers: invalid box_reg_loss_type {box_reg_loss_type!r}"
            )
        self.box_reg_loss_type = box_reg_loss_type
        if isinstance(loss_weight, int | float):
            loss_weight = {"loss_cls": loss_weight, "loss_box_reg": loss_weight}
        self.loss_weight = loss_weight
        self.use_fed_loss = use_fed_loss
        self.use_sigmoid_ce = use_sigmoid_ce
        self.fed_loss_num_classes = fed_loss_num_classes

        if self.use_fed_loss:
            if not self.use_sigmoid_ce:
                raise ValueError("The federated loss needs use_sigmoid_ce=True")
            if get_fed_loss_cls_weights is None:
                raise ValueError("use_fed_loss=True needs get_fed_loss_cls_weights")
            fed_loss_cls_weights = get_fed_loss_cls_weights()
            if len(fed_loss_cls_weights) != self.num_classes:
                raise ValueError(
                    f"fed loss class weights have {len(fed_loss_cls_weights)} entries for "
                    f"{self.num_classes} classes"
                )
            self.register_buffer("fed_loss_cls_weights", fed_loss_cls_weights)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict:
        def fed_loss_weights():
            from torchdet.data.detection_utils import get_fed_loss_cls_weights

            return get_fed_loss_cls_weights(
                dataset_names=cfg.DATASETS.TRAIN,
                freq_weight_power=cfg.MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER,
            )

        return {
            "input_shape": input_shape,
            "box2box_transform": cls._box2box_transform(cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS),
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "cls_agnostic_bbox_reg": cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG,
            "smooth_l1_beta": cfg.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA,
            "test_score_thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            "test_nms_thresh": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "box_reg_loss_type": cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE,
            "loss_weight": {"loss_box_reg": cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT},
            "use_fed_loss": cfg.MODEL.ROI_BOX_HEAD.USE_FED_LOSS,
            "use_sigmoid_ce": cfg.MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE,
            "get_fed_loss_cls_weights": fed_loss_weights,
            "fed_loss_num_classes": cfg.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES,
        }

    @classmethod
    def _box2box_transform(cls, weights):
        """The box coder of ``from_config`` (rotated subclasses use a 5-weight one)."""
        return Box2BoxTransform(weights=weights)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x (Tensor[M, C] or Tensor[M, C, H, W]): per-proposal features.

        Returns:
            scores (Tensor[M, K + 1]): class logits.
            proposal_deltas (Tensor[M, K * B] or Tensor[M, B]): box deltas.
        """
        if x.dim() > 2:
            x = torch.flatten(x, start_dim=1)
        scores = self.cls_score(x)
        proposal_deltas = self.bbox_pred(x)
        return scores, proposal_deltas

    # --- training -------------------------------------------------------------------------

    def losses(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: list[Instances]
    ) -> dict[str, torch.Tensor]:
        """
        Args:
            predictions: ``(scores, proposal_deltas)`` from ``forward``.
            proposals (list[Instances]): the sampled proposals of each image, with
                ``proposal_boxes``, ``gt_classes`` and (if the image has ground truth)
                ``gt_boxes``.

        Returns:
            dict: ``loss_cls`` and ``loss_box_reg``, weighted.
        """
        scores, proposal_deltas = predictions
        gt_classes = (
            cat([p.gt_classes for p in proposals], dim=0)
            if len(proposals)
            else torch.empty(0, dtype=torch.int64, device=scores.device)
        )
        _log_classification_stats(scores, gt_classes)

        if len(proposals):
            proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)  # (M, B)
            if proposal_boxes.requires_grad:
                raise ValueError("Proposals should not require gradients!")
            # Images without ground truth have no gt_boxes: their proposals are all
            # background and never read, so any box fills in.
            gt_boxes = cat(
                [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals],
                dim=0,
            )
        else:
            proposal_boxes = gt_boxes = torch.empty((0, 4), device=proposal_deltas.device)

        if self.use_sigmoid_ce:
            loss_cls = self.sigmoid_cross_entropy_loss(scores, gt_classes)
        else:
            loss_cls = cross_entropy(scores, gt_classes, reduction="mean")

        losses = {
            "loss_cls": loss_cls,
            "loss_box_reg": self.box_reg_loss(
                proposal_boxes, gt_boxes, proposal_deltas, gt_classes
            ),
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    @staticmethod
    def get_fed_loss_classes(
        gt_classes: torch.Tensor, num_fed_loss_classes: int, num_classes: int, weight: torch.Tensor
    ) -> torch.Tensor:
        """The classes of the federated loss: those in the ground truth, plus classes drawn
        (without replacement, proportionally to ``weight``) up to ``num_fed_loss_classes``.

        Returns:
            Tensor[int64]: class indices in ``[0, num_classes)``.
        """
        unique_gt_classes = torch.unique(gt_classes)
        prob = unique_gt_classes.new_ones(num_classes + 1).float()
        prob[-1] = 0
        if len(unique_gt_classes) < num_fed_loss_classes:
            prob[:num_classes] = weight.float().clone()
            prob[unique_gt_classes] = 0
            sampled_negative_classes = torch.multinomial(
                prob, num_fed_loss_classes - len(unique_gt_classes), replacement=False
            )
            unique_gt_classes = torch.cat([unique_gt_classes, sampled_negative_classes])
        return unique_gt_classes

    def sigmoid_cross_entropy_loss(
        self, pred_class_logits: torch.Tensor, gt_classes: torch.Tensor
    ) -> torch.Tensor:
        """Per-class binary cross-entropy (background is all-zero targets), averaged over
        proposals; restricted to the federated classes when ``use_fed_loss``.

        Args:
            pred_class_logits (Tensor[M, K + 1]), gt_classes (Tensor[M] int64).
        """
        if pred_class_logits.numel() == 0:
            return pred_class_logits.sum() * 0.0
        N = pred_class_logits.shape[0]
        K = pred_class_logits.shape[1] - 1
        # One-hot over K + 1 columns, then drop background: background rows are all zero.
        target = F.one_hot(gt_classes, K + 1).to(pred_class_logits.dtype)[:, :K]
        cls_loss = F.binary_cross_entropy_with_logits(
            pred_class_logits[:, :-1], target, reduction="none"
        )
        if self.use_fed_loss:
            fed_loss_classes = self.get_fed_loss_classes(
                gt_classes,
                num_fed_loss_classes=self.fed_loss_num_classes,
                num_classes=K,
                weight=self.fed_loss_cls_weights,
            )
            fed_loss_classes_mask = fed_loss_classes.new_zeros(K + 1)
            fed_loss_classes_mask[fed_loss_classes] = 1
            weight = fed_loss_classes_mask[:K].view(1, K).expand(N, K).float()
            return torch.sum(cls_loss * weight) / N
        return torch.sum(cls_loss) / N

    def box_reg_loss(
        self,
        proposal_boxes: torch.Tensor,
        gt_boxes: torch.Tensor,
        pred_deltas: torch.Tensor,
        gt_classes: torch.Tensor,
    ) -> torch.Tensor:
        """Box regression loss over the foreground proposals, divided by all proposals (so
        that each proposal weighs the same whatever the foreground share).

        Args:
            proposal_boxes (Tensor[M, B]), gt_boxes (Tensor[M, B]),
            pred_deltas (Tensor[M, K * B] or Tensor[M, B]), gt_classes (Tensor[M]).
        """
        box_dim = proposal_boxes.shape[1]
        fg_inds = nonzero_tuple((gt_classes >= 0) & (gt_classes < self.num_classes))[0]
        if pred_deltas.shape[1] == box_dim:  # class-agnostic
            fg_pred_deltas = pred_deltas[fg_inds]
        else:
            fg_pred_deltas = pred_deltas.view(-1, self.num_classes, box_dim)[
                fg_inds, gt_classes[fg_inds]
            ]
        fg_mask = torch.ones((1, fg_inds.numel()), dtype=torch.bool, device=pred_deltas.device)
        loss_box_reg = _dense_box_regression_loss(
            [proposal_boxes[fg_inds]],
            self.box2box_transform,
            [fg_pred_deltas.unsqueeze(0)],
            [gt_boxes[fg_inds]],
            fg_mask,
            self.box_reg_loss_type,
            self.smooth_l1_beta,
        )
        return loss_box_reg / max(gt_classes.numel(), 1.0)

    # --- inference ------------------------------------------------------------------------

    def inference(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: list[Instances]
    ) -> tuple[list[Instances], list[torch.Tensor]]:
        """Detections of each image (see ``fast_rcnn_inference``)."""
        boxes = self.predict_boxes(predictions, proposals)
        scores = self.predict_probs(predictions, proposals)
        image_shapes = [x.image_size for x in proposals]
        return fast_rcnn_inference(
            boxes,
            scores,
            image_shapes,
            self.test_score_thresh,
            self.test_nms_thresh,
            self.test_topk_per_image,
        )

    def predict_boxes_for_gt_classes(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: list[Instances]
    ) -> list[torch.Tensor]:
        """The predicted box of each proposal's ground-truth class.

        Returns:
            list[Tensor[Ri, B]]: per image.
        """
        if not len(proposals):
            return []
        scores, proposal_deltas = predictions
        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        N, B = proposal_boxes.shape
        predict_boxes = self.box2box_transform.apply_deltas(proposal_deltas, proposal_boxes)
        K = predict_boxes.shape[1] // B
        if K > 1:
            gt_classes = torch.cat([p.gt_classes for p in proposals], dim=0)
            # Background proposals take class 0's box (any would do: they are not used).
            gt_classes = gt_classes.clamp_(0, K - 1)
            predict_boxes = predict_boxes.view(N, K, B)[
                torch.arange(N, dtype=torch.long, device=predict_boxes.device), gt_classes
            ]
        num_prop_per_image = [len(p) for p in proposals]
        return list(predict_boxes.split(num_prop_per_image))

    def predict_boxes(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: list[Instances]
    ) -> list[torch.Tensor]:
        """Decode the deltas into boxes.

        Returns:
            list[Tensor[Ri, K * B] or Tensor[Ri, B]]: per image.
        """
        if not len(proposals):
            return []
        _, proposal_deltas = predictions
        num_prop_per_image = [len(p) for p in proposals]
        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        predict_boxes = self.box2box_transform.apply_deltas(proposal_deltas, proposal_boxes)
        return list(predict_boxes.split(num_prop_per_image))

    def predict_probs(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: list[Instances]
    ) -> list[torch.Tensor]:
        """Class probabilities (softmax, or per-class sigmoid with ``use_sigmoid_ce``).

        Returns:
            list[Tensor[Ri, K + 1]]: per image.
        """
        scores, _ = predictions
        num_inst_per_image = [len(p) for p in proposals]
        if self.use_sigmoid_ce:
            probs = scores.sigmoid()
        else:
            probs = F.softmax(scores, dim=-1)
        return list(probs.split(num_inst_per_image, dim=0))
