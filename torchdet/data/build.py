"""Build dataset lists and the train/test data loaders."""

from __future__ import annotations

import itertools
import logging
import pickle
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.utils.data as torchdata
from tabulate import tabulate

from torchdet.config import configurable
from torchdet.structures import BoxMode

from .catalog import DatasetCatalog, MetadataCatalog
from .common import (
    AspectRatioGroupedDataset,
    DatasetFromList,
    MapDataset,
    PackAfter,
    ToIterableDataset,
    UnpackedLoader,
)
from .dataset_mapper import DatasetMapper
from .detection_utils import check_metadata_consistency
from .samplers import (
    InferenceSampler,
    RandomSubsetTrainingSampler,
    RepeatFactorTrainingSampler,
    TrainingSampler,
)
from .samplers.distributed_sampler import _rank_and_world_size

__all__ = [
    "build_batch_data_loader",
    "build_detection_test_loader",
    "build_detection_train_loader",
    "filter_images_with_few_keypoints",
    "filter_images_with_only_crowd_annotations",
    "get_detection_dataset_dicts",
    "load_proposals_into_dataset",
    "print_instances_class_histogram",
    "trivial_batch_collator",
    "worker_init_reset_seed",
]

logger = logging.getLogger(__name__)


def filter_images_with_only_crowd_annotations(dataset_dicts: list[dict]) -> list[dict]:
    """Drop images with no non-crowd annotation (they give no training signal); logs the count."""
    num_before = len(dataset_dicts)
    kept = [d for d in dataset_dicts if any(a.get("iscrowd", 0) == 0 for a in d["annotations"])]
    logger.info(
        "Removed %d images with no usable annotations. %d images left.",
        num_before - len(kept),
        len(kept),
    )
    return kept


def filter_images_with_few_keypoints(
    dataset_dicts: list[dict], min_keypoints_per_image: int
) -> list[dict]:
    """Drop images with fewer than ``min_keypoints_per_image`` visible keypoints; logs the count."""

    def num_visible(d: dict) -> int:
        return sum(
            int((np.asarray(a["keypoints"][2::3]) > 0).sum())
            for a in d["annotations"]
            if "keypoints" in a
        )

    num_before = len(dataset_dicts)
    kept = [d for d in dataset_dicts if num_visible(d) >= min_keypoints_per_image]
    logger.info(
        "Removed %d images with fewer than %d keypoints.",
        num_before - len(kept),
        min_keypoints_per_image,
    )
    return kept


def load_proposals_into_dataset(dataset_dicts: list[dict], proposal_file: str) -> list[dict]:
    """Attach precomputed proposals from a pickle to the dicts (in place, also returned).

    The pickle holds ``ids``, ``boxes``, ``objectness_logits`` (or the legacy ``indexes`` and
    ``scores``) and optionally ``bbox_mode``. Each dict gets ``proposal_boxes``,
    ``proposal_objectness_logits`` (sorted by decreasing logit) and ``proposal_bbox_mode``.
    """
    logger.info("Loading proposals from: %s", proposal_file)
    with open(proposal_file, "rb") as f:
        proposals = pickle.load(f, encoding="latin1")
    for old, new in (("indexes", "ids"), ("scores", "objectness_logits")):
        if old in proposals:
            proposals[new] = proposals.pop(old)
    for key in ("ids", "boxes", "objectness_logits"):
        if key not in proposals:
            raise KeyError(f"proposal file {proposal_file} has no {key!r} entry")
    img_ids = {str(d["image_id"]) for d in dataset_dicts}
    id_to_index = {str(i): k for k, i in enumerate(proposals["ids"]) if str(i) in img_ids}
    bbox_mode = BoxMode(proposals["bbox_mode"]) if "bbox_mode" in proposals else BoxMode.XYXY_ABS
    for record in dataset_dicts:
        key = str(record["image_id"])
        if key not in id_to_index:
            raise KeyError(f"proposal file {proposal_file} has no proposals for image_id {key}")
        i = id_to_index[key]
        logits = np.asarray(proposals["objectness_logits"][i])
        order = logits.argsort()[::-1]
        record["proposal_boxes"] = np.asarray(proposals["boxes"][i])[order]
        record["proposal_objectness_logits"] = logits[order]
        record["proposal_bbox_mode"] = bbox_mode
    return dataset_dicts


def print_instances_class_histogram(dataset_dicts: list[dict], class_names: list[str]) -> None:
    """Log a table of the number of non-crowd instances per class."""
    num_classes = len(class_names)
    histogram = np.zeros((num_classes,), dtype=int)
    for d in dataset_dicts:
        classes = np.asarray(
            [a["category_id"] for a in d["annotations"] if not a.get("iscrowd", 0)], dtype=int
        )
        if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(
                f"image {d.get('file_name', '?')} (image_id={d.get('image_id', '?')}) has "
                f"category ids {sorted(set(classes.tolist()))} outside [0, {num_classes})"
            )
        histogram += np.bincount(classes, minlength=num_classes)[:num_classes]

    def short(name: str) -> str:
        return name if len(name) <= 13 else name[:11] + ".."

    n_cols = min(6, num_classes * 2)
    cells: list[Any] = list(
        itertools.chain(*[[short(class_names[i]), int(v)] for i, v in enumerate(histogram)])
    )
    total = int(histogram.sum())
    cells.extend([None] * ((n_cols - len(cells) % n_cols) % n_cols))
    if num_classes > 1:
        cells.extend(["total", total])
    rows = itertools.zip_longest(*[cells[i::n_cols] for i in range(n_cols)])
    table = tabulate(
        rows,
        headers=["category", "#instances"] * (n_cols // 2),
        tablefmt="pipe",
        numalign="left",
        stralign="center",
    )
    logger.info("Distribution of instances among all %d categories:\n%s", num_classes, table)


def get_detection_dataset_dicts(
    names: str | list[str],
    filter_empty: bool = True,
    min_keypoints: int = 0,
    proposal_files: list[str] | None = None,
    check_consistency: bool = True,
) -> list[dict] | torchdata.Dataset:
    """Load and concatenate registered datasets for detection.

    Args:
        names: registered dataset name(s).
        filter_empty: drop images with no non-crowd annotation.
        min_keypoints: drop images with fewer visible keypoints.
        proposal_files: one proposal pickle per dataset.
        check_consistency: require equal ``thing_classes`` and log a class histogram.

    Returns:
        list[dict] in Detectron2's standard format (or a torch Dataset if the catalog
        holds datasets).
    """
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError("get_detection_dataset_dicts: no dataset names given")
    dataset_dicts = [DatasetCatalog.get(name) for name in names]
    if isinstance(dataset_dicts[0], torchdata.Dataset):
        if len(dataset_dicts) > 1:
            return torchdata.ConcatDataset(dataset_dicts)
        return dataset_dicts[0]
    for name, dicts in zip(names, dataset_dicts):
        if len(dicts) == 0:
            raise ValueError(f"dataset {name!r} is empty")
    if proposal_files is not None:
        if len(proposal_files) != len(names):
            raise ValueError(
                f"{len(proposal_files)} proposal files given for {len(names)} datasets {names}"
            )
        dataset_dicts = [
            load_proposals_into_dataset(dicts, f) for dicts, f in zip(dataset_dicts, proposal_files)
        ]
    dataset_dicts = list(itertools.chain.from_iterable(dataset_dicts))

    has_instances = "annotations" in dataset_dicts[0]
    if filter_empty and has_instances:
        dataset_dicts = filter_images_with_only_crowd_annotations(dataset_dicts)
    if min_keypoints > 0 and has_instances:
        dataset_dicts = filter_images_with_few_keypoints(dataset_dicts, min_keypoints)
    if check_consistency and has_instances:
        try:
            class_names = MetadataCatalog.get(names[0]).thing_classes
        except AttributeError:  # no thing_classes: nothing to compare or count
            class_names = None
        if class_names is not None:
            check_metadata_consistency("thing_classes", names)
            print_instances_class_histogram(dataset_dicts, class_names)
    if not dataset_dicts:
        raise ValueError(f"no valid data found in {', '.join(names)} after filtering")
    return dataset_dicts


def trivial_batch_collator(batch: list) -> list:
    """Keep a batch as the list of its items (models take lists of dicts)."""
    return batch


def worker_init_reset_seed(worker_id: int) -> None:
    """Seed python, numpy and torch in a DataLoader worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**31 + worker_id  # as Detectron2 (torch seeds differ already)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_batch_data_loader(
    dataset: torchdata.Dataset,
    sampler: torchdata.Sampler | None,
    total_batch_size: int,
    *,
    aspect_ratio_grouping: bool = False,
    num_workers: int = 0,
    collate_fn: Callable | None = None,
    drop_last: bool = True,
    prefetch_factor: int | None = None,
    persistent_workers: bool = False,
    pin_memory: bool = False,
):
    """A loader of per-rank batches (``total_batch_size / world_size`` items each).

    Args:
        dataset: a map-style dataset (iterated in ``sampler`` order) or an iterable dataset.
        sampler: yields indices; must be ``None`` for an iterable dataset.
        total_batch_size: summed over all ranks (GPUs); must divide by the world size.
        aspect_ratio_grouping: batch landscape and portrait images separately.
        num_workers: DataLoader worker processes.
        collate_fn: applied to each list of items; default keeps the list.
        drop_last: drop a last incomplete batch (only without aspect-ratio grouping).
        prefetch_factor, persistent_workers, pin_memory: as for ``torch.utils.data.DataLoader``.

    Returns:
        An iterable of batches (a ``DataLoader``, or a wrapper of one): lists of items, or what
        ``collate_fn`` makes of them.
    """
    _, world_size = _rank_and_world_size()
    if total_batch_size <= 0 or total_batch_size % world_size != 0:
        raise ValueError(
            f"total_batch_size ({total_batch_size}) must be positive and divisible by the "
            f"world size ({world_size}) (SOLVER.IMS_PER_BATCH)"
        )
    batch_size = total_batch_size // world_size
    if isinstance(dataset, torchdata.IterableDataset):
        if sampler is not None:
            raise ValueError("sampler must be None when the dataset is iterable")
    else:
        # Without grouping each worker takes whole batches (worker k: batches k, k + K, ...) so
        # batches come out in stream order; grouping regroups single items, which then come
        # out in stream order when workers take single items in turn.
        chunk = 1 if aspect_ratio_grouping else batch_size
        dataset = ToIterableDataset(dataset, sampler, shard_chunk_size=chunk)
    loader_kwargs: dict[str, Any] = {
        "num_workers": num_workers,
        "worker_init_fn": worker_init_reset_seed,
        "pin_memory": pin_memory,
    }
    if num_workers > 0:
        loader_kwargs["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            loader_kwargs["prefetch_factor"] = prefetch_factor
    # Workers send each item as one bytes object (see common.pack_for_transfer): passing every
    # tensor through its own shared-memory segment dominated the main process's time. Pinned
    # memory needs the tensors themselves, so it keeps torch's transport.
    pack = num_workers > 0 and not pin_memory
    if aspect_ratio_grouping:
        if num_workers > 0 and prefetch_factor is None:
            # This loader moves single items: prefetch as many as a batched loader's default
            # (2 batches per worker) would, so a briefly descheduled worker does not stall it.
            loader_kwargs["prefetch_factor"] = 2 * batch_size
        loader = torchdata.DataLoader(
            dataset,
            batch_size=None,
            collate_fn=PackAfter() if pack else _identity,
            **loader_kwargs,
        )
        grouped = AspectRatioGroupedDataset(UnpackedLoader(loader) if pack else loader, batch_size)
        if collate_fn is None:
            return grouped
        return MapDataset(grouped, collate_fn)
    collate = trivial_batch_collator if collate_fn is None else collate_fn
    loader = torchdata.DataLoader(
        dataset,
        batch_size=batch_size,
        drop_last=drop_last,
        collate_fn=PackAfter(collate) if pack else collate,
        **loader_kwargs,
    )
    return UnpackedLoader(loader) if pack else loader


def _identity(x: Any) -> Any:
    return x


def _train_loader_from_config(cfg, mapper=None, *, dataset=None, sampler=None) -> dict:
    if dataset is None:
        dataset = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN,
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            min_keypoints=(
                cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0
            ),
            proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
        )
    if mapper is None:
        mapper = DatasetMapper(cfg, True)
    if sampler is None:
        name = cfg.DATALOADER.SAMPLER_TRAIN
        logger.info("Using training sampler %s", name)
        if name == "TrainingSampler":
            sampler = TrainingSampler(len(dataset))
        elif name == "RepeatFactorTrainingSampler":
            factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
                dataset,
                cfg.DATALOADER.REPEAT_THRESHOLD,
                sqrt=cfg.DATALOADER.get("REPEAT_SQRT", True),
            )
            sampler = RepeatFactorTrainingSampler(factors)
        elif name == "RandomSubsetTrainingSampler":
            sampler = RandomSubsetTrainingSampler(len(dataset), cfg.DATALOADER.RANDOM_SUBSET_RATIO)
        else:
            raise ValueError(
                f"DATALOADER.SAMPLER_TRAIN: unknown training sampler {name!r}; expected "
                "TrainingSampler, RepeatFactorTrainingSampler or RandomSubsetTrainingSampler"
            )
    return {
        "dataset": dataset,
        "sampler": sampler,
        "mapper": mapper,
        "total_batch_size": cfg.SOLVER.IMS_PER_BATCH,
        "aspect_ratio_grouping": cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
    }


@configurable(from_config=_train_loader_from_config)
def build_detection_train_loader(
    dataset: list | torchdata.Dataset,
    *,
    mapper: Callable | None,
    sampler: torchdata.Sampler | None = None,
    total_batch_size: int,
    aspect_ratio_grouping: bool = True,
    num_workers: int = 0,
    collate_fn: Callable | None = None,
    **kwargs: Any,
):
    """An infinite training loader yielding lists of ``total_batch_size / world_size`` mapped
    dicts. Call it with plain arguments or as ``build_detection_train_loader(cfg)``
    (``DATASETS.TRAIN``, ``DATALOADER.*``, ``SOLVER.IMS_PER_BATCH``).

    Args:
        dataset: a list of dataset dicts or a torch dataset.
        mapper: applied to each item (``None``: items are used as they are).
        sampler: index sampler; default ``TrainingSampler(len(dataset))``.
        total_batch_size, aspect_ratio_grouping, num_workers, collate_fn, **kwargs: see
            :func:`build_batch_data_loader`.

    To resume training at iteration ``it``, pass the same seed and the number of indices this
    rank consumed: ``sampler=TrainingSampler(len(dataset), seed=seed, start=it * batch)`` with
    ``batch = total_batch_size // world_size``. With a resumable sampler (the training samplers
    here), each item's augmentation randomness is seeded from (sampler seed, stream position),
    so the batches then continue exactly, with or without workers. With aspect-ratio grouping
    also restore the grouping state (``AspectRatioGroupedDataset.state_dict()``, which the
    trainer checkpoints): the images waiting in its buckets are read again.
    """
    if isinstance(dataset, list):
        dataset = DatasetFromList(dataset, copy=False)
    if mapper is not None:
        dataset = MapDataset(dataset, mapper)
    if isinstance(dataset, torchdata.IterableDataset):
        if sampler is not None:
            raise ValueError("sampler must be None when the dataset is iterable")
    else:
        if sampler is None:
            sampler = TrainingSampler(len(dataset))
        if not isinstance(sampler, torchdata.Sampler):
            raise TypeError(f"sampler must be a torch Sampler, got {type(sampler)}")
    return build_batch_data_loader(
        dataset,
        sampler,
        total_batch_size,
        aspect_ratio_grouping=aspect_ratio_grouping,
        num_workers=num_workers,
        collate_fn=collate_fn,
        **kwargs,
    )


def _test_loader_from_config(cfg, dataset_name, mapper=None) -> dict:
    if isinstance(dataset_name, str):
        dataset_name = [dataset_name]
    proposal_files = None
    if cfg.MODEL.LOAD_PROPOSALS:
        test_names = list(cfg.DATASETS.TEST)
        proposal_files = [
            cfg.DATASETS.PROPOSAL_FILES_TEST[test_names.index(x)] for x in dataset_name
        ]
    dataset = get_detection_dataset_dicts(
        dataset_name, filter_empty=False, proposal_files=proposal_files
    )
    if mapper is None:
        mapper = DatasetMapper(cfg, False)
    return {
        "dataset": dataset,
        "mapper": mapper,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
        "sampler": InferenceSampler(len(dataset))
        if not isinstance(dataset, torchdata.IterableDataset)
        else None,
    }


@configurable(from_config=_test_loader_from_config)
def build_detection_test_loader(
    dataset: list | torchdata.Dataset,
    *,
    mapper: Callable | None,
    sampler: torchdata.Sampler | None = None,
    batch_size: int = 1,
    num_workers: int = 0,
    collate_fn: Callable | None = None,
) -> torchdata.DataLoader:
    """A finite loader over every item once (this rank's ``InferenceSampler`` shard), yielding
    lists of ``batch_size`` mapped dicts. Call with plain arguments or as
    ``build_detection_test_loader(cfg, dataset_name)``.
    """
    if isinstance(dataset, list):
        dataset = DatasetFromList(dataset, copy=False)
    if mapper is not None:
        dataset = MapDataset(dataset, mapper)
    if isinstance(dataset, torchdata.IterableDataset):
        if sampler is not None:
            raise ValueError("sampler must be None when the dataset is iterable")
    elif sampler is None:
        sampler = InferenceSampler(len(dataset))
    return torchdata.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=False,
        num_workers=num_workers,
        collate_fn=trivial_batch_collator if collate_fn is None else collate_fn,
    )
