# Mask R-CNN, ResNet-50 FPN, trained from scratch for 100 epochs with large-scale jitter (LSJ),
# SyncBN everywhere and mixed precision ("Simple Copy-Paste" / TPU-style baseline recipe).
from torchdet.config import LazyCall as L

from ..common.data.coco import dataloader
from ..common.models.mask_rcnn_fpn import model
from ..common.optim import SGD as optimizer
from ..common.train import train

# From scratch: no pretrained weights, nothing frozen.
train.init_checkpoint = ""
train.amp.enabled = True
train.ddp.fp16_compression = True
model.backbone.bottom_up.freeze_at = 0

# SyncBN in the backbone and FPN.
model.backbone.bottom_up.stem.norm = "SyncBN"
model.backbone.bottom_up.stages.norm = "SyncBN"
model.backbone.norm = "SyncBN"

# The heads may see empty inputs, which torch's SyncBatchNorm rejects: use the naive
# implementation with statistics weighted by the number of samples ("N" mode).
model.roi_heads.box_head.conv_norm = "naiveSyncBN_N"
model.roi_heads.mask_head.conv_norm = "naiveSyncBN_N"

# Two convs in the RPN head.
model.proposal_generator.head.conv_dims = [-1, -1]

# A 4conv1fc box head.
model.roi_heads.box_head.conv_dims = [256, 256, 256, 256]
model.roi_heads.box_head.fc_dims = [1024]

# Large-scale jitter: rescale by 0.1-2.0, then crop or pad to a fixed 1024 x 1024.
image_size = 1024
dataloader.train.mapper.augmentations = [
    L("torchdet.data.transforms.ResizeScale")(
        min_scale=0.1, max_scale=2.0, target_height=image_size, target_width=image_size
    ),
    L("torchdet.data.transforms.FixedSizeCrop")(crop_size=(image_size, image_size)),
    L("torchdet.data.transforms.RandomFlip")(horizontal=True),
]

# Cropping cuts instances: recompute their boxes from the cropped masks.
dataloader.train.mapper.recompute_boxes = True

dataloader.train.total_batch_size = 64

# 100 epochs: 184375 iterations * 64 images / 118000 images per epoch.
train.max_iter = 184375

lr_multiplier = L("torchdet.solver.lr_scheduler.WarmupParamScheduler")(
    scheduler=L("torchdet.solver.lr_scheduler.MultiStepParamScheduler")(
        values=[1.0, 0.1, 0.01],
        milestones=[163889, 177546],
        num_updates=train.max_iter,
    ),
    warmup_length=250 / train.max_iter,
    warmup_factor=0.001,
)

optimizer.lr = 0.1
optimizer.weight_decay = 4e-5
