# The 100-epoch LSJ recipe of mask_rcnn_regnety_4gf_dds_FPN_100ep_LSJ.py trained four times as long.
from .mask_rcnn_regnety_4gf_dds_FPN_100ep_LSJ import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

train.max_iter *= 4  # 100 epochs -> 400 epochs

lr_multiplier.scheduler.milestones = [
    milestone * 4 for milestone in lr_multiplier.scheduler.milestones
]
lr_multiplier.scheduler.num_updates = train.max_iter
