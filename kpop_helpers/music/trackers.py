"""Optional neural beat trackers behind `analyze(tracker=...)`: beat_this, madmom, allin1 (none is a dependency).

Each returns (beat times, downbeat times) in seconds for mono audio. They are imported only when asked for;
a missing one raises ImportError saying what to install. Weights are the packages' own (beat_this and
allin1 download theirs on first use, so they need the internet once).
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.music.audio import Audio, resample

INSTALL = {
    "beat_this": ("beat_this", "pip install beat-this (github.com/CPJKU/beat_this; it downloads its checkpoint on "
                               "first use)"),
    "madmom": ("madmom", "pip install madmom (github.com/CPJKU/madmom; builds with Cython and numpy)"),
    "allin1": ("allin1", "pip install allin1 (github.com/mir-aidj/all-in-one; needs torch, natten and demucs)"),
}
TRACKERS = ("librosa", *INSTALL)


def check_tracker(tracker: str) -> None:
    """DataError for an unknown tracker name, ImportError naming the package for a missing one."""
    if tracker == "librosa":
        return
    if tracker not in INSTALL:
        raise DataError(f"unknown tracker {tracker!r}", field="tracker", expected=" | ".join(TRACKERS))
    module, hint = INSTALL[tracker]
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"tracker={tracker!r} needs the {module} package, which is not installed: {hint}; "
                          "or use tracker='librosa' (no weights, offline)")


def _times(values, name: str, tracker: str) -> np.ndarray:
    arr = np.sort(np.asarray(values, np.float64).reshape(-1))
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise DataError(f"{tracker} returned bad {name}", field=name, expected="finite times >= 0")
    return arr


def _wav_at(audio: Audio, sr: int, folder: str) -> Path:
    """The mono audio written as a float WAV at `sr` (for trackers that read files)."""
    import soundfile as sf

    path = Path(folder) / "audio.wav"
    sf.write(path, resample(audio.mono, audio.sr, sr), sr, subtype="FLOAT")
    return path


def external_beats(tracker: str, audio: Audio) -> tuple[np.ndarray, np.ndarray]:
    """(beats, downbeats) in seconds from an optional tracker (see INSTALL)."""
    check_tracker(tracker)
    if tracker == "beat_this":
        from beat_this.inference import Audio2Beats

        beats, downbeats = Audio2Beats(checkpoint_path="final0", device="cpu", dbn=False)(audio.mono, audio.sr)
    elif tracker == "madmom":
        from madmom.audio.signal import Signal
        from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor

        signal = Signal(resample(audio.mono, audio.sr, 44100), sample_rate=44100, num_channels=1)
        out = np.asarray(DBNDownBeatTrackingProcessor(beats_per_bar=[4], fps=100)(RNNDownBeatProcessor()(signal)))
        beats, downbeats = out[:, 0], out[out[:, 1] == 1, 0]
    elif tracker == "allin1":
        import allin1

        with tempfile.TemporaryDirectory() as folder:
            result = allin1.analyze(str(_wav_at(audio, 44100, folder)))
        beats, downbeats = result.beats, result.downbeats
    else:  # pragma: no cover - check_tracker rejects every other name
        raise DataError(f"unknown tracker {tracker!r}", field="tracker", expected=" | ".join(TRACKERS))
    return _times(beats, "beats", tracker), _times(downbeats, "downbeats", tracker)


def phase_from_downbeats(beats: np.ndarray, downbeats: np.ndarray, beats_per_bar: int = 4) -> int:
    """The bar phase (0..beats_per_bar-1) most of a tracker's downbeats fall on (its nearest beats' indices)."""
    if beats.size == 0 or downbeats.size == 0:
        return 0
    nearest = np.abs(beats[None, :] - downbeats[:, None]).argmin(axis=1)
    return int(np.bincount(nearest % beats_per_bar, minlength=beats_per_bar).argmax())
