"""Defaults for common training and inference set-ups: the argument parser and set-up of the
command-line tools, ``DefaultTrainer`` (a ``SimpleTrainer``/``AMPTrainer`` built from a config
with the standard hooks) and ``DefaultPredictor``/``BatchPredictor`` (inference on raw images).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import torchdet.utils.comm as comm
from torchdet.checkpoint import DetectionCheckpointer
from torchdet.config import CfgNode
from torchdet.data import (
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from torchdet.data import transforms as T
from torchdet.modeling import build_model
from torchdet.solver import build_lr_scheduler, build_optimizer
from torchdet.utils.env import collect_env_info, seed_all_rng
from torchdet.utils.events import CommonMetricPrinter, EventWriter, JSONWriter, TensorboardXWriter
from torchdet.utils.file_io import PathManager
from torchdet.utils.logger import setup_logger

from . import hooks
from .train_loop import AMPTrainer, SimpleTrainer, TrainerBase

__all__ = [
    "BatchPredictor",
    "DefaultPredictor",
    "DefaultTrainer",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
]

logger = logging.getLogger(__name__)


def create_ddp_model(
    model: nn.Module, *, fp16_compression: bool = False, **kwargs: Any
) -> nn.Module:
    """Wrap ``model`` in ``DistributedDataParallel`` when there is more than one process.

    Args:
        model: the model.
        fp16_compression: all-reduce gradients in fp16 (less traffic, GPUs only).
        kwargs: passed to ``DistributedDataParallel`` (e.g. ``broadcast_buffers=False``).

    Returns:
        ``model`` itself with one process, else the DDP wrapper.
    """
    if comm.get_world_size() == 1:
        return model
    if "device_ids" not in kwargs and next(model.parameters()).device.type == "cuda":
        kwargs["device_ids"] = [comm.get_local_rank()]
    ddp = DistributedDataParallel(model, **kwargs)
    if fp16_compression:
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp


def _default_dist_url() -> str:
    # A port derived from the user id: two users of one machine do not collide (Detectron2's
    # convention); ``--dist-url auto`` picks a free port instead.
    port = 2**15 + 2**14 + hash(os.getuid() if sys.platform != "win32" else 1) % 2**14
    return f"tcp://127.0.0.1:{port}"


def default_argument_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    """The arguments of the training/evaluation tools (``torchdet train``, ``train_net``).

    Args:
        epilog: text shown after the help.

    Returns:
        The parser: ``--config-file``, ``--resume``, ``--eval-only``, ``--num-gpus``,
        ``--num-machines``, ``--machine-rank``, ``--dist-url`` and trailing ``opts``
        (``KEY VALUE`` config overrides).
    """
    parser = argparse.ArgumentParser(
        epilog=epilog
        or (
            "Examples:\n\nRun on one machine:\n"
            "    $ torchdet train --num-gpus 8 --config-file cfg.yaml\n\n"
            "Change some config options:\n"
            "    $ torchdet train --config-file cfg.yaml MODEL.WEIGHTS /path/to/weight.pth "
            "SOLVER.BASE_LR 0.001\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Whether to attempt to resume from the checkpoint directory.",
    )
    parser.add_argument("--eval-only", action="store_true", help="perform evaluation only")
    parser.add_argument(
        "--num-gpus", type=int, default=1, help="number of gpus (CPU processes without CUDA)"
    )
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument(
        "--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)"
    )
    parser.add_argument(
        "--dist-url",
        default=_default_dist_url(),
        help="initialization URL for pytorch distributed backend ('auto': a free local port)",
    )
    parser.add_argument(
        "opts",
        help="Modify config options at the end of the command: space-separated "
        '"PATH.KEY VALUE" pairs.',
        default=None,
        nargs=argparse.REMAINDER,
    )
    return parser


def _try_get_key(cfg: Any, *keys: str, default: Any = None) -> Any:
    """The first of ``keys`` (dotted paths) present in ``cfg``."""
    for k in keys:
        node = cfg
        try:
            for part in k.split("."):
                node = node[part] if isinstance(node, dict) else getattr(node, part)
            return node
        except (AttributeError, KeyError):
            continue
    return default


def default_setup(cfg: CfgNode, args: argparse.Namespace) -> None:
    """What every tool does first: create the output folder, set up the logger, log the
    environment and config, save the config to ``<output>/config.yaml``, seed the random
    generators (``SEED + rank``, or random when ``SEED < 0``) and set cuDNN benchmarking.

    Args:
        cfg: the full config.
        args: the parsed command line (``config_file``, ``eval_only`` are read).
    """
    output_dir = _try_get_key(cfg, "OUTPUT_DIR", "output_dir", "train.output_dir")
    if comm.is_main_process() and output_dir:
        PathManager.mkdirs(output_dir)
    rank = comm.get_rank()
    setup_logger(output_dir, distributed_rank=rank, name="torchdet")
    log = setup_logger(output_dir, distributed_rank=rank, name=__name__.split(".")[0] + "_tools")
    log.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    log.info("Environment info:\n%s", collect_env_info())
    log.info("Command line arguments: %s", args)
    config_file = getattr(args, "config_file", "")
    if config_file:
        with PathManager.open(config_file, "r") as f:
            log.info("Contents of args.config_file=%s:\n%s", config_file, f.read())
    if comm.is_main_process() and output_dir and isinstance(cfg, CfgNode):
        path = os.path.join(output_dir, "config.yaml")
        with PathManager.open(path, "w") as f:
            f.write(cfg.dump())
        log.info("Full config saved to %s", path)
    seed = _try_get_key(cfg, "SEED", "train.seed", default=-1)
    seed_all_rng(None if seed < 0 else seed + rank)
    if not getattr(args, "eval_only", False):
        torch.backends.cudnn.benchmark = bool(
            _try_get_key(cfg, "CUDNN_BENCHMARK", "train.cudnn_benchmark", default=False)
        )


def default_writers(output_dir: str, max_iter: int | None = None) -> list[EventWriter]:
    """The default writers: a ``CommonMetricPrinter``, a ``JSONWriter`` to
    ``<output_dir>/metrics.json`` and, when the ``tensorboard`` package is installed, a
    ``TensorboardXWriter`` to ``output_dir``.
    """
    PathManager.mkdirs(output_dir)
    writers: list[EventWriter] = [
        CommonMetricPrinter(max_iter),
        JSONWriter(os.path.join(output_dir, "metrics.json")),
    ]
    try:
        writers.append(TensorboardXWriter(output_dir))
    except ImportError:
        logger.info("tensorboard is not installed: no TensorBoard logs are written")
    return writers


class DefaultTrainer(TrainerBase):
    """A trainer with the default training logic, built from a config:

    1. builds the model, optimizer, LR scheduler and train loader from the config (override
       the ``build_*`` classmethods to change them);
    2. wraps the model in DDP with several processes; trains with ``AMPTrainer`` when
       ``SOLVER.AMP.ENABLED``, else ``SimpleTrainer``;
    3. loads ``MODEL.WEIGHTS`` or resumes from the last checkpoint (``resume_or_load``);
    4. registers the hooks of :meth:`build_hooks`: timing, LR schedule, precise BN,
       periodic checkpoints, evaluation (``TEST.EVAL_PERIOD``) and metric writers.

    Resuming is exact: a run killed at any iteration and resumed from its last checkpoint
    ends with the same weights, bit for bit, as an uninterrupted run, provided the data stream
    depends only on the sampler position, the grouping state and the saved generators (true
    for ``build_detection_train_loader``'s loaders, with workers and grouping; see
    ``SimpleTrainer``).

    Example::

        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()
    """

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        if not logging.getLogger("torchdet").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetectionCheckpointer(
            # Checkpointing the trainer saves the iteration, optimizer, scheduler (through its
            # hook), generators and data position.
            model,
            cfg.OUTPUT_DIR,
            trainer=weakref.proxy(self),
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume from ``<OUTPUT_DIR>/last_checkpoint`` when ``resume`` and it exists (weights,
        optimizer, scheduler, iteration, generators, data position; training continues at the
        next iteration); otherwise load only the weights of ``MODEL.WEIGHTS``.
        """
        self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            # The checkpoint holds the iteration that had just finished.
            self.start_iter = self.iter + 1

    def build_hooks(self) -> list[hooks.HookBase | None]:
        """The default hooks: ``IterationTimer``, ``LRScheduler``, ``PreciseBN`` (when
        enabled), ``PeriodicCheckpointer``, ``EvalHook`` and ``PeriodicWriter`` (rank 0).
        """
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.DATALOADER.NUM_WORKERS = 0  # precise BN's loader: workers would not pay off here
        ret: list[hooks.HookBase | None] = [
            hooks.IterationTimer(),
            hooks.LRScheduler(),
            hooks.PreciseBN(
                cfg.TEST.EVAL_PERIOD,
                self.model,
                # Built lazily by the hook only when it runs.
                _LazyLoader(lambda: self.build_train_loader(cfg)),
                cfg.TEST.PRECISE_BN.NUM_ITER,
            )
            if cfg.TEST.PRECISE_BN.ENABLED and hooks.get_bn_modules(self.model)
            else None,
        ]
        # On every rank: gathering the generator states for the checkpoint is a collective;
        # only rank 0's checkpointer writes.
        ret.append(hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD))

        def test_and_save_results() -> dict:
            self._last_eval_results = self.test(self.cfg, self.model)
            return self._last_eval_results

        # Evaluation after checkpointing: a failing evaluation does not lose the checkpoint.
        ret.append(hooks.EvalHook(cfg.TEST.EVAL_PERIOD, test_and_save_results))
        if comm.is_main_process():
            # Last: it writes what the other hooks logged (e.g. evaluation results).
            ret.append(hooks.PeriodicWriter(self.build_writers(), period=20))
        return ret

    def build_writers(self) -> list[EventWriter]:
        """The writers run by the ``PeriodicWriter`` (see :func:`default_writers`)."""
        return default_writers(self.cfg.OUTPUT_DIR, self.max_iter)

    def train(self) -> OrderedDict | dict | None:  # type: ignore[override]
        """Train from ``start_iter`` to ``SOLVER.MAX_ITER``.

        Returns:
            The last evaluation results (when there was an evaluation), else None.
        """
        super().train(self.start_iter, self.max_iter)
        if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
            if not hasattr(self, "_last_eval_results"):
                raise RuntimeError("TEST.EXPECTED_RESULTS is set but no evaluation ran")
            from torchdet.evaluation import verify_results

            verify_results(self.cfg, self._last_eval_results)
        return getattr(self, "_last_eval_results", None)

    def run_step(self) -> None:
        self._trainer.iter = self.iter
        self._trainer.storage = self.storage
        self._trainer.run_step()

    def prepare_for_checkpoint(self) -> None:
        """See ``SimpleTrainer.prepare_for_checkpoint`` (all ranks call it)."""
        self._trainer.prepare_for_checkpoint()

    def state_dict(self) -> dict[str, Any]:
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._trainer.load_state_dict(state_dict["_trainer"])

    @property
    def model(self) -> nn.Module:
        return self._trainer.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._trainer.optimizer

    @property
    def data_loader(self) -> Any:
        return self._trainer.data_loader

    # ------------------------------------------------------------------ builders
    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        """``torchdet.modeling.build_model(cfg)``; override to use another model."""
        model = build_model(cfg)
        logging.getLogger(__name__).info("Model:\n%s", model)
        return model

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        """``torchdet.solver.build_optimizer(cfg, model)``."""
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg: CfgNode, optimizer: torch.optim.Optimizer) -> Any:
        """``torchdet.solver.build_lr_scheduler(cfg, optimizer)``."""
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> Any:
        """``torchdet.data.build_detection_train_loader(cfg)``."""
        return build_detection_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str) -> Any:
        """``torchdet.data.build_detection_test_loader(cfg, dataset_name)``."""
        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None):
        """The evaluator for ``dataset_name``, from its metadata's ``evaluator_type``
        (``"coco"`` -> ``COCOEvaluator``). Override it for other datasets.

        Raises:
            NotImplementedError: when the dataset's evaluator type is not known here.
        """
        evaluator_type = getattr(MetadataCatalog.get(dataset_name), "evaluator_type", None)
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
        if evaluator_type in ("coco", "coco_panoptic_seg", "lvis"):
            from torchdet.evaluation import COCOEvaluator

            if evaluator_type == "coco":
                return COCOEvaluator(dataset_name, output_dir=output_folder)
        raise NotImplementedError(
            f"DefaultTrainer.build_evaluator: no default evaluator for dataset {dataset_name!r} "
            f"(MetadataCatalog evaluator_type={evaluator_type!r}). Override build_evaluator in "
            "a subclass of DefaultTrainer, or pass evaluators to DefaultTrainer.test()."
        )

    @classmethod
    def test(cls, cfg: CfgNode, model: nn.Module, evaluators: Any = None) -> OrderedDict | dict:
        """Evaluate ``model`` on every dataset of ``cfg.DATASETS.TEST``.

        Args:
            cfg: the config.
            model: the model (in any mode; evaluation switches it to eval mode temporarily).
            evaluators: one evaluator per test dataset, or None to build them with
                :meth:`build_evaluator`.

        Returns:
            dataset name -> results (or the results alone with one dataset).
        """
        from torchdet.evaluation import inference_on_dataset, print_csv_format

        log = logging.getLogger(__name__)
        if evaluators is not None and not isinstance(evaluators, list | tuple):
            evaluators = [evaluators]
        if evaluators is not None and len(cfg.DATASETS.TEST) != len(evaluators):
            raise ValueError(
                f"DefaultTrainer.test: {len(cfg.DATASETS.TEST)} test datasets "
                f"({list(cfg.DATASETS.TEST)}) but {len(evaluators)} evaluators"
            )
        results: OrderedDict = OrderedDict()
        for idx, dataset_name in enumerate(cfg.DATASETS.TEST):
            data_loader = cls.build_test_loader(cfg, dataset_name)
            if evaluators is not None:
                evaluator = evaluators[idx]
            else:
                try:
                    evaluator = cls.build_evaluator(cfg, dataset_name)
                except NotImplementedError:
                    log.warning(
                        "No evaluator found. Use `DefaultTrainer.test(evaluators=)`, "
                        "or implement its `build_evaluator` method."
                    )
                    results[dataset_name] = {}
                    continue
            results_i = inference_on_dataset(model, data_loader, evaluator)
            results[dataset_name] = results_i
            if comm.is_main_process():
                if not isinstance(results_i, dict):
                    raise TypeError(
                        f"Evaluator must return a dict on the main process. Got {results_i}."
                    )
                log.info("Evaluation results for %s in csv format:", dataset_name)
                print_csv_format(results_i)
        if len(results) == 1:
            results = next(iter(results.values()))
        return results

    @classmethod
    def test_with_TTA(cls, cfg: CfgNode, model: nn.Module) -> OrderedDict:  # noqa: N802
        """Evaluate ``model`` with test-time augmentation (``GeneralizedRCNNWithTTA``);
        results are named ``<metric>_TTA``.
        """
        try:
            from torchdet.modeling import GeneralizedRCNNWithTTA  # type: ignore[attr-defined]
        except ImportError as e:
            raise NotImplementedError(
                "test_with_TTA needs torchdet.modeling.GeneralizedRCNNWithTTA, which this "
                "install does not have"
            ) from e
        logging.getLogger(__name__).info("Running inference with test-time augmentation ...")
        model = GeneralizedRCNNWithTTA(cfg, model)
        evaluators = [
            cls.build_evaluator(
                cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA")
            )
            for name in cfg.DATASETS.TEST
        ]
        res = cls.test(cfg, model, evaluators)
        if len(cfg.DATASETS.TEST) == 1:
            res = {cfg.DATASETS.TEST[0]: res}
        return OrderedDict({k + "_TTA": v for k, v in res.items()})

    @staticmethod
    def auto_scale_workers(cfg: CfgNode, num_workers: int) -> CfgNode:
        """Scale the batch size, learning rate, iterations and periods linearly when the
        number of workers differs from ``SOLVER.REFERENCE_WORLD_SIZE`` (0: no scaling).

        E.g. with ``REFERENCE_WORLD_SIZE=8``, ``IMS_PER_BATCH=16``, ``BASE_LR=0.1``,
        ``MAX_ITER=5000``, running on 16 workers gives 32, 0.2 and 2500.

        Returns:
            The (possibly new) config; the input is not modified.
        """
        old_world_size = cfg.SOLVER.REFERENCE_WORLD_SIZE
        if old_world_size == 0 or old_world_size == num_workers:
            return cfg
        cfg = cfg.clone()
        frozen = cfg.is_frozen()
        cfg.defrost()
        if cfg.SOLVER.IMS_PER_BATCH % old_world_size != 0:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH ({cfg.SOLVER.IMS_PER_BATCH}) must be divisible by "
                f"SOLVER.REFERENCE_WORLD_SIZE ({old_world_size})"
            )
        scale = num_workers / old_world_size
        bs = cfg.SOLVER.IMS_PER_BATCH = int(round(cfg.SOLVER.IMS_PER_BATCH * scale))
        lr = cfg.SOLVER.BASE_LR = cfg.SOLVER.BASE_LR * scale
        max_iter = cfg.SOLVER.MAX_ITER = int(round(cfg.SOLVER.MAX_ITER / scale))
        warmup_iter = cfg.SOLVER.WARMUP_ITERS = int(round(cfg.SOLVER.WARMUP_ITERS / scale))
        cfg.SOLVER.STEPS = tuple(int(round(s / scale)) for s in cfg.SOLVER.STEPS)
        cfg.TEST.EVAL_PERIOD = int(round(cfg.TEST.EVAL_PERIOD / scale))
        cfg.SOLVER.CHECKPOINT_PERIOD = int(round(cfg.SOLVER.CHECKPOINT_PERIOD / scale))
        cfg.SOLVER.REFERENCE_WORLD_SIZE = num_workers
        logging.getLogger(__name__).info(
            "Auto-scaling the config to batch_size=%d, learning_rate=%g, max_iter=%d, warmup=%d.",
            bs,
            lr,
            max_iter,
            warmup_iter,
        )
        if frozen:
            cfg.freeze()
        return cfg


class _LazyLoader:
    """An iterable that builds its loader on first iteration."""

    def __init__(self, build) -> None:
        self._build = build
        self._loader = None

    def __iter__(self):
        if self._loader is None:
            self._loader = self._build()
        return iter(self._loader)


# ---------------------------------------------------------------------------- inference
def _check_image(image: Any, where: str, index: int | None = None) -> None:
    name = "original_image" if index is None else f"images[{index}]"
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"{where}: {name} must be a numpy array (H, W, C), got {type(image).__name__}"
        )
    if (
        image.ndim != 3
        or image.shape[2] not in (1, 3)
        or image.shape[0] == 0
        or image.shape[1] == 0
    ):
        raise ValueError(
            f"{where}: {name} must have shape (H, W, 3) with H, W > 0, got {image.shape}"
        )


class DefaultPredictor:
    """Run a model built from ``cfg`` on one image: loads ``MODEL.WEIGHTS``, resizes the
    image as at test time (``INPUT.MIN_SIZE_TEST``/``MAX_SIZE_TEST``), converts it to
    ``INPUT.FORMAT`` and returns the model's output at the original resolution.

    Example::

        pred = DefaultPredictor(cfg)
        outputs = pred(cv2.imread("input.jpg"))  # {"instances": Instances}
    """

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        if len(cfg.DATASETS.TEST):
            self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        checkpointer = DetectionCheckpointer(self.model)
        checkpointer.load(cfg.MODEL.WEIGHTS)
        self.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {self.input_format!r}")

    def _prepare(self, original_image: np.ndarray) -> dict[str, Any]:
        if self.input_format == "RGB":
            # The image comes in BGR order (cv2.imread's).
            original_image = original_image[:, :, ::-1]
        height, width = original_image.shape[:2]
        image = self.aug.get_transform(original_image).apply_image(original_image)
        image = torch.as_tensor(np.ascontiguousarray(image.astype("float32").transpose(2, 0, 1)))
        return {"image": image, "height": height, "width": width}

    def __call__(self, original_image: np.ndarray) -> dict:
        """
        Args:
            original_image: an image (H, W, C) in BGR order (as ``cv2.imread`` gives).

        Returns:
            The model's predictions for the image (e.g. ``{"instances": Instances}``).
        """
        _check_image(original_image, type(self).__name__)
        with torch.inference_mode():
            return self.model([self._prepare(original_image)])[0]


class BatchPredictor(DefaultPredictor):
    """``DefaultPredictor`` for a list of images, run through the model in batches."""

    def __init__(self, cfg: CfgNode, batch_size: int = 4) -> None:
        """
        Args:
            cfg: the config.
            batch_size: images per forward pass.
        """
        super().__init__(cfg)
        if int(batch_size) <= 0:
            raise ValueError(f"BatchPredictor: batch_size must be > 0, got {batch_size}")
        self.batch_size = int(batch_size)

    def __call__(self, images: Sequence[np.ndarray]) -> list[dict]:  # type: ignore[override]
        """
        Args:
            images: images (H, W, C) in BGR order.

        Returns:
            One prediction dict per image, in order.
        """
        if isinstance(images, np.ndarray):
            raise TypeError("BatchPredictor takes a list of images; use DefaultPredictor for one")
        for i, img in enumerate(images):
            _check_image(img, type(self).__name__, i)
        outputs: list[dict] = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                outputs.extend(self.model([self._prepare(img) for img in chunk]))
        return outputs
