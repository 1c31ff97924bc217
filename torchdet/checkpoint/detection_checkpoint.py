"""``DetectionCheckpointer``: a :class:`Checkpointer` that also reads Detectron's model zoos.

Formats, chosen by file name and content:

- ``.pkl`` with ``"model"`` and ``"__author__"``: Detectron2 model zoo (``{name: ndarray}``), loaded
  with name matching when ``"matching_heuristics"`` is set.
- any other ``.pkl``: Detectron1/Caffe2 blobs (``{"blobs": {...}}`` or a flat dict), renamed by
  :func:`convert_c2_detectron_names` and matched by suffix.
- ``.pyth``: pycls (``{"model_state": ...}``), matched by suffix.
- anything else: ``torch.save`` files, ``{"model": state_dict}`` or a bare state dict, loaded as
  is; torchvision/timm ResNet state dicts are recognised, renamed and matched by suffix. A
  ``?matching_heuristics=True`` query on the path forces suffix matching.

``.pkl`` files are read with a restricted unpickler that only builds NumPy arrays/dtypes/scalars,
numbers, strings and containers; anything else is refused unless ``allow_unsafe=True``.
"""

from __future__ import annotations

import logging
import os
import pickle
import urllib.parse
from typing import IO, Any

import torch
import torch.distributed as dist
from torch import nn

from .c2_model_loading import (
    align_and_update_state_dicts,
    convert_torchvision_resnet_names,
    is_torchvision_resnet_state_dict,
)
from .checkpointer import (
    Checkpointer,
    IncompatibleKeys,
    UnsafeCheckpointError,
    _convert_ndarray_to_tensor,
    torch_load_safe,
)

__all__ = ["DetectionCheckpointer", "load_pickle_safe"]

logger = logging.getLogger(__name__)

# (module, name) pairs a model-zoo pickle legitimately needs: array/dtype/scalar reconstruction
# (NumPy 1 and 2 module names), bytes from Python 2 pickles, and plain containers.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}
_SAFE_BUILTINS = {
    "set",
    "frozenset",
    "list",
    "tuple",
    "dict",
    "int",
    "float",
    "complex",
    "bool",
    "str",
    "bytes",
    "bytearray",
    "slice",
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], filename: str) -> None:
        super().__init__(file, encoding="latin1")  # Caffe2 files are Python 2 pickles
        self._filename = filename

    def find_class(self, module: str, name: str) -> Any:
        allowed = (
            (module, name) in _SAFE_GLOBALS
            or (module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS)
            or (module == "numpy.dtypes" and name.endswith("DType"))
        )
        if not allowed:
            raise UnsafeCheckpointError(
                f"Refusing to unpickle {module}.{name} from {self._filename}: model-zoo pickles "
                "may only hold NumPy arrays, numbers, strings and containers. Unpickling other "
                "objects can run arbitrary code; if you trust this file, load it with "
                "allow_unsafe=True."
            )
        return super().find_class(module, name)


def load_pickle_safe(path: str, *, allow_unsafe: bool = False) -> Any:
    """Unpickle a ``.pkl`` checkpoint, allowing only NumPy arrays, numbers, strings, containers.

    Args:
        path: local file.
        allow_unsafe: use the plain unpickler (trusted files only).

    Raises:
        UnsafeCheckpointError: the file references any other class or function.
    """
    with open(path, "rb") as f:
        if allow_unsafe:
            return pickle.load(f, encoding="latin1")
        return _RestrictedUnpickler(f, path).load()


def _is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class DetectionCheckpointer(Checkpointer):
    """:class:`Checkpointer` that reads Detectron2/Detectron1 model-zoo files and saves only on
    the main process by default."""

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        save_to_disk: bool | None = None,
        **checkpointables: Any,
    ) -> None:
        """
        Args:
            model: the model (a DDP wrapper is unwrapped).
            save_dir: folder for checkpoints.
            save_to_disk: default: only on the main process.
            checkpointables: as :class:`Checkpointer`.
        """
        self._ddp_model = model if isinstance(model, nn.parallel.DistributedDataParallel) else None
        super().__init__(
            model,
            save_dir,
            save_to_disk=_is_main_process() if save_to_disk is None else save_to_disk,
            **checkpointables,
        )
        self._force_matching = False

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """As :meth:`Checkpointer.load`; a URL query ``?matching_heuristics=True`` is honoured
        and stripped. Under DDP, a file only some workers can read is loaded where readable and
        the parameters are then broadcast from the main worker."""
        self._force_matching = False
        if path:
            parsed = urllib.parse.urlparse(path)
            if parsed.query:
                queries = urllib.parse.parse_qs(parsed.query)
                self._force_matching = queries.pop("matching_heuristics", ["False"]) == ["True"]
                if queries:
                    raise ValueError(f"Unsupported query {sorted(queries)} in checkpoint {path}")
                path = parsed._replace(query="").geturl()

        need_sync = False
        if path and self._ddp_model is not None and dist.is_initialized():
            path = self.path_manager.get_local_path(path)
            has_file = os.path.isfile(path)
            all_has_file = [None] * dist.get_world_size()
            dist.all_gather_object(all_has_file, has_file)
            if not all_has_file[0]:
                raise FileNotFoundError(f"Checkpoint {path} not found on the main worker")
            if not all(all_has_file):
                logger.warning("Not all workers can read %s; syncing from the main worker", path)
                need_sync = True
            if not has_file:
                path = ""
        ret = super().load(path, *args, **kwargs)
        if need_sync:
            logger.info("Broadcasting model states from the main worker")
            with torch.no_grad():
                for tensor in self.model.state_dict().values():
                    dist.broadcast(tensor, src=0)
        return ret

    def _load_file(self, filename: str, *, allow_unsafe: bool = False) -> dict[str, Any]:
        if filename.endswith(".pkl"):
            data = load_pickle_safe(filename, allow_unsafe=allow_unsafe)
            if not isinstance(data, dict):
                raise TypeError(f"{filename} holds a {type(data).__name__}, not a dict")
            if "model" in data and "__author__" in data:
                self.logger.info("Reading a file from '%s'", data["__author__"])
                return data
            # Detectron1 / Caffe2: detection models keep their weights under "blobs"
            blobs = data.get("blobs", data)
            blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
            return {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}
        if filename.endswith(".pyth"):
            data = torch_load_safe(filename, allow_unsafe=allow_unsafe)
            if not isinstance(data, dict) or "model_state" not in data:
                raise KeyError(f"Cannot load .pyth file {filename}: no 'model_state' entry")
            state = {
                k: v
                for k, v in data["model_state"].items()
                if not k.endswith("num_batches_tracked")
            }
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}

        loaded = super()._load_file(filename, allow_unsafe=allow_unsafe)
        if "model" not in loaded:
            loaded = {"model": loaded}
        if is_torchvision_resnet_state_dict(loaded["model"]):
            old = loaded["model"]
            new_keys = convert_torchvision_resnet_names(old.keys())
            loaded["model"] = dict(zip(new_keys, old.values()))
            loaded["__author__"] = "torchvision"
            loaded["matching_heuristics"] = True
            self.logger.info(
                "Renamed torchvision/timm ResNet keys of %s to torchdet names", filename
            )
        if self._force_matching:
            loaded["matching_heuristics"] = True
        return loaded

    def _load_model(self, checkpoint: dict[str, Any]) -> IncompatibleKeys:
        if checkpoint.get("matching_heuristics", False):
            state = dict(checkpoint["model"])
            _convert_ndarray_to_tensor(state)
            checkpoint["model"] = align_and_update_state_dicts(
                self.model.state_dict(),
                state,
                c2_conversion=checkpoint.get("__author__") == "Caffe2",
            )
        incompatible = super()._load_model(checkpoint)

        # pixel_mean/std are buffers set from the config; old checkpoints lack them.
        own_buffers = dict(self.model.named_buffers(recurse=False))
        missing = [
            k
            for k in incompatible.missing_keys
            if k not in ("pixel_mean", "pixel_std") or k not in own_buffers
        ]
        # cell anchors were persistent buffers in old checkpoints; they are derived now.
        unexpected = [
            k for k in incompatible.unexpected_keys if "anchor_generator.cell_anchors" not in k
        ]
        return incompatible._replace(missing_keys=missing, unexpected_keys=unexpected)
