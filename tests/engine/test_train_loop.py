"""TrainerBase, SimpleTrainer and AMPTrainer on tiny models, in process."""

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from torchdet.data.samplers import TrainingSampler
from torchdet.engine import AMPTrainer, HookBase, SimpleTrainer, TrainerBase
from torchdet.engine.train_loop import get_rng_states, preserve_rng_states, set_rng_states
from torchdet.utils.events import get_event_storage


class LinearLoss(nn.Module):
    """loss_a = mean(w * x), loss_b = 0.5 * mean(w * x) (+ optional bad term)."""

    def __init__(self, bad_at: int | None = None, bad_value: float = math.nan):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))
        self.bad_at, self.bad_value, self.calls = bad_at, bad_value, 0

    def forward(self, batch):
        x = torch.tensor(batch, dtype=torch.float32)
        y = (self.w * x).mean()
        out = {"loss_a": y, "loss_b": 0.5 * y}
        if self.bad_at is not None and self.calls == self.bad_at:
            out["loss_b"] = out["loss_b"] * self.bad_value
        self.calls += 1
        return out


def _stream(batches):
    while True:
        yield from batches


def test_simple_trainer_sgd_steps_and_metrics():
    model = LinearLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(model, _stream([[1.0, 3.0], [2.0, 2.0]]), opt)
    trainer.train(0, 3)
    # d(total)/dw = 1.5 * mean(x) = 3.0 for both batches: w = 1 - 3 * 0.1 * 3
    assert model.w.item() == pytest.approx(0.1)
    hist = trainer.storage.history("total_loss").values()
    # total = 1.5 * w * mean(x) = 3 w, with w = 1.0, 0.7, 0.4 before each step
    assert [round(v, 6) for v, _ in hist] == [3.0, 2.1, 1.2]
    assert [i for _, i in hist] == [0, 1, 2]
    assert trainer.storage.history("loss_a").latest() == pytest.approx(0.8)
    assert trainer.iter == 3  # one past the last iteration after a complete run
    assert "data_time" in trainer.storage.histories()


def test_hook_call_order_and_stop():
    calls = []

    class Recorder(HookBase):
        def before_train(self):
            calls.append("before_train")

        def before_step(self):
            calls.append(f"before_step{self.trainer.iter}")

        def after_backward(self):
            calls.append("after_backward")

        def after_step(self):
            calls.append(f"after_step{self.trainer.iter}")
            if self.trainer.iter == 1:
                self.trainer.request_stop()

        def after_train(self):
            calls.append(f"after_train{self.trainer.iter}")

    model = LinearLoss()
    trainer = SimpleTrainer(model, _stream([[1.0]]), torch.optim.SGD(model.parameters(), lr=0.1))
    trainer.register_hooks([Recorder(), None])
    trainer.train(0, 10)
    assert calls == [
        "before_train",
        "before_step0",
        "after_backward",
        "after_step0",
        "before_step1",
        "after_backward",
        "after_step1",
        "after_train2",
    ]
    with pytest.raises(TypeError, match="HookBase"):
        trainer.register_hooks([object()])


@pytest.mark.parametrize("bad_value", [math.nan, math.inf])
def test_non_finite_loss_stops_with_iteration_and_terms(bad_value):
    model = LinearLoss(bad_at=2, bad_value=bad_value)
    trainer = SimpleTrainer(model, _stream([[1.0]]), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(FloatingPointError) as e:
        trainer.train(0, 5)
    msg = str(e.value)
    assert "iteration=2" in msg
    assert "Non-finite terms: {'loss_b'" in msg and "'loss_a'" not in msg.split("loss_dict")[0]
    # The step with the bad loss did not touch the weights: two SGD steps of 0.1 * 1.5.
    assert model.w.item() == pytest.approx(1.0 - 2 * 0.15)
    assert model.w.grad is None or torch.isfinite(model.w.grad).all()


def test_model_output_and_argument_errors():
    class NotADict(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, batch):
            return [self.p.sum()]

    m = NotADict()
    t = SimpleTrainer(m, _stream([[1.0]]), torch.optim.SGD(m.parameters(), lr=0.1))
    with pytest.raises(TypeError, match="dict of losses"):
        t.train(0, 1)
    with pytest.raises(TypeError, match="Optimizer"):
        SimpleTrainer(m, [], "sgd")
    with pytest.raises(ValueError, match="gather_metric_period"):
        SimpleTrainer(m, [], torch.optim.SGD(m.parameters(), lr=0.1), gather_metric_period=0)


def test_eval_mode_model_is_an_error():
    model = LinearLoss()
    t = SimpleTrainer(model, _stream([[1.0]]), torch.optim.SGD(model.parameters(), lr=0.1))
    model.eval()
    with pytest.raises(RuntimeError, match="eval mode"):
        t.train(0, 1)


def test_trainer_base_state_dict_with_hooks():
    class Counter(HookBase):
        def __init__(self):
            self.n = 0

        def after_step(self):
            self.n += 1

        def state_dict(self):
            return {"n": self.n}

        def load_state_dict(self, sd):
            self.n = sd["n"]

    class Nop(TrainerBase):
        def run_step(self):
            pass

    t = Nop()
    t.register_hooks([Counter()])
    t.train(0, 4)
    sd = t.state_dict()
    assert sd == {"iteration": 4, "hooks": {type(t._hooks[0]).__qualname__: {"n": 4}}}
    t2 = Nop()
    t2.register_hooks([Counter()])
    t2.load_state_dict(sd)
    assert t2.iter == 4 and t2._hooks[0].n == 4
    with pytest.raises(KeyError, match="iteration"):
        t2.load_state_dict({})


def test_rng_state_round_trip_and_preserve():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    states = get_rng_states()
    a = (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn())
    set_rng_states(states)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn()) == a
    set_rng_states(states)
    with preserve_rng_states():
        random.random(), np.random.rand(3), torch.rand(5)
    assert random.random() == a[0]
    # The states are tensors and plain numbers: a checkpoint loads with weights_only=True.
    import io

    buf = io.BytesIO()
    torch.save(states, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    set_rng_states(loaded)
    assert random.random() == a[0]
    with pytest.raises(KeyError, match="numpy"):
        set_rng_states({"python": states["python"], "torch": states["torch"]})


class _ListDataset(torch.utils.data.IterableDataset):
    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self):
        for i in self.sampler:
            yield float(i)


def test_state_dict_holds_sampler_position_and_resumes_stream():
    sampler = TrainingSampler(10, seed=3)
    loader = torch.utils.data.DataLoader(_ListDataset(sampler), batch_size=2, collate_fn=list)
    model = LinearLoss()
    t = SimpleTrainer(model, loader, torch.optim.SGD(model.parameters(), lr=0.0))
    seen = []
    t.register_hooks([_BatchSpy(seen)])
    t.train(0, 3)
    sd = t.state_dict()
    assert sd["data_loader"] == {"sampler": {"seed": 3, "num_yielded": 6}}
    assert len(sd["rng_states"]) == 1 and "optimizer" in sd

    sampler2 = TrainingSampler(10, seed=99)  # the checkpoint's seed wins
    loader2 = torch.utils.data.DataLoader(_ListDataset(sampler2), batch_size=2, collate_fn=list)
    model2 = LinearLoss()
    t2 = SimpleTrainer(model2, loader2, torch.optim.SGD(model2.parameters(), lr=0.0))
    t2.load_state_dict(sd)
    seen2 = []
    t2.register_hooks([_BatchSpy(seen2)])
    t2.train(3, 5)
    full = list(__import__("itertools").islice(iter(TrainingSampler(10, seed=3)), 10))
    assert seen + seen2 == [full[i : i + 2] for i in range(0, 10, 2)]


class _BatchSpy(HookBase):
    """Record the batches the trainer consumed (through the model's inputs)."""

    def __init__(self, out):
        self.out = out

    def before_train(self):
        model = self.trainer.model
        orig = model.forward

        def spy(batch):
            self.out.append([int(x) for x in batch])
            return orig(batch)

        model.forward = spy


def test_amp_trainer_cpu_bf16():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 1)

        def forward(self, batch):
            x = torch.stack(batch)
            out = self.fc(x)
            get_event_storage().put_scalar("out_dtype_is_bf16", float(out.dtype == torch.bfloat16))
            return {"loss": out.float().pow(2).mean()}

    torch.manual_seed(0)
    model = Net()
    data = [[torch.ones(4), torch.full((4,), 2.0)]]
    t = AMPTrainer(model, _stream(data), torch.optim.SGD(model.parameters(), lr=0.01))
    assert t.precision == torch.bfloat16 and t.grad_scaler is None  # no scaler needed for bf16
    w0 = model.fc.weight.detach().clone()
    t.train(0, 2)
    assert t.storage.history("out_dtype_is_bf16").latest() == 1.0
    assert not torch.equal(model.fc.weight, w0)
    assert model.fc.weight.dtype == torch.float32  # master weights stay fp32
    with pytest.raises(ValueError, match="precision"):
        AMPTrainer(model, [], torch.optim.SGD(model.parameters(), lr=0.1), precision=torch.int8)


def test_amp_fp16_cpu_uses_grad_scaler_state():
    model = nn.Linear(2, 1)
    t = AMPTrainer(model, [], torch.optim.SGD(model.parameters(), lr=0.1), precision=torch.float16)
    assert t.grad_scaler is not None
    sd = t.state_dict()
    assert "grad_scaler" in sd


@pytest.mark.parametrize(
    ("grouping", "workers", "case", "message"),
    [
        (True, 0, "torchdet", None),  # grouping buckets are checkpointed
        (False, 2, "torchdet", None),  # items are seeded by stream position
        (True, 2, "torchdet", None),
        (False, 0, "torchdet", None),
        (True, 0, "old checkpoint", "aspect-ratio grouping"),  # no grouping state saved
        (False, 1, "plain DataLoader", "DataLoader workers"),  # workers' generators unsaved
    ],
)
def test_resume_warns_when_the_stream_cannot_be_exact(caplog, grouping, workers, case, message):
    from torchdet.data import DatasetFromList
    from torchdet.data.build import build_batch_data_loader

    items = [{"width": 2 + i % 2, "height": 2, "v": float(i)} for i in range(8)]
    if case == "plain DataLoader":
        loader = torch.utils.data.DataLoader(
            DatasetFromList(items, copy=False),
            batch_size=2,
            sampler=TrainingSampler(8, seed=0),
            num_workers=workers,
            collate_fn=lambda b: b,
        )
    else:
        loader = build_batch_data_loader(
            DatasetFromList(items, copy=False),
            TrainingSampler(8, seed=0),
            2,
            aspect_ratio_grouping=grouping,
            num_workers=workers,
        )
    model = LinearLoss()
    t = SimpleTrainer(model, loader, torch.optim.SGD(model.parameters(), lr=0.1))
    assert t._sampler is not None  # found through the loader's wrappers
    state = t.state_dict()
    assert ("grouping" in state["data_loader"]) == grouping
    if case == "old checkpoint":
        del state["data_loader"]["grouping"]
    with caplog.at_level("WARNING", logger="torchdet.engine.train_loop"):
        t.load_state_dict(state)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if message is None:
        assert warnings == []
    else:
        assert any(message in w for w in warnings)
