"""Edge compression benchmark: size, per-step latency and error of every compressed variant, and the
end-to-end time of the torch-free edge runtime.

Official-size denoiser (humanml_trans_enc_512 architecture, random weights; its text projection takes the
384-d MiniLM embedding our fine-tuning uses, since CLIP cannot be downloaded offline), T = 196 frames,
HumanML3D Mean/Std when ../shared has them. Per-step latency is one classifier-free-guided call (batch 2:
conditioned + unconditioned) at 1 and 2 threads; errors are against fp32 PyTorch on the same inputs and
noise (denoiser relative RMS; joints in mm after 10 DDIM steps for 2 prompts: random weights make the
joint numbers an upper bound, a trained model's sampler contracts errors). The edge runtime runs in a
fresh interpreter (no torch) for 196 frames with 10/20/50 DDIM steps; its peak RSS is that process's VmHWM.

    python benchmarks/bench_edge.py                        # -> benchmarks/results/edge.{json,md}
    python benchmarks/bench_edge.py --smoke --out /tmp/b   # tiny model, for tests
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from kpop_helpers.bench.protocol import cpu_info
from kpop_helpers.compress import (
    GenerationSetup, compressed_size_bytes, count_parameters, few_step_errors, generate_joints, measure_variant,
    prune_model, quantize_onnx_int8, quantize_torch_int8, torch_state_size_bytes,
)
from kpop_helpers.config import EdgeConfig
from kpop_helpers.export import (
    ModelExporter, export_onnx_file, onnx_runner, parity_inputs, torch_runner, torchscript_runner,
)
from kpop_helpers.model import MDM, get_preset, save_mdm
from kpop_helpers.motion.stats import MotionStats
from kpop_helpers.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ("a powerful hip-hop dance with big arm waves", "a cute aegyo dance with small bounces")
EDGE_PROMPT = "a dancer hits the beat with sharp arm pops and a spin"
GOALS = {"int8_size_ratio_max": 0.27, "int8_speedup_min": 1.7, "edge_gen_10_steps_2_threads_max_s": 1.0}


@dataclass
class Settings:
    """What to measure."""

    preset: str = "humanml_trans_enc_512"
    frames: int = 196
    threads: list[int] = field(default_factory=lambda: [1, 2])
    warmup: int = 3
    repeats: int = 15
    edge_steps: list[int] = field(default_factory=lambda: [10, 20, 50])
    edge_repeats: int = 3
    prune_amount: float = 0.3
    few_steps: list[int] = field(default_factory=lambda: [50, 20, 10])
    reference_steps: int | None = 100
    text_encoder: str = "onnx"  # the smoke run precomputes the prompts instead (seconds, not tens)
    seed: int = 0
    smoke: bool = False


SMOKE = Settings(preset="tiny", frames=40, threads=[1], warmup=1, repeats=2, edge_steps=[10], edge_repeats=1,
                 few_steps=[10], reference_steps=None, text_encoder="precomputed", smoke=True)


def machine() -> dict[str, Any]:
    """CPU model, SIMD flags that matter for int8, core count and load (other processes share the cores)."""
    cpu = cpu_info()
    flags, model = set(cpu["flags"]), cpu["model"]
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return {"cpu": model, "logical_cpus": os.cpu_count(), "simd": [f for f in wanted if f in flags],
            "load_average_start": list(os.getloadavg()), "torch": torch.__version__,
            "python": platform.python_version()}


def percentiles(values: list[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds of durations in seconds."""
    array = np.asarray(values) * 1000.0
    return float(np.percentile(array, 50)), float(np.percentile(array, 95))


def time_step(runner: Callable, inputs: tuple[np.ndarray, ...], warmup: int, repeats: int) -> tuple[float, float]:
    """p50/p95 latency (ms) of one guided denoiser call."""
    for _ in range(warmup):
        runner(*inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner(*inputs)
        times.append(time.perf_counter() - start)
    return percentiles(times)


def guided_inputs(cfg: Any, frames: int, seed: int) -> tuple[np.ndarray, ...]:
    """One prompt's guided batch: the same x_t twice, conditioned and unconditioned, at a late timestep."""
    rng = np.random.default_rng(seed)
    x = np.repeat(rng.standard_normal((1, cfg.njoints, 1, frames), dtype=np.float32), 2, axis=0)
    emb = np.repeat(rng.standard_normal((1, cfg.text_dim), dtype=np.float32), 2, axis=0)
    t = np.full(2, int(cfg.diffusion_steps) * 9 // 10, dtype=np.int64)
    return x, t, emb, np.array([False, True])


def build_model(settings: Settings) -> MDM:
    """Seeded random model with the MiniLM text projection and the HumanML3D statistics."""
    torch.manual_seed(settings.seed)
    model = MDM(get_preset(settings.preset)).eval()
    if model.text_encoder_name != "minilm":
        import logging

        logging.getLogger("kpop_helpers.model.mdm").setLevel(logging.ERROR)  # re-initialising is intended here
        model.reset_text_projection(384, "minilm")
    stats_dir = REPO.parent / "shared" / "fixtures" / "humanml_stats"
    if (stats_dir / "Mean.npy").is_file():
        model.stats = MotionStats.load(stats_dir)
    else:
        rng = np.random.default_rng(0)
        model.stats = MotionStats(mean=0.1 * rng.standard_normal(263), std=0.05 + 0.3 * rng.random(263))
    return model.eval()


def export_variants(model: MDM, work: Path, settings: Settings) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Export folder (fp32/int8/fp16/pruned ffn/TorchScript/text) plus the other pruning kinds; {name: info}."""
    config = EdgeConfig.from_dict({
        "optimization": {"quantization": {"enabled": True, "fp16": True},
                         "pruning": {"enabled": True, "kind": "ffn", "sparsity": settings.prune_amount,
                                     "recovery_steps": 0}},
        "sampling": {"sampler": "ddim", "steps": 10},
        "export": {"formats": ["onnx", "torchscript"], "text_encoder": settings.text_encoder,
                   # precomputed prompts only without the ONNX tower: the edge timing must include text encoding
                   "prompts": [EDGE_PROMPT, *PROMPTS] if settings.text_encoder == "precomputed" else []}})
    config.save(work / "edge_config.json")
    out = work / "export"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "no recovery data": timing only
        manifest = ModelExporter(None, work / "edge_config.json", model=model, threads=max(settings.threads),
                                 progress=not settings.smoke).export_all(out, ["onnx", "torchscript"])
    files = {name: {"path": out / entry["file"], "runtime": entry["runtime"], "precision": entry["precision"],
                    "pruning": entry["pruning"], "params": entry["params"]}
             for name, entry in manifest["variants"].items()}
    for kind in ("unstructured", "width"):
        pruned, report = prune_model(model, kind, settings.prune_amount)
        path = out / f"model_pruned_{kind}.onnx"
        export_onnx_file(pruned, path)
        files[f"pruned_{kind}"] = {"path": path, "runtime": "onnxruntime", "precision": "fp32", "pruning": kind,
                                   "params": count_parameters(pruned), "model": pruned, "report": report.to_dict()}
        if kind == "width":
            q = out / f"model_pruned_{kind}_int8.onnx"
            quantize_onnx_int8(path, q, pruned.cfg)
            files[f"pruned_{kind}_int8"] = {"path": q, "runtime": "onnxruntime", "precision": "int8",
                                            "pruning": kind, "params": count_parameters(pruned)}
    files["pruned_unstructured"]["compressed_size_bytes"] = compressed_size_bytes(files["pruned_unstructured"]["path"])
    files["fp32"]["compressed_size_bytes"] = compressed_size_bytes(files["fp32"]["path"])
    return out, files


def step_rows(model: MDM, files: dict[str, dict[str, Any]], work: Path, settings: Settings,
              setup: GenerationSetup) -> list[dict[str, Any]]:
    """Latency, size and error rows of every variant (design's row format plus a few extra fields)."""
    weights = save_mdm(model, work / "model.safetensors")
    quantized, coverage = quantize_torch_int8(model)
    reference = torch_runner(model)
    ref_joints = generate_joints(reference, setup)
    inputs = parity_inputs(model.cfg)
    candidates: list[tuple[str, str, str, str | None, int, float, Callable[[int], Callable], dict]] = [
        ("torch_fp32", "torch", "fp32", None, count_parameters(model), weights.stat().st_size / 1e6,
         lambda n: torch_runner(model), {}),
        ("torch_int8", "torch", "int8", None, count_parameters(model), torch_state_size_bytes(quantized) / 1e6,
         lambda n: torch_runner(quantized), {"int8_coverage": coverage.fraction}),
        ("torchscript_fp32", "torchscript", "fp32", None, count_parameters(model),
         files["torchscript"]["path"].stat().st_size / 1e6,
         lambda n: torchscript_runner(files["torchscript"]["path"]), {}),
    ]
    for name in ("fp32", "int8", "fp16", "pruned_unstructured", "pruned_ffn", "pruned_ffn_int8", "pruned_width",
                 "pruned_width_int8"):
        info = files[name]
        extra = {k: info[k] / 1e6 for k in ("compressed_size_bytes",) if k in info}
        candidates.append((f"ort_{name}", "onnxruntime", info["precision"], info["pruning"], info["params"],
                           info["path"].stat().st_size / 1e6, lambda n, p=info["path"]: onnx_runner(p, n), extra))
    rows = []
    step_in = guided_inputs(model.cfg, settings.frames, settings.seed)
    for name, runtime, precision, pruning, params, size_mb, factory, extra in tqdm(candidates, desc="variants",
                                                                                   disable=settings.smoke):
        error = measure_variant(name, reference, factory(2), model.cfg, setup=setup, reference_joints=ref_joints,
                                inputs=inputs)
        for threads in settings.threads:
            torch.set_num_threads(threads)
            p50, p95 = time_step(factory(threads), step_in, settings.warmup, settings.repeats)
            rows.append({"variant": name, "runtime": runtime, "precision": precision, "pruning": pruning,
                         "sampler": "ddim", "steps": 1, "threads": threads, "batch": 2,
                         "file_size_mb": round(size_mb, 3), "params": params, "step_ms_p50": round(p50, 2),
                         "step_ms_p95": round(p95, 2), "fidelity_mm": error.joints_mpjpe_mm,
                         "fidelity_root_relative_mm": error.joints_root_relative_mm,
                         "fidelity_rel_rms": error.denoiser_rel_rms, "denoiser_max_abs": error.denoiser_max_abs,
                         **extra})
    return rows


EDGE_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from kpop_helpers.edge import EdgeGenerator
    folder, variant, threads, frames = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    steps, repeats = json.loads(sys.argv[5]), int(sys.argv[6])
    gen = EdgeGenerator(folder, variant=variant, threads=threads)
    prompt = [sys.argv[7]]
    first = time.perf_counter()
    # DDIM explicitly: this table is the DDIM step sweep, whatever sampler the export ships with.
    gen.generate(prompt, frames=frames, steps=steps[0], seed=0, sampler="ddim")
    first = time.perf_counter() - first
    out = []
    for n in steps:
        runs = []
        for r in range(repeats):
            gen.generate(prompt, frames=frames, steps=n, seed=r, sampler="ddim")
            runs.append(gen.last.timings)
        best = sorted(runs, key=lambda t: t["total_s"])[len(runs) // 2]
        out.append({"steps": n, **best})
    print(json.dumps({"load_time_s": gen.load_time_s, "first_call_s": first, "runs": out,
                      "peak_rss_mib": gen.last.peak_rss_mib, "torch_imported": "torch" in sys.modules}))
""")


def edge_rows(export_dir: Path, settings: Settings) -> list[dict[str, Any]]:
    """End-to-end edge generation (text + sampling + joints) in a fresh torch-free interpreter."""
    rows = []
    for variant, threads in [(v, n) for n in sorted(settings.threads, reverse=True) for v in ("int8", "fp32")]:
        cmd = [sys.executable, "-c", EDGE_SCRIPT, str(export_dir), variant, str(threads), str(settings.frames),
               json.dumps(settings.edge_steps), str(settings.edge_repeats), EDGE_PROMPT]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=1800, check=True)
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        for run in report["runs"]:
            rows.append({"variant": f"edge_{variant}_ddim{run['steps']}", "runtime": "onnxruntime",
                         "precision": variant, "pruning": None, "sampler": "ddim", "steps": run["steps"],
                         "threads": threads, "batch": 1, "frames": settings.frames,
                         "gen_time_s": round(run["total_s"], 3), "text_s": round(run["text_s"], 4),
                         "sampling_s": round(run["sampling_s"], 3), "joints_s": round(run["joints_s"], 4),
                         "step_ms_p50": round(run["step_s"] * 1000, 2), "load_time_s": round(report["load_time_s"], 3),
                         "first_call_s": round(report["first_call_s"], 3), "peak_rss_mib": report["peak_rss_mib"],
                         "torch_imported": report["torch_imported"]})
    return rows


def goals(rows: list[dict[str, Any]], edge: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    """The three targets, measured."""
    def row(name: str) -> dict[str, Any]:
        return next(r for r in rows if r["variant"] == name and r["threads"] == threads)

    fp32, int8 = row("ort_fp32"), row("ort_int8")
    e10 = next((r for r in edge if r["variant"] == "edge_int8_ddim10" and r["threads"] == threads), None)
    out = {"threads": threads,
           "int8_size_ratio": int8["file_size_mb"] / fp32["file_size_mb"],
           "int8_speedup_vs_ort_fp32": fp32["step_ms_p50"] / int8["step_ms_p50"],
           "int8_speedup_vs_torch_fp32": row("torch_fp32")["step_ms_p50"] / int8["step_ms_p50"],
           "edge_gen_10_steps_s": None if e10 is None else e10["gen_time_s"]}
    out["met"] = {"int8_size": out["int8_size_ratio"] <= GOALS["int8_size_ratio_max"],
                  "int8_speed": out["int8_speedup_vs_ort_fp32"] >= GOALS["int8_speedup_min"],
                  "edge_time": e10 is not None and e10["gen_time_s"] <= GOALS["edge_gen_10_steps_2_threads_max_s"]}
    return out


def markdown(result: dict[str, Any]) -> str:
    """Human-readable tables of the JSON."""
    m, s, g = result["machine"], result["settings"], result["goals"]
    lines = [f"# Edge compression benchmark ({s['preset']}, T={s['frames']}, guidance batch 2)", "",
             f"- CPU: {m['cpu']} ({m['logical_cpus']} logical CPUs; {', '.join(m['simd'])}); torch {m['torch']}",
             f"- load average at start {m['load_average_start']}, at end {m['load_average_end']}: other processes "
             "shared these cores, so latencies are pessimistic and noisy",
             f"- random weights; errors vs fp32 PyTorch on the same inputs/noise (joints: 2 prompts, {s['frames']} "
             "frames, DDIM 10, guidance 2.5; random weights make joint errors an upper bound)",
             f"- edge text encoder: {s['text_encoder']}", "",
             "| variant | threads | file MB | params | step p50 ms | step p95 ms | rel RMS | joints MPJPE mm "
             "| root-rel mm |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        zipped = f" (zip {r['compressed_size_bytes']:.1f})" if "compressed_size_bytes" in r else ""
        lines.append(f"| {r['variant']} | {r['threads']} | {r['file_size_mb']:.2f}{zipped}"
                     f" | {r['params']:,} | {r['step_ms_p50']:.1f} | {r['step_ms_p95']:.1f} | "
                     f"{r['fidelity_rel_rms']:.2e} | {r['fidelity_mm']:.1f} | {r['fidelity_root_relative_mm']:.1f} |")
    lines += ["", "## Edge runtime (torch-free process, 1 prompt)", "",
              "| variant | threads | frames | total s | text s | sampling s | step ms | load s | peak RSS MiB |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in result["edge"]:
        lines.append(f"| {r['variant']} | {r['threads']} | {r['frames']} | {r['gen_time_s']:.3f} | {r['text_s']:.3f} "
                     f"| {r['sampling_s']:.3f} | {r['step_ms_p50']:.1f} | {r['load_time_s']:.2f} "
                     f"| {r['peak_rss_mib']:.0f} |")
    lines += ["", "## Few-step sampling (DDIM N vs DDIM reference, same noise, ORT fp32)", "",
              "| steps | reference | joints MPJPE mm | sample rel RMS | time s | note |", "|---|---|---|---|---|---|"]
    for f in result["few_step"]:
        fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        lines.append(f"| {f['steps']} | {f['reference_steps']} | {fmt(f['joints_mpjpe_mm'], '.1f')} | "
                     f"{fmt(f['sample_rel_rms'], '.3f')} | {fmt(f['time_s'], '.2f')} | {f['skipped'] or ''} |")
    lines += ["", f"## Goals ({g['threads']} threads)", "",
              f"- int8 file / fp32 file: {g['int8_size_ratio']:.3f} (goal <= {GOALS['int8_size_ratio_max']}): "
              f"{'met' if g['met']['int8_size'] else 'NOT met'}",
              f"- int8 step speed-up vs ORT fp32: {g['int8_speedup_vs_ort_fp32']:.2f}x, vs PyTorch fp32 eager: "
              f"{g['int8_speedup_vs_torch_fp32']:.2f}x (goal >= {GOALS['int8_speedup_min']}x vs fp32): "
              f"{'met' if g['met']['int8_speed'] else 'NOT met'}",
              f"- edge generation, {s['frames']} frames, 10 DDIM steps: {g['edge_gen_10_steps_s']} s (goal <= "
              f"{GOALS['edge_gen_10_steps_2_threads_max_s']} s): {'met' if g['met']['edge_time'] else 'NOT met'}", ""]
    return "\n".join(lines)


def run(settings: Settings, out_dir: Path) -> dict[str, Any]:
    """Run everything and write edge.json / edge.md into out_dir; returns the JSON object."""
    info = machine()
    model = build_model(settings)
    with tempfile.TemporaryDirectory(prefix="bench_edge_") as tmp:
        work = Path(tmp)
        export_dir, files = export_variants(model, work, settings)
        from kpop_helpers.text import get_text_encoder

        emb = get_text_encoder("minilm").encode(list(PROMPTS)).numpy()
        setup = GenerationSetup(text_emb=emb, mean=model.stats.mean, std=model.stats.std,
                                diffusion_steps=model.cfg.diffusion_steps, frames=settings.frames, steps=10)
        rows = step_rows(model, files, work, settings, setup)
        few = few_step_errors(onnx_runner(files["fp32"]["path"], max(settings.threads)), emb[:1], model.stats.mean,
                              model.stats.std, diffusion_steps=model.cfg.diffusion_steps, frames=settings.frames,
                              steps=settings.few_steps, reference_steps=settings.reference_steps)
        edge = edge_rows(export_dir, settings)
    info["load_average_end"] = list(os.getloadavg())
    result = {"protocol": {"benchmark": "bench_edge", "preset": settings.preset, "frames": settings.frames,
                           "weights": "random", "text_projection": "minilm (384-d)"},
              "machine": info, "settings": asdict(settings), "rows": rows, "edge": edge,
              "few_step": [f.to_dict() for f in few], "goals": goals(rows, edge, max(settings.threads)),
              "pruning": {k: v["report"] for k, v in files.items() if "report" in v}}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "edge.json", json.dumps(result, indent=2, default=str) + "\n")
    atomic_write_text(out_dir / "edge.md", markdown(result))
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny preset, few repeats (for tests)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for edge.json/edge.md")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per variant and thread count")
    args = parser.parse_args(argv)
    settings = SMOKE if args.smoke else Settings()
    if args.repeats:
        settings.repeats = args.repeats
    result = run(settings, Path(args.out))
    print(json.dumps(result["goals"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
