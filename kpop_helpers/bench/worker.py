"""One variant at one thread count, in its own process: `python -m kpop_helpers.bench.worker JOB.json RESULT.json`.

A fresh process per variant keeps the measurements independent: the load time includes the cold import of
the file, the peak RSS is this variant's alone, and one variant's thread pools or caches cannot speed up or
slow down the next. A timing job measures every batch setting; a quality job ("quality": true, no batches)
generates the sample set, one file per noise draw. The result is one JSON line, written atomically to RESULT.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.utils import peak_rss_mib


def _percentiles(times_s: list[float]) -> tuple[float, float]:
    ms = np.asarray(times_s, dtype=np.float64) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


class Measurement:
    """Drives one loaded variant through the shared inputs: step latency, generation time and quality samples."""

    def __init__(self, job: dict[str, Any], denoiser):
        import torch

        from kpop_helpers.bench.protocol import load_inputs
        from kpop_helpers.bench.variants import VariantSpec
        from kpop_helpers.generate import sampling_diffusion

        self.job = job
        self.spec = VariantSpec.from_dict(job["variant"])
        self.denoiser = denoiser
        arrays = load_inputs(job["inputs"])
        self.text_emb = torch.from_numpy(arrays["text_emb"])
        self.noise = torch.from_numpy(arrays["initial_noise"])
        self.mean, self.std = arrays["mean"], arrays["std"]
        steps = None if self.spec.steps == job["diffusion_steps"] else self.spec.steps
        self.diffusion = sampling_diffusion(job["diffusion_steps"], self.spec.sampler, steps, job["noise_schedule"])

    def model_fn(self, samples: list[int], guided: bool):
        """The guided (conditioned + unconditioned rows in one forward) or unguided model_fn for these prompts."""
        from kpop_helpers.diffusion import cfg_model_fn

        scale = float(self.job["guidance"]) if guided else 1.0
        # Sample d * P + p is prompt p of noise draw d.
        prompts = [i % len(self.text_emb) for i in samples]
        return cfg_model_fn(self.denoiser, self.text_emb[prompts], scale)

    def step_latency(self, batch: int) -> dict[str, float]:
        """p50/p95 ms of one reverse step (network + sampler update) at network batch 1 or 2, after warm-up."""
        import torch

        from kpop_helpers.bench.protocol import StepNoise

        model_fn = self.model_fn([0], guided=batch == 2)
        warmup, timed = int(self.job["warmup_steps"]), int(self.job["timed_steps"])
        steps = self.diffusion.num_steps
        noise = StepNoise(self.job["step_noise"], 0, steps)
        x = self.noise[0:1].clone()
        times = []
        with torch.no_grad():
            for k in range(warmup + timed):
                t = torch.full((1,), steps - 1 - (k % steps), dtype=torch.int64)
                eps = noise[k % len(noise)]
                start = time.perf_counter()
                out = self._step(model_fn, x, t, eps)
                elapsed = time.perf_counter() - start
                if k >= warmup:
                    times.append(elapsed)
                if not torch.isfinite(out).all():
                    raise FloatingPointError(f"non-finite sample at step {k} (batch {batch})")
        noise.close()
        p50, p95 = _percentiles(times)
        return {"step_ms_p50": p50, "step_ms_p95": p95}

    def _step(self, model_fn, x, t, eps):
        if self.spec.sampler == "ddpm":
            return self.diffusion.p_sample(model_fn, x, t, eps).sample
        return self.diffusion.ddim_sample(model_fn, x, t, 0.0, eps).sample

    def generate(self, samples: list[int], guided: bool) -> tuple[np.ndarray, float]:
        """(joints [S,T,22,3], seconds) of these prompts in one batch: noise -> loop -> de-normalise -> joints."""
        from kpop_helpers.bench.protocol import StepNoise
        from kpop_helpers.motion.features import features_to_joints

        noise = StepNoise(self.job["step_noise"], samples, self.diffusion.num_steps)
        start = time.perf_counter()
        loop = self.diffusion.p_sample_loop if self.spec.sampler == "ddpm" else self.diffusion.ddim_sample_loop
        out = loop(self.model_fn(samples, guided), noise=self.noise[samples].clone(), step_noise=noise,
                   progress=bool(self.job.get("progress")))
        normalised = out[:, :, 0, :].permute(0, 2, 1).float().numpy()  # [S, T, 263]
        joints = np.asarray(features_to_joints(normalised * self.std + self.mean), dtype=np.float32)
        elapsed = time.perf_counter() - start
        noise.close()
        if not np.all(np.isfinite(joints)):
            raise FloatingPointError(f"non-finite joints for samples {samples}")
        return joints, elapsed


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Load the variant, measure every batch setting, and (when asked) generate the quality samples."""
    import torch

    from kpop_helpers.bench.variants import VariantSpec, load_denoiser

    threads = int(job["threads"])
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    spec = VariantSpec.from_dict(job["variant"])
    result: dict[str, Any] = {"variant": spec.name, "threads": threads, "pid": os.getpid(),
                              "rss_before_load_mib": peak_rss_mib(), "batches": {}}
    start = time.perf_counter()
    denoiser = load_denoiser(spec.artifact, threads)
    result["load_time_s"] = time.perf_counter() - start
    result["params"], result["params_nonzero"] = denoiser.params, denoiser.params_nonzero
    bench = Measurement(job, denoiser)
    steps = bench.diffusion.num_steps
    result["steps"] = steps

    for batch in job["batches"]:
        entry: dict[str, Any] = {}
        try:
            entry.update(bench.step_latency(batch))
            estimate = steps * entry["step_ms_p50"] / 1000.0
            if estimate <= float(job["max_gen_seconds"]):
                # One dance: batch 2 = guided (cond + uncond rows), batch 1 = unguided.
                entry["gen_time_s"], entry["gen_time_estimated"] = bench.generate([0], batch == 2)[1], False
            else:
                # A measured loop would exceed the time budget: steps x per-step p50 (a step = network + update).
                entry["gen_time_s"], entry["gen_time_estimated"] = estimate, True
        except Exception as exc:  # noqa: BLE001 (one failed batch setting must not lose the others)
            entry["error"] = f"{type(exc).__name__}: {exc}"
        result["batches"][str(batch)] = entry
    # The deployment's peak: loading plus one dance at a time. The quality batch below holds every prompt.
    result["peak_rss_mib"] = peak_rss_mib()
    if job.get("quality"):
        try:
            result.update(generate_draws(bench, job))
        except Exception as exc:  # noqa: BLE001 (the timings above stay valid)
            traceback.print_exc()
            result["error"] = f"quality samples: {type(exc).__name__}: {exc}"
        result["peak_rss_quality_mib"] = peak_rss_mib()
    result["loadavg_1m"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    return result


def samples_path(first: str | Path, draw: int) -> Path:
    """The samples file of one noise draw: draw 0 is the job's "samples" path, draw d adds `_draw{d}`."""
    first = Path(first)
    return first if draw == 0 else first.with_name(f"{first.stem}_draw{draw}{first.suffix}")


def read_samples(path: Path, inputs_sha256: str, sample_key: str) -> np.ndarray | None:
    """A draw's joints [P,T,22,3] when the file exists and was made from these inputs with this network and
    sampler (the runner's `sample_key`), else None."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        if "inputs_sha256" not in data.files or "sample_key" not in data.files:
            return None
        if str(data["inputs_sha256"]) != inputs_sha256 or str(data["sample_key"]) != sample_key:
            return None
        return data["joints"]


def generate_draws(bench: Measurement, job: dict[str, Any]) -> dict[str, Any]:
    """Generate every noise draw not already on disk: one guided batch of all prompts per draw, saved per draw.

    Saving per draw lets an interrupted quality job (the 1000-step reference takes ~20 CPU minutes per draw of
    16 dances) keep the draws it finished; a resumed run reuses any draw whose inputs digest and sample key match.
    """
    prompts = len(bench.text_emb)
    digests, key = list(job["draw_digests"]), str(job["sample_key"])
    seconds, reused = [], 0
    for draw, digest in enumerate(digests):
        path = samples_path(job["samples"], draw)
        if read_samples(path, digest, key) is not None:
            reused += 1
            continue
        joints, elapsed = bench.generate(list(range(draw * prompts, (draw + 1) * prompts)), guided=True)
        _save_samples(path, joints, elapsed, digest, key)
        seconds.append(elapsed)
    # Seconds for one draw (all prompts in one batch); None when every draw was already on disk.
    return {"samples": job["samples"], "draws": len(digests), "draws_reused": reused,
            "quality_gen_time_s": float(np.mean(seconds)) if seconds else None}


def _save_samples(path: Path, joints: np.ndarray, seconds: float, inputs_sha256: str, sample_key: str) -> None:
    import io

    from kpop_helpers.utils import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez(buffer, joints=joints.astype(np.float32), gen_time_s=np.float64(seconds),
             inputs_sha256=np.array(inputs_sha256), sample_key=np.array(sample_key))
    atomic_write_bytes(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    """Run the job file argv[0] and write the result JSON line to argv[1]; exit 0 even on a variant error."""
    from kpop_helpers.utils import atomic_write_text

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m kpop_helpers.bench.worker JOB.json RESULT.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    try:
        result = run_job(job)
    except Exception as exc:  # noqa: BLE001 (reported as the variant's error row)
        traceback.print_exc()
        result = {"variant": job["variant"]["name"], "threads": job["threads"],
                  "error": f"{type(exc).__name__}: {exc}", "peak_rss_mib": peak_rss_mib()}
    atomic_write_text(Path(argv[1]), json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
