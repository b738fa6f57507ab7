"""3D stick-figure animation of T2M joints [T, 22, 3] with matplotlib: HTML, GIF, MP4 and PNG frames.

Figures are built as plain `Figure` objects on an Agg canvas, never through pyplot: rendering then
works without a display, no figure is left registered (nothing to leak or close), and notebooks do
not show a stray static copy next to the animation.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import matplotlib as mpl
import numpy as np
from matplotlib.animation import FFMpegWriter, FuncAnimation, HTMLWriter, PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Line3DCollection
from tqdm.auto import tqdm

from kpop_helpers.errors import DataError
from kpop_helpers.motion.skeleton import (
    LEFT_CHAIN_JOINTS,
    NUM_T2M_JOINTS,
    RIGHT_CHAIN_JOINTS,
    T2M_KINEMATIC_CHAIN,
)
from kpop_helpers.utils import ffmpeg_path

DEFAULT_AZIM = -60.0
DEFAULT_ELEV = 15.0
# HTMLWriter adds its JS player and CSS once; measured ~8 kB, rounded up for safety.
_HTML_OVERHEAD_BYTES = 16_000


@dataclass
class StickStyle:
    """Colours, line widths and camera framing of the stick figure."""

    left_color: str = "#d62728"
    right_color: str = "#1f77b4"
    spine_color: str = "#333333"
    linewidth: float = 2.5
    marker_size: float = 2.5
    trail_color: str = "#ff7f0e"
    trail_frames: int | None = None  # None: the whole path walked so far
    floor_color: str = "#c4c4c4"
    floor_spacing: float = 0.5
    view_radius: float = 1.0  # half-width of the camera window in metres
    follow_root: bool = True  # False: a fixed camera framing the whole clip
    title_width: int = 48  # caption wrap width in characters


def new_figure(figsize: tuple[float, float], dpi: float) -> Figure:
    """A pyplot-free Figure on an Agg canvas (works headless, needs no closing)."""
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def as_joints(joints: Any, name: str = "joints") -> np.ndarray:
    """Validated float32 joints [T, 22, 3] from an array, tensor or MotionClip; DataError otherwise."""
    if hasattr(joints, "positions"):  # a MotionClip
        joints = joints.positions
    if hasattr(joints, "detach"):  # a torch tensor
        joints = joints.detach().cpu().numpy()
    arr = np.asarray(joints, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[1:] != (NUM_T2M_JOINTS, 3) or arr.shape[0] < 1:
        hint = " (a batch? pick one sample, e.g. joints[0])" if arr.ndim == 4 else ""
        raise DataError(f"got shape {tuple(arr.shape)}{hint}", record=name, field="joints",
                        expected=f"T2M joint positions [T>=1, {NUM_T2M_JOINTS}, 3]")
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise DataError(f"non-finite value at frame {bad}", record=name, field="joints",
                        expected="finite joint positions")
    return arr


def to_mpl_coords(points: np.ndarray) -> np.ndarray:
    """Data (x, y-up, z) -> matplotlib (x, -z, y): y becomes the vertical axis, handedness kept."""
    return np.stack([points[..., 0], -points[..., 2], points[..., 1]], axis=-1)


def chain_color(chain: Sequence[int], style: StickStyle) -> str:
    """Left, right or spine colour of a kinematic chain (its first joint is the shared parent)."""
    joints = set(chain[1:])
    if joints <= LEFT_CHAIN_JOINTS:
        return style.left_color
    if joints <= RIGHT_CHAIN_JOINTS:
        return style.right_color
    return style.spine_color


def _grid_values(low: float, high: float, spacing: float) -> np.ndarray:
    # World-anchored lines, so the floor visibly slides under a dancer the camera follows.
    return np.arange(math.ceil(low / spacing), math.floor(high / spacing) + 1) * spacing


class StickFigure:
    """The artists of one dancer on a 3D Axes, updated in place frame by frame."""

    def __init__(self, ax: Any, joints: Any, *, title: str = "", style: StickStyle | None = None,
                 azim: float = DEFAULT_AZIM, elev: float = DEFAULT_ELEV, name: str = "joints",
                 camera_path: np.ndarray | None = None):
        if getattr(ax, "name", "") != "3d":
            raise TypeError("StickFigure needs a 3D Axes: fig.add_subplot(projection='3d')")
        self.ax = ax
        self.style = style or StickStyle()
        self.joints = as_joints(joints, name)
        self.num_frames = int(self.joints.shape[0])
        self._pts = to_mpl_coords(self.joints)
        # The camera follows this path (default: our own root); a comparison can share one path.
        path = self.joints[:, 0] if camera_path is None else np.asarray(camera_path, dtype=np.float32)
        if path.shape != (self.num_frames, 3):
            raise ValueError(f"camera_path must be [{self.num_frames}, 3], got {tuple(path.shape)}")
        self._camera_path = to_mpl_coords(path)[:, :2]
        self.floor = float(self.joints[..., 1].min())
        self.chain_lines: list[tuple[Any, list[int]]] = []  # (Line3D, joint indices) per kinematic chain
        for chain in T2M_KINEMATIC_CHAIN:
            (line,) = ax.plot([], [], [], color=chain_color(chain, self.style), lw=self.style.linewidth,
                              marker="o", markersize=self.style.marker_size, solid_capstyle="round")
            self.chain_lines.append((line, list(chain)))
        (self.trail,) = ax.plot([], [], [], color=self.style.trail_color, lw=1.5, alpha=0.8)
        self._grid = Line3DCollection([], colors=self.style.floor_color, linewidths=0.8)
        ax.add_collection3d(self._grid, autolim=False)
        ax.set_autoscale_on(False)
        ax.set_axis_off()
        ax.set_box_aspect((1, 1, 1), zoom=1.4)
        ax.view_init(elev=elev, azim=azim)
        self.set_title(title)

    def set_title(self, title: str, fontsize: float = 9) -> None:
        """Set the caption shown above the dancer (wrapped)."""
        self.ax.set_title(textwrap.fill(title, self.style.title_width), fontsize=fontsize)

    def _window(self, t: int) -> tuple[float, float, float]:
        radius = self.style.view_radius
        if self.style.follow_root:
            cx, cy = self._camera_path[t]
        else:
            lo, hi = self._camera_path.min(axis=0), self._camera_path.max(axis=0)
            cx, cy = (lo + hi) / 2
            radius = max(radius, float((hi - lo).max()) / 2 + 0.5)
        return float(cx), float(cy), radius

    def update(self, t: int) -> None:
        """Draw frame t: pose, root trail, floor grid and a camera window centred on the root."""
        t = int(np.clip(t, 0, self.num_frames - 1))
        pose = self._pts[t]
        for line, chain in self.chain_lines:
            line.set_data_3d(pose[chain, 0], pose[chain, 1], pose[chain, 2])
        start = 0 if self.style.trail_frames is None else max(0, t - self.style.trail_frames)
        trail = self._pts[start:t + 1, 0]
        self.trail.set_data_3d(trail[:, 0], trail[:, 1], np.full(len(trail), self.floor + 1e-3))
        cx, cy, r = self._window(t)
        xs = _grid_values(cx - r, cx + r, self.style.floor_spacing)
        ys = _grid_values(cy - r, cy + r, self.style.floor_spacing)
        f = self.floor
        segments = [[(x, cy - r, f), (x, cy + r, f)] for x in xs] + [[(cx - r, y, f), (cx + r, y, f)] for y in ys]
        self._grid.set_segments(segments)
        self.ax.set_xlim(cx - r, cx + r)
        self.ax.set_ylim(cy - r, cy + r)
        self.ax.set_zlim(f, f + 2 * r)

    def set_view(self, azim: float, elev: float) -> None:
        """Point the camera: azimuth and elevation in degrees (matplotlib's convention)."""
        self.ax.view_init(elev=elev, azim=azim)


def draw_frame(ax: Any, joints: Any, t: int, *, caption: str = "", style: StickStyle | None = None,
               azim: float = DEFAULT_AZIM, elev: float = DEFAULT_ELEV) -> StickFigure:
    """Clear a 3D Axes and draw frame t of joints [T,22,3]; returns the StickFigure for cheap updates."""
    ax.cla()
    figure = StickFigure(ax, joints, title=caption, style=style, azim=azim, elev=elev)
    figure.update(t)
    return figure


class Scene(Protocol):
    """Anything drawable frame by frame on one Figure (one dancer, a comparison grid...)."""

    figure: Figure
    num_frames: int

    def update(self, t: int) -> None: ...

    def set_view(self, azim: float, elev: float) -> None: ...


class StickFigureScene:
    """One dancer on its own Figure."""

    def __init__(self, joints: Any, *, caption: str = "", style: StickStyle | None = None,
                 azim: float = DEFAULT_AZIM, elev: float = DEFAULT_ELEV,
                 figsize: tuple[float, float] = (4.0, 4.0), dpi: float = 80):
        self.figure = new_figure(figsize, dpi)
        ax = self.figure.add_subplot(projection="3d")
        self.figure.subplots_adjust(left=0, right=1, bottom=0, top=0.9 if caption else 1.0)
        self.dancer = StickFigure(ax, joints, title=caption, style=style, azim=azim, elev=elev)
        self.num_frames = self.dancer.num_frames
        self.dancer.update(0)

    def update(self, t: int) -> None:
        self.dancer.update(t)

    def set_view(self, azim: float, elev: float) -> None:
        self.dancer.set_view(azim, elev)


def frame_indices(num_frames: int, max_frames: int | None = None) -> list[int]:
    """Evenly strided frame indices, at most max_frames of them (a uniform stride keeps timing exact)."""
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    step = 1 if max_frames is None else max(1, math.ceil(num_frames / max_frames))
    return list(range(0, num_frames, step))


def _stride(frames: Sequence[int]) -> int:
    return frames[1] - frames[0] if len(frames) > 1 else 1


def scene_png(scene: Scene, t: int, dpi: float | None = None) -> bytes:
    """PNG bytes of frame t of a scene."""
    scene.update(t)
    buf = io.BytesIO()
    scene.figure.savefig(buf, format="png", dpi=dpi or scene.figure.dpi)
    return buf.getvalue()


def scene_animation(scene: Scene, frames: Sequence[int], fps: float) -> FuncAnimation:
    """A FuncAnimation over the given frame indices, played back in real time."""
    interval_ms = 1000.0 * _stride(frames) / fps
    return FuncAnimation(scene.figure, lambda t: scene.update(int(t)), frames=list(frames),
                         interval=interval_ms, blit=False, cache_frame_data=False)


def _progress_callback(total: int, desc: str, enabled: bool):
    bar = tqdm(total=total, desc=desc, leave=False, disable=not enabled or total < 50)

    def callback(current: int, _total: int) -> None:
        bar.update(current + 1 - bar.n)
        if current + 1 >= total:
            bar.close()
    return callback


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path` (same suffix, so writers infer the format); fsync + replace on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the result ordinary permissions
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _b64_frame_bytes(png_bytes: int) -> float:
    # base64 (4/3), a line break every 76 chars escaped as "\\\n", plus the JS `frames[i] = "..."` wrapper.
    return png_bytes * 4 / 3 * 78 / 76 + 64


def _plan_embed(scene: Scene, frames: list[int], fps: float, dpi: float, budget: float,
                min_dpi: float, min_fps: float) -> tuple[int, float]:
    """Pick a dpi and a subsampling factor of `frames` whose estimated HTML size fits the budget."""
    probes = frames[:: max(1, len(frames) // 3)][:3]
    keep_at_min_fps = max(2, math.ceil(len(frames) * min(1.0, min_fps * _stride(frames) / fps)))
    while True:
        per_frame = 1.1 * max(_b64_frame_bytes(len(scene_png(scene, t, dpi))) for t in probes)
        allowed = int((budget - _HTML_OVERHEAD_BYTES) // per_frame)
        if allowed >= min(keep_at_min_fps, len(frames)) or dpi <= min_dpi:
            break
        # PNG size of a line drawing grows roughly with the pixel count, i.e. dpi squared.
        dpi = max(min_dpi, min(0.85 * dpi, dpi * math.sqrt(max(allowed, 1) / keep_at_min_fps)))
    if allowed < 1:
        raise ValueError(f"an HTML budget of {budget / 2**20:.2f} MB cannot hold one frame at dpi {dpi:.0f};"
                         " raise max_mb or rcParams['animation.embed_limit'], or use a smaller figsize")
    return math.ceil(len(frames) / allowed), dpi


def scene_to_html(scene: Scene, *, fps: float, dpi: float | None = None, max_frames: int | None = None,
                  max_mb: float | None = None, min_dpi: float = 40, min_fps: float = 5.0,
                  progress: bool = True) -> str:
    """Self-contained JS/HTML animation under the notebook embed limit (fewer frames, then lower dpi)."""
    limit_mb = float(mpl.rcParams["animation.embed_limit"])
    if max_mb is not None:
        limit_mb = min(limit_mb, float(max_mb))
    limit = limit_mb * 2**20
    dpi = float(dpi or scene.figure.dpi)
    all_frames = frame_indices(scene.num_frames, max_frames)
    factor, dpi = _plan_embed(scene, all_frames, fps, dpi, 0.92 * limit, min(min_dpi, dpi), min_fps)
    for _attempt in range(4):
        html = _render_jshtml(scene, all_frames[::factor], fps, dpi, progress)
        size = len(html.encode("utf-8"))
        if size <= limit:
            return html
        if factor >= len(all_frames):
            break
        # The estimate came from a few probe frames; scale the subsampling by the real overshoot.
        factor = min(len(all_frames), math.ceil(factor * size / (0.9 * limit)))
    raise ValueError(f"could not fit the animation under {limit_mb:.2f} MB (last try {size / 2**20:.2f} MB)")


def _render_jshtml(scene: Scene, frames: list[int], fps: float, dpi: float, progress: bool) -> str:
    # Same writer and settings as Animation.to_jshtml, plus a progress bar and our own size budget
    # (the writer's own limit would silently drop the tail of the dance instead).
    anim = scene_animation(scene, frames, fps)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "animation.html")
        writer = HTMLWriter(fps=fps / _stride(frames), embed_frames=True, default_mode="loop",
                            embed_limit=float("inf"))
        anim.save(str(out), writer=writer, dpi=dpi,
                  progress_callback=_progress_callback(len(frames), "render html", progress))
        return out.read_text()


def ffmpeg_executable() -> str:
    """Path of an ffmpeg binary (`utils.ffmpeg_path`); RuntimeError saying what to install when there is none."""
    found = ffmpeg_path()
    if found is None:
        raise RuntimeError("MP4 export needs ffmpeg: pip install 'kpop-helpers[viz]' (imageio-ffmpeg)")
    return found


def scene_save(scene: Scene, path: str | Path, *, fps: float, dpi: float | None = None,
               max_frames: int | None = None, progress: bool = True) -> Path:
    """Write a scene as .gif (Pillow) or .mp4 (ffmpeg, H.264) atomically, by suffix; returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"{path}: unsupported video format '{suffix}' (expected .gif or .mp4)")
    frames = frame_indices(scene.num_frames, max_frames)
    fps_out = fps / _stride(frames)
    anim = scene_animation(scene, frames, fps)
    callback = _progress_callback(len(frames), f"render {suffix[1:]}", progress)
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            anim.save(str(tmp), writer=PillowWriter(fps=fps_out), dpi=dpi, progress_callback=callback)
        else:
            # yuv420p (needed by most players) needs even frame sizes, whatever figsize * dpi gives.
            writer = FFMpegWriter(fps=fps_out, codec="h264",
                                  extra_args=["-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2"])
            with mpl.rc_context({"animation.ffmpeg_path": ffmpeg_executable()}):
                anim.save(str(tmp), writer=writer, dpi=dpi, progress_callback=callback)
    return path


def require_suffix(path: str | Path, suffix: str) -> Path:
    """`path` as a Path, or ValueError when its suffix is not `suffix`."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise ValueError(f"{path}: expected a '{suffix}' file name")
    return path


def animate(joints: Any, *, caption: str = "", fps: float = 20, azim: float = DEFAULT_AZIM,
            elev: float = DEFAULT_ELEV, dpi: float = 80, max_frames: int | None = None,
            figsize: tuple[float, float] = (4.0, 4.0), style: StickStyle | None = None) -> FuncAnimation:
    """FuncAnimation of joints [T,22,3] (strided to at most max_frames, still real time)."""
    scene = StickFigureScene(joints, caption=caption, style=style, azim=azim, elev=elev, figsize=figsize, dpi=dpi)
    return scene_animation(scene, frame_indices(scene.num_frames, max_frames), fps)


def to_html(joints: Any, *, caption: str = "", fps: float = 20, azim: float = DEFAULT_AZIM,
            elev: float = DEFAULT_ELEV, dpi: float = 80, max_frames: int | None = None,
            max_mb: float | None = None, figsize: tuple[float, float] = (4.0, 4.0),
            style: StickStyle | None = None, progress: bool = True) -> str:
    """Inline JS/HTML animation (no ffmpeg) kept under rcParams['animation.embed_limit'] and max_mb."""
    scene = StickFigureScene(joints, caption=caption, style=style, azim=azim, elev=elev, figsize=figsize, dpi=dpi)
    return scene_to_html(scene, fps=fps, dpi=dpi, max_frames=max_frames, max_mb=max_mb, progress=progress)


def save_gif(joints: Any, path: str | Path, *, caption: str = "", fps: float = 20, azim: float = DEFAULT_AZIM,
             elev: float = DEFAULT_ELEV, dpi: float = 60, max_frames: int | None = None,
             figsize: tuple[float, float] = (4.0, 4.0), style: StickStyle | None = None,
             progress: bool = True) -> Path:
    """Write an animated GIF with Pillow (atomic); returns the path."""
    path = require_suffix(path, ".gif")
    scene = StickFigureScene(joints, caption=caption, style=style, azim=azim, elev=elev, figsize=figsize, dpi=dpi)
    return scene_save(scene, path, fps=fps, dpi=dpi, max_frames=max_frames, progress=progress)


def save_mp4(joints: Any, path: str | Path, *, caption: str = "", fps: float = 20, azim: float = DEFAULT_AZIM,
             elev: float = DEFAULT_ELEV, dpi: float = 80, max_frames: int | None = None,
             figsize: tuple[float, float] = (4.0, 4.0), style: StickStyle | None = None,
             progress: bool = True) -> Path:
    """Write an H.264 MP4 with imageio-ffmpeg's bundled ffmpeg (atomic); returns the path."""
    path = require_suffix(path, ".mp4")
    scene = StickFigureScene(joints, caption=caption, style=style, azim=azim, elev=elev, figsize=figsize, dpi=dpi)
    return scene_save(scene, path, fps=fps, dpi=dpi, max_frames=max_frames, progress=progress)


def render_frames_png(joints: Any, out_dir: str | Path, frames: Sequence[int] | None = None, *,
                      caption: str = "", azim: float = DEFAULT_AZIM, elev: float = DEFAULT_ELEV,
                      dpi: float = 80, figsize: tuple[float, float] = (4.0, 4.0),
                      style: StickStyle | None = None) -> list[Path]:
    """Write the chosen frames (default: all) as out_dir/frame_00000.png ...; returns the paths."""
    scene = StickFigureScene(joints, caption=caption, style=style, azim=azim, elev=elev, figsize=figsize, dpi=dpi)
    chosen = list(range(scene.num_frames)) if frames is None else [int(t) for t in frames]
    bad = [t for t in chosen if not 0 <= t < scene.num_frames]
    if bad:
        raise ValueError(f"frames {bad[:5]} out of range for a {scene.num_frames}-frame motion")
    out_dir = Path(out_dir)
    paths = []
    for t in chosen:
        path = out_dir / f"frame_{t:05d}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(scene_png(scene, t, dpi))
        paths.append(path)
    return paths


def show(joints: Any, caption: str = "", **kwargs: Any) -> Any:
    """Notebook display object (IPython HTML) of the animation; kwargs go to to_html."""
    from IPython.display import HTML

    return HTML(to_html(joints, caption=caption, **kwargs))
