"""Editing and long-dance benchmark of the edge runtime: seams per overlap/blend, constraint errors, body-part
edits, and the time and memory of dances up to 3 minutes.

    python benchmarks/bench_editing.py --export-dir EXPORT [--model WEIGHTS] [--seeds 4] [--threads 2]
    python benchmarks/bench_editing.py --export-dir EXPORT --smoke --out /tmp/b   # seconds, for tests

Everything runs on `EdgeGenerator` (the `--variant`, the manifest's sampler); `--model` adds PyTorch vs edge
agreement rows. Seam dances are whole windows long (6 x 196 = 1176 frames for "60 s") so that overlap 0 puts
the windows back to back (`WindowPlan.cover` steps by window - overlap and ends its last window on the last
frame, which then shares more than `overlap` unless the length is a whole number of strides). Each long-dance length runs in its own process (peak RSS is per process).
Writes editing.json, editing.md, long_dance.gif and seams.png to --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from kpop_helpers.bench.protocol import DEFAULT_PROMPTS, cpu_info
from kpop_helpers.data.io import load_clips
from kpop_helpers.edge import EdgeGenerator
from kpop_helpers.editing import (BODY_PARTS, DEFAULT_BLEND, DEFAULT_OVERLAP, body_parts, continuation, keyframes,
                                  place_on)
from kpop_helpers.motion.features import FEATURE_SLICES, features_to_joints
from kpop_helpers.motion.skeleton import FOOT_JOINTS, T2M_JOINT_NAMES
from kpop_helpers.utils import atomic_write_text, fmt, json_from_process, json_ready, markdown_table

REPO = Path(__file__).resolve().parents[1]
REAL_MOTION = REPO.parent / "shared" / "data" / "real_motion"
PROMPTS = (DEFAULT_PROMPTS[0], DEFAULT_PROMPTS[1], DEFAULT_PROMPTS[3])  # the three parts of every timeline
OVERLAPS, BLENDS = (0, 20, 40, 98), ("taper", "mean", "first")
KINDS = ("inbetween", "prefix", "lower", "upper", "continuation")
RADIUS = 10  # frames (0.5 s) either side of a seam point
TIE = 0.02  # median jerk ratios within 2% of the lowest count as tied (then the fewest windows wins)
GOALS = {"jerk_ratio_median_max": 1.2, "frames": 3600, "time_s_max": 30.0, "rss_mib_max": 200.0}
MIN_CLIP_FRAMES = 120  # known clips of at least 6 s, so in-betweening leaves a gap to fill
METRICS_MODE = "corrected"  # the one-protocol benchmark's FID_k


@dataclass
class Settings:
    """What to measure (the smoke run shrinks every size)."""

    seam_frames: int = 1176
    lengths: tuple[int, ...] = (196, 600, 1200, 2400, 3600)
    max_windows: tuple[int, ...] = (1, 4)  # extra runs of the longest dance (its plain row is "all")
    clips: int | None = None  # reference clips used as known motion (None: every one long enough)
    gif_frames: int | None = None  # None: the GIF writer's cap


SMOKE = Settings(seam_frames=392, lengths=(100, 392), max_windows=(1,), clips=2, gif_frames=30)


def timeline_for(frames: int) -> list[tuple[float, float, str]]:
    """Three equal parts, one prompt each, over `frames` frames at 20 fps."""
    edges = np.linspace(0.0, frames / 20.0, 4)
    return [(float(a), float(b), p) for a, b, p in zip(edges[:-1], edges[1:], PROMPTS, strict=True)]


def near(frames: np.ndarray, points: list[float]) -> np.ndarray:
    """Bool per (fractional) frame: within RADIUS of any point."""
    if not points:
        return np.zeros(len(frames), dtype=bool)
    return (np.abs(frames[:, None] - np.asarray(points)[None, :]) <= RADIUS).any(axis=1)


def skate_in(joints: np.ndarray, mask: np.ndarray, floor: float) -> float | None:
    """Foot-skating ratio over the runs of `mask` (whole-dance floor), weighted by steps."""
    from kpop_helpers.motion.quality import foot_skating_ratio

    idx = np.flatnonzero(mask)
    runs = [r for r in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1) if len(r) >= 2]
    steps = sum(len(r) - 1 for r in runs)
    return sum(foot_skating_ratio(joints[r[0]:r[-1] + 1], 20.0, floor_height=floor) * (len(r) - 1)
               for r in runs) / steps if steps else None


def dance_seams(joints: np.ndarray, seams: list[tuple[int, int]]) -> dict[str, Any]:
    """Per-seam jerk ratios (centre; worst of start/centre/end), and skating, PFC, root steps at seams vs elsewhere."""
    from kpop_helpers.metrics import foot_contact_terms, to_edge_convention
    from kpop_helpers.viz.edits import joint_jerk

    points = [(float(a), (a + b) / 2.0, float(b)) for a, b in seams]  # start/end: where mean/first switch weights
    every = [p for trio in points for p in trio]
    jerk = joint_jerk(joints, 20.0)
    at = np.arange(len(jerk)) + 1.5
    calm = float(jerk[~near(at, every)].mean())
    mask = near(np.arange(len(joints), dtype=float), every)
    steps = mask[:-1] | mask[1:]
    # EDGE's PFC terms per 30-fps step (x 10000, scaled by the whole dance), placed in 20-fps frames
    terms = foot_contact_terms(to_edge_convention(joints, 20.0), mode=METRICS_MODE)
    pfc = terms.foot_min_speed[:, 0] * terms.foot_min_speed[:, 1] * terms.root_acc_norm * 1e4
    pfc_mask = near((np.arange(len(pfc)) + 1.0) * 20.0 / 30.0, every)
    root = np.linalg.norm(np.diff(joints[:, 0], axis=0), axis=-1) * 1000.0
    across = joints[:, 2] - joints[:, 1] + joints[:, 17] - joints[:, 16]  # facing = up x across (HumanML3D)
    turn = np.abs((np.diff(np.degrees(np.arctan2(across[:, 2], -across[:, 0]))) + 180.0) % 360.0 - 180.0)
    floor = float(joints[:, list(FOOT_JOINTS), 1].min())
    return {"centre": [float(jerk[near(at, [c])].mean()) / calm for _, c, _ in points],
            "worst": [max(float(jerk[near(at, [p])].mean()) for p in trio) / calm for trio in points],
            "skate_seam": skate_in(joints, mask, floor), "skate_else": skate_in(joints, ~mask, floor),
            "pfc_seam": float(pfc[pfc_mask].mean()), "pfc_else": float(pfc[~pfc_mask].mean()),
            "root_seam_max_mm": float(root[steps].max()), "root_else_p99_mm": float(np.percentile(root[~steps], 99)),
            "facing_seam_max_deg": float(turn[steps].max()),
            "facing_else_p99_deg": float(np.percentile(turn[~steps], 99))}


def mean_of(values: list[float | None]) -> float | None:
    """Mean of the values that exist."""
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def seam_row(overlap: int, blend: str, plan: Any, dances: list[dict[str, Any]], times: list[float]) -> dict:
    """One table row of a setting from its dances (all seeds)."""
    centre, worst = (np.concatenate([d[k] for d in dances]) for k in ("centre", "worst"))
    seams = plan.seams()
    row = {"overlap": overlap, "blend": blend if overlap else "any", "windows": plan.windows.count,
           "actual_overlap": float(np.mean([b - a for a, b in seams])), "seams": len(seams), "dances": len(dances),
           "jerk_ratio_median": float(np.median(centre)), "jerk_ratio_p90": float(np.percentile(centre, 90)),
           "jerk_ratio_max": float(centre.max()), "jerk_worst_point_median": float(np.median(worst)),
           "jerk_worst_point_max": float(worst.max()), "time_s": float(np.mean(times)),
           "jerk_ratios": [round(float(v), 4) for v in centre]}  # every seam of every seed (JSON only)
    for key in ("skate_seam", "skate_else", "pfc_seam", "pfc_else", "root_else_p99_mm", "facing_else_p99_deg"):
        row[key] = mean_of([d[key] for d in dances])
    for what, unit in (("root", "mm"), ("facing", "deg")):
        row[f"{what}_seam_max_{unit}"] = max(d[f"{what}_seam_max_{unit}"] for d in dances)
        row[f"{what}_jump_ratio"] = max(d[f"{what}_seam_max_{unit}"] / max(d[f"{what}_else_p99_{unit}"], 1e-9)
                                        for d in dances)
    row["jerk_goal_met"] = row["jerk_ratio_median"] <= GOALS["jerk_ratio_median_max"]
    return row


def pick_best(rows: list[dict[str, Any]], key: str = "jerk_ratio_median") -> dict[str, Any]:
    """Lowest `key`; values within TIE of it are tied and the fewest windows (then the lower value) wins."""
    low = min(r[key] for r in rows)
    tied = [r for r in rows if r[key] <= low * (1 + TIE)]
    best = min(tied, key=lambda r: (r["windows"], r[key], r["overlap"]))
    return {"overlap": best["overlap"], "blend": DEFAULT_BLEND if best["blend"] == "any" else best["blend"],
            "windows": best["windows"], key: best[key], "tied": len(tied)}


def run_seams(gen: EdgeGenerator, frames: int, seeds: int, progress: bool) -> tuple[list[dict], dict, dict]:
    """Every (overlap, blend) over `seeds` seeds: rows, the best setting, and seed 0's dance of every setting."""
    settings = [(0, DEFAULT_BLEND)] + [(o, b) for o in OVERLAPS if o for b in BLENDS]  # nothing shared: blends agree
    rows, first = [], {}
    for overlap, blend in tqdm(settings, desc="seams", disable=not progress):
        dances, times = [], []
        for seed in range(seeds):
            result = gen.generate_result(timeline=timeline_for(frames), frames=frames, overlap=overlap, blend=blend,
                                         seed=seed)
            dances.append(dance_seams(result.joints[0], result.plan.seams()))
            times.append(result.timings["total_s"])
            first.setdefault((overlap, blend), result)
        rows.append(seam_row(overlap, blend, result.plan, dances, times))
    return rows, pick_best(rows), first


def known_clips(reference: Path, real_clip: Path | None, limit: int | None) -> list[tuple[str, np.ndarray, str]]:
    """(source, joints of at most 197 frames, prompt) of the reference clips long enough, and the real clip."""
    clips = [c for c in load_clips(reference, fps=20.0, progress=False)[0] if len(c.positions) >= MIN_CLIP_FRAMES]
    out = [("val", np.asarray(c.positions[:197], np.float32), c.texts[0] if c.texts else PROMPTS[0])
           for c in clips[:limit]]
    if real_clip is not None:
        clip = load_clips(real_clip, fps=20.0, progress=False)[0][0]
        out.append(("cmu", np.asarray(clip.positions[:197], np.float32), "a salsa dance with quick turns"))
    if not out:
        raise SystemExit(f"error: no clip of {MIN_CLIP_FRAMES}+ frames in {reference} and no --real-clip")
    return out


def make_constraint(kind: str, joints: np.ndarray) -> Any:
    """The edit of one kind on a clip (T joint frames -> T-1 feature frames)."""
    seconds = (len(joints) - 1) / 20.0
    if kind == "inbetween":  # the first and last 2 s: (0, 2) and (7.8, 9.8) of a 196-feature-frame clip
        return keyframes(joints, seconds=[(0.0, 2.0), (seconds - 2.0, seconds)])
    if kind == "prefix":
        return keyframes(joints, seconds=(0.0, 3.0))
    return body_parts(joints, kind) if kind in BODY_PARTS else continuation(joints, 5.0)


def constraint_errors(c: Any, joints: np.ndarray, features: np.ndarray) -> dict[str, float]:
    """Errors (mm) of the kept joints: to the user's joints, to the features' own joints, and root-local (ric)."""
    rows, mask, ric = slice(c.start, c.start + len(c.features)), c.joint_mask, FEATURE_SLICES["ric"]
    implied = place_on(np.asarray(features_to_joints(c.features), dtype=np.float32), [c])
    given = np.linalg.norm(joints[rows] - c.joints, axis=-1)[mask] * 1000.0
    own = np.linalg.norm(joints[rows] - implied, axis=-1)[mask] * 1000.0
    local = np.linalg.norm((features[rows, ric] - c.features[:, ric]).reshape(len(c.features), -1, 3), axis=-1)
    local = local[mask[:, 1:]] * 1000.0  # the pelvis has no ric column
    return {"given_mean_mm": float(given.mean()), "given_max_mm": float(given.max()),
            "features_mean_mm": float(own.mean()), "features_max_mm": float(own.max()),
            "local_mean_mm": float(local.mean()) if local.size else 0.0,
            "local_max_mm": float(local.max()) if local.size else 0.0}


def run_edits(gen: EdgeGenerator, clips: list, reference: list[np.ndarray], seeds: int,
              progress: bool) -> tuple[list[dict], list[dict]]:
    """Constraint error rows (seed 0, per kind and source) and body-part rows (diversity, FID_k, kept error)."""
    from kpop_helpers.metrics import dance_quality

    errors: dict[tuple[str, str], list[dict]] = {}
    parts: dict[str, dict[str, list]] = {k: {"dances": [], "diversity": [], "errors": []} for k in BODY_PARTS}
    for kind, (source, joints, prompt) in tqdm([(k, c) for k in KINDS for c in clips], desc="edits",
                                               disable=not progress):
        c, runs = make_constraint(kind, joints), []
        for seed in range(seeds if kind in BODY_PARTS else 1):
            result = gen.generate_result(prompts=[prompt], constraints=c, seed=seed)
            runs.append(result.joints[0])
            err = constraint_errors(c, result.joints[0], result.features[0])
            if seed == 0:
                errors.setdefault((kind, source), []).append(err)
            if kind in BODY_PARTS:
                parts[kind]["errors"].append(err)
        if kind in BODY_PARTS:
            free = [T2M_JOINT_NAMES.index(n) for n in T2M_JOINT_NAMES if n not in BODY_PARTS[kind] and n != "pelvis"]
            local = [r[:, free] - r[:, :1] for r in runs]
            pairs = [np.linalg.norm(a - b, axis=-1).mean() * 1000.0 for a, b in itertools.combinations(local, 2)]
            parts[kind]["diversity"].append(float(np.mean(pairs)) if pairs else None)
            parts[kind]["dances"] += runs
    error_rows = [{"kind": k, "source": s, "clips": len(v),
                   **{key: (max if "max" in key else np.mean)([e[key] for e in v]) for key in v[0]}}
                  for (k, s), v in errors.items()]

    def fid_k(dances: list[np.ndarray]) -> dict[str, Any]:
        return dance_quality(dances, reference, fps=20.0, mode=METRICS_MODE, allow_small=True, progress=False)

    floor = fid_k([j for _, j, _ in clips])["fid_k"]
    part_rows = [{"kind": kind, "dances": len(got["dances"]), "seeds": seeds, "diversity_mm": mean_of(got["diversity"]),
                  **{k: v for k, v in fid_k(got["dances"]).items() if k in ("fid_k", "pfc")}, "fid_k_known": floor,
                  "kept_given_mean_mm": mean_of([e["given_mean_mm"] for e in got["errors"]]),
                  "kept_features_mean_mm": mean_of([e["features_mean_mm"] for e in got["errors"]]),
                  "kept_local_max_mm": max(e["local_max_mm"] for e in got["errors"])} for kind, got in parts.items()]
    return error_rows, part_rows


def one_length(args: argparse.Namespace) -> dict[str, Any]:
    """The --one-length child: one timed dance (default overlap/blend) after a short warm-up, in a fresh process."""
    start = time.perf_counter()
    gen = EdgeGenerator(args.export_dir, variant=args.variant, threads=args.threads)
    frames = args.one_length
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short dances do not follow every timeline prompt
        gen.generate_result(timeline=timeline_for(frames), frames=min(frames, gen.max_frames), steps=2, seed=0)
        result = gen.generate_result(timeline=timeline_for(frames), frames=frames, seed=0,
                                     max_windows=args.max_windows)
    return {"frames": frames, "max_windows": args.max_windows, "windows": 1 + len(result.plan.seams()),
            "load_s": gen.load_time_s, "total_s": result.timings["total_s"], "text_s": result.timings["text_s"],
            "sampling_s": result.timings["sampling_s"], "peak_rss_mib": result.peak_rss_mib,
            "process_s": time.perf_counter() - start}


def run_lengths(args: argparse.Namespace, s: Settings, progress: bool) -> tuple[list[dict], dict]:
    """Each length (and the longest with several max_windows) in its own process; rows and the a + b*windows fit."""
    jobs = [(n, None) for n in s.lengths] + [(max(s.lengths), k) for k in s.max_windows]
    rows = []
    for frames, max_windows in tqdm(jobs, desc="lengths", disable=not progress):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--export-dir", str(args.export_dir), "--variant",
               args.variant, "--threads", str(args.threads), "--one-length", str(frames)]
        row = json_from_process(cmd + (["--max-windows", str(max_windows)] if max_windows else []), " ".join(cmd),
                                cwd=REPO, timeout=1800)
        rows.append({**row, "s_per_196_frames": row["total_s"] / (frames / 196.0)})
    full = [r for r in rows if r["max_windows"] is None]
    windows, times = np.array([r["windows"] for r in full], float), np.array([r["total_s"] for r in full])
    a, b, r2 = float(times.mean()), None, None
    if len(set(windows)) > 1:
        b, a = np.polyfit(windows, times, 1)
        r2 = 1.0 - np.sum((times - a - b * windows) ** 2) / max(np.sum((times - times.mean()) ** 2), 1e-12)
    top, rss = max(full, key=lambda r: r["frames"]), max(r["peak_rss_mib"] for r in rows)
    return rows, {"a_s": a, "b_s_per_window": b, "r2": r2, "frames": top["frames"], "time_s": top["total_s"],
                  "peak_rss_mib": rss, "rss_met": rss <= GOALS["rss_mib_max"],
                  "time_met": top["frames"] >= GOALS["frames"] and top["total_s"] <= GOALS["time_s_max"]}


def run_agreement(gen: EdgeGenerator, args: argparse.Namespace, clips: list, frames: int) -> list[dict]:
    """PyTorch `generate` (--model) vs the edge runtime (this variant and fp32): same prompts, noise, sampler."""
    import torch

    from kpop_helpers.bench.variants import load_torch_model
    from kpop_helpers.generate import generate

    torch.set_num_threads(1)  # not timed; two threads beside a busy process spin instead of working
    model, spec, edges = load_torch_model(args.model), gen.sampling, {args.variant: gen}
    if "fp32" in gen.manifest["variants"] and args.variant != "fp32":
        edges["fp32"] = EdgeGenerator(args.export_dir, variant="fp32", threads=args.threads)
    # The fp32 text tower (an int8 variant carries the int8 one): PyTorch's arithmetic is the reference.
    text_encoder = edges.get("fp32", gen).text_encoder
    cases = [("timeline", {"timeline": timeline_for(frames), "frames": frames}),
             ("inbetween", {"prompts": [clips[-1][2]], "constraints": make_constraint("inbetween", clips[-1][1])})]
    rows = []
    for name, request in cases:
        ref = generate(model, **request, sampler=spec["sampler"], steps=spec["steps"], guidance=spec["guidance"],
                       eta=spec.get("eta", 0.0), seed=0, text_encoder=text_encoder, progress=False).joints[0]
        for variant, edge in edges.items():
            dist = np.linalg.norm(edge.generate_result(**request, seed=0).joints[0] - ref, axis=-1) * 1000.0
            rows.append({"case": name, "frames": len(ref), "variant": variant, "mean_mm": float(dist.mean()),
                         "max_mm": float(dist.max())})
    return rows


def write_figures(result: Any, best: dict[str, Any], out: Path, gif_frames: int | None,
                  progress: bool) -> dict[str, str]:
    """The best setting's dance as a GIF (seams, prompt boundaries, labels) and the seams figure."""
    import matplotlib

    matplotlib.use("Agg")
    from kpop_helpers.viz.edits import plot_seams, save_long_dance_gif

    plan, joints, caption = result.plan, result.joints[0], f"overlap {best['overlap']}, blend {best['blend']}"
    marks = {"seams": plan.seams(), "boundaries": plan.timeline.boundaries()}
    save_long_dance_gif(joints, out / "long_dance.gif", labels=plan.timeline.labels(), max_frames=gif_frames,
                        progress=progress, caption=caption, **marks)
    plot_seams(joints, caption=f"root path ({caption})", path=out / "seams.png", **marks)
    return {"gif": str(out / "long_dance.gif"), "seams_png": str(out / "seams.png")}


def table(rows: list[dict[str, Any]], spec: str) -> str:
    """markdown_table with columns written as 'key:header' tokens separated by ';'."""
    return markdown_table(rows, [tuple(t.strip().split(":")) for t in spec.split(";")])


def markdown(r: dict[str, Any]) -> str:
    """The summary, then one table per measurement."""
    m, st, best, lg = r["machine"], r["settings"], r["seams"]["best"], r["long_dances"]["fit"]
    inb = [e for e in r["constraints"] if e["kind"] == "inbetween"]
    local = max(e["local_max_mm"] for e in r["constraints"])
    alt = r["seams"]["best_worst_point"]
    lines = [f"# Editing and long dances{' (SMOKE)' if st['smoke'] else ''}", "",
             f"- {m['date']}, {m['cpu']} ({m['logical_cpus']} logical CPUs, load {m['load_average']}); edge runtime "
             f"{st['variant']}, {st['threads']} thread(s), shipped sampler {st['sampler']['sampler']} "
             f"{st['sampler']['steps']} steps, guidance {st['sampler']['guidance']}; export {st['export_dir']}.",
             f"- **Chosen default: overlap {best['overlap']}, blend {best['blend']}** ({best['windows']} windows for "
             f"{r['seams']['frames']} frames): the lowest median seam jerk ratio ({best['tied']} setting(s) within "
             f"{TIE:.0%} of it, then the fewest windows). By the worst point of each seam it would be overlap "
             f"{alt['overlap']}, blend {alt['blend']}.",
             f"- Key numbers: median seam jerk ratio {fmt(best['jerk_ratio_median'])} (goal <= "
             f"{GOALS['jerk_ratio_median_max']}); {lg['frames']} frames in {fmt(lg['time_s'])} s (goal "
             f"{GOALS['frames']} frames <= {GOALS['time_s_max']:g} s), peak RSS {fmt(lg['peak_rss_mib'])} MiB (goal <= "
             f"{GOALS['rss_mib_max']:g}); in-betweening max error {fmt(max(e['given_max_mm'] for e in inb))} mm to the "
             f"given joints, {fmt(max(e['features_max_mm'] for e in inb))} mm to the features' own.",
             f"- Run: {r['wall_s']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in r['section_s'].items())}).", "",
             f"## Seams ({r['seams']['frames']} frames, 3-prompt timeline, {st['seeds']} seeds)", "",
             f"Jerk ratio: mean joint jerk within ±{RADIUS} frames of a seam's centre / elsewhere, per seam (goal "
             f"median <= {GOALS['jerk_ratio_median_max']}); worst point: the worst of the seam's start, centre and end "
             "(`mean` and `first` switch weights at the ends). Skating, PFC (EDGE's per-step terms, whole-dance "
             f"scaling) and root/facing steps: within ±{RADIUS} frames of any seam point vs elsewhere; jump = the "
             "largest step at seams / the 99th percentile elsewhere (<= 1: no jump beyond the motion's own). At "
             "overlap 0 the windows are back to back and every blend is the same.", "",
             table(r["seams"]["rows"], "overlap:overlap; blend:blend; actual_overlap:actual; windows:windows; "
                   "jerk_ratio_median:jerk median; jerk_ratio_p90:p90; jerk_ratio_max:max; jerk_worst_point_median:"
                   "worst pt median; skate_seam:skate seam; skate_else:skate else; pfc_seam:PFC seam; pfc_else:PFC "
                   "else; root_jump_ratio:root jump; facing_jump_ratio:facing jump; time_s:s / dance"),
             "## Constraint error (mm, seed 0)", "",
             "given: output vs the user's joints (includes the retargeting to the model's skeleton that the features "
             "imply); features: vs the joints the kept features describe, placed like the output (the sampling's own "
             "error, plus the root path a dance integrates: for `upper` the root is regenerated); local: the kept "
             f"joints' root-local feature columns, at most {fmt(local)} mm"
             + (": ~0, because MDM's rule sets the known values exactly at the last step." if local < 1 else "."), "",
             table(r["constraints"], "kind:edit; source:clips from; clips:clips; given_mean_mm:given mean; "
                   "given_max_mm:given max; features_mean_mm:features mean; features_max_mm:features max; "
                   "local_mean_mm:local mean; local_max_mm:local max"),
             f"## Body-part edits ({st['seeds']} seeds per clip)", "",
             "Diversity: mean pairwise distance between seeds of the regenerated joints (root-relative, mm). FID_k "
             f"({METRICS_MODE}, as the benchmark) of the edited dances vs the reference set; the known clips' own "
             "FID_k for scale.", "",
             table(r["body_parts"], "kind:kept; dances:dances; diversity_mm:diversity mm; fid_k:FID_k; fid_k_known:"
                   "FID_k known clips; pfc:PFC; kept_given_mean_mm:kept given mm; kept_features_mean_mm:kept features "
                   "mm; kept_local_max_mm:kept local max mm"),
             f"## Long dances (a process each; overlap {st['default_overlap']}, blend {st['default_blend']})", "",
             table(r["long_dances"]["rows"], "frames:frames; max_windows:max windows; windows:windows; total_s:time s; "
                   "s_per_196_frames:s / 196 frames; peak_rss_mib:peak RSS MiB; load_s:load s; process_s:process s"),
             f"Time ≈ {fmt(lg['a_s'])} s + {fmt(lg['b_s_per_window'])} s × windows (R² {fmt(lg['r2'])}). Goals: "
             f"{GOALS['frames']} frames <= {GOALS['time_s_max']:g} s {'met' if lg['time_met'] else 'NOT met'}; "
             f"peak RSS <= {GOALS['rss_mib_max']:g} MiB {'met' if lg['rss_met'] else 'NOT met'}.", ""]
    if r["agreement"]:
        lines += ["## PyTorch vs edge (same prompts, noise and sampler; joints mm)", "",
                  table(r["agreement"], "case:case; frames:frames; variant:edge variant; mean_mm:mean; max_mm:max")]
    return "\n".join(lines + ["![seams](seams.png)", "", "![long dance](long_dance.gif)", ""])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line; bad values are argparse errors."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export-dir", required=True, type=Path, help="export folder (manifest.json)")
    p.add_argument("--model", default=None, help="PyTorch weights of the same model: adds the agreement rows")
    p.add_argument("--reference", type=Path, default=REPO / "data" / "sample" / "val.npz")
    p.add_argument("--real-clip", type=Path, default=None, help="real mocap clip (default: a CMU salsa BVH)")
    p.add_argument("--variant", default="int8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seeds", type=int, default=None, help="seeds per setting/edit (default 4; smoke 2)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    p.add_argument("--one-length", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--max-windows", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.seeds = args.seeds if args.seeds is not None else (2 if args.smoke else 4)
    for name in ("threads", "seeds", "one_length", "max_windows"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not (args.export_dir / "manifest.json").is_file():
        p.error(f"--export-dir {args.export_dir}: no manifest.json")
    variants = json.loads((args.export_dir / "manifest.json").read_text()).get("variants", {})
    if args.variant not in variants:
        p.error(f"--variant {args.variant}: the export has {sorted(variants)}")
    for name in ("reference", "real_clip", "model"):
        if args.one_length is None and getattr(args, name) is not None and not Path(getattr(args, name)).is_file():
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: no such file")
    if args.real_clip is None and args.one_length is None:
        found = sorted(REAL_MOTION.glob("**/*salsa*/*.bvh")) or sorted(REAL_MOTION.glob("**/*.bvh"))
        args.real_clip = found[0] if found else None
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and write editing.{json,md}, long_dance.gif and seams.png."""
    args = parse_args(argv)
    if args.one_length is not None:
        print(json.dumps(one_length(args)))
        return 0
    s, progress, started, clock = (SMOKE if args.smoke else Settings()), not args.smoke, time.perf_counter(), {}
    gen = EdgeGenerator(args.export_dir, variant=args.variant, threads=args.threads)
    window = gen.max_frames
    frames = max(2 * window, s.seam_frames // window * window)  # whole windows: see the docstring

    def timed(name: str, fn: Any, *a: Any) -> Any:
        t = time.perf_counter()
        out = fn(*a)
        clock[name] = time.perf_counter() - t
        return out

    seam_rows, best, dances = timed("seams", run_seams, gen, frames, args.seeds, progress)
    clips = known_clips(args.reference, args.real_clip, s.clips)
    reference = [np.asarray(c.positions[:window], np.float32) for c in load_clips(args.reference, progress=False)[0]]
    constraint_rows, part_rows = timed("edits", run_edits, gen, clips, reference, args.seeds, progress)
    length_rows, fit = timed("long_dances", run_lengths, args, s, progress)
    agreement = timed("agreement", run_agreement, gen, args, clips, 2 * window) if args.model else []
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = dances[(best["overlap"], best["blend"])]
    files = timed("figures", write_figures, chosen, best, args.out, s.gif_frames, progress)
    cpu = cpu_info()
    result = json_ready({
        "settings": {"export_dir": str(args.export_dir), "variant": args.variant, "threads": args.threads,
                     "seeds": args.seeds, "smoke": args.smoke, "model": args.model, "reference": str(args.reference),
                     "real_clip": args.real_clip, "sampler": gen.sampling, "metrics_mode": METRICS_MODE,
                     "default_overlap": DEFAULT_OVERLAP, "default_blend": DEFAULT_BLEND, "goals": GOALS,
                     "sizes": asdict(s)},
        "machine": {"cpu": cpu["model"], "logical_cpus": cpu["logical_cores"], "date": time.strftime("%Y-%m-%d %H:%M"),
                    "load_average": [round(x, 2) for x in os.getloadavg()], "python": sys.version.split()[0]},
        "seams": {"frames": frames, "timeline": timeline_for(frames), "rows": seam_rows, "best": best,
                  "best_worst_point": pick_best(seam_rows, "jerk_worst_point_median")},
        "constraints": constraint_rows, "body_parts": part_rows, "long_dances": {"rows": length_rows, "fit": fit},
        "agreement": agreement, "files": files, "section_s": clock, "wall_s": time.perf_counter() - started})
    atomic_write_text(args.out / "editing.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(args.out / "editing.md", markdown(result))
    print(json.dumps({"best": best, "long_dances": fit, "wall_s": round(result["wall_s"], 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
