"""Logging setup and rate-limited logging helpers."""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections import Counter
from typing import Any

from tabulate import tabulate

from torchdet.utils.file_io import PathManager

__all__ = [
    "create_small_table",
    "log_every_n",
    "log_every_n_seconds",
    "log_first_n",
    "setup_logger",
]


class _ColorfulFormatter(logging.Formatter):
    """Prefixes warnings and errors with a coloured tag (terminal output only)."""

    def __init__(self, *args: Any, root_name: str, abbrev_name: str = "", **kwargs: Any):
        self._root_name = root_name + "."
        self._abbrev_name = (abbrev_name + ".") if abbrev_name else ""
        super().__init__(*args, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.name = record.name.replace(self._root_name, self._abbrev_name)
        log = super().formatMessage(record)
        from termcolor import colored

        if record.levelno == logging.WARNING:
            prefix = colored("WARNING", "red", attrs=["blink"])
        elif record.levelno in (logging.ERROR, logging.CRITICAL):
            prefix = colored("ERROR", "red", attrs=["blink", "underline"])
        else:
            return log
        return prefix + " " + log


# Configure each (output, rank, name) once: repeated calls would stack handlers.
@functools.lru_cache
def setup_logger(
    output: str | None = None,
    distributed_rank: int = 0,
    *,
    color: bool = True,
    name: str = "torchdet",
    abbrev_name: str | None = None,
) -> logging.Logger:
    """Configure logger ``name`` to print to stdout (rank 0 only) and optionally to a file.

    Args:
        output: a file name (ends with ``.txt`` or ``.log``) or a folder (``<folder>/log.txt``)
            to save the log to; None to not save it. Ranks > 0 write ``<file>.rank<r>``.
        distributed_rank: this process's rank.
        color: colour the WARNING/ERROR tags on the terminal.
        name: the root logger name to configure.
        abbrev_name: shorter name shown instead of ``name`` (default ``"td"`` for torchdet).

    Returns:
        The configured logger.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    if abbrev_name is None:
        abbrev_name = "td" if name == "torchdet" else name
    plain = logging.Formatter(
        "[%(asctime)s] %(name)s %(levelname)s: %(message)s", datefmt="%m/%d %H:%M:%S"
    )
    if distributed_rank == 0:
        ch = logging.StreamHandler(stream=sys.stdout)
        ch.setLevel(logging.DEBUG)
        if color:
            formatter: logging.Formatter = _ColorfulFormatter(
                "[%(asctime)s %(name)s]: %(message)s",
                datefmt="%m/%d %H:%M:%S",
                root_name=name,
                abbrev_name=str(abbrev_name),
            )
        else:
            formatter = plain
        ch.setFormatter(formatter)
        logger.addHandler(ch)
    if output is not None:
        if output.endswith(".txt") or output.endswith(".log"):
            filename = output
        else:
            filename = os.path.join(output, "log.txt")
        if distributed_rank > 0:
            filename = f"{filename}.rank{distributed_rank}"
        PathManager.mkdirs(os.path.dirname(filename) or ".")
        fh = logging.StreamHandler(_cached_log_stream(filename))
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(plain)
        logger.addHandler(fh)
    return logger


@functools.cache  # one stream per file, shared by every logger writing to it
def _cached_log_stream(filename: str):
    return PathManager.open(filename, "a")


def _find_caller() -> tuple[str, tuple[str, int, str]]:
    """The module name and (file, line, function) of the code that called the log helper."""
    frame = sys._getframe(2)
    while frame:
        code = frame.f_code
        if os.path.join("utils", "logger.") not in code.co_filename:
            mod_name = frame.f_globals["__name__"]
            if mod_name == "__main__":
                mod_name = "torchdet"
            return mod_name, (code.co_filename, frame.f_lineno, code.co_name)
        frame = frame.f_back
    return "torchdet", ("", 0, "")


_LOG_COUNTER: Counter = Counter()
_LOG_TIMER: dict[Any, float] = {}


def log_first_n(
    lvl: int, msg: str, n: int = 1, *, name: str | None = None, key: str | tuple = "caller"
) -> None:
    """Log ``msg`` only the first ``n`` times.

    Args:
        lvl: logging level.
        msg: the message.
        n: how many times to log it.
        name: logger name; default the calling module's.
        key: what makes two calls "the same": ``"caller"`` (the call site), ``"message"``, or
            both as a tuple.
    """
    if isinstance(key, str):
        key = (key,)
    if not key or any(k not in ("caller", "message") for k in key):
        raise ValueError(f"log_first_n: key must be 'caller' and/or 'message', got {key!r}")
    caller_module, caller_key = _find_caller()
    hash_key: tuple = ()
    if "caller" in key:
        hash_key = hash_key + caller_key
    if "message" in key:
        hash_key = hash_key + (msg,)
    _LOG_COUNTER[hash_key] += 1
    if _LOG_COUNTER[hash_key] <= n:
        logging.getLogger(name or caller_module).log(lvl, msg)


def log_every_n(lvl: int, msg: str, n: int = 1, *, name: str | None = None) -> None:
    """Log ``msg`` on the 1st, (n+1)-th, (2n+1)-th... call from the same call site."""
    caller_module, key = _find_caller()
    _LOG_COUNTER[key] += 1
    if n == 1 or _LOG_COUNTER[key] % n == 1:
        logging.getLogger(name or caller_module).log(lvl, msg)


def log_every_n_seconds(lvl: int, msg: str, n: float = 1, *, name: str | None = None) -> None:
    """Log ``msg`` at most once every ``n`` seconds from the same call site."""
    caller_module, key = _find_caller()
    last_logged = _LOG_TIMER.get(key)
    current_time = time.time()
    if last_logged is None or current_time - last_logged >= n:
        logging.getLogger(name or caller_module).log(lvl, msg)
        _LOG_TIMER[key] = current_time


def create_small_table(small_dict: dict[str, Any]) -> str:
    """A one-row table (header = keys, row = values), floats shown with 3 decimals.

    Args:
        small_dict: e.g. ``{"AP": 40.1, "AP50": 60.2}``.

    Returns:
        The table as a pipe-formatted string.
    """
    if not isinstance(small_dict, dict):
        raise TypeError(f"create_small_table: expected a dict, got {type(small_dict).__name__}")
    keys, values = tuple(zip(*small_dict.items(), strict=True)) if small_dict else ((), ())
    return tabulate(
        [values],
        headers=keys,
        tablefmt="pipe",
        floatfmt=".3f",
        stralign="center",
        numalign="center",
    )
