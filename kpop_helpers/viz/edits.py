"""Drawings of motion edits and long dances: what was kept vs generated, and where stitched windows meet.

An edit keeps some frames and/or some joints of an original clip and regenerates the rest; `EditScene`
shows the original beside each variation with the kept part in green. A long dance is several overlapping
generation windows stitched together; `LongDanceScene` and `plot_seams` show the seams (the overlap spans).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from kpop_helpers.errors import DataError
from kpop_helpers.motion.skeleton import NUM_T2M_JOINTS, T2M_JOINT_NAMES, T2M_PARENTS
from kpop_helpers.viz.animation import (
    DEFAULT_AZIM,
    DEFAULT_ELEV,
    StickFigure,
    StickStyle,
    as_joints,
    atomic_path,
    new_figure,
    require_suffix,
    scene_save,
    scene_to_html,
)

KEPT_COLOR = "#2ca02c"
SEAM_COLOR = "#9467bd"
# A GIF frame of one dancer and its timeline at dpi 60 is ~6 kB: 500 frames keep a long dance near 3 MB.
LONG_DANCE_MAX_FRAMES = 500


class MarkedFigure(StickFigure):
    """A StickFigure that draws `marked` joints (and bones between two of them) thick in a mark colour,
    and can tint the whole body per frame (`tint`: a colour, or None for the usual left/right colours)."""

    def __init__(self, ax: Any, joints: Any, *, marked: Sequence[int] = (), mark_color: str = KEPT_COLOR,
                 **kwargs: Any):
        super().__init__(ax, joints, **kwargs)
        keep = set(marked)
        bones = [[p, j] for j, p in enumerate(T2M_PARENTS) if p >= 0 and p in keep and j in keep]
        alone = [[j] for j in sorted(keep) if not any(j in bone for bone in bones)]
        # One line through every kept bone, broken by NaN rows (-1 below) so separate limbs stay apart.
        self._mark_index = np.array([i for piece in bones + alone for i in [*piece, -1]], dtype=int)
        # A Line3D keeps its zorder (Axes3D re-sorts collections only), so the mark is always drawn on top.
        (self._mark,) = ax.plot([], [], [], color=mark_color, lw=1.8 * self.style.linewidth, marker="o", zorder=5,
                                markersize=2 * self.style.marker_size, solid_capstyle="round")
        self._base = [(line.get_color(), line.get_linewidth()) for line, _ in self.chain_lines]
        self.tint: str | None = None

    def update(self, t: int) -> None:
        """Draw frame t, with the marked joints on top and the body in `tint` if set."""
        super().update(t)
        pose = self._pts[int(np.clip(t, 0, self.num_frames - 1))]
        mark = np.where(self._mark_index[:, None] >= 0, pose[self._mark_index], np.nan)
        self._mark.set_data_3d(mark[:, 0], mark[:, 1], mark[:, 2])
        for (line, _), (color, width) in zip(self.chain_lines, self._base, strict=True):
            line.set_color(self.tint or color)
            line.set_linewidth(width * 1.4 if self.tint else width)


def _index(value: Any, name: str, record: int | None, high: int, expected: str) -> int:
    """int(value) if it is an integer in 0..high, else DataError naming `name`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not 0 <= value <= high:
        raise DataError(f"got {value!r}", field=name, record=record, expected=expected)
    return int(value)


def kept_joint_indices(kept_joints: Sequence[int] | Sequence[str] | None) -> tuple[int, ...]:
    """Sorted T2M joint indices from indices or T2M joint names; DataError for unknown ones."""
    if isinstance(kept_joints, (str, int, np.integer)):
        kept_joints = [kept_joints]  # one joint given bare
    expected = f"T2M joint indices 0..{NUM_T2M_JOINTS - 1} or names ({', '.join(T2M_JOINT_NAMES)})"
    out = set()
    for value in kept_joints if kept_joints is not None else ():
        if isinstance(value, str) and value not in T2M_JOINT_NAMES:
            raise DataError(f"unknown joint name {value!r}", field="kept_joints", expected=expected)
        out.add(T2M_JOINT_NAMES.index(value) if isinstance(value, str)
                else _index(value, "kept_joints", None, NUM_T2M_JOINTS - 1, expected))
    return tuple(sorted(out))


def _known_frames(known: Any, total: int, original: int) -> np.ndarray:
    """Bool [total] (False beyond a mask as long as a shorter original), or DataError naming known_frames."""
    if known is None:
        return np.zeros(total, bool)
    arr = np.asarray(known.detach().cpu() if hasattr(known, "detach") else known)
    if arr.dtype != np.bool_ or arr.ndim != 1 or len(arr) not in (total, original):
        raise DataError(f"got a {arr.dtype} array of shape {arr.shape}", field="known_frames",
                        expected=f"a bool array [{total}] (or [{original}], the original's length), True = kept")
    arr = np.concatenate([arr, np.zeros(total - len(arr), bool)])
    if arr[original:].any():
        raise DataError(f"frame {original + int(np.argmax(arr[original:]))} is marked kept but the original has "
                        f"{original} frames", field="known_frames", expected="kept frames inside the original")
    return arr


def frame_spans(spans: Sequence[Sequence[Any]], total: int, name: str, width: int = 2) -> list[tuple]:
    """Validated (start, end[, text]) frame spans with 0 <= start < end <= total; DataError naming `name`."""
    expected = f"(start, end{', text' if width == 3 else ''}) frames with 0 <= start < end <= {total}"
    out = []
    for k, span in enumerate(spans):
        if isinstance(span, (str, bytes)) or not isinstance(span, (Sequence, np.ndarray)) or len(span) != width:
            raise DataError(f"got {span!r}", field=name, record=k, expected=expected)
        start, end = (_index(v, name, k, total, expected) for v in span[:2])
        if start >= end:
            raise DataError(f"span ({start}, {end}) is empty", field=name, record=k, expected=expected)
        out.append((start, end, *[str(v) for v in span[2:]]))
    return out


def _boundaries(boundaries: Sequence[int], total: int) -> list[int]:
    return [_index(b, "boundaries", k, total, f"frame indices 0..{total}") for k, b in enumerate(boundaries)]


def _span_mask(spans: Sequence[tuple], total: int) -> np.ndarray:
    """Per frame: 1 + the index of the span holding it, 0 outside every span (the first span wins)."""
    mask = np.zeros(total, int)
    for k, (start, end, *_) in reversed(list(enumerate(spans))):
        mask[start:end] = k + 1
    return mask


def _strip(ax: Any, total: int, fps: float) -> Any:
    """Style a timeline strip spanning the whole motion; returns its cursor line."""
    ax.set_xlim(0, max(total / fps, 1.0 / fps))
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.tick_params(labelsize=7, length=2, pad=1)
    ax.set_xlabel("time (s)", fontsize=7, labelpad=1)
    return ax.axvline(0.0, color="black", lw=1.5)


class EditScene:
    """The original beside each variation, kept joints and kept frames in green, over a kept-frames timeline."""

    def __init__(self, original: Any, variations: Mapping[str, Any], *,
                 known_frames: np.ndarray | None = None, kept_joints: Sequence[int] | Sequence[str] | None = None,
                 caption: str = "", fps: float = 20.0, azim: float = DEFAULT_AZIM, elev: float = DEFAULT_ELEV,
                 style: StickStyle | None = None, dpi: float = 72, panel_size: float = 3.0):
        if not isinstance(variations, Mapping) or not variations:
            raise DataError("no variations given", field="variations", expected="a non-empty {name: joints[T,22,3]}")
        self.motions = {"original": as_joints(original, "original")}
        for name, joints in variations.items():
            if str(name) in self.motions:
                raise DataError(f"duplicate name {name!r}", field="variations", expected="names other than 'original'")
            self.motions[str(name)] = as_joints(joints, str(name))
        self.fps = float(fps)
        self.num_frames = max(len(j) for j in self.motions.values())
        self.original_frames = len(self.motions["original"])
        self.known = _known_frames(known_frames, self.num_frames, self.original_frames)
        self.kept_joints = kept_joint_indices(kept_joints)
        n = len(self.motions)
        self.figure = new_figure((panel_size * n, panel_size + 0.8), dpi)
        top = 0.86 if caption else 0.93
        grid = self.figure.add_gridspec(2, n, height_ratios=[panel_size, 0.32], hspace=0.12,
                                        left=0.03, right=0.97, bottom=0.14, top=top)
        self.dancers = {name: MarkedFigure(self.figure.add_subplot(grid[0, i], projection="3d"), joints,
                                           marked=self.kept_joints, style=style, azim=azim, elev=elev, name=name)
                        for i, (name, joints) in enumerate(self.motions.items())}
        if caption:
            self.figure.suptitle(caption, fontsize=10)
        self.timeline = self.figure.add_subplot(grid[1, :])
        self._draw_timeline()
        self.update(0)

    def _draw_timeline(self) -> None:
        ax, dt = self.timeline, 1.0 / self.fps
        edges = np.flatnonzero(np.diff(np.concatenate([[0], self.known.astype(np.int8), [0]])))
        for start, end in edges.reshape(-1, 2):  # runs of kept frames: (rise, fall) pairs
            ax.axvspan(start * dt, end * dt, color=KEPT_COLOR, alpha=0.35, lw=0)
        if self.original_frames < self.num_frames:  # a continuation: mark where the original stops
            ax.axvline(self.original_frames * dt, color="#555555", lw=1, ls="--")
        self.cursor = _strip(ax, self.num_frames, self.fps)
        joints = f" ({len(self.kept_joints)} joints)" if self.kept_joints else ""
        ax.set_xlabel(f"time (s) · green: kept from the original{joints}", fontsize=7, labelpad=1)

    def title_of(self, name: str, t: int) -> str:
        """Panel title at frame t: the name, then kept / generated (or replaced / ended for the original)."""
        if name == "original":
            if t >= self.original_frames:
                return "original · ended"
            state = "kept" if self.known[t] else ("replaced" if self.known.any() else "")
        else:
            state = "kept" if self.known[t] else "generated"
        return f"{name} · {state}" if state else name

    def update(self, t: int) -> None:
        """Draw frame t in every panel (shorter clips hold their last frame) and move the cursor."""
        t = int(np.clip(t, 0, self.num_frames - 1))
        kept = bool(self.known[t])
        for name, dancer in self.dancers.items():
            dancer.tint = KEPT_COLOR if kept and t < dancer.num_frames else None
            dancer.update(t)
            dancer.ax.set_title(self.title_of(name, t), fontsize=8, color=KEPT_COLOR if kept else "black")
        self.cursor.set_xdata([t / self.fps] * 2)

    def set_view(self, azim: float, elev: float) -> None:
        """Point every panel's camera."""
        for dancer in self.dancers.values():
            dancer.set_view(azim, elev)


def save_edit_gif(original: Any, variations: Mapping[str, Any], path: str | Path, *,
                  known_frames: np.ndarray | None = None, kept_joints: Sequence[int] | Sequence[str] | None = None,
                  fps: float = 20, max_frames: int | None = None, dpi: float | None = None, progress: bool = True,
                  caption: str = "") -> Path:
    """Write the original beside its variations, kept parts in green, as an animated GIF (atomic)."""
    path = require_suffix(path, ".gif")
    scene = EditScene(original, variations, known_frames=known_frames, kept_joints=kept_joints, caption=caption,
                      fps=fps, dpi=dpi or 60)
    return scene_save(scene, path, fps=fps, dpi=scene.figure.dpi, max_frames=max_frames, progress=progress)


def edit_html(original: Any, variations: Mapping[str, Any], *, known_frames: np.ndarray | None = None,
              kept_joints: Sequence[int] | Sequence[str] | None = None, fps: float = 20,
              max_frames: int | None = None, max_mb: float | None = None, dpi: float | None = None,
              progress: bool = True, caption: str = "") -> str:
    """Inline JS/HTML animation of an edit, kept under the notebook embed limit."""
    scene = EditScene(original, variations, known_frames=known_frames, kept_joints=kept_joints, caption=caption,
                      fps=fps, dpi=dpi or 72)
    return scene_to_html(scene, fps=fps, max_frames=max_frames, max_mb=max_mb, progress=progress)


class LongDanceScene:
    """One dancer over a whole-dance timeline: seams shaded, prompt boundaries, labels and a cursor."""

    def __init__(self, joints: Any, *, seams: Sequence[tuple[int, int]] = (), boundaries: Sequence[int] = (),
                 labels: Sequence[tuple[int, int, str]] = (), caption: str = "", fps: float = 20.0,
                 azim: float = DEFAULT_AZIM, elev: float = DEFAULT_ELEV, style: StickStyle | None = None,
                 figsize: tuple[float, float] = (4.0, 4.8), dpi: float = 72):
        joints = as_joints(joints)
        self.num_frames = total = len(joints)
        self.fps = float(fps)
        self.seams = frame_spans(seams, total, "seams")
        self.boundaries = _boundaries(boundaries, total)
        self.labels = frame_spans(labels, total, "labels", width=3)
        self._seam_of = _span_mask(self.seams, total)
        self._label_of = _span_mask(self.labels, total)
        self.caption = caption
        # The whole path of a minutes-long dance would scribble over the floor: trail the last 5 s only.
        style = style or StickStyle(trail_frames=int(5 * self.fps))
        self.figure = new_figure(figsize, dpi)
        grid = self.figure.add_gridspec(2, 1, height_ratios=[figsize[0], 0.45], hspace=0.1,
                                        left=0.04, right=0.96, bottom=0.11, top=0.88)
        self.dancer = MarkedFigure(self.figure.add_subplot(grid[0], projection="3d"), joints, style=style,
                                   azim=azim, elev=elev)
        self.timeline = self.figure.add_subplot(grid[1])
        self._draw_timeline()
        self.update(0)

    def _draw_timeline(self) -> None:
        ax, dt = self.timeline, 1.0 / self.fps
        for k, (start, end, text) in enumerate(self.labels):
            ax.axvspan(start * dt, end * dt, ymin=0.55, color="#dddddd" if k % 2 else "#eeeeee", lw=0)
            # Cut the prompt to what fits its span (DejaVu Sans: ~0.6 em per character, plus a margin).
            chars = int((end - start) / self.num_frames * self.figure.get_figwidth() * 0.92 * 72 / (0.7 * 5.5))
            if chars >= 2:
                short = text if len(text) <= chars else text[: chars - 1] + "…"
                ax.text((start + end) / 2 * dt, 0.77, short, ha="center", va="center", fontsize=5.5, clip_on=True)
        for start, end in self.seams:
            ax.axvspan(start * dt, end * dt, ymax=0.55, color=SEAM_COLOR, alpha=0.6, lw=0)
        for b in self.boundaries:
            ax.axvline(b * dt, color="black", lw=0.8, ls="--")
        self.cursor = _strip(ax, self.num_frames, self.fps)

    def title_of(self, t: int) -> str:
        """Title at frame t: time in seconds, the current prompt and 'seam k' (1-based) inside a seam."""
        parts = [f"{t / self.fps:.1f} s"]
        if self._label_of[t]:
            parts.append(self.labels[self._label_of[t] - 1][2])
        if self._seam_of[t]:
            parts.append(f"seam {self._seam_of[t]}")
        return "\n".join([self.caption] * bool(self.caption) + [" · ".join(parts)])

    def update(self, t: int) -> None:
        """Draw frame t, in the seam colour inside a seam, and move the cursor."""
        t = int(np.clip(t, 0, self.num_frames - 1))
        self.dancer.tint = SEAM_COLOR if self._seam_of[t] else None
        self.dancer.update(t)
        title = "\n".join(textwrap.fill(line, self.dancer.style.title_width) for line in self.title_of(t).split("\n"))
        self.dancer.ax.set_title(title, fontsize=8, color=self.dancer.tint or "black")
        self.cursor.set_xdata([t / self.fps] * 2)

    def set_view(self, azim: float, elev: float) -> None:
        """Point the camera."""
        self.dancer.set_view(azim, elev)


def save_long_dance_gif(joints: Any, path: str | Path, *, seams: Sequence[tuple[int, int]] = (),
                        boundaries: Sequence[int] = (), labels: Sequence[tuple[int, int, str]] = (),
                        fps: float = 20, max_frames: int | None = None, dpi: float | None = None,
                        progress: bool = True, caption: str = "") -> Path:
    """Write a long dance with its seam timeline as a GIF (atomic); max_frames=None caps at LONG_DANCE_MAX_FRAMES."""
    path = require_suffix(path, ".gif")
    scene = LongDanceScene(joints, seams=seams, boundaries=boundaries, labels=labels, caption=caption, fps=fps,
                           dpi=dpi or 60)
    return scene_save(scene, path, fps=fps, dpi=scene.figure.dpi, max_frames=max_frames or LONG_DANCE_MAX_FRAMES,
                      progress=progress)


def joint_jerk(joints: Any, fps: float = 20.0) -> np.ndarray:
    """Mean over joints of |third finite difference| * fps^3 [T-3] (m/s^3); entry i is centred at frame i+1.5."""
    arr = as_joints(joints).astype(np.float64)
    return np.linalg.norm(np.diff(arr, n=3, axis=0), axis=-1).mean(axis=-1) * fps**3


def plot_seams(joints: Any, *, fps: float = 20, seams: Sequence[tuple[int, int]] = (),
               boundaries: Sequence[int] = (), ax: Sequence[Any] | None = None, caption: str = "",
               path: str | Path | None = None) -> Figure:
    """Root path from above and joint jerk over time (log), seams in purple; ax: a (path, jerk) Axes pair."""
    joints = as_joints(joints)
    total = len(joints)
    spans = frame_spans(seams, total, "seams")
    cuts = _boundaries(boundaries, total)
    fig = new_figure((7.0, 6.0), 100) if ax is None else ax[0].figure
    top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 2]}) if ax is None else ax
    root = joints[:, 0]
    top.plot(root[:, 0], root[:, 2], color="#888888", lw=1.2, label="root path")
    for k, (start, end) in enumerate(spans):
        seg = root[start:end]
        top.plot(seg[:, 0], seg[:, 2], color=SEAM_COLOR, lw=2.5, label="seams" if k == 0 else None)
    top.plot(*root[0, [0, 2]], "o", color="black", ms=4, label="start")
    if cuts:
        top.plot(root[np.minimum(cuts, total - 1)][:, 0], root[np.minimum(cuts, total - 1)][:, 2], "x",
                 color="black", ms=6, label="prompt change")
    top.set_aspect("equal", adjustable="datalim")
    top.set(xlabel="x (m)", ylabel="z (m)", title=caption or "root path seen from above")
    top.legend(fontsize=7)
    top.grid(alpha=0.3)
    dt = 1.0 / fps
    if total >= 4:
        jerk = np.maximum(joint_jerk(joints, fps), 1e-3)  # a still pose has zero jerk; log scale needs > 0
        centres = (np.arange(total - 3) + 1.5) * dt
        bottom.plot(centres, jerk, color="#bbbbbb", lw=0.6, label="per frame")
        width = max(1, int(round(fps / 2)))  # a 0.5 s running mean: the per-frame trace of a dance is noisy
        smooth = np.convolve(jerk, np.ones(width), "same") / np.convolve(np.ones_like(jerk), np.ones(width), "same")
        bottom.plot(centres, smooth, color="#222222", lw=1.2, label="0.5 s mean")
        bottom.legend(fontsize=7, loc="upper right")
        bottom.set_yscale("log")
        in_seam = _span_mask(spans, total)[1:-2] > 0  # by the frame nearest each centre
        both = in_seam.any() and (~in_seam).any()
        bottom.set_title(f"joint jerk: mean {jerk[in_seam].mean():.0f} m/s³ in seams, {jerk[~in_seam].mean():.0f}"
                         f" elsewhere" if both else f"joint jerk: mean {jerk.mean():.0f} m/s³", fontsize=9)
    else:
        bottom.text(0.5, 0.5, f"{total} frames: too short for jerk (needs 4)", ha="center", va="center",
                    transform=bottom.transAxes, fontsize=8)
    for start, end in spans:
        bottom.axvspan(start * dt, end * dt, color=SEAM_COLOR, alpha=0.3, lw=0)
    for b in cuts:
        bottom.axvline(b * dt, color="black", lw=0.8, ls="--")
    bottom.set(xlim=(0, max(total * dt, dt)), xlabel="time (s)", ylabel="jerk (m/s³)")
    bottom.grid(alpha=0.3, which="both")
    if ax is None:
        fig.tight_layout()
    if path is not None:
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    return fig
