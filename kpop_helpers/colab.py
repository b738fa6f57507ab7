"""Google Colab helpers that behave sensibly everywhere else.

- :func:`in_colab` -- True inside a Colab runtime (``google.colab`` imported).
- :func:`mount_drive` -- mount Google Drive at ``/content/drive`` (no-op with a log line outside Colab); a denied
  or timed-out mount warns and returns None, so the notebook goes on with a local work folder.
- :func:`drive_work_dir` -- ``/content/drive/MyDrive/kpop_work/<run name>``, the one folder a run's notebooks share.
- :func:`default_drive_dir` -- ``/content/drive/MyDrive/kpop_checkpoints/<run name>`` (the trainer's own default).
- :func:`get_secret` -- a Colab secret (``google.colab.userdata``), None outside Colab or when missing.
- :func:`flush_and_unmount` -- finish pending checkpoint copies, then ``drive.flush_and_unmount()``.
- :func:`gpu_info` -- what accelerator this runtime has, as a plain dict.

Nothing here prompts outside Colab, and nothing ever prints a secret.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

log = logging.getLogger("kpop_helpers.colab")


def content_root() -> Path:
    """Colab's local disk, ``/content`` (``$KPOP_COLAB_CONTENT`` moves it: the test suite's Colab simulation)."""
    return Path(os.environ.get("KPOP_COLAB_CONTENT", "").strip() or "/content")


def drive_mount_point() -> Path:
    """Where Drive is mounted: ``/content/drive``."""
    return content_root() / "drive"


def my_drive() -> Path:
    """The user's Drive as the runtime sees it: ``/content/drive/MyDrive``."""
    return drive_mount_point() / "MyDrive"


# Import-time values, kept for callers of earlier versions; the functions above follow $KPOP_COLAB_CONTENT.
DRIVE_MOUNT_POINT = drive_mount_point()
MY_DRIVE = my_drive()
CHECKPOINTS_FOLDER = "kpop_checkpoints"
WORK_FOLDER = "kpop_work"  # MyDrive/kpop_work/<run name>: everything a run's notebooks share
DEFAULT_RUN_NAME = "kpop_run"


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def drive_mounted(mount_point: str | Path | None = None) -> bool:
    """True when Google Drive's ``MyDrive`` folder is visible under ``mount_point`` (default ``/content/drive``)."""
    return (Path(mount_point or drive_mount_point()) / "MyDrive").is_dir()


def mount_drive(mount_point: str | Path | None = None, *, force_remount: bool = False,
                strict: bool = False) -> Path | None:
    """Mount Google Drive (Colab asks for permission once); returns the MyDrive folder, None outside Colab.

    A denied or timed-out mount (Colab raises ``ValueError: mount failed...``) prints a warning and returns None,
    so the notebook continues with a local work folder; ``strict=True`` raises instead.
    """
    if not in_colab():
        log.info("mount_drive: not running in Colab; nothing to mount (pass an explicit drive_dir to sync elsewhere)")
        return None
    mount_point = Path(mount_point or drive_mount_point())
    if drive_mounted(mount_point) and not force_remount:
        return mount_point / "MyDrive"
    from google.colab import drive  # only exists inside Colab

    try:
        drive.mount(str(mount_point), force_remount=force_remount)
    except Exception as exc:  # ValueError (denied, timed out), or the mount helper crashing
        if strict:
            raise
        # print, not only log: this is the line a notebook user must see.
        print(f"WARNING: Google Drive could not be mounted ({type(exc).__name__}: {exc}). Continuing with a local "
              f"work folder under {content_root()}: everything this notebook writes vanishes with the runtime. "
              "Re-run the setup cell to try again.")
        log.warning("Drive mount failed: %s", exc)
        return None
    return mount_point / "MyDrive" if drive_mounted(mount_point) else None


def safe_run_name(run_name: str | None) -> str:
    """A run name usable as one folder name (anything but letters, digits, ``._-`` becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", (run_name or "default").strip()).strip("._") or "default"


def default_drive_dir(run_name: str | None = None) -> Path:
    """Where a run's checkpoints live on Drive: ``/content/drive/MyDrive/kpop_checkpoints/<run name>``."""
    return my_drive() / CHECKPOINTS_FOLDER / safe_run_name(run_name)


def drive_work_dir(run_name: str | None = None) -> Path:
    """A run's shared work folder on Drive: ``/content/drive/MyDrive/kpop_work/<run name>``."""
    return my_drive() / WORK_FOLDER / safe_run_name(run_name or DEFAULT_RUN_NAME)


def drive_data_dir() -> Path:
    """Your own clips on Drive, shared by every run: ``/content/drive/MyDrive/kpop_work/data``."""
    return my_drive() / WORK_FOLDER / "data"


def get_secret(name: str) -> str | None:
    """A Colab secret by name (the key icon in the sidebar); None outside Colab, when missing or not granted."""
    if not in_colab():
        return None
    try:
        from google.colab import userdata
    except ImportError:
        return None
    try:
        value = userdata.get(name)
    except Exception as exc:  # SecretNotFoundError, NotebookAccessError, TimeoutException: all mean "no secret"
        log.info("get_secret: Colab secret %r is not available (%s)", name, type(exc).__name__)
        return None
    return value or None


def flush_and_unmount(timeout: float | None = 600.0) -> bool:
    """Wait for pending Drive checkpoint copies (up to ``timeout``), then flush and unmount Drive in Colab.

    Returns True when every checkpoint manager caught up. Outside Colab only the checkpoint copies are flushed.
    """
    caught_up = True
    manager_module = sys.modules.get("kpop_helpers.checkpoints.manager")
    if manager_module is not None:  # only managers that exist can have pending copies
        caught_up = manager_module.flush_all(timeout)
    if not in_colab():
        log.info("flush_and_unmount: not running in Colab; nothing to unmount")
        return caught_up
    if not drive_mounted():
        log.info("flush_and_unmount: Drive is not mounted; nothing to unmount")
        return caught_up
    from google.colab import drive

    drive.flush_and_unmount()
    return caught_up


def gpu_info() -> dict:
    """The accelerator of this runtime: name, count, memory (GiB), compute capability, bf16, training precision."""
    try:
        import torch
    except ImportError:
        return {"available": False, "reason": "torch is not installed"}
    from kpop_helpers.precision import choose_precision

    info: dict = {"available": torch.cuda.is_available(), "torch": torch.__version__,
                  "cuda": torch.version.cuda, "count": 0, "devices": []}
    if not info["available"]:
        info["mps"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        choice = choose_precision("mps" if info["mps"] else "cpu")
        info["precision"] = {"name": choice.name, "reason": choice.reason}
        return info
    info["count"] = torch.cuda.device_count()
    for index in range(info["count"]):
        props = torch.cuda.get_device_properties(index)
        info["devices"].append({"index": index, "name": props.name,
                                "memory_gb": round(props.total_memory / 2**30, 2),
                                "capability": f"{props.major}.{props.minor}"})
    info["name"] = info["devices"][0]["name"]
    info["memory_gb"] = info["devices"][0]["memory_gb"]
    # True on a T4 too (emulated bf16); "precision" says what training actually uses there.
    info["bf16"] = bool(torch.cuda.is_bf16_supported())
    choice = choose_precision(torch.device("cuda", 0))
    info["precision"] = {"name": choice.name, "reason": choice.reason}
    return info
