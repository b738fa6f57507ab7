"""google.colab.drive as the toolkit uses it: mount onto the simulation's shared Drive folder, or fail on demand."""

from __future__ import annotations

import os
from pathlib import Path

_TIMEOUT = ("mount failed: timeout during initial read of root folder; for more info: "
            "https://research.google.com/colaboratory/faq.html#drive-timeout")


def _shared() -> Path:
    folder = os.environ.get("KPOP_SIM_DRIVE")
    if not folder:
        raise ValueError("mount failed")  # no Drive behind this simulated runtime
    return Path(folder)


def _mounted(mountpoint: Path) -> bool:
    return (mountpoint / "MyDrive").is_symlink()


def mount(mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000, readonly: bool = False) -> None:
    """Make <mountpoint>/MyDrive the shared Drive folder (Colab: a FUSE mount after the user allows access)."""
    point = Path(os.path.expanduser(mountpoint))
    if _mounted(point) and not force_remount:
        print(f"Drive already mounted at {mountpoint}; to attempt to forcibly remount, call "
              f'drive.mount("{mountpoint}", force_remount=True).')
        return
    failure = os.environ.get("KPOP_SIM_DRIVE_FAIL", "")
    if failure == "deny":
        raise ValueError("mount failed")
    if failure == "timeout":
        raise ValueError(_TIMEOUT)
    if _mounted(point):
        (point / "MyDrive").unlink()
    if point.is_dir() and any(point.iterdir()):
        raise ValueError("Mountpoint must not already contain files")
    point.mkdir(parents=True, exist_ok=True)
    (point / "MyDrive").symlink_to(_shared(), target_is_directory=True)
    print(f"Mounted at {mountpoint}")


def flush_and_unmount(timeout_ms: int = 24 * 60 * 60 * 1000) -> None:
    """Unmount (Colab first writes back what is cached locally; a symlink has nothing pending)."""
    for point in (Path(os.environ.get("KPOP_COLAB_CONTENT", "/content")) / "drive",):
        if _mounted(point):
            (point / "MyDrive").unlink()
            print("All changes made in this colab session should now be visible in Drive.")
            return
    print("Drive not mounted, so nothing to flush and unmount.")
