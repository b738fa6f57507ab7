"""Compression: int8 (ORT with its accuracy guard, torch), fp16 weights, pruning (unstructured, FFN, width) with
the recovery fine-tune, few-step sampling, and the measured error of each variant."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from conftest import tiny_mdm
import torch

from kpop_helpers.compress import (
    GenerationSetup, QuantizationError, compressed_size_bytes, convert_onnx_fp16, count_parameters, few_step_errors,
    measure_variant, prune_ffn, prune_model, prune_unstructured, prune_width, quantize_onnx_int8, quantize_torch_int8,
    recovery_finetune,
)
from kpop_helpers.export import export_onnx_file, onnx_runner, parity_inputs, relative_rms, torch_runner
from kpop_helpers.model import MDM, load_mdm, save_mdm


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # module-scoped: one thread for the whole file


@pytest.fixture(scope="module")
def tiny() -> MDM:
    return tiny_mdm()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, tiny):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx_file(tiny, path)
    return path


def _max_abs(a: MDM | torch.nn.Module, b: torch.nn.Module, cfg) -> float:
    return max(float(np.abs(torch_runner(a)(*x) - torch_runner(b)(*x)).max()) for x in parity_inputs(cfg))


# ------------------------------------------------------------------------------------------ int8


def test_int8_default_settings_keep_error_low(tmp_path, tiny, tiny_onnx):
    """per-channel QInt8 + reduce_range: measured error and size against the fp32 ONNX model."""
    result = quantize_onnx_int8(tiny_onnx, tmp_path / "int8.onnx", tiny.cfg)
    assert (tmp_path / "int8.onnx").is_file() and not result.fell_back
    assert result.per_channel and result.reduce_range
    assert result.rel_rms < 0.05, result.attempts
    assert result.size_ratio < 0.6, f"int8 file is {result.size_ratio:.2f} of fp32"
    # the written file is the one that was measured
    x = parity_inputs(tiny.cfg)[2]
    assert relative_rms(onnx_runner(tiny_onnx)(*x), onnx_runner(tmp_path / "int8.onnx")(*x)) < 0.05


@pytest.fixture(scope="module")
def skewed_onnx(tmp_path_factory):
    """A function-preserving reparametrisation that per-tensor int8 cannot represent: q x30, k /30, v /30 with
    out_proj x30. Outputs are unchanged, but one scale per in_proj matrix rounds k and v to almost nothing."""
    model = tiny_mdm()
    reference = copy.deepcopy(model)
    d = model.cfg.latent_dim
    with torch.no_grad():
        for layer in model.seqTransEncoder.layers:
            attn = layer.self_attn
            for rows, factor in ((slice(0, d), 30.0), (slice(d, 2 * d), 1 / 30), (slice(2 * d, 3 * d), 1 / 30)):
                attn.in_proj_weight[rows] *= factor
                attn.in_proj_bias[rows] *= factor
            attn.out_proj.weight *= 30.0
    assert _max_abs(reference, model, model.cfg) < 1e-5
    path = tmp_path_factory.mktemp("skewed") / "model.onnx"
    export_onnx_file(model, path)
    return model, path


def test_int8_guard_refuses_per_tensor_settings_and_falls_back(tmp_path, skewed_onnx):
    model, path = skewed_onnx
    with pytest.warns(RuntimeWarning, match="fell back to per_channel=True, reduce_range=True"):
        result = quantize_onnx_int8(path, tmp_path / "int8.onnx", model.cfg, per_channel=False, reduce_range=False)
    bad, good = result.attempts
    assert bad["rel_rms"] > 0.2 and not bad["accepted"], bad  # measured ~0.41 on the development machine
    assert good["rel_rms"] < 0.05 and result.rel_rms == good["rel_rms"], good
    assert result.fell_back and result.per_channel and result.reduce_range
    # the file on disk is the safe one
    measured = relative_rms(onnx_runner(path)(*parity_inputs(model.cfg)[1]),
                            onnx_runner(tmp_path / "int8.onnx")(*parity_inputs(model.cfg)[1]))
    assert measured < 0.05


def test_int8_guard_without_fallback_writes_nothing(tmp_path, skewed_onnx):
    model, path = skewed_onnx
    with pytest.raises(QuantizationError, match="too inaccurate"):
        quantize_onnx_int8(path, tmp_path / "int8.onnx", model.cfg, per_channel=False, reduce_range=False,
                           fallback=False)
    assert list(tmp_path.iterdir()) == []


def test_torch_int8_covers_linear_layers_but_not_attention_projections(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the torch.ao deprecation is handled inside
        quantized, coverage = quantize_torch_int8(tiny)
    assert "seqTransEncoder.layers.0.linear1" in coverage.quantized_layers
    assert "output_process.poseFinal" in coverage.quantized_layers
    assert "seqTransEncoder.layers.0.self_attn.in_proj_weight" in coverage.fp32_layers
    assert "seqTransEncoder.layers.0.self_attn.out_proj.weight" in coverage.fp32_layers
    assert 0.3 < coverage.fraction < 1.0
    assert type(tiny.seqTransEncoder.layers[0].linear1) is torch.nn.Linear  # the input model is untouched
    x = parity_inputs(tiny.cfg)[3]
    assert relative_rms(torch_runner(tiny)(*x), torch_runner(quantized)(*x)) < 0.05


def test_fp16_weights_halve_the_file_and_still_run_in_ort(tmp_path, tiny, tiny_onnx):
    import onnx

    result = convert_onnx_fp16(tiny_onnx, tmp_path / "fp16.onnx")
    weight_bytes = [sum(len(i.raw_data) for i in onnx.load(str(p)).graph.initializer)
                    for p in (tiny_onnx, tmp_path / "fp16.onnx")]
    # The tiny graph's node metadata is a third of its file; the weights themselves halve.
    assert result.converted > 10 and weight_bytes[1] < 0.52 * weight_bytes[0]
    assert result.size_bytes < result.fp32_size_bytes
    error = measure_variant("fp16", onnx_runner(tiny_onnx), onnx_runner(tmp_path / "fp16.onnx"), tiny.cfg)
    assert 0 < error.denoiser_rel_rms < 1e-3 and error.denoiser_max_abs < 1e-2


# ------------------------------------------------------------------------------------------ pruning


def test_unstructured_pruning_reports_real_sparsity_and_only_compresses(tmp_path, tiny):
    pruned, report = prune_unstructured(tiny, 0.3)
    assert report.achieved == pytest.approx(0.3, abs=0.005)
    assert report.params_after == report.params_before == count_parameters(tiny)
    zeros = sum(int((p == 0).sum()) for n, p in pruned.named_parameters() if p.ndim == 2)
    assert zeros >= 0.29 * sum(p.numel() for n, p in pruned.named_parameters() if p.ndim == 2)
    save_mdm(tiny, tmp_path / "dense.safetensors")
    save_mdm(pruned, tmp_path / "sparse.safetensors")
    dense, sparse = tmp_path / "dense.safetensors", tmp_path / "sparse.safetensors"
    assert abs(dense.stat().st_size - sparse.stat().st_size) < 1024  # same shapes, same raw size
    assert compressed_size_bytes(sparse) < 0.9 * compressed_size_bytes(dense)


@pytest.mark.parametrize("kind", ["ffn", "width"])
def test_structured_pruning_shrinks_runs_reloads_and_exports(tmp_path, tiny, kind):
    pruned, report = prune_model(tiny, kind, 0.3)
    assert report.params_before == count_parameters(tiny)
    assert report.params_after < 0.95 * report.params_before
    assert count_parameters(pruned) == report.params_after
    if kind == "ffn":
        assert pruned.cfg.ff_size < tiny.cfg.ff_size == 128
        assert all(layer.linear1.out_features == pruned.cfg.ff_size for layer in pruned.seqTransEncoder.layers)
    else:
        assert pruned.cfg.latent_dim < tiny.cfg.latent_dim
        assert pruned.cfg.latent_dim % pruned.cfg.num_heads == 0 and pruned.cfg.num_heads == tiny.cfg.num_heads
        assert pruned.sequence_pos_encoder.pe.shape[-1] == pruned.cfg.latent_dim
        assert pruned.seqTransEncoder.layers[0].self_attn.head_dim == pruned.cfg.latent_dim // pruned.cfg.num_heads
    x = parity_inputs(tiny.cfg)[3]
    out = torch_runner(pruned)(*x)
    assert out.shape == x[0].shape and np.isfinite(out).all()
    save_mdm(pruned, tmp_path / "pruned.safetensors")
    reloaded = load_mdm(tmp_path / "pruned.safetensors")
    assert reloaded.cfg.to_dict() == pruned.cfg.to_dict()
    assert _max_abs(pruned, reloaded, tiny.cfg) == 0.0
    record = export_onnx_file(reloaded, tmp_path / "pruned.onnx")
    assert record.parity["passed"] and record.parity["max_abs"] <= 1e-4
    assert record.size_bytes == (tmp_path / "pruned.onnx").stat().st_size


def test_ffn_pruning_removes_exactly_the_dead_channels():
    """Channels whose linear2 column is zero contribute nothing; importance must pick them, output unchanged."""
    model = tiny_mdm(1)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.seqTransEncoder.layers:
            layer.linear2.weight[:, torch.randperm(128, generator=generator)[:40]] = 0.0
    pruned, report = prune_ffn(model, 40 / 128, multiple_of=1)
    assert pruned.cfg.ff_size == 88 and report.achieved == pytest.approx(40 / 128)
    assert _max_abs(model, pruned, model.cfg) < 1e-5


def test_width_pruning_by_zero_is_the_identity():
    model = tiny_mdm(2)
    pruned, _ = prune_width(model, 0.0)
    assert _max_abs(model, pruned, model.cfg) == 0.0


def test_recovery_finetune_uses_the_trainer(tmp_path):
    from kpop_helpers.data.io import save_npz
    from kpop_helpers.data.sample import generate_sample_clips
    from kpop_helpers.train import TrainConfig

    save_npz(tmp_path / "train.npz", generate_sample_clips(8, seed=1))
    model = tiny_mdm(3)
    pruned, _ = prune_ffn(model, 0.3)
    before = {k: v.clone() for k, v in pruned.state_dict().items()}
    cfg = TrainConfig(data=str(tmp_path / "train.npz"), out=str(tmp_path / "run"), batch_size=4, seed=0)
    tuned, result = recovery_finetune(pruned, cfg, steps=6, progress=False)
    assert result.step == 6 and np.isfinite(result.train_loss)
    assert tuned.cfg.ff_size == pruned.cfg.ff_size and not tuned.training
    assert any(not torch.equal(before[k], v) for k, v in tuned.state_dict().items())
    assert tuned.stats is not None


# ------------------------------------------------------------------------------------------ errors, few steps


def test_variant_error_reports_denoiser_and_joint_errors(tiny, tiny_onnx):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((2, tiny.cfg.text_dim)).astype(np.float32)
    setup = GenerationSetup(text_emb=emb, mean=tiny.stats.mean, std=tiny.stats.std,
                            diffusion_steps=tiny.cfg.diffusion_steps, frames=40, steps=10)
    same = measure_variant("fp32", torch_runner(tiny), onnx_runner(tiny_onnx), tiny.cfg, setup=setup)
    assert same.denoiser_max_abs < 1e-4 and same.joints_mpjpe_mm < 1.0 and same.frames == 40
    pruned, _ = prune_ffn(tiny, 0.5)
    worse = measure_variant("pruned", torch_runner(tiny), torch_runner(pruned), tiny.cfg, setup=setup)
    assert worse.denoiser_rel_rms > 10 * same.denoiser_rel_rms
    assert worse.joints_mpjpe_mm > same.joints_mpjpe_mm and worse.joints_root_relative_mm > 0


def test_few_step_sampling_errors(tiny):
    emb = np.random.default_rng(1).standard_normal((1, tiny.cfg.text_dim)).astype(np.float32)
    results = {r.steps: r for r in few_step_errors(torch_runner(tiny), emb, tiny.stats.mean, tiny.stats.std,
                                                    diffusion_steps=50, frames=30, steps=(50, 20, 10))}
    assert results[50].reference_steps == 50 and results[50].joints_mpjpe_mm == 0.0
    assert results[20].skipped and "integer stride" in results[20].skipped
    assert results[10].joints_mpjpe_mm > 0 and results[10].sample_rel_rms > 0 and results[10].time_s > 0


@pytest.mark.slow
def test_edge_benchmark_smoke_run(tmp_path):
    """benchmarks/bench_edge.py --smoke: every variant measured, goals evaluated, JSON and Markdown written."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_edge.py"), "--smoke", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "edge.json").read_text())
    names = {row["variant"] for row in result["rows"]}
    assert names >= {"torch_fp32", "torchscript_fp32", "torch_int8", "ort_fp32", "ort_int8", "ort_fp16",
                     "ort_pruned_unstructured", "ort_pruned_ffn", "ort_pruned_width"}
    assert all(row["step_ms_p50"] > 0 and row["file_size_mb"] > 0 for row in result["rows"])
    edge = {row["variant"]: row for row in result["edge"]}
    assert edge["edge_int8_ddim10"]["torch_imported"] is False and edge["edge_int8_ddim10"]["gen_time_s"] > 0
    assert set(result["goals"]["met"]) == {"int8_size", "int8_speed", "edge_time"}
    assert "| ort_int8 |" in (tmp_path / "edge.md").read_text()
