"""MDM's Gaussian diffusion on torch tensors: x0-predicting model, FIXED_SMALL variance, optional respacing.

The schedule, the reverse steps, guidance and known-value constraints are the sampling core's
(`kpop_helpers.sampling`, shared with the torch-free edge runtime); this module adds what needs torch:
the training loss, torch noise drawing and the model-calling loops. Numerics follow the reference
(GuyTevet/motion-diffusion-model): float64 schedules, coefficients picked at t and cast to float32, all
tensor arithmetic float32 in the reference's order (this matters for DDIM near t = 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from kpop_helpers.sampling import Constraint, DiffusionSchedule, SamplerSpec
from kpop_helpers.sampling.steps import ddim_step, ddpm_step, posterior_mean, predict_eps_from_xstart

# model_fn(x_t [B,263,1,T], model_t [B] long) -> predicted x0, same shape as x_t.
ModelFn = Callable[[Tensor, Tensor], Tensor]


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


class GaussianDiffusion(DiffusionSchedule):
    """Cosine/linear-schedule diffusion over x0 predictions, optionally respaced (e.g. "ddim50", [10]).

    The schedule arrays, `coef`, `rows`, `model_timesteps` and `schedule_arrays` come from the core's
    `DiffusionSchedule`; coefficient tables are cached per device.
    """

    def __repr__(self) -> str:
        return (f"GaussianDiffusion(num_steps={self.base_num_steps}, schedule={self.schedule!r}, "
                f"respacing={self.respacing!r}, sampled_steps={self.num_steps})")

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
        return predict_eps_from_xstart(self, x_t, t, pred_xstart)

    def _model_x0(self, model_fn: ModelFn, x: Tensor, t: Tensor | int,
                  constraint: Constraint | None) -> tuple[Tensor, Tensor, Tensor]:
        """(t, model_t, x0): the model's x0 prediction (no clamping), with known values put in (MDM's edit rule)."""
        t = self.timesteps(t, x.shape[0], x.device)
        model_t = self.model_timesteps(t)
        pred_xstart = model_fn(x, model_t)
        if pred_xstart.shape != x.shape:
            raise ValueError(f"model output shape {tuple(pred_xstart.shape)} does not match x shape "
                             f"{tuple(x.shape)}")
        if constraint is not None:
            pred_xstart = constraint.apply(pred_xstart)
        return t, model_t, pred_xstart

    def p_mean_variance(self, model_fn: ModelFn, x: Tensor, t: Tensor | int,
                        constraint: Constraint | None = None) -> DiffusionStep:
        """Model x0 prediction (constrained if given) and the FIXED_SMALL posterior mean and variance at t."""
        t, model_t, pred_xstart = self._model_x0(model_fn, x, t, constraint)
        mean = posterior_mean(self, x, t, pred_xstart)
        return DiffusionStep(sample=mean, pred_xstart=pred_xstart, model_t=model_t, t=t, mean=mean,
                             variance=self.rows("posterior_variance", t),
                             log_variance=self.rows("posterior_log_variance_clipped", t))

    def p_sample(self, model_fn: ModelFn, x: Tensor, t: Tensor | int, noise: Tensor | None = None,
                 *, generator: torch.Generator | None = None, constraint: Constraint | None = None) -> DiffusionStep:
        """One ancestral DDPM step x_t -> x_{t-1}; rows at t = 0 get no noise (sample = mean)."""
        t, model_t, pred_xstart = self._model_x0(model_fn, x, t, constraint)
        step = ddpm_step(self, x, t, pred_xstart, self._step_noise(x, noise, generator))
        return DiffusionStep(sample=step.sample, pred_xstart=pred_xstart, model_t=model_t, t=t, mean=step.mean,
                             variance=self.rows("posterior_variance", t),
                             log_variance=self.rows("posterior_log_variance_clipped", t))

    def ddim_sample(self, model_fn: ModelFn, x: Tensor, t: Tensor | int, eta: float = 0.0,
                    noise: Tensor | None = None, *, generator: torch.Generator | None = None,
                    constraint: Constraint | None = None) -> DiffusionStep:
        """One DDIM step x_t -> x_{t_prev} (eta = 0: deterministic); float32 exactly as the reference."""
        SamplerSpec(sampler="ddim", eta=eta)  # checks eta before the model runs
        t, model_t, pred_xstart = self._model_x0(model_fn, x, t, constraint)
        # Drawn even when eta = 0: one draw per step keeps a seeded run in the reference's noise order.
        step = ddim_step(self, x, t, pred_xstart, eta, self._step_noise(x, noise, generator))
        return DiffusionStep(sample=step.sample, pred_xstart=pred_xstart, model_t=model_t, t=t, eps=step.eps)

    @staticmethod
    def _step_noise(x: Tensor, noise: Tensor | None, generator: torch.Generator | None) -> Tensor:
        if noise is None:
            return draw_torch_noise(tuple(x.shape), generator, x.device)
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
                                device: torch.device | str | None = None, progress: bool = True,
                                constraint: Constraint | None = None) -> Iterator[DiffusionStep]:
        """Yield every reverse step from t = N-1 down to 0, starting at `noise` (or a draw of `shape`).

        `constraint`: known values put into the x0 prediction at every step (MDM's editing rule).

        Randomness: explicit `noise` / `step_noise` ([N, *shape], step k uses step_noise[k]) win;
        otherwise noise comes from `generator`, or a CPU generator seeded with `seed` (same numbers on
        any device), or torch's global RNG. One noise tensor is drawn per step, t = 0 and eta = 0
        included, in the reference's order.
        """
        from tqdm.auto import tqdm

        spec = SamplerSpec(sampler=sampler, eta=eta)  # one check of the sampler settings, as everywhere
        generator = make_generator(generator, seed)
        if noise is None:
            if shape is None:
                raise ValueError("give the sample shape or the initial noise")
            device = torch.device(device) if device is not None else torch.device("cpu")
            noise = draw_torch_noise(tuple(shape), generator, device)
        elif shape is not None and tuple(noise.shape) != tuple(shape):
            raise ValueError(f"initial noise shape {tuple(noise.shape)} does not match shape {tuple(shape)}")
        x = noise.to(device=device) if device is not None else noise
        if step_noise is not None and len(step_noise) != self.num_steps:
            raise ValueError(f"step_noise must hold one tensor per step ({self.num_steps}), got {len(step_noise)}")
        steps = tqdm(self.reverse_indices(), desc=f"{sampler} sampling", disable=not progress, leave=False)
        try:
            for k, index in enumerate(steps):
                t = torch.full((x.shape[0],), index, dtype=torch.int64, device=x.device)
                eps_noise = step_noise[k] if step_noise is not None else None
                # no_grad per step, not around the yield: grad mode is thread state and would leak into
                # the caller while this generator is suspended (or abandoned).
                with torch.no_grad():
                    if spec.sampler == "ddpm":
                        out = self.p_sample(model_fn, x, t, eps_noise, generator=generator, constraint=constraint)
                    else:
                        out = self.ddim_sample(model_fn, x, t, spec.eta, eps_noise, generator=generator,
                                               constraint=constraint)
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


def draw_torch_noise(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard normal float32 noise from a torch generator, drawn on its device, then moved to `device`.

    The torch noise convention (seeded torch runs); the torch-free one is `kpop_helpers.sampling.draw_noise`.
    """
    source = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=source, dtype=torch.float32).to(device)


draw_noise = draw_torch_noise  # old name, kept for existing callers


def _last(steps: Iterator[DiffusionStep]) -> DiffusionStep:
    out = None
    for out in steps:
        pass
    assert out is not None  # a schedule always has at least 2 steps
    return out
