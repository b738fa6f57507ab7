"""The shared atomic writer, file digests, JSON-ready values and Markdown tables (used by every layer)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from kpop_helpers.utils import (
    TEMP_RE, atomic_write, atomic_write_bytes, atomic_write_text, file_digest, fmt, json_ready, markdown_table,
    sha256_file, staged_path, temp_path_for,
)


def test_atomic_write_bytes_creates_folder_and_reports_digest(tmp_path):
    target = tmp_path / "new" / "folder" / "file.bin"
    digest = atomic_write_bytes(target, b"kpop" * 1000)
    assert target.read_bytes() == b"kpop" * 1000
    assert digest.sha256 == hashlib.sha256(b"kpop" * 1000).hexdigest() and digest.size == 4000
    assert file_digest(target) == digest and sha256_file(target) == digest.sha256
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]  # no temp file left behind


def test_atomic_write_respects_umask(tmp_path):
    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "model.json"
    atomic_write_text(target, "old")

    def broken(f):
        f.write(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]


def test_atomic_write_needs_an_existing_folder(tmp_path):
    # The checkpoint mirror relies on this: a vanished Drive mount must fail, not become a local folder.
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "gone" / "latest.json", lambda f: f.write(b"{}"))
    assert not (tmp_path / "gone").exists()


def test_temp_names_are_recognisable(tmp_path):
    match = TEMP_RE.match(temp_path_for(tmp_path / "checkpoint_epoch1_step2.pt").name)
    assert match and match["target"] == "checkpoint_epoch1_step2.pt" and int(match["pid"]) == os.getpid()


def test_atomic_write_bytes_can_refuse_to_create_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "gone" / "latest.json", b"{}", create_folder=False)
    assert not (tmp_path / "gone").exists()


def test_staged_path_commits_on_success_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "sub" / "model.onnx"
    with staged_path(target) as tmp:
        tmp.write_bytes(b"graph")
        assert not target.exists()
    assert target.read_bytes() == b"graph"
    with pytest.raises(ValueError), staged_path(target) as tmp:
        tmp.write_bytes(b"broken")
        raise ValueError("parity failed")
    assert target.read_bytes() == b"graph" and [p.name for p in target.parent.iterdir()] == ["model.onnx"]


def test_json_ready_makes_anything_json_encodable():
    @dataclass
    class Row:
        path: Path
        score: float

    value = {"row": Row(Path("a/b"), float("nan")), 3: (np.float32(1.5), np.int64(2), np.bool_(True)),
             "array": np.arange(3), "inf": float("inf"), "other": object}
    ready = json_ready(value)
    json.dumps(ready, allow_nan=False)
    assert ready["row"] == {"path": "a/b", "score": None} and ready["3"] == [1.5, 2, True]
    assert ready["array"] == [0, 1, 2] and ready["inf"] is None and isinstance(ready["other"], str)


def test_fmt_and_markdown_table():
    assert [fmt(v) for v in (None, True, 3, float("nan"), 0.12345, 1e-5, 123456.0)] == [
        "–", "yes", "3", "–", "0.123", "1.00e-05", "1.23e+05"]
    assert fmt(123456.0, 4, group_large=True) == "123,456"
    table = markdown_table([{"key": "fp32|t2|b2", "ms": 1.5}], [("key", "row"), ("ms", "ms")])
    assert table == "| row | ms |\n|---|---|\n| fp32\\|t2\\|b2 | 1.5 |\n"
    assert markdown_table([], [("key", "row")]) == "_(no rows)_\n"
