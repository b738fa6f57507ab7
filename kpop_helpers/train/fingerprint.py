"""A run's fingerprint: what must not change for a checkpoint to be resumed (data, base model, shape settings).

Stored in every checkpoint's extra state as ``run_fingerprint``; ``resume="auto"`` compares it with the
current config before any weights are loaded, so a changed preset or base model gives a clear
:class:`RunMismatchError` instead of a "size mismatch" traceback, and a changed data file is not silently
trained on top of a run that saw other data.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from kpop_helpers.errors import DataError
from kpop_helpers.train.config import TrainConfig
from kpop_helpers.utils import file_digest

FINGERPRINT_VERSION = 1
FINGERPRINT_KEY = "run_fingerprint"  # the extra-state name in checkpoints


class RunMismatchError(DataError):
    """A checkpoint was written by a different run (other data, base model or shape settings)."""

    def __init__(self, checkpoint: str | Path, differences: list[tuple[str, Any, Any]], *, drive: bool = False):
        lines = "\n".join(f"  {name}: stored {_show(old)}, now {_show(new)}" for name, old, new in differences)
        where = "the local and Drive checkpoints" if drive else "the old checkpoints"
        message = (f"this checkpoint belongs to a different run; what changed:\n{lines}\n"
                   f"To start this run over, set RESUME=\"fresh\" (resume=\"fresh\"): {where} move to previous/. "
                   "To keep both runs, choose another RUN_NAME / out folder.")
        super().__init__(message, path=checkpoint, field=differences[0][0] if differences else None)
        self.checkpoint = str(checkpoint)
        self.differences = list(differences)


def run_fingerprint(cfg: TrainConfig) -> dict:
    """Digests of the data, val data, base model and stats, plus preset/text encoder/diffusion steps/max frames."""
    init = cfg.init if cfg.init == "scratch" else Path(cfg.init).name
    return {
        "version": FINGERPRINT_VERSION,
        "data_sha256": path_digest(cfg.data, what="training data"),
        "val_data_sha256": None if not cfg.val_data else path_digest(cfg.val_data, what="validation data"),
        "init": init,
        "init_sha256": None if cfg.init == "scratch" else path_digest(cfg.init, what="base model (init)"),
        "preset": cfg.preset,
        "text_encoder": cfg.text_encoder,
        "diffusion_steps": int(cfg.diffusion_steps),
        "max_frames": int(cfg.max_frames),
        "stats_sha256": None if not cfg.stats else path_digest(cfg.stats, what="stats folder"),
    }


def fingerprint_differences(stored: dict, now: dict) -> list[tuple[str, Any, Any]]:
    """(field, stored value, current value) for every field that differs; 'version' is not compared."""
    keys = [k for k in now if k != "version"] + [k for k in stored if k not in now and k != "version"]
    return [(k, stored.get(k), now.get(k)) for k in keys if stored.get(k) != now.get(k)]


def check_fingerprint(stored: dict | None, now: dict, checkpoint: str | Path, *, drive: bool = False) -> bool:
    """Raise RunMismatchError when ``stored`` differs from ``now``; False when there is nothing stored to check."""
    if not stored:
        return False
    differences = fingerprint_differences(dict(stored), now)
    if differences:
        raise RunMismatchError(checkpoint, differences, drive=drive)
    return True


def path_digest(path: str | Path, *, what: str = "file") -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, hidden files skipped)."""
    p = Path(path).expanduser()
    try:
        stat = p.stat()
    except OSError as exc:
        raise DataError(f"{what} not found ({exc.strerror})", path=p, expected="an existing file or folder") from exc
    if p.is_dir():  # a folder's mtime does not change when a file in it is rewritten: never cached
        return _folder_digest(p)
    return _file_sha256(str(p.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    # Keyed on size and mtime: a ~300 MB base model is streamed once per process, not once per Trainer.
    return file_digest(path).sha256


def _folder_digest(root: Path) -> str:
    hasher = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(n for n in filenames if not n.startswith(".")):
            file = Path(dirpath) / name
            hasher.update(file.relative_to(root).as_posix().encode() + b"\0")
            hasher.update(file_digest(file).sha256.encode() + b"\n")
    return hasher.hexdigest()


def _show(value: Any) -> str:
    """Digests shortened to 12 hex digits so a message line stays readable."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return f"sha256 {value[:12]}..."
    return repr(value)
