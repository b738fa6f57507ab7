"""Export: the CLI writes every artifact with real parity numbers, and each artifact, run in its own runtime
(ONNX Runtime, torch.jit.load, torch.export.load), reproduces the PyTorch model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_mdm
import torch

from kpop_helpers.config import EdgeConfig
from kpop_helpers.data.clip import DataError
from kpop_helpers.export import (
    ModelExporter, ParityError, export_onnx_file, load_model_for_export, onnx_runner, parity_inputs, relative_rms,
    torch_export_runner, torch_runner, torchscript_runner,
)
from kpop_helpers.model import MDM, get_preset, save_mdm
from tests.conftest import REPO_ROOT

PROMPT = "a cute aegyo dance with small bounces"
EXPECTED_FILES = ("model.onnx", "model_int8.onnx", "model_fp16.onnx", "model_scripted.pt", "model.pt2",
                  "model_pruned_ffn.onnx", "model_pruned_ffn_int8.onnx", "model_pruned_ffn.safetensors",
                  "text_encoder.onnx", "text_encoder.onnx.data", "tokenizer.json", "prompt_embeddings.npz",
                  "Mean.npy", "Std.npy", "manifest.json")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # module-scoped: one thread for the whole file


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, dict]:
    """`python -m kpop_helpers.export --format all` on a saved tiny model: int8, fp16, FFN pruning + recovery."""
    from kpop_helpers.data.io import save_npz
    from kpop_helpers.data.sample import generate_sample_clips

    tmp = tmp_path_factory.mktemp("export")
    weights = save_mdm(tiny_mdm(), tmp / "weights" / "model.safetensors")
    save_npz(tmp / "train.npz", generate_sample_clips(8, seed=2))
    EdgeConfig.from_dict({
        "optimization": {"quantization": {"enabled": True, "fp16": True},
                         "pruning": {"enabled": True, "kind": "ffn", "sparsity": 0.3, "recovery_steps": 3}},
        "sampling": {"steps": 10},
        "export": {"formats": ["onnx"], "text_encoder": "onnx", "prompts": [PROMPT]},
    }).save(tmp / "edge_config.json")
    out = tmp / "out"
    cmd = [sys.executable, "-m", "kpop_helpers.export", "--model-path", str(weights), "--output-dir", str(out),
           "--format", "all", "--config", str(tmp / "edge_config.json"), "--train-data", str(tmp / "train.npz"),
           "--threads", "1", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    return weights, out, summary


def test_cli_writes_every_artifact_and_a_truthful_manifest(exported):
    weights, out, summary = exported
    for name in EXPECTED_FILES:
        assert (out / name).is_file(), f"missing {name}"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temp files left behind"
    manifest = json.loads((out / "manifest.json").read_text())
    variants = manifest["variants"]
    assert set(summary["variants"]) == set(variants)
    for name, entry in variants.items():  # the graph file and, for int8, its external weights beside it
        data = out / (entry["file"] + ".data")
        assert entry["size_bytes"] == (out / entry["file"]).stat().st_size + (
            data.stat().st_size if data.is_file() else 0), name
        assert data.is_file() == (entry["precision"] == "int8" and entry["runtime"] == "onnxruntime"), name
    for name in ("fp32", "torchscript", "torch_export", "pruned_ffn"):
        parity = variants[name]["parity"]
        assert parity["passed"] and parity["max_abs"] <= 1e-4 and len(parity["cases"]) == 4, name
        assert {c["frames"] for c in parity["cases"]} == {37, 196} and {c["batch"] for c in parity["cases"]} == {1, 3}
    int8 = variants["int8"]
    assert int8["quantization"]["per_channel"] and int8["quantization"]["reduce_range"]
    assert int8["error"]["denoiser_rel_rms"] < 0.05 and int8["error"]["joints_mpjpe_mm"] is not None
    assert variants["pruned_ffn"]["recovery"]["done"] and variants["pruned_ffn"]["model_config"]["ff_size"] < 128
    assert variants["pruned_ffn"]["params"] < variants["fp32"]["params"]
    assert manifest["text_encoder"]["parity"]["max_abs"] <= 1e-4 and manifest["text_encoder"]["dim"] == 384
    assert set(manifest["versions"]) >= {"torch", "onnx", "onnxruntime"}
    assert manifest["sampling"]["steps"] == 10 and manifest["sampling"]["guidance"] == 2.5
    model = load_model_for_export(weights)
    np.testing.assert_array_equal(np.load(out / "Mean.npy"), model.stats.mean)
    np.testing.assert_array_equal(np.asarray(manifest["stats"]["std"], np.float32), model.stats.std)


def test_each_artifact_reproduces_pytorch_in_its_runtime(exported):
    """Fresh shapes (not the ones parity used at export time), in ORT, torch.jit.load and torch.export.load."""
    weights, out, _ = exported
    model = load_model_for_export(weights)
    reference = torch_runner(model)
    inputs = parity_inputs(model.cfg, shapes=[(2, 77), (4, 196), (1, 1)], seed=99)

    def worst(runner) -> tuple[float, float]:
        pairs = [(reference(*x), runner(*x)) for x in inputs]
        return max(float(np.abs(a - b).max()) for a, b in pairs), max(relative_rms(a, b) for a, b in pairs)

    for runner in (onnx_runner(out / "model.onnx"), torchscript_runner(out / "model_scripted.pt"),
                   torch_export_runner(out / "model.pt2")):
        assert worst(runner)[0] <= 1e-4
    assert worst(onnx_runner(out / "model_int8.onnx"))[1] < 0.05
    assert worst(onnx_runner(out / "model_fp16.onnx"))[1] < 1e-3
    pruned = load_model_for_export(out / "model_pruned_ffn.safetensors")
    pruned_reference = torch_runner(pruned)
    assert max(float(np.abs(pruned_reference(*x) - onnx_runner(out / "model_pruned_ffn.onnx")(*x)).max())
               for x in inputs) <= 1e-4


def test_onnx_text_encoder_matches_the_torch_encoder(exported):
    from kpop_helpers.edge.text import OnnxTextEncoder
    from kpop_helpers.text import get_text_encoder

    _, out, _ = exported
    prompts = ["two dancers mirror each other", "a slow ballad with flowing arms and a final pose", "jump"]
    onnx_encoder = OnnxTextEncoder(out / "text_encoder.onnx", out / "tokenizer.json", name="minilm", dim=384)
    expected = get_text_encoder("minilm").encode(prompts).numpy()
    assert np.abs(onnx_encoder.encode(prompts) - expected).max() <= 1e-4


def test_failed_parity_writes_nothing(tmp_path):
    """A tolerance no runtime can meet: the export fails with the numbers and leaves no file behind."""
    with pytest.raises(ParityError, match=r"max abs .* \(tolerance 0\.0e\+00\).*B=3 T=196") as info:
        export_onnx_file(tiny_mdm(), tmp_path / "model.onnx", atol=0.0)
    assert info.value.report.max_abs > 0
    assert list(tmp_path.iterdir()) == []


def test_official_size_preset_exports_with_parity(tmp_path):
    """17.9M parameters, T up to 196: ONNX parity holds and the unused positional rows are not shipped."""
    torch.manual_seed(0)
    model = MDM(get_preset("humanml_trans_enc_512")).eval()
    exporter = ModelExporter(None, None, model=model, threads=1)
    record = exporter.export_to_onnx(tmp_path / "model.onnx")
    assert model.num_parameters() == pytest.approx(17.9e6, rel=0.01)
    assert record.parity["passed"] and record.parity["max_abs"] <= 1e-4
    assert max(c["frames"] for c in record.parity["cases"]) == 196
    assert record.size_bytes < 76e6  # 71.5 MB of weights + the 1000-row table, not the 5000-row one


def test_exporter_loads_our_checkpoint_and_weight_formats(tmp_path):
    from kpop_helpers.checkpoints import CheckpointManager, export_weights

    model = tiny_mdm(4)
    ema = {k: v + 0.01 for k, v in model.state_dict().items()}
    manager = CheckpointManager(tmp_path / "ckpt", google_drive_sync=False)
    stats = {"mean": torch.from_numpy(model.stats.mean), "std": torch.from_numpy(model.stats.std)}
    path = manager.save_checkpoint(model, None, epoch=0, step=1, loss=0.5, ema=ema, model_config=model.cfg.to_dict(),
                                   stats=stats, text_encoder="minilm")
    manager.close()
    loaded = ModelExporter(path, None).load_model()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in ema.items())  # EMA weights preferred
    np.testing.assert_array_equal(loaded.stats.std, model.stats.std)
    exported = export_weights(model, tmp_path / "w.safetensors", config=model.cfg.to_dict(), stats=model.stats,
                              metadata={"text_encoder": "minilm"})
    again = load_model_for_export(exported)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())
    assert again.text_encoder_name == "minilm" and again.stats is not None


def test_cli_and_api_report_bad_input(tmp_path, capsys):
    from kpop_helpers.export.__main__ import main

    assert main(["--model-path", str(tmp_path / "missing.safetensors"), "--output-dir", str(tmp_path / "o")]) == 2
    assert "file not found" in capsys.readouterr().err
    model = tiny_mdm()
    model.stats = None
    with pytest.raises(DataError, match="normalisation statistics"):
        ModelExporter(None, None, model=model, progress=False).export_all(tmp_path / "o", ["onnx"])
    with pytest.raises(DataError, match="unknown formats"):
        ModelExporter(None, None, model=tiny_mdm(), progress=False).export_all(tmp_path / "o", ["tflite"])


def test_torch_int8_backend_writes_a_torchscript_variant(tmp_path):
    """quantization.backend 'torch': torch.ao dynamic int8 traced to TorchScript, with its coverage and error."""
    EdgeConfig.from_dict({
        "optimization": {"quantization": {"enabled": True, "backend": "torch", "fp16": False},
                         "pruning": {"enabled": False}},
        "export": {"formats": ["torchscript"], "text_encoder": "none"},
    }).save(tmp_path / "edge_config.json")
    manifest = ModelExporter(None, tmp_path / "edge_config.json", model=tiny_mdm(), threads=1,
                             progress=False).export_all(tmp_path / "out")
    assert set(manifest["variants"]) == {"torch_int8", "torchscript"} and manifest["text_encoder"]["mode"] == "none"
    entry = manifest["variants"]["torch_int8"]
    assert entry["runtime"] == "torchscript" and entry["precision"] == "int8"
    assert "seqTransEncoder.layers.0.self_attn.in_proj_weight" in entry["coverage"]["fp32_layers"]
    assert entry["error"]["denoiser_rel_rms"] < 0.05
    runner = torchscript_runner(tmp_path / "out" / entry["file"])
    x = parity_inputs(tiny_mdm().cfg)[3]
    assert relative_rms(torch_runner(tiny_mdm())(*x), runner(*x)) < 0.05
