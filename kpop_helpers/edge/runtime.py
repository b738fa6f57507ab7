"""EdgeGenerator: prompts -> dance joints with ONNX Runtime and numpy only (no torch import, ever)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.editing import DEFAULT_MAX_WINDOWS, DancePlan, plan_dance
from kpop_helpers.edge.manifest import (GUIDANCE_INPUT, INPUT_NAMES, MEAN_FILE, STD_FILE, manifest_sampling,
                                        read_manifest, variant_entry)
from kpop_helpers.edge.sampler import SamplingNoise, sample_loop, sample_to_features
from kpop_helpers.edge.schedule import sampling_schedule
from kpop_helpers.edge.text import make_session, text_encoder_from_manifest
from kpop_helpers.errors import DataError
from kpop_helpers.motion.features import FEATURE_DIM, features_to_joints
from kpop_helpers.sampling import Constraint, DiffusionSchedule, SamplerSpec, WindowPlan, resolve_noise
from kpop_helpers.utils import peak_rss_mib


def onnx_denoiser(session: Any):
    """Wrap an ORT session of the exported denoiser as a numpy callable (x, timesteps, text_emb, uncond) -> x0.

    A guidance student's graph has a fifth input, the scale [B] (`takes_guidance`; 1.0 when not given).
    """
    takes = GUIDANCE_INPUT in {i.name for i in session.get_inputs()}

    def denoise(x: np.ndarray, timesteps: np.ndarray, text_emb: np.ndarray, uncond: np.ndarray,
                guidance: np.ndarray | None = None) -> np.ndarray:
        feed = {INPUT_NAMES[0]: np.ascontiguousarray(x, dtype=np.float32),
                INPUT_NAMES[1]: np.ascontiguousarray(timesteps, dtype=np.int64),
                INPUT_NAMES[2]: np.ascontiguousarray(text_emb, dtype=np.float32),
                INPUT_NAMES[3]: np.ascontiguousarray(uncond, dtype=bool)}
        if takes:
            scale = np.ones(x.shape[0], np.float32) if guidance is None else guidance
            feed[GUIDANCE_INPUT] = np.ascontiguousarray(scale, dtype=np.float32).reshape(-1)
        elif guidance is not None:
            raise DataError("this denoiser takes no guidance input", field="guidance",
                            expected="guidance=None (the guided pair of calls), or a guidance student's export")
        return session.run(None, feed)[0]

    denoise.guidance_input = takes
    return denoise


@dataclass
class EdgeResult:
    """One edge generation: joints [B,T,22,3] (metres), features [B,T,263], raw normalised sample, timings."""

    joints: np.ndarray
    features: np.ndarray
    sample: np.ndarray
    prompts: list[str]
    sampler: str
    steps: int
    guidance: float
    seed: int | None
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mib: float | None = None
    plan: DancePlan | None = None  # frames, windows (seams), constraints and timeline of this generation


class EdgeGenerator:
    """Generates dances from an export folder with ONNX Runtime, numpy and `tokenizers` only.

    variant: a key of the manifest's ONNX Runtime variants ("int8", "fp32", "fp16", "pruned_ffn", ...).
    threads: ONNX Runtime intra-op threads (None: ORT's default, all cores).
    text_encoder: False skips loading the export's text encoder (callers that pass `text_emb=`, the benchmark).
    text_precision: "auto" (the text tower of the denoiser's precision: the export's int8 tower, about 28 MiB less
    peak memory, for an int8 variant when the export has one; fp32 otherwise, so the fp32 variant makes the very
    dance PyTorch's `generate` makes), "int8" or "fp32".
    Noise is drawn with numpy's `default_rng(seed)` (`kpop_helpers.sampling.draw_noise`), the convention of
    `kpop_helpers.generate.generate` too: the same prompt, seed and sampler give the same dance from both.
    """

    def __init__(self, export_dir: str | Path, *, variant: str = "int8", threads: int | None = None,
                 progress: bool = False, text_encoder: bool = True, text_precision: str = "auto"):
        start = time.perf_counter()
        self.export_dir = Path(export_dir)
        self.manifest = read_manifest(self.export_dir)
        self.variant = variant
        self.entry = variant_entry(self.manifest, variant, self.export_dir)
        self.config: dict[str, Any] = dict(self.manifest["model_config"])
        self.threads, self.progress = threads, progress
        self.mean, self.std = self._load_stats()
        self.text_encoder = None
        if text_encoder and self.manifest["text_encoder"].get("mode", "none") != "none":
            if text_precision == "auto":
                text_precision = "auto" if self.entry.get("precision") == "int8" else "fp32"
            self.text_encoder = text_encoder_from_manifest(self.export_dir, self.manifest, threads, text_precision)
        self.session = make_session(self.export_dir / self.entry["file"], threads, lean_memory=True)
        self.denoise = onnx_denoiser(self.session)
        self.load_time_s = time.perf_counter() - start
        self.last: EdgeResult | None = None

    def _load_stats(self) -> tuple[np.ndarray, np.ndarray]:
        stats = self.manifest["stats"]
        arrays = []
        for key, default in (("mean_file", MEAN_FILE), ("std_file", STD_FILE)):
            path = self.export_dir / stats.get(key, default)
            if not path.is_file():
                raise DataError("normalisation statistics missing", path=path, field=f"stats.{key}",
                                expected="Mean.npy/Std.npy written by the exporter")
            array = np.load(path, allow_pickle=False).astype(np.float32)
            if array.shape != (FEATURE_DIM,):
                raise DataError(f"got shape {array.shape}", path=path, field=f"stats.{key}",
                                expected=f"({FEATURE_DIM},)")
            arrays.append(array)
        return arrays[0], arrays[1]

    @property
    def max_frames(self) -> int:
        """Longest motion the exported model supports (frames at 20 fps)."""
        return int(self.config.get("max_frames", 196))

    def encode(self, prompts: list[str]) -> np.ndarray:
        """Text embeddings [B, D] of the prompts (ONNX text tower or precomputed)."""
        if self.text_encoder is None:
            raise DataError("this export has no text encoder", path=self.export_dir, field="text_encoder",
                            expected="pass text_emb= to generate(), or export with text_encoder 'onnx'")
        return self.text_encoder.encode(list(prompts))

    @property
    def sampling(self) -> dict[str, Any]:
        """The sampler the export was made for (manifest "sampling"): the defaults of `generate`."""
        return manifest_sampling(self.manifest, self.export_dir)

    def generate(self, prompts: list[str] | str | None = None, frames: int | None = None, steps: int | None = None,
                 guidance: float | None = None, seed: int | None = 0, sampler: str | None = None,
                 noise: np.ndarray | None = None, step_noise: np.ndarray | None = None, eta: float | None = None,
                 text_emb: np.ndarray | None = None, **editing: Any) -> np.ndarray:
        """Joints [B, T, 22, 3] (metres, 20 fps), one dance per prompt (or one from a timeline); details in `self.last`.

        sampler/steps/guidance/eta left as None take the export's own settings (`self.sampling`); pass
        steps=<the model's diffusion_steps> for the full schedule. frames defaults to the model's
        max_frames (196). `seconds`, `timeline`, `constraints`, `overlap`, `blend`, `max_windows`:
        as `kpop_helpers.generate.generate` (dances of any length, edits), with the same meaning.
        """
        return self.generate_result(prompts, frames=frames, steps=steps, guidance=guidance, seed=seed,
                                    sampler=sampler, noise=noise, step_noise=step_noise, eta=eta,
                                    text_emb=text_emb, **editing).joints

    def generate_result(self, prompts: list[str] | str | None = None, *, frames: int | None = None,
                        steps: int | None = None, guidance: float | None = None, seed: int | None = 0,
                        sampler: str | None = None, noise: np.ndarray | None = None,
                        step_noise: np.ndarray | None = None, eta: float | None = None,
                        text_emb: np.ndarray | None = None, seconds: float | None = None, timeline: Any = None,
                        constraints: Any = None, overlap: int | None = None, blend: str | None = None,
                        max_windows: int | None = None) -> EdgeResult:
        """Like `generate`, returning features, the raw sample, timings (s) and the peak RSS (MiB) too.

        text_emb: precomputed embeddings, one row per prompt of the plan (`plan.prompts`).
        """
        # Arguments left as None keep the export's own settings; one parser checks the merged result.
        spec = SamplerSpec.parse(self.sampling, sampler=sampler, steps=steps, guidance=guidance, eta=eta)
        sampler, steps, guidance, eta = spec.sampler, spec.steps, spec.guidance, spec.eta
        plan = plan_dance(prompts, max_frames=self.max_frames, timeline=timeline, frames=frames, seconds=seconds,
                          constraints=constraints, default_frames=self.max_frames, overlap=overlap, blend=blend)
        t0 = time.perf_counter()
        diffusion = sampling_schedule(int(self.config["diffusion_steps"]), sampler, steps,
                                      str(self.config.get("noise_schedule", "cosine")))
        emb = self.encode(plan.prompts) if text_emb is None else np.asarray(text_emb, dtype=np.float32)
        if emb.shape != (len(plan.prompts), int(self.config["text_dim"])):
            raise ValueError(f"text embeddings have shape {emb.shape}, expected ({len(plan.prompts)}, "
                             f"{self.config['text_dim']})")
        t1 = time.perf_counter()
        drawn = resolve_noise(seed, plan.batch, plan.frames, diffusion.num_steps, stochastic=spec.stochastic,
                              initial=noise, steps=step_noise, lazy=True)
        sample = self.sample(plan.text_rows(emb), drawn, diffusion, sampler=sampler, guidance=guidance, eta=eta,
                             constraint=plan.core_constraint(self.mean, self.std), windows=plan.windows,
                             max_windows=DEFAULT_MAX_WINDOWS if max_windows is None else max_windows)
        t2 = time.perf_counter()
        features, joints = self.to_joints(sample, plan)
        t3 = time.perf_counter()
        timings = {"text_s": t1 - t0, "sampling_s": t2 - t1, "joints_s": t3 - t2, "total_s": t3 - t0,
                   "step_s": (t2 - t1) / diffusion.num_steps}
        names = plan.prompts if plan.timeline is None else [" | ".join(plan.timeline.prompts)]
        self.last = EdgeResult(joints=joints, features=features, sample=sample, prompts=names, sampler=sampler,
                               steps=diffusion.num_steps, guidance=float(guidance), seed=seed, timings=timings,
                               peak_rss_mib=peak_rss_mib(), plan=plan)
        return self.last

    def sample(self, text_emb: np.ndarray, noise: SamplingNoise, diffusion: DiffusionSchedule, *, sampler: str,
               guidance: float, eta: float = 0.0, on_step: Callable[[int, np.ndarray], None] | None = None,
               constraint: Constraint | None = None, windows: WindowPlan | None = None,
               max_windows: int | None = None) -> np.ndarray:
        """The normalised sample [B,263,1,T]: this variant's ORT session in the core's numpy loop (what ships)."""
        return sample_loop(self.denoise, text_emb, noise, diffusion, sampler=sampler, guidance=guidance, eta=eta,
                           progress=self.progress, on_step=on_step, constraint=constraint, windows=windows,
                           max_windows=max_windows)

    def to_joints(self, sample: np.ndarray, plan: DancePlan | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(features [B,T,263], joints [B,T,22,3]) of a normalised sample, with the export's Mean/Std.

        With a plan, joints are placed on the user's kept clip (`DancePlan.finish`).
        """
        features = sample_to_features(sample, self.mean, self.std)
        if plan is not None:
            return features, plan.finish(features)
        return features, np.asarray(features_to_joints(features), dtype=np.float32)
