"""Google Colab helpers that behave sensibly everywhere else.

- :func:`in_colab` -- True inside a Colab runtime (``google.colab`` imported).
- :func:`mount_drive` -- mount Google Drive at ``/content/drive`` (no-op with a log line outside Colab).
- :func:`default_drive_dir` -- ``/content/drive/MyDrive/kpop_checkpoints/<run name>``.
- :func:`get_secret` -- a Colab secret (``google.colab.userdata``), None outside Colab or when missing.
- :func:`flush_and_unmount` -- finish pending checkpoint copies, then ``drive.flush_and_unmount()``.
- :func:`gpu_info` -- what accelerator this runtime has, as a plain dict.

Nothing here prompts outside Colab, and nothing ever prints a secret.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

log = logging.getLogger("kpop_helpers.colab")

DRIVE_MOUNT_POINT = Path("/content/drive")
MY_DRIVE = DRIVE_MOUNT_POINT / "MyDrive"
CHECKPOINTS_FOLDER = "kpop_checkpoints"


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def drive_mounted(mount_point: str | Path = DRIVE_MOUNT_POINT) -> bool:
    """True when Google Drive's ``MyDrive`` folder is visible under ``mount_point``."""
    return (Path(mount_point) / "MyDrive").is_dir()


def mount_drive(mount_point: str | Path = DRIVE_MOUNT_POINT, *, force_remount: bool = False) -> Path | None:
    """Mount Google Drive (Colab asks for permission once); returns the MyDrive folder, None outside Colab."""
    if not in_colab():
        log.info("mount_drive: not running in Colab; nothing to mount (pass an explicit drive_dir to sync elsewhere)")
        return None
    mount_point = Path(mount_point)
    if drive_mounted(mount_point) and not force_remount:
        return mount_point / "MyDrive"
    from google.colab import drive  # only exists inside Colab

    drive.mount(str(mount_point), force_remount=force_remount)
    return mount_point / "MyDrive"


def default_drive_dir(run_name: str | None = None) -> Path:
    """Where a run's checkpoints live on Drive: ``/content/drive/MyDrive/kpop_checkpoints/<run name>``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", (run_name or "default").strip()).strip("._") or "default"
    return MY_DRIVE / CHECKPOINTS_FOLDER / safe


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
    from google.colab import drive

    drive.flush_and_unmount()
    return caught_up


def gpu_info() -> dict:
    """The accelerator of this runtime: name, count, memory (GiB), compute capability, bf16 support."""
    try:
        import torch
    except ImportError:
        return {"available": False, "reason": "torch is not installed"}
    info: dict = {"available": torch.cuda.is_available(), "torch": torch.__version__,
                  "cuda": torch.version.cuda, "count": 0, "devices": []}
    if not info["available"]:
        info["mps"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        return info
    info["count"] = torch.cuda.device_count()
    for index in range(info["count"]):
        props = torch.cuda.get_device_properties(index)
        info["devices"].append({"index": index, "name": props.name,
                                "memory_gb": round(props.total_memory / 2**30, 2),
                                "capability": f"{props.major}.{props.minor}"})
    info["name"] = info["devices"][0]["name"]
    info["memory_gb"] = info["devices"][0]["memory_gb"]
    info["bf16"] = bool(torch.cuda.is_bf16_supported())
    return info
