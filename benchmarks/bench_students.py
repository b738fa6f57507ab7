"""Few-step recipes against MDM's 1000-step procedure: whole 196-frame dances in the edge runtime (issue 17).

Each recipe is an export folder, a variant and a sampler setting, run by `EdgeGenerator` (what ships):
- time: a fresh interpreter per recipe and thread count (no torch), the export's text tower included: one
  warm-up dance, then `--repeats` dances of one prompt; the median end-to-end time and the process's peak RSS.
- quality: `--draws` noise draws (seeds 0..D-1), each one dance per prompt, scored like the main benchmark
  (`kpop_helpers.bench.quality.pooled_quality`, mean and spread between draws) against the same reference clips;
  fidelity (mm) to the shipped teacher recipe's dance with the same seed.
- the reference: MDM's procedure (fp32 eager PyTorch, guided pair, 1000 DDPM steps) timed in this run as
  1000 x its median step; its quality from the committed benchmark's sample set (`--reference-samples`).

    python benchmarks/bench_students.py --teacher-export EXPORT --teacher-weights W \
        --student steps4=STUDENT_EXPORT --reference-samples WORK/bench/samples/fp32_ddpm1000.npz
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from kpop_helpers.utils import json_from_process, markdown_table, write_result_files

REPO = Path(__file__).resolve().parents[1]
TIME_GOAL_S, SPEEDUP_GOAL, QUALITY_BAND = 0.25, 340.0, 0.15
PROMPT = "a fierce girl-crush routine that points up and out with the hands on the beat"
ONE_RECIPE = """
import json, statistics, sys, time
from kpop_helpers.edge import EdgeGenerator
from kpop_helpers.utils import peak_rss_mib
export, variant, threads, sampler, steps, guidance, repeats, prompt = sys.argv[1:9]
edge = EdgeGenerator(export, variant=variant, threads=int(threads))
run = dict(frames=196, sampler=sampler, steps=int(steps), guidance=float(guidance))
edge.generate_result([prompt], seed=0, **run)
times = []
for seed in range(int(repeats)):
    start = time.perf_counter()
    edge.generate_result([prompt], seed=seed + 1, **run)
    times.append(time.perf_counter() - start)
print(json.dumps({"dance_s": statistics.median(times), "dance_s_min": min(times), "peak_rss_mib": peak_rss_mib(),
                  "torch": "torch" in sys.modules, "guidance_input": edge.denoise.guidance_input}))
"""
REFERENCE_STEP = """
import json, statistics, sys, time
import torch
from kpop_helpers.bench.variants import load_torch_model
from kpop_helpers.diffusion import cfg_model_fn
torch.set_num_threads(int(sys.argv[2]))
model = load_torch_model(sys.argv[1])
x, emb = torch.randn(1, 263, 1, 196), torch.randn(1, model.cfg.text_dim)
step = cfg_model_fn(model, emb, 2.5)
times = []
with torch.no_grad():
    for k in range(14):
        start = time.perf_counter()
        step(x, torch.tensor([999 - k]))
        times.append(time.perf_counter() - start)
print(json.dumps({"step_s": statistics.median(times[2:])}))
"""


@dataclass(frozen=True)
class Recipe:
    """One way to make a dance: which export and variant, which sampler, how many steps, which guidance."""

    name: str
    export: str
    variant: str
    sampler: str
    steps: int
    guidance: float
    recipe: str  # what it is, for the table

    def calls(self, guidance_input: bool) -> str:
        """Model rows per step: the guided pair (2) or one call (a student, or guidance 1)."""
        return "1" if guidance_input or self.guidance == 1.0 else "2"


def teacher_recipes(export: str, variant: str) -> list[Recipe]:
    """The shipped setting and the teacher's own few-step settings (guided pair, or one conditioned call)."""
    out = [Recipe("teacher_ddpm20", export, variant, "ddpm", 20, 2.5, "teacher, shipped sampler (guided pair)")]
    out += [Recipe(f"teacher_ddpm{n}", export, variant, "ddpm", n, 2.5, "teacher, fewer DDPM steps (guided pair)")
            for n in (10, 4)]
    out += [Recipe(f"teacher_ddpm{n}_cond", export, variant, "ddpm", n, 1.0, "teacher, conditioned call only")
            for n in (20, 10, 6, 4)]
    out += [Recipe(f"teacher_ddim{n}_cond", export, variant, "ddim", n, 1.0, "teacher, DDIM (conditioned)")
            for n in (8, 4)]
    return out


def student_recipe(name: str, export: str, variant: str) -> Recipe:
    """A student export with the sampler its manifest ships."""
    from kpop_helpers.edge.manifest import manifest_sampling, read_manifest

    sampling = manifest_sampling(read_manifest(export), export)
    return Recipe(f"student_{name}", export, variant, sampling["sampler"], int(sampling["steps"]),
                  float(sampling["guidance"]), f"student '{name}' (its export's sampler)")


def timed(recipe: Recipe, threads: int, repeats: int) -> dict[str, Any]:
    """A fresh interpreter's median end-to-end dance time and peak RSS for one recipe."""
    args = [recipe.export, recipe.variant, str(threads), recipe.sampler, str(recipe.steps), str(recipe.guidance),
            str(repeats), PROMPT]
    return json_from_process([sys.executable, "-c", ONE_RECIPE, *args], f"{recipe.name} at {threads} threads",
                             cwd=REPO)


def reference_step(weights: str, threads: int) -> float:
    """MDM's procedure: the median guided step (fp32 eager, batch of 2 rows, 196 frames) in seconds."""
    done = json_from_process([sys.executable, "-c", REFERENCE_STEP, weights, str(threads)],
                             f"reference step at {threads} threads", cwd=REPO)
    return float(done["step_s"])


def quality_draws(recipe: Recipe, prompts: list[str], draws: int, cache: Path) -> list[np.ndarray]:
    """Joints [P,196,22,3] of every draw (seed d), cached in `cache` under the recipe's settings."""
    from kpop_helpers.edge import EdgeGenerator

    key = json.dumps({**asdict(recipe), "prompts": prompts}, sort_keys=True)
    out, edge = [], None
    for seed in range(draws):
        path = cache / f"{recipe.name}_seed{seed}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) == key:
                    out.append(data["joints"])
                    continue
        edge = edge or EdgeGenerator(recipe.export, variant=recipe.variant, threads=2)
        joints = edge.generate(prompts, frames=196, seed=seed, sampler=recipe.sampler, steps=recipe.steps,
                               guidance=recipe.guidance)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, joints=joints, key=np.asarray(key))
        tmp.replace(path)
        out.append(joints)
    return out


def side_by_side_gif(draws: dict[str, list[np.ndarray]], recipes: list[Recipe], prompts: list[str],
                     path: Path) -> Path:
    """The shipped recipe beside every student and the teacher's DDIM 4, first prompt, seed 0 (the same noise)."""
    from kpop_helpers.viz.compare import compare

    shown = [r for r in recipes if r.name in ("teacher_ddpm20", "teacher_ddim4_cond") or r.name.startswith("student_")]
    dances = {f"{r.name}: {r.sampler} {r.steps}": draws[r.name][0][0] for r in shown}
    return compare(dances, caption=prompts[0]).save_gif(path, max_frames=100, progress=False)


def relative(value: float | None, reference: float | None) -> float | None:
    """value / reference - 1 (None when either is missing)."""
    return None if value is None or not reference else value / reference - 1.0


def verdict(row: dict[str, Any]) -> str:
    """Which targets a 2-thread row meets."""
    misses = []
    if row["dance_s"] > TIME_GOAL_S:
        misses.append(f"{row['dance_s']:.3f} s > {TIME_GOAL_S} s")
    if row["speedup"] < SPEEDUP_GOAL:
        misses.append(f"{row['speedup']:.0f}x < {SPEEDUP_GOAL:.0f}x")
    for key in ("fid_k", "pfc", "div_k"):
        rel = row.get(f"{key}_rel")
        if rel is not None and abs(rel) > QUALITY_BAND:
            misses.append(f"{key} {rel:+.0%}")
    return "**yes**" if not misses else "no (" + "; ".join(misses) + ")"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every recipe's time (1 and 2 threads) and quality; the reference's step time and quality."""
    from kpop_helpers.bench.protocol import cpu_info
    from kpop_helpers.bench.quality import pooled_fidelity, pooled_quality
    from kpop_helpers.bench.runner import load_reference_set
    from kpop_helpers.prompts import DANCE_PROMPTS

    prompts = list(DANCE_PROMPTS[:args.prompts])
    recipes = teacher_recipes(args.teacher_export, args.variant)
    recipes += [student_recipe(*spec.split("=", 1), args.variant) for spec in args.student]
    if args.only:
        recipes = [r for r in recipes if r.name == "teacher_ddpm20" or any(part in r.name for part in args.only)]
    reference_clips, reference_path = load_reference_set(args.reference_data, Path(args.work), 196)
    with np.load(args.reference_samples, allow_pickle=False) as data:
        reference_quality = pooled_quality([data["joints"][:args.prompts]], reference_clips, "corrected")
    reference = {"quality": reference_quality, "step_s": {}}
    rows: list[dict[str, Any]] = []
    draws: dict[str, list[np.ndarray]] = {}
    for recipe in tqdm(recipes, desc="quality draws"):
        draws[recipe.name] = quality_draws(recipe, prompts, args.draws, Path(args.work) / "draws")
    if args.gif:
        side_by_side_gif(draws, recipes, prompts, Path(args.out) / "teacher_vs_students.gif")
    # Scored once per recipe (the draws do not depend on the thread count).
    quality = {r.name: pooled_quality(draws[r.name], reference_clips, "corrected") for r in recipes}
    scores: dict[str, dict[str, Any]] = {}
    for recipe in recipes:
        fidelity = pooled_fidelity(draws["teacher_ddpm20"], draws[recipe.name]) or {}
        score = {k: quality[recipe.name].get(k) for k in ("fid_k", "fid_k_sd", "div_k", "div_k_sd", "pfc", "pfc_sd",
                                                          "foot_skating", "n_draws")}
        score["fidelity_to_shipped_mm"] = fidelity.get("fidelity_mm")
        for key in ("fid_k", "pfc", "div_k"):
            score[f"{key}_rel"] = relative(score[key], reference_quality.get(key))
            score[f"{key}_rel_shipped"] = relative(score[key], quality["teacher_ddpm20"].get(key))
        scores[recipe.name] = score
    for threads in args.threads:
        reference["step_s"][threads] = reference_step(args.teacher_weights, threads)
        for recipe in tqdm(recipes, desc=f"timing, {threads} thread(s)"):
            timing = timed(recipe, threads, args.repeats)
            calls = recipe.calls(timing.pop("guidance_input"))
            row = {**asdict(recipe), "threads": threads, **timing, "calls_per_step": calls,
                   "speedup": 1000 * reference["step_s"][threads] / timing["dance_s"], **scores[recipe.name]}
            row["targets"] = verdict(row) if threads == 2 else ""
            rows.append(row)
    return {"protocol": {"date": time.strftime("%Y-%m-%d"), "machine": cpu_info(), "prompts": len(prompts),
                         "draws": args.draws, "repeats": args.repeats, "frames": 196,
                         "reference_data": reference_path, "reference_samples": args.reference_samples,
                         "teacher_export": args.teacher_export, "variant": args.variant, "notes": args.notes},
            "reference": reference, "rows": rows}


def cell(row: dict[str, Any], key: str) -> str:
    """Table cells: value ± spread, relative differences in %."""
    value = row.get(key)
    if value is None:
        return "–"
    if key in ("fid_k", "div_k", "pfc") and row.get(f"{key}_sd") is not None:
        rel, shipped = row.get(f"{key}_rel"), row.get(f"{key}_rel_shipped")
        text = f"{value:.3g} ± {row[f'{key}_sd']:.2g}"
        if rel is not None:
            text += f" ({rel:+.0%} ref" + (f", {shipped:+.0%} shipped)" if shipped is not None else ")")
        return text
    if key == "speedup":
        return f"{value:.0f}x"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def machine(info: Any) -> str:
    """'AMD EPYC, 2 cores' from the benchmark's cpu_info (or the string itself)."""
    if isinstance(info, dict):
        return f"{info.get('model', 'CPU')}, {info.get('usable_cores', '?')} usable cores"
    return str(info)


def markdown(result: dict[str, Any]) -> str:
    """students.md."""
    p, ref = result["protocol"], result["reference"]
    q = ref["quality"]
    steps = ", ".join(f"{t} thread(s): {1000 * s:.1f} s" for t, s in ref["step_s"].items())
    lines = ["# Few-step recipes vs MDM's 1000-step procedure (edge runtime, 196 frames)", "",
             f"{p['date']} · {machine(p['machine'])} · teacher export `{p['teacher_export']}`, "
             f"variant `{p['variant']}`. "
             f"Time: a fresh interpreter per row (no torch), text tower included, median of {p['repeats']} dances "
             f"after a warm-up; peak RSS of that process. Quality: {p['draws']} noise draws of {p['prompts']} prompts "
             "(mean ± sd between draws; in brackets the difference to the reference's mean and to the shipped "
             "recipe's, teacher_ddpm20); fidelity: mm to the shipped recipe's dance with the same seed.", "",
             f"Reference (fp32 eager PyTorch, guided pair, 1000 DDPM steps, 1000 x median step): {steps}. "
             f"Its quality ({q['n_draws']} draw, the committed benchmark's sample set): FID_k {q['fid_k']:.3g}, "
             f"Div_k {q['div_k']:.3g}, PFC {q['pfc']:.3g}.", "",
             f"Targets (2 threads): <= {TIME_GOAL_S} s, >= {SPEEDUP_GOAL:.0f}x, FID_k / PFC / Div_k within "
             f"{QUALITY_BAND:.0%} of the reference.", "",
             markdown_table(result["rows"], (("name", "recipe"), ("recipe", "what"), ("sampler", "sampler"),
                                             ("steps", "steps"), ("guidance", "guidance"),
                                             ("calls_per_step", "rows/step"), ("threads", "thr."),
                                             ("dance_s", "dance s"), ("speedup", "speed-up"),
                                             ("peak_rss_mib", "peak RSS MiB"), ("fid_k", "FID_k"),
                                             ("div_k", "Div_k"), ("pfc", "PFC"),
                                             ("fidelity_to_shipped_mm", "vs shipped mm"), ("targets", "targets")),
                            cell), ""]
    if p.get("notes"):
        lines += [p["notes"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-export", required=True)
    parser.add_argument("--teacher-weights", required=True, help="the teacher's weights (times the reference)")
    parser.add_argument("--student", action="append", default=[], help="NAME=EXPORT_DIR of a student (repeatable)")
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--reference-samples", required=True, help="the main benchmark's fp32_ddpm1000.npz")
    parser.add_argument("--reference-data", default=None, help="the reference clips (default: the sample data's "
                        "val.npz, built when missing, as the main benchmark does)")
    parser.add_argument("--prompts", type=int, default=13)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", default="/tmp/bench_students", help="cached quality draws")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--only", nargs="*", default=[], help="recipes whose name holds one of these (and the "
                        "shipped teacher_ddpm20, every row's fidelity reference)")
    parser.add_argument("--notes", default="", help="free text printed under the table (how the students were made)")
    parser.add_argument("--gif", action="store_true", help="also write teacher_vs_students.gif to --out")
    args = parser.parse_args(argv)
    for spec in args.student:
        if "=" not in spec or not all(spec.split("=", 1)):
            parser.error(f"--student {spec!r}: expected NAME=EXPORT_DIR")
    result = run(args)
    write_result_files(args.out, "students", result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
