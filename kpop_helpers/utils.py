"""Small shared utilities: atomic writes, hashing, peak memory, JSON-ready values and Markdown tables."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, is_dataclass
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


def commit_file(tmp: str | Path, final: str | Path) -> None:
    """fsync a finished temp file and rename it over ``final`` (same folder, so the rename is atomic)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_dir(Path(final).parent)


@contextmanager
def staged_path(final: str | Path, *, create_folder: bool = True) -> Iterator[Path]:
    """A temp path beside ``final`` for writers that need a file name (exporters): the file written there
    is committed over ``final`` when the block succeeds, and removed when it raises."""
    final = Path(final)
    if create_folder:
        final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(final)
    try:
        yield tmp
        commit_file(tmp, final)
    finally:
        with suppress(OSError):  # gone after the commit; a cleanup error must not hide the write's own error
            tmp.unlink()


def atomic_write(final: str | Path, write_fn: Callable[[Any], None]) -> FileDigest:
    """Write ``final`` through ``write_fn(file)`` into a temp file, fsync and rename; returns its digest.

    Readers see the old file or the new one, never a half-written one. The folder must exist.
    """
    with staged_path(final, create_folder=False) as tmp, open(tmp, "xb") as raw:
        writer = HashingWriter(raw)
        write_fn(writer)
    return writer.digest()


def atomic_write_bytes(path: str | Path, data: bytes, *, create_folder: bool = True) -> FileDigest:
    """Atomically replace ``path`` with ``data``, creating its folder unless ``create_folder=False``.

    Checkpoint writes pass ``create_folder=False``: there a missing folder (a vanished Drive mount) is an
    error, not a reason to start a new, empty local folder.
    """
    if create_folder:
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


def json_ready(value: Any) -> Any:
    """A JSON-encodable copy: dataclasses to dicts, tuples to lists, paths to strings, NaN/inf to None,
    numpy/torch scalars to Python numbers, arrays to lists, other objects to their str(), recursively."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalars
        try:
            return json_ready(value.item())
        except (TypeError, ValueError, RuntimeError):
            pass
    if hasattr(value, "tolist"):
        return json_ready(value.tolist())
    return str(value)


def fmt(value: Any, digits: int = 3, *, group_large: bool = False) -> str:
    """A table cell: numbers to `digits` significant digits, None and NaN as a dash, booleans as yes/no.

    Very small or large floats use scientific notation; with `group_large`, floats from 10^4 up are whole
    numbers with thousands separators instead (times and sizes read better that way).
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if group_large and abs(value) >= 1e4:
            return f"{value:,.0f}"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.{max(1, digits - 1)}e}"
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]],
                   cell: Callable[[dict[str, Any], str], str] | None = None) -> str:
    """A Markdown table of `rows` with (key, header) columns; `cell(row, key)` formats a cell (default: fmt)."""
    if not rows:
        return "_(no rows)_\n"
    show = cell or (lambda row, key: fmt(row.get(key)))
    lines = ["| " + " | ".join(header for _, header in columns) + " |", "|" + "---|" * len(columns)]
    # A bare "|" inside a cell (e.g. a bench row key "fp32|t2|b2") would split it into two columns.
    lines += ["| " + " | ".join(show(row, key).replace("|", "\\|") for key, _ in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_result_files(folder: str | Path, stem: str, result: Any, markdown: str) -> tuple[Path, Path]:
    """A benchmark's <stem>.json (json_ready, indented) and <stem>.md in `folder` (made if missing), atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / f"{stem}.json", folder / f"{stem}.md"
    atomic_write_text(paths[0], json.dumps(json_ready(result), indent=1) + "\n")
    atomic_write_text(paths[1], markdown)
    return paths

def json_from_process(command: Sequence[str], what: str, *, cwd: str | Path | None = None,
                      timeout: float | None = None) -> Any:
    """Run `command` (a fresh interpreter: its own peak memory, no warm caches) and parse its last stdout line
    as JSON; RuntimeError naming `what`, with the end of its stderr, when it fails."""
    import subprocess

    done = subprocess.run(list(command), capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ffmpeg_path() -> str | None:
    """An ffmpeg binary: imageio-ffmpeg's bundled one (the [viz] extra), else ffmpeg on PATH, else None."""
    import shutil

    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):  # not installed, or installed without its binary
        return shutil.which("ffmpeg")
