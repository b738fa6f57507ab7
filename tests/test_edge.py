"""Torch-free edge runtime: numpy diffusion vs the reference fixtures, EdgeGenerator vs the PyTorch generator on
the same noise, and a fresh interpreter that generates a dance without ever importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from kpop_helpers.data.clip import DataError
from kpop_helpers.edge import EdgeGenerator, NumpyDiffusion, draw_noise, guided_combine, sample_loop
from kpop_helpers.edge.sampler import SamplingNoise
from tests.conftest import EDGE_PROMPTS, REPO_ROOT, fixture_cases, fixture_family

FAMILY = "mdm_diffusion"
PROMPTS = EDGE_PROMPTS
SCHEDULE_KEYS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2",
)
# Edge (ONNX Runtime) vs PyTorch generation on the same noise: normalised sample and joints (metres).
SAMPLE_ATOL = 1e-4
JOINTS_ATOL = 2e-3


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine every op waits for it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ------------------------------------------------------------------------------------------ reference fixtures


def _toy_denoiser(trace: list[np.ndarray]):
    """The README's deterministic stand-in for MDM (section 3.11), in float32, batched over cond/uncond rows."""
    def denoise(x: np.ndarray, model_t: np.ndarray, text_emb: np.ndarray, uncond: np.ndarray) -> np.ndarray:
        trace.append(model_t.copy())
        j = np.arange(x.shape[1], dtype=np.float32).reshape(1, -1, 1, 1)
        f = np.arange(x.shape[3], dtype=np.float32).reshape(1, 1, 1, -1)
        g = (np.float32(1) / (np.float32(1) + model_t.astype(np.float32) / np.float32(10))).reshape(-1, 1, 1, 1)
        cond = np.float32(0.8) * np.tanh(x) + np.float32(0.3) * g * np.sin(np.float32(0.05) * j + np.float32(0.4) * f)
        free = np.float32(0.5) * np.tanh(x) - np.float32(0.2) * g * np.cos(np.float32(0.03) * j + np.float32(0.2) * f)
        return np.where(uncond.reshape(-1, 1, 1, 1), free, cond).astype(np.float32)

    return denoise


@pytest.mark.reference
@pytest.mark.parametrize("case", fixture_cases(FAMILY) or [None], ids=lambda c: c["name"] if c else "none")
def test_numpy_diffusion_matches_reference(case):
    """Every mdm_diffusion case the edge runtime implements (all but the training loss) within cases.json tolerances."""
    folder, spec = fixture_family(FAMILY)
    if case is None:
        pytest.skip("cases.json lists no cases")
    kind, tol = case["kind"], spec["tolerance"].get(case["kind"], {})
    data = dict(np.load(folder / case["file"], allow_pickle=False))

    def close(actual, expected, what: str) -> None:
        np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"], err_msg=what)

    if kind == "training_loss":
        pytest.skip("the training loss is not part of the torch-free runtime (tests/test_diffusion.py covers it)")
    if kind == "cfg":
        close(guided_combine(data["out_cond"], data["out_uncond"], data["scale"]), data["guided"], "guided")
        return
    diffusion = NumpyDiffusion(case["T"], "cosine", case.get("spec"))
    if kind == "schedule":
        for key in SCHEDULE_KEYS:
            close(getattr(diffusion, key), data[key], key)
        np.testing.assert_array_equal(diffusion.timestep_map, data["timestep_map"])
    elif kind == "respaced":
        assert diffusion.num_steps == case["num_steps"]
        np.testing.assert_array_equal(diffusion.timestep_map, data["timestep_map"])
        np.testing.assert_array_equal(diffusion.timestep_map, data["use_timesteps"])
        for key in SCHEDULE_KEYS:
            close(getattr(diffusion, key), data[key], key)
    elif kind in ("p_sample", "ddim_step"):
        for k in range(data["t"].shape[0]):
            t, x, out, noise = data["t"][k], data["x_t"][k], data["model_output"][k], data["noise"][k]
            np.testing.assert_array_equal(diffusion.timestep_map[t], data["model_t"][k])
            if kind == "p_sample":
                close(diffusion.ddpm_step(x, out, t, np.zeros_like(noise)), data["mean"][k], f"mean step {k}")
                close(diffusion.ddpm_step(x, out, t, noise), data["sample"][k], f"sample step {k}")
                close(diffusion.coef("posterior_log_variance_clipped", t).ravel(), data["log_variance"][k], "log var")
            else:
                close(diffusion.predict_eps(x, out, t), data["eps"][k], f"eps step {k}")
                close(diffusion.ddim_step(x, out, t, case["eta"], noise), data["sample"][k], f"sample step {k}")
    elif kind == "loop":
        trace: list[np.ndarray] = []
        firsts: list[np.ndarray] = []
        noise = SamplingNoise(data["init_noise"], data["step_noise"])
        sample = sample_loop(_toy_denoiser(trace), np.zeros((data["init_noise"].shape[0], 4), np.float32), noise,
                             diffusion, sampler=case["sampler"], guidance=case["guidance_scale"],
                             eta=case.get("eta", 0.0), on_step=lambda k, x: firsts.append(x) if k == 0 else None)
        batch = data["init_noise"].shape[0]
        np.testing.assert_array_equal(np.stack([m[:batch] for m in trace]), data["model_t"])
        np.testing.assert_array_equal(np.stack([m[batch:] for m in trace]), data["model_t"])
        close(firsts[0], data["first_sample"], "first sample")
        close(sample, data["sample"], "final sample")
    else:
        pytest.fail(f"unknown case kind {kind!r} in {FAMILY}/cases.json")


# ------------------------------------------------------------------------------------------ export folder


@pytest.fixture(scope="module")
def tiny_model(tiny_export):
    return tiny_export[0]


@pytest.fixture(scope="module")
def export_dir(tiny_export) -> Path:
    return tiny_export[1]


def _torch_ddpm(model, prompts: list[str], noise, steps: int, guidance: float) -> np.ndarray:
    from kpop_helpers.diffusion import cfg_model_fn
    from kpop_helpers.generate import sampling_diffusion
    from kpop_helpers.text import get_text_encoder

    diffusion = sampling_diffusion(model.cfg.diffusion_steps, "ddpm", steps)
    emb = get_text_encoder("minilm").encode(prompts)
    return diffusion.p_sample_loop(cfg_model_fn(model, emb, guidance), noise=torch.from_numpy(noise.initial),
                                   step_noise=torch.from_numpy(noise.steps), progress=False).numpy()


@pytest.mark.parametrize("sampler,steps,frames", [("ddim", 10, 120), ("ddpm", 10, 40)])
def test_edge_matches_torch_generator_on_the_same_noise(export_dir, tiny_model, sampler, steps, frames):
    """fp32 ONNX edge loop vs kpop_helpers.generate / the torch diffusion loop, noise from numpy in both."""
    from kpop_helpers.generate import generate
    from kpop_helpers.motion.features import features_to_joints

    edge = EdgeGenerator(export_dir, variant="fp32", threads=1)
    joints = edge.generate(PROMPTS, frames=frames, steps=steps, seed=11, sampler=sampler)
    result = edge.last
    noise = draw_noise(11, len(PROMPTS), frames, result.steps, stochastic=sampler == "ddpm")
    if sampler == "ddim":
        ref = generate(tiny_model, PROMPTS, frames=frames, sampler="ddim", steps=steps,
                       noise=torch.from_numpy(noise.initial), progress=False)
        ref_sample, ref_joints = ref.sample.numpy(), ref.joints
    else:
        ref_sample = _torch_ddpm(tiny_model, PROMPTS, noise, steps, 2.5)
        ref_joints = features_to_joints(tiny_model.stats.denormalize(ref_sample[:, :, 0].transpose(0, 2, 1)))
    assert joints.shape == (len(PROMPTS), frames, 22, 3)
    sample_err = float(np.abs(result.sample - ref_sample).max())
    joints_err = float(np.abs(joints - ref_joints).max())
    assert sample_err <= SAMPLE_ATOL, f"{sampler}: sample max abs {sample_err:.2e}"
    assert joints_err <= JOINTS_ATOL, f"{sampler}: joints max abs {joints_err * 1000:.3f} mm"
    # the same seed reproduces; another seed does not
    np.testing.assert_array_equal(edge.generate(PROMPTS, frames=frames, steps=steps, seed=11, sampler=sampler), joints)
    assert np.abs(edge.generate(PROMPTS, frames=frames, steps=steps, seed=12, sampler=sampler) - joints).max() > 1e-3


def test_generate_defaults_to_the_exports_own_sampler(export_dir, tmp_path):
    """A model shipped with sampling {ddpm, 4 steps} samples that way unless the caller asks otherwise."""
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["sampling"].update(sampler="ddpm", steps=4, guidance=1.5)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    edge = EdgeGenerator(copy, variant="fp32", threads=1)
    assert edge.sampling == {"sampler": "ddpm", "steps": 4, "guidance": 1.5, "eta": 0.0}
    joints = edge.generate(PROMPTS[:1], frames=20, seed=3)
    assert (edge.last.sampler, edge.last.steps, edge.last.guidance) == ("ddpm", 4, 1.5)
    np.testing.assert_array_equal(joints, edge.generate(PROMPTS[:1], frames=20, seed=3, sampler="ddpm", steps=4,
                                                        guidance=1.5))
    edge.generate(PROMPTS[:1], frames=20, seed=3, sampler="ddim", steps=2)  # explicit arguments win
    assert (edge.last.sampler, edge.last.steps, edge.last.guidance) == ("ddim", 2, 1.5)
    del manifest["sampling"]["steps"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"manifest.json.*sampling.*missing keys \['steps'\]"):
        EdgeGenerator(copy, variant="fp32", threads=1).generate(PROMPTS[:1], frames=20)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_preview_comparison_shares_the_noise_of_the_exports_sampler(export_dir, tiny_model, tmp_path, sampler):
    """compare_variants: PyTorch and the fp32 ONNX variant from the same initial and per-step noise agree."""
    import shutil

    from kpop_helpers.pipeline import compare_variants

    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["sampling"].update(sampler=sampler, steps=5)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    motions = compare_variants(tiny_model, copy, PROMPTS[0], frames=24, variants=("fp32", "int8"), seed=4)
    reference = motions.pop("fp32 (PyTorch)")
    assert set(motions) == {"fp32 (ONNX Runtime)", "int8 (ONNX Runtime)"} and reference.shape == (24, 22, 3)
    assert np.abs(motions["fp32 (ONNX Runtime)"] - reference).max() <= JOINTS_ATOL


def test_edge_runs_without_torch_in_a_fresh_interpreter(export_dir):
    """Only numpy, onnxruntime and tokenizers: torch and transformers never enter sys.modules."""
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from kpop_helpers.edge import EdgeGenerator
        gen = EdgeGenerator({str(export_dir)!r}, variant="int8", threads=1)
        joints = gen.generate(["a dancer spins and jumps"], frames=60, steps=10, seed=0)
        print(json.dumps({{"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                           "shape": list(joints.shape), "finite": bool(np.isfinite(joints).all()),
                           "peak_rss_mib": gen.last.peak_rss_mib, "timings": gen.last.timings}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["torch"] is False and report["transformers"] is False
    assert report["shape"] == [1, 60, 22, 3] and report["finite"]
    assert report["peak_rss_mib"] is not None and report["peak_rss_mib"] <= 200.0, report


def test_onnx_text_encoder_and_precomputed_embeddings_agree(export_dir):
    """The exported prompt embedding equals the ONNX tower's for the same prompt; unknown prompts still encode."""
    from kpop_helpers.edge.text import OnnxTextEncoder, PrecomputedEmbeddings

    manifest = json.loads((export_dir / "manifest.json").read_text())
    info = manifest["text_encoder"]
    tower = OnnxTextEncoder(export_dir / info["onnx"], export_dir / info["tokenizer"], name=info["name"],
                            dim=info["dim"])
    table = PrecomputedEmbeddings(export_dir / info["prompt_embeddings"], name=info["name"], dim=info["dim"])
    np.testing.assert_allclose(table.encode(PROMPTS[:1]), tower.encode(PROMPTS[:1]), atol=1e-5)
    with pytest.raises(DataError, match="not precomputed"):
        table.encode(["a prompt nobody exported"])
    edge = EdgeGenerator(export_dir, variant="int8", threads=1)
    both = edge.encode([PROMPTS[0], "a prompt nobody exported"])
    assert both.shape == (2, info["dim"]) and np.allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-5)


def test_int8_edge_variant_stays_close_to_fp32(export_dir):
    """Same noise, fp32 vs int8 ONNX: normalised samples differ by at most a few percent (RMS)."""
    fp32 = EdgeGenerator(export_dir, variant="fp32", threads=1)
    int8 = EdgeGenerator(export_dir, variant="int8", threads=1)
    fp32.generate(PROMPTS, frames=80, steps=10, seed=5)
    int8.generate(PROMPTS, frames=80, steps=10, seed=5)
    a, b = fp32.last.sample, int8.last.sample
    rel = float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(a ** 2)))
    assert rel < 0.1, f"int8 vs fp32 sample relative RMS {rel:.3f}"


def test_edge_rejects_bad_requests_with_clear_errors(export_dir, tmp_path):
    edge = EdgeGenerator(export_dir, variant="fp32", threads=1)
    with pytest.raises(ValueError, match=r"1 <= frames <= 12000"):  # longer than the model is windows, not this
        edge.generate(PROMPTS, frames=0)
    with pytest.raises(ValueError, match="integer stride"):
        edge.generate(PROMPTS, frames=20, steps=20, sampler="ddim")  # 20 DDIM steps cannot be cut from 50
    with pytest.raises(DataError, match=r"one of \['fp32', 'int8'\]"):
        EdgeGenerator(export_dir, variant="fp16")
    with pytest.raises(DataError, match="manifest.json"):
        EdgeGenerator(tmp_path)
