# FCOS: anchor-free one-stage detection on the RetinaNet backbone.
from .retinanet import model

model._target_ = "torchdet.modeling.meta_arch.fcos.FCOS"

# FCOS has no anchors, no box coder and no matcher.
del model.anchor_generator
del model.box2box_transform
del model.anchor_matcher
del model.input_format

# P6 and P7 come from P5 rather than C5 (Sec. 2.2 of arXiv:2006.09214).
model.backbone.top_block.in_feature = "p5"
model.backbone.top_block.in_channels = 256

# The score is sqrt(classification score * centerness), hence the higher threshold.
model.test_score_thresh = 0.2
model.test_nms_thresh = 0.6

model.head._target_ = "torchdet.modeling.meta_arch.fcos.FCOSHead"
del model.head.num_anchors
model.head.norm = "GN"
