"""CPU latency of the MDM denoiser: one guided step, and whole DDPM / DDIM generations.

Times the official-size architecture (random weights: timing does not depend on their values) at
each thread count: one classifier-free-guided denoiser call (batch 2 = 1 prompt conditioned +
unconditioned, T frames), and the sampling loops of DDIM 50, DDIM 10 and DDPM over the model's
full schedule. A full DDPM run takes minutes on a laptop CPU, so by default only its first
`--ddpm-steps` steps are timed and the total is extrapolated (the output says so); pass
`--ddpm-steps 0` to time every step. Text encoding and feature-to-joint conversion are excluded.

    python benchmarks/bench_denoiser.py                    # -> benchmarks/results/denoiser.{json,md}
    python benchmarks/bench_denoiser.py --smoke --out /tmp/bench   # tiny model, seconds
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from kpop_helpers.bench.protocol import cpu_info
from kpop_helpers.diffusion import GaussianDiffusion, cfg_model_fn
from kpop_helpers.generate import sampling_diffusion
from kpop_helpers.model import MDM, get_preset
from kpop_helpers.utils import atomic_write_text, fmt, peak_rss_mib

SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni",
              "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd")


@dataclass
class BenchSettings:
    """What to measure: model size, sequence length, thread counts, repeat counts and samplers."""

    preset: str = "humanml_trans_enc_512"
    frames: int = 196
    threads: list[int] = field(default_factory=lambda: [1, 2])
    warmup: int = 3
    step_repeats: int = 20
    gen_repeats: int = 3
    ddim_steps: list[int] = field(default_factory=lambda: [50, 10])
    ddpm_steps: int = 50  # timed DDPM steps per run; 0 = the whole schedule
    guidance: float = 2.5
    seed: int = 0
    smoke: bool = False


SMOKE = BenchSettings(preset="tiny", frames=20, threads=[1], warmup=1, step_repeats=3, gen_repeats=1,
                      ddim_steps=[5, 2], ddpm_steps=3, smoke=True)


def percentiles(values: list[float]) -> tuple[float, float]:
    """(p50, p95) of a list of timings (linear interpolation)."""
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def system_info() -> dict:
    """CPU model and SIMD flags, core count, torch/numpy/python versions."""
    cpu = cpu_info()
    flags = set(cpu["flags"])
    return {
        "cpu_model": cpu["model"],
        "cpu_flags": [f for f in SIMD_FLAGS if f in flags],
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "logical_cpus": os.cpu_count(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
    }


def _row(settings: BenchSettings, params: int, threads: int, variant: str, sampler: str | None, steps: int,
         step_ms: list[float], gen_s: list[float] | None = None, measured_steps: int | None = None) -> dict:
    step_p50, step_p95 = percentiles(step_ms)
    row = {"variant": variant, "runtime": "torch", "precision": "fp32", "pruning": None, "sampler": sampler,
           "steps": steps, "threads": threads, "batch": 1, "denoiser_batch": 2, "frames": settings.frames,
           "params": params, "step_ms_p50": step_p50, "step_ms_p95": step_p95, "step_samples": len(step_ms),
           "gen_time_s": None, "gen_time_p50_s": None, "gen_time_p95_s": None, "gen_repeats": 0,
           "measured_steps": measured_steps, "extrapolated": False}
    if gen_s is not None:
        gen_p50, gen_p95 = percentiles(gen_s)
        row.update(gen_time_s=gen_p50, gen_time_p50_s=gen_p50, gen_time_p95_s=gen_p95, gen_repeats=len(gen_s),
                   extrapolated=measured_steps is not None and measured_steps < steps)
    return row


def bench_step(model_fn, x: torch.Tensor, timesteps: torch.Tensor, warmup: int, repeats: int) -> list[float]:
    """Milliseconds of `repeats` guided denoiser calls after `warmup` untimed ones."""
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model_fn(x, timesteps)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return times


def bench_generation(diffusion: GaussianDiffusion, model_fn, shape: tuple[int, ...], sampler: str,
                     counted_steps: int, repeats: int, seed: int) -> tuple[list[float], list[float]]:
    """(per-step ms over all runs, total seconds per run scaled to the whole schedule)."""
    step_ms: list[float] = []
    totals: list[float] = []
    counted = min(counted_steps, diffusion.num_steps) if counted_steps > 0 else diffusion.num_steps
    for run in range(repeats):
        start = time.perf_counter()
        loop = diffusion.sample_loop_progressive(model_fn, shape, sampler=sampler, seed=seed + run, progress=False)
        last = start
        for _ in itertools.islice(loop, counted):
            now = time.perf_counter()
            step_ms.append((now - last) * 1e3)
            last = now
        loop.close()
        elapsed = time.perf_counter() - start
        # Steps cost the same whatever t is, so the rest of the schedule scales linearly.
        totals.append(elapsed * diffusion.num_steps / counted)
    return step_ms, totals


def run_benchmark(settings: BenchSettings, progress: bool = True) -> dict:
    """Measure every (threads, variant) pair; returns the result document (protocol, system, rows)."""
    torch.manual_seed(settings.seed)
    cfg = get_preset(settings.preset)
    model = MDM(cfg).eval()
    params = model.num_parameters()
    shape = (1, cfg.njoints, cfg.nfeats, settings.frames)
    text_emb = torch.randn(1, cfg.text_dim)
    model_fn = cfg_model_fn(model, text_emb, settings.guidance)
    x = torch.randn(shape)
    timesteps = torch.tensor([cfg.diffusion_steps // 2])
    full_ddpm = cfg.diffusion_steps
    ddpm_counted = settings.ddpm_steps if 0 < settings.ddpm_steps < full_ddpm else full_ddpm
    plans = [("ddim", s) for s in settings.ddim_steps] + [("ddpm", None)]

    rows = []
    load_before = _load_average()
    original_threads = torch.get_num_threads()
    tasks = tqdm(total=len(settings.threads) * (1 + len(plans)), desc="bench denoiser", disable=not progress)
    try:
        for threads in settings.threads:
            torch.set_num_threads(threads)
            step_ms = bench_step(model_fn, x, timesteps, settings.warmup, settings.step_repeats)
            rows.append(_row(settings, params, threads, "fp32_step", None, 1, step_ms))
            tasks.update()
            for sampler, steps in plans:
                diffusion = sampling_diffusion(cfg.diffusion_steps, sampler, steps, cfg.noise_schedule)
                counted = ddpm_counted if sampler == "ddpm" else diffusion.num_steps
                gen_step_ms, totals = bench_generation(diffusion, model_fn, shape, sampler, counted,
                                                       settings.gen_repeats, settings.seed)
                variant = f"fp32_{sampler}{diffusion.num_steps}"
                rows.append(_row(settings, params, threads, variant, sampler, diffusion.num_steps, gen_step_ms,
                                 totals, measured_steps=counted))
                tasks.update()
    finally:
        tasks.close()
        torch.set_num_threads(original_threads)

    notes = ["random weights (timing only); text encoding and joint recovery excluded",
             f"step rows: {settings.step_repeats} timed guided calls after {settings.warmup} warm-up calls",
             "generation rows follow the step warm-up at the same thread count; step_ms_* are per-step times "
             "inside the loop, gen_time_* are per-run totals"]
    if ddpm_counted < full_ddpm:
        notes.append(f"DDPM {full_ddpm}: EXTRAPOLATED from the first {ddpm_counted} of {full_ddpm} steps of each "
                     f"run (total = measured time x {full_ddpm}/{ddpm_counted}); use --ddpm-steps 0 to time all")
    protocol = {"benchmark": "denoiser", **asdict(settings), "model_diffusion_steps": cfg.diffusion_steps,
                "denoiser_batch": 2, "notes": notes}
    system = system_info()
    system["peak_rss_mib"] = peak_rss_mib()
    # Other processes competing for the cores inflate every number; keep the evidence with the result.
    system["load_average_1min_before"], system["load_average_1min_after"] = load_before, _load_average()
    return {"protocol": protocol, "system": system, "rows": rows}


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # not available on Windows
        return None


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def to_markdown(result: dict) -> str:
    """A human-readable report of a result document."""
    protocol, system = result["protocol"], result["system"]
    lines = [
        f"# Denoiser benchmark ({protocol['preset']}, T={protocol['frames']} frames, guidance batch 2)",
        "",
        f"- CPU: {system['cpu_model']} ({system['logical_cpus']} logical CPUs; flags: "
        f"{', '.join(system['cpu_flags']) or 'n/a'}; torch kernels: {system['torch_cpu_capability']})",
        f"- torch {system['torch_version']}, numpy {system['numpy_version']}, Python {system['python_version']}",
        f"- peak RSS {fmt(system.get('peak_rss_mib'))} MiB" + ("; SMOKE run (tiny model, not representative)"
                                                       if protocol["smoke"] else ""),
        f"- 1-min load average before/after: {system['load_average_1min_before']} / "
        f"{system['load_average_1min_after']} (above the thread count means other work shared the CPU)",
        *[f"- {note}" for note in protocol["notes"]],
        "",
        "| variant | threads | steps | step p50 (ms) | step p95 (ms) | generation p50 (s) | generation p95 (s) | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        note = (f"extrapolated from {row['measured_steps']} of {row['steps']} steps" if row["extrapolated"]
                else f"{row['gen_repeats']} full run(s)" if row["gen_repeats"] else f"{row['step_samples']} calls")
        lines.append(f"| {row['variant']} | {row['threads']} | {row['steps']} | {_fmt(row['step_ms_p50'], 1)} | "
                     f"{_fmt(row['step_ms_p95'], 1)} | {_fmt(row['gen_time_p50_s'], 2)} | "
                     f"{_fmt(row['gen_time_p95_s'], 2)} | {note} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """CLI entry point: run, then write denoiser.json and denoiser.md into --out."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                        help="folder for denoiser.json and denoiser.md")
    parser.add_argument("--smoke", action="store_true", help="tiny model and few steps: finishes in seconds")
    parser.add_argument("--preset", help="model preset (default humanml_trans_enc_512)")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--threads", type=int, nargs="+")
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--step-repeats", type=int)
    parser.add_argument("--gen-repeats", type=int)
    parser.add_argument("--ddim-steps", type=int, nargs="+")
    parser.add_argument("--ddpm-steps", type=int,
                        help="DDPM steps timed per run, the total is extrapolated (0 = time the whole schedule)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    settings = BenchSettings(**asdict(SMOKE)) if args.smoke else BenchSettings()
    for name in ("preset", "frames", "threads", "warmup", "step_repeats", "gen_repeats", "ddim_steps", "ddpm_steps"):
        value = getattr(args, name)
        if value is not None:
            setattr(settings, name, value)
    if min(settings.threads) < 1 or settings.step_repeats < 1 or settings.gen_repeats < 1 or settings.frames < 1:
        parser.error("threads, repeats and frames must be positive")

    result = run_benchmark(settings, progress=not args.no_progress)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "denoiser.json", json.dumps(result, indent=2) + "\n")
    markdown = to_markdown(result)
    atomic_write_text(args.out / "denoiser.md", markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
