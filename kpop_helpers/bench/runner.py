"""The benchmark run: shared inputs, one worker process per variant and thread count, rows, fidelity and quality.

results.json is rewritten atomically after every worker, so an interrupted run keeps what it measured;
`resume=True` skips the rows already present (the protocol must match, and the noise is re-drawn identically).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.bench.protocol import BenchConfig, environment, load_average, prepare_inputs
from kpop_helpers.bench.quality import QUALITY_FIELDS, SPREAD_FIELDS, load_draws, pooled_fidelity, pooled_quality
from kpop_helpers.bench.report import write_report
from kpop_helpers.bench.schema import read_results, row_key, upgrade_memory_fields, write_results
from kpop_helpers.bench.variants import VariantSpec, load_torch_model, plan_variants, smoke_model
from kpop_helpers.errors import DataError
from kpop_helpers.utils import atomic_write_text, json_ready

logger = logging.getLogger(__name__)

# Keys whose change makes earlier rows incomparable: resuming with a different value starts afresh.
PROTOCOL_KEYS = ("prompts", "frames", "guidance", "seed", "metrics_mode", "warmup_steps", "timed_steps",
                 "model_sha256", "reference_sha256", "inputs_sha256")


def sha256_of(path: Path) -> str:
    """sha256 of a file."""
    from kpop_helpers.utils import sha256_file

    return sha256_file(path)


def load_reference_set(path: str | Path | None, work_dir: Path, frames: int) -> tuple[list[np.ndarray], str]:
    """Real (or sample) dances to compare against, at 20 fps; builds the sample data's val split when needed."""
    from kpop_helpers.data.io import load_clips

    if path is None:
        default = Path("data/sample/val.npz")
        if not default.is_file():
            from kpop_helpers.data.sample import build_sample_dataset

            default = work_dir / "sample_data" / "val.npz"
            if not default.is_file():
                build_sample_dataset(default.parent, progress=False)
        path = default
    clips, _ = load_clips(path, fps=20.0, progress=False)
    if len(clips) < 2:
        raise DataError(f"holds {len(clips)} clip(s)", path=path, expected="at least 2 clips for FID and diversity")
    # Same length as the generated dances, so that length does not enter the comparison.
    return [np.asarray(c.positions[:frames], dtype=np.float32) for c in clips], str(path)


class BenchmarkRun:
    """One benchmark invocation: plan, inputs, workers, rows and the results file."""

    def __init__(self, config: BenchConfig, model_path: Path, export_dirs: list[Path]):
        self.config = config
        self.out = Path(config.out)
        self.work = Path(config.work_dir) if config.work_dir else self.out / ".work"
        for sub in ("jobs", "samples", "quality", "logs"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        # The work folder holds noise (up to GBs) and samples: never meant for version control.
        if not (self.work / ".gitignore").exists():
            atomic_write_text(self.work / ".gitignore", "*\n")
        self.results_path = self.out / "results.json"
        self.model_path, self.export_dirs = model_path, export_dirs
        self.model = load_torch_model(model_path)
        self.variants = plan_variants(config, self.model.cfg, model_path, export_dirs)
        self._file_digests: dict[str, str] = {}

    # ------------------------------------------------------------------ set-up
    def prepare(self) -> None:
        """Encode the prompts, draw the noise, load the reference set and fix the protocol."""
        from kpop_helpers.text import get_text_encoder

        cfg = self.config
        stats = self.model.stats
        if stats is None:
            raise DataError("carries no Mean/Std statistics", path=self.model_path,
                            expected="a model exported with its normalisation stats (the trainer's export)")
        encoder = get_text_encoder(self.model.text_encoder_name)
        text_emb = encoder.encode(list(cfg.prompts)).float().numpy()
        max_steps = max(v.steps for v in self.variants)
        self.inputs = prepare_inputs(cfg, self.work, text_emb, stats.mean, stats.std, max_steps)
        self.reference, reference_path = load_reference_set(cfg.reference_data, self.work, cfg.frames)
        env = environment()
        self.protocol = {
            "version": 1, **cfg.to_dict(), **env,
            "num_samples": cfg.num_samples, "draws": cfg.draws, "draw_digests": self.inputs.draw_digests,
            "reference_data": reference_path, "num_reference": len(self.reference),
            "reference_sha256": hashlib.sha256(b"".join(r.tobytes() for r in self.reference)).hexdigest(),
            "model": str(self.model_path), "model_sha256": self._file_digest(self.model_path),
            "model_config": self.model.cfg.to_dict(), "text_encoder": encoder.name,
            "export_dirs": [str(d) for d in self.export_dirs], "inputs_sha256": self.inputs.digest,
            "noise": {"generator": "numpy.random.default_rng([seed, sample]) (PCG64), standard normal float32; "
                                   "sample d * prompts + p is prompt p of draw d",
                      "initial": "[prompts * draws, 263, 1, frames]",
                      "per_step": "[prompts * draws, max_steps, 263, 1, frames]",
                      "max_steps": max_steps, "shared_by": "every variant (step k of a loop uses per_step[:, k])"},
            "procedure": {
                "step_latency": f"{cfg.warmup_steps} warm-up + {cfg.timed_steps} timed reverse steps (network + "
                                "sampler update); batch 1 = one unguided forward, batch 2 = the guided "
                                "(conditioned + unconditioned) forward of one prompt",
                "gen_time_s": "one dance of `frames` frames end to end (noise -> loop -> de-normalise -> joints), "
                              "text encoding excluded; batch 2 = guided, batch 1 = unguided; "
                              "'gen_time_estimated' rows are steps x step_ms_p50 "
                              f"(a measured loop would exceed {cfg.max_gen_seconds:g} s)",
                "peak_rss_mib": "after loading, the latency runs and the single-dance generations (the quality "
                                "batch afterwards is reported as peak_rss_quality_mib), in MiB (2^20 bytes)",
                "order": "all timing jobs first (back to back, comparable conditions), then one quality job per "
                         "variant",
                "quality": f"per noise draw ({cfg.draws}), all prompts in one guided batch at the largest "
                           "thread count; FID/Div/PFC via "
                           f"kpop_helpers.metrics.dance_quality(mode={cfg.metrics_mode!r}) per draw against the "
                           "reference set cut to `frames` frames; a row holds the mean over draws and <field>_sd, "
                           "the standard deviation between draws",
                "fidelity": "joints vs the fp32 eager variant with the same sampler and steps (same prompts and "
                            "noise); kpop_helpers.metrics.fidelity",
                "isolation": "each variant and thread count in its own process "
                             "(python -m kpop_helpers.bench.worker); peak RSS = that process's VmHWM on Linux "
                             "(ru_maxrss there includes the parent's peak, inherited through fork + exec), "
                             "ru_maxrss elsewhere; it includes the Python/torch runtime (rss_before_load_mib)",
                "sampler_code": "the sampling core (kpop_helpers.sampling) for every runtime, on the code path that "
                                "ships each: ONNX Runtime artifacts through the edge runtime (EdgeGenerator: its ORT "
                                "session, numpy), PyTorch variants through kpop_helpers.generate (row field "
                                "code_path); step latency is timed inside that same loop",
            },
            "variants": [v.to_dict() for v in self.variants],
        }

    # ------------------------------------------------------------------ jobs
    def timing_jobs(self) -> list[tuple[VariantSpec, int]]:
        """(variant, threads) in run order: the reference first, fp32 eager next, largest threads first."""
        threads = sorted(set(self.config.threads), reverse=True)
        return [(variant, t) for variant in self.variants for t in threads]

    def _run_worker(self, variant: VariantSpec, threads: int, quality: bool) -> dict[str, Any]:
        """Timing job (quality=False: every batch setting) or quality job (quality=True: the sample batch only)."""
        tag = f"{variant.name}_t{threads}" + ("_quality" if quality else "")
        job = {"variant": variant.to_dict(), "threads": threads, "batches": [] if quality else list(self.config.batches),
               "inputs": str(self.inputs.inputs_path), "step_noise": str(self.inputs.step_noise_path),
               "max_steps": self.inputs.meta["max_steps"], "diffusion_steps": int(self.model.cfg.diffusion_steps),
               "noise_schedule": str(self.model.cfg.noise_schedule), "guidance": float(self.config.guidance),
               "warmup_steps": self.config.warmup_steps, "timed_steps": self.config.timed_steps,
               "max_gen_seconds": self.config.max_gen_seconds, "quality": quality,
               "draw_digests": self.inputs.draw_digests, "sample_key": self.sample_key(variant),
               "samples": str(self.work / "samples" / f"{variant.name}.npz"), "progress": False}
        job_path = self.work / "jobs" / f"{tag}.json"
        result_path = self.work / "jobs" / f"{tag}.result.json"
        atomic_write_text(job_path, json.dumps(job, indent=1))
        if result_path.exists():
            result_path.unlink()
        env = dict(os.environ)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
            env[name] = str(threads)
        env["TOKENIZERS_PARALLELISM"] = "false"
        command = [sys.executable, "-m", "kpop_helpers.bench.worker", str(job_path), str(result_path)]
        with open(self.work / "logs" / f"{tag}.log", "wb") as log:
            # Own session: a timeout kills this worker's process group and nothing else.
            proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                proc.wait(timeout=self.config.worker_timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return {"error": f"timed out after {self.config.worker_timeout_s:g} s"}
            except BaseException:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
        if not result_path.is_file():
            return {"error": f"worker exited with code {proc.returncode} without a result "
                             f"(see {self.work / 'logs' / f'{tag}.log'})"}
        return json.loads(result_path.read_text())

    def sample_key(self, variant: VariantSpec) -> str:
        """Digest of what a variant's dances depend on besides the inputs: its network files, sampler and guidance.

        A saved draw is reused only under the same key and draw digest, so a re-exported artifact or another
        guidance scale is generated afresh even in a shared or resumed work folder.
        """
        artifact = variant.artifact
        files = [self._file_digest(Path(f)) for f in (artifact.files or [artifact.path]) if Path(f).is_file()]
        parts = {"model_sha256": self.protocol["model_sha256"], "files": files, "loader": artifact.loader,
                 "sampler": variant.sampler, "steps": variant.steps, "guidance": float(self.config.guidance),
                 "diffusion_steps": int(self.model.cfg.diffusion_steps),
                 "noise_schedule": str(self.model.cfg.noise_schedule)}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _file_digest(self, path: Path) -> str:
        """sha256 of a network file, hashed once per run: every sampler of an artifact shares its file."""
        key = str(path.resolve())
        if key not in self._file_digests:
            self._file_digests[key] = sha256_of(path)
        return self._file_digests[key]

    # ------------------------------------------------------------------ metrics
    def _quality(self, variant: VariantSpec) -> dict[str, Any]:
        """Fidelity and dance quality of a variant's sample draws (cached in the work folder)."""
        cache = self.work / "quality" / f"{variant.name}.json"
        reference = next((v for v in self.variants if v.name == variant.fidelity_ref), None)
        keys = {"inputs_sha256": self.inputs.digest, "sample_key": self.sample_key(variant),
                "fidelity_key": self.sample_key(reference) if reference is not None else None,
                "metrics_mode": self.config.metrics_mode, "reference_sha256": self.protocol["reference_sha256"]}
        if cache.is_file():
            cached = upgrade_memory_fields(json.loads(cache.read_text()))
            if all(cached.get(k) == v for k, v in keys.items()):
                return cached
        digests = self.inputs.draw_digests
        draws = load_draws(self.work / "samples" / f"{variant.name}.npz", digests, keys["sample_key"])
        if len(draws) < len(digests):
            return {}
        out: dict[str, Any] = dict(keys)
        if reference is not None:
            reference_draws = load_draws(self.work / "samples" / f"{reference.name}.npz", digests,
                                         self.sample_key(reference))
            fid = pooled_fidelity(reference_draws, draws)
            if fid is not None:
                out.update(fid, fidelity_ref=variant.fidelity_ref)
        out.update(pooled_quality(draws, self.reference, self.config.metrics_mode))
        atomic_write_text(cache, json.dumps(out, indent=1))
        return out

    def make_rows(self, variant: VariantSpec, threads: int, result: dict[str, Any]) -> list[dict[str, Any]]:
        """One row per batch setting, in the design's field order, quality copied from the variant's samples."""
        artifact = variant.artifact
        quality = self._quality(variant)
        rows = []
        for batch in self.config.batches:
            entry = result.get("batches", {}).get(str(batch), {})
            row: dict[str, Any] = {
                "variant": variant.name, "runtime": artifact.runtime, "precision": artifact.precision,
                "pruning": artifact.pruning, "sampler": variant.sampler, "steps": variant.steps,
                "threads": threads, "batch": batch, "file_size_mb": round(artifact.file_size_mb, 4),
                "params": result.get("params"), "step_ms_p50": entry.get("step_ms_p50"),
                "step_ms_p95": entry.get("step_ms_p95"), "gen_time_s": entry.get("gen_time_s"),
                "load_time_s": result.get("load_time_s"), "peak_rss_mib": result.get("peak_rss_mib"),
            }
            row.update(self._quality_fields(quality))
            row.update({
                "key": None, "artifact": Path(artifact.path).name, "code_path": artifact.code_path,
                "is_reference": variant.is_reference,
                "gen_time_estimated": entry.get("gen_time_estimated"), "params_nonzero": result.get("params_nonzero"),
                "rss_before_load_mib": result.get("rss_before_load_mib"), "loadavg_1m": result.get("loadavg_1m"),
                "error": entry.get("error") or result.get("error"),
            })
            row["key"] = row_key(row)
            rows.append(json_ready(row))
        return rows

    def _record_quality(self, variant: VariantSpec, result: dict[str, Any]) -> dict[str, Any]:
        """Score a quality job's samples and keep its memory, time and load with the scores (cached)."""
        scores = self._quality(variant)
        scores.update(peak_rss_quality_mib=result.get("peak_rss_quality_mib"),
                      quality_gen_time_s=result.get("quality_gen_time_s"), quality_loadavg_1m=result.get("loadavg_1m"),
                      quality_draws_reused=result.get("draws_reused"),
                      quality_error=result.get("error"))
        if scores.get("n_samples"):
            atomic_write_text(self.work / "quality" / f"{variant.name}.json", json.dumps(scores, indent=1))
        return scores

    @staticmethod
    def _quality_fields(scores: dict[str, Any]) -> dict[str, Any]:
        """Fidelity and quality columns of a row, from a variant's scores."""
        numbers = ("fidelity_mm", "fidelity_rel_rms", *QUALITY_FIELDS, *(f"{k}_sd" for k in SPREAD_FIELDS))
        fields = {k: json_ready(scores.get(k)) for k in numbers}
        for key in ("fidelity_ref", "fidelity_draws", "n_samples", "n_draws", "per_draw", "peak_rss_quality_mib",
                    "quality_gen_time_s", "quality_loadavg_1m", "quality_draws_reused", "quality_error"):
            fields[key] = scores.get(key)
        return fields

    def _save(self, rows: list[dict[str, Any]]) -> None:
        self.protocol["loadavg_end"] = load_average()
        write_results(self.results_path, self.protocol, rows)

    def _ordered(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows in plan order (reference, fp32 eager, artifacts), then threads and batch."""
        order = {v.name: i for i, v in enumerate(self.variants)}
        return sorted(rows, key=lambda r: (order.get(r["variant"], len(order)), r["threads"], r["batch"]))

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        """Measure every pending job; returns the final {"protocol", "rows"}."""
        from tqdm.auto import tqdm

        self.prepare()
        rows: list[dict[str, Any]] = []
        previous = read_results(self.results_path) if self.config.resume else None
        if previous is not None:
            old = previous.get("protocol", {})
            changed = [k for k in PROTOCOL_KEYS if old.get(k) != self.protocol.get(k)]
            if changed:
                raise DataError(f"cannot resume: the protocol changed ({', '.join(changed)})", path=self.results_path,
                                expected="the same settings as the interrupted run, or a run without --resume")
            rows = [r for r in previous["rows"] if not r.get("error")]
        done = {r["key"] for r in rows}
        timing = [(v, t) for v, t in self.timing_jobs()
                  if any(f"{v.name}|t{t}|b{b}" not in done for b in self.config.batches)]
        # Timing first, back to back, so that every variant is timed under the same conditions; the long
        # quality batches (the 1000-step reference takes minutes) come after and do not split the timings.
        quality = [v for v in self.variants if not self._quality(v)]
        self.protocol["resumed_rows"] = len(rows)
        bar = tqdm(total=len(timing) + len(quality), desc="benchmark", unit="job", disable=not self.config.progress)
        for variant, threads in timing:
            bar.set_postfix_str(f"{variant.name} {threads}t")
            result = self._run_worker(variant, threads, quality=False)
            new = self.make_rows(variant, threads, result)
            keys = {r["key"] for r in new}
            rows = self._ordered([r for r in rows if r["key"] not in keys] + new)
            self._save(rows)
            bar.update()
        threads = max(self.config.threads)
        for variant in quality:
            bar.set_postfix_str(f"{variant.name} samples")
            (self.work / "quality" / f"{variant.name}.json").unlink(missing_ok=True)
            scores = self._record_quality(variant, self._run_worker(variant, threads, quality=True))
            for row in rows:
                if row["variant"] == variant.name:
                    row.update(self._quality_fields(scores))
            self._save(rows)
            bar.update()
        bar.close()
        self.protocol["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.protocol["loadavg_end"] = load_average()
        write_results(self.results_path, self.protocol, rows)
        # Up to GBs; a resumed run re-draws exactly the same numbers from the seed.
        self.inputs.step_noise_path.unlink(missing_ok=True)
        return {"protocol": self.protocol, "rows": rows}


def run_benchmark(config: BenchConfig) -> dict[str, Any]:
    """Measure every variant (see BenchConfig) and write results.json/csv/md, plots and compare.md into config.out."""
    out = Path(config.out)
    work = Path(config.work_dir) if config.work_dir else out / ".work"
    if config.model is None:
        if not config.smoke:
            raise DataError("no model given", field="model", expected="--model PATH (or --smoke for a tiny model)")
        model_path, export_dirs = smoke_model(work, config.seed)
        if config.export_dirs:
            export_dirs = [Path(d) for d in config.export_dirs]
    else:
        model_path = Path(config.model)
        export_dirs = [Path(d) for d in config.export_dirs]
    if not config.resume:
        # Fresh run: samples and quality caches of an earlier run must not leak into this one.
        for sub in ("samples", "quality"):
            for stale in (work / sub).glob("*"):
                stale.unlink()
    run = BenchmarkRun(config, model_path, export_dirs)
    results = run.run()
    write_report(results, out, compare=config.compare, plots=True)
    return results
