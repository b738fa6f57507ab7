"""`analyze(song)`: tempo, beats, downbeats, bar and eight-count positions, loudness and sections; analysis.json.

Beats and downbeats come from `music.beats` (librosa's methods ported to numpy in `music.dsp`: no weights,
no librosa import; the tracker keeps the name "librosa") or an optional tracker (`music.trackers`);
sections from `music.sections`. Bars are 4 beats (K-pop is in 4/4); an eight-count is two bars, and starts on
the bar parity that puts most section starts on "1" (phrases start on the one).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.music import beats as B
from kpop_helpers.music.downbeats import beat_cues, downbeat_phase
from kpop_helpers.music.audio import DEFAULT_SR, Audio, load_audio
from kpop_helpers.music.sections import Section, find_sections
from kpop_helpers.music.spectra import Spectra, compute_spectra
from kpop_helpers.music.trackers import check_tracker, external_beats, phase_from_downbeats
from kpop_helpers.utils import atomic_write_text, json_ready

FORMAT = "kpop_helpers.music.analysis"
VERSION = 1
DB_FLOOR = -100.0
COUNTS = 8  # a dancer's eight-count: two bars of four


@dataclass
class MusicAnalysis:
    """One song's analysis; times in seconds, envelopes at `frame_rate` frames per second."""

    source: str
    duration_s: float
    tempo_bpm: float
    beat_times: np.ndarray  # [B]
    downbeat_times: np.ndarray  # [D], the beats at bar position 1
    bar_positions: np.ndarray  # [B] int 1..4
    count_positions: np.ndarray  # [B] int 1..8
    frame_rate: float
    onset_envelope: np.ndarray  # [F] onset strength (librosa's spectral flux)
    loudness_db: np.ndarray  # [F] RMS level in dB full scale (floor -100)
    beat_loudness_db: np.ndarray  # [B] level from each beat to the next
    sections: list[Section]
    beat_strength: float  # pulse clarity 0..1 (music.beats.periodicity)
    tracker: str = "librosa"
    tempo_forced: bool = False
    tempo_changes: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def eight_count_starts(self) -> np.ndarray:
        """Times of every count "1" of the eight-counts."""
        return self.beat_times[self.count_positions == 1]

    @property
    def clear_beat(self) -> bool:
        """False when the beats are a steady stand-in grid (no clear beat was heard)."""
        return not any(w.startswith("no clear beat") for w in self.warnings)

    def summary(self) -> str:
        """One line: tempo, beats, bars, sections (labels), warnings."""
        labels = "".join(s.label for s in self.sections)
        text = (f"{Path(self.source).name}: {self.tempo_bpm:.1f} BPM, {self.beat_times.size} beats, "
                f"{self.downbeat_times.size} bars, sections {labels} ({self.duration_s:.1f} s)")
        return text + "".join(f"; warning: {w}" for w in self.warnings)

    def to_dict(self) -> dict[str, Any]:
        """The analysis.json content (numbers rounded: ms for times, 0.01 dB)."""
        def r(x, d):
            return [round(float(v), d) for v in np.asarray(x).reshape(-1)]

        return {
            "format": FORMAT, "version": VERSION, "source": self.source, "duration_s": round(self.duration_s, 4),
            "tempo_bpm": round(self.tempo_bpm, 3), "tracker": self.tracker, "tempo_forced": self.tempo_forced,
            "tempo_changes": self.tempo_changes, "beat_strength": round(self.beat_strength, 4),
            "warnings": list(self.warnings), "beat_times": r(self.beat_times, 4),
            "downbeat_times": r(self.downbeat_times, 4), "bar_positions": [int(v) for v in self.bar_positions],
            "count_positions": [int(v) for v in self.count_positions],
            "beat_loudness_db": r(self.beat_loudness_db, 2), "frame_rate": self.frame_rate,
            "onset_envelope": r(self.onset_envelope, 4), "loudness_db": r(self.loudness_db, 2),
            "sections": [json_ready(s) for s in self.sections],
        }

    def save(self, path: str | Path) -> Path:
        """Write analysis.json atomically (a folder path gets analysis.json inside it)."""
        path = Path(path)
        if path.is_dir():
            path = path / "analysis.json"
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: Any, *, path: str | Path | None = None) -> MusicAnalysis:
        """Validate and rebuild an analysis (DataError naming the field on anything inconsistent)."""
        return _from_dict(data, path)

    @classmethod
    def load(cls, path: str | Path) -> MusicAnalysis:
        """Read and validate analysis.json (or a folder holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / "analysis.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError("file not found", path=path, expected="an analysis.json") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"not valid JSON ({exc}); the file may be truncated", path=path) from None
        return _from_dict(data, path)


def _array(data: dict, key: str, path, *, dtype=np.float64, size: int | None = None) -> np.ndarray:
    value = data.get(key)
    if not isinstance(value, list):
        raise DataError(f"missing or not a list ({type(value).__name__})", path=path, field=key, expected="a list")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError("has non-numeric entries", path=path, field=key, expected="numbers") from None
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        raise DataError("has nested lists, NaN or infinite values", path=path, field=key, expected="finite numbers")
    if size is not None and arr.size != size:
        raise DataError(f"has {arr.size} entries", path=path, field=key, expected=f"{size}, one per beat or frame")
    return arr.astype(dtype)


def _number(data: dict, key: str, path, *, low: float = -math.inf) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < low:
        raise DataError(f"is {value!r}", path=path, field=key, expected=f"a finite number >= {low:g}")
    return float(value)


def _from_dict(data: Any, path) -> MusicAnalysis:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError("not a music analysis", path=path, field="format", expected=f"'{FORMAT}'")
    if data.get("version") != VERSION:
        raise DataError(f"version {data.get('version')!r}", path=path, field="version", expected=str(VERSION))
    beats = _array(data, "beat_times", path)
    if np.any(np.diff(beats) <= 0):
        raise DataError("not strictly increasing", path=path, field="beat_times", expected="sorted beat times")
    n = beats.size
    bars = _array(data, "bar_positions", path, dtype=np.int64, size=n)
    counts = _array(data, "count_positions", path, dtype=np.int64, size=n)
    if np.any((bars < 1) | (bars > 4)) or np.any((counts < 1) | (counts > COUNTS)):
        raise DataError("positions out of range", path=path, field="bar_positions/count_positions",
                        expected="bar positions 1..4 and counts 1..8")
    downbeats = _array(data, "downbeat_times", path)
    expected = beats[bars == 1]
    if downbeats.size != expected.size or not np.allclose(downbeats, expected, atol=1e-3):
        raise DataError("do not match the beats at bar position 1", path=path, field="downbeat_times",
                        expected="the beat times whose bar position is 1")
    envelope = _array(data, "onset_envelope", path)
    sections = []
    for i, s in enumerate(data.get("sections") or []):
        try:
            section = Section(float(s["start_s"]), float(s["end_s"]), str(s["label"]), float(s["loudness_db"]),
                              int(s["bars"]))
        except (TypeError, KeyError, ValueError):
            raise DataError("malformed section", path=path, record=i, field="sections",
                            expected="start_s, end_s, label, loudness_db, bars") from None
        if not section.end_s > section.start_s or (sections and abs(section.start_s - sections[-1].end_s) > 1e-3):
            raise DataError("sections overlap, leave gaps or have no length", path=path, record=i, field="sections",
                            expected="back-to-back sections")
        sections.append(section)
    warnings = data.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise DataError("not a list of strings", path=path, field="warnings", expected="a list of strings")
    return MusicAnalysis(
        source=str(data.get("source", "")), duration_s=_number(data, "duration_s", path, low=0),
        tempo_bpm=_number(data, "tempo_bpm", path, low=0), beat_times=beats, downbeat_times=downbeats,
        bar_positions=bars, count_positions=counts, frame_rate=_number(data, "frame_rate", path, low=1e-6),
        onset_envelope=envelope, loudness_db=_array(data, "loudness_db", path, size=envelope.size),
        beat_loudness_db=_array(data, "beat_loudness_db", path, size=n), sections=sections,
        beat_strength=_number(data, "beat_strength", path, low=0), tracker=str(data.get("tracker", "librosa")),
        tempo_forced=bool(data.get("tempo_forced", False)), tempo_changes=bool(data.get("tempo_changes", False)),
        warnings=list(warnings))


def _power(spectra: Spectra, frames: int) -> np.ndarray:
    """Mean-square level per onset frame (librosa's RMS, squared), padded or cut to `frames`."""
    power = spectra.mean_square
    return np.pad(power, (0, max(0, frames - power.size)), mode="edge")[:frames]


def _to_db(power: np.ndarray) -> np.ndarray:
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-12)), DB_FLOOR)


def _beat_loudness(power: np.ndarray, beats: np.ndarray, fps: float, duration_s: float) -> np.ndarray:
    """dB of the mean power from each beat to the next (the last to the end of the song)."""
    ends = np.append(beats[1:], duration_s)
    out = []
    for a, b in zip(beats, ends):
        i, j = int(a * fps), max(int(a * fps) + 1, int(b * fps))
        out.append(float(np.mean(power[min(i, power.size - 1):j])))
    return _to_db(np.asarray(out))


def _check_bpm(bpm: float | None) -> float | None:
    if bpm is None:
        return None
    if isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not math.isfinite(bpm) or not 30 <= bpm <= 300:
        raise DataError(f"bpm={bpm!r}", field="bpm", expected="a tempo from 30 to 300 BPM, or None to detect it")
    return float(bpm)


def _beats_and_phase(audio: Audio, spectra: Spectra, flux: np.ndarray, low: np.ndarray, energy: np.ndarray,
                     period: B.Periodicity, bpm: float | None, tracker: str, min_strength: float,
                     warnings: list[str]) -> tuple[float, np.ndarray, int, bool]:
    """(tempo, beats, bar phase, tempo changes?) from the chosen tracker, or the steady grid without a beat."""
    sr = audio.sr
    if tracker != "librosa":
        if bpm is not None:
            raise DataError(f"bpm= forces the tempo of tracker='librosa' only, not {tracker!r}", field="bpm",
                            expected="bpm=None with an external tracker")
        beats, downbeats = external_beats(tracker, audio)
        if beats.size >= 2:
            return B.tempo_from_beats(beats), beats, phase_from_downbeats(beats, downbeats), False
        reason = f"{tracker} found {beats.size} beats"
    elif period.strength >= min_strength:
        if bpm is not None:
            beats, curve = B.track(flux, sr, bpm), None
        else:
            _, beats, curve = B.estimate_tempo(flux, energy, sr, period)
        if beats.size >= 2:
            if curve is not None:
                lo, hi = np.percentile(curve, [5, 95])
                warnings.append(f"the tempo changes ({lo:.0f} to {hi:.0f} BPM): the beats follow it and tempo_bpm "
                                "is the median")
            phase = downbeat_phase(beats, beat_cues(spectra.chroma, sr, beats, low, energy))
            return bpm if bpm is not None else B.tempo_from_beats(beats), beats, phase, curve is not None
        reason = f"the beat tracker found {beats.size} beats"
    else:
        reason = f"beat strength {period.strength:.2f} < {min_strength:.2f}"
    tempo = bpm if bpm is not None else B.DEFAULT_BPM
    warnings.append(f"no clear beat ({reason}): the beats are a steady grid at {tempo:g} BPM from 0 s"
                    + ("" if bpm is not None else "; pass bpm= to set its tempo"))
    return tempo, B.grid(audio.duration_s, tempo), 0, False


def _count_parity(sections: list[Section]) -> int:
    """0 or 1: which bars start an eight-count, so that most sections start on count 1."""
    starts, bar = [], 0
    for s in sections:
        starts.append(bar)
        bar += s.bars
    odd = sum(1 for k in starts if k % 2 == 1)
    return 1 if odd > len(starts) - odd else 0


def analyze(source: str | Path | Audio | tuple[np.ndarray, int], *, bpm: float | None = None,
            tracker: str = "librosa", min_beat_strength: float = B.MIN_BEAT_STRENGTH,
            sr: int = DEFAULT_SR) -> MusicAnalysis:
    """Tempo, beats, downbeats, bar/eight-count positions, onset envelope, loudness and sections of a song.

    `bpm` forces the tempo (beats are still placed on the onsets); without a clear beat the beats are a steady
    grid at `bpm` or 100 BPM and `warnings` says so. `tracker` is "librosa" (default, offline) or an optional
    "beat_this" | "madmom" | "allin1" when installed.
    """
    bpm = _check_bpm(bpm)
    check_tracker(tracker)
    audio = load_audio(source, sr=sr)
    y, rate, duration = audio.samples, audio.sr, audio.duration_s
    fps = rate / B.HOP
    spectra = compute_spectra(y, rate, B.HOP)
    flux, low, energy = B.onset_envelopes(spectra.mel_power, rate)
    period = B.periodicity(flux, fps)
    warnings: list[str] = []
    tempo, beats, phase, changes = _beats_and_phase(audio, spectra, flux, low, energy, period, bpm, tracker,
                                                    min_beat_strength, warnings)
    beats = np.asarray(beats, np.float64)
    if tracker == "librosa" and not any(w.startswith("no clear beat") for w in warnings):
        # The bar phase was found on the tracked beats; the added intro beats shift it by their count.
        grown = B.extend_grid(beats, duration)
        phase = (phase + int(np.searchsorted(grown, beats[0] - 1e-6))) % B.BEATS_PER_BAR
        beats = grown
    index = np.arange(beats.size)
    bar_pos = (index - phase) % B.BEATS_PER_BAR + 1
    downbeats = beats[bar_pos == 1]
    power = _power(spectra, flux.size)
    sections = find_sections(spectra, downbeats, duration, power)
    parity = _count_parity(sections)
    count_pos = (index - phase - B.BEATS_PER_BAR * parity) % COUNTS + 1
    return MusicAnalysis(
        source=audio.source, duration_s=duration, tempo_bpm=float(tempo), beat_times=beats,
        downbeat_times=downbeats, bar_positions=bar_pos.astype(np.int64), count_positions=count_pos.astype(np.int64),
        frame_rate=fps, onset_envelope=flux.astype(np.float32), loudness_db=_to_db(power).astype(np.float32),
        beat_loudness_db=_beat_loudness(power, beats, fps, duration), sections=sections,
        beat_strength=period.strength, tracker=tracker, tempo_forced=bpm is not None, tempo_changes=changes,
        warnings=warnings)
