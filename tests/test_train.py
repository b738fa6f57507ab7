"""Trainer: determinism, exact resume after SIGKILL (real subprocesses), and a model that learns to move."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kpop_helpers.data.io import save_npz
from kpop_helpers.data.sample import generate_sample_clips
from kpop_helpers.train import TrainConfig
from kpop_helpers.train.resume_check import kill_and_resume, run_uninterrupted

STEPS = 12


@pytest.fixture(scope="module")
def train_npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.npz"
    save_npz(path, generate_sample_clips(12, seed=3))
    return path


def _config(tmp: Path, data: Path, **overrides) -> Path:
    cfg = TrainConfig(data=str(data), preset="tiny", steps=STEPS, batch_size=4, save_every=2, eval_every=6,
                      log_every=2, wandb="off", sample_prompts=(), seed=7, max_checkpoints=3, **overrides)
    path = tmp / "train_config.json"
    path.write_text(json.dumps(cfg.to_dict()))
    return path


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, train_npz) -> tuple[Path, dict[str, torch.Tensor], float]:
    tmp = tmp_path_factory.mktemp("ref")
    config = _config(tmp, train_npz)
    state, wall = run_uninterrupted(config, tmp / "run", STEPS)
    return config, state, wall


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_resume_after_sigkill_is_bit_identical(tmp_path, reference_run, trial):
    """Kill the trainer with SIGKILL at random moments (saves included), resume with --resume auto."""
    config, expected, wall = reference_run
    trial_result = kill_and_resume(config, tmp_path / "run", STEPS, expected, wall=wall, kills=2, seed=1000 + trial)
    assert trial_result.kills >= 1  # a resumed run can finish before its timer fires
    assert trial_result.identical, f"after {trial_result.kills} kills these tensors differ: {trial_result.differing[:5]}"


def test_same_seed_same_weights_in_process(tmp_path, train_npz):
    """Two in-process runs with the same seed give identical weights; another seed differs."""
    from kpop_helpers.train.trainer import Trainer

    def run(seed: int, name: str) -> dict[str, torch.Tensor]:
        cfg = TrainConfig(data=str(train_npz), out=str(tmp_path / name), preset="tiny", steps=4, batch_size=4,
                          save_every=4, eval_every=4, wandb="off", sample_prompts=(), seed=seed, resume="none")
        trainer = Trainer(cfg, progress=False)
        trainer.train()
        return {k: v.clone() for k, v in trainer.bare_model.state_dict().items()}

    a, b, c = run(1, "a"), run(1, "b"), run(2, "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_config_rejects_unknown_keys(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"stepz": 3}))
    with pytest.raises(ValueError, match="stepz"):
        TrainConfig.load(path)


@pytest.mark.slow
def test_small_model_learns_to_move(tmp_path):
    """A tiny model trained a few hundred steps on the sample set generates joints that move."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: a second thread only adds contention on a 2-core machine
    try:
        _train_and_check_motion(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _train_and_check_motion(tmp_path: Path) -> None:
    from kpop_helpers.generate import generate
    from kpop_helpers.train.trainer import Trainer

    data = tmp_path / "train.npz"
    save_npz(data, generate_sample_clips(24, seed=11))
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), preset="tiny", steps=300, batch_size=8,
                      save_every=300, eval_every=300, log_every=50, wandb="off", sample_prompts=(), seed=0,
                      lr=1e-3, ema_decay=0.99)
    trainer = Trainer(cfg, progress=False)
    result = trainer.train()
    first = next(r["loss"] for r in result.history if "loss" in r)
    assert result.train_loss < first, (first, result.train_loss)
    model = trainer.ema_model()
    out = generate(model, ["a powerful hip-hop dance"], frames=80, sampler="ddim", steps=20, seed=0,
                   progress=False)
    joints = out.joints[0]
    assert np.isfinite(joints).all()
    # Not a frozen pose: the body parts move relative to the root over time.
    local = joints - joints[:, :1]
    motion = local.std(axis=0).mean()
    assert motion > 0.01, f"joints barely move (mean std {motion:.4f} m)"


@pytest.mark.slow
def test_training_survives_drive_disappearing(tmp_path, train_npz):
    """Drive vanishes mid-run (writes fail), comes back: training finishes and the mirror catches up."""
    import shutil
    import threading
    import time

    from kpop_helpers.train.trainer import Trainer
    from kpop_helpers.utils import sha256_file

    drive = tmp_path / "drive"
    cfg = TrainConfig(data=str(train_npz), out=str(tmp_path / "local"), drive_dir=str(drive), preset="tiny",
                      steps=40, batch_size=4, save_every=2, eval_every=40, wandb="off", sample_prompts=(),
                      max_checkpoints=3, resume="none")
    trainer = Trainer(cfg, progress=False)
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            trainer.train()
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.time() + 300
    while not list(drive.rglob("*.pt")) and time.time() < deadline and not done.is_set():
        time.sleep(0.05)
    assert list(drive.rglob("*.pt")), "nothing reached Drive before the outage"
    # Outage: the folder is gone and a plain file sits where it was, so every write to it fails.
    shutil.move(str(drive), str(tmp_path / "drive_away"))
    drive.write_text("not a folder")
    step_at_outage = trainer.step
    while trainer.step < step_at_outage + 8 and not done.is_set():
        time.sleep(0.05)
    steps_during_outage = trainer.step - step_at_outage
    drive.unlink()
    shutil.move(str(tmp_path / "drive_away"), str(drive))
    worker.join(timeout=600)
    assert not errors, errors
    assert steps_during_outage >= 8 or trainer.step == cfg.steps  # training kept going without Drive
    local = {p.name: sha256_file(p) for p in (tmp_path / "local").glob("checkpoint_*.pt")}
    mirrored = {p.name: sha256_file(p) for p in drive.rglob("checkpoint_*.pt")}
    assert local and all(mirrored.get(name) == digest for name, digest in local.items()), (local, mirrored)
    assert any(name.endswith(f"_step{cfg.steps}.pt") for name in mirrored)


def test_samples_every_n_steps_reach_the_callback(tmp_path, train_npz, one_torch_thread):
    """sample_every=2 renders GIFs at steps 2 and 4 (the end) and hands them to on_sample; CPU trains in fp32."""
    from kpop_helpers.train.trainer import Trainer

    calls: list[tuple[int, list[Path], list[bool]]] = []
    cfg = TrainConfig(data=str(train_npz), out=str(tmp_path / "run"), run_name="demo-run", preset="tiny", steps=4,
                      batch_size=4, save_every=4, eval_every=4, log_every=2, wandb="off", sample_every=2,
                      sample_prompts=("a cute aegyo dance",), max_frames=40, min_frames=20, seed=0, resume="none")
    trainer = Trainer(cfg, progress=False,
                      on_sample=lambda step, paths: calls.append((step, paths, [p.is_file() for p in paths])))
    assert trainer.precision.name == "fp32" and trainer.amp_dtype == torch.float32
    assert not trainer.use_amp and not trainer.scaler.is_enabled()
    assert trainer.log_dir == tmp_path / "run" / "logs" and trainer.tracker.run_name == "demo-run"
    trainer.train()
    assert [(step, [p.name for p in paths], exists) for step, paths, exists in calls] == [
        (2, ["step0000002_0.gif"], [True]), (4, ["step0000004_0.gif"], [True])]
    assert all(p.read_bytes().startswith(b"GIF8") for _, paths, _ in calls for p in paths)
    assert list(trainer.log_dir.glob("events.out.tfevents.*"))
