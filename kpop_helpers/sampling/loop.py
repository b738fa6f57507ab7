"""The numpy sampling loop: classifier-free guidance as one batch of 2B, then the core's DDPM/DDIM step.

A denoiser here is any `Denoiser` (numpy in, numpy out): an ONNX Runtime session (edge runtime), a wrapped
PyTorch module or TorchScript file (`kpop_helpers.runners`), so every runtime runs the very same loop.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kpop_helpers.sampling.constraint import NUM_FEATURES, Constraint
from kpop_helpers.sampling.denoiser import Denoiser, takes_guidance
from kpop_helpers.sampling.noise import SamplingNoise
from kpop_helpers.sampling.schedule import DiffusionSchedule
from kpop_helpers.sampling.spec import SamplerSpec
from kpop_helpers.sampling.steps import guidance_rows, guided_combine, sample_step
from kpop_helpers.sampling.windows import WindowPlan


def guided_denoise(denoise: Denoiser, x: np.ndarray, model_t: np.ndarray, text_emb: np.ndarray,
                   guidance: float) -> np.ndarray:
    """x0 with classifier-free guidance: uncond + s * (cond - uncond), cond and uncond rows in one call.

    A denoiser that takes the scale as an input (`takes_guidance`) is called once, conditioned, with it.
    """
    batch = x.shape[0]
    if takes_guidance(denoise):
        return denoise(x, model_t, text_emb, np.zeros(batch, dtype=bool), guidance_rows(guidance, x, batch))
    if np.ndim(guidance) == 0 and float(guidance) == 1.0:  # as diffusion.cfg_model_fn: the conditioned pass alone
        return denoise(x, model_t, text_emb, np.zeros(batch, dtype=bool))
    uncond = np.concatenate([np.zeros(batch, dtype=bool), np.ones(batch, dtype=bool)])
    out = denoise(np.concatenate([x, x]), np.concatenate([model_t, model_t]),
                  np.concatenate([text_emb, text_emb]), uncond)
    return guided_combine(out[:batch], out[batch:], guidance)


def sample_loop(denoise: Denoiser, text_emb: np.ndarray, noise: SamplingNoise, diffusion: DiffusionSchedule, *,
                sampler: str = "ddim", guidance: float = 2.5, eta: float = 0.0, progress: bool = False,
                on_step: Callable[[int, np.ndarray], None] | None = None,
                constraint: Constraint | None = None, windows: WindowPlan | None = None,
                max_windows: int | None = None) -> np.ndarray:
    """Run every reverse step from t = N-1 to 0; returns the normalised sample [B,263,1,T] float32.

    `constraint`: known values put into the guided x0 prediction at every step (MDM's editing rule).
    `windows`: a dance longer than the model, denoised window by window (`WindowPlan`); text_emb then
    holds one row per window [B*W, D], and the model sees at most `max_windows` windows per call.
    `on_step(k, x)` runs after step k; an exception it raises stops the loop (the benchmark's timed steps).
    """
    from tqdm.auto import tqdm

    spec = SamplerSpec(sampler=sampler, eta=eta)  # guidance may be per-row here: guided_combine checks it
    x = np.ascontiguousarray(noise.initial, dtype=np.float32)
    text_emb = np.ascontiguousarray(text_emb, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != NUM_FEATURES or x.shape[2] != 1:
        raise ValueError(f"initial noise must have shape [B, {NUM_FEATURES}, 1, T], got {x.shape}")
    rows = x.shape[0] * (windows.count if windows is not None else 1)
    if text_emb.shape[0] != rows:
        raise ValueError(f"{text_emb.shape[0]} text embeddings for a batch of {x.shape[0]} motions"
                         + (f" of {windows.count} windows" if windows is not None else ""))
    noise.check_steps(diffusion.num_steps, spec.stochastic, f"{sampler} (eta={eta})")
    steps = tqdm(diffusion.reverse_indices(), desc=f"{sampler} sampling", disable=not progress, leave=False)
    try:
        for k, index in enumerate(steps):
            t = np.full(x.shape[0], index, dtype=np.int64)
            model_t = diffusion.model_timesteps(t)
            if windows is None:
                pred_xstart = guided_denoise(denoise, x, model_t, text_emb, guidance)
            else:
                pred_xstart = windows.guided_x0(lambda xw, tw, ew: guided_denoise(denoise, xw, tw, ew, guidance),
                                                x, model_t, text_emb, max_windows)
            if constraint is not None:
                pred_xstart = constraint.apply(pred_xstart)
            step_noise = noise.step(k) if spec.stochastic else None
            x = np.asarray(sample_step(diffusion, sampler, x, t, pred_xstart, step_noise, eta).sample,
                           dtype=np.float32)
            if on_step is not None:
                on_step(k, x)
    finally:
        steps.close()
    return x


def sample_to_features(sample: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Normalised MDM sample [B,263,1,T] -> de-normalised features [B,T,263] (x * std + mean, float32)."""
    normalised = np.transpose(np.asarray(sample)[:, :, 0, :], (0, 2, 1))
    return (normalised * std.astype(np.float32) + mean.astype(np.float32)).astype(np.float32)
