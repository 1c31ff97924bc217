import pytest
import torch

from torchdet.config import get_cfg
from torchdet.solver import (
    build_lr_scheduler,
    build_optimizer,
    get_default_optimizer_params,
    maybe_add_gradient_clipping,
)


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.norm = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 2, bias=False)
        self.frozen = torch.nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def _groups_by_param(groups):
    return {id(p): g for g in groups for p in g["params"]}


def test_default_optimizer_params_norm_and_bias():
    net = _Net()
    groups = get_default_optimizer_params(
        net,
        base_lr=1.0,
        weight_decay=1e-4,
        weight_decay_norm=0.0,
        bias_lr_factor=2.0,
        weight_decay_bias=0.5,
    )
    by_param = _groups_by_param(groups)
    assert by_param[id(net.conv.weight)]["lr"] == 1.0
    assert by_param[id(net.conv.weight)]["weight_decay"] == 1e-4
    assert by_param[id(net.conv.bias)] == {
        **by_param[id(net.conv.bias)],
        "lr": 2.0,
        "weight_decay": 0.5,
    }
    assert by_param[id(net.norm.weight)]["weight_decay"] == 0.0
    # norm bias: the 'bias' override applies after the norm rule
    assert by_param[id(net.norm.bias)]["weight_decay"] == 0.5
    assert id(net.frozen.weight) not in by_param  # frozen parameters are left out
    # identical hyper-parameters are merged into one group
    assert sum(len(g["params"]) for g in groups) == 5
    assert len(groups) == 3


def test_lr_factor_func_and_overrides():
    net = _Net()
    groups = get_default_optimizer_params(
        net,
        base_lr=1.0,
        lr_factor_func=lambda name: 0.1 if name.startswith("conv") else 1.0,
        overrides={"weight": {"weight_decay": 0.3}},
    )
    by_param = _groups_by_param(groups)
    assert by_param[id(net.conv.weight)]["lr"] == pytest.approx(0.1)
    assert by_param[id(net.conv.weight)]["weight_decay"] == 0.3
    assert by_param[id(net.fc.weight)]["lr"] == 1.0


def test_build_optimizer_and_scheduler_from_config():
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.MAX_ITER = 20
    cfg.SOLVER.STEPS = (10, 30)  # 30 > MAX_ITER: ignored with a warning
    cfg.SOLVER.WARMUP_ITERS = 5
    net = _Net()
    opt = build_optimizer(cfg, net)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["momentum"] == cfg.SOLVER.MOMENTUM
    sched = build_lr_scheduler(cfg, opt)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1 * cfg.SOLVER.WARMUP_FACTOR)
    assert lrs[5] == pytest.approx(0.1)
    assert lrs[10] == pytest.approx(0.01)
    assert lrs[19] == pytest.approx(0.01)


def test_unknown_scheduler_name():
    cfg = get_cfg()
    cfg.SOLVER.LR_SCHEDULER_NAME = "Cosine"
    opt = build_optimizer(cfg, _Net())
    with pytest.raises(ValueError, match="WarmupCosineLR"):
        build_lr_scheduler(cfg, opt)


@pytest.mark.parametrize("clip_type", ["value", "norm", "full_model"])
def test_gradient_clipping(clip_type):
    cfg = get_cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = clip_type
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.5
    p = torch.nn.Parameter(torch.zeros(4))
    opt = maybe_add_gradient_clipping(cfg, torch.optim.SGD)([p], lr=1.0)
    p.grad = torch.tensor([3.0, -4.0, 0.0, 0.0])
    opt.step()
    if clip_type == "value":
        expected = torch.tensor([-0.5, 0.5, 0.0, 0.0])
    else:  # norm 5 clipped to 0.5
        expected = -torch.tensor([3.0, -4.0, 0.0, 0.0]) * 0.1
    torch.testing.assert_close(p.detach(), expected, rtol=1e-4, atol=1e-6)


def test_bad_clip_type():
    cfg = get_cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "l3"
    with pytest.raises(ValueError, match="CLIP_TYPE"):
        maybe_add_gradient_clipping(cfg, torch.optim.SGD)
