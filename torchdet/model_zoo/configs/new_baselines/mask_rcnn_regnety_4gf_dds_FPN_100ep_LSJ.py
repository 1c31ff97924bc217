# Mask R-CNN, RegNetY-4GF (DDS) + FPN, the 100-epoch LSJ recipe (from scratch, SyncBN).
from torchdet.config import LazyCall as L

from .mask_rcnn_R_50_FPN_100ep_LSJ import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

# Same backbone as COCO-InstanceSegmentation/mask_rcnn_regnety_4gf_dds_fpn_1x.py, with SyncBN.
model.backbone.bottom_up = L("torchdet.modeling.backbone.RegNet")(
    stem_class=L("torchdet.utils.registry.locate")(
        name="torchdet.modeling.backbone.regnet.SimpleStem"
    ),
    stem_width=32,
    block_class=L("torchdet.utils.registry.locate")(
        name="torchdet.modeling.backbone.regnet.ResBottleneckBlock"
    ),
    depth=22,
    w_a=31.41,
    w_0=96,
    w_m=2.24,
    group_width=64,
    se_ratio=0.25,
    norm="SyncBN",
    out_features=["s1", "s2", "s3", "s4"],
)
model.pixel_std = [57.375, 57.120, 58.395]

train.cudnn_benchmark = True  # RegNets run faster with cuDNN autotuning
