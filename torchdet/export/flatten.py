"""Flatten nested model inputs/outputs (lists, tuples, dicts, ``Instances``, ``Boxes``) to a tuple
of tensors and back, so that tracers (``torch.jit.trace``, ``torch.onnx.export``) can handle
models whose interface is Detectron2's list-of-dicts.

:func:`flatten_to_tuple` returns the tensors and a *schema*: a small picklable object that rebuilds
the original structure from a tuple of (possibly new) tensors. :class:`TracingAdapter` wraps a
model so that its forward takes and returns flat tuples, and records the schema of the outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from torchdet.structures import Boxes, Instances
from torchdet.utils.registry import locate

__all__ = [
    "DictSchema",
    "FlattenedSchema",
    "IdentitySchema",
    "InstancesSchema",
    "ListSchema",
    "TensorWrapSchema",
    "TracingAdapter",
    "TupleSchema",
    "flatten_to_tuple",
]


class FlattenedSchema:
    """Rebuilds an object from the flat tuple of tensors :func:`flatten_to_tuple` produced."""

    def __call__(self, values: tuple) -> Any:
        raise NotImplementedError


@dataclass
class ListSchema(FlattenedSchema):
    """A list: ``sizes[i]`` flat values belong to element i, rebuilt by ``schemas[i]``."""

    schemas: list[FlattenedSchema]
    sizes: list[int]

    def _split(self, values: tuple) -> list:
        values = tuple(values)
        if len(values) != sum(self.sizes):
            raise ValueError(
                f"{type(self).__name__}: got {len(values)} values, the schema holds "
                f"{sum(self.sizes)} ({self.sizes})"
            )
        out, start = [], 0
        for schema, size in zip(self.schemas, self.sizes):
            out.append(schema(values[start : start + size]))
            start += size
        return out

    def __call__(self, values: tuple) -> list:
        return self._split(values)

    @classmethod
    def flatten(cls, obj) -> tuple[tuple, FlattenedSchema]:
        parts = [flatten_to_tuple(x) for x in obj]
        values = tuple(v for p in parts for v in p[0])
        return values, cls([p[1] for p in parts], [len(p[0]) for p in parts])


@dataclass
class TupleSchema(ListSchema):
    """A tuple (same layout as :class:`ListSchema`)."""

    def __call__(self, values: tuple) -> tuple:
        return tuple(self._split(values))


@dataclass
class IdentitySchema(FlattenedSchema):
    """A single tensor (or, with ``allow_non_tensor``, any leaf value)."""

    def __call__(self, values: tuple) -> Any:
        return values[0]

    @classmethod
    def flatten(cls, obj) -> tuple[tuple, FlattenedSchema]:
        return (obj,), cls()


@dataclass
class DictSchema(ListSchema):
    """A dict with string keys; values in sorted key order."""

    keys: list[str] = None  # type: ignore[assignment]

    def __call__(self, values: tuple) -> dict:
        return dict(zip(self.keys, self._split(values)))

    @classmethod
    def flatten(cls, obj: dict) -> tuple[tuple, FlattenedSchema]:
        for k in obj:
            if not isinstance(k, str):
                raise KeyError(
                    f"flatten_to_tuple: only dicts with str keys can be flattened, got {k!r}"
                )
        keys = sorted(obj)
        values, schema = ListSchema.flatten([obj[k] for k in keys])
        return values, cls(schema.schemas, schema.sizes, keys)


@dataclass
class InstancesSchema(DictSchema):
    """An ``Instances``: its fields as a dict, plus ``image_size`` as the last flat value."""

    def __call__(self, values: tuple) -> Instances:
        image_size = values[-1]
        fields = super().__call__(values[:-1])
        if isinstance(image_size, torch.Tensor):
            # Under tracing the size is a tensor; keep it a tensor so the graph stays dynamic.
            image_size = (
                (image_size[0], image_size[1])
                if torch.jit.is_tracing()
                else (
                    int(image_size[0]),
                    int(image_size[1]),
                )
            )
        return Instances(tuple(image_size), **fields)

    @classmethod
    def flatten(cls, obj: Instances) -> tuple[tuple, FlattenedSchema]:
        values, schema = DictSchema.flatten(obj.get_fields())
        size = obj.image_size
        if isinstance(size, torch.Tensor):
            size = size.reshape(2)
        elif any(isinstance(v, torch.Tensor) for v in size):
            # traced sizes: stack them so the output follows the input's size
            size = torch.stack([torch.as_tensor(v).reshape(()) for v in size])
        else:
            size = torch.tensor([int(size[0]), int(size[1])])
        return values + (size,), cls(schema.schemas, schema.sizes, schema.keys)


@dataclass
class TensorWrapSchema(FlattenedSchema):
    """A class holding one tensor as ``.tensor`` (``Boxes``, ``RotatedBoxes``), by full name."""

    class_name: str

    def __call__(self, values: tuple) -> Any:
        return locate(self.class_name)(values[0])

    @classmethod
    def flatten(cls, obj) -> tuple[tuple, FlattenedSchema]:
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        return (obj.tensor,), cls(name)


def _is_tensor_wrap(obj: Any) -> bool:
    if isinstance(obj, Boxes):
        return True
    # RotatedBoxes and other single-tensor structures of torchdet.structures
    return type(obj).__module__.startswith("torchdet.structures") and isinstance(
        getattr(obj, "tensor", None), torch.Tensor
    )


def flatten_to_tuple(obj: Any) -> tuple[tuple, FlattenedSchema]:
    """Flatten ``obj`` into a tuple of leaves and the schema that rebuilds it.

    Supports tensors, str/bytes (kept as leaves), lists, tuples, str-keyed dicts, ``Instances``
    and single-tensor structures such as ``Boxes``. Other leaves (ints, floats, None) are kept
    as-is; :class:`TracingAdapter` rejects them unless ``allow_non_tensor``.

    Returns:
        (tuple, FlattenedSchema): the leaves and a callable with ``schema(leaves) == obj``.
    """
    if isinstance(obj, Instances):
        return InstancesSchema.flatten(obj)
    if _is_tensor_wrap(obj):
        return TensorWrapSchema.flatten(obj)
    if isinstance(obj, dict):
        return DictSchema.flatten(obj)
    if isinstance(obj, tuple):
        return TupleSchema.flatten(obj)
    if isinstance(obj, list):
        return ListSchema.flatten(obj)
    return IdentitySchema.flatten(obj)


class TracingAdapter(nn.Module):
    """Make a model with nested inputs/outputs traceable: forward takes the flattened input
    tensors and returns a flat tuple of output tensors.

    Example::

        adapter = TracingAdapter(model, [{"image": image}], inference_func)
        traced = torch.jit.trace(adapter, adapter.flattened_inputs)
        outputs = adapter.outputs_schema(traced(*adapter.flattened_inputs))

    Args:
        model: the model to wrap.
        inputs: one sample of the model's inputs (anything :func:`flatten_to_tuple` handles),
            passed as a single positional argument; a tuple is unpacked into several arguments.
        inference_func: ``f(model, *inputs) -> outputs``; by default ``model(*inputs)``.
        allow_non_tensor: keep non-tensor leaves of the inputs fixed to their sample values and of
            the outputs dropped (instead of raising ``ValueError``).

    Attributes:
        flattened_inputs (tuple[Tensor]): the sample inputs, flattened.
        inputs_schema, outputs_schema: rebuild inputs/outputs from flat tuples
            (``outputs_schema`` is set by the first forward).
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: Any,
        inference_func: Callable | None = None,
        allow_non_tensor: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        self.model = model
        # Exporters restore the wrapper's mode afterwards: start in the model's mode so that
        # they do not switch the model to training.
        self.train(model.training)
        if not isinstance(inputs, tuple):
            inputs = (inputs,)
        self.inputs = inputs
        self.allow_non_tensor = allow_non_tensor
        self.inference_func = inference_func or (lambda model, *x: model(*x))
        self.flattened_inputs, self.inputs_schema = flatten_to_tuple(inputs)
        self._tensor_positions = [
            i for i, x in enumerate(self.flattened_inputs) if isinstance(x, torch.Tensor)
        ]
        if len(self._tensor_positions) != len(self.flattened_inputs):
            if not allow_non_tensor:
                bad = [
                    type(x).__name__
                    for x in self.flattened_inputs
                    if not isinstance(x, torch.Tensor)
                ]
                raise ValueError(
                    f"TracingAdapter: inputs contain non-tensor leaves {bad}; tracing would freeze "
                    "them. Pass allow_non_tensor=True to keep them fixed."
                )
            self._fixed_inputs = self.flattened_inputs
            self.flattened_inputs = tuple(self.flattened_inputs[i] for i in self._tensor_positions)
        self.outputs_schema: FlattenedSchema | None = None

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(args) != len(self.flattened_inputs):
            raise ValueError(
                f"TracingAdapter: expected {len(self.flattened_inputs)} input tensors, got "
                f"{len(args)}"
            )
        if len(self._tensor_positions) != len(self.inputs_schema_values()):
            full = list(self._fixed_inputs)
            for pos, value in zip(self._tensor_positions, args):
                full[pos] = value
            args = tuple(full)
        with torch.no_grad():
            inputs = self.inputs_schema(args)
            outputs = self.inference_func(self.model, *inputs)
        flat, schema = flatten_to_tuple(outputs)
        keep = [i for i, x in enumerate(flat) if isinstance(x, torch.Tensor)]
        if len(keep) != len(flat):
            if not self.allow_non_tensor:
                bad = [type(x).__name__ for x in flat if not isinstance(x, torch.Tensor)]
                raise ValueError(
                    f"TracingAdapter: outputs contain non-tensor leaves {bad}; pass "
                    "allow_non_tensor=True to drop them"
                )
            schema = _DropNonTensorSchema(schema, keep, len(flat))
            flat = tuple(flat[i] for i in keep)
        if self.outputs_schema is None:
            self.outputs_schema = schema
        return flat

    def inputs_schema_values(self) -> tuple:
        return getattr(self, "_fixed_inputs", self.flattened_inputs)


@dataclass
class _DropNonTensorSchema(FlattenedSchema):
    """Outputs schema when non-tensor leaves were dropped: they come back as None."""

    inner: FlattenedSchema
    keep: list[int]
    num_total: int

    def __call__(self, values: tuple) -> Any:
        full: list[Any] = [None] * self.num_total
        for pos, value in zip(self.keep, values):
            full[pos] = value
        return self.inner(tuple(full))
