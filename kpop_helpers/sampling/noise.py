"""The numpy noise convention of the torch-free sampler (edge runtime, compression error measurements)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.motion.features import FEATURE_DIM

NUM_FEATURES = FEATURE_DIM


@dataclass
class SamplingNoise:
    """The initial noise [B,263,1,T] and, for DDPM or DDIM with eta > 0, one noise tensor per step [N,B,263,1,T]."""

    initial: np.ndarray
    steps: np.ndarray | None = None

    def step(self, k: int) -> np.ndarray | None:
        """The noise of step k (k = 0 at t = N-1), or None when no step noise was drawn."""
        return None if self.steps is None else self.steps[k]

    def check_steps(self, num_steps: int, needed: bool, what: str) -> None:
        """Raise a DataError unless step noise of shape [num_steps, *initial.shape] is present when needed."""
        expected = (int(num_steps), *self.initial.shape)
        if needed and (self.steps is None or tuple(self.steps.shape) != expected):
            got = None if self.steps is None else tuple(self.steps.shape)
            raise DataError(f"{what} needs step noise of shape {expected}, got {got}", field="noise.steps",
                            expected="one noise array per step (draw_noise(..., stochastic=True))")


def draw_noise(seed: int | None, batch: int, frames: int, num_steps: int, *, stochastic: bool) -> SamplingNoise:
    """All sampling noise from numpy's PCG64 `default_rng(seed)`: initial noise first, then per-step noise.

    This draw order is the convention existing dances were made with: keep it. The edge runtime draws
    noise this way; pass `torch.from_numpy(noise.initial)` (and the step noise) to the PyTorch sampler to
    get the same motion from both (torch's own RNG gives other numbers).
    """
    rng = np.random.default_rng(None if seed is None else int(seed))  # None: fresh OS entropy
    shape = (int(batch), NUM_FEATURES, 1, int(frames))
    initial = rng.standard_normal(shape, dtype=np.float32)
    steps = rng.standard_normal((int(num_steps), *shape), dtype=np.float32) if stochastic else None
    return SamplingNoise(initial=initial, steps=steps)
