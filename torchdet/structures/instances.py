"""``Instances``: the per-image list of detected or annotated objects, with named fields."""

from __future__ import annotations

import itertools
from typing import Any

import torch

__all__ = ["Instances"]


class Instances:
    """A list of instances in one image, stored as named fields of equal length.

    Fields are set and read as attributes (``instances.gt_boxes = Boxes(...)``) or with
    :meth:`set` / :meth:`get`. Every field must have ``__len__`` and ``__getitem__``; fields
    that also have ``.to()`` (tensors, ``Boxes``, masks ...) move with :meth:`to`. Indexing
    an ``Instances`` indexes every field, e.g. ``instances[instances.scores > 0.5]``.
    """

    def __init__(self, image_size: tuple[int, int], **kwargs: Any):
        """
        Args:
            image_size (height, width): size of the image.
            kwargs: fields to add.
        """
        self._image_size = image_size
        self._fields: dict[str, Any] = {}
        for k, v in kwargs.items():
            self.set(k, v)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the image."""
        return self._image_size

    def __setattr__(self, name: str, val: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, val)
        else:
            self.set(name, val)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails; guard "_fields" against recursion (e.g. while
        # unpickling, before __init__ ran).
        if name == "_fields" or name not in self._fields:
            raise AttributeError(
                f"Cannot find field '{name}' in the given Instances; it has "
                f"{sorted(self.__dict__.get('_fields', {}))}"
            )
        return self._fields[name]

    def set(self, name: str, value: Any) -> None:
        """Set the field ``name``; its length must match the other fields'.

        Raises:
            ValueError: the length of ``value`` differs from the current number of instances.
        """
        try:
            data_len = len(value)
        except TypeError as e:
            raise TypeError(
                f"Instances field '{name}' must have a length, got {type(value).__name__}"
            ) from e
        if self._fields and not (len(self._fields) == 1 and name in self._fields):
            expected = len(self)
            if expected != data_len:
                raise ValueError(
                    f"Adding field '{name}' of length {data_len} to an Instances of length "
                    f"{expected} (fields: {sorted(self._fields)})"
                )
        self._fields[name] = value

    def has(self, name: str) -> bool:
        return name in self._fields

    def remove(self, name: str) -> None:
        if name not in self._fields:
            raise KeyError(f"Instances has no field '{name}'; it has {sorted(self._fields)}")
        del self._fields[name]

    def get(self, name: str) -> Any:
        if name not in self._fields:
            raise KeyError(f"Instances has no field '{name}'; it has {sorted(self._fields)}")
        return self._fields[name]

    def get_fields(self) -> dict[str, Any]:
        """The dict from field names to values (modifying it modifies the Instances)."""
        return self._fields

    def to(self, *args: Any, **kwargs: Any) -> Instances:
        """A new Instances with every field that has ``.to`` converted by it."""
        ret = Instances(self._image_size)
        for k, v in self._fields.items():
            if hasattr(v, "to"):
                v = v.to(*args, **kwargs)
            ret.set(k, v)
        return ret

    def __getitem__(self, item: int | slice | torch.Tensor) -> Instances:
        """Index every field.

        Args:
            item: an int (gives an Instances of length 1), a slice, a bool mask or an index
                tensor.
        """
        if type(item) is int:
            n = len(self)
            if item >= n or item < -n:
                raise IndexError(f"Instances index {item} out of range for length {n}")
            # a slice keeps each field a list of length 1
            item = slice(item, None, n)
        ret = Instances(self._image_size)
        for k, v in self._fields.items():
            ret.set(k, v[item])
        return ret

    def __len__(self) -> int:
        for v in self._fields.values():
            return v.__len__()
        raise NotImplementedError("Empty Instances (with no fields) does not support __len__!")

    def __iter__(self):
        raise NotImplementedError("`Instances` object is not iterable!")

    @staticmethod
    def cat(instance_lists: list[Instances]) -> Instances:
        """Concatenate instances of the same image size, field by field.

        Tensors are concatenated with ``torch.cat``, lists are chained, other field types
        need a ``cat`` classmethod (``Boxes``, ``BitMasks`` ...).
        """
        if not isinstance(instance_lists, (list, tuple)) or len(instance_lists) == 0:
            raise ValueError("Instances.cat expects a non-empty list of Instances")
        for i, inst in enumerate(instance_lists):
            if not isinstance(inst, Instances):
                raise TypeError(
                    f"Instances.cat: element {i} is a {type(inst).__name__}, not Instances"
                )
        if len(instance_lists) == 1:
            return instance_lists[0]

        image_size = instance_lists[0].image_size
        if not isinstance(image_size, torch.Tensor):  # a traced image_size may be a tensor
            for i, inst in enumerate(instance_lists[1:], start=1):
                if inst.image_size != image_size:
                    raise ValueError(
                        f"Instances.cat: element {i} has image_size {inst.image_size}, element 0 "
                        f"has {image_size}"
                    )
        names = set(instance_lists[0]._fields)
        for i, inst in enumerate(instance_lists[1:], start=1):
            if set(inst._fields) != names:
                raise ValueError(
                    f"Instances.cat: element {i} has fields {sorted(inst._fields)}, element 0 has "
                    f"{sorted(names)}"
                )
        ret = Instances(image_size)
        for k in instance_lists[0]._fields:
            values = [inst.get(k) for inst in instance_lists]
            v0 = values[0]
            if isinstance(v0, torch.Tensor):
                values = torch.cat(values, dim=0)
            elif isinstance(v0, list):
                values = list(itertools.chain(*values))
            elif hasattr(type(v0), "cat"):
                values = type(v0).cat(values)
            else:
                raise ValueError(f"Unsupported type {type(v0)} for concatenation of field '{k}'")
            ret.set(k, values)
        return ret

    def __str__(self) -> str:
        s = f"{type(self).__name__}("
        s += f"num_instances={len(self) if self._fields else 0}, "
        s += f"image_height={self._image_size[0]}, "
        s += f"image_width={self._image_size[1]}, "
        s += "fields=[{}])".format(", ".join(f"{k}: {v}" for k, v in self._fields.items()))
        return s

    __repr__ = __str__
