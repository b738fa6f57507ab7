"""Text-to-motion generation with an MDM model: prompts in, de-normalised features and joints out."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kpop_helpers.diffusion import GaussianDiffusion, cfg_model_fn
from kpop_helpers.motion.features import FEATURE_DIM, features_to_joints
from kpop_helpers.motion.skeleton import FPS_HUMANML
from kpop_helpers.sampling import SamplerSpec

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


def generate(model: Any, prompts: list[str] | str, *, frames: int | None = None, seconds: float | None = None,
             steps: int | None = None, guidance: float = 2.5, seed: int | None = 0, sampler: str = "ddpm",
             eta: float = 0.0, text_encoder: Any = None, stats: Any = None, noise: Tensor | None = None,
             device: torch.device | str | None = None, progress: bool = True) -> GenerationResult:
    """Generate one motion per prompt with classifier-free guidance (MDM's sampling, 20 fps).

    frames/seconds: motion length (default 6 s, capped to model.cfg.max_frames). steps=None samples
    the model's full schedule (DDPM, as MDM does); with sampler="ddim", `steps` respaces it to
    "ddim{steps}". The same seed gives the same output; seed=None draws from torch's global RNG.
    `noise` [B,263,1,T] replaces the initial noise draw.
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
    device = torch.device(device) if device is not None else _model_device(model)
    diffusion = sampling_diffusion(int(model.cfg.diffusion_steps), sampler, steps,
                                   getattr(model.cfg, "noise_schedule", "cosine"))

    shape = (len(prompts), NUM_FEATURES, 1, num_frames)
    if noise is not None:
        if tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape} (prompts, features, 1, frames), got {tuple(noise.shape)}")
        noise = noise.to(device=device, dtype=torch.float32)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            text_emb = encoder.encode(prompts).to(device=device, dtype=torch.float32)
            model_fn = cfg_model_fn(model, text_emb, guidance)
            loop = diffusion.p_sample_loop if sampler == "ddpm" else diffusion.ddim_sample_loop
            extra = {"eta": eta} if sampler == "ddim" else {}
            sample = loop(model_fn, shape, noise=noise, seed=seed, device=device, progress=progress, **extra)
    finally:
        model.train(was_training)

    normalised = sample[:, :, 0, :].permute(0, 2, 1).float().cpu().numpy()  # [B, T, 263]
    features = np.asarray(stats.denormalize(normalised), dtype=np.float32)
    joints = np.asarray(features_to_joints(features), dtype=np.float32)
    return GenerationResult(features=features, joints=joints, sample=sample.cpu(), prompts=prompts,
                            fps=FPS_HUMANML, sampler=sampler, steps=diffusion.num_steps,
                            guidance=float(guidance), seed=seed)
