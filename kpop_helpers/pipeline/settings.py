"""Sizes of every pipeline stage (the `make demo` defaults and the CI smoke sizes) and the work-folder layout.

The notebooks and `python -m kpop_helpers.demo` share one layout, so a later notebook finds what an
earlier one wrote::

    <work>/data/         train.npz, val.npz, metadata.json, stats/Mean.npy|Std.npy, result.json
    <work>/checkpoints/  training checkpoints, model_ema.safetensors (+ .json), logs/, history.json, result.json
    <work>/compress/     compression.json / compression.md (errors of in-memory compressed variants)
    <work>/export/       manifest.json, model.onnx, model_int8.onnx, model_scripted.pt, ... , result.json
    <work>/benchmark/    results.json, results.md, results.csv, pareto/latency/sizes.png, result.json
    <work>/previews/     one GIF per prompt, motions.npz, comparison.gif/.npz, result.json
    <work>/report.md

In Colab the work folder is MyDrive/kpop_work/<RUN_NAME> on Google Drive, because every notebook runs on its own
machine and Drive is the only disk they share; large rebuildable scratch (training checkpoints before their Drive
copy, benchmark caches, the reference noise) stays on the runtime's local disk (/content/kpop_scratch/<RUN_NAME>).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Prompts in the sample set's vocabulary (styles, energies and body parts its captions use).
DEMO_PROMPTS = (
    "a person does an explosive boy-group power dance and punches forward with alternating arms and stomps.",
    "a dancer puts the fists to the cheeks and tilts the head in a bubbly aegyo routine, with small, light steps.",
    "someone dances house with quick footwork; the moves are lively as the dancer shuffles the feet quickly "
    "side to side.",
)
SMOKE_STEP_DIVISOR = 100  # smoke mode trains 1/100 of the requested steps (at least 2)


@dataclass(frozen=True)
class PipelineSettings:
    """Every size knob of the pipeline; FULL is the `make demo` default, SMOKE the CI size."""

    name: str
    num_clips: int  # synthetic sample clips (train + val)
    preset: str  # model preset trained from scratch
    steps: int  # fine-tuning steps
    batch_size: int
    max_frames: int  # training window and longest generated motion (frames at 20 fps)
    save_every: int
    eval_every: int  # validation loss every this many steps (one batch)
    recovery_steps: int  # fine-tune steps after structured pruning (caps edge_config's recovery_steps)
    error_frames: int  # motion length of the compression error measurements
    few_steps: tuple[int, ...]  # DDIM step counts compared with the full schedule
    bench: dict = field(default_factory=dict)  # BenchConfig overrides
    preview_frames: int = 120
    gif_dpi: int = 50


# `make demo` in about 4 minutes on a quiet 2-core laptop (7 on a shared one). The demo's 200-step model is far
# from converged, so a recovery fine-tune after pruning would keep training it away from the fp32 reference
# rather than recover it: the demo leaves recovery out (notebook 03 runs it with edge_config's step count).
FULL = PipelineSettings(
    name="full", num_clips=120, preset="small", steps=200, batch_size=16, max_frames=120, save_every=100,
    eval_every=25, recovery_steps=0, error_frames=120, few_steps=(50, 20, 10),
    bench=dict(prompts_count=4, frames=120, threads=(2,), batches=(1, 2), eager_samplers=("ddpm20", "ddim10"),
               artifact_samplers=("ddpm20",), warmup_steps=2, timed_steps=5, max_gen_seconds=60.0),
    preview_frames=120, gif_dpi=50)

SMOKE = PipelineSettings(
    name="smoke", num_clips=18, preset="tiny", steps=max(2, FULL.steps // SMOKE_STEP_DIVISOR), batch_size=4,
    max_frames=40, save_every=2, eval_every=1, recovery_steps=2, error_frames=40, few_steps=(10, 5),
    bench=dict(prompts_count=3, frames=40, threads=(1,), batches=(1, 2), eager_samplers=("ddim5",),
               artifact_samplers=("ddim5",), warmup_steps=1, timed_steps=3, max_gen_seconds=30.0),
    preview_frames=40, gif_dpi=40)


def settings_for(smoke: bool) -> PipelineSettings:
    """SMOKE when `smoke`, else FULL."""
    return SMOKE if smoke else FULL


def training_steps(steps: int | None, smoke: bool) -> int:
    """Requested steps (None: the FULL default); smoke mode runs 1/100 of them, at least 2."""
    requested = FULL.steps if steps is None else int(steps)
    if requested < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    return max(2, requested // SMOKE_STEP_DIVISOR) if smoke else requested


@dataclass(frozen=True)
class WorkDirs:
    """The folders of one work folder (see the module docstring).

    root: the shared work folder (in Colab: MyDrive/kpop_work/<run name>, the only disk notebooks share).
    scratch: large, rebuildable files that need not survive the runtime (training checkpoints before their Drive
    copy, benchmark caches and reference noise); the same as root outside Colab.
    """

    root: Path
    scratch: Path | None = None
    on_drive: bool = False
    run_name: str | None = None

    @property
    def local(self) -> Path:
        """The scratch folder (root when none was set)."""
        return self.scratch if self.scratch is not None else self.root

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def train_dir(self) -> Path:
        """Where the trainer writes checkpoints: local scratch mirrored to `checkpoints` on Drive, else `checkpoints`."""
        return self.local / "checkpoints" if self.on_drive else self.checkpoints

    @property
    def compress(self) -> Path:
        return self.root / "compress"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def benchmark(self) -> Path:
        return self.root / "benchmark"

    @property
    def bench_scratch(self) -> Path:
        """The benchmark's caches and reference noise (large, rebuildable)."""
        return self.local / "benchmark" if self.on_drive else self.benchmark

    @property
    def previews(self) -> Path:
        return self.root / "previews"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def weights(self) -> Path:
        """The fine-tuned EMA weights the trainer exports."""
        return self.checkpoints / "model_ema.safetensors"


def resolve_work_dir(work_dir: str | Path | None = None, run_name: str | None = None) -> WorkDirs:
    """The notebooks' work folder: `work_dir` if given, else $KPOP_WORK_DIR; in Colab MyDrive/kpop_work/<run_name>
    (mounting Drive; if that fails, /content/kpop_work/<run_name> with a warning); else outputs/nb of the checkout
    (a notebook kernel starts in notebooks/, so its parent is used)."""
    from kpop_helpers.colab import DEFAULT_RUN_NAME, content_root, drive_work_dir, in_colab, mount_drive, safe_run_name

    run = safe_run_name(run_name or DEFAULT_RUN_NAME)
    chosen = str(work_dir or "").strip() or os.environ.get("KPOP_WORK_DIR", "").strip()
    scratch, on_drive = None, False
    if chosen:
        root = Path(chosen).expanduser()
    elif in_colab():
        scratch = content_root() / "kpop_scratch" / run
        if mount_drive() is not None:
            root, on_drive = drive_work_dir(run), True
        else:
            root = content_root() / "kpop_work" / run
            print(f"WARNING: Drive is not mounted: the work folder is {root} on this runtime's disk. It vanishes "
                  "with the runtime, and the other notebooks (each on its own machine) will not see it.")
    else:
        here = Path.cwd()
        root = (here.parent if here.name == "notebooks" else here) / "outputs" / "nb"
    # absolute, not resolve: the Drive path must keep its /content/drive/MyDrive prefix (the Drive sync anchors on it)
    root = root.absolute() if on_drive else root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    if scratch is not None:
        scratch = scratch.resolve()
        scratch.mkdir(parents=True, exist_ok=True)
    return WorkDirs(root, scratch=scratch, on_drive=on_drive, run_name=run)
