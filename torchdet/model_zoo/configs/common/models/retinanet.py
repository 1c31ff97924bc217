# RetinaNet with a ResNet-50 + FPN (P3-P7) backbone.
from torchdet.config import LazyCall as L

from ..data.constants import constants

model = L("torchdet.modeling.meta_arch.RetinaNet")(
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
            out_features=["res3", "res4", "res5"],
        ),
        in_features=["res3", "res4", "res5"],
        out_channels=256,
        # P6 and P7 come from C5 (2048 channels).
        top_block=L("torchdet.modeling.backbone.fpn.LastLevelP6P7")(
            in_channels=2048, out_channels="${..out_channels}"
        ),
    ),
    head=L("torchdet.modeling.meta_arch.retinanet.RetinaNetHead")(
        # one shape per input feature map (P3-P7)
        input_shape=[L("torchdet.layers.ShapeSpec")(channels=256)] * 5,
        num_classes="${..num_classes}",
        conv_dims=[256, 256, 256, 256],
        prior_prob=0.01,
        num_anchors=9,
    ),
    anchor_generator=L("torchdet.modeling.anchor_generator.DefaultAnchorGenerator")(
        # three scales per octave
        sizes=[[x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)] for x in [32, 64, 128, 256, 512]],
        aspect_ratios=[0.5, 1.0, 2.0],
        strides=[8, 16, 32, 64, 128],
        offset=0.0,
    ),
    box2box_transform=L("torchdet.modeling.box_regression.Box2BoxTransform")(
        weights=[1.0, 1.0, 1.0, 1.0]
    ),
    anchor_matcher=L("torchdet.modeling.matcher.Matcher")(
        thresholds=[0.4, 0.5], labels=[0, -1, 1], allow_low_quality_matches=True
    ),
    num_classes=80,
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    focal_loss_alpha=0.25,
    focal_loss_gamma=2.0,
    pixel_mean=constants.imagenet_bgr256_mean,
    pixel_std=constants.imagenet_bgr256_std,
    input_format="BGR",
)
