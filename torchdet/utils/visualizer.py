"""Draw predictions and annotations on images (Detectron2's ``detectron2.utils.visualizer``).

Rendering backend: OpenCV + numpy, not matplotlib. matplotlib is not a dependency of torchdet
(OpenCV and Pillow are), and every primitive needed here is a rasterisation followed by an
alpha blend: polygons and boxes are rasterised with ``cv2.fillPoly`` / ``cv2.polylines`` into a
coverage layer (anti-aliased for outlines and text), and the layer is composited "over" the
canvas with numpy, which is what matplotlib's Agg canvas does for Detectron2. Coordinates are
continuous pixel coordinates (pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``), as in
Detectron2, and every drawing call takes them in the input image's frame; the canvas is the
image resized by ``scale``.

Colours are RGB floats in [0, 1] (tuples or arrays) or the names ``"r" "g" "b" "c" "m" "y"
"k" "w"`` and ``"red" "green" "blue" "white" "black" "yellow" "orange"``.

Shape shorthand: ``H, W`` the input image's size, ``N`` instances, ``K`` keypoints.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterator, Sequence
from enum import Enum, unique
from typing import Any

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch
from PIL import Image

from torchdet.structures import BitMasks, Boxes, BoxMode, Keypoints, PolygonMasks, RotatedBoxes
from torchdet.utils.colormap import random_color

__all__ = ["ColorMode", "GenericMask", "VisImage", "Visualizer"]

_SMALL_OBJECT_AREA_THRESH = 1000
_LARGE_MASK_AREA_THRESH = 120000
_OFF_WHITE = (1.0, 1.0, 240.0 / 255)
_BLACK = (0.0, 0.0, 0.0)
_RED = (1.0, 0.0, 0.0)
_KEYPOINT_THRESHOLD = 0.05
# matplotlib's figure dpi over its points-per-inch: a size of s points is s * 100 / 72 pixels.
_PX_PER_POINT = 100.0 / 72.0
_FONT = cv2.FONT_HERSHEY_SIMPLEX
# Cap height in pixels of the font at fontScale 1 (cv2.getTextSize of "H").
_FONT_CAP_HEIGHT = float(cv2.getTextSize("H", _FONT, 1.0, 1)[0][1])

_NAMED_COLORS = {
    "r": (1.0, 0.0, 0.0),
    "g": (0.0, 0.5, 0.0),
    "b": (0.0, 0.0, 1.0),
    "c": (0.0, 0.75, 0.75),
    "m": (0.75, 0.0, 0.75),
    "y": (0.75, 0.75, 0.0),
    "k": (0.0, 0.0, 0.0),
    "w": (1.0, 1.0, 1.0),
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 0.5, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
    "yellow": (1.0, 1.0, 0.0),
    "orange": (1.0, 0.647, 0.0),
}


def _to_rgb(color: Any) -> tuple[float, float, float]:
    """A colour name or an RGB(A) sequence in [0, 1] -> an RGB tuple of floats."""
    if isinstance(color, str):
        if color not in _NAMED_COLORS:
            raise ValueError(f"unknown colour name {color!r}; known: {sorted(_NAMED_COLORS)}")
        return _NAMED_COLORS[color]
    c = np.asarray(color, dtype=np.float64).reshape(-1)
    if c.size not in (3, 4) or c.min() < 0 or c.max() > 1:
        raise ValueError(f"a colour must be 3 or 4 floats in [0, 1], got {color!r}")
    return float(c[0]), float(c[1]), float(c[2])


@unique
class ColorMode(Enum):
    """How instances are coloured.

    - ``IMAGE``: random colours, masks at alpha 0.5;
    - ``SEGMENTATION``: instances of a class share a jittered ``thing_colors`` colour, alpha 0.8;
    - ``IMAGE_BW``: like ``IMAGE``, with the image greyed outside the masks (alpha 0.3).
    """

    IMAGE = 0
    SEGMENTATION = 1
    IMAGE_BW = 2


class GenericMask:
    """One instance's mask, given as a binary mask, polygons or an RLE, convertible to the others.

    Attributes:
        height, width: the image size the mask lives in.
    """

    def __init__(self, mask_or_polygons: Any, height: int, width: int) -> None:
        """
        Args:
            mask_or_polygons: an ndarray[H, W] binary mask, a list of polygons (each a flat
                sequence ``x0, y0, x1, y1, ...`` in absolute pixels) or a COCO RLE dict.
            height, width: the image size.
        """
        self._mask: np.ndarray | None = None
        self._polygons: list[np.ndarray] | None = None
        self._has_holes: bool | None = None
        self.height = int(height)
        self.width = int(width)
        m = mask_or_polygons
        if isinstance(m, torch.Tensor):
            m = m.detach().cpu().numpy()
        if isinstance(m, dict):
            if "counts" not in m or "size" not in m:
                raise ValueError(f"GenericMask: an RLE needs 'counts' and 'size', got {list(m)}")
            if isinstance(m["counts"], list):  # uncompressed RLE
                h, w = m["size"]
                if (h, w) != (self.height, self.width):
                    raise ValueError(
                        f"GenericMask: RLE size {(h, w)} != image size {(self.height, self.width)}"
                    )
                m = mask_util.frPyObjects(m, h, w)
            self._mask = mask_util.decode(m)[:, :].astype(np.uint8)
            return
        if isinstance(m, list):
            self._polygons = [np.asarray(x, dtype=np.float64).reshape(-1) for x in m]
            return
        if isinstance(m, np.ndarray):
            if m.shape != (self.height, self.width):
                raise ValueError(
                    f"GenericMask: mask of shape {m.shape}, expected {(self.height, self.width)}"
                )
            self._mask = m.astype(np.uint8)
            return
        raise TypeError(f"GenericMask cannot handle an object of type {type(m).__name__}")

    @property
    def mask(self) -> np.ndarray:
        """ndarray[H, W] uint8 in {0, 1}."""
        if self._mask is None:
            self._mask = self.polygons_to_mask(self._polygons or [])
        return self._mask

    @property
    def polygons(self) -> list[np.ndarray]:
        """Flat float polygons ``x0, y0, x1, y1, ...`` (each with at least 3 points)."""
        if self._polygons is None:
            self._polygons, self._has_holes = self.mask_to_polygons(self._mask)
        return self._polygons

    @property
    def has_holes(self) -> bool:
        if self._has_holes is None:
            if self._mask is not None:
                self._polygons, self._has_holes = self.mask_to_polygons(self._mask)
            else:
                self._has_holes = False  # polygons given by the user describe no holes
        return self._has_holes

    def mask_to_polygons(self, mask: np.ndarray) -> tuple[list[np.ndarray], bool]:
        """Contours of a binary mask, and whether it has holes."""
        # RETR_CCOMP arranges contours in two levels, outer boundaries and holes; a contour
        # with a parent is a hole.
        contours, hierarchy = cv2.findContours(
            np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE
        )[-2:]
        if hierarchy is None:  # empty mask
            return [], False
        has_holes = bool((hierarchy.reshape(-1, 4)[:, 3] >= 0).any())
        # OpenCV gives the integer indices of boundary pixels; +0.5 moves them to pixel centres
        # in continuous coordinates.
        polygons = [c.reshape(-1).astype(np.float64) + 0.5 for c in contours]
        return [p for p in polygons if len(p) >= 6], has_holes

    def polygons_to_mask(self, polygons: list[np.ndarray]) -> np.ndarray:
        if len(polygons) == 0:
            return np.zeros((self.height, self.width), dtype=np.uint8)
        rle = mask_util.merge(
            mask_util.frPyObjects([list(map(float, p)) for p in polygons], self.height, self.width)
        )
        return mask_util.decode(rle)[:, :].astype(np.uint8)

    def area(self) -> int:
        return int(self.mask.sum())

    def bbox(self) -> np.ndarray:
        """ndarray[4]: x0, y0, x1, y1 of the polygons."""
        if len(self.polygons) == 0:
            return np.zeros(4, dtype=np.float64)
        rle = mask_util.merge(
            mask_util.frPyObjects(
                [list(map(float, p)) for p in self.polygons], self.height, self.width
            )
        )
        x, y, w, h = mask_util.toBbox(rle)
        return np.array([x, y, x + w, y + h], dtype=np.float64)


class _PanopticPrediction:
    """A panoptic map split into stuff masks and instance masks, largest segments first."""

    def __init__(
        self, panoptic_seg: torch.Tensor, segments_info: list[dict] | None, metadata: Any = None
    ) -> None:
        panoptic_seg = torch.as_tensor(panoptic_seg)
        if panoptic_seg.dim() != 2:
            raise ValueError(f"panoptic_seg must be (H, W), got {tuple(panoptic_seg.shape)}")
        if segments_info is None:
            # Raw maps store category * label_divisor + instance; -1 is void.
            label_divisor = _meta_get(metadata, "label_divisor")
            thing_ids = _meta_get(metadata, "thing_dataset_id_to_contiguous_id")
            if label_divisor is None or thing_ids is None:
                raise KeyError(
                    "draw_panoptic_seg without segments_info needs metadata.label_divisor and "
                    "metadata.thing_dataset_id_to_contiguous_id"
                )
            thing_classes = set(thing_ids.values())
            segments_info = []
            for label in torch.unique(panoptic_seg).tolist():
                if label == -1:
                    continue
                category = int(label) // int(label_divisor)
                segments_info.append(
                    {
                        "id": int(label),
                        "category_id": category,
                        "isthing": category in thing_classes,
                    }
                )
        self._seg = panoptic_seg
        self._sinfo = {s["id"]: dict(s) for s in segments_info}
        ids, areas = torch.unique(panoptic_seg, sorted=True, return_counts=True)
        order = torch.argsort(-areas, stable=True)
        self._seg_ids = ids[order].tolist()
        for sid, area in zip(self._seg_ids, areas[order].tolist()):
            if sid in self._sinfo:
                self._sinfo[sid]["area"] = float(area)

    def non_empty_mask(self) -> np.ndarray:
        """ndarray[H, W] bool: the pixels that belong to a segment with info."""
        empty = [sid for sid in self._seg_ids if sid not in self._sinfo]
        if len(empty) == 0:
            return np.ones(tuple(self._seg.shape), dtype=bool)
        return ~np.isin(self._seg.numpy(), empty)

    def semantic_masks(self) -> Iterator[tuple[np.ndarray, dict]]:
        for sid in self._seg_ids:
            sinfo = self._sinfo.get(sid)
            if sinfo is None or sinfo["isthing"]:
                continue
            yield (self._seg == sid).numpy(), sinfo

    def instance_masks(self) -> Iterator[tuple[np.ndarray, dict]]:
        for sid in self._seg_ids:
            sinfo = self._sinfo.get(sid)
            if sinfo is None or not sinfo["isthing"]:
                continue
            mask = (self._seg == sid).numpy()
            if mask.any():
                yield mask, sinfo


def _create_text_labels(
    classes: Sequence[int] | None,
    scores: Sequence[float] | torch.Tensor | None,
    class_names: Sequence[str] | None,
    is_crowd: Sequence[int] | None = None,
) -> list[str] | None:
    """Labels ``"<class> <score>%"`` (either part may be missing; ``"|crowd"`` for crowds)."""
    labels = None
    if classes is not None:
        if class_names is not None and len(class_names) > 0:
            labels = [class_names[int(i)] for i in classes]
        else:
            labels = [str(int(i)) for i in classes]
    if scores is not None:
        scores = [float(s) for s in scores]
        if labels is None:
            labels = [f"{s * 100:.0f}%" for s in scores]
        else:
            labels = [f"{lbl} {s * 100:.0f}%" for lbl, s in zip(labels, scores)]
    if labels is not None and is_crowd is not None:
        labels = [lbl + ("|crowd" if crowd else "") for lbl, crowd in zip(labels, is_crowd)]
    return labels


def _meta_get(metadata: Any, key: str, default: Any = None) -> Any:
    """``metadata.get(key)`` for a torchdet ``Metadata``, a dict or any object with attributes."""
    if metadata is None:
        return default
    if isinstance(metadata, dict):
        return metadata.get(key, default)
    return getattr(metadata, key, default)


class VisImage:
    """The canvas: the image resized by ``scale``, which drawing calls paint over.

    Attributes:
        img (ndarray[H, W, 3] uint8): the input image (RGB).
        scale (float): canvas size over image size.
        height, width (int): the input image's size (drawing coordinates use it).
    """

    def __init__(self, img: np.ndarray, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError(f"VisImage: scale must be > 0, got {scale}")
        self.img = img
        self.scale = float(scale)
        self.height, self.width = img.shape[:2]
        self.canvas_height = max(int(round(self.height * self.scale)), 1)
        self.canvas_width = max(int(round(self.width * self.scale)), 1)
        self.reset_image(img)

    def reset_image(self, img: np.ndarray) -> None:
        """Replace the canvas with ``img`` (ndarray[H, W, 3], RGB), resized by ``scale``."""
        img = np.asarray(img).clip(0, 255).astype(np.uint8)
        size = (self.canvas_width, self.canvas_height)
        if img.shape[1::-1] != size:
            shrink = size[0] < img.shape[1]
            img = cv2.resize(
                img, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST
            )
        # float32 RGB in [0, 255]: blending is exact and only rounded once, in get_image().
        self._canvas = img.astype(np.float32)

    # ------------------------------------------------------------------ compositing
    def blend(self, coverage: np.ndarray, color: Any, alpha: float, offset=(0, 0)) -> None:
        """Composite ``color`` over the canvas with opacity ``alpha * coverage``.

        Args:
            coverage (ndarray[h, w] uint8 or float): 255 / 1.0 where fully covered.
            offset: (x, y) of ``coverage``'s top-left corner on the canvas.
        """
        x, y = offset
        h, w = coverage.shape
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.canvas_width), min(y + h, self.canvas_height)
        if x1 <= x0 or y1 <= y0:
            return
        cov = coverage[y0 - y : y1 - y, x0 - x : x1 - x]
        if cov.dtype == np.uint8:
            a = cov.astype(np.float32) * (alpha / 255.0)
        else:
            a = cov.astype(np.float32) * alpha
        a = a[..., None]
        rgb = np.asarray(_to_rgb(color), dtype=np.float32) * 255.0
        region = self._canvas[y0:y1, x0:x1]
        region += a * (rgb - region)

    def blend_rgba(self, rgb: Any, alpha_map: np.ndarray) -> None:
        """Composite a colour with a per-pixel opacity given at image resolution.

        Args:
            alpha_map (ndarray[H, W] float): opacity in [0, 1] per input-image pixel.
        """
        size = (self.canvas_width, self.canvas_height)
        if alpha_map.shape[1::-1] != size:
            alpha_map = cv2.resize(
                alpha_map.astype(np.float32), size, interpolation=cv2.INTER_NEAREST
            )
        self.blend(alpha_map.astype(np.float32), rgb, 1.0)

    def save(self, filepath: str) -> None:
        """Write the canvas to an image file (format from the extension)."""
        Image.fromarray(self.get_image()).save(filepath)

    def get_image(self) -> np.ndarray:
        """ndarray[round(H * scale), round(W * scale), 3] uint8: the drawing, RGB."""
        return np.rint(self._canvas).clip(0, 255).astype(np.uint8)


class Visualizer:
    """Draws instance predictions, segmentations and dataset annotations on an image.

    Example::

        v = Visualizer(img[:, :, ::-1], MetadataCatalog.get("shapes_val"), scale=1.0)
        out = v.draw_instance_predictions(outputs["instances"].to("cpu"))
        out.save("pred.png")  # or out.get_image(), RGB

    Each ``draw_*`` call paints over the same canvas and returns the ``VisImage``.
    """

    def __init__(
        self,
        img_rgb: np.ndarray,
        metadata: Any = None,
        scale: float = 1.0,
        instance_mode: ColorMode = ColorMode.IMAGE,
    ) -> None:
        """
        Args:
            img_rgb (ndarray[H, W, 3] or [H, W]): the image, RGB, values in [0, 255].
            metadata: dataset metadata (``thing_classes``, ``thing_colors``, ``stuff_classes``,
                ``stuff_colors``, ``keypoint_names``, ``keypoint_connection_rules``, ...): a
                torchdet ``Metadata``, a dict or None.
            scale: the output canvas size over the image size.
            instance_mode: see :class:`ColorMode`.
        """
        img = np.asarray(img_rgb)
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=2)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Visualizer: img_rgb must be (H, W, 3), got {img.shape}")
        if not isinstance(instance_mode, ColorMode):
            raise TypeError(f"Visualizer: instance_mode must be a ColorMode, got {instance_mode!r}")
        self.img = img.clip(0, 255).astype(np.uint8)
        self.metadata = metadata
        self.output = VisImage(self.img, scale=scale)
        self.cpu_device = torch.device("cpu")
        # text smaller than this is unreadable
        self._default_font_size = max(
            np.sqrt(self.output.height * self.output.width) // 90, 10 // scale
        )
        self._instance_mode = instance_mode
        self.keypoint_threshold = _KEYPOINT_THRESHOLD

    # ------------------------------------------------------------------ high level
    def draw_instance_predictions(self, predictions: Any) -> VisImage:
        """Draw an ``Instances`` of predictions: boxes, masks, "class score%" labels, keypoints.

        Args:
            predictions (Instances): fields ``pred_boxes``, ``scores``, ``pred_classes``,
                ``pred_masks`` (Tensor[N, H, W]), ``pred_keypoints`` (Tensor[N, K, 3]), each
                optional.
        """
        boxes = predictions.pred_boxes if predictions.has("pred_boxes") else None
        scores = predictions.scores if predictions.has("scores") else None
        classes = predictions.pred_classes.tolist() if predictions.has("pred_classes") else None
        labels = _create_text_labels(classes, scores, _meta_get(self.metadata, "thing_classes"))
        keypoints = predictions.pred_keypoints if predictions.has("pred_keypoints") else None
        masks = None
        if predictions.has("pred_masks"):
            masks = np.asarray(torch.as_tensor(predictions.pred_masks).cpu())
            masks = [GenericMask(x, self.output.height, self.output.width) for x in masks]
        thing_colors = _meta_get(self.metadata, "thing_colors")
        if self._instance_mode == ColorMode.SEGMENTATION and thing_colors and classes is not None:
            colors = [self._jitter([x / 255 for x in thing_colors[c]]) for c in classes]
            alpha = 0.8
        else:
            colors = None
            alpha = 0.5
        if self._instance_mode == ColorMode.IMAGE_BW:
            keep = None
            if masks is not None and len(masks):
                keep = np.stack([m.mask for m in masks]).any(axis=0)
            self.output.reset_image(self._create_grayscale_image(keep))
            alpha = 0.3
        self.overlay_instances(
            masks=masks,
            boxes=boxes,
            labels=labels,
            keypoints=keypoints,
            assigned_colors=colors,
            alpha=alpha,
        )
        return self.output

    def draw_sem_seg(
        self, sem_seg: Any, area_threshold: float | None = None, alpha: float = 0.8
    ) -> VisImage:
        """Draw a semantic map, one translucent region and label per class, largest first.

        Args:
            sem_seg (Tensor or ndarray[H, W] int): class index per pixel; indices
                ``>= len(stuff_classes)`` (e.g. 255, ignore) are not drawn.
        """
        if isinstance(sem_seg, torch.Tensor):
            sem_seg = sem_seg.cpu().numpy()
        sem_seg = np.asarray(sem_seg)
        if sem_seg.shape != (self.output.height, self.output.width):
            raise ValueError(
                f"draw_sem_seg: sem_seg of shape {sem_seg.shape}, expected "
                f"{(self.output.height, self.output.width)}"
            )
        stuff_classes = _meta_get(self.metadata, "stuff_classes")
        if stuff_classes is None:
            raise KeyError("draw_sem_seg needs metadata.stuff_classes")
        stuff_colors = _meta_get(self.metadata, "stuff_colors")
        labels, areas = np.unique(sem_seg, return_counts=True)
        labels = labels[np.argsort(-areas, kind="stable")]
        for label in labels:
            if not 0 <= label < len(stuff_classes):
                continue
            color = None
            if stuff_colors is not None and label < len(stuff_colors):
                color = [x / 255 for x in stuff_colors[label]]
            self.draw_binary_mask(
                (sem_seg == label).astype(np.uint8),
                color=color,
                edge_color=_OFF_WHITE,
                text=stuff_classes[label],
                alpha=alpha,
                area_threshold=area_threshold,
            )
        return self.output

    def draw_panoptic_seg(
        self,
        panoptic_seg: Any,
        segments_info: list[dict] | None,
        area_threshold: float | None = None,
        alpha: float = 0.7,
    ) -> VisImage:
        """Draw a panoptic segmentation: stuff regions first, then instances.

        Args:
            panoptic_seg (Tensor[H, W] int): segment id per pixel.
            segments_info: per segment ``{"id", "category_id", "isthing"}`` (and optionally
                ``"score"``, ``"iscrowd"``), or None for a raw map of
                ``category * metadata.label_divisor + instance`` (-1 void).
        """
        pred = _PanopticPrediction(panoptic_seg, segments_info, self.metadata)
        if self._instance_mode == ColorMode.IMAGE_BW:
            self.output.reset_image(self._create_grayscale_image(pred.non_empty_mask()))
        stuff_classes = _meta_get(self.metadata, "stuff_classes")
        stuff_colors = _meta_get(self.metadata, "stuff_colors")
        for mask, sinfo in pred.semantic_masks():
            c = sinfo["category_id"]
            if stuff_classes is None or not 0 <= c < len(stuff_classes):
                raise KeyError(
                    f"draw_panoptic_seg: stuff category {c} not in metadata.stuff_classes"
                )
            color = [x / 255 for x in stuff_colors[c]] if stuff_colors is not None else None
            self.draw_binary_mask(
                mask.astype(np.uint8),
                color=color,
                edge_color=_OFF_WHITE,
                text=stuff_classes[c],
                alpha=alpha,
                area_threshold=area_threshold,
            )
        instances = list(pred.instance_masks())
        if len(instances) == 0:
            return self.output
        masks, sinfo = list(zip(*instances))
        category_ids = [x["category_id"] for x in sinfo]
        scores = [x["score"] for x in sinfo] if all("score" in x for x in sinfo) else None
        labels = _create_text_labels(
            category_ids,
            scores,
            _meta_get(self.metadata, "thing_classes"),
            [x.get("iscrowd", 0) for x in sinfo],
        )
        thing_colors = _meta_get(self.metadata, "thing_colors")
        colors = None
        if thing_colors is not None:
            colors = [self._jitter([x / 255 for x in thing_colors[c]]) for c in category_ids]
        self.overlay_instances(
            masks=[m.astype(np.uint8) for m in masks],
            labels=labels,
            assigned_colors=colors,
            alpha=alpha,
        )
        return self.output

    draw_panoptic_seg_predictions = draw_panoptic_seg  # Detectron2's older name

    def draw_dataset_dict(self, dic: dict) -> VisImage:
        """Draw a dataset dict in Detectron2's format: its annotations (boxes, polygons or RLE
        masks, keypoints, class labels), ``sem_seg``/``sem_seg_file_name`` and
        ``pan_seg``/``pan_seg_file_name`` + ``segments_info``.
        """
        annos = dic.get("annotations")
        if annos:
            masks = [x["segmentation"] for x in annos] if "segmentation" in annos[0] else None
            keypts = None
            if "keypoints" in annos[0]:
                keypts = np.array([x["keypoints"] for x in annos], dtype=np.float64)
                keypts = keypts.reshape(len(annos), -1, 3)
            boxes = [
                BoxMode.convert(x["bbox"], x["bbox_mode"], BoxMode.XYXY_ABS)
                if len(x["bbox"]) == 4
                else x["bbox"]
                for x in annos
            ]
            category_ids = [x["category_id"] for x in annos]
            colors = None
            thing_colors = _meta_get(self.metadata, "thing_colors")
            if self._instance_mode == ColorMode.SEGMENTATION and thing_colors:
                colors = [self._jitter([x / 255 for x in thing_colors[c]]) for c in category_ids]
            labels = _create_text_labels(
                category_ids,
                scores=None,
                class_names=_meta_get(self.metadata, "thing_classes"),
                is_crowd=[x.get("iscrowd", 0) for x in annos],
            )
            self.overlay_instances(
                labels=labels,
                boxes=np.array(boxes, dtype=np.float64),
                masks=masks,
                keypoints=keypts,
                assigned_colors=colors,
            )
        sem_seg = dic.get("sem_seg")
        if sem_seg is None and "sem_seg_file_name" in dic:
            with Image.open(dic["sem_seg_file_name"]) as f:
                sem_seg = np.asarray(f, dtype=np.uint8)
        if sem_seg is not None:
            self.draw_sem_seg(sem_seg, area_threshold=0, alpha=0.5)
        pan_seg = dic.get("pan_seg")
        if pan_seg is None and "pan_seg_file_name" in dic:
            with Image.open(dic["pan_seg_file_name"]) as f:
                rgb = np.asarray(f.convert("RGB"), dtype=np.int64)
            pan_seg = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
        if pan_seg is not None:
            if "segments_info" not in dic:
                raise KeyError("draw_dataset_dict: a panoptic dict needs 'segments_info'")
            self.draw_panoptic_seg(
                torch.as_tensor(np.asarray(pan_seg)), dic["segments_info"], 0, alpha=0.5
            )
        return self.output

    def overlay_instances(
        self,
        *,
        boxes: Any = None,
        labels: list[str] | None = None,
        masks: Any = None,
        keypoints: Any = None,
        assigned_colors: list | None = None,
        alpha: float = 0.5,
    ) -> VisImage:
        """Draw instances, largest first so that small ones stay visible.

        Args:
            boxes: ``Boxes``, ``RotatedBoxes``, Tensor or ndarray[N, 4] (XYXY absolute) or
                [N, 5] (rotated: cx, cy, w, h, angle in degrees).
            labels: N strings.
            masks: ``BitMasks``, ``PolygonMasks``, Tensor[N, H, W], or a list of N binary
                masks / polygon lists / RLEs / ``GenericMask``.
            keypoints: ``Keypoints``, Tensor or ndarray[N, K, 3] (x, y, score).
            assigned_colors: N colours; random palette colours by default.
            alpha: the masks' opacity.

        Raises:
            ValueError: when the arguments disagree on N.
        """
        num_instances = None
        if boxes is not None:
            boxes = self._convert_boxes(boxes)
            num_instances = len(boxes)
        if masks is not None:
            masks = self._convert_masks(masks)
            if num_instances is not None and len(masks) != num_instances:
                raise ValueError(f"overlay_instances: {len(masks)} masks for {num_instances} boxes")
            num_instances = len(masks)
        if keypoints is not None:
            keypoints = self._convert_keypoints(keypoints)
            if num_instances is not None and len(keypoints) != num_instances:
                raise ValueError(
                    f"overlay_instances: {len(keypoints)} keypoint sets for {num_instances} "
                    "instances"
                )
            num_instances = len(keypoints)
        if num_instances is None:
            num_instances = 0
        if labels is not None and len(labels) != num_instances:
            raise ValueError(
                f"overlay_instances: {len(labels)} labels for {num_instances} instances"
            )
        if assigned_colors is None:
            assigned_colors = [random_color(rgb=True, maximum=1) for _ in range(num_instances)]
        if len(assigned_colors) != num_instances:
            raise ValueError(
                f"overlay_instances: {len(assigned_colors)} colours for {num_instances} instances"
            )
        if num_instances == 0:
            return self.output
        if boxes is not None and boxes.shape[1] == 5:
            return self.overlay_rotated_instances(
                boxes=boxes, labels=labels, assigned_colors=assigned_colors
            )

        areas = None
        if boxes is not None:
            areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
        elif masks is not None:
            areas = np.asarray([m.area() for m in masks])
        if areas is not None:
            order = np.argsort(-areas, kind="stable").tolist()
            boxes = boxes[order] if boxes is not None else None
            labels = [labels[k] for k in order] if labels is not None else None
            masks = [masks[k] for k in order] if masks is not None else None
            assigned_colors = [assigned_colors[k] for k in order]
            keypoints = keypoints[order] if keypoints is not None else None

        scale = self.output.scale
        for i in range(num_instances):
            color = assigned_colors[i]
            if boxes is not None:
                self.draw_box(boxes[i], edge_color=color)
            if masks is not None:
                for segment in masks[i].polygons:
                    self.draw_polygon(segment.reshape(-1, 2), color, alpha=alpha)
            if labels is None:
                continue
            if boxes is not None:
                x0, y0, x1, y1 = boxes[i]
                text_pos = (x0, y0)  # on the box's corner
                horiz_align = "left"
            elif masks is not None:
                if len(masks[i].polygons) == 0:
                    continue  # a mask too small to have a polygon
                x0, y0, x1, y1 = masks[i].bbox()
                # the median of the mask's pixels: inside the mask, more stable than the centroid
                ys, xs = masks[i].mask.nonzero()
                text_pos = (float(np.median(xs)), float(np.median(ys)))
                horiz_align = "center"
            else:
                continue  # a label over keypoints alone says little
            instance_area = (y1 - y0) * (x1 - x0)
            if instance_area < _SMALL_OBJECT_AREA_THRESH * scale or y1 - y0 < 40 * scale:
                # beside small objects, not over them
                text_pos = (x1, y0) if y1 >= self.output.height - 5 else (x0, y1)
            height_ratio = (y1 - y0) / np.sqrt(self.output.height * self.output.width)
            lighter_color = self._change_color_brightness(color, brightness_factor=0.7)
            font_size = (
                np.clip((height_ratio - 0.02) / 0.08 + 1, 1.2, 2) * 0.5 * self._default_font_size
            )
            self.draw_text(
                labels[i],
                text_pos,
                color=lighter_color,
                horizontal_alignment=horiz_align,
                font_size=font_size,
            )
        if keypoints is not None:
            for keypoints_per_instance in keypoints:
                self.draw_and_connect_keypoints(keypoints_per_instance)
        return self.output

    def overlay_rotated_instances(
        self,
        boxes: Any = None,
        labels: list[str] | None = None,
        assigned_colors: list | None = None,
    ) -> VisImage:
        """Draw rotated boxes (ndarray[N, 5]: cx, cy, w, h, angle in degrees), largest first."""
        boxes = self._convert_boxes(boxes)
        num_instances = len(boxes)
        if assigned_colors is None:
            assigned_colors = [random_color(rgb=True, maximum=1) for _ in range(num_instances)]
        if num_instances == 0:
            return self.output
        order = np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable").tolist()
        for k in order:
            self.draw_rotated_box_with_label(
                boxes[k],
                edge_color=assigned_colors[k],
                label=labels[k] if labels is not None else None,
            )
        return self.output

    def draw_and_connect_keypoints(self, keypoints: Any) -> VisImage:
        """Draw one instance's keypoints (red dots above ``keypoint_threshold``) and the lines of
        ``metadata.keypoint_connection_rules`` (``(name0, name1, (r, g, b) 0-255)``) between
        visible ones; for COCO person keypoints also nose - mid-shoulder - mid-hip.

        Args:
            keypoints (Tensor or ndarray[K, 3]): x, y, score.
        """
        keypoints = np.asarray(torch.as_tensor(keypoints).detach().cpu(), dtype=np.float64)
        if keypoints.ndim != 2 or keypoints.shape[1] != 3:
            raise ValueError(f"keypoints must be (K, 3), got {keypoints.shape}")
        names = _meta_get(self.metadata, "keypoint_names")
        visible = {}
        for idx, (x, y, prob) in enumerate(keypoints):
            if prob > self.keypoint_threshold:
                self.draw_circle((x, y), color=_RED)
                if names:
                    visible[names[idx]] = (x, y)
        for kp0, kp1, color in _meta_get(self.metadata, "keypoint_connection_rules") or []:
            if kp0 in visible and kp1 in visible:
                (x0, y0), (x1, y1) = visible[kp0], visible[kp1]
                self.draw_line([x0, x1], [y0, y1], color=tuple(c / 255.0 for c in color))
        if "left_shoulder" in visible and "right_shoulder" in visible:
            (lx, ly), (rx, ry) = visible["left_shoulder"], visible["right_shoulder"]
            mid_shoulder = ((lx + rx) / 2, (ly + ry) / 2)
            if "nose" in visible:
                nx, ny = visible["nose"]
                self.draw_line([nx, mid_shoulder[0]], [ny, mid_shoulder[1]], color=_RED)
            if "left_hip" in visible and "right_hip" in visible:
                (lx, ly), (rx, ry) = visible["left_hip"], visible["right_hip"]
                mid_hip = ((lx + rx) / 2, (ly + ry) / 2)
                self.draw_line(
                    [mid_hip[0], mid_shoulder[0]], [mid_hip[1], mid_shoulder[1]], color=_RED
                )
        return self.output

    # ------------------------------------------------------------------ primitives
    def draw_text(
        self,
        text: str,
        position: tuple[float, float],
        *,
        font_size: float | None = None,
        color: Any = "g",
        horizontal_alignment: str = "center",
        rotation: float = 0,
    ) -> VisImage:
        """Draw ``text`` on a translucent black box, its top at ``position`` (x, y).

        Args:
            font_size: in points (default: scaled to the image size).
            color: the text colour; brightened, as the background is dark.
            horizontal_alignment: ``"left"``, ``"center"`` or ``"right"`` of ``position``.
            rotation: degrees, counter-clockwise, around ``position``.
        """
        if horizontal_alignment not in ("left", "center", "right"):
            raise ValueError(f"draw_text: unknown horizontal_alignment {horizontal_alignment!r}")
        if not font_size:
            font_size = self._default_font_size
        # the background is dark: no dark text
        rgb = np.maximum(np.asarray(_to_rgb(color)), 0.2)
        rgb[np.argmax(rgb)] = max(0.8, float(np.max(rgb)))
        scale = self.output.scale
        cap_px = font_size * scale * _PX_PER_POINT * 0.72  # cap height ~ 0.72 em
        font_scale = max(cap_px / _FONT_CAP_HEIGHT, 0.1)
        thickness = max(int(round(font_scale * 1.6)), 1)
        (tw, th), baseline = cv2.getTextSize(text, _FONT, font_scale, thickness)
        pad = max(int(round(0.7 * scale * _PX_PER_POINT)), 1)
        box_w, box_h = tw + 2 * pad, th + baseline + 2 * pad
        # render upright into a patch: background coverage and text coverage
        text_layer = np.zeros((box_h, box_w), dtype=np.uint8)
        cv2.putText(
            text_layer, text, (pad, pad + th), _FONT, font_scale, 255, thickness, cv2.LINE_AA
        )
        bg_layer = np.full((box_h, box_w), 255, dtype=np.uint8)
        anchor_x = {"left": 0.0, "center": box_w / 2, "right": float(box_w)}[horizontal_alignment]
        x, y = position[0] * scale, position[1] * scale
        if rotation:
            # rotate the patch around the anchor (top edge at the alignment point)
            m = cv2.getRotationMatrix2D((anchor_x, 0.0), rotation, 1.0)
            corners = np.array([[0, 0, 1], [box_w, 0, 1], [0, box_h, 1], [box_w, box_h, 1]])
            pts = corners @ m.T
            lo = np.floor(pts.min(axis=0)).astype(int)
            hi = np.ceil(pts.max(axis=0)).astype(int)
            m[:, 2] -= lo
            size = (int(hi[0] - lo[0]) + 1, int(hi[1] - lo[1]) + 1)
            text_layer = cv2.warpAffine(text_layer, m, size, flags=cv2.INTER_LINEAR)
            bg_layer = cv2.warpAffine(bg_layer, m, size, flags=cv2.INTER_LINEAR)
            # the anchor, fixed by the rotation, sits at (anchor_x - lo_x, -lo_y) in the patch
            origin = (int(round(x - anchor_x + lo[0])), int(round(y + lo[1])))
        else:
            origin = (int(round(x - anchor_x)), int(round(y)))
        self.output.blend(bg_layer, _BLACK, 0.8, offset=origin)
        self.output.blend(text_layer, tuple(rgb), 1.0, offset=origin)
        return self.output

    def draw_box(
        self,
        box_coord: Sequence[float],
        alpha: float = 0.5,
        edge_color: Any = "g",
        line_style: str = "-",
    ) -> VisImage:
        """Draw the outline of an axis-aligned box ``(x0, y0, x1, y1)``."""
        x0, y0, x1, y1 = (float(v) for v in box_coord)
        linewidth = max(self._default_font_size / 4, 1)
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        self._stroke(corners, edge_color, linewidth, alpha, line_style)
        return self.output

    def draw_rotated_box_with_label(
        self,
        rotated_box: Sequence[float],
        alpha: float = 0.5,
        edge_color: Any = "g",
        line_style: str = "-",
        label: str | None = None,
    ) -> VisImage:
        """Draw a rotated box ``(cx, cy, w, h, angle)`` (degrees, counter-clockwise); its
        top edge (in the box's frame) is dashed to show the orientation.
        """
        cx, cy, w, h, angle = (float(v) for v in rotated_box)
        area = w * h
        # thinner lines for small boxes
        linewidth = self._default_font_size / (
            6 if area < _SMALL_OBJECT_AREA_THRESH * self.output.scale else 3
        )
        theta = math.radians(angle)
        c, s = math.cos(theta), math.sin(theta)
        rect = [(-w / 2, h / 2), (-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2)]
        pts = [(s * yy + c * xx + cx, c * yy - s * xx + cy) for xx, yy in rect]
        for k in range(4):
            j = (k + 1) % 4
            self.draw_line(
                [pts[k][0], pts[j][0]],
                [pts[k][1], pts[j][1]],
                color=edge_color,
                linestyle="--" if k == 1 else line_style,
                linewidth=linewidth,
            )
        if label is not None:
            height_ratio = h / np.sqrt(self.output.height * self.output.width)
            color = self._change_color_brightness(edge_color, brightness_factor=0.7)
            font_size = (
                np.clip((height_ratio - 0.02) / 0.08 + 1, 1.2, 2) * 0.5 * self._default_font_size
            )
            self.draw_text(label, pts[1], color=color, font_size=font_size, rotation=angle)
        return self.output

    def draw_circle(self, circle_coord: Sequence[float], color: Any, radius: float = 3) -> VisImage:
        """Draw a filled disc of ``radius`` image pixels centred at ``(x, y)``."""
        scale = self.output.scale
        x, y = circle_coord[0] * scale, circle_coord[1] * scale
        r = max(radius * scale, 0.5)
        x0, y0 = int(math.floor(x - r - 1)), int(math.floor(y - r - 1))
        size = int(math.ceil(2 * r + 3))
        layer = np.zeros((size, size), dtype=np.uint8)
        sub = 16  # 4 fractional bits
        cv2.circle(
            layer,
            (int(round((x - x0 - 0.5) * sub)), int(round((y - y0 - 0.5) * sub))),
            int(round(r * sub)),
            255,
            -1,
            cv2.LINE_AA,
            4,
        )
        self.output.blend(layer, color, 1.0, offset=(x0, y0))
        return self.output

    def draw_line(
        self,
        x_data: Sequence[float],
        y_data: Sequence[float],
        color: Any,
        linestyle: str = "-",
        linewidth: float | None = None,
    ) -> VisImage:
        """Draw a polyline through the points ``(x_data[i], y_data[i])``.

        Args:
            linestyle: ``"-"`` solid or ``"--"`` dashed.
            linewidth: in points (default: scaled to the image size).
        """
        if linewidth is None:
            linewidth = self._default_font_size / 3
        linewidth = max(linewidth, 1)
        self._stroke(list(zip(x_data, y_data)), color, linewidth, 1.0, linestyle)
        return self.output

    def draw_polygon(
        self,
        segment: np.ndarray,
        color: Any,
        edge_color: Any = None,
        alpha: float = 0.5,
    ) -> VisImage:
        """Fill a polygon with ``color`` at opacity ``alpha`` and outline it.

        Args:
            segment (ndarray[K, 2]): vertices, absolute pixels.
            edge_color: the outline's colour (default: ``color``, darker when ``alpha > 0.8``).
        """
        segment = np.asarray(segment, dtype=np.float64).reshape(-1, 2)
        if len(segment) < 3:
            raise ValueError(f"draw_polygon: a polygon needs >= 3 vertices, got {len(segment)}")
        if edge_color is None:
            edge_color = (
                self._change_color_brightness(color, brightness_factor=-0.7)
                if alpha > 0.8
                else color
            )
        scale = self.output.scale
        # cv2 puts integer coordinates on pixel centres: shift continuous coordinates by -0.5
        pts = segment * scale - 0.5
        layer, origin = self._layer_for(pts, margin=2)
        fixed = np.rint((pts - origin) * 16).astype(np.int32)
        cv2.fillPoly(layer, [fixed], 255, cv2.LINE_8, 4)
        self.output.blend(layer, color, alpha, offset=origin)
        linewidth = max(self._default_font_size // 15 * scale, 1)
        closed = [tuple(p) for p in segment] + [tuple(segment[0])]
        self._stroke(closed, edge_color, linewidth / scale, 1.0, "-", in_points=False)
        return self.output

    def draw_binary_mask(
        self,
        binary_mask: np.ndarray,
        color: Any = None,
        *,
        edge_color: Any = None,
        text: str | None = None,
        alpha: float = 0.5,
        area_threshold: float | None = 10,
    ) -> VisImage:
        """Draw a binary mask (ndarray[H, W]) translucent, with its contour and a label.

        Masks without holes are drawn as polygons (parts smaller than ``area_threshold`` pixels
        are skipped); masks with holes are painted pixel by pixel, without a contour.
        """
        if color is None:
            color = random_color(rgb=True, maximum=1)
        color = _to_rgb(color)
        if isinstance(binary_mask, torch.Tensor):
            binary_mask = binary_mask.cpu().numpy()
        binary_mask = np.asarray(binary_mask)
        if binary_mask.shape != (self.output.height, self.output.width):
            raise ValueError(
                f"draw_binary_mask: mask of shape {binary_mask.shape}, expected "
                f"{(self.output.height, self.output.width)}"
            )
        binary_mask = binary_mask.astype(np.uint8)
        mask = GenericMask(binary_mask, self.output.height, self.output.width)
        has_valid_segment = False
        if not mask.has_holes:
            for segment in mask.polygons:
                area = mask_util.area(
                    mask_util.frPyObjects([list(map(float, segment))], *binary_mask.shape)
                )[0]
                if area < (area_threshold or 0):
                    continue
                has_valid_segment = True
                self.draw_polygon(
                    segment.reshape(-1, 2), color=color, edge_color=edge_color, alpha=alpha
                )
        else:
            has_valid_segment = True
            self.output.blend_rgba(color, (mask.mask == 1).astype(np.float32) * alpha)
        if text is not None and has_valid_segment:
            lighter = self._change_color_brightness(color, brightness_factor=0.7)
            self._draw_text_in_mask(binary_mask, text, lighter)
        return self.output

    def draw_soft_mask(
        self,
        soft_mask: np.ndarray,
        color: Any = None,
        *,
        text: str | None = None,
        alpha: float = 0.5,
    ) -> VisImage:
        """Draw a soft mask (ndarray[H, W] float in [0, 1]) with per-pixel opacity
        ``alpha * soft_mask``."""
        if color is None:
            color = random_color(rgb=True, maximum=1)
        color = _to_rgb(color)
        soft_mask = np.asarray(soft_mask, dtype=np.float32)
        if soft_mask.shape != (self.output.height, self.output.width):
            raise ValueError(
                f"draw_soft_mask: mask of shape {soft_mask.shape}, expected "
                f"{(self.output.height, self.output.width)}"
            )
        self.output.blend_rgba(color, soft_mask.clip(0, 1) * alpha)
        if text is not None:
            lighter = self._change_color_brightness(color, brightness_factor=0.7)
            self._draw_text_in_mask((soft_mask > 0.5).astype(np.uint8), text, lighter)
        return self.output

    def get_output(self) -> VisImage:
        return self.output

    # ------------------------------------------------------------------ helpers
    def _layer_for(self, pts: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
        """A zero coverage layer covering ``pts`` (canvas pixels) plus ``margin``, clipped to
        the canvas; returns it and its top-left corner (x, y)."""
        lo = np.floor(pts.min(axis=0) - margin).astype(int)
        hi = np.ceil(pts.max(axis=0) + margin).astype(int)
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, [self.output.canvas_width, self.output.canvas_height])
        hi = np.maximum(hi, lo + 1)
        layer = np.zeros((int(hi[1] - lo[1]), int(hi[0] - lo[0])), dtype=np.uint8)
        return layer, lo

    def _stroke(
        self,
        points: Sequence[tuple[float, float]],
        color: Any,
        linewidth: float,
        alpha: float,
        linestyle: str,
        in_points: bool = True,
    ) -> None:
        """Stroke a polyline given in image coordinates; ``linewidth`` in points (matplotlib's
        unit) or, with ``in_points=False``, in image pixels."""
        if linestyle not in ("-", "--", "solid", "dashed"):
            raise ValueError(f"unknown line style {linestyle!r}: use '-' or '--'")
        scale = self.output.scale
        width_px = linewidth * scale * (_PX_PER_POINT if in_points else 1.0)
        thickness = max(int(round(width_px)), 1)
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) * scale - 0.5
        layer, origin = self._layer_for(pts, margin=thickness + 2)
        rel = pts - origin
        if linestyle in ("--", "dashed"):
            dash = 3.7 * width_px + 2  # matplotlib's dash pattern: 3.7 on, 1.6 off (x width)
            gap = 1.6 * width_px + 2
            segments = []
            for a, b in zip(rel[:-1], rel[1:]):
                length = float(np.hypot(*(b - a)))
                if length == 0:
                    continue
                starts = np.arange(0.0, length, dash + gap)
                ends = np.minimum(starts + dash, length)
                d = (b - a) / length
                for s0, s1 in zip(starts, ends):
                    segments.append(np.stack([a + d * s0, a + d * s1]))
        else:
            segments = [rel]
        polylines = [np.rint(s * 16).astype(np.int32) for s in segments]
        cv2.polylines(layer, polylines, False, 255, thickness, cv2.LINE_AA, 4)
        self.output.blend(layer, color, alpha, offset=tuple(int(v) for v in origin))

    def _draw_text_in_mask(self, binary_mask: np.ndarray, text: str, color: Any) -> None:
        """Label the largest connected part of a mask (and any very large part) at its median."""
        num, cc_labels, stats, _ = cv2.connectedComponentsWithStats(binary_mask, connectivity=8)
        if num <= 1:
            return
        largest = int(np.argmax(stats[1:, -1])) + 1
        for cid in range(1, num):
            if cid == largest or stats[cid, -1] > _LARGE_MASK_AREA_THRESH:
                ys, xs = (cc_labels == cid).nonzero()
                self.draw_text(text, (float(np.median(xs)), float(np.median(ys))), color=color)

    def _convert_boxes(self, boxes: Any) -> np.ndarray:
        if isinstance(boxes, (Boxes, RotatedBoxes)):
            return boxes.tensor.detach().cpu().numpy()
        if isinstance(boxes, torch.Tensor):
            boxes = boxes.detach().cpu().numpy()
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.size == 0:
            return boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] not in (4, 5):
            raise ValueError(f"boxes must be (N, 4) or (N, 5), got {boxes.shape}")
        return boxes

    def _convert_masks(self, masks_or_polygons: Any) -> list[GenericMask]:
        m = masks_or_polygons
        if isinstance(m, PolygonMasks):
            m = m.polygons
        if isinstance(m, BitMasks):
            m = m.tensor
        if isinstance(m, torch.Tensor):
            m = m.detach().cpu().numpy()
        return [
            x
            if isinstance(x, GenericMask)
            else GenericMask(x, self.output.height, self.output.width)
            for x in m
        ]

    def _convert_keypoints(self, keypoints: Any) -> np.ndarray:
        if isinstance(keypoints, Keypoints):
            keypoints = keypoints.tensor
        if isinstance(keypoints, torch.Tensor):
            keypoints = keypoints.detach().cpu().numpy()
        keypoints = np.asarray(keypoints, dtype=np.float64)
        if keypoints.size == 0:
            return keypoints.reshape(0, 0, 3)
        if keypoints.ndim != 3 or keypoints.shape[2] != 3:
            raise ValueError(f"keypoints must be (N, K, 3), got {keypoints.shape}")
        return keypoints

    def _jitter(self, color: Any) -> tuple[float, float, float]:
        """``color`` moved by a random offset of norm 0.5, to tell instances of a class apart."""
        c = np.asarray(_to_rgb(color))
        vec = np.random.rand(3)
        vec = vec / np.linalg.norm(vec) * 0.5
        return tuple(np.clip(vec + c, 0, 1).tolist())

    def _create_grayscale_image(self, mask: np.ndarray | None = None) -> np.ndarray:
        """The image in grey (channel mean), in colour where ``mask`` (ndarray[H, W] bool)."""
        grey = self.img.astype(np.float32).mean(axis=2)
        out = np.stack([grey] * 3, axis=2)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            out[mask] = self.img[mask]
        return out

    def _change_color_brightness(
        self, color: Any, brightness_factor: float
    ) -> tuple[float, float, float]:
        """Lighten (factor in (0, 1]) or darken (factor in [-1, 0)) a colour in HLS space."""
        if not -1.0 <= brightness_factor <= 1.0:
            raise ValueError(f"brightness_factor must be in [-1, 1], got {brightness_factor}")
        h, lightness, s = colorsys.rgb_to_hls(*_to_rgb(color))
        lightness = min(max(lightness + brightness_factor * lightness, 0.0), 1.0)
        return colorsys.hls_to_rgb(h, lightness, s)
