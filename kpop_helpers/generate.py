"""Text-to-motion generation with an MDM model: prompts in, de-normalised features and joints out.

The network runs as a PyTorch module (the default) or as any numpy `Denoiser` runner (`runner=`, e.g.
`kpop_helpers.runners.onnx_runner(path)`); the noise is the sampling core's numpy convention either way,
so a prompt, seed and sampler make the same dance here, in the edge runtime and in the benchmark.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kpop_helpers.diffusion import GaussianDiffusion, cfg_model_fn
from kpop_helpers.editing import DEFAULT_MAX_WINDOWS, DancePlan, plan_dance
from kpop_helpers.motion.features import FEATURE_DIM
from kpop_helpers.motion.skeleton import FPS_HUMANML
from kpop_helpers.sampling import (Constraint, Denoiser, SamplerSpec, SamplingNoise, WindowPlan, resolve_noise,
                                   sample_loop)

# MDM's sample script defaults to a 6 s motion.
DEFAULT_SECONDS = 6.0
NUM_FEATURES = FEATURE_DIM


@dataclass
class GenerationResult:
    """Generated motions: features [B,T,263] (de-normalised), joints [B,T,22,3], raw sample [B,263,1,T]."""

    features: np.ndarray
    joints: np.ndarray
    sample: Tensor
    prompts: list[str]
    fps: float
    sampler: str
    steps: int
    guidance: float
    seed: int | None
    plan: DancePlan | None = None  # frames, windows (seams), constraints and timeline of this generation

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[1])


def sampling_diffusion(diffusion_steps: int, sampler: str, steps: int | None,
                       schedule: str = "cosine") -> GaussianDiffusion:
    """The diffusion a model trained on `diffusion_steps` is sampled with: DDPM [steps], DDIM "ddim{steps}".

    The respacing rule is `SamplerSpec.respacing` (shared with the edge runtime); None = all steps.
    """
    return GaussianDiffusion(diffusion_steps, schedule, SamplerSpec(sampler, steps).respacing(diffusion_steps))


def _resolve_text_encoder(model: Any, text_encoder: Any):
    if text_encoder is None:
        text_encoder = getattr(model, "text_encoder_name", None)
        if text_encoder is None:
            raise ValueError("no text encoder: pass text_encoder=... (an encoder or a name such as 'minilm'), "
                             "or use a model that records text_encoder_name")
    if isinstance(text_encoder, str):
        text_encoder = _named_text_encoder(text_encoder)
    return text_encoder


@functools.lru_cache(maxsize=4)
def _named_text_encoder(name: str):
    # Loading an encoder's weights takes seconds; notebooks call generate() again and again.
    from kpop_helpers.text import get_text_encoder

    return get_text_encoder(name)


def _resolve_stats(model: Any, stats: Any):
    stats = stats if stats is not None else getattr(model, "stats", None)
    if stats is None:
        raise ValueError("no motion statistics to de-normalise the sample: pass stats=MotionStats(...) "
                         "or use a model loaded with its Mean/Std (model.stats)")
    return stats


def _model_device(model: Any) -> torch.device:
    parameter = next(iter(model.parameters()), None)
    return parameter.device if parameter is not None else torch.device("cpu")


class _DeviceSteps:
    """The per-step noise of a SamplingNoise as tensors on the sample's device, read step by step."""

    def __init__(self, noise: SamplingNoise, num_steps: int, like: Tensor):
        self.noise, self.num_steps, self.like = noise, int(num_steps), like
        self._zeros: Tensor | None = None

    def __len__(self) -> int:
        return self.num_steps

    def __getitem__(self, k: int) -> Tensor:
        step = self.noise.step(k)
        if step is None:  # DDIM with eta = 0 multiplies its noise by exactly 0: no draw, no global RNG use
            if self._zeros is None:
                self._zeros = torch.zeros_like(self.like)
            return self._zeros
        return torch.from_numpy(step).to(device=self.like.device, dtype=torch.float32)


def run_sampler(denoiser: Any, text_emb: Any, noise: SamplingNoise, diffusion: GaussianDiffusion, *,
                sampler: str, guidance: float, eta: float = 0.0, numpy_runner: bool = False,
                device: torch.device | str | None = None, progress: bool = False,
                on_step: Callable[[int, Any], None] | None = None, constraint: Constraint | None = None,
                windows: WindowPlan | None = None, max_windows: int | None = None) -> np.ndarray:
    """The normalised sample [B,263,1,T] (numpy) of `denoiser` from this noise: the loop behind `generate`.

    denoiser: an MDM-style torch forward `(x, timesteps, text_emb, uncond) -> x0` (run on `device` with
    classifier-free guidance as one batch of 2B), or with `numpy_runner=True` a numpy `Denoiser` run in the
    sampling core's numpy loop (the edge runtime's). `on_step(k, x)` runs after step k; an exception it
    raises stops the loop. `constraint`: known values (MDM's editing rule); `windows`: a dance longer than
    the model, text_emb then one row per window (`kpop_helpers.sampling.WindowPlan`).
    """
    if numpy_runner:
        emb = text_emb.detach().cpu().numpy() if isinstance(text_emb, Tensor) else np.asarray(text_emb)
        return sample_loop(denoiser, emb, noise, diffusion, sampler=sampler, guidance=guidance, eta=eta,
                           progress=progress, on_step=on_step, constraint=constraint, windows=windows,
                           max_windows=max_windows)
    device = torch.device(device) if device is not None else torch.device("cpu")
    emb = torch.as_tensor(text_emb).to(device=device, dtype=torch.float32)
    initial = torch.from_numpy(np.ascontiguousarray(noise.initial, dtype=np.float32)).to(device)
    spec = SamplerSpec(sampler=sampler, eta=eta)
    noise.check_steps(diffusion.num_steps, spec.stochastic, f"{sampler} (eta={eta})")
    model_fn = cfg_model_fn(denoiser, emb, guidance)
    if windows is not None:
        def model_fn(x: Tensor, model_t: Tensor) -> Tensor:
            return windows.guided_x0(lambda xw, tw, ew: cfg_model_fn(denoiser, ew, guidance)(xw, tw), x, model_t,
                                     emb, max_windows)
    steps = diffusion.sample_loop_progressive(model_fn, sampler=spec.sampler, eta=spec.eta, noise=initial,
                                              step_noise=_DeviceSteps(noise, diffusion.num_steps, initial),
                                              device=device, progress=progress, constraint=constraint)
    x = initial
    try:
        for k, out in enumerate(steps):
            x = out.sample
            if on_step is not None:
                on_step(k, x)
    finally:
        steps.close()
    return x.float().cpu().numpy()


def generate(model: Any, prompts: list[str] | str | None = None, *, frames: int | None = None,
             seconds: float | None = None, steps: int | None = None, guidance: float = 2.5, seed: int | None = 0,
             sampler: str = "ddpm", eta: float = 0.0, text_encoder: Any = None, stats: Any = None,
             noise: Tensor | np.ndarray | SamplingNoise | None = None, step_noise: np.ndarray | None = None,
             device: torch.device | str | None = None, progress: bool = True, runner: Denoiser | None = None,
             constraints: Any = None, timeline: Any = None, overlap: int | None = None, blend: str | None = None,
             max_windows: int | None = None) -> GenerationResult:
    """Generate one dance per prompt (or one from a timeline) with classifier-free guidance (MDM's sampling, 20 fps).

    frames/seconds: motion length (default 6 s, capped to model.cfg.max_frames; longer dances are made of
    overlapping windows, `kpop_helpers.sampling.WindowPlan`, sharing `overlap` frames, blended by `blend`).
    timeline: `[(start_s, end_s, prompt), ...]` (or a JSON file) instead of prompts. constraints: what to
    keep (`kpop_helpers.editing.keyframes / body_parts / continuation`), applied at every step by MDM's
    editing rule (its last step returns the known values exactly). steps=None samples
    the model's full schedule (DDPM, as MDM does); with sampler="ddim", `steps` respaces it to
    "ddim{steps}". Noise follows the sampling core's numpy convention (`kpop_helpers.sampling.draw_noise`,
    as `EdgeGenerator`), moved to the model's device: on CPU the same prompt, seed and sampler give the
    same dance as the edge runtime and the benchmark (within float rounding); on a GPU the noise is the
    same but the float math differs slightly. seed=None draws fresh noise. `noise` [B,263,1,T] (tensor or
    array) replaces the initial noise draw, `step_noise` [N,B,263,1,T] the per-step noise (or pass a
    `SamplingNoise` as `noise`). `runner`: a numpy `Denoiser` (e.g. `kpop_helpers.runners.onnx_runner(path)`)
    run in the edge runtime's numpy loop instead of `model`, which then supplies only its config, stats
    and text encoder name. max_windows: windows per model call in a long dance (memory; same result).
    """
    max_frames = int(model.cfg.max_frames)
    plan = plan_dance(prompts, max_frames=max_frames, timeline=timeline, frames=frames, seconds=seconds,
                      constraints=constraints, default_frames=min(round(DEFAULT_SECONDS * FPS_HUMANML), max_frames),
                      overlap=overlap, blend=blend)
    encoder = _resolve_text_encoder(model, text_encoder)
    stats = _resolve_stats(model, stats)
    text_dim = getattr(model.cfg, "text_dim", None)
    if text_dim is not None and int(encoder.dim) != int(text_dim):
        raise ValueError(f"text encoder '{encoder.name}' gives {encoder.dim}-d embeddings but the model expects "
                         f"{text_dim}-d ({getattr(model, 'text_encoder_name', '?')}); pass the matching encoder")
    if runner is None:
        device = torch.device(device) if device is not None else _model_device(model)
    diffusion = sampling_diffusion(int(model.cfg.diffusion_steps), sampler, steps,
                                   getattr(model.cfg, "noise_schedule", "cosine"))
    stochastic = SamplerSpec(sampler=sampler, eta=eta).stochastic
    if isinstance(noise, SamplingNoise):
        noise = resolve_noise(seed, plan.batch, plan.frames, diffusion.num_steps, stochastic=stochastic,
                              initial=noise.initial, steps=noise.steps if step_noise is None else step_noise)
    else:
        noise = resolve_noise(seed, plan.batch, plan.frames, diffusion.num_steps, stochastic=stochastic,
                              initial=noise, steps=step_noise, lazy=True)
    mean, std = np.asarray(stats.mean, dtype=np.float32), np.asarray(stats.std, dtype=np.float32)

    was_training = runner is None and model.training
    if runner is None:
        model.eval()
    try:
        with torch.no_grad():
            text_emb = plan.text_rows(torch.as_tensor(encoder.encode(plan.prompts)).float())
            sample = run_sampler(model if runner is None else runner, text_emb, noise, diffusion, sampler=sampler,
                                 guidance=guidance, eta=eta, numpy_runner=runner is not None, device=device,
                                 progress=progress, constraint=plan.core_constraint(mean, std),
                                 windows=plan.windows,
                                 max_windows=DEFAULT_MAX_WINDOWS if max_windows is None else max_windows)
    finally:
        if runner is None:
            model.train(was_training)

    normalised = sample[:, :, 0, :].transpose(0, 2, 1)  # [B, T, 263]
    features = np.asarray(stats.denormalize(normalised), dtype=np.float32)
    prompts_out = plan.prompts if plan.timeline is None else [" | ".join(plan.timeline.prompts)]
    return GenerationResult(features=features, joints=plan.finish(features), sample=torch.from_numpy(sample),
                            prompts=prompts_out, fps=FPS_HUMANML, sampler=sampler, steps=diffusion.num_steps,
                            guidance=float(guidance), seed=seed, plan=plan)



def main(argv: list[str] | None = None) -> int:
    """CLI `python -m kpop_helpers.generate --model WEIGHTS | --export-dir DIR ...`; 0, or 2 with the error."""
    import argparse
    import sys

    from kpop_helpers.editing.cli import add_dance_arguments, request_from_args, summary, write_outputs
    from kpop_helpers.errors import DataError

    p = argparse.ArgumentParser(prog="python -m kpop_helpers.generate",
                                description="Dances from a PyTorch model file (any of ours or an official MDM .pt); "
                                            "the same arguments as python -m kpop_helpers.edge.")
    p.add_argument("--model", required=True, help=".safetensors export, training checkpoint .pt or official .pt")
    p.add_argument("--stats", default=None, help="folder with Mean.npy/Std.npy when the weights carry none")
    p.add_argument("--text-encoder", default=None, help="minilm or clip (default: what the weights record)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = add_dance_arguments(p).parse_args(argv)
    try:
        from kpop_helpers.model import load_model_file

        request = request_from_args(args)
        if args.threads:
            torch.set_num_threads(args.threads)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = load_model_file(args.model, stats_dir=args.stats).float().to(device)
        sampling = {k: v for k, v in (("sampler", args.sampler), ("steps", args.steps), ("guidance", args.guidance))
                    if v is not None}
        result = generate(model, text_encoder=args.text_encoder, progress=not args.quiet, **sampling, **request)
        written = write_outputs(result.joints, args.out, prompts=result.prompts, seams=result.plan.seams(),
                                progress=not args.quiet)
    except (DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(result.joints, written, result.plan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


class TorchDanceGenerator:
    """A PyTorch model behind `EdgeGenerator`'s `generate_result` (what `kpop_helpers.choreograph` calls)."""

    def __init__(self, model: Any, *, text_encoder: Any = None, device: torch.device | str | None = None,
                 progress: bool = True):
        self.model, self.text_encoder, self.device, self.progress = model, text_encoder, device, progress

    def generate_result(self, prompts: list[str] | str | None = None, **kwargs: Any) -> GenerationResult:
        """`generate(self.model, prompts, **kwargs)` with this generator's encoder, device and progress."""
        kwargs.setdefault("text_encoder", self.text_encoder)
        kwargs.setdefault("device", self.device)
        kwargs.setdefault("progress", self.progress)
        return generate(self.model, prompts, **kwargs)
