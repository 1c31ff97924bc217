# Mask R-CNN, RegNetY-4GF (the DDS paper's model, from pycls) + FPN, 1x schedule, COCO.
from torchdet.config import LazyCall as L

from ..common.coco_schedule import lr_multiplier_1x as lr_multiplier
from ..common.data.coco import dataloader
from ..common.models.mask_rcnn_fpn import model
from ..common.optim import SGD as optimizer
from ..common.train import train

# The ResNet of the FPN model replaced by RegNetY-4GF; its stages s1-s4 feed the FPN.
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
    freeze_at=2,
    norm="FrozenBN",
    out_features=["s1", "s2", "s3", "s4"],
)
model.pixel_std = [57.375, 57.120, 58.395]  # pycls models expect the ImageNet std

optimizer.weight_decay = 5e-5
train.init_checkpoint = (
    "https://dl.fbaipublicfiles.com/pycls/dds_baselines/160906838/RegNetY-4.0GF_dds_8gpu.pyth"
)
train.cudnn_benchmark = True  # RegNets run faster with cuDNN autotuning
