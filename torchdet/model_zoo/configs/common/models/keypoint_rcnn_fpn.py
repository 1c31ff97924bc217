# Keypoint R-CNN: the Mask R-CNN FPN model with a keypoint head instead of the mask head.
from torchdet.config import LazyCall as L

from .mask_rcnn_fpn import model

for key in ["mask_in_features", "mask_pooler", "mask_head"]:
    model.roi_heads.pop(key)

model.roi_heads.update(
    num_classes=1,  # person
    keypoint_in_features=["p2", "p3", "p4", "p5"],
    keypoint_pooler=L("torchdet.modeling.poolers.ROIPooler")(
        output_size=14,
        scales=(1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32),
        sampling_ratio=0,
        pooler_type="ROIAlignV2",
    ),
    keypoint_head=L("torchdet.modeling.roi_heads.KRCNNConvDeconvUpsampleHead")(
        input_shape=L("torchdet.layers.ShapeSpec")(channels=256, width=14, height=14),
        num_keypoints=17,
        conv_dims=[512] * 8,
        loss_normalizer="visible",
    ),
)

# Proposals are counted per image; 1000 (the Mask R-CNN value) costs box AP here.
model.proposal_generator.post_nms_topk = (1500, 1000)

# Smooth L1 rather than plain L1: plain L1 gives better boxes but worse keypoints.
model.roi_heads.box_predictor.smooth_l1_beta = 0.5
