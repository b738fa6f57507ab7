"""How much do FID_k and PFC move when only the noise seed changes? The noise band of the quality target.

    .venv/bin/python benchmarks/bench_quality_noise.py --model <weights.safetensors> [--prompts 16] [--seeds 5]

The one-protocol benchmark compares each variant's FID_k and PFC with the reference procedure's, each from one
set of dances (one per prompt). This script generates the same prompt set with the fp32 model and a few-step
sampler under several noise seeds and scores every set against the same reference clips, so a reader can tell a
real quality loss from sampling noise: a difference smaller than the seed-to-seed spread is not evidence.

Writes quality_noise.json and quality_noise.md to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from kpop_helpers.bench.protocol import DEFAULT_PROMPTS, environment, parse_sampler
from kpop_helpers.bench.runner import load_reference_set
from kpop_helpers.bench.variants import load_torch_model
from kpop_helpers.generate import generate
from kpop_helpers.metrics import dance_quality
from kpop_helpers.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
METRICS = ("fid_k", "fid_g", "div_k", "pfc", "foot_skating", "jitter")


def seed_spread(model, prompts: list[str], sampler_spec: str, seeds: list[int], reference: list[np.ndarray],
                frames: int, guidance: float, mode: str) -> dict:
    """Scores of one sampler's dance set per seed, and their mean, std, min, max and relative spread."""
    sampler, steps = parse_sampler(sampler_spec)
    per_seed = []
    for seed in tqdm(seeds, desc=sampler_spec, leave=False):
        start = time.perf_counter()
        result = generate(model, prompts, frames=frames, steps=steps, sampler=sampler, guidance=guidance, seed=seed,
                          progress=False)
        scores = dance_quality(list(result.joints), reference, fps=20.0, mode=mode, allow_small=True, progress=False)
        per_seed.append({"seed": seed, "seconds": time.perf_counter() - start,
                         **{k: float(scores[k]) for k in METRICS}})
    summary = {}
    for key in METRICS:
        values = np.array([row[key] for row in per_seed])
        mean = float(values.mean())
        summary[key] = {"mean": mean, "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                        "min": float(values.min()), "max": float(values.max()),
                        "max_rel_dev": float(np.abs(values / mean - 1).max()) if mean else None}
    return {"sampler": sampler_spec, "per_seed": per_seed, "summary": summary}


def to_markdown(result: dict) -> str:
    """A table per metric: each sampler's mean, spread and the largest deviation of one seed from the mean."""
    s = result["settings"]
    lines = ["# Quality noise: the same prompts, other noise seeds", "",
             f"- Model: {s['model']}; {len(s['prompts'])} prompts, {s['frames']} frames, guidance {s['guidance']}, "
             f"seeds {s['seeds']}, metrics mode {s['mode']}; reference set {s['reference']} "
             f"({s['reference_clips']} clips).",
             f"- CPU: {result['environment']['cpu']['model']}; torch {result['environment']['libraries'].get('torch')}.",
             "- Each seed is a whole dance set (one dance per prompt) scored against the same reference clips. "
             "`max dev` is the largest relative deviation of one seed's score from the mean over seeds: a variant "
             "whose score differs from the reference procedure's by less than this is within sampling noise.", "",
             "| sampler | metric | mean | std | min | max | max dev |", "|---|---|---:|---:|---:|---:|---:|"]
    for entry in result["samplers"]:
        for key in ("fid_k", "pfc", "fid_g", "div_k"):
            v = entry["summary"][key]
            dev = "–" if v["max_rel_dev"] is None else f"{100 * v['max_rel_dev']:.0f}%"
            lines.append(f"| {entry['sampler']} | {key} | {v['mean']:.4g} | {v['std']:.3g} | {v['min']:.4g} | "
                         f"{v['max']:.4g} | {dev} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="weights .safetensors (with stats), e.g. the full run's model")
    p.add_argument("--reference-data", default=None,
                   help="clips to score against (default: the sample set's val split, built when missing)")
    p.add_argument("--samplers", nargs="+", default=["ddpm20", "ddpm10", "ddim10"])
    p.add_argument("--prompts", type=int, default=16, help="the first N default benchmark prompts")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--frames", type=int, default=196)
    p.add_argument("--guidance", type=float, default=2.5)
    p.add_argument("--mode", default="corrected", choices=("compat", "corrected"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    if not 2 <= args.prompts <= len(DEFAULT_PROMPTS):
        p.error(f"--prompts must lie in 2..{len(DEFAULT_PROMPTS)}")
    if args.seeds < 2:
        p.error("--seeds must be at least 2 (a spread needs two sets)")
    torch.set_num_threads(args.threads)
    model = load_torch_model(args.model)
    work = Path(args.out) / ".work"
    reference, reference_path = load_reference_set(args.reference_data, work, args.frames)
    prompts = list(DEFAULT_PROMPTS[:args.prompts])
    seeds = list(range(1000, 1000 + args.seeds))  # not the benchmark's seed 0: independent draws
    samplers = [seed_spread(model, prompts, spec, seeds, reference, args.frames, args.guidance, args.mode)
                for spec in tqdm(args.samplers, desc="samplers")]
    result = {"settings": {"model": str(args.model), "prompts": prompts, "frames": args.frames,
                           "guidance": args.guidance, "seeds": seeds, "mode": args.mode, "threads": args.threads,
                           "reference": reference_path, "reference_clips": len(reference)},
              "environment": environment(), "samplers": samplers}
    out = Path(args.out)
    atomic_write_text(out / "quality_noise.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "quality_noise.md", to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
