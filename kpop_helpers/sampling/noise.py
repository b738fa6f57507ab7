"""The numpy noise convention of every sampler (edge runtime, `generate`, compression error measurements)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.motion.features import FEATURE_DIM

NUM_FEATURES = FEATURE_DIM

# Per-step noise: an array [N,B,263,1,T], or any sequence of N arrays [B,263,1,T] (read step by step).
StepNoiseSource = np.ndarray | Sequence[np.ndarray]


class SequentialSteps:
    """Per-step noise drawn on demand, in step order, from the generator that drew the initial noise.

    PCG64 keeps its state between calls, so step k drawn here equals `steps[k]` of one [N, ...] draw: the
    same numbers without holding all N steps (the 1000-step DDPM of 8 dances would be 1.6 GB).
    """

    def __init__(self, rng: np.random.Generator, num_steps: int, shape: tuple[int, ...]):
        self._rng, self._num_steps, self._shape = rng, int(num_steps), tuple(shape)
        self._next, self._last = 0, None

    @property
    def shape(self) -> tuple[int, ...]:
        """[N, B, 263, 1, T], as if drawn at once."""
        return (self._num_steps, *self._shape)

    def __len__(self) -> int:
        return self._num_steps

    def __getitem__(self, k: int) -> np.ndarray:
        if not 0 <= k < self._num_steps:
            raise IndexError(k)
        if self._last is not None and k == self._next - 1:
            return self._last
        if k != self._next:
            raise IndexError(f"step noise is drawn in step order: step {self._next} is next, {k} was asked for")
        self._last = self._rng.standard_normal(self._shape, dtype=np.float32)
        self._next += 1
        return self._last


@dataclass
class SamplingNoise:
    """The initial noise [B,263,1,T] and, for DDPM or DDIM with eta > 0, one noise array per step [N,B,263,1,T]."""

    initial: np.ndarray
    steps: StepNoiseSource | None = None

    def step(self, k: int) -> np.ndarray | None:
        """The noise of step k (k = 0 at t = N-1), or None when no step noise was drawn."""
        return None if self.steps is None else np.asarray(self.steps[k], dtype=np.float32)

    def check_steps(self, num_steps: int, needed: bool, what: str) -> None:
        """Raise a DataError unless step noise for `num_steps` steps of the initial shape is present when needed."""
        expected = (int(num_steps), *self.initial.shape)
        if not needed:
            return
        got = None if self.steps is None else tuple(getattr(self.steps, "shape", (len(self.steps),)))
        if got is None or got[0] != expected[0] or (len(got) > 1 and got != expected):
            raise DataError(f"{what} needs step noise of shape {expected}, got {got}", field="noise.steps",
                            expected="one noise array per step (draw_noise(..., stochastic=True))")


def draw_noise(seed: int | None, batch: int, frames: int, num_steps: int, *, stochastic: bool,
               lazy: bool = False) -> SamplingNoise:
    """All sampling noise from numpy's PCG64 `default_rng(seed)`: initial noise first, then per-step noise.

    This draw order is the convention existing dances were made with: keep it. The edge runtime and
    `kpop_helpers.generate.generate` both draw noise this way, so one seed gives one dance everywhere.
    lazy: draw step k only when the sampler reaches it (same numbers, a step's memory instead of N steps').
    """
    rng = np.random.default_rng(None if seed is None else int(seed))  # None: fresh OS entropy
    shape = (int(batch), NUM_FEATURES, 1, int(frames))
    initial = rng.standard_normal(shape, dtype=np.float32)
    if not stochastic:
        return SamplingNoise(initial=initial)
    if lazy:
        return SamplingNoise(initial=initial, steps=SequentialSteps(rng, num_steps, shape))
    return SamplingNoise(initial=initial, steps=rng.standard_normal((int(num_steps), *shape), dtype=np.float32))


def resolve_noise(seed: int | None, batch: int, frames: int, num_steps: int, *, stochastic: bool,
                  initial: Any = None, steps: StepNoiseSource | None = None, lazy: bool = False) -> SamplingNoise:
    """The noise of one generation: explicit `initial` / `steps` win, the rest is drawn with `draw_noise(seed)`.

    `initial` may be a numpy array or a torch tensor [B,263,1,T]; the draw order (initial first) is kept
    even when `initial` is given, so a given initial noise with the seed's step noise reproduces a seeded run.
    """
    shape = (int(batch), NUM_FEATURES, 1, int(frames))
    if initial is not None:
        initial = np.asarray(initial.detach().cpu().numpy() if hasattr(initial, "detach") else initial,
                             dtype=np.float32)
        if tuple(initial.shape) != shape:
            raise ValueError(f"noise must have shape {shape} (prompts, features, 1, frames), got {initial.shape}")
        if steps is not None or not stochastic:
            return SamplingNoise(initial, steps)
    drawn = draw_noise(seed, batch, frames, num_steps, stochastic=stochastic, lazy=lazy)
    if initial is not None:
        drawn.initial = initial
    if steps is not None:
        drawn.steps = steps
    return drawn
