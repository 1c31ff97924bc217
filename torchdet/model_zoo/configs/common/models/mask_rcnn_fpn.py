# Mask R-CNN with a ResNet-50 + FPN backbone (the Base-RCNN-FPN.yaml model, with masks).
from torchdet.config import LazyCall as L

from ..data.constants import constants

model = L("torchdet.modeling.GeneralizedRCNN")(
    backbone=L("torchdet.modeling.backbone.FPN")(
        bottom_up=L("torchdet.modeling.backbone.ResNet")(
            stem=L("torchdet.modeling.backbone.BasicStem")(
                in_channels=3, out_channels=64, norm="FrozenBN"
            ),
            stages=L("torchdet.modeling.backbone.ResNet.make_default_stages")(
                depth=50,
                stride_in_1x1=True,
                norm="FrozenBN",
            ),
            out_features=["res2", "res3", "res4", "res5"],
        ),
        in_features="${.bottom_up.out_features}",
        out_channels=256,
        top_block=L("torchdet.modeling.backbone.fpn.LastLevelMaxPool")(),
    ),
    proposal_generator=L("torchdet.modeling.proposal_generator.RPN")(
        in_features=["p2", "p3", "p4", "p5", "p6"],
        head=L("torchdet.modeling.proposal_generator.StandardRPNHead")(
            in_channels=256, num_anchors=3
        ),
        anchor_generator=L("torchdet.modeling.anchor_generator.DefaultAnchorGenerator")(
            sizes=[[32], [64], [128], [256], [512]],
            aspect_ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32, 64],
            offset=0.0,
        ),
        anchor_matcher=L("torchdet.modeling.matcher.Matcher")(
            thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True
        ),
        box2box_transform=L("torchdet.modeling.box_regression.Box2BoxTransform")(
            weights=[1.0, 1.0, 1.0, 1.0]
        ),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(2000, 1000),  # (training, testing), per FPN level
        post_nms_topk=(1000, 1000),  # (training, testing), per image
        nms_thresh=0.7,
    ),
    roi_heads=L("torchdet.modeling.roi_heads.StandardROIHeads")(
        num_classes=80,
        batch_size_per_image=512,
        positive_fraction=0.25,
        proposal_matcher=L("torchdet.modeling.matcher.Matcher")(
            thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False
        ),
        box_in_features=["p2", "p3", "p4", "p5"],
        box_pooler=L("torchdet.modeling.poolers.ROIPooler")(
            output_size=7,
            scales=(1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32),
            sampling_ratio=0,
            pooler_type="ROIAlignV2",
        ),
        box_head=L("torchdet.modeling.roi_heads.FastRCNNConvFCHead")(
            input_shape=L("torchdet.layers.ShapeSpec")(channels=256, height=7, width=7),
            conv_dims=[],
            fc_dims=[1024, 1024],
        ),
        box_predictor=L("torchdet.modeling.roi_heads.FastRCNNOutputLayers")(
            input_shape=L("torchdet.layers.ShapeSpec")(channels=1024),
            test_score_thresh=0.05,
            box2box_transform=L("torchdet.modeling.box_regression.Box2BoxTransform")(
                weights=(10, 10, 5, 5)
            ),
            num_classes="${..num_classes}",
        ),
        mask_in_features=["p2", "p3", "p4", "p5"],
        mask_pooler=L("torchdet.modeling.poolers.ROIPooler")(
            output_size=14,
            scales=(1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32),
            sampling_ratio=0,
            pooler_type="ROIAlignV2",
        ),
        mask_head=L("torchdet.modeling.roi_heads.MaskRCNNConvUpsampleHead")(
            input_shape=L("torchdet.layers.ShapeSpec")(channels=256, width=14, height=14),
            num_classes="${..num_classes}",
            conv_dims=[256, 256, 256, 256, 256],  # 4 convs, then the deconv's width
        ),
    ),
    pixel_mean=constants.imagenet_bgr256_mean,
    pixel_std=constants.imagenet_bgr256_std,
    input_format="BGR",
)
