"""Distillation on a tiny model: the guidance student matches the guided teacher in one call, the step student
with N DDIM steps lands nearer the teacher's 2N-step dance than the teacher's own N steps, resume after SIGKILL
is exact, and the student exports (parity) and runs in the edge runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kpop_helpers.data.io import save_npz
from kpop_helpers.data.sample import generate_sample_clips
from kpop_helpers.distill import DistillConfig, Distiller, student_sampling
from kpop_helpers.errors import DataError
from kpop_helpers.train import TrainConfig
from tests.conftest import REPO_ROOT

PROMPTS = ["a powerful hip-hop dance with big arm waves", "a cute aegyo dance with small bounces"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> tuple[Path, Path]:
    """(weights, data): a tiny model trained enough that its guided and unguided dances differ."""
    from kpop_helpers.train.trainer import Trainer

    tmp = tmp_path_factory.mktemp("teacher")
    data = tmp / "train.npz"
    save_npz(data, generate_sample_clips(16, seed=5))
    cfg = TrainConfig(data=str(data), out=str(tmp / "run"), preset="tiny", steps=200, batch_size=8, save_every=200,
                      eval_every=200, log_every=50, wandb="off", sample_prompts=(), seed=0, lr=1e-3, ema_decay=0.9)
    result = Trainer(cfg, progress=False).train()
    # A few hundred steps on 16 clips barely teach the text to matter, and then guidance changes nothing: a
    # stronger text projection makes the guided and the conditioned dances differ, which is what is distilled.
    from kpop_helpers.model import save_mdm
    from kpop_helpers.train.setup import load_init

    model, stats = load_init(result.weights)
    with torch.no_grad():
        model.embed_text.weight.mul_(30.0)
    model.stats, model.text_encoder_name = stats, "minilm"
    return save_mdm(model, tmp / "teacher.safetensors"), data


def _distil(tmp: Path, teacher: tuple[Path, Path], **overrides) -> tuple[Distiller, object]:
    weights, data = teacher
    cfg = DistillConfig(teacher=str(weights), data=str(data), out=str(tmp), preset="tiny", batch_size=8,
                        save_every=1000, eval_every=10_000, log_every=10, wandb="off", seed=1, lr=5e-4,
                        **{"steps": 80, **overrides})
    distiller = Distiller(cfg, progress=False)
    start = distiller.validate()
    result = distiller.train()
    return distiller, (start, result)


def _load(path) -> object:
    from kpop_helpers.train.setup import load_init

    model, stats = load_init(str(path))
    model.stats = stats
    return model


def _dances(model, **sampling) -> np.ndarray:
    from kpop_helpers.generate import generate

    return generate(model, PROMPTS, frames=60, seed=3, progress=False, **sampling).features


def _x0_distances(distiller, student, scale: float) -> tuple[float, float]:
    """(student, teacher's conditioned call): mean distance to the guided teacher's x0 at `scale`, on the
    validation clips noised with fresh noise at every timestep range."""
    gen = torch.Generator().manual_seed(99)
    batch = distiller.val_batches.all_batches(8)[0] if distiller.val_batches else distiller.train_batches.batch(0)
    x0, mask, text = batch["x"], batch["mask"], batch["text_emb"]
    t = torch.randint(0, distiller.diffusion.num_steps, (x0.shape[0],), generator=gen)
    w = torch.full((x0.shape[0],), scale)
    x_t, model_t, target = distiller.distill_target(x0, t, mask, text, torch.randn(x0.shape, generator=gen), w)
    with torch.no_grad():
        mine = distiller.student_x0(student, x_t, model_t, text, mask, w)
        conditioned = distiller.teacher_x0(x_t, model_t, text, mask, torch.ones_like(w))
    return float((mine - target).abs().mean()), float((conditioned - target).abs().mean())


def test_guidance_student_takes_the_scale_and_matches_the_guided_teacher_in_one_call(tmp_path, teacher):
    distiller, (start, result) = _distil(tmp_path / "guidance", teacher, stage="guidance", guidance=2.5, steps=150)
    assert result.val_loss < 0.7 * start, (start, result.val_loss)  # distance to the guided teacher's x0
    spec = student_sampling(distiller.cfg)
    assert (spec.sampler, spec.guidance) == ("ddpm", 2.5)
    student = distiller.ema_model().eval()
    assert student.guidance_input and not distiller.teacher.guidance_input
    distances = {scale: _x0_distances(distiller, student, scale) for scale in (1.5, 2.5, 3.5)}
    # One model, every scale of the trained range: nearer the guided x0 than the conditioned call, the more so
    # the further the scale takes the guided x0 from the conditioned one.
    assert all(mine < conditioned for mine, conditioned in distances.values()), distances
    assert distances[3.5][0] < 0.7 * distances[3.5][1], distances
    calls = []
    student.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    _dances(student, sampler="ddim", steps=10, guidance=3.0)
    assert calls == [len(PROMPTS)] * 10  # one conditioned call per step: batch B, not the guided 2B


def test_fixed_scale_student_bakes_the_guidance_in(tmp_path, teacher):
    distiller, (start, result) = _distil(tmp_path / "fixed", teacher, stage="guidance", guidance=2.5,
                                         guidance_input=False)
    assert result.val_loss < 0.7 * start, (start, result.val_loss)
    assert student_sampling(distiller.cfg).guidance == 1.0 and not distiller.ema_model().guidance_input
    mine, conditioned = _x0_distances(distiller, distiller.ema_model().eval(), 2.5)
    assert mine < 0.7 * conditioned, (mine, conditioned)


def test_step_student_with_n_steps_is_nearer_the_teacher_than_the_teacher_with_n(tmp_path, teacher):
    distiller, (start, result) = _distil(tmp_path / "steps", teacher, stage="steps", guidance=1.0, student_steps=2,
                                         steps=120, guidance_input=False)
    assert result.val_loss < start, (start, result.val_loss)
    assert distiller.student_t.tolist() == [0, 500]
    model = _load(teacher[0])
    target = _dances(model, sampler="ddim", steps=4, guidance=1.0)  # the two-steps-per-student-step teacher
    teacher_n = _dances(model, sampler="ddim", steps=2, guidance=1.0)
    student_n = _dances(distiller.ema_model(), sampler="ddim", steps=2, guidance=1.0)
    assert np.abs(student_n - target).mean() < np.abs(teacher_n - target).mean()


def test_the_target_of_a_perfect_student_is_the_teachers_two_steps(tmp_path, teacher):
    """One DDIM step of the target x0 from t lands exactly where the teacher's two steps land."""
    weights, data = teacher
    cfg = DistillConfig(teacher=str(weights), data=str(data), out=str(tmp_path / "d"), preset="tiny", batch_size=4,
                        steps=1, wandb="off", stage="steps", guidance=2.5, student_steps=4, sample_prompts=())
    d = Distiller(cfg, progress=False)
    torch.manual_seed(0)
    x = torch.randn(3, 263, 1, 40)
    text, mask = torch.randn(3, d.bare_model.cfg.text_dim), torch.ones(3, 40, dtype=torch.bool)
    index = torch.tensor([1, 2, 3])
    t, s = d.student_t[index], d.student_t[index - 1]
    w = torch.tensor([1.5, 2.5, 3.0])
    target = d.two_step_target(x, index, text, mask, w)
    mid = (t + s) // 2
    x_mid = d._ddim(x, d.teacher_x0(x, t, text, mask, w), t, mid)
    two = d._ddim(x_mid, d.teacher_x0(x_mid, mid, text, mask, w), mid, s)
    torch.testing.assert_close(d._ddim(x, target, t, s), two, rtol=1e-4, atol=1e-4)
    d.ckpt.close(timeout=0)


def test_config_errors_name_the_field(tmp_path, teacher):
    weights, data = teacher
    with pytest.raises(DataError, match="teacher"):
        DistillConfig(data=str(data))
    with pytest.raises(DataError, match="stage"):
        DistillConfig(teacher=str(weights), data=str(data), stage="consistency")
    with pytest.raises(DataError, match="student_steps"):
        DistillConfig(teacher=str(weights), data=str(data), stage="steps", student_steps=1)
    with pytest.raises(DataError, match="guidance_min"):
        DistillConfig(teacher=str(weights), data=str(data), guidance_min=3.0, guidance_max=2.0)
    with pytest.raises(DataError, match="missing.safetensors"):
        DistillConfig(teacher=str(tmp_path / "missing.safetensors"), data=str(data))
    assert DistillConfig(teacher=str(weights), data=str(data)).init == str(weights)


@pytest.mark.slow
def test_distill_resume_after_sigkill_is_bit_identical(tmp_path, teacher):
    from kpop_helpers.train.resume_check import kill_and_resume, run_uninterrupted

    weights, data = teacher
    cfg = DistillConfig(teacher=str(weights), data=str(data), preset="tiny", steps=10, batch_size=4, save_every=2,
                        eval_every=5, log_every=2, wandb="off", seed=7, max_checkpoints=3, stage="steps",
                        guidance=2.5, student_steps=2)
    config = tmp_path / "distill.json"
    config.write_text(json.dumps(cfg.to_dict()))
    expected, wall = run_uninterrupted(config, tmp_path / "ref", 10, module="kpop_helpers.distill")
    trial = kill_and_resume(config, tmp_path / "run", 10, expected, wall=wall, kills=2, seed=5,
                            module="kpop_helpers.distill")
    assert trial.identical, trial.differing[:5]


def test_cli_and_export_of_the_student(tmp_path, teacher):
    """`python -m kpop_helpers.distill` writes a student that exports with parity and runs on the edge."""
    from kpop_helpers.config import EdgeConfig
    from kpop_helpers.edge import EdgeGenerator
    from kpop_helpers.export import ModelExporter

    weights, data = teacher
    done = subprocess.run([sys.executable, "-m", "kpop_helpers.distill", "--teacher", str(weights), "--data", str(data),
                           "--out", str(tmp_path / "student"), "--preset", "tiny", "--steps", "4", "--batch-size", "4",
                           "--stage", "steps", "--student-steps", "4", "--wandb", "off", "--resume", "auto",
                           "--quiet"], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["sampling"] == {"sampler": "ddim", "steps": 4, "guidance": 2.5} and summary["step"] == 4
    # fp32 only: the test teacher's strengthened text projection (x30) is too large a range for int8.
    config = EdgeConfig.from_dict({"optimization": {"quantization": {"enabled": False, "fp16": False},
                                                    "pruning": {"enabled": False}},
                                   "sampling": summary["sampling"],
                                   "export": {"formats": ["onnx"], "text_encoder": "onnx", "text_quantization": "none"}})
    config.save(tmp_path / "edge_config.json")
    out = tmp_path / "export"
    ModelExporter(summary["weights"], tmp_path / "edge_config.json", threads=1, progress=False).export_all(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["variants"]["fp32"]["parity"]["passed"]
    assert manifest["model_config"]["guidance_input"] is True
    edge = EdgeGenerator(out, variant="fp32", threads=1)
    assert edge.denoise.guidance_input  # the graph's fifth input
    assert (edge.sampling["sampler"], edge.sampling["steps"], edge.sampling["guidance"]) == ("ddim", 4, 2.5)
    # The edge runtime's dance is the PyTorch student's (one call per step, the scale as input), at two scales.
    from kpop_helpers.generate import generate

    student = _load(summary["weights"])
    for scale in (2.5, 1.5):
        joints = edge.generate(PROMPTS[:1], frames=40, seed=0, guidance=scale)
        torch_joints = generate(student, PROMPTS[:1], frames=40, seed=0, sampler="ddim", steps=4, guidance=scale,
                                progress=False).joints
        np.testing.assert_allclose(joints, np.asarray(torch_joints), atol=1e-3)
    # The main benchmark's denoiser wrapper keeps the fifth input (one call per step there too).
    from kpop_helpers.bench.variants import Denoiser, _torch_forward
    from kpop_helpers.sampling import guided_denoise

    x, t = np.zeros((1, 263, 1, 8), np.float32), np.array([3])
    emb = edge.encode(PROMPTS[:1])
    wrapped = [Denoiser(edge.denoise, None, None), Denoiser(_torch_forward(student), None, None, keepalive=student)]
    assert all(d.guidance_input for d in wrapped)
    np.testing.assert_allclose(guided_denoise(wrapped[0], x, t, emb, 2.0),
                               edge.denoise(x, t, emb, np.zeros(1, bool), np.full(1, 2.0, np.float32)), atol=1e-6)
    bad = subprocess.run([sys.executable, "-m", "kpop_helpers.distill", "--data", str(data)], capture_output=True,
                         text=True, timeout=120, cwd=REPO_ROOT)
    assert bad.returncode == 2 and "teacher" in bad.stderr
