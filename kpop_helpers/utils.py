"""Small shared utilities: atomic writes, hashing, seeding."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO


# Temp files are hidden, pid-stamped names beside the target: never mistaken for real files, and a later
# process can tell a crashed writer's leftover (dead pid) from a write in progress.
TEMP_RE = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.(?P<tag>[0-9a-f]{8})\.tmp$")
_CHUNK = 4 << 20


@dataclass(frozen=True)
class FileDigest:
    """sha256 (hex) and size in bytes of a file's content."""

    sha256: str
    size: int


class HashingWriter:
    """File wrapper that hashes bytes as they are written (torch.save and copies write sequentially)."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()

    def digest(self) -> FileDigest:
        return FileDigest(self.hasher.hexdigest(), self.size)


def temp_path_for(final: Path) -> Path:
    """A unique hidden temp name beside ``final`` (matches TEMP_RE)."""
    return final.parent / f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder``; silently skipped where directories cannot be fsynced (Windows, some FUSE)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(final: str | Path, write_fn: Callable[[Any], None]) -> FileDigest:
    """Write ``final`` through ``write_fn(file)`` into a temp file, fsync and rename; returns its digest.

    Readers see the old file or the new one, never a half-written one. The folder must exist.
    """
    final = Path(final)
    tmp = temp_path_for(final)
    try:
        with open(tmp, "xb") as raw:
            writer = HashingWriter(raw)
            write_fn(writer)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, final)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(final.parent)
    return writer.digest()


def atomic_write_bytes(path: str | Path, data: bytes) -> FileDigest:
    """Atomically replace ``path`` with ``data``, creating its folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> FileDigest:
    """Atomic UTF-8 text write."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def file_digest(path: str | Path) -> FileDigest:
    """sha256 and size of a file, read in chunks."""
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return FileDigest(hasher.hexdigest(), size)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file."""
    return file_digest(path).sha256


def peak_rss_mib() -> float | None:
    """Peak resident memory of this process in MiB, or None where it cannot be read (Windows).

    Linux: VmHWM of /proc/self/status, the high-water mark of this address space. ru_maxrss is not used
    there because fork + exec keeps the parent's high-water mark: a process started from a big one (a
    notebook, pytest, the benchmark runner) would report the parent's peak. Elsewhere: ru_maxrss.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0
