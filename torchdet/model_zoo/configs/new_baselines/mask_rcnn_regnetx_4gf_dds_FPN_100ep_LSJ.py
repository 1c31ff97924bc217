# Mask R-CNN, RegNetX-4GF (DDS) + FPN, the 100-epoch LSJ recipe (from scratch, SyncBN).
from torchdet.config import LazyCall as L

from .mask_rcnn_R_50_FPN_100ep_LSJ import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

# Same backbone as COCO-InstanceSegmentation/mask_rcnn_regnetx_4gf_dds_fpn_1x.py, with SyncBN.
model.backbone.bottom_up = L("torchdet.modeling.backbone.RegNet")(
    stem_class=L("torchdet.utils.registry.locate")(
        name="torchdet.modeling.backbone.regnet.SimpleStem"
    ),
    stem_width=32,
    block_class=L("torchdet.utils.registry.locate")(
        name="torchdet.modeling.backbone.regnet.ResBottleneckBlock"
    ),
    depth=23,
    w_a=38.65,
    w_0=96,
    w_m=2.43,
    group_width=40,
    norm="SyncBN",
    out_features=["s1", "s2", "s3", "s4"],
)
model.pixel_std = [57.375, 57.120, 58.395]

train.cudnn_benchmark = True  # RegNets run faster with cuDNN autotuning
