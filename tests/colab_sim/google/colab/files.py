"""google.colab.files: downloads are recorded ($KPOP_SIM_DOWNLOADS), uploads come from $KPOP_SIM_UPLOADS."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def download(filename: str) -> None:
    """Colab sends the file to the browser; here the request is recorded (one JSON line per download)."""
    if not os.path.exists(filename):
        raise FileNotFoundError(f"Cannot find file: {filename}")  # Colab's own message
    log = os.environ.get("KPOP_SIM_DOWNLOADS")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"path": os.path.abspath(filename), "size": os.path.getsize(filename)}) + "\n")


def upload() -> dict[str, bytes]:
    """Colab asks the user for files and writes them into the current folder; here they come from a folder."""
    source = os.environ.get("KPOP_SIM_UPLOADS")
    uploaded: dict[str, bytes] = {}
    if not source:
        return uploaded  # the user pressed Cancel
    for path in sorted(Path(source).iterdir()):
        if path.is_file():
            shutil.copyfile(path, path.name)
            uploaded[path.name] = path.read_bytes()
            print(f"Saving {path.name} to {path.name}")
    return uploaded
