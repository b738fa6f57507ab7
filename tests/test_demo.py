"""`python -m kpop_helpers.demo --smoke`: the whole pipeline end to end, plus the pipeline's small helpers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kpop_helpers.data.clip import DataError
from kpop_helpers.pipeline import (
    FULL, SMOKE, DataResult, FinetuneResult, WorkDirs, load_result, resolve_work_dir, save_result, training_steps,
    write_edge_config, write_report,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_demo(tmp_path_factory):
    """Run the smoke demo once, from an empty folder, into <tmp>/out; returns (cwd, out, seconds, stderr)."""
    cwd = tmp_path_factory.mktemp("demo_cwd")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "kpop_helpers.demo", "--smoke", "--out", "out"], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    return cwd, cwd / "out", seconds, proc.stderr


def test_smoke_demo_writes_only_into_its_out_folder(smoke_demo):
    cwd, out, seconds, stderr = smoke_demo
    print(f"smoke demo: {seconds:.1f} s")
    assert sorted(p.name for p in cwd.iterdir()) == ["out"], "nothing (data/, checkpoints/) beside --out"
    assert f"report: {out.resolve() / 'report.md'}" in stderr
    # A progress bar per stage.
    for stage in ("prepare data", "fine-tune", "compress", "compress + export", "benchmark", "render"):
        assert f"{stage}: 100%" in stderr, f"no finished progress bar for {stage}"


def test_smoke_report_links_resolve_to_valid_images(smoke_demo):
    from PIL import Image

    _, out, _, _ = smoke_demo
    report = (out / "report.md").read_text()
    for heading in ("## Data", "## Fine-tuning", "## Compression", "## Export and parity", "## Benchmark",
                    "## Sample dances", "## Where things are", "| **total** |"):
        assert heading in report
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    gifs = [p for p in images if p.endswith(".gif")]
    pngs = [p for p in images if p.endswith(".png")]
    assert len(gifs) >= 3 and {"checkpoints/training_curve.png", "benchmark/pareto.png"} <= set(pngs)
    for rel in images:
        with Image.open(out / rel) as img:
            img.verify()
    for rel in gifs:
        with Image.open(out / rel) as img:
            assert img.is_animated and img.n_frames > 10, rel


def test_smoke_report_holds_the_manifest_parity_and_benchmark_numbers(smoke_demo):
    from kpop_helpers.edge import read_manifest
    from kpop_helpers.pipeline.common import fmt

    _, out, _, _ = smoke_demo
    report = (out / "report.md").read_text()
    manifest = read_manifest(out / "export")
    fp32 = manifest["variants"]["fp32"]
    assert fp32["parity"]["passed"] and fp32["parity"]["max_abs"] <= fp32["parity"]["atol"]
    for name, entry in manifest["variants"].items():
        assert (out / "export" / entry["file"]).is_file()
        if entry.get("parity"):
            assert f"| {name} | {entry['file']} |" in report
            assert fmt(entry["parity"]["max_abs"]) in report
    results = json.loads((out / "benchmark" / "results.json").read_text())
    assert results["rows"] and {"variant", "step_ms_p50", "file_size_mb"} <= set(results["rows"][0])
    assert "ort_int8" in report and "| variant | runtime |" in report
    # Every stage left a result.json the notebooks can read back; the fine-tune ran the smoke size.
    run = load_result(FinetuneResult, out / "checkpoints")
    assert run.step == training_steps(None, smoke=True) and Path(run.weights).is_file()
    with np.load(out / "previews" / "motions.npz", allow_pickle=False) as motions:
        assert motions["joints"].shape[1:] == (SMOKE.preview_frames, 22, 3)
        assert np.isfinite(motions["joints"]).all()


def test_training_steps_rule():
    assert training_steps(None, smoke=False) == FULL.steps
    assert training_steps(600, smoke=False) == 600
    assert training_steps(600, smoke=True) == 6 and training_steps(800, smoke=True) == 8
    assert training_steps(50, smoke=True) == 2
    with pytest.raises(ValueError):
        training_steps(0, smoke=False)


def test_resolve_work_dir_prefers_argument_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KPOP_WORK_DIR", str(tmp_path / "env"))
    assert resolve_work_dir(str(tmp_path / "arg")).root == (tmp_path / "arg").resolve()
    assert resolve_work_dir("").root == (tmp_path / "env").resolve()
    monkeypatch.delenv("KPOP_WORK_DIR")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert resolve_work_dir(None).root == (tmp_path / "outputs" / "nb").resolve()


def test_write_edge_config_applies_changes_and_rejects_bad_values(tmp_path):
    from kpop_helpers.config import EdgeConfig

    path = write_edge_config(tmp_path / "edge.json", base=REPO / "edge_config.json", int8=False,
                             pruning_kind="width", sparsity=0.5, recovery_steps=7, sampling_steps=20)
    cfg = EdgeConfig.load(path)
    assert not cfg.quantization.enabled and cfg.pruning.kind == "width" and cfg.pruning.sparsity == 0.5
    assert cfg.pruning.recovery_steps == 7 and cfg.sampling.steps == 20
    with pytest.raises(DataError, match="sparsity"):
        write_edge_config(tmp_path / "bad.json", base=REPO / "edge_config.json", sparsity=1.5)


def test_stage_results_round_trip_and_reject_foreign_files(tmp_path):
    result = DataResult(data_dir="d", train="d/train.npz", val=None, metadata="d/metadata.json", stats_dir="d/stats",
                        num_clips=3, num_train=2, num_val=1, feature_frames=40, seconds=float("nan"))
    save_result(result, tmp_path)
    back = load_result(DataResult, tmp_path)
    assert back.num_clips == 3 and back.val is None and back.seconds is None  # NaN is stored as null
    assert load_result(DataResult, tmp_path / "absent") is None
    (tmp_path / "result.json").write_text(json.dumps({"data_dir": "d"}))
    with pytest.raises(DataError, match="missing fields"):
        load_result(DataResult, tmp_path)


def test_write_report_with_only_some_stages(tmp_path):
    data = DataResult(data_dir=str(tmp_path / "data"), train=str(tmp_path / "data" / "train.npz"), val=None,
                      metadata="m", stats_dir=str(tmp_path / "data" / "stats"), num_clips=6, num_train=5, num_val=1,
                      feature_frames=400, seconds=0.1)
    path = write_report(tmp_path, data=data, timings={"prepare data": 0.1})
    text = path.read_text()
    assert "SYNTHETIC" in text and "6 clips" in text and "## Fine-tuning" not in text
    assert "[data/train.npz](data/train.npz)" in text
    assert WorkDirs(tmp_path).report == path


def test_a_fresh_demo_run_moves_only_a_pipeline_run_aside(tmp_path):
    from kpop_helpers.demo import retire_previous_run

    users = tmp_path / "checkpoints"
    users.mkdir()
    (users / "checkpoint_epoch3_step900.pt").write_bytes(b"x")
    assert retire_previous_run(users) is None and (users / "checkpoint_epoch3_step900.pt").is_file()
    (users / "result.json").write_text("{}")
    (tmp_path / "checkpoints.previous").mkdir()
    moved = retire_previous_run(users)
    assert moved == tmp_path / "checkpoints.previous" and not users.exists()
    assert (moved / "checkpoint_epoch3_step900.pt").is_file()
