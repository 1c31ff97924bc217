"""Instance masks: full-image bitmasks, COCO-style polygons, and per-ROI mask predictions.

Shape shorthand:
    N: number of instances
    H, W: image height and width
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
import torch
from torch import Tensor, device

from .boxes import Boxes

__all__ = [
    "BitMasks",
    "PolygonMasks",
    "ROIMasks",
    "polygon_area",
    "polygons_to_bitmask",
    "rasterize_polygons_within_box",
]


def polygon_area(x: np.ndarray, y: np.ndarray) -> float:
    """Area of a simple polygon by the shoelace formula.

    Args:
        x, y (np.ndarray[K]): vertex coordinates.
    """
    return 0.5 * np.abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def polygons_to_bitmask(polygons: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Rasterise the polygons of one instance with pycocotools (their union).

    Args:
        polygons (list[np.ndarray]): each a flat array [x0, y0, x1, y1, ...] in absolute
            pixel coordinates.
        height, width (int): size of the mask.

    Returns:
        np.ndarray[height, width] bool.
    """
    if len(polygons) == 0:
        # pycocotools does not handle an empty list of polygons
        return np.zeros((height, width), dtype=bool)
    rles = mask_util.frPyObjects([np.asarray(p, dtype=np.float64) for p in polygons], height, width)
    rle = mask_util.merge(rles)
    return mask_util.decode(rle).astype(bool)


def rasterize_polygons_within_box(
    polygons: list[np.ndarray], box: np.ndarray, mask_size: int
) -> Tensor:
    """Rasterise the polygons of one instance into a ``mask_size x mask_size`` grid over ``box``.

    Equivalent to rasterising the full-image mask, cropping it to ``box`` and resizing, but
    without the aliasing of the resize: the polygons are transformed into the box's frame and
    rasterised directly (Mask R-CNN's mask targets).

    Args:
        polygons (list[np.ndarray]): each a flat array [x0, y0, x1, y1, ...].
        box (np.ndarray[4]): x0, y0, x1, y1.
        mask_size (int): output side.

    Returns:
        Tensor[mask_size, mask_size] bool.
    """
    w, h = box[2] - box[0], box[3] - box[1]
    polygons = copy.deepcopy(polygons)
    for p in polygons:
        p[0::2] = p[0::2] - box[0]
        p[1::2] = p[1::2] - box[1]
    # Tiny boxes are treated as 0.1 px wide/high, which bounds the scale factor.
    ratio_h = mask_size / max(h, 0.1)
    ratio_w = mask_size / max(w, 0.1)
    if ratio_h == ratio_w:
        for p in polygons:
            p *= ratio_h
    else:
        for p in polygons:
            p[0::2] *= ratio_w
            p[1::2] *= ratio_h
    return torch.from_numpy(polygons_to_bitmask(polygons, mask_size, mask_size))


class BitMasks:
    """One full-image bitmask per instance, stored as a ``Tensor[N, H, W]`` of bool.

    Attributes:
        tensor (Tensor[N, H, W] bool).
        image_size (tuple[int, int]): (H, W).
    """

    def __init__(self, tensor: Tensor | np.ndarray):
        """
        Args:
            tensor (Tensor[N, H, W] or np.ndarray): masks, converted to bool.
        """
        if isinstance(tensor, Tensor):
            tensor = tensor.to(torch.bool)
        else:
            tensor = torch.as_tensor(tensor, dtype=torch.bool, device=torch.device("cpu"))
        if tensor.dim() != 3:
            raise ValueError(f"BitMasks expects a Tensor[N, H, W], got shape {tuple(tensor.shape)}")
        self.image_size = tensor.shape[1:]
        self.tensor = tensor

    def to(self, *args: Any, **kwargs: Any) -> BitMasks:
        return BitMasks(self.tensor.to(*args, **kwargs))

    @property
    def device(self) -> device:
        return self.tensor.device

    def __getitem__(self, item: int | slice | Tensor) -> BitMasks:
        """Index with an int (gives 1 mask), a slice, a bool mask or an index tensor."""
        if isinstance(item, int):
            return BitMasks(self.tensor[item].unsqueeze(0))
        m = self.tensor[item]
        if m.dim() != 3:
            raise IndexError(
                f"Indexing on BitMasks with {item} returns a tensor with shape {tuple(m.shape)}!"
            )
        return BitMasks(m)

    def __iter__(self) -> Iterator[Tensor]:
        yield from self.tensor

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_instances={len(self.tensor)})"

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def nonempty(self) -> Tensor:
        """Tensor[N] bool: masks with at least one pixel set."""
        return self.tensor.flatten(1).any(dim=1)

    def area(self) -> Tensor:
        """Tensor[N] int64: number of pixels in each mask."""
        return self.tensor.flatten(1).sum(dim=1)

    @staticmethod
    def from_polygon_masks(
        polygon_masks: PolygonMasks | list[list[np.ndarray]], height: int, width: int
    ) -> BitMasks:
        """Rasterise polygon masks into ``height x width`` bitmasks."""
        if isinstance(polygon_masks, PolygonMasks):
            polygon_masks = polygon_masks.polygons
        masks = [polygons_to_bitmask(p, height, width) for p in polygon_masks]
        if len(masks) == 0:
            return BitMasks(torch.empty(0, height, width, dtype=torch.bool))
        return BitMasks(torch.stack([torch.from_numpy(x) for x in masks]))

    @staticmethod
    def from_roi_masks(
        roi_masks: ROIMasks, height: int, width: int, *, boxes: Tensor | Boxes
    ) -> BitMasks:
        """Paste per-ROI masks into ``height x width`` bitmasks (see :meth:`ROIMasks.to_bitmasks`).

        Detectron2's version omits the boxes the masks belong to, which pasting needs; here they
        are a required keyword.
        """
        return roi_masks.to_bitmasks(boxes, height, width)

    def crop_and_resize(self, boxes: Tensor, mask_size: int) -> Tensor:
        """Crop each mask to its box and resize it to ``mask_size x mask_size``.

        Uses ROIAlign (aligned, adaptive sampling) on the masks as floats, then thresholds at
        0.5, as Detectron2 does.

        Args:
            boxes (Tensor[N, 4]): one box per mask, x0, y0, x1, y1.
            mask_size (int): output side.

        Returns:
            Tensor[N, mask_size, mask_size] bool.
        """
        from torchdet.layers import ROIAlign  # lazy: structures must import without it

        if isinstance(boxes, Boxes):
            boxes = boxes.tensor
        if len(boxes) != len(self):
            raise ValueError(
                f"BitMasks.crop_and_resize: got {len(boxes)} boxes for {len(self)} masks"
            )
        dev = self.tensor.device
        if len(boxes) == 0:
            return torch.empty(0, mask_size, mask_size, dtype=torch.bool, device=dev)
        batch_inds = torch.arange(len(boxes), device=dev).to(dtype=boxes.dtype)[:, None]
        rois = torch.cat([batch_inds, boxes.to(device=dev)], dim=1)  # (N, 5)
        bit_masks = self.tensor.to(dtype=torch.float32)
        rois = rois.to(dtype=torch.float32)
        output = (
            ROIAlign((mask_size, mask_size), 1.0, 0, aligned=True)
            .forward(bit_masks[:, None, :, :], rois)
            .squeeze(1)
        )
        return output >= 0.5

    def get_bounding_boxes(self) -> Boxes:
        """Tight boxes around each mask (x1, y1 exclusive); all zeros for an empty mask."""
        n = self.tensor.shape[0]
        if n == 0:
            return Boxes(torch.zeros(0, 4, dtype=torch.float32, device=self.tensor.device))
        x_any = self.tensor.any(dim=1)  # (N, W)
        y_any = self.tensor.any(dim=2)  # (N, H)
        w, h = x_any.shape[1], y_any.shape[1]
        if w == 0 or h == 0:
            return Boxes(torch.zeros(n, 4, dtype=torch.float32, device=self.tensor.device))
        # argmax of a bool row finds its first True; on the flipped row, its last True
        x0 = x_any.to(torch.uint8).argmax(dim=1)
        x1 = w - x_any.flip(1).to(torch.uint8).argmax(dim=1)
        y0 = y_any.to(torch.uint8).argmax(dim=1)
        y1 = h - y_any.flip(1).to(torch.uint8).argmax(dim=1)
        boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
        nonempty = x_any.any(dim=1)
        return Boxes(boxes * nonempty[:, None])

    @staticmethod
    def cat(bitmasks_list: list[BitMasks]) -> BitMasks:
        """Concatenate a non-empty list of ``BitMasks`` of the same image size."""
        if not isinstance(bitmasks_list, (list, tuple)) or len(bitmasks_list) == 0:
            raise ValueError("BitMasks.cat expects a non-empty list of BitMasks")
        for i, bm in enumerate(bitmasks_list):
            if not isinstance(bm, BitMasks):
                raise TypeError(f"BitMasks.cat: element {i} is a {type(bm).__name__}")
        return type(bitmasks_list[0])(torch.cat([bm.tensor for bm in bitmasks_list], dim=0))


_PolygonInput = Tensor | np.ndarray | list


class PolygonMasks:
    """COCO-style polygon masks: per instance, a list of polygons (their union is the mask).

    Attributes:
        polygons (list[list[np.ndarray]]): ``polygons[i]`` are the polygons of instance i, each
            a float64 array [x0, y0, x1, y1, ...] in absolute pixel coordinates.
    """

    def __init__(self, polygons: list[list[_PolygonInput]]):
        """
        Args:
            polygons (list[list[array-like]]): one list of polygons per instance; each polygon
                has at least 3 points (6 coordinates) and an even number of coordinates.
        """
        if not isinstance(polygons, list):
            raise ValueError(
                "Cannot create PolygonMasks: expected a list of lists of polygons (one list per "
                f"instance), got {type(polygons).__name__}"
            )

        def make_array(t: _PolygonInput) -> np.ndarray:
            # float64 for precision; polygons always live on the CPU (they are small)
            if isinstance(t, Tensor):
                t = t.cpu().numpy()
            return np.asarray(t).astype("float64")

        def process(i: int, polygons_per_instance: Any) -> list[np.ndarray]:
            if not isinstance(polygons_per_instance, list):
                raise ValueError(
                    f"Cannot create PolygonMasks: instance {i} must be a list of polygons, got "
                    f"{type(polygons_per_instance).__name__}"
                )
            arrays = [make_array(p) for p in polygons_per_instance]
            for j, polygon in enumerate(arrays):
                if polygon.ndim != 1 or len(polygon) % 2 != 0 or len(polygon) < 6:
                    raise ValueError(
                        f"Cannot create PolygonMasks: polygon {j} of instance {i} has "
                        f"{polygon.size} coordinates (shape {polygon.shape}); a polygon needs a "
                        "flat, even number of at least 6 (3 points)"
                    )
            return arrays

        self.polygons: list[list[np.ndarray]] = [process(i, p) for i, p in enumerate(polygons)]

    def to(self, *args: Any, **kwargs: Any) -> PolygonMasks:
        """No-op: polygons stay on the CPU."""
        return self

    @property
    def device(self) -> device:
        return torch.device("cpu")

    def get_bounding_boxes(self) -> Boxes:
        """Boxes around each instance's polygons.

        As in Detectron2 the box max starts from 0 (so all-negative polygons give x1 = y1 = 0)
        and an instance without polygons gives (inf, inf, 0, 0).
        """
        n = len(self.polygons)
        boxes = torch.zeros(n, 4, dtype=torch.float32)
        if n == 0:
            return Boxes(boxes)
        arrays = [p.reshape(-1, 2) for ps in self.polygons for p in ps]
        counts = [sum(len(p) // 2 for p in ps) for ps in self.polygons]
        minxy = torch.full((n, 2), float("inf"), dtype=torch.float32)
        maxxy = torch.zeros((n, 2), dtype=torch.float32)
        if arrays:
            coords = torch.from_numpy(np.concatenate(arrays, axis=0)).to(torch.float32)
            owner = torch.repeat_interleave(torch.arange(n), torch.tensor(counts))
            owner = owner[:, None].expand(-1, 2)
            minxy = minxy.scatter_reduce(0, owner, coords, reduce="amin", include_self=True)
            maxxy = maxxy.scatter_reduce(0, owner, coords, reduce="amax", include_self=True)
        boxes[:, :2] = minxy
        boxes[:, 2:] = maxxy
        return Boxes(boxes)

    def nonempty(self) -> Tensor:
        """Tensor[N] bool: instances with at least one polygon."""
        return torch.tensor([len(p) > 0 for p in self.polygons], dtype=torch.bool)

    def __getitem__(self, item: int | slice | list[int] | Tensor) -> PolygonMasks:
        """Index with an int, a slice, a list of ints, a bool mask or an int64 index tensor."""
        if isinstance(item, int):
            selected = [self.polygons[item]]
        elif isinstance(item, slice):
            selected = self.polygons[item]
        elif isinstance(item, list):
            selected = [self.polygons[i] for i in item]
        elif isinstance(item, Tensor):
            if item.dtype == torch.bool:
                if item.dim() != 1 or item.numel() != len(self.polygons):
                    raise IndexError(
                        f"PolygonMasks: bool mask of shape {tuple(item.shape)} for "
                        f"{len(self.polygons)} instances"
                    )
                idx = item.nonzero().squeeze(1).cpu().tolist()
            elif item.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8, torch.int8):
                idx = item.reshape(-1).cpu().tolist()
            else:
                raise ValueError(f"Unsupported tensor dtype={item.dtype} for indexing!")
            selected = [self.polygons[i] for i in idx]
        else:
            raise TypeError(f"PolygonMasks cannot be indexed with {type(item).__name__}")
        return PolygonMasks(selected)

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        return iter(self.polygons)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_instances={len(self.polygons)})"

    def __len__(self) -> int:
        return len(self.polygons)

    def crop_and_resize(self, boxes: Tensor, mask_size: int) -> Tensor:
        """Rasterise each instance within its box at ``mask_size x mask_size``.

        Args:
            boxes (Tensor[N, 4]): one box per instance, x0, y0, x1, y1.
            mask_size (int): output side.

        Returns:
            Tensor[N, mask_size, mask_size] bool, on the device of ``boxes``.
        """
        if isinstance(boxes, Boxes):
            boxes = boxes.tensor
        if len(boxes) != len(self):
            raise ValueError(
                f"PolygonMasks.crop_and_resize: got {len(boxes)} boxes for {len(self)} instances"
            )
        dev = boxes.device
        # pycocotools rasterises on the CPU, one instance at a time. The boxes keep their dtype
        # (float32 in models): the box size is computed in it, as in Detectron2, so the
        # rasterised targets match to the pixel.
        boxes_np = boxes.detach().to(device="cpu").numpy()
        results = [
            rasterize_polygons_within_box(poly, box, mask_size)
            for poly, box in zip(self.polygons, boxes_np)
        ]
        if len(results) == 0:
            return torch.empty(0, mask_size, mask_size, dtype=torch.bool, device=dev)
        return torch.stack(results, dim=0).to(device=dev)

    def area(self) -> Tensor:
        """Tensor[N] float64: area of each instance, the sum of its polygons' shoelace areas.

        As in Detectron2, polygons are treated as separate parts (COCO polygons have no
        holes), so overlaps between the polygons of one instance are counted twice; for
        disjoint parts this equals the pixel area pycocotools reports, up to rasterisation.
        """
        areas = [sum(float(polygon_area(p[0::2], p[1::2])) for p in ps) for ps in self.polygons]
        return torch.tensor(areas, dtype=torch.float64)

    @staticmethod
    def cat(polymasks_list: list[PolygonMasks]) -> PolygonMasks:
        """Concatenate a non-empty list of ``PolygonMasks``."""
        if not isinstance(polymasks_list, (list, tuple)) or len(polymasks_list) == 0:
            raise ValueError("PolygonMasks.cat expects a non-empty list of PolygonMasks")
        for i, pm in enumerate(polymasks_list):
            if not isinstance(pm, PolygonMasks):
                raise TypeError(f"PolygonMasks.cat: element {i} is a {type(pm).__name__}")
        return type(polymasks_list[0])(
            list(itertools.chain.from_iterable(pm.polygons for pm in polymasks_list))
        )


class ROIMasks:
    """Per-ROI masks (e.g. Mask R-CNN's ``M x M`` predictions) before pasting into the image.

    Attributes:
        tensor (Tensor[N, M, M]): mask probabilities or logits, one per ROI.
    """

    def __init__(self, tensor: Tensor):
        """
        Args:
            tensor (Tensor[N, M, M]): one mask per ROI.
        """
        if not isinstance(tensor, Tensor) or tensor.dim() != 3:
            shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
            raise ValueError(f"ROIMasks expects a Tensor[N, M, M], got {shape}")
        self.tensor = tensor

    def to(self, device: device | str) -> ROIMasks:
        return ROIMasks(self.tensor.to(device))

    @property
    def device(self) -> device:
        return self.tensor.device

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __getitem__(self, item: int | slice | Tensor) -> ROIMasks:
        """Index with a slice, a bool mask or an index tensor (an int gives 1 mask)."""
        if isinstance(item, int):
            item = slice(item, item + 1 if item != -1 else None)
        t = self.tensor[item]
        if t.dim() != 3:
            raise IndexError(
                f"Indexing on ROIMasks with {item} returns a tensor with shape {tuple(t.shape)}!"
            )
        return ROIMasks(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_instances={len(self.tensor)})"

    def to_bitmasks(
        self, boxes: Tensor | Boxes, height: int, width: int, threshold: float = 0.5
    ) -> BitMasks:
        """Paste each mask into its box in a ``height x width`` image and threshold it.

        Args:
            boxes (Tensor[N, 4] or Boxes): the ROI of each mask, x0, y0, x1, y1.
            height, width (int): image size.
            threshold (float): pixels with value >= threshold are set.
        """
        from torchdet.layers import paste_masks_in_image  # lazy: layers is optional here

        if isinstance(boxes, Boxes):
            boxes = boxes.tensor
        bitmasks = paste_masks_in_image(self.tensor, boxes, (height, width), threshold=threshold)
        return BitMasks(bitmasks)
