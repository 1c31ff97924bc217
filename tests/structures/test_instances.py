"""Tests for ``torchdet.structures.Instances``."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from torchdet.structures import Boxes, Instances, Keypoints, PolygonMasks


def _make(n: int = 3, offset: float = 0.0) -> Instances:
    inst = Instances((20, 30))
    inst.pred_boxes = Boxes(torch.arange(n * 4, dtype=torch.float32).view(n, 4) + offset)
    inst.scores = torch.linspace(0.1, 0.9, n) + offset
    inst.names = [f"obj{i + offset:.0f}" for i in range(n)]
    return inst


def test_fields_set_get_has_remove():
    inst = Instances((20, 30), scores=torch.tensor([0.5, 0.7]))
    assert inst.image_size == (20, 30)
    assert len(inst) == 2
    inst.set("classes", torch.tensor([1, 2]))
    assert inst.has("classes") and inst.has("scores") and not inst.has("boxes")
    assert inst.get("classes").tolist() == [1, 2]
    assert inst.classes is inst.get("classes")
    assert set(inst.get_fields()) == {"scores", "classes"}
    inst.remove("classes")
    assert not inst.has("classes")
    with pytest.raises(AttributeError, match="boxes"):
        _ = inst.boxes
    with pytest.raises(KeyError, match="boxes"):
        inst.get("boxes")
    with pytest.raises(KeyError, match="boxes"):
        inst.remove("boxes")


def test_length_mismatch_names_the_field():
    inst = Instances((10, 10), scores=torch.zeros(3))
    with pytest.raises(ValueError, match="'pred_classes' of length 2 .* length 3"):
        inst.pred_classes = torch.zeros(2)
    with pytest.raises(TypeError, match="'weird'"):
        inst.weird = 5
    with pytest.raises(NotImplementedError, match="Empty Instances"):
        len(Instances((1, 1)))


def test_indexing_int_slice_mask_index():
    inst = _make(4)
    one = inst[1]
    assert len(one) == 1 and one.names == ["obj1"]
    assert one.pred_boxes.tensor.tolist() == [[4.0, 5.0, 6.0, 7.0]]
    last = inst[-1]
    assert last.names == ["obj3"]
    with pytest.raises(IndexError, match="out of range"):
        inst[4]
    sliced = inst[1:3]
    assert len(sliced) == 2 and sliced.names == ["obj1", "obj2"]
    assert sliced.image_size == (20, 30)

    no_list = Instances((20, 30), boxes=inst.pred_boxes, scores=inst.scores)
    keep = no_list.scores > 0.5
    picked = no_list[keep]
    assert len(picked) == int(keep.sum())
    torch.testing.assert_close(picked.scores, inst.scores[keep])
    idx = no_list[torch.tensor([3, 0])]
    assert idx.boxes.tensor[:, 0].tolist() == [12.0, 0.0]
    assert len(no_list[torch.zeros(4, dtype=torch.bool)]) == 0


def test_cat():
    a, b = _make(2), _make(3, offset=10.0)
    polys = [[np.array([0, 0, 1, 0, 1, 1.0])]]
    a.masks = PolygonMasks(polys * 2)
    b.masks = PolygonMasks(polys * 3)
    a.kps = Keypoints(torch.zeros(2, 1, 3))
    b.kps = Keypoints(torch.ones(3, 1, 3))
    c = Instances.cat([a, b])
    assert len(c) == 5 and c.image_size == (20, 30)
    assert c.names == a.names + b.names
    torch.testing.assert_close(c.scores, torch.cat([a.scores, b.scores]))
    torch.testing.assert_close(
        c.pred_boxes.tensor, torch.cat([a.pred_boxes.tensor, b.pred_boxes.tensor])
    )
    assert isinstance(c.masks, PolygonMasks) and len(c.masks) == 5
    assert c.kps.tensor[:, 0, 0].tolist() == [0, 0, 1, 1, 1]
    assert Instances.cat([a]) is a


def test_cat_errors():
    a = _make(2)
    with pytest.raises(ValueError, match="non-empty"):
        Instances.cat([])
    other_size = Instances((5, 5), scores=torch.zeros(1))
    with pytest.raises(ValueError, match="image_size"):
        Instances.cat([Instances((20, 30), scores=torch.zeros(2)), other_size])
    with pytest.raises(ValueError, match="fields"):
        Instances.cat([a, Instances((20, 30), scores=torch.zeros(2))])
    with pytest.raises(TypeError, match="element 1"):
        Instances.cat([a, "x"])
    with pytest.raises(ValueError, match="Unsupported type"):
        Instances.cat([Instances((1, 1), t=(1, 2)), Instances((1, 1), t=(3,))])


def test_to_and_repr_and_pickle():
    inst = _make(2)
    moved = inst.to("cpu")
    assert moved is not inst and moved.names == inst.names
    assert isinstance(moved.pred_boxes, Boxes)
    half = Instances((2, 2), x=torch.ones(2)).to(torch.float64)
    assert half.x.dtype == torch.float64
    text = repr(inst)
    assert text.startswith("Instances(num_instances=2, image_height=20, image_width=30")
    assert "scores: tensor" in text and "pred_boxes: Boxes(" in text
    assert (
        repr(Instances((3, 4)))
        == "Instances(num_instances=0, image_height=3, image_width=4, fields=[])"
    )
    restored = pickle.loads(pickle.dumps(inst))
    assert restored.names == inst.names
    with pytest.raises(NotImplementedError, match="not iterable"):
        iter(inst)
