"""Same noise, same dance everywhere: `generate` (torch eager or any numpy runner) and `EdgeGenerator` make one
dance from one prompt, seed and sampler (DDPM with per-step noise, so the step noise is shared too)."""

from __future__ import annotations

import numpy as np
import pytest

from kpop_helpers.edge import EdgeGenerator
from kpop_helpers.generate import generate
from kpop_helpers.runners import onnx_runner

PROMPT = "a powerful hip-hop dance with big arm waves"
SEED, STEPS, FRAMES, GUIDANCE = 5, 10, 40, 2.5
# generate(runner=fp32 ONNX) vs EdgeGenerator(fp32): the same session, loop, noise and text tower; joints in metres.
SAME_RUNNER_ATOL = 1e-6  # measured: 0 (bit-identical)
# generate(torch eager, PyTorch MiniLM) vs the edge (ONNX network and text tower): float rounding of two runtimes.
TORCH_ATOL = 5e-4  # measured: 2.5e-5 m (0.025 mm)


@pytest.fixture(scope="module")
def dances(tiny_export, one_torch_thread) -> dict[str, np.ndarray]:
    model, export = tiny_export
    edge = EdgeGenerator(export, variant="fp32", threads=1)
    settings = dict(frames=FRAMES, steps=STEPS, seed=SEED, sampler="ddpm", guidance=GUIDANCE)
    runner = onnx_runner(export / edge.entry["file"], threads=1)
    return {
        "edge": edge.generate([PROMPT], **settings),
        # The edge's own text tower, so that this pair differs in nothing but the code around the loop.
        "onnx": generate(model, [PROMPT], runner=runner, text_encoder=edge.text_encoder, progress=False,
                         **settings).joints,
        "torch": generate(model, [PROMPT], progress=False, **settings).joints,
        "torch_other_seed": generate(model, [PROMPT], progress=False, **{**settings, "seed": SEED + 1}).joints,
    }


def test_generate_with_the_onnx_runner_makes_the_edge_dance(dances):
    assert dances["onnx"].shape == dances["edge"].shape == (1, FRAMES, 22, 3)
    error = float(np.abs(dances["onnx"] - dances["edge"]).max())
    assert error <= SAME_RUNNER_ATOL, f"generate(runner=onnx) vs EdgeGenerator: {error * 1000:.4f} mm"


def test_generate_with_the_torch_model_makes_the_edge_dance(dances):
    error = float(np.abs(dances["torch"] - dances["edge"]).max())
    assert error <= TORCH_ATOL, f"generate(torch) vs EdgeGenerator: {error * 1000:.4f} mm"
    # Not a vacuous tolerance: other noise (the next seed) moves the dance far beyond it.
    assert float(np.abs(dances["torch_other_seed"] - dances["edge"]).max()) > 50 * TORCH_ATOL


def test_lazy_step_noise_draws_the_same_numbers_in_step_order():
    """generate and the edge draw step noise lazily: the numbers of one [N, ...] draw, without holding all N."""
    from kpop_helpers.sampling import draw_noise

    eager = draw_noise(3, 2, 7, 4, stochastic=True)
    lazy = draw_noise(3, 2, 7, 4, stochastic=True, lazy=True)
    np.testing.assert_array_equal(lazy.initial, eager.initial)
    assert lazy.steps.shape == eager.steps.shape == (4, 2, 263, 1, 7)
    for k in range(4):
        np.testing.assert_array_equal(lazy.step(k), eager.steps[k])
        np.testing.assert_array_equal(lazy.step(k), eager.steps[k])  # the current step may be read again
    with pytest.raises(IndexError, match="step order"):
        draw_noise(3, 2, 7, 4, stochastic=True, lazy=True).step(2)
