"""The one denoiser call every runtime is wrapped into: (x_t, model timesteps, text embedding, uncond) -> x0.

numpy in, numpy out: kpop_helpers.runners makes one of a torch module, a TorchScript file, a torch.export program
or an ONNX Runtime session; the edge runtime builds its own from ONNX Runtime. Shapes: x [B,263,1,T] float32,
timesteps [B] int64, text embedding [B,D] float32, uncond [B] bool (and, for a guidance-distilled student,
guidance [B] float32); returns the x0 prediction like x.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Denoiser = Callable[..., np.ndarray]


def takes_guidance(denoise: Denoiser) -> bool:
    """Whether a denoiser takes the guidance scale as a fifth input [B] float32 (a guidance-distilled student).

    Runners mark such a callable with `guidance_input = True`; the sampling loops then make one call per step
    with the scale instead of the guided pair of calls.
    """
    return bool(getattr(denoise, "guidance_input", False))
