"""Edit-and-extend stage of 06: regenerate part of a clip (variations beside the original) and a long timeline dance.

Both write into a sub-folder of the run's previews (`previews/edit`, `previews/timeline`), so the results zip takes
them home; each stores its own `result.json` (an EditPreview / LongDancePreview).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.data.clip import MotionClip
from kpop_helpers.editing import DanceConstraint
from kpop_helpers.errors import DataError
from kpop_helpers.motion.skeleton import FPS_HUMANML, T2M_JOINT_NAMES
from kpop_helpers.pipeline.common import save_result, stage_progress
from kpop_helpers.pipeline.results import EditPreview, LongDancePreview
from kpop_helpers.pipeline.previews import export_sampling, load_preview_model, save_joints_npz, short_caption
from kpop_helpers.pipeline.settings import DEMO_PROMPTS, WorkDirs, settings_for

# What KEEP in notebook 06 offers: the clip's start and end (the middle is new), a body part, or the clip continued.
KEEP_CHOICES = ("in-between", "lower body", "upper body", "continue")
SMOKE_STEPS = 5  # diffusion steps at most under smoke (CI): the drawings are checked, not the dance
SMOKE_TIMELINE_SECONDS = 15.0  # smoke squeezes a longer timeline to this length
SMOKE_GIF_FRAMES = 16
TIMELINE_EXAMPLE = "0-20: a hip-hop dance; 20-40: a cute aegyo dance; 40-60: house footwork"
_PART = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*s?\s*-\s*(\d+(?:\.\d*)?)\s*s?\s*:\s*(.*?)\s*$", re.S)


def edit_sampling(export_dir: str | Path | None, smoke: bool) -> dict[str, Any]:
    """The export's sampler settings; at most SMOKE_STEPS steps under smoke."""
    sampling = export_sampling(Path(export_dir) if export_dir is not None else None)
    if smoke:
        sampling["steps"] = min(int(sampling["steps"] or SMOKE_STEPS), SMOKE_STEPS)
    return sampling


def pick_clip(work: WorkDirs, index: int, source: str | Path | None = None, *, upload: bool = False,
              smoke: bool = False) -> MotionClip:
    """Clip `index` (a MotionClip) of `source` (.json/.npz/.bvh file or folder; upload: Colab's picker, into
    <work>/edit_clips) or, when empty, of the run's validation clips (training clips if it has none)."""
    from kpop_helpers.data.io import load_clips
    from kpop_helpers.pipeline.data_prep import ensure_data
    from kpop_helpers.pipeline.handoff import upload_clips

    if upload:
        source = next(iter(upload_clips(work.root / "edit_clips")), None) or source
    if source is not None and str(source).strip():
        path, what = Path(str(source).strip()).expanduser(), "clips"
    else:
        data = ensure_data(work, smoke=smoke, progress=False)
        path = Path(data.val) if data.val and Path(data.val).is_file() else Path(data.train)
        what = "validation clips" if path == Path(data.val or "") else "training clips (the run holds no val.npz)"
    clips, _ = load_clips(path, progress=False)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(clips):
        raise DataError(f"got {index!r}; {path} holds {len(clips)} {what}", field="EDIT_CLIP_INDEX",
                        expected=f"an integer 0..{len(clips) - 1}")
    return dataclasses.replace(clips[int(index)], source=f"{path.name} #{index}")


def edit_constraint(clip: MotionClip | np.ndarray, keep: str, frames: int) -> DanceConstraint:
    """The DanceConstraint of KEEP for a dance of `frames` frames, from the start of `clip` (resampled to 20 fps)."""
    from kpop_helpers.editing import body_parts, continuation, keyframes
    from kpop_helpers.motion.resample import resample_positions

    _check_keep(keep)
    joints = np.asarray(clip.positions if hasattr(clip, "positions") else clip, dtype=np.float32)
    fps = float(getattr(clip, "fps", FPS_HUMANML))
    if abs(fps - FPS_HUMANML) > 1e-6:
        joints = resample_positions(joints, fps, FPS_HUMANML)
    known = frames // 2 if keep == "continue" else frames  # feature frames taken from the clip
    if len(joints) < 9:
        raise DataError(f"{len(joints)} frames at 20 fps", field="clip", expected="a clip of at least 9 frames")
    joints = joints[: known + 1]  # T joint frames give T-1 feature frames
    if keep == "continue":
        return continuation(joints, (frames - (len(joints) - 1)) / FPS_HUMANML)
    if keep == "in-between":
        count, edge = len(joints) - 1, max(1, (len(joints) - 1) // 4)
        rows = np.zeros(count, dtype=bool)
        rows[:edge] = rows[count - edge:] = True
        return keyframes(joints, rows)
    return body_parts(joints, keep.split()[0])


def _check_keep(keep: str) -> None:
    if keep not in KEEP_CHOICES:
        raise DataError(f"got {keep!r}", field="KEEP", expected=f"one of {', '.join(KEEP_CHOICES)}")


def kept_error_mm(joints: np.ndarray, constraint: DanceConstraint) -> list[float]:
    """Per dance of joints [B,T,22,3]: mean distance (mm) of the kept joints from the user's clip over the kept frames
    (retargeting to the model's skeleton included); in the room when the pelvis is kept (its path is), else per frame
    on one spot facing one way (only the pose is kept)."""
    rows = min(constraint.end, joints.shape[1]) - constraint.start
    mask, target = constraint.joint_mask[:rows], constraint.joints[:rows].astype(np.float64)
    out = []
    for dance in joints[:, constraint.start:constraint.start + rows].astype(np.float64):
        placed, given = (dance, target) if mask[:, 0].any() else _face_alike(dance, target, mask)
        out.append(float(np.linalg.norm(placed - given, axis=-1)[mask].mean() * 1000.0))
    return out


def _face_alike(dance: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both over the origin (pelvis x/z), the dance turned about y per frame onto the target's kept joints."""
    floor = np.array([1.0, 0.0, 1.0])
    p, q = dance - dance[:, :1] * floor, target - target[:, :1] * floor
    w = mask.astype(np.float64)
    angle = np.arctan2((w * (p[..., 2] * q[..., 0] - p[..., 0] * q[..., 2])).sum(1),
                       (w * (p[..., 0] * q[..., 0] + p[..., 2] * q[..., 2])).sum(1))[:, None]
    c, s = np.cos(angle), np.sin(angle)
    turned = np.stack([c * p[..., 0] + s * p[..., 2], p[..., 1], -s * p[..., 0] + c * p[..., 2]], axis=-1)
    return turned, q


def render_edit(model_or_weights: Any, out_dir: str | Path, clip: MotionClip | np.ndarray, *, keep: str = "in-between",
                variations: int = 3, prompt: str = "", seed: int = 0, smoke: bool = False,
                export_dir: str | Path | None = None, progress: bool = True) -> EditPreview:
    """Regenerate what KEEP leaves out of `clip` `variations` times (prompt: the clip's caption when empty), with the
    export's sampler; writes edit.gif (original beside the variations, kept parts green) and edit.npz."""
    from kpop_helpers.generate import generate
    from kpop_helpers.viz.edits import save_edit_gif

    if isinstance(variations, bool) or not isinstance(variations, (int, np.integer)) or not 1 <= variations <= 8:
        raise DataError(f"got {variations!r}", field="VARIATIONS", expected="an integer 1..8")
    _check_keep(keep)
    s, out = settings_for(smoke), Path(out_dir)
    text = str(prompt or "").strip() or getattr(clip, "text", "") or DEMO_PROMPTS[0]
    out.mkdir(parents=True, exist_ok=True)
    with stage_progress("edit", ["generate", "GIF"], progress) as bar:
        model = load_preview_model(model_or_weights)
        constraint = edit_constraint(clip, keep, min(s.preview_frames, int(model.cfg.max_frames)))
        result = generate(model, [text] * int(variations), constraints=constraint, seed=seed, progress=False,
                          **edit_sampling(export_dir, smoke))
        # Frames kept whole are shaded on the time strip; a body part kept on every frame is drawn thick instead.
        whole, always = constraint.joint_mask.all(axis=1), constraint.joint_mask.all(axis=0)
        known = np.zeros(result.plan.frames, dtype=bool)
        known[constraint.start:constraint.start + len(whole)] = whole[: result.plan.frames - constraint.start]
        kept = [] if always.all() or not always.any() else [n for n, k in zip(T2M_JOINT_NAMES, always) if k]
        names = {f"variation {i + 1}": j for i, j in enumerate(result.joints)}
        npz = save_joints_npz(out / "edit.npz", original=constraint.joints, variations=result.joints, known_frames=known,
                        kept_joints=np.asarray(kept, dtype=str), prompt=text, keep=keep)
        bar.next()
        gif = save_edit_gif(constraint.joints, names, out / "edit.gif", known_frames=known, kept_joints=kept or None,
                            max_frames=SMOKE_GIF_FRAMES if smoke else None, dpi=s.gif_dpi if smoke else None,
                            progress=False, caption=f"{keep}: {short_caption(text)}")
    edges = np.flatnonzero(np.diff(np.concatenate([[0], known.astype(np.int8), [0]])))
    preview = EditPreview(out_dir=str(out), gif=str(gif), motions=str(npz), keep=keep, prompt=text,
                          clip=str(getattr(clip, "source", None) or "array"), frames=int(result.plan.frames),
                          known_spans=edges.reshape(-1, 2).tolist(), kept_joints=kept,
                          kept_error_mm=kept_error_mm(result.joints, constraint), seconds=bar.seconds)
    save_result(preview, out)
    return preview


def edit_player(preview: EditPreview | str | Path, *, dpi: float = 72) -> Any:
    """A widget to play, scrub and orbit an edit (original beside the variations, kept parts green)."""
    from kpop_helpers.viz.edits import EditScene
    from kpop_helpers.viz.player import FramePlayer

    folder = Path(preview.out_dir if isinstance(preview, EditPreview) else preview)
    with np.load(folder / "edit.npz", allow_pickle=False) as data:
        kept = [str(n) for n in data["kept_joints"]]
        scene = EditScene(data["original"], {f"variation {i + 1}": j for i, j in enumerate(data["variations"])},
                          known_frames=data["known_frames"], kept_joints=kept or None, dpi=dpi,
                          caption=f"{data['keep']}: {short_caption(str(data['prompt']))}")

    class EditPlayer(FramePlayer):
        def __init__(self) -> None:
            super().__init__(scene.num_frames, fps=scene.fps, dpi=dpi)
            self._refresh()

        def _scene(self) -> EditScene:
            return scene

    return EditPlayer()


def parse_timeline_text(text: str) -> list[tuple[float, float, str]]:
    """[(start_s, end_s, prompt)] of "0-20: a prompt; 20-40: another" (parts split by ";" or new lines)."""
    expected = f'"start-end: prompt" parts in seconds, in time order, split by ";", e.g. "{TIMELINE_EXAMPLE}"'
    parts = [p for p in re.split(r"[;\n]", str(text or "")) if p.strip()]
    if not parts:
        raise DataError("empty", field="TIMELINE", expected=expected)
    entries: list[tuple[float, float, str]] = []
    for i, part in enumerate(parts):
        match = _PART.match(part)
        if match is None or not match.group(3):
            raise DataError(f"part {i + 1} {part.strip()!r} is not 'start-end: prompt'", field="TIMELINE",
                            expected=expected)
        start, end = float(match.group(1)), float(match.group(2))
        if end <= start or (entries and start < entries[-1][1]):
            before = f" (part {i} ends at {entries[-1][1]:g} s)" if entries else ""
            raise DataError(f"part {i + 1} runs from {start:g} s to {end:g} s{before}", field="TIMELINE",
                            expected="parts in time order: each ends after it starts, none starts before the "
                                     "previous one ends")
        entries.append((start, end, match.group(3)))
    return entries


def render_timeline_dance(model_or_weights: Any, out_dir: str | Path, timeline: Any, *, seed: int = 0,
                          smoke: bool = False, export_dir: str | Path | None = None,
                          progress: bool = True) -> LongDancePreview:
    """One dance following a timeline (text as parse_timeline_text reads, or [(start_s, end_s, prompt)]); writes
    timeline.gif (seams and prompts on a time strip), seams.png (root path, jerk), timeline.npz; smoke: at most 15 s."""
    from kpop_helpers.editing import Timeline
    from kpop_helpers.generate import generate
    from kpop_helpers.viz.edits import plot_seams, save_long_dance_gif

    entries = parse_timeline_text(timeline) if isinstance(timeline, str) else list(timeline)
    parsed = Timeline.parse(entries)
    if smoke and parsed.end_s > SMOKE_TIMELINE_SECONDS:
        scale = SMOKE_TIMELINE_SECONDS / parsed.end_s
        parsed = Timeline.parse([(e.start_s * scale, e.end_s * scale, e.prompt) for e in parsed.entries])
    s, out = settings_for(smoke), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with stage_progress("timeline dance", ["generate", "GIF", "seam plot"], progress) as bar:
        model = load_preview_model(model_or_weights)
        result = generate(model, timeline=parsed, seed=seed, progress=False,
                          **edit_sampling(export_dir, smoke))
        plan, joints = result.plan, result.joints[0]
        seams, boundaries, labels = plan.seams(), plan.timeline.boundaries(), plan.timeline.labels()
        npz = save_joints_npz(out / "timeline.npz", joints=joints, starts=[e.start_s for e in parsed.entries],
                        ends=[e.end_s for e in parsed.entries], prompts=np.asarray(parsed.prompts, dtype=str),
                        seams=np.asarray(seams, dtype=np.int64).reshape(-1, 2), boundaries=np.asarray(boundaries))
        bar.next()
        gif = save_long_dance_gif(joints, out / "timeline.gif", seams=seams, boundaries=boundaries, labels=labels,
                                  max_frames=SMOKE_GIF_FRAMES if smoke else None, dpi=s.gif_dpi if smoke else None,
                                  progress=False)
        bar.next()
        plot_seams(joints, fps=result.fps, seams=seams, boundaries=boundaries, path=out / "seams.png",
                   caption=f"{plan.frames / result.fps:.0f} s from {len(parsed.entries)} prompts, {len(seams)} seams")
    preview = LongDancePreview(out_dir=str(out), gif=str(gif), png=str(out / "seams.png"), motions=str(npz),
                               timeline=[[e.start_s, e.end_s, e.prompt] for e in parsed.entries],
                               seams=[list(map(int, span)) for span in seams], boundaries=[int(b) for b in boundaries],
                               dance_seconds=plan.frames / result.fps,
                               windows=1 if plan.windows is None else int(plan.windows.count), seconds=bar.seconds)
    save_result(preview, out)
    return preview
