"""What a song's dance is saved as: BVH (Blender), NPZ, timeline.json, analysis.json/.png, GIF, MP4 with sound."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from kpop_helpers.choreograph.core import SongDance, attribution_of
from kpop_helpers.data.bvh import write_bvh
from kpop_helpers.data.clip import MotionClip
from kpop_helpers.data.io import save_npz
from kpop_helpers.motion.skeleton import FPS_HUMANML
from kpop_helpers.utils import atomic_write_text, json_ready, staged_path


def write_song_outputs(dance: SongDance, out_dir: str | Path, *, gif: bool = True, mp4: bool = False,
                       figure: bool = True, gif_frames: int | None = None, progress: bool = True) -> dict[str, Path]:
    """Write the dance and everything about it into out_dir; returns {kind: path}.

    figure/gif/mp4: the drawn outputs (analysis.png, preview.gif, preview.mp4) load matplotlib (about 40 MiB):
    a backend that only needs the dance and its data leaves them off.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(dance.song).stem or "song"
    clip = MotionClip(positions=dance.joints, fps=FPS_HUMANML, texts=[" | ".join(dance.timeline.prompts)],
                      source=name)
    paths = {"bvh": write_bvh(out / "dance.bvh", clip), "npz": save_npz(out / "dance.npz", [clip])}
    entries = [{"start": e.start_s, "end": e.end_s, "prompt": e.prompt} for e in dance.timeline.entries]
    paths["timeline"] = out / "timeline.json"
    atomic_write_text(paths["timeline"], json.dumps(entries, indent=1) + "\n")
    paths["analysis"] = dance.analysis.save(out / "analysis.json")
    if figure:
        from kpop_helpers.music import plot_analysis

        plot_analysis(dance.analysis, path=out / "analysis.png")
        paths["analysis_png"] = out / "analysis.png"
    summary = {"song": dance.song, "seconds": round(dance.seconds, 2), "tempo_bpm": dance.analysis.tempo_bpm,
               "sections": [s.label for s in dance.analysis.sections], "align": dance.align,
               "bas_before": dance.bas_before, "bas_after": dance.bas_after, "alignment": dance.alignment,
               "timings_s": dance.timings, "warnings": list(dance.analysis.warnings)}
    paths["summary"] = out / "choreography.json"
    atomic_write_text(paths["summary"], json.dumps(json_ready(summary), indent=1) + "\n")
    credit = attribution_of(dance.song)
    if credit:  # the song's licence asks for its credit beside anything derived from it
        paths["attribution"] = out / "ATTRIBUTION.txt"
        atomic_write_text(paths["attribution"], f"Music: {credit}\n")
    if gif or mp4:
        from kpop_helpers.viz.edits import save_long_dance_gif

        labels = dance.timeline.labels()
        if gif:
            paths["gif"] = save_long_dance_gif(dance.joints, out / "preview.gif", seams=dance.plan.seams(),
                                               boundaries=dance.timeline.boundaries(), labels=labels,
                                               max_frames=gif_frames, progress=progress, caption=name)
        if mp4:
            paths["mp4"] = song_video(dance, out / "preview.mp4", progress=progress)
    return paths


def song_video(dance: SongDance, path: str | Path, *, progress: bool = True) -> Path:
    """An MP4 of the dance with the song's audio (imageio-ffmpeg's ffmpeg muxes the two), written atomically."""
    from kpop_helpers.viz import save_mp4
    from kpop_helpers.viz.animation import ffmpeg_executable

    path = Path(path)
    silent = path.with_name(f".{path.stem}.silent.mp4")
    save_mp4(dance.joints, silent, caption=Path(dance.song).stem, progress=progress)
    try:
        with staged_path(path) as staged:
            command = [ffmpeg_executable(), "-y", "-loglevel", "error", "-i", str(silent), "-i", dance.song,
                       "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-shortest", "-f", "mp4",
                       str(staged)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"ffmpeg could not add the song's audio to {path}: {done.stderr.strip()}")
    finally:
        silent.unlink(missing_ok=True)
    return path
