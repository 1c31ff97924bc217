# The 100-epoch LSJ recipe of mask_rcnn_regnety_4gf_dds_FPN_100ep_LSJ.py trained twice as long.
from .mask_rcnn_regnety_4gf_dds_FPN_100ep_LSJ import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

train.max_iter *= 2  # 100 epochs -> 200 epochs

lr_multiplier.scheduler.milestones = [
    milestone * 2 for milestone in lr_multiplier.scheduler.milestones
]
lr_multiplier.scheduler.num_updates = train.max_iter
