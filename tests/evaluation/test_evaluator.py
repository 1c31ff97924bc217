"""inference_on_dataset, inference_context and DatasetEvaluators."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchdet.evaluation import (
    DatasetEvaluator,
    DatasetEvaluators,
    inference_context,
    inference_on_dataset,
)


class _Counter(DatasetEvaluator):
    def __init__(self, task: str = "count"):
        self.task = task
        self.reset_calls = 0

    def reset(self):
        self.reset_calls += 1
        self.seen = []

    def process(self, inputs, outputs):
        self.seen.extend(o["value"] for o in outputs)

    def evaluate(self):
        return {self.task: {"n": len(self.seen), "sum": sum(self.seen)}}


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.modes = []

    def forward(self, batch):
        self.modes.append((self.training, torch.is_inference_mode_enabled()))
        return [{"value": float(self.scale * x["x"])} for x in batch]


def test_inference_on_dataset_runs_all_batches_and_restores_mode():
    model = _Model().train()
    loader = [[{"x": 1.0}, {"x": 2.0}], [{"x": 3.0}]] * 4  # 8 batches, 12 images
    ev = _Counter()
    res = inference_on_dataset(model, loader, ev)
    assert res == {"count": {"n": 12, "sum": 2.0 * 6 * 4}}
    assert ev.reset_calls == 1
    assert all(m == (False, True) for m in model.modes)  # eval mode, inference mode
    assert model.training  # restored


def test_inference_on_dataset_list_and_none_evaluators():
    model = _Model().eval()
    loader = [[{"x": 1.0}]]
    res = inference_on_dataset(model, loader, [_Counter("a"), _Counter("b")])
    assert res == {"a": {"n": 1, "sum": 2.0}, "b": {"n": 1, "sum": 2.0}}
    assert inference_on_dataset(model, loader, None) == {}
    assert not model.training
    # an empty loader still evaluates
    assert inference_on_dataset(model, [], _Counter()) == {"count": {"n": 0, "sum": 0}}


def test_inference_on_dataset_bad_arguments():
    with pytest.raises(TypeError, match="evaluator must be"):
        inference_on_dataset(_Model(), [], "coco")
    with pytest.raises(TypeError, match="model must be callable"):
        inference_on_dataset(3, [], None)


def test_inference_context_restores_on_error():
    model = _Model().train()
    with pytest.raises(RuntimeError), inference_context(model):
        assert not model.training
        raise RuntimeError("boom")
    assert model.training


def test_dataset_evaluators_duplicate_task_and_type_check():
    evs = DatasetEvaluators([_Counter("a"), _Counter("a")])
    evs.reset()
    with pytest.raises(KeyError, match="'a'"):
        evs.evaluate()
    with pytest.raises(TypeError, match=r"evaluators\[1\]"):
        DatasetEvaluators([_Counter(), object()])
