"""The music side of choreographing a song: audio in -> tempo, beats, downbeats, eight-counts, sections.

    from kpop_helpers.music import analyze, plot_analysis
    song = analyze("song.mp3")            # or analyze("song.ogg", bpm=120) to force the tempo
    song.beat_times, song.count_positions, song.sections
    song.save("analysis.json"); plot_analysis(song, "song.mp3", "analysis.png")

Needs the [audio] extra (soundfile to decode, soxr to resample); the analysis itself is numpy (librosa's
methods ported in `music.dsp`), and the default tracker uses no weights and runs offline. `plot_analysis`
(matplotlib) is imported on first use, so analysing a song does not load matplotlib.
"""

from typing import Any

from kpop_helpers.music.analysis import MusicAnalysis, analyze
from kpop_helpers.music.audio import Audio, load_audio
from kpop_helpers.music.beats import DEFAULT_BPM, MIN_BEAT_STRENGTH, f_measure
from kpop_helpers.music.sections import Section
from kpop_helpers.music.trackers import TRACKERS

__all__ = [
    "DEFAULT_BPM",
    "MIN_BEAT_STRENGTH",
    "TRACKERS",
    "Audio",
    "MusicAnalysis",
    "Section",
    "analyze",
    "f_measure",
    "load_audio",
    "plot_analysis",
]


def __getattr__(name: str) -> Any:
    """plot_analysis on first use: matplotlib costs about 37 MiB of memory that analyze() does not need."""
    if name == "plot_analysis":
        from kpop_helpers.music.figure import plot_analysis

        globals()[name] = plot_analysis
        return plot_analysis
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
