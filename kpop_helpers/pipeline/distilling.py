"""Pipeline stage 03 (optional): a few-step student of the fine-tuned model, distilled with Drive checkpoints.

The student trains on the runtime's disk, every checkpoint is mirrored to `<work>/students/<name>` (Drive in
Colab), so a dropped runtime resumes where it stopped; the EMA weights and result.json are published there.
"""

from __future__ import annotations

from pathlib import Path

from kpop_helpers.pipeline.common import MissingStageOutput, load_result, publish, save_result, stage_progress
from kpop_helpers.pipeline.results import DataResult, DistillResult
from kpop_helpers.pipeline.settings import WorkDirs, settings_for

# Forward-equivalents of one distillation step per sample (a backward pass costs about two forwards): the
# teacher's calls (2 per DDIM step of the "steps" stage, x2 for a guided pair) and the student's forward + backward.
_STUDENT_PASSES = 3
# fp16 FLOP/s a T4 sustains on this transformer size, an assumption (65 TFLOPS peak with tensor cores; small
# batches of 197-token sequences reach a fraction of it). Used only for the estimate printed beside measured times.
T4_SUSTAINED_FLOPS = 12e12


def distill_flops(params: int, frames: int, batch: int, stage: str, guided_teacher: bool) -> float:
    """FLOPs of one distillation step: 2 x params x tokens per forward, times the forwards of the stage."""
    teacher_calls = (2 if stage == "steps" else 1) * (2 if guided_teacher else 1)
    return 2.0 * params * (frames + 1) * batch * (teacher_calls + _STUDENT_PASSES)


def distill_run(work: WorkDirs, teacher: str | Path, *, smoke: bool, stage: str = "steps", student_steps: int = 4,
                guidance: float = 2.5, guidance_input: bool = True, steps: int | None = None,
                batch_size: int | None = None, lr: float = 1e-5, resume: str = "auto",
                progress: bool = True) -> DistillResult:
    """Distil `teacher` on the run's training data into `<work>/students/<stage>` (checkpoints mirrored there).

    smoke: 4 steps at batch 2 (CI). steps None: 2000 (minutes on a T4 at batch 64: see `t4_hours_estimate`).
    """
    from kpop_helpers.distill import DistillConfig, Distiller, student_sampling

    data = load_result(DataResult, work.data)
    if data is None or not Path(data.train).is_file():
        raise MissingStageOutput(work.data / "train.npz", "01_setup", work.run_name)
    name = f"{stage}{student_steps}" if stage == "steps" else stage
    home = work.root / "students" / name
    out = work.local / "students" / name if work.on_drive else home
    total = 4 if smoke else int(steps or 2000)
    frames = settings_for(smoke).max_frames
    cfg = DistillConfig(
        teacher=str(teacher), data=str(data.train), val_data=data.val, out=str(out), stage=stage,
        student_steps=student_steps, guidance=guidance, guidance_input=guidance_input, steps=total,
        batch_size=batch_size or (2 if smoke else 0), lr=lr, warmup_steps=min(20, total), ema_decay=0.99,
        eval_every=max(1, min(250, total)), save_every=max(1, min(250, total)), log_every=max(1, min(10, total)),
        val_batches=1, sample_prompts=(), wandb="off", resume=resume, run_name=work.run_name,
        drive_dir=str(home) if work.on_drive else None, log_dir=str(home / "logs"),
        max_frames=frames, min_frames=min(24, frames), window_stride=max(1, frames // 2))
    with stage_progress(f"distil ({stage})", ["set up", "train"], progress) as bar:
        distiller = Distiller(cfg, progress=progress)
        resumed_from = int(distiller.step)
        bar.next()
        run = distiller.train()
        bar.next()
    model = distiller.bare_model
    params = int(sum(p.numel() for p in model.parameters()))
    # The teacher runs as a guided pair unless it takes the scale itself or every scale is 1.
    fixed_one = not guidance_input and float(guidance) == 1.0
    guided = not distiller.teacher.guidance_input and not fixed_one
    flops = distill_flops(params, cfg.max_frames, distiller.batch_size, stage, guided) * total
    weights = str(run.weights)
    if work.on_drive:
        weights = str(publish([Path(run.weights), Path(run.weights).with_suffix(".json")], home)[0])
    spec = student_sampling(cfg)
    result = DistillResult(
        run_dir=str(home), weights=weights, checkpoint=run.checkpoint, stage=stage, step=int(run.step),
        resumed_from=resumed_from, sampling={"sampler": spec.sampler, "steps": spec.steps, "guidance": spec.guidance},
        train_loss=run.train_loss, val_loss=run.val_loss, steps_per_second=float(run.steps_per_second),
        seconds=bar.seconds, device=str(distiller.device), t4_hours_estimate=flops / T4_SUSTAINED_FLOPS / 3600)
    save_result(result, home)
    return result


def student_preview(teacher: str | Path, student: DistillResult, out: str | Path, *, prompt: str, frames: int,
                    teacher_sampling: dict, max_frames: int | None = None) -> Path:
    """A GIF of the teacher's dance (its sampler) beside the student's (its own), same prompt and seed."""
    from kpop_helpers.generate import generate
    from kpop_helpers.train.setup import load_init
    from kpop_helpers.viz.compare import compare

    dances = {}
    # A guidance student is made for any number of steps: it dances with the teacher's.
    own = {**student.sampling, "steps": student.sampling["steps"] or teacher_sampling["steps"]}
    for name, path, sampling in (("teacher", teacher, teacher_sampling), ("student", student.weights, own)):
        model, stats = load_init(str(path))
        model.stats = stats
        result = generate(model, [prompt], frames=frames, seed=0, progress=False, sampler=sampling["sampler"],
                          steps=sampling["steps"], guidance=sampling["guidance"])
        dances[f"{name}: {sampling['sampler']} {sampling['steps'] or 'all'} steps"] = result.joints[0]
    return compare(dances, caption=prompt).save_gif(out, max_frames=max_frames, progress=False)
