"""Downloads from a local HTTP server (resume, checksum), file:// URLs, cache dir, PathManager."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
from pathlib import Path

import pytest

from torchdet.utils import file_io
from torchdet.utils.file_io import PathManager, download, get_cache_dir

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes, every byte value, no run of equal bytes


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` and honours ``Range: bytes=N-`` unless ``server.ranges`` is False."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        time.sleep(server.delay)
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        if rng and server.ranges:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            chunk = body[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            chunk = body
            self.send_response(200)
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        self.wfile.write(chunk)
        server.bytes_sent += len(chunk)

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = {"/zoo/group/model_final_abc123.pkl": PAYLOAD}
    httpd.requests = []
    httpd.bytes_sent = 0
    httpd.ranges = True
    httpd.delay = 0.0
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


URL_PATH = "/zoo/group/model_final_abc123.pkl"


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHDET_CACHE", str(tmp_path / "c"))
    assert get_cache_dir() == str(tmp_path / "c")
    assert get_cache_dir(str(tmp_path / "explicit")) == str(tmp_path / "explicit")
    monkeypatch.delenv("TORCHDET_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_cache_dir() == str(tmp_path / "home" / ".cache" / "torchdet")


def test_download_then_reuse(server, tmp_path):
    path = download(server.base + URL_PATH, str(tmp_path), progress=False)
    assert path == str(tmp_path / "model_final_abc123.pkl")
    assert Path(path).read_bytes() == PAYLOAD
    assert not os.path.exists(path + ".partial")
    assert server.requests == [(URL_PATH, None)]
    # present already: no second request
    assert download(server.base + URL_PATH, str(tmp_path), progress=False) == path
    assert len(server.requests) == 1


def test_download_resumes_partial_file(server, tmp_path):
    target = tmp_path / "weights.pkl"
    Path(str(target) + ".partial").write_bytes(PAYLOAD[:3000])
    path = download(server.base + URL_PATH, str(tmp_path), filename="weights.pkl", progress=False)
    assert Path(path).read_bytes() == PAYLOAD
    assert server.requests == [(URL_PATH, "bytes=3000-")]
    assert server.bytes_sent == len(PAYLOAD) - 3000
    assert not os.path.exists(str(target) + ".partial")


def test_download_restarts_when_server_ignores_range(server, tmp_path):
    server.ranges = False
    Path(tmp_path / "w.pkl.partial").write_bytes(b"garbage that must not survive")
    path = download(server.base + URL_PATH, str(tmp_path), filename="w.pkl", progress=False)
    assert Path(path).read_bytes() == PAYLOAD
    assert server.bytes_sent == len(PAYLOAD)


def test_download_complete_partial_is_finished_without_body(server, tmp_path):
    Path(tmp_path / "w.pkl.partial").write_bytes(PAYLOAD)
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    path = download(server.base + URL_PATH, str(tmp_path), "w.pkl", progress=False, sha256=sha)
    assert Path(path).read_bytes() == PAYLOAD
    assert server.bytes_sent == 0


def test_download_checksum(server, tmp_path):
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    ok = download(server.base + URL_PATH, str(tmp_path / "a"), progress=False, sha256=sha[:8])
    assert Path(ok).read_bytes() == PAYLOAD

    wrong = "0" * 64
    with pytest.raises(ValueError, match="Checksum mismatch") as info:
        download(server.base + URL_PATH, str(tmp_path / "b"), progress=False, sha256=wrong)
    assert sha in str(info.value)
    # neither the file nor a .partial is left (only the lock file)
    assert os.listdir(tmp_path / "b") == ["model_final_abc123.pkl.lock"]

    with pytest.raises(ValueError, match="hex digits"):
        download(server.base + URL_PATH, str(tmp_path / "c"), sha256="xyz")


def test_concurrent_downloads_fetch_once(server, tmp_path):
    server.delay = 0.3
    results = []

    def fetch():
        results.append(download(server.base + URL_PATH, str(tmp_path), progress=False))

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [str(tmp_path / "model_final_abc123.pkl")] * 3
    assert len(server.requests) == 1
    assert Path(results[0]).read_bytes() == PAYLOAD


def test_download_http_error(server, tmp_path):
    with pytest.raises(OSError, match="HTTP 404"):
        download(server.base + "/missing.pkl", str(tmp_path), progress=False)
    assert not (tmp_path / "missing.pkl").exists()


def test_file_url_and_local_path_returned_as_is(tmp_path):
    f = tmp_path / "x.pth"
    f.write_bytes(b"abc")
    assert download(f.as_uri()) == str(f)
    assert download(str(f)) == str(f)
    assert PathManager.get_local_path(f.as_uri()) == str(f)
    assert PathManager.get_local_path(str(f)) == str(f)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        download((tmp_path / "nope.pth").as_uri())
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        download("ftp://example.com/x.pth")


def test_get_local_path_caches_url_and_detectron2_prefix(server, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHDET_CACHE", str(tmp_path))
    local = PathManager.get_local_path(server.base + URL_PATH, progress=False)
    assert local == str(tmp_path / "zoo" / "group" / "model_final_abc123.pkl")
    assert Path(local).read_bytes() == PAYLOAD

    server.files["/detectron2/COCO/m/1/model_final_x.pkl"] = b"zoo"
    monkeypatch.setattr(file_io, "DETECTRON2_URL_PREFIX", server.base + "/detectron2/")
    zoo = PathManager.get_local_path("detectron2://COCO/m/1/model_final_x.pkl", progress=False)
    assert zoo == str(tmp_path / "detectron2" / "COCO" / "m" / "1" / "model_final_x.pkl")
    assert Path(zoo).read_bytes() == b"zoo"
    with PathManager.open("detectron2://COCO/m/1/model_final_x.pkl", "rb") as f:
        assert f.read() == b"zoo"


def test_detectron2_prefix_maps_to_fbaipublicfiles():
    assert PathManager._resolve("detectron2://ImageNetPretrained/MSRA/R-50.pkl") == (
        "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl"
    )


def test_path_manager_local_and_fsspec(tmp_path):
    d = tmp_path / "a" / "b"
    PathManager.mkdirs(str(d))
    assert PathManager.isdir(str(d))
    with PathManager.open(str(d / "f.txt"), "w") as f:
        f.write("hi")
    assert PathManager.exists(str(d / "f.txt")) and PathManager.isfile(str(d / "f.txt"))
    assert not PathManager.isfile(str(d))
    assert PathManager.ls(str(d)) == ["f.txt"]
    PathManager.rm(str(d / "f.txt"))
    assert not PathManager.exists(str(d / "f.txt"))

    # another protocol goes through fsspec
    with PathManager.open("memory://torchdet_test/x.bin", "wb") as f:
        f.write(b"123")
    assert PathManager.isfile("memory://torchdet_test/x.bin")
    assert PathManager.ls("memory://torchdet_test") == ["x.bin"]
    local = PathManager.get_local_path("memory://torchdet_test/x.bin", cache_dir=str(tmp_path))
    assert Path(local).read_bytes() == b"123"
    PathManager.rm("memory://torchdet_test/x.bin")
    assert not PathManager.exists("memory://torchdet_test/x.bin")


def test_register_handler_rejects_bad_prefix():
    with pytest.raises(ValueError, match="must end with"):
        PathManager.register_handler("foo:", lambda p: p)
