"""The small result of each pipeline stage (stored as `<stage folder>/result.json`; paths are strings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AssetsResult:
    """Environment check and pretrained assets (notebook 01)."""

    work_dir: str
    in_colab: bool
    gpu: dict[str, Any]
    text_encoder: str
    text_dim: int
    official_checkpoint: str | None = None  # official MDM .pt (downloaded in Colab)
    official_stats: str | None = None  # folder with the HumanML3D Mean.npy/Std.npy
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    base_model: str = "scratch"  # what 02_finetune starts from: "official" or "scratch"


@dataclass
class DataResult:
    """The SYNTHETIC sample set, converted to features, with its normalisation statistics."""

    data_dir: str
    train: str
    val: str | None
    metadata: str
    stats_dir: str
    num_clips: int
    num_train: int
    num_val: int
    feature_frames: int  # HumanML3D feature rows of the training clips
    seconds: float
    synthetic: bool = True


@dataclass
class FinetuneResult:
    """A fine-tuning run: where its weights and checkpoints are and how it went."""

    run_dir: str
    weights: str  # EMA weights (.safetensors + .json), the input of compression and export
    checkpoint: str | None  # newest training checkpoint (resume from it)
    step: int
    resumed_from: int  # 0 for a fresh run, else the stored step the run continued from
    preset: str
    init: str
    text_encoder: str
    params: int
    train_loss: float | None
    val_loss: float | None
    steps_per_second: float
    seconds: float
    history: str  # history.json
    curve: str | None  # training_curve.png
    drive_dir: str | None = None
    already_finished: bool = False  # the run had reached `step` before this call: nothing was trained
    stand_in: bool = False  # a SMOKE-only stand-in trained because 02_finetune's model was missing
    log_dir: str | None = None  # TensorBoard logs


@dataclass
class CompressionResult:
    """Errors of the compressed variants (in memory) and of few-step sampling against the fp32 model."""

    out_dir: str
    config_path: str
    variants: list[dict[str, Any]]
    few_steps: list[dict[str, Any]]
    setup: dict[str, Any]
    markdown: str
    seconds: float


@dataclass
class ExportResult:
    """The edge folder: files, parity numbers and errors from manifest.json."""

    export_dir: str
    manifest: str
    config_path: str
    variants: list[dict[str, Any]]
    text_encoder: dict[str, Any]
    seconds: float


@dataclass
class BenchmarkResult:
    """The one-protocol benchmark: results.json/md, plots, row count."""

    out_dir: str
    results_json: str
    results_md: str
    plots: list[str]
    rows: int
    errors: int
    seconds: float


@dataclass
class PreviewResult:
    """Rendered dances: a GIF per prompt and the side-by-side comparison of variants."""

    out_dir: str
    prompts: list[str]
    gifs: list[str]
    motions: str  # motions.npz: joints per prompt
    comparison_gif: str | None
    comparison_motions: str | None  # comparison.npz: joints per variant
    comparison_errors_mm: dict[str, float]
    comparison_prompt: str | None
    seconds: float


@dataclass
class EditPreview:
    """An edited clip: the original beside its variations (GIF, joints), what was kept and how closely (mm)."""

    out_dir: str
    gif: str
    motions: str  # edit.npz: original [F,22,3], variations [V,T,22,3], known_frames [T], kept_joints, prompt
    keep: str
    prompt: str
    clip: str  # where the clip came from
    frames: int  # length of the edited dance (20 fps)
    known_spans: list[list[int]]  # dance frame spans kept whole (all joints), [start, end)
    kept_joints: list[str]  # joints kept on every frame (body-part edits), empty otherwise
    kept_error_mm: list[float]  # per variation, see kept_error_mm()
    seconds: float


@dataclass
class LongDancePreview:
    """A dance from a timeline of prompts: GIF with seams and labels, seam plot (PNG), joints (NPZ)."""

    out_dir: str
    gif: str
    png: str
    motions: str  # timeline.npz: joints [T,22,3], starts, ends, prompts, seams [S,2], boundaries
    timeline: list[list[Any]]  # [start_s, end_s, prompt] as generated (squeezed under smoke)
    seams: list[list[int]]  # frame spans shared by neighbouring windows
    boundaries: list[int]  # frames where the prompt changes
    dance_seconds: float
    windows: int
    seconds: float


@dataclass
class SongPreview:
    """A song danced (notebook 07): its files, the song and its credit, the beat alignment before and after."""

    out_dir: str  # <work>/songs/<song name>
    song: str
    attribution: str | None  # "Music: ..." from <song>.txt beside the song
    runtime: str  # "ONNX Runtime int8", "PyTorch (cuda)", ...
    dance_seconds: float
    tempo_bpm: float
    sections: list[list[Any]]  # [start_s, end_s, label]
    timeline: list[list[Any]]  # [start_s, end_s, prompt] the dance followed
    align: str
    bas_before: float  # beat alignment score of the dance as generated
    bas_after: float  # ... and after ALIGN put it on the beat
    alignment: dict[str, Any]  # align_to_beats' info: beats matched, local speed range, shifts
    outputs: dict[str, str]  # kind -> path: bvh, npz, timeline, analysis, analysis_png, summary, gif, mp4, attribution
    alignment_png: str
    timings: dict[str, float] = field(default_factory=dict)  # analysis, generation, alignment (s)
    warnings: list[str] = field(default_factory=list)  # the analysis's (no clear beat, ...)
    seconds: float = 0.0


@dataclass
class DistillResult:
    """A distillation run: where the student is, what sampler it is for, and what it cost."""

    run_dir: str
    weights: str
    checkpoint: str | None
    stage: str
    step: int
    resumed_from: int
    sampling: dict  # {"sampler", "steps", "guidance"} the student is made for
    train_loss: float | None
    val_loss: float | None
    steps_per_second: float
    seconds: float
    device: str
    t4_hours_estimate: float  # the whole run on a Colab T4 (fp16), from the FLOP count (see distill_flops)
