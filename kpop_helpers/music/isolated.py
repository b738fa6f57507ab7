"""The song analysis in a short-lived process of its own, for a process that generates with a tight memory bound.

Decoding and spectra of a long song take tens of MB that the C allocator keeps after they are freed (measured:
+46 MiB still resident after a 133 s song); in a child process they are returned with the process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kpop_helpers.errors import DataError
from kpop_helpers.music.analysis import MusicAnalysis


def analyze_in_process(song: str | Path, *, bpm: float | None = None,
                       excerpt_s: float | None = None) -> tuple[MusicAnalysis, dict[str, Any]]:
    """(analysis, {"peak_rss_mib", "seconds"}) from `python -m kpop_helpers.music` run on the song file.

    Raises the child's DataError (bad audio, bad bpm) as a DataError naming the file.
    """
    path = Path(song)
    if not path.is_file():
        raise DataError("file not found" if not path.exists() else "not a file", path=path, expected="an audio file")
    with tempfile.TemporaryDirectory(prefix="kpop_analysis_") as tmp:
        out = Path(tmp) / "analysis.json"
        command = [sys.executable, "-m", "kpop_helpers.music", str(path), "--out", str(out)]
        command += ["--bpm", repr(float(bpm))] if bpm is not None else []
        command += ["--excerpt", repr(float(excerpt_s))] if excerpt_s is not None else []
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
            raise DataError(f"the analysis failed: {message.removeprefix('error: ')}", path=path)
        info = json.loads(done.stdout.strip().splitlines()[-1])
        analysis = MusicAnalysis.load(out)
    return analysis, {"peak_rss_mib": info["peak_rss_mib"], "seconds": info["seconds"]}
