"""``DensePoseEvaluator``: AP under GPS and GPSm of a chart-based DensePose model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from torchdet.data import DatasetCatalog
from torchdet.evaluation import DatasetEvaluator
from torchdet.structures import BoxMode

from ..structures import DensePoseDataRelative
from .gps import GPS_KAPPA, average_precision, gps, gpsm, uv_distance

__all__ = ["DensePoseEvaluator"]


class DensePoseEvaluator(DatasetEvaluator):
    """Matches each image's detections (``pred_densepose``) to its annotated people.

    Args:
        dataset_name: a registered dataset whose annotations carry the DensePose keys.
        distance_fn: surface distance between (I, U, V) points, see ``gps.uv_distance``.
        kappa: the GPS normaliser.
    """

    def __init__(
        self,
        dataset_name: str,
        distance_fn: Callable = uv_distance,
        kappa: float = GPS_KAPPA,
    ) -> None:
        self.distance_fn = distance_fn
        self.kappa = kappa
        self._gt: dict = {}
        for d in DatasetCatalog.get(dataset_name):
            people = []
            for anno in d.get("annotations", []):
                if anno.get("iscrowd", 0) or DensePoseDataRelative.X_KEY not in anno:
                    continue
                box = BoxMode.convert(list(anno["bbox"]), anno["bbox_mode"], BoxMode.XYXY_ABS)
                people.append(
                    (torch.tensor(box, dtype=torch.float32), DensePoseDataRelative(dict(anno)))
                )
            self._gt[d["image_id"]] = people
        self.reset()

    def reset(self) -> None:
        self._scores: list[np.ndarray] = []
        self._gps: list[np.ndarray] = []
        self._gpsm: list[np.ndarray] = []
        self._seen: set = set()

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            if image_id not in self._gt:
                raise KeyError(f"DensePoseEvaluator: image_id {image_id} is not in the dataset")
            self._seen.add(image_id)
            people = self._gt[image_id]
            instances = out["instances"].to("cpu")
            n = len(instances)
            g = np.zeros((n, len(people)))
            gm = np.zeros((n, len(people)))
            if n and people:
                if not instances.has("pred_densepose"):
                    raise KeyError("DensePoseEvaluator: instances have no pred_densepose")
                boxes = instances.pred_boxes.tensor
                for k in range(n):
                    dp = instances.pred_densepose[k]
                    for j, (gt_box, gt) in enumerate(people):
                        args = (dp, boxes[k], gt, gt_box, self.distance_fn, self.kappa)
                        g[k, j] = gps(*args)
                        gm[k, j] = gpsm(*args)
            self._scores.append(instances.scores.numpy() if n else np.zeros(0))
            self._gps.append(g)
            self._gpsm.append(gm)

    def evaluate(self) -> dict:
        num_gt = sum(len(self._gt[i]) for i in self._seen)
        return {
            "densepose_gps": average_precision(self._scores, self._gps, num_gt),
            "densepose_gpsm": average_precision(self._scores, self._gpsm, num_gt),
        }
