# Learning-rate multipliers of the "Nx" COCO schedules (1x = 90k iterations at batch 16,
# about 12 COCO epochs). The rate drops by 10x twice near the end of training (the strategy of
# "Rethinking ImageNet Pre-training", Sec. 4), after a 1000-iteration linear warmup.
from torchdet.config import LazyCall as L


def default_X_scheduler(num_X):
    """The lr multiplier of the `num_X`x schedule (a WarmupParamScheduler config)."""
    total_steps_16bs = num_X * 90000  # iterations at batch size 16
    if num_X <= 2:
        # The multiplier only sees the fraction of training done, so this decays at 2/3 and
        # 8/9 of training whatever the length.
        milestones, num_updates = [60000, 80000], 90000
    else:
        # Longer schedules decay 60k and 20k iterations before the end.
        milestones = [total_steps_16bs - 60000, total_steps_16bs - 20000]
        num_updates = total_steps_16bs
    scheduler = L("torchdet.solver.lr_scheduler.MultiStepParamScheduler")(
        values=[1.0, 0.1, 0.01],
        milestones=milestones,
        num_updates=num_updates,
    )
    return L("torchdet.solver.lr_scheduler.WarmupParamScheduler")(
        scheduler=scheduler,
        warmup_length=1000 / total_steps_16bs,
        warmup_method="linear",
        warmup_factor=0.001,
    )


lr_multiplier_1x = default_X_scheduler(1)
lr_multiplier_2x = default_X_scheduler(2)
lr_multiplier_3x = default_X_scheduler(3)
lr_multiplier_6x = default_X_scheduler(6)
lr_multiplier_9x = default_X_scheduler(9)
