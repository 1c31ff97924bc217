"""``Checkpointer`` and ``PeriodicCheckpointer`` (fvcore's semantics, crash-safe and pickle-safe).

A checkpoint is a dict ``{"model": state_dict, <checkpointable name>: state_dict, ..., **extra}``
saved with :func:`torch.save` as ``<save_dir>/<name>.pth``; ``<save_dir>/last_checkpoint`` holds
the file name of the newest one. Both files are written atomically (temporary file in the same
folder, flush + fsync, :func:`os.replace`), so a crash never leaves a truncated checkpoint or a
``last_checkpoint`` pointing at one.

Loading is safe by default: ``torch.load(..., weights_only=True)``. A file that needs arbitrary
unpickling is refused with an error that names the ``allow_unsafe=True`` opt-in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import secrets
from collections.abc import Callable, Iterable
from typing import IO, Any, NamedTuple

import numpy as np
import torch
from tabulate import tabulate
from torch import nn

from torchdet.utils.file_io import PathManager

__all__ = [
    "Checkpointer",
    "IncompatibleCheckpointError",
    "IncompatibleKeys",
    "PeriodicCheckpointer",
    "UnsafeCheckpointError",
]

LAST_CHECKPOINT = "last_checkpoint"


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint holds objects that the safe loader refuses to unpickle."""


class IncompatibleCheckpointError(ValueError):
    """``strict`` loading found missing, unexpected or wrongly shaped keys."""


class IncompatibleKeys(NamedTuple):
    """What did not load cleanly into the model.

    Attributes:
        missing_keys: model keys the checkpoint does not provide.
        unexpected_keys: checkpoint keys the model does not have.
        incorrect_shapes: ``(key, checkpoint shape, model shape)``; these were not loaded.
        checkpoint_shapes: shape of every checkpoint entry, for reporting.
        model_shapes: shape of every model entry, for reporting.
    """

    missing_keys: list[str]
    unexpected_keys: list[str]
    incorrect_shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]]
    checkpoint_shapes: dict[str, tuple[int, ...]] = {}
    model_shapes: dict[str, tuple[int, ...]] = {}

    def is_empty(self) -> bool:
        """True when everything matched."""
        return not (self.missing_keys or self.unexpected_keys or self.incorrect_shapes)

    def table(self) -> str:
        """A pipe table: one row per problem key, with checkpoint and model shapes."""

        def fmt(shape: tuple[int, ...] | None) -> str:
            return "-" if shape is None else str(tuple(shape))

        rows = [
            ("shape mismatch (skipped)", k, fmt(ckpt), fmt(model))
            for k, ckpt, model in self.incorrect_shapes
        ]
        rows += [
            ("missing in checkpoint", k, "-", fmt(self.model_shapes.get(k)))
            for k in self.missing_keys
        ]
        rows += [
            ("unexpected in checkpoint", k, fmt(self.checkpoint_shapes.get(k)), "-")
            for k in self.unexpected_keys
        ]
        return tabulate(
            rows, headers=["Problem", "Key", "Checkpoint shape", "Model shape"], tablefmt="pipe"
        )


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(shape)


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file so that it is either fully written or untouched.

    ``write(f)`` fills a temporary file in the same folder (so the rename stays on one file
    system); it is flushed, fsynced and renamed over ``path`` with :func:`os.replace`. On any
    error the temporary file is removed and ``path`` keeps its old content.

    Args:
        path: destination file (local).
        write: callback receiving the open binary file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    # Persist the rename itself; not every platform lets a folder be opened, hence the guard.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _numpy_safe_globals() -> list:
    """NumPy globals that rebuild plain arrays, dtypes and scalars (no code execution).

    Checkpoints written under NumPy 1 name ``numpy.core.*``, NumPy 2 ``numpy._core.*``: the
    functions are registered under both names.
    """
    core = np._core if hasattr(np, "_core") else np.core
    out: list = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        fn = getattr(core.multiarray, name)
        out += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return out


def torch_load_safe(path: str, *, allow_unsafe: bool = False) -> Any:
    """``torch.load`` on CPU, refusing arbitrary pickled objects unless ``allow_unsafe``.

    Args:
        path: local checkpoint file.
        allow_unsafe: unpickle anything (only for files from a trusted source).

    Raises:
        UnsafeCheckpointError: the file holds objects beyond tensors, NumPy arrays and plain
            Python containers, and ``allow_unsafe`` is False.
    """
    if allow_unsafe:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), str(e))
        raise UnsafeCheckpointError(
            f"Refusing to unpickle checkpoint {path}: it holds objects that the safe loader "
            f"(torch.load(weights_only=True)) does not accept ({detail}). Unpickling it can run "
            "arbitrary code; if you trust its source, load it with allow_unsafe=True "
            "(Checkpointer.load(..., allow_unsafe=True) or checkpointer.allow_unsafe = True)."
        ) from e


def _strip_prefix_if_present(state_dict: dict[str, Any], prefix: str) -> None:
    """Remove ``prefix`` from every key, in place, only if all keys carry it (DDP checkpoints)."""
    keys = sorted(state_dict.keys())
    if not keys or not all(k.startswith(prefix) for k in keys):
        return
    for key in keys:
        state_dict[key[len(prefix) :]] = state_dict.pop(key)
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        for key in list(metadata.keys()):
            if key == prefix.rstrip("."):
                metadata[""] = metadata.pop(key)
            elif key.startswith(prefix):
                metadata[key[len(prefix) :]] = metadata.pop(key)


def _convert_ndarray_to_tensor(state_dict: dict[str, Any]) -> None:
    """Turn NumPy arrays (``.pkl`` checkpoints) into tensors, in place."""
    for k in list(state_dict.keys()):
        v = state_dict[k]
        if isinstance(v, np.ndarray):
            # from_numpy shares memory; copy arrays it cannot view (read-only, negative strides)
            ok = v.flags.writeable and v.flags.c_contiguous
            state_dict[k] = torch.from_numpy(v if ok else v.copy())
        elif isinstance(v, np.generic):
            state_dict[k] = torch.as_tensor(v)
        elif not isinstance(v, torch.Tensor) and not k.endswith("_extra_state"):
            raise TypeError(f"Checkpoint entry {k!r} is a {type(v).__name__}, not a tensor")


def _filter_reused_missing_keys(model: nn.Module, keys: list[str]) -> list[str]:
    """Drop missing keys whose tensor is shared with a key that did load (tied weights)."""
    names_of: dict[int, set[str]] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        tensors = list(module._parameters.items()) + list(module._buffers.items())
        for name, tensor in tensors:
            if tensor is not None:
                full = f"{prefix}.{name}" if prefix else name
                names_of.setdefault(id(tensor), set()).add(full)
    missing = set(keys)
    keep = []
    for key in keys:
        aliases = set()
        for names in names_of.values():
            if key in names:
                aliases = names
                break
        if aliases and not aliases <= missing:
            continue  # loaded through another name
        keep.append(key)
    return keep


class Checkpointer:
    """Save and load a model together with other checkpointable objects.

    Example:
        >>> ckpt = Checkpointer(model, "output", optimizer=optimizer, scheduler=scheduler)
        >>> ckpt.save("model_0000999", iteration=999)  # writes output/model_0000999.pth
        >>> extra = ckpt.resume_or_load("weights.pth", resume=True)  # {"iteration": 999}
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        save_to_disk: bool = True,
        **checkpointables: Any,
    ) -> None:
        """
        Args:
            model: the model; a ``DistributedDataParallel``/``DataParallel`` wrapper is unwrapped.
            save_dir: folder for checkpoints and ``last_checkpoint``; ``""`` disables saving.
            save_to_disk: whether :meth:`save` writes anything (False on non-main workers).
            checkpointables: other objects with ``state_dict``/``load_state_dict`` (optimizer,
                scheduler, ...), saved under their keyword name.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"Checkpointer: model must be an nn.Module, got {type(model).__name__}")
        if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        self.model = model
        self.checkpointables: dict[str, Any] = {}
        for key, obj in checkpointables.items():
            self.add_checkpointable(key, obj)
        self.logger = logging.getLogger(__name__)
        self.save_dir = save_dir
        self.save_to_disk = save_to_disk
        self.path_manager = PathManager
        # Opt-ins, also accepted per call by load(): unpickle anything / fail on any mismatch.
        self.allow_unsafe = False
        self.strict = False

    def add_checkpointable(self, key: str, checkpointable: Any) -> None:
        """Save and load ``checkpointable`` under ``key`` as well."""
        if key == "model" or key in self.checkpointables:
            raise KeyError(f"Checkpointer: key {key!r} is already used")
        if not (
            hasattr(checkpointable, "state_dict") and hasattr(checkpointable, "load_state_dict")
        ):
            raise TypeError(
                f"Checkpointer: {key}={type(checkpointable).__name__} has no "
                "state_dict()/load_state_dict()"
            )
        self.checkpointables[key] = checkpointable

    # ------------------------------------------------------------------ saving
    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``<save_dir>/<name>.pth`` atomically, then point ``last_checkpoint`` at it.

        Args:
            name: file name without extension, e.g. ``"model_0004999"``.
            kwargs: extra picklable entries (``iteration=...``), returned by :meth:`load`.
        """
        if not self.save_dir or not self.save_to_disk:
            return
        data: dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        clash = set(kwargs) & set(data)
        if clash:
            raise KeyError(f"Checkpointer.save: extra entries {sorted(clash)} clash with state")
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Atomically record ``last_filename_basename`` in ``<save_dir>/last_checkpoint``."""
        path = os.path.join(self.save_dir, LAST_CHECKPOINT)
        atomic_write(path, lambda f: f.write(last_filename_basename.encode()))

    # ------------------------------------------------------------------ discovery
    def has_checkpoint(self) -> bool:
        """Whether ``save_dir`` has a ``last_checkpoint`` file."""
        return bool(self.save_dir) and os.path.isfile(os.path.join(self.save_dir, LAST_CHECKPOINT))

    def get_checkpoint_file(self) -> str:
        """Path of the latest checkpoint named in ``last_checkpoint``, or ``""`` if none."""
        try:
            with open(os.path.join(self.save_dir, LAST_CHECKPOINT)) as f:
                last_saved = f.read().strip()
        except OSError:
            return ""
        return os.path.join(self.save_dir, last_saved) if last_saved else ""

    def get_all_checkpoint_files(self) -> list[str]:
        """Every ``*.pth`` file in ``save_dir``, sorted by name."""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return []
        return sorted(
            os.path.join(self.save_dir, f)
            for f in os.listdir(self.save_dir)
            if f.endswith(".pth") and os.path.isfile(os.path.join(self.save_dir, f))
        )

    def resume_or_load(self, path: str, resume: bool = True) -> dict[str, Any]:
        """Resume from ``last_checkpoint`` when asked and present, else load only weights.

        Args:
            path: weights to start from when not resuming (may be ``""``).
            resume: prefer the latest checkpoint in ``save_dir`` (with all checkpointables).

        Returns:
            The extra entries of the loaded checkpoint (see :meth:`load`).
        """
        if resume and self.has_checkpoint():
            return self.load(self.get_checkpoint_file())
        return self.load(path, checkpointables=[])

    # ------------------------------------------------------------------ loading
    def load(
        self,
        path: str,
        checkpointables: Iterable[str] | None = None,
        *,
        strict: bool | None = None,
        allow_unsafe: bool | None = None,
    ) -> dict[str, Any]:
        """Load a checkpoint into the model and the checkpointables.

        Args:
            path: local path or URL (see ``PathManager.get_local_path``); ``""`` loads nothing.
            checkpointables: names of checkpointables to restore; None means all of them.
            strict: raise :class:`IncompatibleCheckpointError` on any missing, unexpected or
                wrongly shaped key (the model is left unchanged). Default ``self.strict``.
            allow_unsafe: unpickle arbitrary objects (trusted files only). Default
                ``self.allow_unsafe``.

        Returns:
            The checkpoint entries that were not loaded (e.g. ``{"iteration": 999}``).
        """
        if not path:
            self.logger.info("No checkpoint found. Initializing model from scratch")
            return {}
        strict = self.strict if strict is None else strict
        allow_unsafe = self.allow_unsafe if allow_unsafe is None else allow_unsafe
        self.logger.info("Loading checkpoint from %s", path)
        if not os.path.isfile(path):
            path = self.path_manager.get_local_path(path)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Checkpoint {path} not found")
        checkpoint = self._load_file(path, allow_unsafe=allow_unsafe)
        if not isinstance(checkpoint, dict) or "model" not in checkpoint:
            got = sorted(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint)
            raise KeyError(f"Checkpoint {path} has no 'model' entry (got {got})")

        backup = None
        if strict:
            backup = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        incompatible = self._load_model(checkpoint)
        if incompatible is not None:
            if strict and not incompatible.is_empty():
                self.model.load_state_dict(backup, strict=False)
                raise IncompatibleCheckpointError(
                    f"Checkpoint {path} does not match the model "
                    f"({len(incompatible.missing_keys)} missing, "
                    f"{len(incompatible.unexpected_keys)} unexpected, "
                    f"{len(incompatible.incorrect_shapes)} with another shape); "
                    f"the model was left unchanged:\n{incompatible.table()}"
                )
            self._log_incompatible_keys(incompatible)

        names = self.checkpointables if checkpointables is None else list(checkpointables)
        for key in names:
            if key not in self.checkpointables:
                raise KeyError(
                    f"Checkpointer.load: unknown checkpointable {key!r}; "
                    f"known: {sorted(self.checkpointables)}"
                )
            if key in checkpoint:
                self.logger.info("Loading %s from %s", key, path)
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
        return checkpoint

    def _load_file(self, filename: str, *, allow_unsafe: bool = False) -> dict[str, Any]:
        """Read a checkpoint file into a dict (subclasses add formats)."""
        loaded = torch_load_safe(filename, allow_unsafe=allow_unsafe)
        if not isinstance(loaded, dict):
            raise TypeError(f"Checkpoint {filename} holds a {type(loaded).__name__}, not a dict")
        return loaded

    def _load_model(self, checkpoint: dict[str, Any]) -> IncompatibleKeys:
        """Load ``checkpoint["model"]`` (popped) into the model, non-strictly.

        Entries whose shape differs from the model's are removed first (e.g. another number of
        classes) and reported; ``num_batches_tracked`` counters that the model has no buffer for
        (BatchNorm checkpoints loaded into FrozenBatchNorm) are dropped silently.
        """
        state_dict = checkpoint.pop("model")
        _convert_ndarray_to_tensor(state_dict)
        _strip_prefix_if_present(state_dict, "module.")

        model_state_dict = self.model.state_dict()
        checkpoint_shapes = {k: _shape(v) for k, v in state_dict.items()}
        incorrect_shapes = []
        for k in list(state_dict.keys()):
            if k in model_state_dict:
                model_param = model_state_dict[k]
                if isinstance(model_param, nn.parameter.UninitializedParameter):
                    continue  # lazy modules take any shape
                shape_model, shape_ckpt = _shape(model_param), _shape(state_dict[k])
                if shape_model != shape_ckpt:
                    incorrect_shapes.append((k, shape_ckpt, shape_model))
                    state_dict.pop(k)
            elif k.rsplit(".", 1)[-1] == "num_batches_tracked":
                # A step counter with no effect on outputs; FrozenBN has no such buffer.
                state_dict.pop(k)

        incompatible = self.model.load_state_dict(state_dict, strict=False)
        skipped = {k for k, _, _ in incorrect_shapes}  # reported once, as shape mismatches
        missing = [k for k in incompatible.missing_keys if k not in skipped]
        return IncompatibleKeys(
            missing_keys=_filter_reused_missing_keys(self.model, missing),
            unexpected_keys=list(incompatible.unexpected_keys),
            incorrect_shapes=incorrect_shapes,
            checkpoint_shapes=checkpoint_shapes,
            model_shapes={k: _shape(v) for k, v in model_state_dict.items()},
        )

    def _log_incompatible_keys(self, incompatible: IncompatibleKeys) -> None:
        if incompatible.is_empty():
            self.logger.info("All model weights were loaded from the checkpoint")
            return
        self.logger.warning(
            "Some model weights were not loaded (%d missing, %d unexpected, %d shape mismatches; "
            "mismatched ones keep the model's initialisation):\n%s",
            len(incompatible.missing_keys),
            len(incompatible.unexpected_keys),
            len(incompatible.incorrect_shapes),
            incompatible.table(),
        )


class PeriodicCheckpointer:
    """Save a checkpoint every ``period`` iterations and at the last one, keeping the newest.

    Files are ``<file_prefix>_{iteration:07d}.pth`` and ``<file_prefix>_final.pth``
    (at ``iteration == max_iter - 1``).
    """

    def __init__(
        self,
        checkpointer: Checkpointer,
        period: int,
        max_iter: int | None = None,
        max_to_keep: int | None = None,
        file_prefix: str = "model",
    ) -> None:
        """
        Args:
            checkpointer: saves the files.
            period: save every ``period`` iterations (``(iteration + 1) % period == 0``).
            max_iter: total iterations; the last one writes ``<file_prefix>_final``.
            max_to_keep: how many periodic checkpoints to keep (``_final`` is never deleted).
            file_prefix: file name prefix.
        """
        if int(period) <= 0:
            raise ValueError(f"PeriodicCheckpointer: period must be > 0, got {period}")
        if max_to_keep is not None and max_to_keep <= 0:
            raise ValueError(f"PeriodicCheckpointer: max_to_keep must be > 0, got {max_to_keep}")
        self.checkpointer = checkpointer
        self.period = int(period)
        self.max_iter = max_iter
        self.max_to_keep = max_to_keep
        self.file_prefix = file_prefix
        self.recent_checkpoints: list[str] = []

    def step(self, iteration: int, **kwargs: Any) -> None:
        """Call once per iteration (0-based); saves when due.

        Args:
            iteration: the iteration that just finished.
            kwargs: extra entries stored in the checkpoint (``iteration`` is always added).
        """
        iteration = int(iteration)
        additional_state = {"iteration": iteration, **kwargs}
        if (iteration + 1) % self.period == 0:
            name = f"{self.file_prefix}_{iteration:07d}"
            self.checkpointer.save(name, **additional_state)
            wrote = self.checkpointer.save_to_disk and self.checkpointer.save_dir
            if self.max_to_keep is not None and wrote:
                self.recent_checkpoints.append(self.checkpointer.get_checkpoint_file())
                final = f"{self.file_prefix}_final.pth"
                while len(self.recent_checkpoints) > self.max_to_keep:
                    old = self.recent_checkpoints.pop(0)
                    if old and os.path.isfile(old) and not old.endswith(final):
                        os.remove(old)
        if self.max_iter is not None and iteration >= self.max_iter - 1:
            self.checkpointer.save(f"{self.file_prefix}_final", **additional_state)

    def save(self, name: str, **kwargs: Any) -> None:
        """Save ``name`` now, outside the schedule."""
        self.checkpointer.save(name, **kwargs)
