"""flatten_to_tuple / schemas round trips and TracingAdapter on nested inputs and outputs."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from torchdet.export import (
    DictSchema,
    InstancesSchema,
    ListSchema,
    TracingAdapter,
    TupleSchema,
    flatten_to_tuple,
)
from torchdet.structures import Boxes, Instances


def _instances() -> Instances:
    inst = Instances((20, 30))
    inst.pred_boxes = Boxes(torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]))
    inst.scores = torch.tensor([0.9, 0.1])
    return inst


def test_round_trip_nested():
    obj = [{"b": torch.ones(2), "a": (torch.zeros(1), _instances())}, torch.arange(3)]
    flat, schema = flatten_to_tuple(obj)
    # dict values in sorted key order; Instances fields sorted, then its image size
    assert len(flat) == 6
    assert torch.equal(flat[0], torch.zeros(1))
    assert torch.equal(flat[1], _instances().pred_boxes.tensor)
    assert torch.equal(flat[3], torch.tensor([20, 30]))
    assert torch.equal(flat[4], torch.ones(2))
    assert isinstance(schema, ListSchema) and isinstance(schema.schemas[0], DictSchema)
    rebuilt = pickle.loads(pickle.dumps(schema))(flat)
    inst = rebuilt[0]["a"][1]
    assert isinstance(rebuilt[0]["a"], tuple)
    assert inst.image_size == (20, 30)
    assert isinstance(inst.pred_boxes, Boxes)
    assert torch.equal(inst.scores, torch.tensor([0.9, 0.1]))
    assert torch.equal(rebuilt[1], torch.arange(3))


def test_empty_instances_and_containers():
    inst = Instances((5, 6))
    inst.scores = torch.zeros(0)
    flat, schema = flatten_to_tuple(([], inst))
    assert isinstance(schema, TupleSchema) and isinstance(schema.schemas[1], InstancesSchema)
    out = schema(flat)
    assert out[0] == [] and len(out[1]) == 0 and out[1].image_size == (5, 6)


def test_schema_rejects_wrong_count_and_keys():
    _, schema = flatten_to_tuple([torch.ones(1), torch.ones(2)])
    with pytest.raises(ValueError, match="got 1 values"):
        schema((torch.ones(1),))
    with pytest.raises(KeyError, match="only dicts with str keys"):
        flatten_to_tuple({1: torch.ones(1)})


class _DictModel(nn.Module):
    def forward(self, inputs):
        x = inputs[0]["image"]
        inst = Instances(tuple(x.shape[-2:]))
        inst.pred_boxes = Boxes(x.flatten()[:4].reshape(1, 4).float())
        inst.scores = x.float().mean().reshape(1)
        return [{"instances": inst, "name": "not a tensor"}]


def test_tracing_adapter_traces_nested_model():
    image = torch.arange(24.0).reshape(1, 4, 6)
    model = _DictModel()
    with pytest.raises(ValueError, match="non-tensor leaves"):
        TracingAdapter(model, ([{"image": image}],))(image)
    adapter = TracingAdapter(model, ([{"image": image}],), allow_non_tensor=True)
    traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
    other = torch.ones(1, 4, 6) * 2
    out = adapter.outputs_schema(traced(other))[0]
    assert out["name"] is None  # dropped non-tensor leaf
    torch.testing.assert_close(out["instances"].scores, torch.tensor([2.0]))
    assert out["instances"].pred_boxes.tensor.tolist() == [[2.0, 2.0, 2.0, 2.0]]


def test_tracing_adapter_rejects_non_tensor_inputs():
    with pytest.raises(ValueError, match="allow_non_tensor"):
        TracingAdapter(nn.Identity(), ({"image": torch.ones(1), "id": 3},))
    adapter = TracingAdapter(
        nn.Identity(),
        ({"image": torch.ones(1), "id": 3},),
        inference_func=lambda m, d: d["image"] * d["id"],
        allow_non_tensor=True,
    )
    assert len(adapter.flattened_inputs) == 1
    assert adapter(torch.full((1,), 2.0))[0].item() == 6.0
    with pytest.raises(ValueError, match="expected 1 input tensors, got 2"):
        adapter(torch.ones(1), torch.ones(1))
