"""Pretrained-asset downloads against local servers only: Range resume, hashes, zips, offline errors."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from kpop_helpers.data import DataError
from kpop_helpers.pretrained import (
    ASSETS,
    Asset,
    DownloadError,
    download_file,
    extract_zip,
    fetch_asset,
    fetch_humanml_stats,
    fetch_mdm_checkpoint,
)

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, not a multiple of the read chunk boundaries below
FAST = {"backoff": 0.0, "progress": False, "timeout": 5.0}


class FileServer:
    """127.0.0.1 HTTP server for named byte blobs: honours Range, can cut responses short or ignore Range."""

    def __init__(self):
        self.files: dict[str, tuple[bytes, str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_first = 0  # number of responses to break off halfway
        self.ignore_range = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                range_header = self.headers.get("Range")
                server.requests.append((name, range_header))
                if name not in server.files:
                    self.send_error(404)
                    return
                data, ctype = server.files[name]
                start = 0
                match = re.match(r"bytes=(\d+)-$", range_header or "")
                if match and not server.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_first > 0:
                    server.cut_first -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = FileServer()
    srv.files["blob.bin"] = (PAYLOAD, "application/octet-stream")
    yield srv
    srv.close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_interrupted_download_resumes_with_range(server, tmp_path):
    server.cut_first = 1
    dest = download_file(server.url("blob.bin"), tmp_path / "blob.bin", sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "blob.bin.part").exists()
    first, second = server.requests
    assert first[1] is None
    assert second[1] is not None and int(re.match(r"bytes=(\d+)-", second[1]).group(1)) > 0


def test_partial_file_from_an_earlier_session_is_resumed(server, tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD[:300_000])
    download_file(server.url("blob.bin"), tmp_path / "blob.bin", sha256=SHA, size=len(PAYLOAD), **FAST)
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD
    assert server.requests == [("blob.bin", "bytes=300000-")]


def test_complete_partial_file_gets_416_and_is_kept(server, tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD)
    download_file(server.url("blob.bin"), tmp_path / "blob.bin", sha256=SHA, **FAST)
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.ignore_range = True
    (tmp_path / "blob.bin.part").write_bytes(b"stale bytes from another file")
    download_file(server.url("blob.bin"), tmp_path / "blob.bin", sha256=SHA, **FAST)
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD


def test_sha_mismatch_is_an_error_and_leaves_nothing(server, tmp_path):
    with pytest.raises(DataError, match="sha256"):
        download_file(server.url("blob.bin"), tmp_path / "blob.bin", sha256="0" * 64, **FAST)
    assert not (tmp_path / "blob.bin").exists() and not (tmp_path / "blob.bin.part").exists()
    with pytest.raises(DataError, match="bytes"):
        download_file(server.url("blob.bin"), tmp_path / "blob.bin", size=len(PAYLOAD) - 1, **FAST)


def test_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = download_file(src.as_uri(), tmp_path / "out" / "copy.bin", sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_html_page_instead_of_file_is_reported(server, tmp_path):
    server.files["quota"] = (b"<html>Google Drive - quota exceeded</html>", "text/html; charset=utf-8")
    with pytest.raises(DownloadError, match="web page"):
        download_file(server.url("quota"), tmp_path / "model.zip", **FAST)
    assert not (tmp_path / "model.zip.part").exists()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.zip"


def test_offline_error_says_what_to_download_and_where(tmp_path):
    asset = replace(ASSETS["humanml_trans_enc_512"], url=_closed_port_url())
    with pytest.raises(DownloadError) as info:
        fetch_asset(asset, tmp_path, retries=1, **FAST)
    text = str(info.value)
    assert asset.page in text and str(tmp_path / asset.filename) in text
    assert str(tmp_path / "humanml_trans_enc_512" / "model000475000.pt") in text
    with pytest.raises(DownloadError, match="no download URL"):
        fetch_asset(replace(asset, url=None), tmp_path)


def _zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_asset_is_downloaded_unpacked_and_reused(server, tmp_path):
    server.files["run.zip"] = (_zip_bytes({"run/model000010.pt": b"weights", "run/args.json": b"{}"}), "application/zip")
    asset = Asset(name="run", url=server.url("run.zip"), filename="run.zip", description="test run", page="by hand",
                  extract=True, provides=("run/model000010.pt", "run/args.json"))
    ckpt = fetch_mdm_checkpoint(asset, tmp_path, **FAST)
    assert ckpt == tmp_path / "run" / "model000010.pt" and ckpt.read_bytes() == b"weights"
    assert not (tmp_path / "run.zip").exists() and not list(tmp_path.glob(".extract-*"))
    fetch_mdm_checkpoint(asset, tmp_path, **FAST)
    assert len(server.requests) == 1  # already installed: no second download


def test_zip_without_the_expected_files_or_escaping_paths(server, tmp_path):
    server.files["wrong.zip"] = (_zip_bytes({"other/readme.txt": b"hi"}), "application/zip")
    asset = Asset(name="w", url=server.url("wrong.zip"), filename="wrong.zip", description="", page="",
                  extract=True, provides=("run/model.pt",))
    with pytest.raises(DataError, match="lacks"):
        fetch_asset(asset, tmp_path, **FAST)
    evil = tmp_path / "evil.zip"
    evil.write_bytes(_zip_bytes({"../../outside.txt": b"x"}))
    with pytest.raises(DataError, match="outside"):
        extract_zip(evil, tmp_path / "target")
    assert not (tmp_path / "outside.txt").exists()


def test_humanml_stats_are_fetched_and_checked(server, tmp_path):
    for name, values in (("Mean.npy", np.linspace(-1, 1, 263)), ("Std.npy", np.linspace(0.1, 2, 263))):
        buf = io.BytesIO()
        np.save(buf, values.astype(np.float32))
        server.files[name] = (buf.getvalue(), "application/octet-stream")
    import kpop_helpers.pretrained as pretrained

    patched = {k: replace(ASSETS[k], url=server.url(ASSETS[k].filename.split("/")[-1]))
               for k in ("humanml3d_mean", "humanml3d_std")}
    original = dict(pretrained.ASSETS)
    pretrained.ASSETS.update(patched)
    try:
        folder = fetch_humanml_stats(tmp_path, **FAST)
        assert np.load(folder / "Std.npy", allow_pickle=False).shape == (263,)
        np.save(folder / "Mean.npy", np.zeros(10, np.float32))  # a wrong file in the cache is caught
        with pytest.raises(DataError, match="263"):
            fetch_humanml_stats(tmp_path, **FAST)
    finally:
        pretrained.ASSETS.clear()
        pretrained.ASSETS.update(original)


def test_registry_names_the_official_assets():
    for name in ("humanml_trans_enc_512", "humanml-encoder-512-50steps", "humanml3d_mean", "humanml3d_std"):
        asset = ASSETS[name]
        assert asset.url and asset.url.startswith("https://") and asset.page
        assert Path(asset.filename).name
    assert any(p.endswith("model000475000.pt") for p in ASSETS["humanml_trans_enc_512"].provides)
    with pytest.raises(DataError, match="unknown asset"):
        fetch_asset("humanml_trans_dec_512", "/nonexistent")
