"""Side-by-side comparison of motions (e.g. fp32 vs int8 vs pruned for one prompt and noise).

Synchronised stick figures, each titled with its mean joint position error against a reference, above
an error-over-time plot whose cursor marks the frame shown.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure

from kpop_helpers.errors import DataError
from kpop_helpers.viz.animation import (
    DEFAULT_AZIM,
    DEFAULT_ELEV,
    StickFigure,
    StickStyle,
    as_joints,
    frame_indices,
    new_figure,
    require_suffix,
    scene_animation,
    scene_save,
    scene_to_html,
)
from kpop_helpers.viz.player import FramePlayer


def mean_position_error(joints: np.ndarray, reference: np.ndarray, *, align_root: bool = False) -> np.ndarray:
    """Per-frame mean Euclidean joint distance [T] in metres (root-relative if align_root)."""
    if joints.shape != reference.shape:
        raise ValueError(f"shapes differ: {joints.shape} vs reference {reference.shape}")
    if align_root:
        joints = joints - joints[:, :1]
        reference = reference - reference[:, :1]
    return np.linalg.norm(joints - reference, axis=-1).mean(axis=-1)


@dataclass
class MotionComparison:
    """Motions of equal length, the reference name and each motion's per-frame error [T] (metres)."""

    motions: dict[str, np.ndarray]
    reference: str
    errors: dict[str, np.ndarray]
    caption: str = ""
    fps: float = 20.0
    align_root: bool = False

    @property
    def num_frames(self) -> int:
        return int(next(iter(self.motions.values())).shape[0])

    def mean_errors_mm(self) -> dict[str, float]:
        """Mean over frames of each motion's error vs the reference, in millimetres."""
        return {name: float(err.mean() * 1000) for name, err in self.errors.items()}

    def scene(self, **kwargs: Any) -> ComparisonScene:
        """A drawable figure of the comparison; kwargs go to ComparisonScene."""
        return ComparisonScene(self, **kwargs)

    def figure(self, frame: int = 0, **kwargs: Any) -> Figure:
        """Static Figure of one frame."""
        scene = self.scene(**kwargs)
        scene.update(frame)
        return scene.figure

    def animate(self, *, max_frames: int | None = None, **kwargs: Any) -> FuncAnimation:
        """FuncAnimation of the synchronised motions."""
        scene = self.scene(**kwargs)
        return scene_animation(scene, frame_indices(scene.num_frames, max_frames), self.fps)

    def to_html(self, *, max_frames: int | None = None, max_mb: float | None = None,
                progress: bool = True, **kwargs: Any) -> str:
        """Inline JS/HTML animation kept under the notebook embed limit."""
        scene = self.scene(**kwargs)
        return scene_to_html(scene, fps=self.fps, max_frames=max_frames, max_mb=max_mb, progress=progress)

    def save_gif(self, path: str | Path, *, max_frames: int | None = None, progress: bool = True,
                 **kwargs: Any) -> Path:
        """Write the comparison as an animated GIF (atomic)."""
        return scene_save(self.scene(**kwargs), require_suffix(path, ".gif"), fps=self.fps,
                          max_frames=max_frames, progress=progress)

    def save_mp4(self, path: str | Path, *, max_frames: int | None = None, progress: bool = True,
                 **kwargs: Any) -> Path:
        """Write the comparison as an H.264 MP4 (atomic)."""
        return scene_save(self.scene(**kwargs), require_suffix(path, ".mp4"), fps=self.fps,
                          max_frames=max_frames, progress=progress)

    def player(self, **kwargs: Any) -> ComparePlayer:
        """Notebook widget of the comparison."""
        return ComparePlayer(self, **kwargs)

    def show(self, **kwargs: Any) -> Any:
        """Notebook display object (IPython HTML) of the animated comparison."""
        from IPython.display import HTML

        return HTML(self.to_html(**kwargs))


def compare(motions: Mapping[str, Any], *, reference: str | None = None, caption: str = "",
            fps: float = 20.0, align_root: bool = False) -> MotionComparison:
    """Compare motions [T,22,3] against `reference` (default: the first); longer ones are cut to the shortest."""
    if not motions:
        raise DataError("no motions given", field="motions", expected="a non-empty {name: joints[T,22,3]}")
    named = {str(name): as_joints(joints, str(name)) for name, joints in motions.items()}
    reference = next(iter(named)) if reference is None else str(reference)
    if reference not in named:
        raise DataError(f"reference {reference!r} is not one of {list(named)}", field="reference",
                        expected="a key of motions")
    lengths = {name: len(joints) for name, joints in named.items()}
    shortest = min(lengths.values())
    if len(set(lengths.values())) > 1:
        warnings.warn(f"motions have different lengths {lengths}; comparing the first {shortest} frames",
                      stacklevel=2)
        named = {name: joints[:shortest] for name, joints in named.items()}
    ref = named[reference]
    errors = {name: mean_position_error(joints, ref, align_root=align_root) for name, joints in named.items()}
    return MotionComparison(named, reference, errors, caption=caption, fps=float(fps), align_root=align_root)


class ComparisonScene:
    """Stick figures side by side plus the error-over-time plot with a frame cursor."""

    def __init__(self, comparison: MotionComparison, *, azim: float = DEFAULT_AZIM, elev: float = DEFAULT_ELEV,
                 dpi: float = 72, panel_size: float = 3.0, style: StickStyle | None = None,
                 camera: Literal["own", "reference"] = "own"):
        if camera not in ("own", "reference"):
            raise ValueError(f"camera must be 'own' or 'reference', got {camera!r}")
        self.comparison = comparison
        self.num_frames = comparison.num_frames
        names = list(comparison.motions)
        n = len(names)
        self.figure = new_figure((panel_size * max(n, 2), panel_size + 1.6), dpi)
        grid = self.figure.add_gridspec(2, n, height_ratios=[panel_size, 1.0], hspace=0.25,
                                        left=0.06, right=0.98, bottom=0.12, top=0.86 if comparison.caption else 0.93)
        ref_root = comparison.motions[comparison.reference][:, 0]
        self.colors = {name: f"C{i}" for i, name in enumerate(names)}
        self.dancers: dict[str, StickFigure] = {}
        for i, name in enumerate(names):
            ax = self.figure.add_subplot(grid[0, i], projection="3d")
            self.dancers[name] = StickFigure(ax, comparison.motions[name], style=style, azim=azim, elev=elev,
                                             name=name, camera_path=ref_root if camera == "reference" else None)
        if comparison.caption:
            self.figure.suptitle(comparison.caption, fontsize=10)
        self.error_ax = self.figure.add_subplot(grid[1, :])
        self._draw_error_plot()
        self.update(0)

    def _draw_error_plot(self) -> None:
        ax, cmp = self.error_ax, self.comparison
        seconds = np.arange(self.num_frames) / cmp.fps
        peak = 0.0
        for name, err in cmp.errors.items():
            if name == cmp.reference:
                continue
            ax.plot(seconds, err * 1000, color=self.colors[name], lw=1.2, label=name)
            peak = max(peak, float(err.max() * 1000))
        ax.set_xlim(0, max(seconds[-1], 1.0 / cmp.fps))
        ax.set_ylim(0, peak * 1.1 if peak > 0 else 1.0)
        kind = "root-aligned error" if cmp.align_root else "mean position error"
        ax.set_ylabel("mm", fontsize=8)
        ax.set_xlabel("time (s)", fontsize=8)
        ax.set_title(f"{kind} vs {cmp.reference}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(cmp.errors) > 1:
            ax.legend(fontsize=7, loc="upper left", ncol=min(4, len(cmp.errors) - 1))
        self.cursor = ax.axvline(0.0, color="black", lw=1)

    def title_of(self, name: str, t: int) -> str:
        """Subplot title: the name plus its error at frame t (or 'reference')."""
        if name == self.comparison.reference:
            return f"{name}\n(reference)"
        return f"{name}\nerror {self.comparison.errors[name][t] * 1000:.1f} mm"

    def update(self, t: int) -> None:
        t = int(np.clip(t, 0, self.num_frames - 1))
        for name, dancer in self.dancers.items():
            dancer.update(t)
            dancer.ax.set_title(self.title_of(name, t), fontsize=8, color=self.colors[name])
        x = t / self.comparison.fps
        self.cursor.set_xdata([x, x])

    def set_view(self, azim: float, elev: float) -> None:
        for dancer in self.dancers.values():
            dancer.set_view(azim, elev)


class ComparePlayer(FramePlayer):
    """Widget playing a comparison: synchronised dancers, per-motion error titles and error cursor."""

    def __init__(self, motions: MotionComparison | Mapping[str, Any], *, reference: str | None = None,
                 fps: float | None = None, caption: str = "", azim: float = DEFAULT_AZIM,
                 elev: float = DEFAULT_ELEV, dpi: float = 72, panel_size: float = 3.0,
                 style: StickStyle | None = None, camera: Literal["own", "reference"] = "own"):
        if isinstance(motions, MotionComparison):
            self.comparison = motions
        else:
            self.comparison = compare(motions, reference=reference, caption=caption, fps=fps or 20.0)
        self.comparison_scene = ComparisonScene(self.comparison, azim=azim, elev=elev, dpi=dpi,
                                                panel_size=panel_size, style=style, camera=camera)
        super().__init__(self.comparison.num_frames, fps=fps or self.comparison.fps, azim=azim, elev=elev, dpi=dpi)
        self._refresh()

    def _scene(self) -> ComparisonScene:
        return self.comparison_scene
