"""Beat-tracking benchmark of kpop_helpers.music: synthetic tracks with known beats, and the shared songs.

    python benchmarks/bench_music.py [--out benchmarks/results] [--smoke]

Synthetic: click tracks and three drum patterns (with a bass note on every downbeat) at 70-180 BPM, tempo
ramps and steps, an A-B-A song and beatless audio. Per track: tempo error (%), beat F-measure (mir_eval's
definition, +-70 ms), downbeat F-measure, and the same for librosa's plain `beat_track` (default settings)
as the baseline. Songs (../shared/data/music, skipped when absent): tempo, beats, downbeats, sections and
analysis time. Writes music_beats.json, music_beats.md and analysis_<song>.png to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.music import analyze, f_measure, plot_analysis, synth
from kpop_helpers.music.beats import tempo_from_beats
from kpop_helpers.utils import atomic_write_text, fmt, json_ready, markdown_table

REPO = Path(__file__).resolve().parents[1]
MUSIC = REPO.parent / "shared" / "data" / "music"
TEMPOS = (70, 90, 100, 120, 128, 150, 180)
SOUNDS = ("click", "rock", "four_on_floor", "hiphop")
FIGURE_SONG = "lets_go_fishin_karissa_hobbs"


def synthetic_tracks(smoke: bool) -> list[synth.SynthTrack]:
    """The synthetic set (the smoke run keeps a few short ones)."""
    seconds = 8 if smoke else 20
    tempos = (90, 128) if smoke else TEMPOS
    tracks = []
    for bpm in tempos:
        for sound in SOUNDS:
            tracks.append(synth.click_track(bpm, seconds) if sound == "click"
                          else synth.drum_track(bpm, seconds, pattern=sound))
    changes = [(100, 130, "ramp", "drums"), (100, 130, "step", "drums"), (90, 140, "ramp", "click"),
               (90, 140, "step", "click")]
    for start, end, kind, sound in changes[:1] if smoke else changes:
        tracks.append(synth.tempo_change_track(start, end, 12 if smoke else 30, kind=kind, sound=sound))
    return tracks


def librosa_baseline(track: synth.SynthTrack) -> tuple[float, np.ndarray]:
    """(tempo, beat times) from librosa.beat.beat_track with its defaults."""
    import librosa

    tempo, beats = librosa.beat.beat_track(y=track.samples, sr=track.sr, units="time")
    return float(np.atleast_1d(tempo)[0]), np.asarray(beats)


def octave_ok(estimate: float, truth: float, tolerance: float = 0.04) -> bool:
    """MIREX ACC2: within 4 % of the true tempo or of 2x, 1/2x, 3x, 1/3x it."""
    return any(abs(estimate / (truth * k) - 1) <= tolerance for k in (1, 2, 0.5, 3, 1 / 3))


def measure_track(track: synth.SynthTrack) -> dict[str, Any]:
    """One synthetic row: ours and librosa's defaults against the truth."""
    start = time.perf_counter()
    result = analyze((track.samples, track.sr))
    seconds = time.perf_counter() - start
    base_bpm, base_beats = librosa_baseline(track)
    # A changing tempo has no one true tempo: compare with the same 16-beat-span median taken on the true beats.
    truth = track.bpm if track.bpm is not None else tempo_from_beats(track.beat_times)
    row = {
        "track": track.name, "seconds": round(track.duration_s, 1), "true_bpm": track.bpm,
        "bpm": round(result.tempo_bpm, 2), "tempo_error_pct": round(100 * (result.tempo_bpm / truth - 1), 2),
        "tempo_ok_2pct": abs(result.tempo_bpm / truth - 1) <= 0.02,
        "tempo_ok_octave": octave_ok(result.tempo_bpm, truth),
        "beat_f": round(f_measure(track.beat_times, result.beat_times), 4),
        "downbeat_f": round(f_measure(track.downbeat_times, result.downbeat_times), 4),
        "tempo_changes": result.tempo_changes, "warnings": result.warnings, "analysis_s": round(seconds, 3),
        "librosa_bpm": round(base_bpm, 2), "librosa_tempo_error_pct": round(100 * (base_bpm / truth - 1), 2),
        "librosa_beat_f": round(f_measure(track.beat_times, base_beats), 4),
    }
    if track.bpm is None:  # a changing tempo: the error is against the median true tempo
        row["true_bpm"] = f"{track.name.split('_')[1]}->{track.name.split('_')[3][:-3]}"
    return row


def summary(rows: list[dict]) -> dict[str, Any]:
    """Counts and means over the synthetic rows (tempo-change rows have no single true tempo for ACC1)."""
    steady = [r for r in rows if isinstance(r["true_bpm"], (int, float))]
    return {
        "tracks": len(rows), "steady_tracks": len(steady),
        "tempo_within_2pct": sum(r["tempo_ok_2pct"] for r in steady),
        "tempo_within_4pct_any_octave": sum(r["tempo_ok_octave"] for r in steady),
        "beat_f_mean": round(float(np.mean([r["beat_f"] for r in rows])), 4),
        "beat_f_min": round(float(np.min([r["beat_f"] for r in rows])), 4),
        "beat_f_at_least_0.9": sum(r["beat_f"] >= 0.9 for r in rows),
        "downbeat_f_mean": round(float(np.mean([r["downbeat_f"] for r in rows])), 4),
        "librosa_tempo_within_2pct": sum(abs(r["librosa_tempo_error_pct"]) <= 2 for r in steady),
        "librosa_beat_f_mean": round(float(np.mean([r["librosa_beat_f"] for r in rows])), 4),
    }


def special_cases() -> list[dict[str, Any]]:
    """The A-B-A song's sections and the beatless tracks' fallback."""
    out = []
    song = synth.aba_song(120)
    result = analyze((song.samples, song.sr))
    out.append({"track": song.name, "truth": "A-B-A, 8 bars each",
                "sections": [(round(s.start_s, 2), round(s.end_s, 2), s.label) for s in result.sections],
                "labels": "".join(s.label for s in result.sections), "warnings": result.warnings})
    for track in (synth.silence(20), synth.tone(20), synth.noise(20)):
        result = analyze((track.samples, track.sr))
        out.append({"track": track.name, "truth": "no beat", "bpm": result.tempo_bpm,
                    "beat_strength": round(result.beat_strength, 3), "warnings": result.warnings})
    return out


def attribution(name: str) -> str:
    """The licence note shipped beside a song (title, author, licence, source), on one line."""
    note = MUSIC / f"{name}.txt"
    lines = note.read_text(encoding="utf-8").strip().splitlines() if note.is_file() else []
    return " ".join(line.strip() for line in lines if line.strip())


def measure_songs(out: Path, smoke: bool) -> list[dict[str, Any]]:
    """One row per shared song (none when ../shared is absent); the figure for FIGURE_SONG."""
    if not MUSIC.is_dir():
        return []
    import librosa

    rows = []
    for path in sorted(MUSIC.glob("*.ogg"))[: 1 if smoke else None]:
        start = time.perf_counter()
        result = analyze(path)
        seconds = time.perf_counter() - start
        y, sr = librosa.load(path, sr=22050)
        base_bpm = float(np.atleast_1d(librosa.beat.beat_track(y=y, sr=sr)[0])[0])
        rows.append({
            "song": path.stem, "duration_s": round(result.duration_s, 2), "bpm": round(result.tempo_bpm, 2),
            "librosa_bpm": round(base_bpm, 2), "beats": int(result.beat_times.size),
            "downbeats": int(result.downbeat_times.size), "beat_strength": round(result.beat_strength, 3),
            "sections": "".join(s.label for s in result.sections),
            "section_starts_s": [round(s.start_s, 1) for s in result.sections],
            "section_loudness_db": [round(s.loudness_db, 1) for s in result.sections],
            "analysis_s": round(seconds, 2), "warnings": result.warnings, "attribution": attribution(path.stem),
        })
        if path.stem == FIGURE_SONG or smoke:
            plot_analysis(result, path, out / f"analysis_{path.stem}.png")
    return rows


def cell(row: dict[str, Any], key: str) -> str:
    """A table cell: text as is, numbers to 4 significant digits."""
    value = row.get(key)
    return value if isinstance(value, str) else fmt(value, 4)


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """music_beats.md: the summary, the synthetic rows, the special cases and the songs with attribution."""
    s = report["summary"]
    lines = [
        "# Beat tracking: kpop_helpers.music (librosa's tracker, ported to numpy)", "",
        f"Machine: {report['machine']}; librosa {report['librosa']}. Beat F-measure: mir_eval's definition "
        "(one-to-one matches within +-70 ms). Tempo error against the true tempo (tempo changes: against the "
        "median over 16-beat spans of the true beats, the estimator tempo_bpm uses). Baseline: `librosa.beat.beat_track` with its defaults on the same audio.", "",
        f"- tempo within 2 %: {s['tempo_within_2pct']}/{s['steady_tracks']} steady tracks "
        f"(librosa defaults: {s['librosa_tempo_within_2pct']}/{s['steady_tracks']}); within 4 % at any octave: "
        f"{s['tempo_within_4pct_any_octave']}/{s['steady_tracks']}",
        f"- beat F-measure: mean {s['beat_f_mean']}, min {s['beat_f_min']}, >= 0.9 on "
        f"{s['beat_f_at_least_0.9']}/{s['tracks']} (librosa defaults: mean {s['librosa_beat_f_mean']})",
        f"- downbeat F-measure: mean {s['downbeat_f_mean']}",
        f"- first analysis in a process (imports, first calls): {report['warmup_s']} s", "",
        "## Synthetic tracks", "",
    ]
    cols = [("track", "track"), ("true_bpm", "true BPM"), ("bpm", "BPM"), ("tempo_error_pct", "tempo error %"),
            ("beat_f", "beat F"), ("downbeat_f", "downbeat F"), ("librosa_bpm", "librosa BPM"),
            ("librosa_beat_f", "librosa beat F"), ("analysis_s", "time (s)")]
    lines.append(markdown_table(report["synthetic"], cols, cell))
    lines += ["", "## Sections and beatless audio", ""]
    for case in report["special"]:
        detail = case.get("labels") or f"{case.get('bpm')} BPM, beat strength {case.get('beat_strength')}"
        lines.append(f"- {case['track']} ({case['truth']}): {detail}; sections {case.get('sections', '')}"
                     + (f"; warning: {case['warnings'][0]}" if case["warnings"] else ""))
    if report["songs"]:
        lines += ["", "## Songs (../shared/data/music)", ""]
        cols = [("song", "song"), ("duration_s", "length (s)"), ("bpm", "BPM"), ("librosa_bpm", "librosa BPM"),
                ("beats", "beats"), ("downbeats", "downbeats"), ("beat_strength", "beat strength"),
                ("sections", "sections"), ("analysis_s", "time (s)")]
        lines.append(markdown_table(report["songs"], cols, cell))
        lines += ["", f"Figure: `analysis_{FIGURE_SONG}.png`.", "", "Attribution:", ""]
        lines += [f"- {r['song']}: {r['attribution']}" for r in report["songs"]]
    atomic_write_text(path, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write its files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--smoke", action="store_true", help="a few short tracks (seconds)")
    args = parser.parse_args(argv)
    import librosa

    args.out.mkdir(parents=True, exist_ok=True)
    warm = synth.click_track(120, 6)
    start = time.perf_counter()
    analyze((warm.samples, warm.sr))
    warmup = round(time.perf_counter() - start, 2)
    rows = [measure_track(t) for t in synthetic_tracks(args.smoke)]
    report = {"machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
              "librosa": librosa.__version__, "warmup_s": warmup, "summary": summary(rows), "synthetic": rows,
              "special": special_cases(), "songs": measure_songs(args.out, args.smoke)}
    atomic_write_text(args.out / "music_beats.json", json.dumps(json_ready(report), indent=1) + "\n")
    write_markdown(report, args.out / "music_beats.md")
    return report


if __name__ == "__main__":
    result = main()
    print(json.dumps(result["summary"], indent=1))
