"""DensePose ground truth of one instance, relative to its box (the COCO DensePose format)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import torch

__all__ = ["DensePoseDataRelative"]


class DensePoseDataRelative:
    """The annotated points and part masks of one person.

    Coordinates ``dp_x``, ``dp_y`` are in [0, 256) relative to the instance box (256 = its
    width / height); ``dp_I`` the surface patch (1..24) of each point, ``dp_U``, ``dp_V`` its
    chart coordinates in [0, 1]; ``dp_masks`` 14 coarse part masks (RLE, 256 x 256 over the
    box, empty ones falsy), merged into one label map (0 background, 1..14 parts).

    Attributes:
        x, y, u, v (Tensor[P] float32), i (Tensor[P] int64), segm (Tensor[256, 256]).
    """

    X_KEY = "dp_x"
    Y_KEY = "dp_y"
    U_KEY = "dp_U"
    V_KEY = "dp_V"
    I_KEY = "dp_I"
    S_KEY = "dp_masks"
    N_BODY_PARTS = 14
    N_PART_LABELS = 24
    MASK_SIZE = 256

    def __init__(self, annotation: dict[str, Any], cleanup: bool = False) -> None:
        self.validate_annotation(annotation)
        self.x = torch.as_tensor(annotation[self.X_KEY], dtype=torch.float32)
        self.y = torch.as_tensor(annotation[self.Y_KEY], dtype=torch.float32)
        self.i = torch.as_tensor(annotation[self.I_KEY], dtype=torch.float32).long()
        self.u = torch.as_tensor(annotation[self.U_KEY], dtype=torch.float32)
        self.v = torch.as_tensor(annotation[self.V_KEY], dtype=torch.float32)
        self.segm = self.extract_segmentation_mask(annotation)
        self.device = torch.device("cpu")
        if cleanup:
            self.cleanup_annotation(annotation)

    @classmethod
    def validate_annotation(cls, annotation: dict[str, Any]) -> tuple[bool, str | None]:
        """Raise ``KeyError`` naming the first missing DensePose key, or ``ValueError`` when
        the point lists differ in length. Returns ``(True, None)`` when valid."""
        keys = (cls.X_KEY, cls.Y_KEY, cls.I_KEY, cls.U_KEY, cls.V_KEY, cls.S_KEY)
        for key in keys:
            if key not in annotation:
                raise KeyError(
                    f"DensePose annotation {annotation.get('id', '?')} has no {key!r} "
                    f"(needs {list(keys)})"
                )
        lengths = {k: len(annotation[k]) for k in keys[:5]}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f"DensePose annotation {annotation.get('id', '?')}: point lists differ in "
                f"length {lengths}"
            )
        return True, None

    @classmethod
    def cleanup_annotation(cls, annotation: dict[str, Any]) -> None:
        for key in (cls.X_KEY, cls.Y_KEY, cls.I_KEY, cls.U_KEY, cls.V_KEY, cls.S_KEY):
            annotation.pop(key, None)

    @classmethod
    def extract_segmentation_mask(cls, annotation: dict[str, Any]) -> torch.Tensor:
        """The (256, 256) part-label map of ``dp_masks`` (a tensor is returned as is)."""
        specs = annotation[cls.S_KEY]
        if isinstance(specs, torch.Tensor):
            return specs
        segm = torch.zeros((cls.MASK_SIZE, cls.MASK_SIZE), dtype=torch.float32)
        if isinstance(specs, dict):
            if specs:
                segm[torch.from_numpy(mask_utils.decode(specs) > 0)] = 1
            return segm
        for k, rle in enumerate(specs):
            if rle:
                mask = np.asarray(mask_utils.decode(rle)) > 0
                if mask.shape != (cls.MASK_SIZE, cls.MASK_SIZE):
                    raise ValueError(
                        f"dp_masks[{k}] of annotation {annotation.get('id', '?')} is "
                        f"{mask.shape}, expected ({cls.MASK_SIZE}, {cls.MASK_SIZE})"
                    )
                segm[torch.from_numpy(mask)] = k + 1
        return segm

    def to(self, device) -> DensePoseDataRelative:
        if self.device == torch.device(device):
            return self
        new = DensePoseDataRelative.__new__(DensePoseDataRelative)
        for name in ("x", "y", "i", "u", "v", "segm"):
            setattr(new, name, getattr(self, name).to(device))
        new.device = torch.device(device)
        return new

    def apply_transform(self, transforms, densepose_transform_data=None) -> None:
        """Follow a horizontal flip of the image: mirror x and the masks; with
        ``densepose_transform_data`` (``{"point_label_symmetries", "uv_symmetries"}`` tables)
        also swap left/right patches and mirror U/V. Other transforms keep box-relative data
        unchanged."""
        from torchdet.data import transforms as T  # local: structures sit below data

        flips = sum(isinstance(t, T.HFlipTransform) for t in transforms.transforms)
        if flips % 2 == 0:
            return
        self.x = self.MASK_SIZE - self.x
        self.segm = torch.flip(self.segm, dims=[1])
        if densepose_transform_data is not None:
            point_sym = torch.as_tensor(densepose_transform_data["point_label_symmetries"])
            self.i = point_sym[self.i]
            # U/V symmetries are (24, 256, 256) lookup tables indexed by the new patch.
            u_sym = torch.as_tensor(densepose_transform_data["uv_symmetries"]["U_transforms"])
            v_sym = torch.as_tensor(densepose_transform_data["uv_symmetries"]["V_transforms"])
            fg = self.i > 0
            iu = (self.u * 255).long().clamp(0, 255)
            iv = (self.v * 255).long().clamp(0, 255)
            u_new = u_sym[self.i - 1, iv, iu]
            v_new = v_sym[self.i - 1, iv, iu]
            self.u = torch.where(fg, u_new, self.u)
            self.v = torch.where(fg, v_new, self.v)
