"""Torch-free edge runtime: ONNX Runtime + numpy (+ tokenizers) text-to-dance generation from an export folder.

Nothing in this package imports torch (a test checks it in a fresh interpreter): on a laptop or a
Raspberry-Pi-class device only `numpy`, `onnxruntime` and `tokenizers` are needed.
"""

from kpop_helpers.edge.manifest import MANIFEST_NAME, read_manifest
from kpop_helpers.edge.runtime import EdgeGenerator, EdgeResult, onnx_denoiser, peak_rss_mib
from kpop_helpers.edge.sampler import (
    SamplingNoise, draw_noise, guided_combine, guided_denoise, sample_loop, sample_to_features,
)
from kpop_helpers.edge.schedule import NumpyDiffusion, sampling_schedule, space_timesteps
from kpop_helpers.edge.text import OnnxTextEncoder, PrecomputedEmbeddings, make_session

__all__ = [
    "MANIFEST_NAME",
    "EdgeGenerator",
    "EdgeResult",
    "NumpyDiffusion",
    "OnnxTextEncoder",
    "PrecomputedEmbeddings",
    "SamplingNoise",
    "draw_noise",
    "guided_combine",
    "guided_denoise",
    "make_session",
    "onnx_denoiser",
    "peak_rss_mib",
    "read_manifest",
    "sample_loop",
    "sample_to_features",
    "sampling_schedule",
    "space_timesteps",
]
