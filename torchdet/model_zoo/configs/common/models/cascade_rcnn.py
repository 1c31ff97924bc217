# Cascade Mask R-CNN: three box heads with increasing IoU thresholds (0.5, 0.6, 0.7).
from torchdet.config import LazyCall as L

from .mask_rcnn_fpn import model

# Cascade heads take one head, predictor and matcher per stage instead.
for key in ["box_head", "box_predictor", "proposal_matcher"]:
    model.roi_heads.pop(key)

model.roi_heads.update(
    _target_="torchdet.modeling.roi_heads.CascadeROIHeads",
    box_heads=[
        L("torchdet.modeling.roi_heads.FastRCNNConvFCHead")(
            input_shape=L("torchdet.layers.ShapeSpec")(channels=256, height=7, width=7),
            conv_dims=[],
            fc_dims=[1024, 1024],
        )
        for _ in range(3)
    ],
    box_predictors=[
        L("torchdet.modeling.roi_heads.FastRCNNOutputLayers")(
            input_shape=L("torchdet.layers.ShapeSpec")(channels=1024),
            test_score_thresh=0.05,
            box2box_transform=L("torchdet.modeling.box_regression.Box2BoxTransform")(
                weights=(w1, w1, w2, w2)
            ),
            cls_agnostic_bbox_reg=True,
            num_classes="${...num_classes}",
        )
        for (w1, w2) in [(10, 5), (20, 10), (30, 15)]
    ],
    proposal_matchers=[
        L("torchdet.modeling.matcher.Matcher")(
            thresholds=[th], labels=[0, 1], allow_low_quality_matches=False
        )
        for th in [0.5, 0.6, 0.7]
    ],
)
