"""A per-instance list of DensePose ground truth that ``Instances`` can index."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .data_relative import DensePoseDataRelative

__all__ = ["DensePoseList"]


class DensePoseList:
    """``gt_densepose`` of one image: one ``DensePoseDataRelative`` or None per instance.

    Indexable like an ``Instances`` field (int, slice, bool mask or index tensor/list).
    """

    def __init__(
        self, densepose_datas: Sequence[DensePoseDataRelative | None], *args, **kwargs
    ) -> None:
        # Extra arguments (the reference passes the boxes and image size) are accepted and
        # unused: the data stay relative to their boxes.
        self.densepose_datas = list(densepose_datas)

    def __len__(self) -> int:
        return len(self.densepose_datas)

    def __iter__(self) -> Iterator[DensePoseDataRelative | None]:
        return iter(self.densepose_datas)

    def __getitem__(self, item):
        if isinstance(item, int):
            return self.densepose_datas[item]
        if isinstance(item, slice):
            return DensePoseList(self.densepose_datas[item])
        index = torch.as_tensor(item)
        if index.dtype == torch.bool:
            if index.numel() != len(self):
                raise IndexError(f"DensePoseList: mask of {index.numel()} for {len(self)} items")
            index = torch.nonzero(index).flatten()
        return DensePoseList([self.densepose_datas[int(i)] for i in index.flatten().tolist()])

    def to(self, device) -> DensePoseList:
        return DensePoseList([d.to(device) if d is not None else None for d in self])

    @staticmethod
    def cat(lists: list[DensePoseList]) -> DensePoseList:
        return DensePoseList([d for lst in lists for d in lst])

    def __repr__(self) -> str:
        return f"DensePoseList(num_instances={len(self)})"
