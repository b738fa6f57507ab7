"""The one denoiser call every runtime is wrapped into: (x_t, model timesteps, text embedding, uncond) -> x0.

numpy in, numpy out: kpop_helpers.runners makes one of a torch module, a TorchScript file, a torch.export program
or an ONNX Runtime session; the edge runtime builds its own from ONNX Runtime. Shapes: x [B,263,1,T] float32,
timesteps [B] int64, text embedding [B,D] float32, uncond [B] bool; returns the x0 prediction like x.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Denoiser = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
