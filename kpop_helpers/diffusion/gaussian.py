"""MDM's Gaussian diffusion: x0-predicting model, FIXED_SMALL variance, optional timestep respacing.

Numerics follow the reference (GuyTevet/motion-diffusion-model): schedules are float64 numpy, every
coefficient is picked at `t` from the float64 array and cast to float32, and all tensor arithmetic is
float32 in the reference's order (this matters for DDIM near t = 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from kpop_helpers.diffusion.schedule import RespacingSpec, get_named_beta_schedule, respace_betas, space_timesteps

# model_fn(x_t [B,263,1,T], model_t [B] long) -> predicted x0, same shape as x_t.
ModelFn = Callable[[Tensor, Tensor], Tensor]

_SCHEDULE_ARRAYS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2",
)


@dataclass
class DiffusionStep:
    """One reverse step: the new sample, the model's x0 and the per-row quantities used to form it."""

    sample: Tensor
    pred_xstart: Tensor
    model_t: Tensor
    t: Tensor
    mean: Tensor | None = None
    variance: Tensor | None = None
    log_variance: Tensor | None = None
    eps: Tensor | None = None


def lengths_to_mask(lengths: Tensor, num_frames: int) -> Tensor:
    """Bool frame mask [B,1,1,F]: True where frame f < lengths[b] (MDM's lengths_to_mask, MDM layout)."""
    frames = torch.arange(num_frames, device=lengths.device)
    return (frames[None, :] < lengths[:, None]).reshape(lengths.shape[0], 1, 1, num_frames)


def masked_l2(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Per-row mean squared error over valid frames: sum / (features * nfeats * valid frames + 1e-8)."""
    squared = (a - b) ** 2
    summed = (squared * mask.float()).sum(dim=tuple(range(1, a.ndim)))
    entries_per_frame = a.shape[1] * a.shape[2]
    valid = mask.sum(dim=tuple(range(1, mask.ndim))) * entries_per_frame
    # The 1e-8 only matters for a zero-length row (0 / 1e-8 = 0), as in the reference.
    return summed / (valid + 1e-8)


class GaussianDiffusion:
    """Cosine/linear-schedule diffusion over x0 predictions, optionally respaced (e.g. "ddim50", [10])."""

    def __init__(self, num_steps: int = 1000, schedule: str = "cosine", respacing: RespacingSpec = None):
        base_betas = get_named_beta_schedule(schedule, num_steps)
        base_alphas_cumprod = np.cumprod(1.0 - base_betas)
        self.base_num_steps = int(num_steps)
        self.schedule = schedule
        self.respacing = respacing
        self.base_betas = base_betas
        self.base_alphas_cumprod = base_alphas_cumprod
        self.use_timesteps = np.array(space_timesteps(num_steps, respacing), dtype=np.int64)
        # Like MDM's SpacedDiffusion, betas are always recomputed from the base alphas_cumprod,
        # even when every step is kept (they then equal the named betas to ~1e-16).
        betas, self.timestep_map = respace_betas(base_alphas_cumprod, self.use_timesteps)
        if len(betas) < 2:
            raise ValueError(f"a diffusion schedule needs at least 2 steps; respacing {respacing!r} of "
                             f"{num_steps} steps keeps {len(betas)}")
        self._set_arrays(betas)
        self._torch_cache: dict[tuple[str, torch.device], Tensor] = {}

    def _set_arrays(self, betas: np.ndarray) -> None:
        alphas = 1.0 - betas
        self.betas = betas
        self.num_steps = len(betas)
        self.alphas_cumprod = np.cumprod(alphas, axis=0)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.alphas_cumprod_next = np.append(self.alphas_cumprod[1:], 0.0)
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # Entry 0 of the posterior variance is 0; its log is replaced by entry 1 (t = 0 adds no noise).
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = ((1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas)
                                     / (1.0 - self.alphas_cumprod))

    def schedule_arrays(self) -> dict[str, np.ndarray]:
        """The 13 float64 schedule arrays by name, plus the int64 timestep_map."""
        arrays = {name: getattr(self, name) for name in _SCHEDULE_ARRAYS}
        arrays["timestep_map"] = self.timestep_map
        return arrays

    def __repr__(self) -> str:
        return (f"GaussianDiffusion(num_steps={self.base_num_steps}, schedule={self.schedule!r}, "
                f"respacing={self.respacing!r}, sampled_steps={self.num_steps})")

    # ---- coefficient access -------------------------------------------------------------------

    def _table(self, name: str, device: torch.device) -> Tensor:
        key = (name, device)
        if key not in self._torch_cache:
            values = getattr(self, name)
            dtype = torch.int64 if name == "timestep_map" else torch.float32
            self._torch_cache[key] = torch.as_tensor(values).to(device=device, dtype=dtype)
        return self._torch_cache[key]

    def coef(self, name: str, t: Tensor, ndim: int) -> Tensor:
        """Schedule array `name` picked at t and cast to float32, shaped [B, 1, ...] for ndim dims."""
        picked = self._table(name, t.device)[t]
        return picked.reshape(picked.shape[0], *([1] * (ndim - 1)))

    def timesteps(self, t: Tensor | int, batch: int, device: torch.device | str | None = None) -> Tensor:
        """t as an int64 tensor [batch] checked to index this (possibly respaced) schedule."""
        t = torch.as_tensor(t, dtype=torch.int64, device=device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must be a scalar or have shape [{batch}], got {tuple(t.shape)}")
        low, high = int(t.min()), int(t.max())
        if low < 0 or high >= self.num_steps:
            raise ValueError(f"t must lie in 0..{self.num_steps - 1} (the sampled schedule), got {low}..{high}")
        return t

    def model_timesteps(self, t: Tensor) -> Tensor:
        """The original timesteps the network sees for schedule indices t (timestep_map[t], unscaled)."""
        return self._table("timestep_map", t.device)[t]

    # ---- forward process and training loss ----------------------------------------------------

    def q_sample(self, x0: Tensor, t: Tensor | int, noise: Tensor | None = None) -> Tensor:
        """Noise x0 to step t: sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise."""
        t = self.timesteps(t, x0.shape[0], x0.device)
        if noise is None:
            noise = torch.randn_like(x0)
        if noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} does not match x0 shape {tuple(x0.shape)}")
        return (self.coef("sqrt_alphas_cumprod", t, x0.ndim) * x0
                + self.coef("sqrt_one_minus_alphas_cumprod", t, x0.ndim) * noise)

    def training_loss(self, model_fn: ModelFn, x0: Tensor, t: Tensor | int, mask: Tensor | None = None,
                      noise: Tensor | None = None, *, lengths: Tensor | None = None) -> Tensor:
        """Per-row masked x0 MSE (MDM's masked_l2) of model_fn(q_sample(x0, t), timestep_map[t])."""
        t = self.timesteps(t, x0.shape[0], x0.device)
        mask = self._frame_mask(x0, mask, lengths)
        x_t = self.q_sample(x0, t, noise)
        pred_xstart = model_fn(x_t, self.model_timesteps(t))
        if pred_xstart.shape != x0.shape:
            raise ValueError(f"model output shape {tuple(pred_xstart.shape)} does not match x0 "
                             f"shape {tuple(x0.shape)}")
        return masked_l2(x0, pred_xstart, mask)

    @staticmethod
    def _frame_mask(x0: Tensor, mask: Tensor | None, lengths: Tensor | None) -> Tensor:
        batch, frames = x0.shape[0], x0.shape[-1]
        if mask is not None and lengths is not None:
            raise ValueError("give either mask or lengths, not both")
        if lengths is not None:
            return lengths_to_mask(torch.as_tensor(lengths, device=x0.device), frames)
        if mask is None:
            return torch.ones(batch, 1, 1, frames, dtype=torch.bool, device=x0.device)
        if mask.shape == (batch, frames):
            return mask.reshape(batch, 1, 1, frames).bool()
        if mask.shape == (batch, 1, 1, frames):
            return mask.bool()
        raise ValueError(f"mask must have shape [{batch}, {frames}] or [{batch}, 1, 1, {frames}], "
                         f"got {tuple(mask.shape)}")

    # ---- reverse steps -------------------------------------------------------------------------

    def predict_eps_from_xstart(self, x_t: Tensor, t: Tensor, pred_xstart: Tensor) -> Tensor:
        """The noise implied by an x0 prediction: (sqrt(1/abar) x_t - x0) / sqrt(1/abar - 1)."""
        return ((self.coef("sqrt_recip_alphas_cumprod", t, x_t.ndim) * x_t - pred_xstart)
                / self.coef("sqrt_recipm1_alphas_cumprod", t, x_t.ndim))

    def p_mean_variance(self, model_fn: ModelFn, x: Tensor, t: Tensor | int) -> DiffusionStep:
        """Model x0 prediction (no clamping) and the FIXED_SMALL posterior mean and variance at t."""
        t = self.timesteps(t, x.shape[0], x.device)
        model_t = self.model_timesteps(t)
        pred_xstart = model_fn(x, model_t)
        if pred_xstart.shape != x.shape:
            raise ValueError(f"model output shape {tuple(pred_xstart.shape)} does not match x shape "
                             f"{tuple(x.shape)}")
        mean = (self.coef("posterior_mean_coef1", t, x.ndim) * pred_xstart
                + self.coef("posterior_mean_coef2", t, x.ndim) * x)
        variance = self._table("posterior_variance", t.device)[t]
        log_variance = self._table("posterior_log_variance_clipped", t.device)[t]
        return DiffusionStep(sample=mean, pred_xstart=pred_xstart, model_t=model_t, t=t, mean=mean,
                             variance=variance, log_variance=log_variance)

    def p_sample(self, model_fn: ModelFn, x: Tensor, t: Tensor | int, noise: Tensor | None = None,
                 *, generator: torch.Generator | None = None) -> DiffusionStep:
        """One ancestral DDPM step x_t -> x_{t-1}; rows at t = 0 get no noise (sample = mean)."""
        out = self.p_mean_variance(model_fn, x, t)
        noise = self._step_noise(x, noise, generator)
        nonzero = (out.t != 0).float().reshape(x.shape[0], *([1] * (x.ndim - 1)))
        std = torch.exp(0.5 * out.log_variance).reshape(nonzero.shape)
        out.sample = out.mean + nonzero * std * noise
        return out

    def ddim_sample(self, model_fn: ModelFn, x: Tensor, t: Tensor | int, eta: float = 0.0,
                    noise: Tensor | None = None, *, generator: torch.Generator | None = None) -> DiffusionStep:
        """One DDIM step x_t -> x_{t_prev} (eta = 0: deterministic); float32 exactly as the reference."""
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        out = self.p_mean_variance(model_fn, x, t)
        t = out.t
        eps = self.predict_eps_from_xstart(x, t, out.pred_xstart)
        alpha_bar = self.coef("alphas_cumprod", t, x.ndim)
        alpha_bar_prev = self.coef("alphas_cumprod_prev", t, x.ndim)
        # All in float32 from float32-cast coefficients: a float64 version differs by ~1e-3 near t = 0.
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
        noise = self._step_noise(x, noise, generator)
        mean_pred = out.pred_xstart * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma ** 2) * eps
        nonzero = (t != 0).float().reshape(sigma.shape)
        return DiffusionStep(sample=mean_pred + nonzero * sigma * noise, pred_xstart=out.pred_xstart,
                             model_t=out.model_t, t=t, eps=eps)

    @staticmethod
    def _step_noise(x: Tensor, noise: Tensor | None, generator: torch.Generator | None) -> Tensor:
        if noise is None:
            return draw_noise(tuple(x.shape), generator, x.device)
        if noise.shape != x.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} does not match x shape {tuple(x.shape)}")
        return noise.to(device=x.device, dtype=x.dtype)

    # ---- loops ---------------------------------------------------------------------------------

    def p_sample_loop(self, model_fn: ModelFn, shape: tuple[int, ...] | None = None, **kwargs) -> Tensor:
        """Full ancestral (DDPM) sampling from pure noise; see `sample_loop_progressive` for arguments."""
        return _last(self.sample_loop_progressive(model_fn, shape, sampler="ddpm", **kwargs)).sample

    def ddim_sample_loop(self, model_fn: ModelFn, shape: tuple[int, ...] | None = None, eta: float = 0.0,
                         **kwargs) -> Tensor:
        """Full DDIM sampling from pure noise; see `sample_loop_progressive` for arguments."""
        return _last(self.sample_loop_progressive(model_fn, shape, sampler="ddim", eta=eta, **kwargs)).sample

    def sample_loop_progressive(self, model_fn: ModelFn, shape: tuple[int, ...] | None = None, *,
                                sampler: str = "ddpm", eta: float = 0.0, noise: Tensor | None = None,
                                step_noise: Tensor | list[Tensor] | None = None,
                                generator: torch.Generator | None = None, seed: int | None = None,
                                device: torch.device | str | None = None, progress: bool = True):
        """Yield every reverse step from t = N-1 down to 0, starting at `noise` (or a draw of `shape`).

        Randomness: explicit `noise` / `step_noise` ([N, *shape], step k uses step_noise[k]) win;
        otherwise noise comes from `generator`, or a CPU generator seeded with `seed` (same numbers on
        any device), or torch's global RNG. One noise tensor is drawn per step, t = 0 and eta = 0
        included, in the reference's order.
        """
        from tqdm.auto import tqdm

        if sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
        generator = make_generator(generator, seed)
        if noise is None:
            if shape is None:
                raise ValueError("give the sample shape or the initial noise")
            device = torch.device(device) if device is not None else torch.device("cpu")
            noise = draw_noise(tuple(shape), generator, device)
        elif shape is not None and tuple(noise.shape) != tuple(shape):
            raise ValueError(f"initial noise shape {tuple(noise.shape)} does not match shape {tuple(shape)}")
        x = noise.to(device=device) if device is not None else noise
        if step_noise is not None and len(step_noise) != self.num_steps:
            raise ValueError(f"step_noise must hold one tensor per step ({self.num_steps}), got {len(step_noise)}")
        steps = tqdm(range(self.num_steps), desc=f"{sampler} sampling", disable=not progress, leave=False)
        try:
            for k in steps:
                t = torch.full((x.shape[0],), self.num_steps - 1 - k, dtype=torch.int64, device=x.device)
                eps_noise = step_noise[k] if step_noise is not None else None
                # no_grad per step, not around the yield: grad mode is thread state and would leak into
                # the caller while this generator is suspended (or abandoned).
                with torch.no_grad():
                    if sampler == "ddpm":
                        out = self.p_sample(model_fn, x, t, eps_noise, generator=generator)
                    else:
                        out = self.ddim_sample(model_fn, x, t, eta, eps_noise, generator=generator)
                x = out.sample
                yield out
        finally:
            steps.close()


def make_generator(generator: torch.Generator | None = None, seed: int | None = None) -> torch.Generator | None:
    """The generator to draw noise from: the given one, a CPU one seeded with `seed`, or None (global)."""
    if generator is not None and seed is not None:
        raise ValueError("give either a generator or a seed, not both")
    if generator is not None:
        return generator
    if seed is not None:
        return torch.Generator(device="cpu").manual_seed(int(seed))
    return None


def draw_noise(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard normal float32 noise drawn on the generator's device, then moved to `device`."""
    source = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=source, dtype=torch.float32).to(device)


def _last(steps) -> DiffusionStep:
    out = None
    for out in steps:
        pass
    assert out is not None  # a schedule always has at least 2 steps
    return out
