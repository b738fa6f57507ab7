"""A picture of a song's analysis: waveform, sections, beats and downbeats, onset strength and loudness.

Pyplot-free (a bare Figure on the Agg canvas), so it renders headless and is never shown twice in a notebook.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kpop_helpers.music.analysis import MusicAnalysis
from kpop_helpers.music.audio import Audio, load_audio
from kpop_helpers.utils import staged_path

SECTION_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
ENVELOPE_POINTS = 4000  # waveform drawn as min/max per bin: one line per pixel column, not a million points


def _envelope(samples: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, min, max) of the waveform in ENVELOPE_POINTS bins."""
    bins = max(1, min(ENVELOPE_POINTS, samples.size))
    edges = np.linspace(0, samples.size, bins + 1).astype(int)
    lo = np.minimum.reduceat(samples, edges[:-1])
    hi = np.maximum.reduceat(samples, edges[:-1])
    return edges[:-1] / sr, lo, hi


def _shade_sections(ax, analysis: MusicAnalysis, *, text: bool) -> None:
    labels = sorted({s.label for s in analysis.sections})
    for s in analysis.sections:
        color = SECTION_COLORS[labels.index(s.label) % len(SECTION_COLORS)]
        ax.axvspan(s.start_s, s.end_s, color=color, alpha=0.18, lw=0)
        if text:
            ax.text((s.start_s + s.end_s) / 2, 0.97, s.label, transform=ax.get_xaxis_transform(), ha="center",
                    va="top", fontsize=10, fontweight="bold", color=color)


def _beat_lines(ax, analysis: MusicAnalysis) -> None:
    ax.vlines(analysis.beat_times, 0, 1, transform=ax.get_xaxis_transform(), colors="0.55", lw=0.4, alpha=0.6)
    ax.vlines(analysis.downbeat_times, 0, 1, transform=ax.get_xaxis_transform(), colors="crimson", lw=0.9,
              alpha=0.8)


def plot_analysis(analysis: MusicAnalysis, audio: Audio | str | Path | tuple | None = None,
                  path: str | Path | None = None,
                  *, title: str | None = None) -> Figure:
    """Waveform (if `audio`) with coloured, labelled sections, beats (grey) and downbeats (red); onset strength;
    loudness per frame with each section's mean. Writes a PNG atomically when given `path`."""
    rows = 3 if audio is not None else 2
    fig = Figure(figsize=(12, 2.3 * rows + 0.6), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True)
    axes = list(np.atleast_1d(axes))
    end = analysis.duration_s
    if audio is not None:
        audio = audio if isinstance(audio, Audio) else load_audio(audio)
        ax = axes.pop(0)
        t, lo, hi = _envelope(audio.mono, audio.sr)
        ax.fill_between(t, lo, hi, color="0.25", lw=0)
        _shade_sections(ax, analysis, text=True)
        _beat_lines(ax, analysis)
        ax.set_ylabel("waveform")
        first = ax
    else:
        first = axes[0]
    frames = np.arange(analysis.onset_envelope.size) / analysis.frame_rate
    ax = axes[0]
    ax.plot(frames, analysis.onset_envelope, color="tab:blue", lw=0.7)
    _beat_lines(ax, analysis)
    _shade_sections(ax, analysis, text=first is ax)
    if analysis.onset_envelope.size:  # a first-frame spike must not flatten the rest
        ax.set_ylim(0, max(1e-3, 1.3 * float(np.percentile(analysis.onset_envelope, 99.5))))
    ax.set_ylabel("onset strength")
    ax = axes[1]
    ax.plot(frames, analysis.loudness_db, color="0.4", lw=0.6, label="RMS level")
    for s in analysis.sections:
        ax.hlines(s.loudness_db, s.start_s, s.end_s, colors="black", lw=2)
    _shade_sections(ax, analysis, text=False)
    floor = np.percentile(analysis.loudness_db, 2) if analysis.loudness_db.size else -100
    ax.set_ylim(max(floor - 3, -100), max(float(np.max(analysis.loudness_db, initial=-100)) + 3, floor + 10))
    ax.set_ylabel("loudness (dBFS)")
    ax.set_xlabel("time (s)")
    ax.set_xlim(0, end)
    name = title or Path(analysis.source).name or "audio"
    head = (f"{name}: {analysis.tempo_bpm:.1f} BPM, {analysis.beat_times.size} beats, "
            f"{analysis.downbeat_times.size} bars, sections {'-'.join(s.label for s in analysis.sections)}")
    if analysis.warnings:
        head += f"\n{analysis.warnings[0]}"
    fig.suptitle(head, fontsize=10)
    if path is not None:
        path = Path(path)
        with staged_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    return fig
