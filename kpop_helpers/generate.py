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
from kpop_helpers.motion.features import FEATURE_DIM, features_to_joints
from kpop_helpers.motion.skeleton import FPS_HUMANML
from kpop_helpers.sampling import Denoiser, SamplerSpec, SamplingNoise, resolve_noise, sample_loop

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

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[1])


def sampling_diffusion(diffusion_steps: int, sampler: str, steps: int | None,
                       schedule: str = "cosine") -> GaussianDiffusion:
    """The diffusion a model trained on `diffusion_steps` is sampled with: DDPM [steps], DDIM "ddim{steps}".

    The respacing rule is `SamplerSpec.respacing` (shared with the edge runtime); None = all steps.
    """
    return GaussianDiffusion(diffusion_steps, schedule, SamplerSpec(sampler, steps).respacing(diffusion_steps))


def _frame_count(model: Any, frames: int | None, seconds: float | None) -> int:
    max_frames = int(model.cfg.max_frames)
    if frames is not None and seconds is not None:
        raise ValueError("give either frames or seconds, not both")
    if frames is None and seconds is None:
        frames = min(round(DEFAULT_SECONDS * FPS_HUMANML), max_frames)
    elif frames is None:
        frames = round(float(seconds) * FPS_HUMANML)
    frames = int(frames)
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    if frames > max_frames:
        raise ValueError(f"{frames} frames ({frames / FPS_HUMANML:.2f} s at {FPS_HUMANML:g} fps) exceeds this "
                         f"model's max_frames={max_frames} ({max_frames / FPS_HUMANML:.2f} s); generate a "
                         "shorter motion (long-form generation is not supported yet)")
    return frames


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
                on_step: Callable[[int, Any], None] | None = None) -> np.ndarray:
    """The normalised sample [B,263,1,T] (numpy) of `denoiser` from this noise: the loop behind `generate`.

    denoiser: an MDM-style torch forward `(x, timesteps, text_emb, uncond) -> x0` (run on `device` with
    classifier-free guidance as one batch of 2B), or with `numpy_runner=True` a numpy `Denoiser` run in the
    sampling core's numpy loop (the edge runtime's). `on_step(k, x)` runs after step k; an exception it
    raises stops the loop.
    """
    if numpy_runner:
        emb = text_emb.detach().cpu().numpy() if isinstance(text_emb, Tensor) else np.asarray(text_emb)
        return sample_loop(denoiser, emb, noise, diffusion, sampler=sampler, guidance=guidance, eta=eta,
                           progress=progress, on_step=on_step)
    device = torch.device(device) if device is not None else torch.device("cpu")
    emb = torch.as_tensor(text_emb).to(device=device, dtype=torch.float32)
    initial = torch.from_numpy(np.ascontiguousarray(noise.initial, dtype=np.float32)).to(device)
    spec = SamplerSpec(sampler=sampler, eta=eta)
    noise.check_steps(diffusion.num_steps, spec.stochastic, f"{sampler} (eta={eta})")
    steps = diffusion.sample_loop_progressive(cfg_model_fn(denoiser, emb, guidance), sampler=spec.sampler,
                                              eta=spec.eta, noise=initial,
                                              step_noise=_DeviceSteps(noise, diffusion.num_steps, initial),
                                              device=device, progress=progress)
    x = initial
    try:
        for k, out in enumerate(steps):
            x = out.sample
            if on_step is not None:
                on_step(k, x)
    finally:
        steps.close()
    return x.float().cpu().numpy()


def generate(model: Any, prompts: list[str] | str, *, frames: int | None = None, seconds: float | None = None,
             steps: int | None = None, guidance: float = 2.5, seed: int | None = 0, sampler: str = "ddpm",
             eta: float = 0.0, text_encoder: Any = None, stats: Any = None,
             noise: Tensor | np.ndarray | SamplingNoise | None = None, step_noise: np.ndarray | None = None,
             device: torch.device | str | None = None, progress: bool = True,
             runner: Denoiser | None = None) -> GenerationResult:
    """Generate one motion per prompt with classifier-free guidance (MDM's sampling, 20 fps).

    frames/seconds: motion length (default 6 s, capped to model.cfg.max_frames). steps=None samples
    the model's full schedule (DDPM, as MDM does); with sampler="ddim", `steps` respaces it to
    "ddim{steps}". Noise follows the sampling core's numpy convention (`kpop_helpers.sampling.draw_noise`,
    as `EdgeGenerator`), moved to the model's device: on CPU the same prompt, seed and sampler give the
    same dance as the edge runtime and the benchmark (within float rounding); on a GPU the noise is the
    same but the float math differs slightly. seed=None draws fresh noise. `noise` [B,263,1,T] (tensor or
    array) replaces the initial noise draw, `step_noise` [N,B,263,1,T] the per-step noise (or pass a
    `SamplingNoise` as `noise`). `runner`: a numpy `Denoiser` (e.g. `kpop_helpers.runners.onnx_runner(path)`)
    run in the edge runtime's numpy loop instead of `model`, which then supplies only its config, stats
    and text encoder name.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a non-empty list of strings")
    num_frames = _frame_count(model, frames, seconds)
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
        noise = resolve_noise(seed, len(prompts), num_frames, diffusion.num_steps, stochastic=stochastic,
                              initial=noise.initial, steps=noise.steps if step_noise is None else step_noise)
    else:
        noise = resolve_noise(seed, len(prompts), num_frames, diffusion.num_steps, stochastic=stochastic,
                              initial=noise, steps=step_noise, lazy=True)

    was_training = runner is None and model.training
    if runner is None:
        model.eval()
    try:
        with torch.no_grad():
            text_emb = torch.as_tensor(encoder.encode(prompts)).float()
            sample = run_sampler(model if runner is None else runner, text_emb, noise, diffusion, sampler=sampler,
                                 guidance=guidance, eta=eta, numpy_runner=runner is not None, device=device,
                                 progress=progress)
    finally:
        if runner is None:
            model.train(was_training)

    normalised = sample[:, :, 0, :].transpose(0, 2, 1)  # [B, T, 263]
    features = np.asarray(stats.denormalize(normalised), dtype=np.float32)
    joints = np.asarray(features_to_joints(features), dtype=np.float32)
    return GenerationResult(features=features, joints=joints, sample=torch.from_numpy(sample), prompts=prompts,
                            fps=FPS_HUMANML, sampler=sampler, steps=diffusion.num_steps,
                            guidance=float(guidance), seed=seed)
