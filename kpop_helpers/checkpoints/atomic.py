"""Crash-safe file primitives and the on-disk checkpoint layout shared by the local folder and its Drive mirror.

Every write goes (through :func:`kpop_helpers.utils.atomic_write`) to a hidden temp file in the destination
folder (``.<name>.<pid>.<tag>.tmp``), is flushed and fsynced, then ``os.replace``d over the final name,
so a reader only ever sees a complete old file or a complete new one. Temp names never match :data:`CHECKPOINT_RE`, so a crash leftover is
never taken for a checkpoint; :func:`remove_stale_temp_files` cleans them up on the next start.

Layout of a checkpoint folder::

    checkpoint_epoch{E}_step{S}.pt     torch.save payload (loadable with weights_only=True)
    checkpoint_epoch{E}_step{S}.json   sidecar: epoch, step, loss, metrics, metadata, sha256, size, time
    latest.json                        manifest: newest and best checkpoint, retained files
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kpop_helpers.utils import (  # noqa: F401  (re-exported: the checkpoint modules import them from here)
    TEMP_RE, FileDigest, HashingWriter, atomic_write, atomic_write_bytes, file_digest, fsync_dir, json_ready,
    temp_path_for,
)

CHECKPOINT_RE = re.compile(r"^checkpoint_epoch(?P<epoch>\d+)_step(?P<step>\d+)\.pt$")
LATEST_NAME = "latest.json"  # the checkpoint folder's index (an edge export's index is edge.manifest.MANIFEST_NAME)
MANIFEST_NAME = LATEST_NAME  # the old name, kept for callers of earlier versions
SIDECAR_FORMAT = "kpop_checkpoint"
_CHUNK = 4 << 20


class ChecksumError(Exception):
    """A file's sha256 or size differs from what its sidecar promised (``side`` says which copy is bad)."""

    def __init__(self, message: str, *, side: str = "destination"):
        super().__init__(message)
        self.side = side


class SourceFileError(Exception):
    """The file to copy could not be read (it was deleted meanwhile, or the local disk failed)."""


def is_temp_name(name: str) -> bool:
    """True for the temp names written by the atomic writers."""
    return TEMP_RE.match(name) is not None


def atomic_write_json(final: str | Path, obj: Any) -> FileDigest:
    """Atomically replace ``final`` with ``obj`` as indented JSON (NaN/inf written as null); the folder must exist."""
    text = json.dumps(json_ready(obj), indent=2, sort_keys=True, allow_nan=False)
    return atomic_write_bytes(final, (text + "\n").encode("utf-8"), create_folder=False)


def atomic_torch_save(obj: Any, final: str | Path) -> FileDigest:
    """Atomically ``torch.save`` ``obj`` to ``final``, hashing the bytes on their way to disk."""
    import torch

    return atomic_write(final, lambda f: torch.save(obj, f))


def copy_verified(src: str | Path, dst: str | Path, expected: FileDigest) -> FileDigest:
    """Copy ``src`` to ``dst`` via a temp file, check source and copy against ``expected``, then rename.

    Raises :class:`SourceFileError` when ``src`` cannot be read, :class:`ChecksumError` (side="source")
    when the source itself does not match ``expected`` (it would be wrong to spread it), and OSError or
    ChecksumError (side="destination") when the destination failed: those are worth retrying.
    """
    src, dst = Path(src), Path(dst)
    try:
        source = open(src, "rb")
    except OSError as exc:
        raise SourceFileError(f"cannot read {src}: {exc}") from exc
    tmp = temp_path_for(dst)
    try:
        with source, open(tmp, "xb") as out:
            writer = HashingWriter(out)
            while True:
                try:
                    chunk = source.read(_CHUNK)
                except OSError as exc:
                    raise SourceFileError(f"cannot read {src}: {exc}") from exc
                if not chunk:
                    break
                writer.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if writer.digest() != expected:
            raise ChecksumError(f"{src}: content {writer.digest()} does not match its sidecar {expected}",
                                side="source")
        # Re-read what the destination actually stored: a flaky mount can accept writes and keep garbage.
        written = file_digest(tmp)
        if written != expected:
            raise ChecksumError(f"{dst}: copy has {written}, expected {expected}", side="destination")
        os.replace(tmp, dst)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(dst.parent)
    return expected


def remove_stale_temp_files(folder: str | Path, *, max_age_s: float = 3600.0,
                            own_pid_is_stale: bool = False) -> list[Path]:
    """Delete temp files left by crashed writers: dead local pid, older than ``max_age_s``, or (optionally) ours."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = TEMP_RE.match(entry.name)
        if match is None:
            continue
        pid = int(match["pid"])
        try:
            age = now - entry.stat().st_mtime
        except OSError:
            continue
        mine = pid == os.getpid()
        if (mine and own_pid_is_stale) or (not mine and (age > max_age_s or not _pid_alive(pid))):
            if _unlink_quietly(Path(entry.path)):
                removed.append(Path(entry.path))
    return removed


# ---------------------------------------------------------------- checkpoint layout


@dataclass
class CheckpointInfo:
    """One checkpoint file and what its sidecar says about it (``sha256`` is None when the sidecar is missing)."""

    path: Path
    epoch: int
    step: int
    loss: float | None = None
    metrics: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    sha256: str | None = None
    size: int | None = None
    time: float = 0.0

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.path)

    @property
    def digest(self) -> FileDigest | None:
        return None if self.sha256 is None or self.size is None else FileDigest(self.sha256, self.size)

    def sort_key(self) -> tuple:
        return (self.epoch, self.step, self.time)

    def metric(self, name: str) -> float | None:
        """The value of ``name`` ("loss" or a key of metrics), None when absent or not finite."""
        value = self.loss if name == "loss" and "loss" not in self.metrics else self.metrics.get(name)
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None

    def as_dict(self) -> dict:
        return {"path": self.path, "name": self.name, "epoch": self.epoch, "step": self.step, "loss": self.loss,
                "metrics": self.metrics, "metadata": self.metadata, "sha256": self.sha256, "size": self.size,
                "time": self.time, "verified": self.sha256 is not None}


def checkpoint_name(epoch: int, step: int) -> str:
    """``checkpoint_epoch{E}_step{S}.pt``."""
    return f"checkpoint_epoch{int(epoch)}_step{int(step)}.pt"


def sidecar_path(checkpoint: Path) -> Path:
    """The JSON sidecar beside a checkpoint."""
    return checkpoint.with_suffix(".json")


def read_sidecar(checkpoint: Path) -> dict | None:
    """The sidecar dict, or None when it is missing or unreadable."""
    try:
        data = json.loads(sidecar_path(checkpoint).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == SIDECAR_FORMAT else None


def scan_checkpoints(folder: str | Path) -> list[CheckpointInfo]:
    """Every checkpoint in ``folder``, newest first; raises OSError when the folder cannot be listed."""
    infos = []
    for entry in os.scandir(folder):
        match = CHECKPOINT_RE.match(entry.name)
        if match is None or not entry.is_file():
            continue
        path = Path(entry.path)
        side = read_sidecar(path) or {}
        try:
            mtime = entry.stat().st_mtime
        except OSError:
            continue
        infos.append(CheckpointInfo(
            path=path, epoch=int(match["epoch"]), step=int(match["step"]), loss=side.get("loss"),
            metrics=side.get("metrics") or {}, metadata=side.get("metadata") or {}, sha256=side.get("sha256"),
            size=side.get("size"), time=float(side.get("time", mtime))))
    infos.sort(key=CheckpointInfo.sort_key, reverse=True)
    return infos


def best_checkpoint(infos: list[CheckpointInfo], metric: str | None, mode: str = "min") -> CheckpointInfo | None:
    """The checkpoint with the best ``metric`` (ties go to the newest), or None."""
    if metric is None:
        return None
    scored = [(info.metric(metric), info) for info in infos if info.metric(metric) is not None]
    if not scored:
        return None
    sign = 1.0 if mode == "min" else -1.0
    return min(scored, key=lambda pair: (sign * pair[0], tuple(-x for x in pair[1].sort_key())))[1]


def split_retention(infos: list[CheckpointInfo], max_keep: int, metric: str | None,
                    mode: str = "min") -> tuple[list[CheckpointInfo], list[CheckpointInfo]]:
    """(keep, delete): the newest ``max_keep`` plus the best by ``metric``; ``infos`` must be newest first."""
    keep = list(infos[:max_keep]) if max_keep > 0 else list(infos)
    best = best_checkpoint(infos, metric, mode)
    if best is not None and best not in keep:
        keep.append(best)
    return keep, [info for info in infos if info not in keep]


def delete_checkpoint(info: CheckpointInfo) -> None:
    """Remove a checkpoint and then its sidecar (an orphan sidecar is harmless, an orphan .pt is not verifiable)."""
    info.path.unlink(missing_ok=True)
    info.sidecar.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate the process on Windows; rely on the age rule there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _unlink_quietly(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except OSError:
        return False
