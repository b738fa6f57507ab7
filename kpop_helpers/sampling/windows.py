"""Dances longer than the model: one long sample denoised window by window, the windows' x0 blended.

The whole dance is ONE sample [B,263,1,T] with one noise draw. At every step it is cut into overlapping
windows of the model's length, the (guided) model predicts x0 for each window, and the predictions are
blended back into one x0 for the whole dance before the ordinary DDPM/DDIM step (and the constraint, MDM's
editing rule) runs on the long sample. Because every frame has one x_t, the windows agree on their shared
frames at every step and the final sample has no seam of its own making: the overlap is "constrained"
in the sense of EDGE's long-form rule. With `blend="first"` the earlier window's x0 wins on shared frames,
which is EDGE's rule exactly (EDGE overwrites the later window's noisy first half with the earlier one's);
`"mean"` averages (MultiDiffusion); `"taper"` cross-fades linearly over each overlap, so no window's edge
frames (where a clip starts or stops) dominate. `benchmarks/bench_editing.py` measures them.

Written once for numpy arrays and torch tensors (`sampling.xp`), so the edge runtime and GPU generation
run the same arithmetic; the model runs on at most `max_windows` windows per call (memory), which does
not change the result: windows are independent given x_t.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.sampling.xp import Array, namespace

BLENDS = ("taper", "mean", "first")
# (x windows [n,263,1,W], model timesteps [n], text embeddings [n,D]) -> guided x0 [n,263,1,W]
GuidedX0 = Callable[[Array, Array, Array], Array]


@dataclass(frozen=True)
class WindowPlan:
    """Where the model's windows lie in a dance of `frames` frames, and how their x0 predictions are blended."""

    frames: int
    window: int
    starts: tuple[int, ...]
    blend: str = "taper"

    def __post_init__(self) -> None:
        if self.blend not in BLENDS:
            raise DataError(f"blend {self.blend!r}", field="blend", expected=f"one of {BLENDS}")
        if not self.starts or self.starts[0] != 0 or self.starts[-1] + self.window != self.frames:
            raise DataError(f"windows at {self.starts} of {self.window} frames for {self.frames} frames",
                            field="windows", expected="windows from frame 0 to the last frame")
        if any(b <= a or b > a + self.window for a, b in zip(self.starts, self.starts[1:], strict=False)):
            raise DataError(f"windows at {self.starts} of {self.window} frames", field="windows",
                            expected="increasing starts that leave no frame uncovered")

    @classmethod
    def cover(cls, frames: int, window: int, overlap: int, blend: str = "taper") -> WindowPlan:
        """Windows of `window` frames every `window - overlap` frames over `frames`; the last ends on the last frame.

        A dance no longer than the window is one window. Every seam shares exactly `overlap` frames except
        the last, which shares more when the dance is not a whole number of strides.
        """
        frames, window, overlap = int(frames), int(window), int(overlap)
        if window < 1 or frames < 1:
            raise DataError(f"{frames} frames, window {window}", field="frames", expected="at least 1 frame")
        if not 0 <= overlap < window:
            raise DataError(f"overlap {overlap} for windows of {window} frames", field="overlap",
                            expected=f"0 <= overlap < {window}")
        if frames <= window:
            return cls(frames, frames, (0,), blend)
        stride = window - overlap
        starts = list(range(0, frames - window, stride)) + [frames - window]
        return cls(frames, window, tuple(starts), blend)

    @property
    def count(self) -> int:
        """Number of windows."""
        return len(self.starts)

    def seams(self) -> list[tuple[int, int]]:
        """Frame spans [start, end) shared by two neighbouring windows."""
        return [(b, a + self.window) for a, b in zip(self.starts, self.starts[1:], strict=False)]

    def centres(self) -> np.ndarray:
        """Centre frame of each window (for choosing a window's prompt from a timeline)."""
        return np.asarray(self.starts, dtype=np.float64) + (self.window - 1) / 2

    def weights(self) -> np.ndarray:
        """[W, window] float32 blend weights; at every frame they sum to 1 over the windows covering it."""
        raw = np.ones((self.count, self.window), dtype=np.float64)
        if self.blend == "taper":
            for w, (lo, hi) in enumerate(self.seams()):  # ramps across each shared span
                ramp = (np.arange(lo, hi) - lo + 0.5) / (hi - lo)
                raw[w, lo - self.starts[w]:hi - self.starts[w]] = 1.0 - ramp
                raw[w + 1, :hi - lo] = ramp
        elif self.blend == "first":
            for w, (lo, hi) in enumerate(self.seams()):
                raw[w + 1, :hi - lo] = 0.0
        total = np.zeros(self.frames)
        for w, start in enumerate(self.starts):
            total[start:start + self.window] += raw[w]
        for w, start in enumerate(self.starts):
            raw[w] /= total[start:start + self.window]
        return raw.astype(np.float32)

    def split(self, x: Array) -> Array:
        """[B,C,1,frames] -> windows [B*W,C,1,window], dance-major (row b*W + w is window w of dance b)."""
        self._check(x)
        index = (np.asarray(self.starts)[:, None] + np.arange(self.window)[None, :]).reshape(-1)
        batch, channels = x.shape[0], x.shape[1]
        xp = namespace(x)
        picked = x[..., xp.asarray(index, x, "int64")]  # [B,C,1,W*window]
        windows = xp.permute(picked.reshape(batch, channels, 1, self.count, self.window), (0, 3, 1, 2, 4))
        return windows.reshape(batch * self.count, channels, 1, self.window)

    def merge(self, windows: Array, batch: int) -> Array:
        """Blend windows [B*W,C,1,window] into [B,C,1,frames] with `weights()`."""
        xp = namespace(windows)
        weights = xp.asarray(self.weights(), windows, "float32")
        shaped = windows.reshape(batch, self.count, windows.shape[1], 1, self.window)
        out = xp.zeros((batch, windows.shape[1], 1, self.frames), windows)
        for w, start in enumerate(self.starts):
            out[..., start:start + self.window] += shaped[:, w] * weights[w]
        return out

    def guided_x0(self, guided: GuidedX0, x: Array, model_t: Array, text_emb: Array,
                  max_windows: int | None = None) -> Array:
        """The blended x0 of the whole dance: `guided` on every window (at most `max_windows` per call).

        text_emb: [B*W, D], one embedding per window (dance-major, as `split`); model_t: [B].
        """
        batch = x.shape[0]
        if text_emb.shape[0] != batch * self.count:
            raise DataError(f"{text_emb.shape[0]} text embeddings for {batch} dance(s) of {self.count} windows",
                            field="text_emb", expected=f"{batch * self.count} (one per window)")
        windows = self.split(x)
        rows = namespace(x).asarray(np.repeat(np.arange(batch), self.count), x, "int64")
        window_t = model_t[rows]
        step = max(1, int(max_windows or windows.shape[0]))
        parts = [guided(windows[i:i + step], window_t[i:i + step], text_emb[i:i + step])
                 for i in range(0, windows.shape[0], step)]
        x0 = parts[0] if len(parts) == 1 else namespace(x).concat(parts)
        return self.merge(x0, batch)

    def _check(self, x: Array) -> None:
        if x.ndim != 4 or x.shape[-1] != self.frames:
            raise DataError(f"sample of shape {tuple(x.shape)}", field="sample",
                            expected=f"[B, 263, 1, {self.frames}] for this window plan")

