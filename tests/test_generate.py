"""generate(): a tiny random MDM with the bundled MiniLM encoder, and the denoiser benchmark's smoke mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kpop_helpers.generate import GenerationResult, generate, sampling_diffusion
from kpop_helpers.model import MDM, get_preset
from kpop_helpers.motion.features import features_to_joints
from kpop_helpers.motion.stats import MotionStats
from kpop_helpers.text import get_text_encoder

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a powerful hip-hop dance with big arm waves", "a cute aegyo dance with small bounces"]
FRAMES = 24


@pytest.fixture(scope="module")
def encoder():
    return get_text_encoder("minilm")


@pytest.fixture(scope="module")
def stats():
    rng = np.random.default_rng(0)
    return MotionStats(mean=rng.normal(0.0, 0.1, 263), std=rng.uniform(0.05, 0.2, 263))


@pytest.fixture(scope="module")
def model(stats):
    torch.manual_seed(0)
    net = MDM(get_preset("tiny", diffusion_steps=20))
    net.stats = stats
    return net


def _generate(model, encoder, **kwargs) -> GenerationResult:
    return generate(model, kwargs.pop("prompts", PROMPTS), frames=kwargs.pop("frames", FRAMES),
                    text_encoder=encoder, progress=False, **kwargs)


def test_shapes_denormalisation_and_joints(model, encoder, stats):
    model.train()
    result = _generate(model, encoder)
    assert model.training, "generate must restore the model's train/eval mode"
    assert result.features.shape == (2, FRAMES, 263) and result.features.dtype == np.float32
    assert result.joints.shape == (2, FRAMES, 22, 3) and result.joints.dtype == np.float32
    assert tuple(result.sample.shape) == (2, 263, 1, FRAMES)
    assert result.steps == model.cfg.diffusion_steps and result.sampler == "ddpm" and result.fps == 20.0
    normalised = result.sample[:, :, 0, :].permute(0, 2, 1).numpy()
    np.testing.assert_allclose(result.features, stats.denormalize(normalised), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.joints, features_to_joints(result.features), rtol=1e-5, atol=1e-5)
    assert np.isfinite(result.joints).all()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_same_seed_same_motion_other_seed_other_motion(model, encoder, sampler):
    first = _generate(model, encoder, seed=7, sampler=sampler, steps=5)
    again = _generate(model, encoder, seed=7, sampler=sampler, steps=5)
    other = _generate(model, encoder, seed=8, sampler=sampler, steps=5)
    np.testing.assert_array_equal(first.features, again.features)
    assert np.abs(first.features - other.features).max() > 1e-3


def test_prompt_matters_only_with_guidance(model, encoder):
    noise = torch.randn(1, 263, 1, FRAMES, generator=torch.Generator().manual_seed(1))

    def run(prompt, guidance):
        return _generate(model, encoder, prompts=[prompt], noise=noise, sampler="ddim", steps=4,
                         guidance=guidance).features

    assert np.abs(run(PROMPTS[0], 2.5) - run(PROMPTS[1], 2.5)).max() > 1e-4
    # Scale 0 keeps only the unconditioned rows, which never see the text.
    np.testing.assert_allclose(run(PROMPTS[0], 0.0), run(PROMPTS[1], 0.0), rtol=1e-5, atol=1e-5)


def test_explicit_noise_and_deterministic_ddim_ignore_the_seed(model, encoder):
    noise = torch.randn(2, 263, 1, FRAMES, generator=torch.Generator().manual_seed(2))
    a = _generate(model, encoder, noise=noise, seed=None, sampler="ddim", steps=5, eta=0.0)
    b = _generate(model, encoder, noise=noise, seed=123, sampler="ddim", steps=5, eta=0.0)
    np.testing.assert_array_equal(a.features, b.features)


def test_lengths_in_seconds_and_limits(model, encoder):
    assert _generate(model, encoder, frames=None, seconds=1.5, steps=2).num_frames == 30
    # Longer than the model: overlapping windows (tests/test_editing.py); beyond 600 s: refused.
    with pytest.raises(ValueError, match="frames"):
        _generate(model, encoder, frames=600 * 20 + 1)
    with pytest.raises(ValueError, match="one of them"):
        _generate(model, encoder, seconds=1.0)
    with pytest.raises(ValueError, match="steps must lie in"):
        _generate(model, encoder, steps=model.cfg.diffusion_steps + 1)
    with pytest.raises(ValueError, match="non-empty list"):
        _generate(model, encoder, prompts=[])


def test_missing_stats_and_mismatched_encoder_are_clear_errors(model, encoder):
    bare = MDM(get_preset("tiny", diffusion_steps=20))
    with pytest.raises(ValueError, match="stats"):
        _generate(bare, encoder)
    clip_sized = MDM(get_preset("tiny", diffusion_steps=20, text_dim=512, text_encoder="clip"))
    with pytest.raises(ValueError, match="512-d"):
        _generate(clip_sized, encoder, stats=model.stats)


def test_sampling_diffusion_respaces_the_models_own_schedule():
    assert sampling_diffusion(1000, "ddpm", None).num_steps == 1000
    ddim = sampling_diffusion(1000, "ddim", 50)
    assert ddim.num_steps == 50 and ddim.timestep_map[1] == 20  # "ddim50": stride 20
    ddpm = sampling_diffusion(1000, "ddpm", 10)
    assert ddpm.num_steps == 10 and ddpm.timestep_map[-1] == 999  # [10] keeps the last step
    # A 50-step model is sampled with its own T=50 schedule, never a respaced 1000-step one.
    own = sampling_diffusion(50, "ddpm", None)
    assert own.base_num_steps == 50 and list(own.timestep_map) == list(range(50))


def test_bench_denoiser_smoke_writes_json_and_markdown(tmp_path):
    script = REPO_ROOT / "benchmarks" / "bench_denoiser.py"
    done = subprocess.run([sys.executable, str(script), "--smoke", "--no-progress", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "denoiser.json").read_text())
    assert {"protocol", "system", "rows"} <= set(result)
    assert result["protocol"]["smoke"] is True
    for key in ("cpu_model", "cpu_flags", "torch_version", "logical_cpus"):
        assert key in result["system"]
    variants = {row["variant"] for row in result["rows"]}
    assert {"fp32_step", "fp32_ddpm50"} <= variants and any(v.startswith("fp32_ddim") for v in variants)
    for row in result["rows"]:
        assert row["threads"] in result["protocol"]["threads"] and row["denoiser_batch"] == 2
        assert 0 < row["step_ms_p50"] <= row["step_ms_p95"]
        if row["sampler"] is not None:
            assert 0 < row["gen_time_p50_s"] <= row["gen_time_p95_s"]
    ddpm = next(row for row in result["rows"] if row["sampler"] == "ddpm")
    assert ddpm["extrapolated"] and ddpm["measured_steps"] < ddpm["steps"]
    assert "EXTRAPOLATED" in (tmp_path / "denoiser.md").read_text()
