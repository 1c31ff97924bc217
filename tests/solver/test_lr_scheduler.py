import math

import pytest
import torch

from torchdet.solver.lr_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    LRMultiplier,
    MultiStepParamScheduler,
    StepWithFixedGammaParamScheduler,
    WarmupCosineLR,
    WarmupMultiStepLR,
    WarmupParamScheduler,
)


def _optimizer(lr: float = 0.02) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr, momentum=0.9)


def _lrs(scheduler, optimizer, n: int) -> list[float]:
    lrs = []
    for _ in range(n):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_multistep_matches_detectron2_schedule():
    # 1x-like schedule shrunk: base 0.02, warmup 10 iters from 0.001, steps at 60 and 80.
    opt = _optimizer()
    sched = WarmupMultiStepLR(
        opt, [60, 80], gamma=0.1, warmup_factor=0.001, warmup_iters=10, max_iter=90
    )
    lrs = _lrs(sched, opt, 90)
    assert lrs[0] == pytest.approx(0.02 * 0.001)
    # Halfway through warmup: linear between 0.001 and 1.0.
    assert lrs[5] == pytest.approx(0.02 * (0.001 + 0.5 * 0.999))
    assert lrs[10] == pytest.approx(0.02)
    assert lrs[59] == pytest.approx(0.02)
    assert lrs[60] == pytest.approx(0.002)
    assert lrs[79] == pytest.approx(0.002)
    assert lrs[80] == pytest.approx(0.0002)


def test_warmup_cosine_reaches_end_value():
    opt = _optimizer(1.0)
    sched = WarmupCosineLR(opt, max_iters=100, warmup_iters=0, end_value=0.0)
    lrs = _lrs(sched, opt, 100)
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[50] == pytest.approx(0.5)
    assert lrs[99] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))


def test_constant_warmup():
    sched = WarmupParamScheduler(ConstantParamScheduler(1.0), 0.1, 0.2, "constant")
    assert sched(0.0) == pytest.approx(0.1)
    assert sched(0.19) == pytest.approx(0.1)
    assert sched(0.5) == pytest.approx(1.0)


def test_multistep_uses_step_count():
    sched = MultiStepParamScheduler([1.0, 0.1, 0.01], num_updates=10, milestones=[3, 7])
    assert [sched(i / 10) for i in range(10)] == pytest.approx(
        [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01]
    )


def test_multistep_last_milestone_is_num_updates():
    # fvcore's form, used by Detectron2's LazyConfig schedules.
    sched = MultiStepParamScheduler([1.0, 0.1, 0.01], milestones=[6, 8, 10])
    assert [sched(i / 10) for i in range(10)] == pytest.approx([1.0] * 6 + [0.1] * 2 + [0.01] * 2)


def test_step_with_fixed_gamma():
    sched = StepWithFixedGammaParamScheduler(1.0, num_decays=2, gamma=0.5, num_updates=9)
    assert [sched(i / 9) for i in range(9)] == pytest.approx(
        [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    )


def test_composite_fixed_and_rescaled():
    sched = CompositeParamScheduler(
        [LinearParamScheduler(0.0, 1.0), CosineParamScheduler(1.0, 0.0)],
        lengths=[0.5, 0.5],
        interval_scaling=["rescaled", "fixed"],
    )
    assert sched(0.25) == pytest.approx(0.5)  # rescaled: local progress 0.5
    assert sched(0.75) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))  # fixed: global


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"values": [1.0, 0.1], "num_updates": 10, "milestones": [3, 5]}, "milestones"),
        ({"values": [1.0, 0.1, 0.01], "num_updates": 10, "milestones": [5, 3]}, "increasing"),
        ({"values": [1.0, 0.1], "num_updates": 4, "milestones": [4]}, "num_updates"),
    ],
)
def test_multistep_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiStepParamScheduler(**kwargs)


def test_bad_warmup_method():
    with pytest.raises(ValueError, match="warmup method 'cubic'"):
        WarmupParamScheduler(ConstantParamScheduler(1.0), 0.1, 0.1, "cubic")


def test_lr_multiplier_resume_is_exact():
    opt_a = _optimizer()
    sched_a = WarmupMultiStepLR(opt_a, [6], warmup_iters=4, max_iter=10)
    lrs_a = _lrs(sched_a, opt_a, 10)

    opt_b = _optimizer()
    sched_b = WarmupMultiStepLR(opt_b, [6], warmup_iters=4, max_iter=10)
    _lrs(sched_b, opt_b, 5)
    state = sched_b.state_dict()
    opt_c = _optimizer()
    sched_c = WarmupMultiStepLR(opt_c, [6], warmup_iters=4, max_iter=10)
    sched_c.load_state_dict(state)
    # load_state_dict restores the position; the LR must be refreshed the way a resume does.
    for group, lr in zip(opt_c.param_groups, sched_c.get_lr()):
        group["lr"] = lr
    assert _lrs(sched_c, opt_c, 5) == pytest.approx(lrs_a[5:])


def test_lr_multiplier_type_error():
    with pytest.raises(TypeError, match="ParamScheduler"):
        LRMultiplier(_optimizer(), multiplier=lambda w: 1.0, max_iter=10)
