"""Paths, URLs and downloads: a small stand-in for iopath's ``PathManager``.

Local paths go through :mod:`os`; paths with a remote protocol (``s3://``, ``gs://``,
``memory://`` ...) go through :mod:`fsspec`; ``http(s)://`` files and the ``detectron2://`` model
zoo are downloaded once into :func:`get_cache_dir` and then read locally. Higher packages add
their own prefixes with :meth:`PathManager.register_handler` (``torchdet.checkpoint`` adds
``catalog://``), so this module never imports upward.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import IO, Any

__all__ = [
    "DETECTRON2_URL_PREFIX",
    "PathManager",
    "download",
    "file_sha256",
    "get_cache_dir",
]

logger = logging.getLogger(__name__)

DETECTRON2_URL_PREFIX = "https://dl.fbaipublicfiles.com/detectron2/"
_CHUNK_SIZE = 1 << 20


def get_cache_dir(cache_dir: str | None = None) -> str:
    """Where downloaded files are kept.

    Args:
        cache_dir: an explicit folder; wins over everything else.

    Returns:
        ``cache_dir`` if given, else ``$TORCHDET_CACHE``, else ``~/.cache/torchdet``
        (user and variables expanded). The folder is not created here.
    """
    if cache_dir is None:
        cache_dir = os.environ.get("TORCHDET_CACHE") or "~/.cache/torchdet"
    return os.path.abspath(os.path.expandvars(os.path.expanduser(cache_dir)))


def file_sha256(path: str) -> str:
    """The hex SHA-256 digest of a local file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(path: str, sha256: str, url: str) -> None:
    """Raise ``ValueError`` when ``path``'s digest does not start with ``sha256``."""
    actual = file_sha256(path)
    if not actual.startswith(sha256.lower()):
        raise ValueError(
            f"Checksum mismatch for {url}: expected sha256 {sha256}, got {actual} "
            f"(file {path}). The download is corrupt or the expected checksum is wrong."
        )


def _local_path_of_file_url(url: str) -> str:
    return urllib.request.url2pathname(urllib.parse.urlparse(url).path)


def _is_remote_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def download(
    url: str,
    dir: str | None = None,
    filename: str | None = None,
    progress: bool = True,
    sha256: str | None = None,
    *,
    timeout: float = 60.0,
) -> str:
    """Download ``url`` into ``dir`` once, resuming an interrupted download.

    The bytes stream into ``<dir>/<filename>.partial``; when a ``.partial`` file is already there,
    only the rest is requested (HTTP ``Range``). The finished file is checked against ``sha256``
    (when given), flushed to disk and atomically renamed, so ``<dir>/<filename>`` is either absent
    or complete. A file already at the destination is not downloaded again.

    Args:
        url: ``http(s)://`` URL. A ``file://`` URL or a plain local path is returned as a local
            path without copying.
        dir: destination folder; default :func:`get_cache_dir`.
        filename: destination file name; default the last component of the URL path.
        progress: show a tqdm progress bar.
        sha256: expected hex SHA-256 of the file, or a prefix of it (at least 6 hex digits).
        timeout: socket timeout in seconds.

    Returns:
        The local path of the file.

    Raises:
        ValueError: bad ``sha256`` argument, or the downloaded file does not match it (the
            corrupt ``.partial`` is deleted).
        FileNotFoundError: a ``file://`` URL or local path that does not exist.
        OSError: the server cannot be reached or answers with an HTTP error.
    """
    if not isinstance(url, str) or not url:
        raise TypeError(f"download: url must be a non-empty str, got {url!r}")
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{6,64}", sha256):
        raise ValueError(f"download: sha256 must be 6 to 64 hex digits, got {sha256!r}")
    if url.startswith("file://") or "://" not in url:
        local = _local_path_of_file_url(url) if url.startswith("file://") else url
        if not os.path.exists(local):
            raise FileNotFoundError(f"download: local file {local} (from {url}) does not exist")
        if sha256 is not None:
            _check_sha256(local, sha256, url)
        return local
    if not _is_remote_url(url):
        raise ValueError(f"download: unsupported URL scheme in {url!r} (http, https, file)")

    dir = get_cache_dir() if dir is None else dir
    if filename is None:
        filename = os.path.basename(urllib.parse.urlparse(url).path)
        if not filename:
            raise ValueError(f"download: cannot infer a file name from {url!r}; pass filename=")
    os.makedirs(dir, exist_ok=True)
    target = os.path.join(dir, filename)
    if not os.path.isfile(target):
        # Several processes (e.g. DDP workers) may ask for the same file: one downloads, the
        # others wait on the lock and then find the finished file.
        with _file_lock(target + ".lock"):
            if not os.path.isfile(target):
                _download_locked(url, target, progress=progress, sha256=sha256, timeout=timeout)
                return target
    logger.info("File %s exists, skipping download of %s", target, url)
    if sha256 is not None:
        _check_sha256(target, sha256, url)
    return target


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: no cross-process lock, downloads may race
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _download_locked(
    url: str, target: str, *, progress: bool, sha256: str | None, timeout: float
) -> None:
    partial = target + ".partial"
    _fetch_into(url, partial, progress=progress, timeout=timeout)
    if sha256 is not None:
        try:
            _check_sha256(partial, sha256, url)
        except ValueError:
            os.remove(partial)
            raise
    with open(partial, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(partial, target)
    logger.info("Downloaded %s to %s", url, target)


def _fetch_into(url: str, partial: str, *, progress: bool, timeout: float) -> None:
    """Stream ``url`` into ``partial``, continuing from its current size when possible."""
    from tqdm import tqdm

    offset = os.path.getsize(partial) if os.path.isfile(partial) else 0
    request = urllib.request.Request(url, headers={"User-Agent": "torchdet"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            if e.headers.get("Content-Range", "") == f"bytes */{offset}":
                return  # the partial file already holds every byte
            # The partial file is not a prefix the server can continue (e.g. it changed): restart.
            logger.warning("Server refused to resume %s; downloading it from the start", url)
            os.remove(partial)
            _fetch_into(url, partial, progress=progress, timeout=timeout)
            return
        raise OSError(f"download: HTTP {e.code} {e.reason} for {url}") from e
    except urllib.error.URLError as e:
        raise OSError(f"download: cannot reach {url}: {e.reason}") from e

    with response:
        resumed = offset > 0 and response.status == 206
        if offset and not resumed:
            logger.info("Server ignored the range request for %s; downloading from the start", url)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with (
            open(partial, "ab" if resumed else "wb") as f,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=os.path.basename(partial)[: -len(".partial")],
                disable=not progress,
            ) as bar,
        ):
            for chunk in iter(lambda: response.read(_CHUNK_SIZE), b""):
                f.write(chunk)
                bar.update(len(chunk))
            f.flush()
    size = os.path.getsize(partial)
    if total is not None and size != total:
        raise OSError(
            f"download: {url} ended after {size} of {total} bytes; call again to resume "
            f"from {partial}"
        )


class _PathManager:
    """Minimal path helpers: local paths via :mod:`os`, remote protocols via :mod:`fsspec`.

    ``get_local_path`` understands ``file://``, ``http(s)://``, ``detectron2://`` and any prefix
    added with :meth:`register_handler`.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Callable[[str], str]] = {}
        self.register_handler("detectron2://", lambda p: DETECTRON2_URL_PREFIX + p)

    def register_handler(self, prefix: str, resolve: Callable[[str], str]) -> None:
        """Resolve paths starting with ``prefix`` (e.g. ``"catalog://"``) through ``resolve``.

        Args:
            prefix: the URL prefix, ending in ``"://"``.
            resolve: maps the rest of the path (after ``prefix``) to another path or URL, which
                is then resolved again.
        """
        if not prefix.endswith("://"):
            raise ValueError(f"register_handler: prefix must end with '://', got {prefix!r}")
        self._handlers[prefix] = resolve

    def _resolve(self, path: str) -> str:
        for _ in range(8):  # handlers may chain (catalog:// -> https://), never loop forever
            for prefix, resolve in self._handlers.items():
                if path.startswith(prefix):
                    path = resolve(path[len(prefix) :])
                    break
            else:
                return path
        raise ValueError(f"PathManager: too many redirections while resolving {path!r}")

    @staticmethod
    def _protocol(path: str) -> str | None:
        match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", path)
        return match.group(1).lower() if match else None

    def get_local_path(self, path: str, *, cache_dir: str | None = None, **kwargs: Any) -> str:
        """A local file for ``path``, downloading URLs into the cache once.

        ``https://host/a/b/f.pkl`` is cached as ``<cache>/a/b/f.pkl`` (the URL path below the host),
        so Detectron2 zoo files keep their folder structure.

        Args:
            path: local path, ``file://`` URL, ``http(s)://`` URL or a registered prefix.
            cache_dir: override :func:`get_cache_dir`.
            kwargs: passed to :func:`download` (``progress``, ``sha256``).
        """
        path = self._resolve(os.fspath(path))
        protocol = self._protocol(path)
        if protocol is None:
            return path
        if protocol == "file":
            return _local_path_of_file_url(path)
        if protocol in ("http", "https"):
            url_path = urllib.parse.urlparse(path).path.lstrip("/")
            folder = os.path.join(get_cache_dir(cache_dir), os.path.dirname(url_path))
            return download(path, folder, **kwargs)
        import fsspec

        # Other protocols: fsspec copies the file into the cache the first time.
        local = os.path.join(get_cache_dir(cache_dir), protocol, path.split("://", 1)[1])
        if not os.path.isfile(local):
            os.makedirs(os.path.dirname(local), exist_ok=True)
            tmp = local + ".partial"
            with fsspec.open(path, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, local)
        return local

    def open(self, path: str, mode: str = "r", **kwargs: Any) -> IO:
        """Open a local path, a URL (downloaded first) or an fsspec path."""
        path = self._resolve(os.fspath(path))
        protocol = self._protocol(path)
        if protocol in (None, "file", "http", "https"):
            return open(self.get_local_path(path), mode, **kwargs)  # noqa: SIM115
        import fsspec

        return fsspec.open(path, mode, **kwargs).open()

    def _fs(self, path: str) -> tuple[Any, str]:
        import fsspec

        return fsspec.core.url_to_fs(path)

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists (URLs are not fetched: only local and fsspec paths)."""
        path = self._resolve(os.fspath(path))
        protocol = self._protocol(path)
        if protocol is None:
            return os.path.exists(path)
        if protocol == "file":
            return os.path.exists(_local_path_of_file_url(path))
        fs, p = self._fs(path)
        return fs.exists(p)

    def isfile(self, path: str) -> bool:
        """Whether ``path`` is an existing file."""
        path = self._resolve(os.fspath(path))
        protocol = self._protocol(path)
        if protocol is None:
            return os.path.isfile(path)
        if protocol == "file":
            return os.path.isfile(_local_path_of_file_url(path))
        fs, p = self._fs(path)
        return fs.isfile(p)

    def isdir(self, path: str) -> bool:
        """Whether ``path`` is an existing folder."""
        path = self._resolve(os.fspath(path))
        if self._protocol(path) is None:
            return os.path.isdir(path)
        fs, p = self._fs(path)
        return fs.isdir(p)

    def ls(self, path: str) -> list[str]:
        """Names (not full paths) of the entries of folder ``path``."""
        path = self._resolve(os.fspath(path))
        if self._protocol(path) is None:
            return os.listdir(path)
        fs, p = self._fs(path)
        return [os.path.basename(x.rstrip("/")) for x in fs.ls(p, detail=False)]

    def mkdirs(self, path: str) -> None:
        """Create folder ``path`` and its parents; no error if it exists."""
        path = self._resolve(os.fspath(path))
        if self._protocol(path) is None:
            os.makedirs(path, exist_ok=True)
            return
        fs, p = self._fs(path)
        fs.makedirs(p, exist_ok=True)

    def rm(self, path: str) -> None:
        """Remove file ``path``."""
        path = self._resolve(os.fspath(path))
        if self._protocol(path) is None:
            os.remove(path)
            return
        fs, p = self._fs(path)
        fs.rm(p)


PathManager = _PathManager()
