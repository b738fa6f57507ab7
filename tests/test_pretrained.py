"""Pretrained-asset downloads against local servers only: Range resume, hashes, zips, offline errors."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
import shutil
import socket
import threading
import urllib.request
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import kpop_helpers.pretrained as pretrained
from kpop_helpers.data import DataError
from kpop_helpers.pretrained import (
    ASSETS,
    FROM_SCRATCH,
    Asset,
    DownloadError,
    GdownUnavailable,
    QuotaPageError,
    download_file,
    extract_zip,
    fetch_asset,
    fetch_humanml_stats,
    fetch_mdm_checkpoint,
    gdrive_page,
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


@pytest.fixture(autouse=True)
def no_real_gdown(monkeypatch):
    """Google Drive is never reached from tests: gdown counts as missing unless a test brings its own."""

    def missing(file_id: str, output: Path, progress: bool) -> None:
        raise GdownUnavailable("not installed")

    monkeypatch.setattr(pretrained, "_gdown_download", missing)


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
    assert "gdown: not installed" in text and "direct download: could not download" in text
    assert text.endswith(FROM_SCRATCH) and "quota" not in text
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


# --- Google Drive: gdown first, urllib second, then the manual steps ---------------------------------------


def gdown_from(server: FileServer, calls: list, leftover: bool = False):
    """A stand-in for gdown.download that serves Drive ids from the local server (`drive/<id>`), as gdown
    would: into a temporary file beside `output`, moved onto `output` when complete."""

    def download(file_id: str, output: Path, progress: bool) -> None:
        calls.append((file_id, output, progress))
        temp = output.with_name(output.name + "x1y2tmp")
        if leftover:
            temp.write_bytes(b"half")
        with urllib.request.urlopen(server.url(f"drive/{file_id}"), timeout=5) as response, open(temp, "wb") as fh:
            shutil.copyfileobj(response, fh)
        temp.replace(output)

    return download


def drive_asset(server: FileServer, **kw) -> Asset:
    fields = dict(name="drive-file", url=server.url("direct.bin"), filename="model.bin", description="a Drive file",
                  page=gdrive_page("ID123"), gdrive_id="ID123", way_on=FROM_SCRATCH)
    return Asset(**{**fields, **kw})


def test_gdown_is_tried_first_and_its_file_is_verified_and_lands_atomically(server, tmp_path, monkeypatch):
    server.files["drive/ID123"] = (PAYLOAD, "application/octet-stream")
    calls: list = []
    monkeypatch.setattr(pretrained, "_gdown_download", gdown_from(server, calls))
    dest = fetch_asset(drive_asset(server, sha256=SHA, size=len(PAYLOAD)), tmp_path, **FAST)
    assert dest == tmp_path / "model.bin" and dest.read_bytes() == PAYLOAD
    assert calls == [("ID123", tmp_path / "model.bin.part", False)]
    assert [name for name, _ in server.requests] == ["drive/ID123"]  # the direct URL was not needed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]
    with pytest.raises(DataError, match="sha256"):  # a wrong file from gdown is caught as from urllib
        fetch_asset(drive_asset(server, sha256="0" * 64), tmp_path, force=True, **FAST)
    assert not (tmp_path / "model.bin.part").exists()


def test_gdown_zip_is_unpacked(server, tmp_path, monkeypatch):
    server.files["drive/ID123"] = (_zip_bytes({"run/model000010.pt": b"w", "run/args.json": b"{}"}), "application/zip")
    monkeypatch.setattr(pretrained, "_gdown_download", gdown_from(server, []))
    asset = drive_asset(server, filename="run.zip", extract=True, provides=("run/model000010.pt", "run/args.json"))
    assert fetch_mdm_checkpoint(asset, tmp_path, **FAST).read_bytes() == b"w"


def test_gdown_failure_falls_back_to_the_direct_download(server, tmp_path, monkeypatch):
    server.files["direct.bin"] = (PAYLOAD, "application/octet-stream")
    calls: list = []
    # no drive/ID123 on the server: the stand-in fails after leaving its temporary file, as gdown does
    monkeypatch.setattr(pretrained, "_gdown_download", gdown_from(server, calls, leftover=True))
    dest = fetch_asset(drive_asset(server, sha256=SHA), tmp_path, **FAST)
    assert len(calls) == 1 and dest.read_bytes() == PAYLOAD
    assert [name for name, _ in server.requests] == ["drive/ID123", "direct.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


@pytest.mark.skipif(importlib.util.find_spec("gdown") is not None, reason="gdown is installed here")
def test_without_gdown_installed_the_direct_download_is_used(server, tmp_path, monkeypatch):
    monkeypatch.undo()  # the module's own _gdown_download, which imports gdown
    server.files["direct.bin"] = (PAYLOAD, "application/octet-stream")
    assert fetch_asset(drive_asset(server), tmp_path, **FAST).read_bytes() == PAYLOAD
    with pytest.raises(GdownUnavailable, match="not installed"):
        pretrained._gdown_download("ID123", tmp_path / "x.part", False)


def test_both_failing_give_the_manual_steps_and_the_way_on(server, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "_gdown_download", gdown_from(server, []))  # drive/ID123 is absent: 404
    asset = drive_asset(server, url=_closed_port_url(), sha256=SHA, size=len(PAYLOAD))
    cache = tmp_path / "drive" / "MyDrive" / "kpop" / "pretrained"
    with pytest.raises(DownloadError) as info:
        fetch_asset(asset, cache, retries=0, **FAST)
    text = str(info.value)
    assert not isinstance(info.value, QuotaPageError) and "quota" not in text
    assert "gdown: HTTPError" in text and "direct download: could not download" in text
    assert f"open {gdrive_page('ID123')}, download model.bin and put it in the folder {cache} " in text
    assert f"Expected: {len(PAYLOAD)} bytes, sha256 {SHA}." in text
    assert text.endswith("Or continue from scratch: set OFFICIAL_MDM = 'no' in 01_setup / BASE_MODEL = 'scratch' "
                         "in 02_finetune.")
    assert not cache.exists() or not any(cache.iterdir())


def test_drive_quota_pages_are_named_as_such(server, tmp_path, monkeypatch):
    page = b"<!DOCTYPE html><html><title>Google Drive - Virus scan warning</title>Google Drive can't scan this file"
    server.files["drive/ID123"] = (page, "application/octet-stream")  # gdown saving the page as if it were the file
    server.files["direct.bin"] = (page, "text/html; charset=utf-8")
    monkeypatch.setattr(pretrained, "_gdown_download", gdown_from(server, []))
    with pytest.raises(QuotaPageError) as info:
        fetch_asset(drive_asset(server), tmp_path, **FAST)
    text = str(info.value)
    assert "gdown: saved a web page instead of the file" in text and "answered with a web page" in text
    assert "download-quota / virus-scan confirmation page" in text and "Google Drive can't scan this file" in text
    assert gdrive_page("ID123") in text and text.endswith(FROM_SCRATCH)
    assert list(tmp_path.iterdir()) == []


def test_gdown_quota_error_and_html_body_without_html_type_are_quota_pages(server, tmp_path, monkeypatch):
    def refused(file_id: str, output: Path, progress: bool) -> None:
        raise RuntimeError("Failed to retrieve file url: Too many users have viewed or downloaded this file recently.")

    monkeypatch.setattr(pretrained, "_gdown_download", refused)
    server.files["direct.bin"] = (b"  <html><body>Quota exceeded</body></html>", "application/octet-stream")
    with pytest.raises(QuotaPageError, match=r"gdown: RuntimeError: Failed to retrieve file url: Too many users"):
        fetch_asset(drive_asset(server), tmp_path, **FAST)
    with pytest.raises(QuotaPageError, match="web page"):
        download_file(server.url("direct.bin"), tmp_path / "plain.bin", **FAST)
