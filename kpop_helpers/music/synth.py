"""Synthetic test audio with exactly known beats: click tracks, drum patterns, tempo changes, beatless sounds.

Everything is numpy (plus soundfile to write WAV files), seeded, and mono float32 in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.utils import staged_path

DEFAULT_SR = 22050
# Drum patterns over one 4/4 bar in eighth notes (0..7): which eighths carry a kick, a snare and a hi-hat.
PATTERNS: dict[str, dict[str, tuple[int, ...]]] = {
    "rock": {"kick": (0, 4), "snare": (2, 6), "hat": (0, 1, 2, 3, 4, 5, 6, 7)},
    "four_on_floor": {"kick": (0, 2, 4, 6), "snare": (2, 6), "hat": (1, 3, 5, 7)},
    "hiphop": {"kick": (0, 3, 4), "snare": (2, 6), "hat": (0, 1, 2, 3, 4, 5, 6, 7)},
}
# Triads (Hz) of the tonal layer in songs: different chords give the sections different chroma.
BASS_ROOTS = (55.0, 43.65, 65.41, 49.0)  # A1 F1 C2 G1: a bass note on every "one", a new root each bar
CHORDS = {"C": (261.63, 329.63, 392.00), "F#m": (369.99, 440.00, 554.37), "Am": (220.00, 261.63, 329.63)}


@dataclass(frozen=True)
class SynthTrack:
    """A synthetic track and its truth: beat and downbeat times (s), tempo (None when it changes), sections."""

    samples: np.ndarray
    sr: int
    beat_times: np.ndarray
    downbeat_times: np.ndarray
    bpm: float | None
    name: str
    sections: tuple[tuple[float, float, str], ...] = field(default=())

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.samples.shape[-1] / self.sr

    def write(self, path: str | Path, *, subtype: str = "PCM_16") -> Path:
        """Write the track as a WAV file (atomically) and return its path."""
        return write_wav(path, self.samples, self.sr, subtype=subtype)


def write_wav(path: str | Path, samples: np.ndarray, sr: int, *, subtype: str = "PCM_16") -> Path:
    """Write samples ([N] or [N, channels]) as WAV through a temp file; soundfile picks no format from '.tmp'."""
    import soundfile as sf

    path = Path(path)
    with staged_path(path) as tmp:
        sf.write(tmp, np.asarray(samples), int(sr), format="WAV", subtype=subtype)
    return path


def _seconds(seconds: float) -> float:
    if not np.isfinite(seconds) or seconds <= 0:
        raise DataError(f"duration {seconds!r}", field="seconds", expected="a positive number of seconds")
    return float(seconds)


def _check_bpm(bpm: float) -> float:
    if not np.isfinite(bpm) or not 20 <= bpm <= 400:
        raise DataError(f"tempo {bpm!r} BPM", field="bpm", expected="20 to 400 BPM")
    return float(bpm)


def _decay(sr: int, length_s: float, tau_s: float) -> np.ndarray:
    t = np.arange(int(length_s * sr)) / sr
    return np.exp(-t / tau_s)


def click(sr: int, *, freq: float = 1000.0, amp: float = 0.5) -> np.ndarray:
    """One metronome click: a sine burst with a 15 ms decay."""
    env = _decay(sr, 0.06, 0.015)
    return (amp * env * np.sin(2 * np.pi * freq * np.arange(env.size) / sr)).astype(np.float32)


def kick(sr: int, *, amp: float = 0.9) -> np.ndarray:
    """A kick drum: a sine sweeping 120 -> 45 Hz with a 120 ms decay."""
    t = np.arange(int(0.35 * sr)) / sr
    freq = 45.0 + 75.0 * np.exp(-t / 0.04)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return (amp * np.exp(-t / 0.12) * np.sin(phase)).astype(np.float32)


def snare(sr: int, rng: np.random.Generator, *, amp: float = 0.5) -> np.ndarray:
    """A snare: a noise burst plus a 190 Hz body, 90 ms decay."""
    env = _decay(sr, 0.25, 0.09)
    t = np.arange(env.size) / sr
    body = 0.5 * np.sin(2 * np.pi * 190.0 * t)
    return (amp * env * (rng.standard_normal(env.size) * 0.6 + body)).astype(np.float32)


def hat(sr: int, rng: np.random.Generator, *, amp: float = 0.18) -> np.ndarray:
    """A closed hi-hat: differenced (high-passed) noise with a 25 ms decay."""
    env = _decay(sr, 0.08, 0.025)
    noise = np.diff(rng.standard_normal(env.size + 1))
    return (amp * env * noise / 2.0).astype(np.float32)


def bass_note(sr: int, freq: float, length_s: float, *, amp: float = 0.45) -> np.ndarray:
    """A bass note: root plus octave, 5 ms attack and a 0.4 s decay, cut at `length_s`."""
    t = np.arange(int(max(length_s, 0.05) * sr)) / sr
    env = np.minimum(1.0, t / 0.005) * np.exp(-t / 0.4)
    return (amp * env * (np.sin(2 * np.pi * freq * t) + 0.5 * np.sin(4 * np.pi * freq * t))).astype(np.float32)


def _bassline(out: np.ndarray, downbeats: np.ndarray, seconds: float, sr: int) -> None:
    ends = np.append(downbeats[1:], seconds)
    for i, (start, end) in enumerate(zip(downbeats, ends)):
        _place(out, bass_note(sr, BASS_ROOTS[i % len(BASS_ROOTS)], end - start - 0.01), start, sr)


def _place(out: np.ndarray, sound: np.ndarray, time_s: float, sr: int) -> None:
    start = int(round(time_s * sr))
    if start >= out.size:
        return
    end = min(out.size, start + sound.size)
    out[start:end] += sound[: end - start]


def _beats_at(bpm_of_time, seconds: float, offset_s: float) -> np.ndarray:
    """Beat times of a tempo curve: where the integrated beat phase crosses whole numbers."""
    dt = 1e-4
    t = np.arange(offset_s, seconds, dt)
    phase = np.concatenate([[0.0], np.cumsum(bpm_of_time(t[:-1]) / 60.0 * dt)]) if t.size else np.zeros(0)
    whole = np.arange(0, int(np.floor(phase[-1])) + 1) if t.size else np.zeros(0)
    return np.interp(whole, phase, t)


def _finish(samples: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return (samples / peak * 0.9 if peak > 0.9 else samples).astype(np.float32)


def click_track(bpm: float, seconds: float, *, sr: int = DEFAULT_SR, beats_per_bar: int = 4,
                accent: bool = True, offset_s: float = 0.0) -> SynthTrack:
    """A metronome at `bpm`: accented downbeats (louder, higher) when `accent`, first beat at `offset_s`."""
    bpm, seconds = _check_bpm(bpm), _seconds(seconds)
    beats = np.arange(offset_s, seconds - 0.05, 60.0 / bpm)
    out = np.zeros(int(seconds * sr), np.float32)
    normal, strong = click(sr, freq=1000.0, amp=0.4), click(sr, freq=1600.0, amp=0.9)
    for i, b in enumerate(beats):
        _place(out, strong if accent and i % beats_per_bar == 0 else normal, b, sr)
    return SynthTrack(_finish(out), sr, beats, beats[::beats_per_bar], bpm, f"click_{bpm:g}bpm")


def _drums(beats: np.ndarray, seconds: float, sr: int, pattern: str, seed: int, bass: bool = False) -> np.ndarray:
    """Render a drum pattern on a beat grid (eighths halfway between beats; bars of 4 beats from beat 0)."""
    if pattern not in PATTERNS:
        raise DataError(f"unknown pattern {pattern!r}", field="pattern", expected=" | ".join(PATTERNS))
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * sr), np.float32)
    sounds = {"kick": kick(sr), "snare": snare(sr, rng), "hat": hat(sr, rng)}
    step = np.diff(beats).mean() if beats.size > 1 else 0.5
    nxt = np.append(beats[1:], beats[-1] + step) if beats.size else beats
    for i, (b, b_next) in enumerate(zip(beats, nxt)):
        for eighth in (2 * (i % 4), 2 * (i % 4) + 1):
            when = b if eighth % 2 == 0 else (b + b_next) / 2
            for name, hits in PATTERNS[pattern].items():
                if eighth in hits:
                    _place(out, sounds[name], when, sr)
    if bass:
        _bassline(out, beats[::4], seconds, sr)
    return out


def drum_track(bpm: float, seconds: float, *, pattern: str = "rock", bass: bool = True, sr: int = DEFAULT_SR,
               offset_s: float = 0.0, seed: int = 0) -> SynthTrack:
    """A drum loop (`PATTERNS`: rock, four_on_floor, hiphop) at `bpm`, with a bass note on every downbeat."""
    bpm, seconds = _check_bpm(bpm), _seconds(seconds)
    beats = np.arange(offset_s, seconds - 0.05, 60.0 / bpm)
    out = _drums(beats, seconds, sr, pattern, seed, bass)
    return SynthTrack(_finish(out), sr, beats, beats[::4], bpm, f"drums_{pattern}_{bpm:g}bpm")


def tempo_change_track(start_bpm: float, end_bpm: float, seconds: float, *, kind: str = "ramp",
                       sound: str = "drums", sr: int = DEFAULT_SR, seed: int = 0) -> SynthTrack:
    """Drums (or clicks) whose tempo ramps linearly, or steps halfway, from `start_bpm` to `end_bpm`."""
    start_bpm, end_bpm, seconds = _check_bpm(start_bpm), _check_bpm(end_bpm), _seconds(seconds)
    if kind == "ramp":
        def curve(t):
            return start_bpm + (end_bpm - start_bpm) * t / seconds
    elif kind == "step":
        def curve(t):
            return np.where(t < seconds / 2, start_bpm, end_bpm)
    else:
        raise DataError(f"unknown kind {kind!r}", field="kind", expected="'ramp' or 'step'")
    beats = _beats_at(curve, seconds - 0.05, 0.0)
    if sound == "drums":
        out = _drums(beats, seconds, sr, "rock", seed, bass=True)
    elif sound == "click":
        out = np.zeros(int(seconds * sr), np.float32)
        normal, strong = click(sr, freq=1000.0, amp=0.4), click(sr, freq=1600.0, amp=0.9)
        for i, b in enumerate(beats):
            _place(out, strong if i % 4 == 0 else normal, b, sr)
    else:
        raise DataError(f"unknown sound {sound!r}", field="sound", expected="'drums' or 'click'")
    name = f"{kind}_{start_bpm:g}_to_{end_bpm:g}bpm"
    return SynthTrack(_finish(out), sr, beats, beats[::4], None, name)


def chord_pad(chord: str, seconds: float, *, sr: int = DEFAULT_SR, amp: float = 0.12) -> np.ndarray:
    """A steady triad (`CHORDS`) with soft edges: pitch content without onsets."""
    t = np.arange(int(_seconds(seconds) * sr)) / sr
    out = sum(np.sin(2 * np.pi * f * t) for f in CHORDS[chord])
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.05) if t.size else t
    return (amp * fade * out / 3.0).astype(np.float32)


def aba_song(bpm: float = 120.0, *, bars_per_section: int = 8, sr: int = DEFAULT_SR, seed: int = 0) -> SynthTrack:
    """A three-part song A-B-A: rock drums over C major, then four-on-the-floor over F# minor, then A again."""
    bpm = _check_bpm(bpm)
    bar_s = 4 * 60.0 / bpm
    part_s = bars_per_section * bar_s
    parts = [("A", "rock", "C"), ("B", "four_on_floor", "F#m"), ("A", "rock", "C")]
    pieces, sections = [], []
    for i, (label, pattern, chord) in enumerate(parts):
        beats = np.arange(0.0, part_s - 1e-6, 60.0 / bpm)
        drums = _drums(beats, part_s, sr, pattern, seed, bass=True)  # same seed: both A parts are sample-identical
        pieces.append(drums + chord_pad(chord, part_s, sr=sr, amp=0.25))
        sections.append((i * part_s, (i + 1) * part_s, label))
    out = np.concatenate(pieces)
    beats = np.arange(0.0, 3 * part_s - 0.05, 60.0 / bpm)
    return SynthTrack(_finish(out), sr, beats, beats[::4], bpm, f"aba_{bpm:g}bpm", tuple(sections))


def _beatless(samples: np.ndarray, sr: int, name: str) -> SynthTrack:
    empty = np.zeros(0)
    return SynthTrack(samples.astype(np.float32), sr, empty, empty, None, name)


def silence(seconds: float, *, sr: int = DEFAULT_SR) -> SynthTrack:
    """Digital silence."""
    return _beatless(np.zeros(int(_seconds(seconds) * sr)), sr, "silence")


def noise(seconds: float, *, sr: int = DEFAULT_SR, amp: float = 0.2, seed: int = 0) -> SynthTrack:
    """Steady white noise (no beat)."""
    rng = np.random.default_rng(seed)
    return _beatless(amp * rng.standard_normal(int(_seconds(seconds) * sr)), sr, "noise")


def tone(seconds: float, *, freq: float = 220.0, sr: int = DEFAULT_SR, amp: float = 0.3) -> SynthTrack:
    """An ambient drone: a tone with two overtones and a slow (0.13 Hz) swell, no onsets."""
    t = np.arange(int(_seconds(seconds) * sr)) / sr
    swell = 0.75 + 0.25 * np.sin(2 * np.pi * 0.13 * t)
    wave = np.sin(2 * np.pi * freq * t) + 0.4 * np.sin(4 * np.pi * freq * t) + 0.2 * np.sin(6 * np.pi * freq * t)
    return _beatless(amp * swell * wave / 1.6, sr, f"tone_{freq:g}hz")
