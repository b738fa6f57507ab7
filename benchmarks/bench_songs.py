"""Whole-song choreography on the edge runtime: beat alignment of the output dance, its quality, time and memory.

    python benchmarks/bench_songs.py --export-dir EXPORT [--variant int8] [--threads 2] [--seeds 3]
    python benchmarks/bench_songs.py --export-dir EXPORT --smoke --out /tmp/b      # seconds, for tests

For every shared song (../shared/data/music) and seed, in its own process (peak RSS is per process): the song's
analysis, the dance of its whole length (EdgeGenerator, the export's sampler), the beat alignment, and the BVH,
timed. BAS (the fixture-verified Bailando score, on SMPL-24 joints at 60 fps, as `editing.beats` feeds it) of the
dance before alignment, after, and of the aligned dance against the song's beats shifted by random offsets
(chance level); foot skating, jerk and PFC before and after. Writes music.json and music.md to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.utils import json_from_process, json_ready, markdown_table, write_result_files

REPO = Path(__file__).resolve().parents[1]
MUSIC = REPO.parent / "shared" / "data" / "music"
ANCHORS = {"real dancers (AIST++)": 0.24, "Bailando": 0.23, "EDGE": 0.265}
GOALS = {"bas_after_min": 0.30, "quality_worse_max": 0.10, "time_fraction_max": 0.25, "rss_mib_max": 200.0}
CHANCE_SHIFTS = 8


def one_song(args: argparse.Namespace) -> dict[str, Any]:
    """Choreograph one song with one seed in this process; every measurement of it."""
    from kpop_helpers.choreograph import choreograph, write_song_outputs
    from kpop_helpers.edge import EdgeGenerator
    from kpop_helpers.editing.beats import beat_alignment_score
    from kpop_helpers.metrics.convert import to_edge_convention
    from kpop_helpers.metrics.pfc import physical_foot_contact
    from kpop_helpers.motion.features import features_to_joints
    from kpop_helpers.motion.quality import foot_skating_ratio, jitter
    from kpop_helpers.utils import peak_rss_mib

    start = time.perf_counter()
    edge = EdgeGenerator(args.export_dir, variant=args.variant, threads=args.threads)
    load_s = time.perf_counter() - start
    sampling = {"steps": args.steps} if args.steps else {}
    dance = choreograph(args.one_song, edge, seed=args.seed, excerpt_s=args.excerpt, isolate_analysis=True, **sampling)
    mark = time.perf_counter()
    folder = Path(args.work) / f"{Path(args.one_song).stem}_{args.seed}"
    write_song_outputs(dance, folder, gif=False, figure=False)
    files_s = time.perf_counter() - mark
    peak = peak_rss_mib()  # the whole song's data path; the figure (matplotlib) is drawn and measured after it
    mark = time.perf_counter()
    from kpop_helpers.music import plot_analysis

    plot_analysis(dance.analysis, path=folder / "analysis.png")  # what write_song_outputs(figure=True) adds
    figure_s = time.perf_counter() - mark
    before = features_to_joints(dance.generated)
    rng = np.random.default_rng(args.seed)
    beats = np.asarray(dance.analysis.beat_times)
    period = float(np.median(np.diff(beats))) if beats.size > 1 else 0.5
    chance = [beat_alignment_score(dance.features, beats + rng.uniform(0.2, 0.8) * period)
              for _ in range(CHANCE_SHIFTS)]

    def quality(joints: np.ndarray) -> dict[str, float]:
        return {"skating": float(foot_skating_ratio(joints, 20.0)), "jerk": float(jitter(joints, 20.0)),
                "pfc": float(physical_foot_contact([to_edge_convention(joints, 20.0)], mode="corrected"))}

    timings = dict(dance.timings)
    return {"song": Path(args.one_song).stem, "seed": args.seed, "seconds": dance.seconds,
            "tempo_bpm": float(dance.analysis.tempo_bpm), "beats": int(beats.size),
            "sections": "".join(s.label for s in dance.analysis.sections), "warnings": dance.analysis.warnings,
            "windows": 1 if dance.plan.windows is None else dance.plan.windows.count,
            "bas_before": dance.bas_before, "bas_after": dance.bas_after, "bas_chance": float(np.nanmean(chance)),
            "before": quality(before), "after": quality(dance.joints), "load_s": load_s,
            "analysis_s": timings["analysis_s"], "generation_s": timings["generation_s"],
            "alignment_s": timings["alignment_s"], "files_s": files_s,
            "total_s": timings["total_s"] + files_s, "peak_rss_mib": peak, "figure_s": figure_s,
            "peak_rss_with_figure_mib": peak_rss_mib(), "analysis_peak_rss_mib": dance.analysis_process["peak_rss_mib"],
            "matched": dance.alignment.get("matched")}


def run_all(args: argparse.Namespace, songs: list[Path]) -> list[dict[str, Any]]:
    """Every song x seed in its own process."""
    from tqdm.auto import tqdm

    rows = []
    jobs = [(song, seed) for song in songs for seed in range(args.seeds)]
    for song, seed in tqdm(jobs, desc="songs"):
        command = [sys.executable, __file__, "--export-dir", str(args.export_dir), "--variant", args.variant,
                   "--threads", str(args.threads), "--seed", str(seed), "--one-song", str(song), "--work",
                   str(args.work)] + (["--steps", str(args.steps)] if args.steps else []) + \
                  (["--excerpt", str(args.excerpt)] if args.excerpt else [])
        rows.append(json_from_process(command, f"{song.name} seed {seed}"))
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per song: means over seeds, the goals checked."""
    out = []
    for song in dict.fromkeys(r["song"] for r in rows):
        mine = [r for r in rows if r["song"] == song]

        def mean(key: str, part: str | None = None) -> float:
            return float(np.nanmean([(r[part][key] if part else r[key]) for r in mine]))

        worse = max(mean(k, "after") / max(mean(k, "before"), 1e-9) - 1 for k in ("skating", "jerk", "pfc"))
        out.append({"song": song, "seconds": mean("seconds"), "tempo": mean("tempo_bpm"), "beats": mine[0]["beats"],
                    "sections": mine[0]["sections"], "windows": mine[0]["windows"], "seeds": len(mine),
                    "bas_before": mean("bas_before"), "bas_after": mean("bas_after"),
                    "bas_chance": mean("bas_chance"), "skating": f"{mean('skating', 'before'):.3f} -> "
                    f"{mean('skating', 'after'):.3f}", "jerk": f"{mean('jerk', 'before'):.0f} -> {mean('jerk', 'after'):.0f}",
                    "pfc": f"{mean('pfc', 'before'):.3f} -> {mean('pfc', 'after'):.3f}", "worst_quality_change": worse,
                    "total_s": mean("total_s"), "time_fraction": mean("total_s") / mean("seconds"),
                    "peak_rss_mib": max(r["peak_rss_mib"] for r in mine), "figure_s": mean("figure_s"),
                    "analysis_peak_rss_mib": max(r["analysis_peak_rss_mib"] for r in mine),
                    "peak_rss_with_figure_mib": max(r["peak_rss_with_figure_mib"] for r in mine),
                    "bas_goal": mean("bas_after") >= GOALS["bas_after_min"],
                    "quality_goal": worse <= GOALS["quality_worse_max"],
                    "time_goal": mean("total_s") / mean("seconds") <= GOALS["time_fraction_max"],
                    "rss_goal": max(max(r["peak_rss_mib"], r["analysis_peak_rss_mib"]) for r in mine)
                    <= GOALS["rss_mib_max"]})
    return out


def markdown(result: dict[str, Any]) -> str:
    """music.md: setting, the alignment table with the anchors, time and memory, attribution."""
    p = result["protocol"]
    lines = ["# Choreographing the shared songs (edge runtime)", "",
             f"{p['date']} · {p['machine']} · ONNX Runtime `{p['variant']}`, {p['threads']} threads, the export's "
             f"sampler · {p['seeds']} seeds per song{' · SMOKE' if p['smoke'] else ''}", "",
             "BAS: the Bailando beat-alignment score (fixture-verified, `metrics.beat`), computed as the papers do on "
             "SMPL-24 joints at 60 fps: our 20 fps T2M-22 dance is converted (`metrics.convert.to_aist_convention`, "
             "the 22 joints placed on SMPL's, hands from the wrists, upsampled to 60 fps). Chance: the aligned dance "
             f"against the song's beats shifted by {CHANCE_SHIFTS} random offsets (20-80 % of a beat). Anchors "
             "(AIST++, 60 fps SMPL): " + ", ".join(f"{k} {v}" for k, v in ANCHORS.items()) + f". Goals: BAS after >= "
             f"{GOALS['bas_after_min']}, skating/jerk/PFC no more than {GOALS['quality_worse_max']:.0%} worse, "
             f"whole song (analysis, generation, alignment, BVH; no MP4) <= {GOALS['time_fraction_max']} x its "
             f"duration, peak RSS <= {GOALS['rss_mib_max']:.0f} MiB.", ""]
    cols = (("song", "song"), ("seconds", "s"), ("tempo", "BPM"), ("sections", "sections"), ("windows", "windows"),
            ("bas_before", "BAS before"), ("bas_after", "BAS aligned"), ("bas_chance", "BAS chance"),
            ("skating", "foot skating"), ("jerk", "jerk m/s^3"), ("pfc", "PFC"), ("bas_goal", "BAS goal"),
            ("quality_goal", "quality goal"))
    lines += ["## Beat alignment", "", markdown_table(result["songs"], cols), ""]
    cols = (("song", "song"), ("seconds", "s"), ("total_s", "whole song (s)"), ("time_fraction", "x duration"),
            ("peak_rss_mib", "peak RSS (MiB)"), ("analysis_peak_rss_mib", "analysis process (MiB)"),
            ("time_goal", "time goal"), ("rss_goal", "RSS goal"),
            ("figure_s", "+ analysis.png (s)"), ("peak_rss_with_figure_mib", "peak RSS with it (MiB)"))
    lines += ["## Time and memory", "", markdown_table(result["songs"], cols), "",
              "One process per song and seed: the dance (EdgeGenerator, int8 text tower), the beat alignment and the "
              "files (BVH, NPZ, JSON); the analysis (numpy, no librosa) runs before them in a short-lived process of "
              "its own (`choreograph(isolate_analysis=True)`, the CLI's default), timed in the whole song; its peak "
              "is its own column, and the two never run at once. The analysis figure (matplotlib) is drawn "
              "after that, timed and measured on its own, like the MP4. Per run (seed): analysis / generation / "
              "alignment / files seconds in music.json.", ""]
    if result.get("attribution"):
        lines += ["## Music", ""] + [f"- {a}" for a in result["attribution"]] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export-dir", type=Path, required=True)
    p.add_argument("--variant", default="int8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the export's)")
    p.add_argument("--excerpt", type=float, default=None, help="only each song's first seconds")
    p.add_argument("--songs", type=Path, default=MUSIC)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--work", type=Path, default=Path("/tmp/kpop_bench_songs"))
    p.add_argument("--smoke", action="store_true", help="20 s excerpts, 1 seed, 5 steps")
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--one-song", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.seeds, args.steps, args.excerpt = 1, args.steps or 5, args.excerpt or 20.0
    if args.one_song:
        print(json.dumps(json_ready(one_song(args))))
        return 0
    songs = sorted(args.songs.glob("*.ogg")) + sorted(args.songs.glob("*.wav")) + sorted(args.songs.glob("*.mp3"))
    if not songs:
        p.error(f"no songs in {args.songs}")
    rows = run_all(args, songs)
    credits = [s.with_suffix(".txt").read_text(encoding="utf-8").strip() for s in songs
               if s.with_suffix(".txt").is_file()]
    import onnxruntime

    result = {"protocol": {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "variant": args.variant,
                           "threads": args.threads, "seeds": args.seeds, "steps": args.steps, "smoke": args.smoke,
                           "excerpt_s": args.excerpt, "export_dir": str(args.export_dir),
                           "machine": f"{platform.processor() or platform.machine()}, onnxruntime "
                                      f"{onnxruntime.__version__}", "goals": GOALS, "anchors": ANCHORS},
              "songs": summarise(rows), "runs": rows, "attribution": credits}
    write_result_files(args.out, "music", result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
