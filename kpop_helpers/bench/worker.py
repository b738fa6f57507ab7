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


class _EnoughSteps(Exception):
    """Raised from a loop's on_step once the timed steps are in: stops the sampling loop early."""


class Measurement:
    """Drives one loaded variant through the shared inputs: step latency, generation time and quality samples.

    Every number comes from the variant's shipping loop: an ONNX artifact's `EdgeGenerator.sample` (numpy,
    the edge's ORT session), a PyTorch variant's `generate.run_sampler`; the step latency is timed inside
    that same loop (`on_step`), so it and gen_time_s measure one code path.
    """

    def __init__(self, job: dict[str, Any], denoiser):
        from kpop_helpers.bench.protocol import load_inputs
        from kpop_helpers.bench.variants import VariantSpec
        from kpop_helpers.errors import DataError
        from kpop_helpers.sampling import SamplerSpec

        self.job = job
        self.spec = VariantSpec.from_dict(job["variant"])
        self.denoiser = denoiser
        self.edge = getattr(denoiser, "edge", None)
        self.code_path = self.spec.artifact.code_path
        arrays = load_inputs(job["inputs"])
        self.text_emb, self.initial_noise = arrays["text_emb"], arrays["initial_noise"]
        self.mean, self.std = arrays["mean"], arrays["std"]
        steps = None if self.spec.steps == job["diffusion_steps"] else self.spec.steps
        self.sampler = SamplerSpec(self.spec.sampler, steps, float(job["guidance"]))
        # numpy schedule for the edge (no torch in its process), the torch diffusion for PyTorch variants
        self.diffusion = self._schedule(job["diffusion_steps"], job["noise_schedule"], steps)
        edge = self.edge
        same_stats = edge is None or (np.allclose(edge.mean, self.mean) and np.allclose(edge.std, self.std))
        if not same_stats:
            raise DataError("the export's Mean/Std differ from the benchmarked model's", path=self.edge.export_dir,
                            field="stats", expected="an export folder made from the --model being benchmarked")

    def _schedule(self, diffusion_steps: int, noise_schedule: str, steps: int | None):
        if self.edge is not None:
            from kpop_helpers.edge.schedule import sampling_schedule

            return sampling_schedule(diffusion_steps, self.spec.sampler, steps, noise_schedule)
        from kpop_helpers.generate import sampling_diffusion

        return sampling_diffusion(diffusion_steps, self.spec.sampler, steps, noise_schedule)

    def noise(self, samples: list[int]):
        """The protocol's noise of these samples (initial; per-step when the sampler needs it), as a SamplingNoise."""
        from kpop_helpers.bench.protocol import StepNoise
        from kpop_helpers.sampling import SamplingNoise

        steps = None
        if self.sampler.stochastic:
            steps = StepNoise(self.job["step_noise"], samples, self.diffusion.num_steps)
        return SamplingNoise(np.ascontiguousarray(self.initial_noise[samples]), steps)

    def sample(self, samples: list[int], guided: bool, noise, on_step=None) -> np.ndarray:
        """The normalised sample [S,263,1,T] of these samples (one batch) on the variant's own code path."""
        scale = self.sampler.guidance if guided else 1.0
        # Sample d * P + p is prompt p of noise draw d.
        text_emb = self.text_emb[[i % len(self.text_emb) for i in samples]]
        try:
            if self.edge is not None:
                return self.edge.sample(text_emb, noise, self.diffusion, sampler=self.spec.sampler, guidance=scale,
                                        on_step=on_step)
            from kpop_helpers.generate import run_sampler

            return run_sampler(self.denoiser, text_emb, noise, self.diffusion, sampler=self.spec.sampler,
                               guidance=scale, device="cpu", progress=bool(self.job.get("progress")),
                               on_step=on_step)
        finally:
            if noise.steps is not None:
                noise.steps.close()

    def to_joints(self, sample: np.ndarray) -> np.ndarray:
        """Joints [S,T,22,3] of a normalised sample (the edge's own de-normalisation for an ONNX artifact)."""
        if self.edge is not None:
            return self.edge.to_joints(sample)[1]
        from kpop_helpers.motion.features import features_to_joints
        from kpop_helpers.sampling import sample_to_features

        return np.asarray(features_to_joints(sample_to_features(sample, self.mean, self.std)), dtype=np.float32)

    def step_latency(self, batch: int) -> dict[str, float]:
        """p50/p95 ms of one reverse step (network + sampler update) at network batch 1 or 2, after warm-up.

        Timed between consecutive steps of the real loop (restarted from the noise when a loop has fewer
        steps than warm-up + timed), then stopped: a 1000-step reference need not finish for 23 timings.
        """
        warmup, timed = int(self.job["warmup_steps"]), int(self.job["timed_steps"])
        times: list[float] = []
        last: list[Any] = []

        def on_step(k: int, x: Any) -> None:
            now = time.perf_counter()
            times.append(now - last[0])
            last[:] = [now, x]
            if len(times) >= warmup + timed:
                raise _EnoughSteps

        while len(times) < warmup + timed:
            noise = self.noise([0])
            last[:] = [time.perf_counter(), None]
            try:
                self.sample([0], batch == 2, noise, on_step)
            except _EnoughSteps:
                pass
            if not np.all(np.isfinite(np.asarray(last[1]))):
                raise FloatingPointError(f"non-finite sample at step {len(times)} (batch {batch})")
        p50, p95 = _percentiles(times[warmup:])
        return {"step_ms_p50": p50, "step_ms_p95": p95}

    def generate(self, samples: list[int], guided: bool) -> tuple[np.ndarray, float]:
        """(joints [S,T,22,3], seconds) of these prompts in one batch: noise -> loop -> de-normalise -> joints."""
        noise = self.noise(samples)
        start = time.perf_counter()
        joints = self.to_joints(self.sample(samples, guided, noise))
        elapsed = time.perf_counter() - start
        if not np.all(np.isfinite(joints)):
            raise FloatingPointError(f"non-finite joints for samples {samples}")
        return joints, elapsed


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Load the variant, measure every batch setting, and (when asked) generate the quality samples."""
    from kpop_helpers.bench.variants import VariantSpec, load_denoiser

    threads = int(job["threads"])
    spec = VariantSpec.from_dict(job["variant"])
    if spec.artifact.loader != "onnx":  # an ONNX artifact runs torch-free, as on the edge device
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
    result: dict[str, Any] = {"variant": spec.name, "threads": threads, "pid": os.getpid(),
                              "code_path": spec.artifact.code_path, "rss_before_load_mib": peak_rss_mib(),
                              "batches": {}}
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
