"""Resume on purpose: run fingerprints in checkpoints, auto/fresh/finished runs, and the Drive mirror."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from kpop_helpers.data.clip import DataError
from kpop_helpers.data.io import save_npz
from kpop_helpers.data.sample import generate_sample_clips
from kpop_helpers.train import TrainConfig
from kpop_helpers.train.fingerprint import FINGERPRINT_KEY, RunMismatchError, run_fingerprint
from kpop_helpers.train.resume import resume_mode, verify_checkpoint_run
from kpop_helpers.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.npz"
    save_npz(path, generate_sample_clips(8, seed=3))
    return path


def _cfg(out: Path, data: Path, **overrides) -> TrainConfig:
    base = dict(data=str(data), out=str(out), preset="tiny", steps=4, batch_size=4, save_every=2, eval_every=4,
                log_every=2, wandb="off", sample_prompts=(), seed=0, max_checkpoints=3, resume="auto")
    return TrainConfig(**{**base, **overrides})


def _steps(folder: Path) -> list[int]:
    return sorted(int(p.stem.rsplit("step", 1)[1]) for p in folder.glob("checkpoint_*.pt"))


def _ckpt(folder: Path, step: int) -> Path:
    """The checkpoint of `step` in `folder` (its epoch number depends on how many windows the data cuts)."""
    return next(folder.glob(f"checkpoint_epoch*_step{step}.pt"))


def _stored_fingerprint(checkpoint: Path) -> dict:
    from kpop_helpers.checkpoints import decode_state

    return decode_state(torch.load(checkpoint, weights_only=True)["extra"])[FINGERPRINT_KEY]


@pytest.fixture
def finished_run(tmp_path, data) -> Path:
    """A 4-step run with checkpoints at steps 2 and 4 (local only)."""
    out = tmp_path / "run"
    Trainer(_cfg(out, data, resume="none"), progress=False).train()
    assert _steps(out) == [2, 4]
    return out


def test_fingerprint_fields_and_digests(tmp_path, data):
    weights = tmp_path / "base.safetensors"
    weights.write_bytes(b"not really weights, only hashed")
    stats = tmp_path / "stats"
    stats.mkdir()
    (stats / "Mean.npy").write_bytes(b"m")
    fp = run_fingerprint(_cfg(tmp_path, data, init=str(weights), stats=str(stats), val_data=str(data)))
    assert fp["init"] == "base.safetensors" and len(fp["init_sha256"]) == 64
    assert fp["data_sha256"] == fp["val_data_sha256"] and fp["stats_sha256"] is not None
    assert (fp["preset"], fp["text_encoder"], fp["diffusion_steps"], fp["max_frames"]) == ("tiny", "minilm", 1000, 196)
    scratch = run_fingerprint(_cfg(tmp_path, data))
    assert (scratch["init"], scratch["init_sha256"], scratch["val_data_sha256"], scratch["stats_sha256"]) == (
        "scratch", None, None, None)
    (stats / "Std.npy").write_bytes(b"s")  # a folder's digest follows its files
    assert run_fingerprint(_cfg(tmp_path, data, stats=str(stats)))["stats_sha256"] != fp["stats_sha256"]
    with pytest.raises(DataError, match="training data not found") as err:
        run_fingerprint(_cfg(tmp_path, tmp_path / "missing.npz"))
    assert err.value.path.endswith("missing.npz")


def test_resume_mode_rejects_a_typo_naming_the_field(tmp_path):
    assert [resume_mode(v) for v in ("auto", "fresh", "none", "", None)] == ["auto", "fresh", "none", "none", "none"]
    with pytest.raises(DataError, match="field 'resume'") as err:
        resume_mode("atuo")
    assert "'fresh'" in str(err.value)


def test_checkpoint_without_fingerprint_resumes_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="kpop_helpers.train.resume"):
        verify_checkpoint_run({"path": "old/checkpoint_epoch0_step2.pt"}, {"preset": "tiny"}, strict=True)
    assert "has no run fingerprint" in caplog.text and "checkpoint_epoch0_step2.pt" in caplog.text


def test_matching_auto_resume_continues(finished_run, data):
    trainer = Trainer(_cfg(finished_run, data, steps=6), progress=False)
    assert trainer.step == 4 and not trainer.already_finished
    assert trainer.precision.name == "fp32"  # CPU
    assert trainer.resumed_checkpoint == _ckpt(finished_run, 4).resolve()
    result = trainer.train()
    assert result.step == 6 and _steps(finished_run) == [2, 4, 6]
    assert _stored_fingerprint(_ckpt(finished_run, 6)) == trainer.fingerprint


def test_changed_preset_is_a_run_mismatch(finished_run, data):
    with pytest.raises(RunMismatchError) as err:
        Trainer(_cfg(finished_run, data, preset="small", steps=6), progress=False)
    text = str(err.value)
    assert _ckpt(finished_run, 4).name in text and "preset: stored 'tiny', now 'small'" in text
    assert 'RESUME="fresh"' in text and "RUN_NAME" in text and "size mismatch" not in text
    assert isinstance(err.value, DataError) and [d[0] for d in err.value.differences] == ["preset"]


def test_changed_data_is_a_run_mismatch(finished_run, tmp_path):
    other = tmp_path / "other.npz"
    save_npz(other, generate_sample_clips(8, seed=4))
    with pytest.raises(RunMismatchError, match=r"data_sha256: stored sha256 [0-9a-f]{12}\.\.\., now sha256"):
        Trainer(_cfg(finished_run, other, steps=6), progress=False)


def test_fresh_moves_old_checkpoints_aside_and_auto_then_resumes_the_fresh_run(finished_run, data):
    fresh = Trainer(_cfg(finished_run, data, steps=2, resume="fresh"), progress=False)
    assert fresh.step == 0 and len(fresh.archived_runs) == 1
    archived = fresh.archived_runs[0]
    assert archived.parent == finished_run / "previous" and _steps(archived) == [2, 4]
    assert _ckpt(archived, 4).with_suffix(".json").is_file() and (archived / "latest.json").is_file()
    assert _steps(finished_run) == []
    assert fresh.train().step == 2 and _steps(finished_run) == [2]
    # The old run's step 4 now lives in previous/: auto picks the fresh run's step 2 and goes on from there.
    again = Trainer(_cfg(finished_run, data, steps=4), progress=False)
    assert again.step == 2 and again.resumed_checkpoint.parent == finished_run.resolve()
    assert again.train().step == 4


def test_finished_run_trains_nothing_and_says_so(finished_run, data, caplog):
    before = {p.name: p.stat().st_mtime_ns for p in finished_run.glob("checkpoint_*.pt")}
    with caplog.at_level(logging.WARNING, logger="kpop_helpers.train.trainer"):
        trainer = Trainer(_cfg(finished_run, data, steps=4), progress=False)
    assert trainer.already_finished and trainer.step == 4
    assert "run already finished at step 4 (target 4)" in caplog.text and "resume='fresh'" in caplog.text
    history = list(trainer.history)
    result = trainer.train()
    assert result.step == 4 and result.history == history  # 0 steps trained
    assert {p.name: p.stat().st_mtime_ns for p in finished_run.glob("checkpoint_*.pt")} == before
    assert Path(result.checkpoint) == _ckpt(finished_run, 4).resolve() and Path(result.weights).is_file()


def test_fingerprint_travels_through_the_drive_mirror(tmp_path, data):
    local, drive = tmp_path / "local", tmp_path / "drive"
    Trainer(_cfg(local, data, drive_dir=str(drive), resume="none"), progress=False).train()
    assert _steps(drive) == [2, 4]
    assert _stored_fingerprint(_ckpt(drive, 4))["preset"] == "tiny"
    shutil.rmtree(local)  # a new Colab runtime: only Drive remembers the run
    with pytest.raises(RunMismatchError, match="preset: stored 'tiny', now 'small'") as err:
        Trainer(_cfg(local, data, drive_dir=str(drive), preset="small", steps=6), progress=False)
    assert "local and Drive checkpoints" in str(err.value)
    trainer = Trainer(_cfg(local, data, drive_dir=str(drive), steps=6), progress=False)
    assert trainer.step == 4 and trainer.resumed_checkpoint.name == _ckpt(drive, 4).name
    trainer.ckpt.close()
    # fresh moves the Drive copies aside too, so a later auto on a new runtime cannot find the old run.
    fresh = Trainer(_cfg(local, data, drive_dir=str(drive), resume="fresh"), progress=False)
    fresh.ckpt.close()
    assert fresh.step == 0 and _steps(drive) == [] and _steps(local) == []
    assert sorted(p.parent for p in fresh.archived_runs) == sorted([local / "previous", drive / "previous"])
    archived = {p.parent.parent.name: _steps(p) for p in fresh.archived_runs}
    assert archived == {"drive": [2, 4], "local": [4]}  # local only held the copy brought back from Drive
