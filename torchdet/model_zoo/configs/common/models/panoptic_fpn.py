# Panoptic FPN: the Mask R-CNN FPN model plus a semantic segmentation head for stuff classes.
from torchdet.config import LazyCall as L

from .mask_rcnn_fpn import model

model._target_ = "torchdet.modeling.meta_arch.PanopticFPN"
model.sem_seg_head = L("torchdet.modeling.meta_arch.semantic_seg.SemSegFPNHead")(
    input_shape={
        f: L("torchdet.layers.ShapeSpec")(stride=s, channels="${....backbone.out_channels}")
        for f, s in zip(["p2", "p3", "p4", "p5"], [4, 8, 16, 32])
    },
    ignore_value=255,
    num_classes=54,  # COCO: 53 stuff classes + 1 for all things
    conv_dims=128,
    common_stride=4,
    loss_weight=0.5,
    norm="GN",
)
