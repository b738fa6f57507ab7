"""The shared atomic writer and file digests (used by data, export, the edge runtime and checkpoints)."""

from __future__ import annotations

import hashlib
import os

import pytest

from kpop_helpers.utils import (
    TEMP_RE, atomic_write, atomic_write_bytes, atomic_write_text, file_digest, sha256_file, temp_path_for,
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
