"""The edge runtime's sampling loop: the sampling core's numpy loop (`kpop_helpers.sampling.loop`), re-exported.

The loop moved into the core so that `kpop_helpers.generate` (with any numpy runner), the compression error
measurements and the benchmark run the very same code as the edge runtime; these names keep working.
"""

from __future__ import annotations

from kpop_helpers.edge.schedule import NumpyDiffusion
from kpop_helpers.motion.features import FEATURE_DIM
from kpop_helpers.sampling import Denoiser, SamplingNoise, draw_noise
from kpop_helpers.sampling.loop import guided_denoise, sample_loop, sample_to_features
from kpop_helpers.sampling.steps import guided_combine

NUM_FEATURES = FEATURE_DIM

__all__ = ["Denoiser", "NumpyDiffusion", "SamplingNoise", "draw_noise", "guided_combine", "guided_denoise",
           "sample_loop", "sample_to_features"]
