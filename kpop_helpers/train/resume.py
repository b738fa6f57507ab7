"""Resume on purpose: what `TrainConfig.resume` means, checking a checkpoint's run, and moving an old run aside.

- "auto": continue the newest valid checkpoint (local or Drive) if its run fingerprint matches this config.
- "fresh": start at step 0; the old checkpoints (local and Drive) move to ``<folder>/previous/<UTC time>/``
  first, so a later "auto" cannot pick up the old run's higher step.
- "none": start at step 0 and leave whatever is there (checkpoints of the same step are overwritten).
- a path: continue that checkpoint (differences in the fingerprint are logged, not fatal: the user chose it).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from kpop_helpers.checkpoints.atomic import CHECKPOINT_RE, LATEST_NAME
from kpop_helpers.errors import DataError
from kpop_helpers.train.fingerprint import FINGERPRINT_KEY, check_fingerprint, fingerprint_differences
from kpop_helpers.utils import fsync_dir

logger = logging.getLogger(__name__)

PREVIOUS_FOLDER = "previous"
RESUME_KEYWORDS = ("auto", "fresh", "none")


def resume_mode(value: str | None) -> str:
    """'auto' | 'fresh' | 'none' | 'path' for a TrainConfig.resume value; DataError when it is none of them."""
    if value in (None, "", "none"):
        return "none"
    if value in ("auto", "fresh"):
        return value
    if Path(value).expanduser().is_file():
        return "path"
    raise DataError("resume is neither a keyword nor an existing checkpoint file", path=value, field="resume",
                    expected="'auto', 'fresh', 'none' or the path of a checkpoint_epoch*_step*.pt file")


def verify_checkpoint_run(state: dict, fingerprint: dict, *, strict: bool, drive: bool = False) -> None:
    """Check a loaded checkpoint's run fingerprint: RunMismatchError when ``strict``, else a logged warning."""
    stored, path = state.get(FINGERPRINT_KEY), state.get("path")
    if not stored:
        logger.warning("%s has no run fingerprint (written before fingerprints existed): resuming it without "
                       "checking that it belongs to this run (same data, base model and preset)", path)
        return
    if strict:
        check_fingerprint(stored, fingerprint, path, drive=drive)
        return
    differences = fingerprint_differences(dict(stored), fingerprint)
    if differences:
        logger.warning("resuming %s although it was written by a different run: %s", path,
                       "; ".join(f"{k}: stored {old!r}, now {new!r}" for k, old, new in differences))


def start_fresh(out: str | Path, drive_dir: str | Path | None = None) -> list[Path]:
    """Move the checkpoints (and logs) of ``out`` and ``drive_dir`` into ``previous/<UTC time>/``; returns where."""
    folders = [Path(out).expanduser()] + ([Path(drive_dir).expanduser()] if drive_dir else [])
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base, n = stamp, 1
    while any((folder / PREVIOUS_FOLDER / stamp).exists() for folder in folders):  # two fresh starts in a second
        stamp, n = f"{base}-{n}", n + 1
    moved = []
    for folder in folders:
        target = archive_run(folder, stamp)
        if target is not None:
            logger.warning("resume='fresh': the earlier run's checkpoints in %s were moved to %s", folder, target)
            moved.append(target)
    if not moved:
        logger.info("resume='fresh': no earlier checkpoints in %s", ", ".join(str(f) for f in folders))
    return moved


def archive_run(folder: str | Path, stamp: str) -> Path | None:
    """Rename a folder's checkpoints, sidecars, manifest and logs/ into ``previous/<stamp>/``; None if none."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    names = [entry.name for entry in os.scandir(folder) if _belongs_to_run(entry.name)]
    if not any(CHECKPOINT_RE.match(name) for name in names):
        return None  # nothing a later "auto" could resume: leave logs and stray files alone
    # A .pt before its sidecar, the manifest last: an interrupted move leaves only harmless orphans behind.
    names.sort(key=lambda name: (not name.endswith(".pt"), name == LATEST_NAME, name))
    target = folder / PREVIOUS_FOLDER / stamp
    target.mkdir(parents=True)
    for name in names:
        os.replace(folder / name, target / name)  # same folder tree, so each move is an atomic rename
    fsync_dir(folder)
    fsync_dir(target)
    return target


def _belongs_to_run(name: str) -> bool:
    if name in (LATEST_NAME, "logs"):
        return True
    if name.endswith(".json"):
        name = name[:-len(".json")] + ".pt"  # a checkpoint's sidecar
    return CHECKPOINT_RE.match(name) is not None
