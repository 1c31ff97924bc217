"""The training hooks, on tiny models in process."""

import json
import math
import os

import pytest
import torch
from torch import nn

from torchdet.checkpoint import Checkpointer
from torchdet.engine import SimpleTrainer, hooks
from torchdet.solver import LRMultiplier, MultiStepParamScheduler
from torchdet.utils.events import JSONWriter


class QuadModel(nn.Module):
    """loss = (w - target)^2 with batch = target; optional dropout draws torch randomness."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.0))

    def forward(self, batch):
        target = torch.tensor(float(batch[0]))
        return {"loss": (self.w - target) ** 2}


def _stream(value=1.0):
    while True:
        yield [value]


def _trainer(lr=0.1, model=None):
    model = model or QuadModel()
    return SimpleTrainer(model, _stream(), torch.optim.SGD(model.parameters(), lr=lr))


def test_callback_hook_and_iteration_timer():
    seen = []
    t = _trainer()
    t.register_hooks(
        [
            hooks.IterationTimer(warmup_iter=1),
            hooks.CallbackHook(after_step=lambda tr: seen.append(tr.iter)),
        ]
    )
    t.train(0, 4)
    assert seen == [0, 1, 2, 3]
    times = t.storage.history("time").values()
    assert [i for _, i in times] == [0, 1, 2, 3]  # warmup 1: iterations from the first on
    assert all(v >= 0 for v, _ in times)


def test_lr_scheduler_hook_logs_and_steps():
    model = QuadModel()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = LRMultiplier(
        opt, MultiStepParamScheduler([1.0, 0.1], num_updates=4, milestones=[2]), max_iter=4
    )
    t = SimpleTrainer(model, _stream(), opt)
    hook = hooks.LRScheduler(opt, sched)
    t.register_hooks([hook])
    t.train(0, 4)
    lrs = [v for v, _ in t.storage.history("lr").values()]
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1])
    assert hook.state_dict()["last_epoch"] == 4


def test_lr_scheduler_best_param_group():
    p = [nn.Parameter(torch.zeros(1)) for _ in range(4)]
    opt = torch.optim.SGD([{"params": p[:1], "lr": 1.0}, {"params": p[1:], "lr": 0.5}], lr=0.1)
    assert hooks.LRScheduler.get_best_param_group_id(opt) == 1  # the largest group
    opt2 = torch.optim.SGD([{"params": [q], "lr": lr} for q, lr in zip(p, [1, 2, 2, 3])], lr=0.1)
    assert hooks.LRScheduler.get_best_param_group_id(opt2) == 1  # the most common LR


def test_periodic_writer_and_json(tmp_path):
    t = _trainer()
    path = tmp_path / "metrics.json"
    t.register_hooks([hooks.PeriodicWriter([JSONWriter(str(path))], period=2)])
    t.train(0, 5)
    iters = [json.loads(x)["iteration"] for x in path.read_text().splitlines()]
    assert iters == [1, 3, 4]  # every 2 iterations and the last one
    with pytest.raises(TypeError, match="EventWriter"):
        hooks.PeriodicWriter([object()])


def test_periodic_checkpointer_hook(tmp_path):
    t = _trainer()
    ckpt = Checkpointer(t.model, str(tmp_path), optimizer=t.optimizer)
    t.register_hooks([hooks.PeriodicCheckpointer(ckpt, period=2, max_to_keep=1)])
    t.train(0, 5)
    files = sorted(os.listdir(tmp_path))
    assert "model_final.pth" in files and "model_0000003.pth" in files
    assert "model_0000001.pth" not in files  # max_to_keep=1
    loaded = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert loaded["iteration"] == 4


def test_eval_hook_period_and_after_train():
    calls = []

    def evaluate():
        calls.append(t.iter)
        return {"bbox": {"AP": 10.0 * len(calls)}}

    t = _trainer()
    t.register_hooks([hooks.EvalHook(2, evaluate)])
    t.train(0, 6)
    # iterations 1 and 3 (after_step), then after training (the last period is not doubled)
    assert calls == [1, 3, 6]
    assert t.storage.latest()["bbox/AP"] == (30.0, 6)


def test_eval_hook_bad_results():
    t = _trainer()
    t.register_hooks([hooks.EvalHook(1, lambda: {"a": "not a number"})])
    with pytest.raises(ValueError, match="nested dict of float"):
        t.train(0, 2)


def test_eval_hook_keeps_rng_untouched():
    def noisy_eval():
        torch.rand(100)
        return {}

    torch.manual_seed(0)
    t = _trainer()
    t.register_hooks([hooks.EvalHook(1, noisy_eval)])
    t.train(0, 2)
    after_with_eval = torch.rand(1)
    torch.manual_seed(0)
    _trainer().train(0, 2)
    assert torch.equal(torch.rand(1), after_with_eval)


def test_best_checkpointer(tmp_path):
    values = iter([1.0, 3.0, 2.0])
    t = _trainer()
    ckpt = Checkpointer(t.model, str(tmp_path))
    best = hooks.BestCheckpointer(1, ckpt, "ap", mode="max")
    t.register_hooks(
        [
            hooks.CallbackHook(after_step=lambda tr: tr.storage.put_scalar("ap", next(values))),
            best,
        ]
    )
    t.train(0, 3)
    assert best.best_metric == 3.0 and best.best_iter == 1
    assert torch.load(tmp_path / "model_best.pth", weights_only=True)["iteration"] == 1
    with pytest.raises(ValueError, match="mode"):
        hooks.BestCheckpointer(1, ckpt, "ap", mode="up")


def test_validation_loss_and_early_stopping():
    # Validation target 5: training towards 1 first improves (w: 0 -> 1), then stalls.
    t = _trainer(lr=0.25)
    val = hooks.ValidationLoss(period=1, data_loader=[[5.0]], num_batches=2)
    stop = hooks.EarlyStopping("val_total_loss", patience=1, mode="min")
    t.register_hooks([val, stop])
    t.train(0, 50)
    hist = [v for v, _ in t.storage.history("val_loss").values()]
    # w after step k: 1 - 0.5^k (lr 0.25 halves the distance to 1); val loss (5 - w)^2
    assert hist[:3] == pytest.approx([(5 - 0.5) ** 2, (5 - 0.75) ** 2, (5 - 0.875) ** 2])
    assert t.storage.history("val_total_loss").latest() == hist[-1]
    # It stops once the loss improves by no more than min_delta... with min_delta=0 it keeps
    # improving in float until w == 1 exactly; then two checks without improvement stop it.
    assert t.iter < 49
    assert stop.num_bad == 2
    assert stop.best == pytest.approx(16.0)


def test_early_stopping_max_mode_and_state():
    values = iter([1.0, 2.0, 2.0, 1.5, 9.0, 9.0])
    t = _trainer()
    stop = hooks.EarlyStopping("ap", patience=1, mode="max", min_delta=0.1)
    t.register_hooks(
        [hooks.CallbackHook(after_step=lambda tr: tr.storage.put_scalar("ap", next(values))), stop]
    )
    t.train(0, 6)
    assert t.iter == 4  # stopped after iteration 3 (2 checks without improvement), then +1
    assert stop.state_dict() == {"best": 2.0, "best_iter": 1, "num_bad": 2, "last_seen_iter": 3}
    with pytest.raises(ValueError, match="mode"):
        hooks.EarlyStopping("ap", 1, mode="down")


class BNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(1, momentum=0.5)
        self.w = nn.Parameter(torch.tensor(1.0))

    def forward(self, batch):
        x = torch.tensor(batch, dtype=torch.float32).reshape(-1, 1)
        return {"loss": (self.bn(x) * self.w).pow(2).mean()}


def test_precise_bn_exact_average():
    batches = [[0.0, 2.0], [4.0, 6.0], [1.0, 3.0]]  # means 1, 5, 2; unbiased vars 2, 2, 2
    model = BNModel()
    hooks.update_bn_stats(model, batches, num_iters=3)
    assert model.bn.running_mean.item() == pytest.approx(8.0 / 3)
    assert model.bn.running_var.item() == pytest.approx(2.0)
    assert model.bn.momentum == 0.5  # restored
    with pytest.raises(ValueError, match="3 iterations"):
        hooks.update_bn_stats(model, batches, num_iters=4)
    assert hooks.get_bn_modules(QuadModel()) == []


def test_precise_bn_hook_runs_at_end():
    model = BNModel()

    def pairs():
        while True:
            yield [1.0, 2.0]

    t = SimpleTrainer(model, pairs(), torch.optim.SGD(model.parameters(), lr=0.0))
    t.register_hooks([hooks.PreciseBN(0, model, [[0.0, 2.0], [4.0, 6.0]], num_iter=2)])
    t.train(0, 2)
    assert model.bn.running_mean.item() == pytest.approx(3.0)


def test_torch_profiler_writes_trace(tmp_path):
    t = _trainer()
    t.register_hooks([hooks.TorchProfiler(lambda tr: tr.iter == 1, str(tmp_path))])
    t.train(0, 3)
    assert os.listdir(tmp_path) == ["profiler-trace-iter1.json"]
    assert "traceEvents" in (tmp_path / "profiler-trace-iter1.json").read_text()[:2000]


def test_memory_stats_noop_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("checks the CPU no-op")
    t = _trainer()
    t.register_hooks([hooks.TorchMemoryStats(period=1)])
    t.train(0, 2)
    assert "max_reserved_mem" not in t.storage.histories()
    assert math.isfinite(t.model.w.item())


def test_autograd_profiler_writes_trace(tmp_path):
    t = _trainer()
    t.register_hooks(
        [hooks.AutogradProfiler(lambda tr: tr.iter == 0, str(tmp_path), use_cuda=False)]
    )
    t.train(0, 2)
    assert os.listdir(tmp_path) == ["profiler-trace-iter0.json"]


def test_lr_scheduler_hook_wraps_param_scheduler():
    from torchdet.solver import CosineParamScheduler

    model = QuadModel()
    opt = torch.optim.SGD(model.parameters(), lr=2.0)
    t = SimpleTrainer(model, _stream(), opt)
    t.register_hooks([hooks.LRScheduler(opt, CosineParamScheduler(1.0, 0.0))])
    t.train(0, 4)
    lrs = [v for v, _ in t.storage.history("lr").values()]
    # 2 * 0.5 * (1 + cos(pi * it / 4))
    expected = [2 * 0.5 * (1 + math.cos(math.pi * it / 4)) for it in range(4)]
    assert lrs == pytest.approx(expected)
