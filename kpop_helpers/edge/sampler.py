"""Torch-free sampling loop: classifier-free guidance as one batch of 2B, DDIM/DDPM steps, noise drawing.

A denoiser here is any callable `denoise(x [B,263,1,T] f32, timesteps [B] i64, text_emb [B,D] f32,
uncond [B] bool) -> x0 [B,263,1,T] f32` on numpy arrays: an ONNX Runtime session (edge runtime) or a
wrapped PyTorch module (error measurements in `kpop_helpers.compress`), so both run the very same loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kpop_helpers.edge.schedule import NumpyDiffusion

NUM_FEATURES = 263
Denoiser = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class SamplingNoise:
    """The initial noise [B,263,1,T] and, for DDPM or DDIM with eta > 0, one noise tensor per step."""

    initial: np.ndarray
    steps: np.ndarray | None = None


def draw_noise(seed: int | None, batch: int, frames: int, num_steps: int, *, stochastic: bool) -> SamplingNoise:
    """All sampling noise from numpy's PCG64 `default_rng(seed)`: initial noise first, then per-step noise.

    The edge runtime draws noise this way; pass `torch.from_numpy(noise.initial)` (and the step noise) to
    the PyTorch sampler to get the same motion from both (torch's own RNG gives other numbers).
    """
    rng = np.random.default_rng(None if seed is None else int(seed))  # None: fresh OS entropy
    shape = (int(batch), NUM_FEATURES, 1, int(frames))
    initial = rng.standard_normal(shape, dtype=np.float32)
    steps = rng.standard_normal((int(num_steps), *shape), dtype=np.float32) if stochastic else None
    return SamplingNoise(initial=initial, steps=steps)


def guided_denoise(denoise: Denoiser, x: np.ndarray, model_t: np.ndarray, text_emb: np.ndarray,
                   guidance: float) -> np.ndarray:
    """x0 with classifier-free guidance: uncond + s * (cond - uncond), cond and uncond rows in one call."""
    batch = x.shape[0]
    if float(guidance) == 1.0:  # as kpop_helpers.diffusion.cfg_model_fn: the conditioned pass alone
        return denoise(x, model_t, text_emb, np.zeros(batch, dtype=bool))
    uncond = np.concatenate([np.zeros(batch, dtype=bool), np.ones(batch, dtype=bool)])
    out = denoise(np.concatenate([x, x]), np.concatenate([model_t, model_t]),
                  np.concatenate([text_emb, text_emb]), uncond)
    return guided_combine(out[:batch], out[batch:], guidance)


def guided_combine(out_cond: np.ndarray, out_uncond: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """out_uncond + scale * (out_cond - out_uncond) in float32, with a scalar or per-row [B] scale."""
    batch = out_cond.shape[0]
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float32).reshape(-1), (batch,)).reshape(batch, 1, 1, 1)
    return out_uncond + scale * (out_cond - out_uncond)


def sample_loop(denoise: Denoiser, text_emb: np.ndarray, noise: SamplingNoise, diffusion: NumpyDiffusion, *,
                sampler: str = "ddim", guidance: float = 2.5, eta: float = 0.0, progress: bool = False,
                on_step: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
    """Run every reverse step from t = N-1 to 0; returns the normalised sample [B,263,1,T] float32."""
    from tqdm.auto import tqdm

    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    x = np.ascontiguousarray(noise.initial, dtype=np.float32)
    text_emb = np.ascontiguousarray(text_emb, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != NUM_FEATURES or x.shape[2] != 1:
        raise ValueError(f"initial noise must have shape [B, {NUM_FEATURES}, 1, T], got {x.shape}")
    if text_emb.shape[0] != x.shape[0]:
        raise ValueError(f"{text_emb.shape[0]} text embeddings for a batch of {x.shape[0]} motions")
    needs_step_noise = sampler == "ddpm" or eta > 0.0
    if needs_step_noise:
        if noise.steps is None or noise.steps.shape != (diffusion.num_steps, *x.shape):
            got = None if noise.steps is None else noise.steps.shape
            raise ValueError(f"{sampler} (eta={eta}) needs step noise of shape {(diffusion.num_steps, *x.shape)}, "
                             f"got {got}")
    for k in tqdm(range(diffusion.num_steps), desc=f"{sampler} sampling", disable=not progress, leave=False):
        t = np.full(x.shape[0], diffusion.num_steps - 1 - k, dtype=np.int64)
        pred_xstart = guided_denoise(denoise, x, diffusion.timestep_map[t], text_emb, guidance)
        step_noise = noise.steps[k] if needs_step_noise else None
        if sampler == "ddpm":
            x = diffusion.ddpm_step(x, pred_xstart, t, step_noise)
        else:
            x = diffusion.ddim_step(x, pred_xstart, t, eta, step_noise)
        x = np.asarray(x, dtype=np.float32)
        if on_step is not None:
            on_step(k, x)
    return x


def sample_to_features(sample: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Normalised MDM sample [B,263,1,T] -> de-normalised features [B,T,263] (x * std + mean, float32)."""
    normalised = np.transpose(sample[:, :, 0, :], (0, 2, 1))
    return (normalised * std.astype(np.float32) + mean.astype(np.float32)).astype(np.float32)
