"""Song in, a whole dance on the beat out: analysis -> section prompts -> a dance of the song's length -> beats.

The generator is anything with `generate_result(prompts=None, *, timeline=, seconds=, seed=)` returning the
features [1,T,263] and the plan of the dance: `kpop_helpers.edge.EdgeGenerator` (numpy + ONNX Runtime, what a
studio backend runs) or `kpop_helpers.generate.TorchDanceGenerator` (a PyTorch model, e.g. on a Colab GPU).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kpop_helpers.editing.song import DEFAULT_STYLE, song_timeline
from kpop_helpers.editing.timeline import Timeline
from kpop_helpers.errors import DataError
from kpop_helpers.motion.skeleton import FPS_HUMANML

ALIGN_METHODS = ("snap", "tempo", "none")
MAX_SONG_SECONDS = 600.0


class DanceGenerator(Protocol):
    """What `choreograph` needs of a generator (EdgeGenerator and TorchDanceGenerator have it)."""

    def generate_result(self, prompts: Any = None, **kwargs: Any) -> Any: ...


@dataclass
class SongDance:
    """A song's dance: joints [T,22,3] and features [T,263] at 20 fps, the analysis, timeline and timings."""

    joints: np.ndarray
    features: np.ndarray
    analysis: Any
    timeline: Timeline
    plan: Any
    song: str
    align: str
    bas_before: float
    bas_after: float
    alignment: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    generated: np.ndarray | None = None  # features [T,263] as generated, before the beat alignment
    warp: Any = None  # the time map of the alignment (editing.beats.TimeWarp)
    analysis_process: dict[str, Any] | None = None  # {"peak_rss_mib", "seconds"} when analysed in its own process

    @property
    def seconds(self) -> float:
        """Length of the dance."""
        return self.joints.shape[0] / FPS_HUMANML


def choreograph(song: Any, generator: DanceGenerator, *, prompts: Any = None, style: str = DEFAULT_STYLE,
                bpm: float | None = None, seed: int | None = 0, align: str = "snap",
                max_speed_change: float = 0.15, analysis: Any = None, excerpt_s: float | None = None,
                isolate_analysis: bool = False, **sampling: Any) -> SongDance:
    """The whole-song dance: sections get prompts, the dance is made at the song's length and put on its beats.

    song: an audio path (or `music.Audio`); analysis: a precomputed `MusicAnalysis` (else analysed here, with
    `bpm` forcing the tempo). prompts: {label: prompt}, one per section, one for the song, or None (the style
    with an intensity word per section from its loudness). align: "snap" (motion beats snapped to music beats
    within +-max_speed_change local speed), "tempo" (one retiming) or "none". `sampling`: sampler, steps,
    guidance, ... passed to the generator. excerpt_s: only the song's first seconds (previews, tests).
    isolate_analysis: analyse a song file in a short-lived process of its own (`music.isolated`), so this
    process never holds the decoding's memory (a backend with a memory bound; costs a process start).
    """
    from kpop_helpers.editing.beats import align_to_beats, beat_alignment_score
    from kpop_helpers.music import analyze, load_audio

    if align not in ALIGN_METHODS:
        raise DataError(f"align={align!r}", field="align", expected=f"one of {ALIGN_METHODS}")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    isolated = None
    if analysis is None and isolate_analysis and isinstance(song, (str, Path)):
        from kpop_helpers.music.isolated import analyze_in_process

        analysis, isolated = analyze_in_process(song, bpm=bpm, excerpt_s=excerpt_s)
    elif analysis is None:
        analysis = analyze(load_audio(song).head(excerpt_s), bpm=bpm)
    timings["analysis_s"] = time.perf_counter() - start
    if analysis.duration_s > MAX_SONG_SECONDS:
        raise DataError(f"{analysis.duration_s:.0f} s of audio", path=str(song), field="song",
                        expected=f"at most {MAX_SONG_SECONDS:.0f} s (cut the song)")
    timeline = song_timeline(analysis, prompts, style=style)
    mark = time.perf_counter()
    result = generator.generate_result(timeline=timeline, seconds=analysis.duration_s, seed=seed, **sampling)
    timings["generation_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    features = np.asarray(result.features[0], dtype=np.float32)
    beats = np.asarray(analysis.beat_times, dtype=np.float64)
    before = beat_alignment_score(features, beats)
    aligned = align_to_beats(features, beats, max_speed_change=max_speed_change, method=align)
    after = beat_alignment_score(aligned.features, beats)
    joints = result.plan.finish(aligned.features[None])[0]
    timings["alignment_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - start
    return SongDance(joints=joints, features=aligned.features, analysis=analysis, timeline=timeline,
                     plan=result.plan, song=str(getattr(song, "source", song)), align=align,
                     bas_before=float(before), bas_after=float(after), alignment=dict(aligned.info),
                     timings=timings, generated=features, warp=aligned.warp, analysis_process=isolated)


def attribution_of(song: str | Path) -> str | None:
    """The attribution text kept beside a song (`<song>.txt`), or None."""
    path = Path(song)
    sidecar = path.with_suffix(".txt")
    return sidecar.read_text(encoding="utf-8").strip() if path.suffix and sidecar.is_file() else None
