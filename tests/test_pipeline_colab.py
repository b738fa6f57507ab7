"""The pipeline's Colab side in-process: the work folder on Drive, missing inputs, restored weights, results out.

`google.colab` is the test double of tests/colab_sim (the same one the notebook simulation uses), imported for
one test and removed again, with a temporary folder standing for /content.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kpop_helpers import pipeline
from kpop_helpers.data import DataError
from kpop_helpers.pipeline import MissingStageOutput, WorkDirs

SIM = Path(__file__).resolve().parent / "colab_sim"


@pytest.fixture
def colab(tmp_path, monkeypatch):
    """A simulated Colab runtime: /content in tmp_path, Drive = tmp_path/drive_account, google.colab importable."""
    content, drive = tmp_path / "content", tmp_path / "drive_account"
    content.mkdir()
    drive.mkdir()
    monkeypatch.setenv("KPOP_COLAB_CONTENT", str(content))
    monkeypatch.setenv("KPOP_SIM_DRIVE", str(drive))
    monkeypatch.setenv("KPOP_SIM_DOWNLOADS", str(tmp_path / "downloads.jsonl"))
    monkeypatch.delenv("KPOP_WORK_DIR", raising=False)
    monkeypatch.syspath_prepend(str(SIM))
    import google.colab  # noqa: F401  (the double)

    yield content, drive
    for name in [m for m in sys.modules if m == "google.colab" or m.startswith("google.colab.")]:
        del sys.modules[name]


def test_in_colab_the_work_folder_is_on_drive_and_scratch_is_local(colab, capsys):
    content, drive = colab
    work = pipeline.resolve_work_dir("", "my run/1")
    assert work.on_drive and work.run_name == "my_run_1"
    assert work.root == (content / "drive" / "MyDrive" / "kpop_work" / "my_run_1").absolute()
    assert (drive / "kpop_work" / "my_run_1").is_dir(), "the folder is on the Drive account"
    assert work.scratch == (content / "kpop_scratch" / "my_run_1").resolve()
    assert work.train_dir.parent == work.scratch and work.bench_scratch.parent == work.scratch
    assert work.weights.parent == work.root / "checkpoints"


def test_a_denied_mount_warns_and_the_work_folder_is_local(colab, monkeypatch, capsys):
    content, drive = colab
    monkeypatch.setenv("KPOP_SIM_DRIVE_FAIL", "timeout")
    work = pipeline.resolve_work_dir(None, "r")
    out = capsys.readouterr().out
    assert "could not be mounted" in out and "timeout" in out and "vanishes" in out
    assert not work.on_drive and work.root == (content / "kpop_work" / "r").resolve()
    assert not any(drive.iterdir())


def test_outside_colab_nothing_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("KPOP_WORK_DIR", str(tmp_path / "w"))
    work = pipeline.resolve_work_dir("", "anything")
    assert work.root == (tmp_path / "w").resolve() and not work.on_drive
    assert work.train_dir == work.checkpoints and work.bench_scratch == work.benchmark


def test_missing_inputs_name_the_file_and_the_notebook(tmp_path):
    work = WorkDirs(tmp_path, run_name="r1")
    with pytest.raises(MissingStageOutput, match=r"model_ema\.safetensors is missing: it is made by notebook "
                                                 r"02_finetune.*RUN_NAME = 'r1'"):
        pipeline.ensure_weights(work)
    with pytest.raises(MissingStageOutput, match=r"train\.npz.*01_setup"):
        pipeline.ensure_data(work)
    with pytest.raises(MissingStageOutput, match=r"manifest\.json.*04_export"):
        pipeline.ensure_export(work)
    assert not (tmp_path / "checkpoints").exists(), "no stand-in outside SMOKE"


def test_cut_off_training_is_restored_from_the_newest_checkpoint(tmp_path, one_torch_thread):
    from safetensors.numpy import load_file

    work = WorkDirs(tmp_path)
    data = pipeline.prepare_data(work.data, smoke=True, progress=False)
    run = pipeline.finetune(data.data_dir, work.checkpoints, smoke=True, steps=400, progress=False)
    trained = load_file(run.weights)
    # 02 was cut off after its last checkpoint, before the EMA export and result.json.
    Path(run.weights).unlink()
    (work.checkpoints / "result.json").unlink()
    restored = pipeline.ensure_weights(work)
    assert restored.step == run.step and restored.weights == str(work.weights)
    again = load_file(restored.weights)
    assert set(again) == set(trained)
    for key in trained:
        np.testing.assert_array_equal(again[key], trained[key])


def test_base_model_auto_follows_the_choice_recorded_by_01(tmp_path):
    (tmp_path / "assets.json").write_text(json.dumps({"base_model": "scratch", "official_checkpoint": None}))
    base = pipeline.base_model("auto", tmp_path, preset="tiny")
    assert base.name == "scratch" and base.preset == "tiny" and "01_setup" in base.reason
    (tmp_path / "assets.json").write_text(json.dumps({"base_model": "mystery"}))
    with pytest.raises(DataError, match="base_model"):
        pipeline.base_model("auto", tmp_path)


def test_own_clips_are_loaded_with_a_report_of_what_was_skipped(tmp_path):
    from kpop_helpers.data.io import save_json
    from kpop_helpers.data.sample import build_sample_dataset
    from kpop_helpers.data.io import load_clips

    build_sample_dataset(tmp_path / "sample", num_clips=12, progress=False)
    clips, _ = load_clips(tmp_path / "sample" / "train.npz", progress=False)
    mine = tmp_path / "mine"
    save_json(mine / "dances.json", clips[:6])
    (mine / "broken.json").write_text("{not json")
    data, report = pipeline.prepare_own_data(mine, tmp_path / "data", progress=False)
    assert data.num_clips == 6 and data.num_train + data.num_val == 6 and not data.synthetic
    assert "broken.json" in report and "1 skipped" in report
    assert (tmp_path / "data" / "stats" / "Mean.npy").is_file()
    with pytest.raises(DataError, match="usable clips"):
        pipeline.prepare_own_data(mine / "broken.json", tmp_path / "data2", progress=False)


def test_results_are_zipped_and_offered_for_download_in_colab(colab, capsys):
    content, drive = colab
    work = pipeline.resolve_work_dir("", "zipme")
    (work.root / "report.md").write_text("# report\n")
    (work.export).mkdir()
    (work.export / "manifest.json").write_text("{}")
    (work.root / "checkpoints").mkdir()
    (work.root / "checkpoints" / "checkpoint_000002.pt").write_bytes(b"big")
    archive = pipeline.finish_notebook(work, download=True)
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["export/manifest.json", "report.md"], "checkpoints stay on Drive"
    downloads = [json.loads(line) for line in (content.parent / "downloads.jsonl").read_text().splitlines()]
    assert downloads == [{"path": str(archive), "size": archive.stat().st_size}]
    out = capsys.readouterr().out
    assert "visible in Drive" in out and not (content / "drive" / "MyDrive").exists(), "Drive was unmounted"
