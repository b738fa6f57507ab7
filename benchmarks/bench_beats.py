"""Does retiming put a dance on the beat, and what does it cost? `editing.align_to_beats` measured.

    .venv/bin/python benchmarks/bench_beats.py [--synthetic 30] [--shifts 8] [--out benchmarks/results]
    .venv/bin/python benchmarks/bench_beats.py --smoke --out /tmp/b   # seconds

Dances: the real salsa capture in ../shared/data/real_motion (cut into 196-frame pieces, MDM's longest dance;
skipped when absent) and the synthetic sample set, each turned into features with `joints_to_features` (a
generated dance arrives as features). Music: beat grids at 80-160 BPM with a random phase, and one list
that changes tempo half-way (100 -> 128 BPM). For every dance and grid: the Beat Alignment Score (the
project's `beat_alignment`, fed SMPL-24 joints at 60 fps as the metric is defined) before, after each method
and max_speed_change, and at chance (the grid shifted by random offsets: a dance that ignores the music);
foot skating (20 fps), jerk (mean |third difference| in m/s^3) and PFC (EDGE convention) before and after.
Writes beat_alignment.json (summaries; every record with --records) and beat_alignment.md to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from kpop_helpers.data.io import load_clips
from kpop_helpers.data.sample import generate_sample_records
from kpop_helpers.editing.beats import DEFAULT_MAX_SPEED_CHANGE, align_to_beats, beat_alignment_score
from kpop_helpers.metrics.convert import to_edge_convention
from kpop_helpers.metrics.pfc import PFC_SCALE, foot_contact_terms
from kpop_helpers.motion.features import features_to_joints, joints_to_features
from kpop_helpers.motion.quality import foot_skating_ratio, jitter
from kpop_helpers.motion.skeleton import FOOT_JOINTS
from kpop_helpers.utils import fmt, markdown_table, write_result_files

REPO = Path(__file__).resolve().parents[1]
REAL_MOTION = REPO.parent / "shared" / "data" / "real_motion"
FPS = 20.0
PIECE = 196  # frames: MDM's longest dance
MIN_PIECE = 100  # a remainder shorter than 5 s is left out
TEMPOS = (80, 100, 120, 140, 160)
CHANGE = (100, 128)  # BPM before and after the half-way tempo change
SETTINGS = (("none", None), ("tempo", 0.10), ("tempo", 0.15), ("tempo", 0.25),
            ("snap", 0.10), ("snap", 0.15), ("snap", 0.25))
QUALITY_GOAL = 0.10  # at most 10 % worse than before
# Below these absolute changes a ratio means nothing: the synthetic clips' feet are pinned (skating and PFC ~0),
# and generated dances' PFC moves by ~0.08 between noise seeds alone (quality_noise.md).
ABS_TOLERANCE = {"skate": 0.005, "pfc": 0.01}
SEED = 0


def real_dances() -> list[tuple[str, np.ndarray]]:
    """(name, features) of 196-frame pieces of the real dance clips (the manifest's is_dance); [] when absent."""
    if not REAL_MOTION.is_dir():
        return []
    manifest = json.loads((REAL_MOTION / "manifest.json").read_text())
    dances = {str(REAL_MOTION / f["path"]) for f in manifest["files"] if f.get("is_dance")}
    clips, _ = load_clips(REAL_MOTION, on_error="skip", fps=FPS, progress=False)
    out = []
    for clip in clips:
        if str(clip.source) not in dances:
            continue
        for start in range(0, len(clip.positions), PIECE):
            piece = clip.positions[start:start + PIECE + 1]  # T+1 joint frames give T feature frames
            if len(piece) > MIN_PIECE:
                out.append((f"{Path(clip.source).stem}@{start}", joints_to_features(piece)))
    return out


def synthetic_dances(count: int) -> list[tuple[str, np.ndarray]]:
    """(name, features) of the synthetic sample set (seed 1: not the clips the tests use)."""
    return [(f"{r.clip.source}@{r.bpm}bpm", joints_to_features(r.clip.positions))
            for r in generate_sample_records(count, seed=1)]


def grids(duration: float, rng: np.random.Generator) -> list[tuple[str, np.ndarray, float]]:
    """(name, beat times, period) of every test grid over a dance of `duration` s, each with a random phase."""
    out = []
    for bpm in TEMPOS:
        period = 60.0 / bpm
        out.append((f"{bpm} BPM", np.arange(rng.uniform(0, period), duration + period, period), period))
    first, second = (60.0 / bpm for bpm in CHANGE)
    start = rng.uniform(0, first)
    before = np.arange(start, duration / 2, first)
    after = np.arange(before[-1] + second, duration + second, second)
    out.append((f"{CHANGE[0]}->{CHANGE[1]} BPM", np.concatenate([before, after]), first))
    return out


def floor_of(features: np.ndarray) -> float:
    """The dance's floor: its lowest foot joint (foot_skating_ratio's default, computed once per dance)."""
    return float(features_to_joints(features)[:, list(FOOT_JOINTS), 1].min())


def quality(features: np.ndarray, floor: float) -> dict[str, float]:
    """Foot skating (on the original dance's floor), jerk (m/s^3) and PFC of one dance's features."""
    joints = features_to_joints(features)
    pfc = foot_contact_terms(to_edge_convention(joints, FPS), mode="corrected").score * PFC_SCALE
    # A fixed floor: a retimed dance that leaves out its lowest frame would otherwise "skate" more (1-2 cm higher
    # floor, more feet in contact) with every foot moving exactly as before.
    skate = foot_skating_ratio(joints, FPS, floor_height=floor)
    return {"skate": skate, "jerk": jitter(joints, FPS), "pfc": float(pfc)}


def chance(features: np.ndarray, beats: np.ndarray, period: float, shifts: int, rng: np.random.Generator) -> float:
    """Mean BAS with the grid shifted by random offsets within a beat: a dance that ignores the music."""
    scores = [beat_alignment_score(features, beats + rng.uniform(0, period), fps=FPS) for _ in range(shifts)]
    return float(np.nanmean(scores))


def measure(dances: list[tuple[str, np.ndarray]], dataset: str, shifts: int, rng: np.random.Generator) -> list[dict]:
    """One record per (dance, grid, setting)."""
    records = []
    for name, features in tqdm(dances, desc=dataset):
        floor = floor_of(features)
        base = quality(features, floor)
        for grid, beats, period in grids(len(features) / FPS, rng):
            heard = int(np.sum(beats < len(features) / FPS - 1 / 60))
            level = chance(features, beats, period, shifts, rng)
            for method, change in SETTINGS:
                start = time.perf_counter()
                aligned = align_to_beats(features, beats, method=method,
                                         max_speed_change=change or DEFAULT_MAX_SPEED_CHANGE)
                seconds = time.perf_counter() - start
                after = base if method == "none" else quality(aligned.features, floor)
                info = aligned.info
                records.append({
                    "dataset": dataset, "dance": name, "grid": grid, "method": method, "max_speed_change": change,
                    "bas_before": info["bas_before"], "bas_after": info["bas_after"], "bas_chance": level,
                    "matched_share": info["matched"] / max(heard, 1), "start_shift_s": info["start_shift_s"],
                    "frozen_s": max(info["start_shift_s"], 0.0) + max(-info["end_shift_s"], 0.0),
                    "cut_s": max(-info["start_shift_s"], 0.0) + max(info["end_shift_s"], 0.0),
                    "slope_min": info["slope_min"], "slope_max": info["slope_max"], "ms": 1000 * seconds,
                    **{f"{k}_before": v for k, v in base.items()}, **{f"{k}_after": v for k, v in after.items()},
                })
    return records


def summarise(records: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """Means per group of `keys`, quality as after/before ratios of the means (skating: absolute change)."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault(tuple(record[k] for k in keys), []).append(record)
    rows = []
    for group, items in groups.items():
        mean = {k: float(np.nanmean([r[k] for r in items])) for k in items[0] if isinstance(items[0][k], float)}
        row: dict[str, Any] = dict(zip(keys, group)) | {"n": len(items)}
        row.update({k: mean[k] for k in ("bas_before", "bas_after", "bas_chance", "matched_share", "frozen_s",
                                          "cut_s", "ms", "skate_before", "skate_after", "pfc_before", "pfc_after")})
        row["bas_gain"] = mean["bas_after"] - mean["bas_before"]
        row["improved_share"] = float(np.mean([r["bas_after"] > r["bas_before"] for r in items]))
        row["jerk_ratio"] = mean["jerk_after"] / mean["jerk_before"]
        row["jerk_ratio_p95"] = float(np.percentile([r["jerk_after"] / r["jerk_before"] for r in items], 95))
        row["within_goal"] = row["jerk_ratio"] <= 1 + QUALITY_GOAL and all(
            mean[f"{k}_after"] <= max(mean[f"{k}_before"] * (1 + QUALITY_GOAL), mean[f"{k}_before"] + tol)
            for k, tol in ABS_TOLERANCE.items())
        rows.append(row)
    return rows


def setting_name(row: dict) -> str:
    """'snap 0.15', 'tempo 0.10', 'none'."""
    return row["method"] if row["max_speed_change"] is None else f"{row['method']} {row['max_speed_change']:.2f}"


def to_markdown(result: dict) -> str:
    """The report: settings per dataset, the default per grid, and the recommendation."""
    cell = lambda row, key: setting_name(row) if key == "setting" else fmt(row.get(key))  # noqa: E731
    columns = [("dataset", "dances"), ("setting", "method / max change"), ("bas_before", "BAS before"),
               ("bas_chance", "BAS chance"), ("bas_after", "BAS after"), ("bas_gain", "gain"),
               ("improved_share", "share improved"), ("matched_share", "beats matched"),
               ("frozen_s", "frozen s"), ("cut_s", "cut s"), ("skate_before", "skate before"),
               ("skate_after", "skate after"), ("jerk_ratio", "jerk after/before"),
               ("jerk_ratio_p95", "jerk p95"), ("pfc_before", "PFC before"), ("pfc_after", "PFC after"),
               ("within_goal", "quality within 10 %"), ("ms", "ms per dance")]
    grid_columns = [("dataset", "dances"), ("grid", "music"), ("bas_before", "BAS before"),
                    ("bas_chance", "BAS chance"), ("bas_after", "BAS after"), ("matched_share", "beats matched"),
                    ("frozen_s", "frozen s"), ("jerk_ratio", "jerk after/before"), ("pfc_before", "PFC before"),
                    ("pfc_after", "PFC after")]
    p = result["protocol"]
    lines = [
        "# Beat alignment: retiming a dance onto the music's beats", "",
        f"- Dances: {p['dances']}. Music: {p['grids']}, each with a random phase (seed {p['seed']}).",
        "- BAS: `metrics.beat.beat_alignment` in compat mode on SMPL-24 joints at 60 fps "
        "(`metrics.convert.to_aist_convention`), beats in seconds. Chance: the same grid shifted by "
        f"{p['shifts']} random offsets within a beat. Before = `none`.",
        "- Quality: foot skating ratio (20 fps, on the dance's own floor before and after), jerk = "
        "`motion.quality.jitter` (mean |third difference|, m/s^3; 'p95' = 95th percentile of the per-dance ratio), "
        "PFC (EDGE convention, corrected mode) before vs after, means over dances; 'within 10 %': jerk ratio "
        "<= 1.1 and skating/PFC <= 1.1 x before or within 0.005 / 0.01 of it (the synthetic feet are pinned: ~0 "
        "before). Frozen / cut s: the output's first or last pose held where the map leaves the dance's start or "
        "end inside the output, or the dance's material left out (output length = input length). A uniform "
        "slow-down by s scales jerk by 1/s^3 (+-15 % speed: x0.66 to x1.52), so jerk moves with the tempo change "
        "itself, not only with artefacts.",
        "- Output length = input length; the map's slope stays in [1 - max, 1 + max] (checked on every run: "
        f"observed slopes {fmt(p['slope_range'][0])} to {fmt(p['slope_range'][1])} for max 0.25).", "",
        "## Settings", "", markdown_table(result["settings"], columns, cell), "",
        f"## Per music grid: snap {result['default']:.2f} (the default)", "",
        markdown_table(result["per_grid"], grid_columns), "",
        "## Recommendation", "", result["recommendation"], "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the study and write the JSON and Markdown reports."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=int, default=30, help="synthetic sample dances")
    parser.add_argument("--shifts", type=int, default=8, help="random grid offsets for the chance level")
    parser.add_argument("--smoke", action="store_true", help="2 synthetic dances, no real capture, 2 shifts")
    parser.add_argument("--records", action="store_true", help="also write every (dance, grid, setting) record")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    rng = np.random.default_rng(SEED)
    start = time.perf_counter()
    real = [] if args.smoke else real_dances()
    synthetic = synthetic_dances(2 if args.smoke else args.synthetic)
    shifts = 2 if args.smoke else args.shifts
    records = measure(real, "real salsa", shifts, rng) + measure(synthetic, "synthetic", shifts, rng)
    settings = summarise(records, ("dataset", "method", "max_speed_change"))
    default = DEFAULT_MAX_SPEED_CHANGE
    per_grid = summarise([r for r in records if r["method"] == "snap" and r["max_speed_change"] == default],
                         ("dataset", "grid"))
    wide = [r for r in records if r["max_speed_change"] == 0.25]
    result = {
        "protocol": {
            "dances": f"{len(real)} real salsa pieces (CMU, <= {PIECE} frames) and {len(synthetic)} synthetic clips",
            "grids": ", ".join(f"{t} BPM" for t in TEMPOS) + f", {CHANGE[0]}->{CHANGE[1]} BPM half-way",
            "seed": SEED, "shifts": shifts, "fps": FPS, "settings": [list(s) for s in SETTINGS],
            "slope_range": ([min(r["slope_min"] for r in wide), max(r["slope_max"] for r in wide)] if wide
                            else [None, None]),
            "seconds": time.perf_counter() - start,
        },
        "default": default,
        "settings": settings, "per_grid": per_grid,
        "recommendation": recommend(settings, default),
        "per_grid_all": summarise(records, ("dataset", "method", "max_speed_change", "grid")),
    }
    if args.records:
        result["records"] = records
    out = Path(args.out)
    write_result_files(out, "beat_alignment", result, to_markdown(result))
    print(to_markdown(result))
    return 0


def recommend(settings: list[dict], default: float) -> str:
    """The measured case for the default max_speed_change, written from the summary rows."""
    rows = {(r["dataset"], r["method"], r["max_speed_change"]): r for r in settings}
    parts = []
    for dataset in sorted({r["dataset"] for r in settings}):
        snap = [rows[(dataset, "snap", c)] for c in (0.10, 0.15, 0.25) if (dataset, "snap", c) in rows]
        tempo = rows.get((dataset, "tempo", default))
        cells = ", ".join(f"{r['max_speed_change']:.2f} -> BAS {fmt(r['bas_after'])} (jerk x{fmt(r['jerk_ratio'])}, "
                          f"within goal: {fmt(r['within_goal'])})" for r in snap)
        line = f"- {dataset}: before {fmt(snap[0]['bas_before'])}, chance {fmt(snap[0]['bas_chance'])}; snap {cells}"
        if tempo:
            line += f"; tempo {default:.2f} -> {fmt(tempo['bas_after'])}"
        parts.append(line + ".")
    moved = [r for r in settings if r["method"] != "none"]
    snap_wins = all(rows[(r["dataset"], "snap", r["max_speed_change"])]["bas_after"] > r["bas_after"]
                    for r in moved if r["method"] == "tempo" and (r["dataset"], "snap", r["max_speed_change"]) in rows)
    failing = [f"{r['dataset']} {setting_name(r)}" for r in moved if not r["within_goal"]]
    return "\n".join([
        f"Ship `method=\"snap\"`, `max_speed_change={default:.2f}` (the default in `editing.beats`).", "", *parts, "",
        ("Snap beats tempo at every max change: a global rate cannot follow a dance whose accents are irregular, and "
         "its phase shift leaves the ends frozen or cut for longer. " if snap_wins else
         "Tempo beats snap somewhere (see the table). ")
        + ("Every setting stays within the quality goal, " if not failing else
           f"Outside the quality goal: {', '.join(failing)}; otherwise ")
        + "so the choice is how far a dancer's local tempo may visibly change: 0.25 buys a few more hundredths of BAS "
        "by playing stretches up to 25 % faster or slower, 0.10 leaves part of the gain unused; 0.15 takes most of "
        "it with a modest change of tempo.",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
