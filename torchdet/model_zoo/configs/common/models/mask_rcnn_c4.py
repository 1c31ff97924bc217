# Mask R-CNN on ResNet-50 "C4": RPN on res4, the res5 stage as the shared box/mask head.
from torchdet.config import LazyCall as L

from ..data.constants import constants

model = L("torchdet.modeling.GeneralizedRCNN")(
    backbone=L("torchdet.modeling.backbone.ResNet")(
        stem=L("torchdet.modeling.backbone.BasicStem")(
            in_channels=3, out_channels=64, norm="FrozenBN"
        ),
        stages=L("torchdet.modeling.backbone.ResNet.make_default_stages")(
            depth=50,
            stride_in_1x1=True,
            norm="FrozenBN",
        ),
        out_features=["res4"],
    ),
    proposal_generator=L("torchdet.modeling.proposal_generator.RPN")(
        in_features=["res4"],
        head=L("torchdet.modeling.proposal_generator.StandardRPNHead")(
            in_channels=1024, num_anchors=15
        ),
        anchor_generator=L("torchdet.modeling.anchor_generator.DefaultAnchorGenerator")(
            sizes=[[32, 64, 128, 256, 512]],
            aspect_ratios=[0.5, 1.0, 2.0],
            strides=[16],
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
        pre_nms_topk=(12000, 6000),
        post_nms_topk=(2000, 1000),
        nms_thresh=0.7,
    ),
    roi_heads=L("torchdet.modeling.roi_heads.Res5ROIHeads")(
        num_classes=80,
        batch_size_per_image=512,
        positive_fraction=0.25,
        proposal_matcher=L("torchdet.modeling.matcher.Matcher")(
            thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False
        ),
        in_features=["res4"],
        pooler=L("torchdet.modeling.poolers.ROIPooler")(
            output_size=14,
            scales=(1.0 / 16,),
            sampling_ratio=0,
            pooler_type="ROIAlignV2",
        ),
        res5=L("torchdet.modeling.backbone.ResNet.make_stage")(
            block_class=L("torchdet.utils.registry.locate")(
                name="torchdet.modeling.backbone.resnet.BottleneckBlock"
            ),
            num_blocks=3,
            stride_per_block=[2, 1, 1],
            in_channels=1024,
            bottleneck_channels=512,
            out_channels=2048,
            norm="FrozenBN",
            stride_in_1x1=True,
        ),
        box_predictor=L("torchdet.modeling.roi_heads.FastRCNNOutputLayers")(
            input_shape=L("torchdet.layers.ShapeSpec")(
                channels="${...res5.out_channels}", height=1, width=1
            ),
            test_score_thresh=0.05,
            box2box_transform=L("torchdet.modeling.box_regression.Box2BoxTransform")(
                weights=(10, 10, 5, 5)
            ),
            num_classes="${..num_classes}",
        ),
        mask_head=L("torchdet.modeling.roi_heads.MaskRCNNConvUpsampleHead")(
            input_shape=L("torchdet.layers.ShapeSpec")(
                channels="${...res5.out_channels}",
                width="${...pooler.output_size}",
                height="${...pooler.output_size}",
            ),
            num_classes="${..num_classes}",
            conv_dims=[256],  # no conv, only the deconv of 256 channels
        ),
    ),
    pixel_mean=constants.imagenet_bgr256_mean,
    pixel_std=constants.imagenet_bgr256_std,
    input_format="BGR",
)
