"""Result plots: training curves, benchmark charts from results.json, foot contacts and pose grids.

Every function returns a pyplot-free Figure (shown inline by notebooks, never double-displayed) and
writes a PNG atomically when given `path`. Benchmark rows with missing or None values are skipped and
the figure says how many were.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kpop_helpers.errors import DataError
from kpop_helpers.motion.skeleton import LEFT_FOOT, RIGHT_FOOT
from kpop_helpers.viz.animation import (
    DEFAULT_AZIM,
    DEFAULT_ELEV,
    StickStyle,
    as_joints,
    atomic_path,
    draw_frame,
    new_figure,
)

RUNTIME_COLORS = {"torch": "C0", "torchscript": "C2", "onnxruntime": "C1"}


def _finish(fig: Figure, path: str | Path | None, dpi: float = 110) -> Figure:
    if path is not None:
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    return fig


def _number(row: Mapping[str, Any], field: str) -> float | None:
    """A finite float from row[field], else None (missing, None, NaN, text)."""
    value = row.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def load_results(results: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | Path) -> list[dict]:
    """Benchmark rows from a results.json path, its parsed dict ({"protocol", "rows"}) or a list of rows."""
    source: str | None = None
    if isinstance(results, (str, Path)):
        source = str(results)
        try:
            results = json.loads(Path(results).read_text())
        except FileNotFoundError:
            raise DataError("file not found", path=source, expected="a benchmark results.json") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc})", path=source, expected="a benchmark results.json") from None
    rows = results.get("rows") if isinstance(results, Mapping) else results
    if not isinstance(rows, (list, tuple)):
        raise DataError("no list of rows", path=source, field="rows",
                        expected='{"protocol": {...}, "rows": [row, ...]}')
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(f"row is a {type(row).__name__}", path=source, record=i, field="rows",
                            expected="an object with variant, step_ms_p50, fid_k, ...")
    return [dict(row) for row in rows]


def _labels(rows: list[dict]) -> list[str]:
    """Variant names, with the thread count added where one variant appears in several rows."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row.get("variant"))] = counts.get(str(row.get("variant")), 0) + 1
    return [f"{row.get('variant')} ({row.get('threads')}t)" if counts[str(row.get("variant"))] > 1
            else str(row.get("variant")) for row in rows]


def _note_skipped(fig: Figure, skipped: int, fields: str) -> None:
    if skipped:
        fig.text(0.01, 0.01, f"skipped {skipped} row(s) without {fields}", fontsize=7, color="0.4")


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not beaten on both axes (lower x and lower y are better), ordered by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(results: Any, *, latency: str = "gen_time_s", quality: str = "fid_k",
                path: str | Path | None = None, figsize: tuple[float, float] = (7.0, 5.0),
                reference_band: float | None = None, max_latency: float | None = None) -> Figure:
    """Latency (log x) vs quality per row, marker area proportional to file size, labelled, Pareto front dashed.

    Rows with noise draws (`<quality>_sd`, `n_draws`) get standard-error bars; `reference_band` shades the
    reference row's quality ± that fraction and `max_latency` draws the latency limit (the edge target).
    """
    rows = load_results(results)
    usable = [r for r in rows if (_number(r, latency) or 0) > 0 and _number(r, quality) is not None]
    fig = new_figure(figsize, 100)
    ax = fig.add_subplot()
    if not usable:
        _no_data(ax, f"no rows with {latency} and {quality}")
        _note_skipped(fig, len(rows), f"{latency}/{quality}")
        return _finish(fig, path)
    xs = [_number(r, latency) for r in usable]
    ys = [_number(r, quality) for r in usable]
    sizes = [_number(r, "file_size_mb") for r in usable]
    largest = max((s for s in sizes if s), default=1.0)
    for row, x, y, size, label in zip(usable, xs, ys, sizes, _labels(usable), strict=True):
        color = RUNTIME_COLORS.get(str(row.get("runtime")), "C7")
        area = 30 + 570 * size / largest if size else 30
        ax.scatter([x], [y], s=area, color=color if size else "none", edgecolors=color, alpha=0.7, linewidths=1.5)
        ax.annotate(label, (x, y), xytext=(6, 6), textcoords="offset points", fontsize=7)
        spread, draws = _number(row, f"{quality}_sd"), _number(row, "n_draws")
        if spread is not None and draws and draws > 1:
            ax.errorbar([x], [y], yerr=[spread / np.sqrt(draws)], color=color, capsize=3, lw=1)
    reference = next((r for r in usable if r.get("is_reference")), None)
    if reference_band is not None and reference is not None:
        level = _number(reference, quality)
        ax.axhspan(level * (1 - reference_band), level * (1 + reference_band), color="C2", alpha=0.12,
                   label=f"reference ±{reference_band:.0%}")
    if max_latency is not None:
        ax.axvline(max_latency, color="C3", ls=":", lw=1, label=f"{latency} limit {max_latency:g}")
    front = pareto_front(list(zip(xs, ys, strict=True)))
    ax.step([xs[i] for i in front], [ys[i] for i in front], where="post", ls="--", color="0.5", lw=1,
            label="Pareto front")
    for runtime, color in RUNTIME_COLORS.items():
        if any(r.get("runtime") == runtime for r in usable):
            ax.scatter([], [], color=color, label=runtime)
    ax.set_xscale("log")
    ax.set_xlabel(f"{latency} (log scale)")
    ax.set_ylabel(f"{quality} (lower is better)")
    ax.set_title("Speed vs quality (marker area ∝ file size)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _note_skipped(fig, len(rows) - len(usable), f"{latency}/{quality}")
    fig.tight_layout()
    return _finish(fig, path)


def plot_latency(results: Any, *, p50: str = "step_ms_p50", p95: str = "step_ms_p95",
                 path: str | Path | None = None, figsize: tuple[float, float] = (8.0, 4.5)) -> Figure:
    """Per-step latency p50 bars with error bars up to p95, grouped by variant, one bar per thread count."""
    rows = load_results(results)
    usable = [r for r in rows if _number(r, p50) is not None]
    fig = new_figure(figsize, 100)
    ax = fig.add_subplot()
    if not usable:
        _no_data(ax, f"no rows with {p50}")
        _note_skipped(fig, len(rows), p50)
        return _finish(fig, path)
    variants = list(dict.fromkeys(str(r.get("variant")) for r in usable))
    threads = sorted({r.get("threads") for r in usable}, key=lambda t: (t is None, t if t is not None else 0))
    width = 0.8 / len(threads)
    for k, thread in enumerate(threads):
        xs, heights, upper = [], [], []
        for r in usable:
            if r.get("threads") != thread:
                continue
            xs.append(variants.index(str(r.get("variant"))) - 0.4 + width * (k + 0.5))
            heights.append(_number(r, p50))
            high = _number(r, p95)
            upper.append(max(high - heights[-1], 0.0) if high is not None else 0.0)
        ax.bar(xs, heights, width=width * 0.95, yerr=[np.zeros(len(upper)), upper], capsize=3,
               label=f"{thread} thread(s)" if thread is not None else "threads unknown", color=f"C{k}")
    ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right", fontsize=8)
    values = [_number(r, p50) for r in usable]
    if min(values) > 0 and max(values) / min(values) > 30:
        ax.set_yscale("log")
    ax.set_ylabel("ms per denoising step (p50, bar to p95)")
    ax.set_title("Per-step latency", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    _note_skipped(fig, len(rows) - len(usable), p50)
    fig.tight_layout()
    return _finish(fig, path)


def plot_sizes(results: Any, *, field: str = "file_size_mb", path: str | Path | None = None,
               figsize: tuple[float, float] = (7.0, 4.0)) -> Figure:
    """Horizontal bars of model file size per variant (largest first), annotated with MB and shrink factor."""
    rows = load_results(results)
    sizes: dict[str, float] = {}
    for r in rows:
        value = _number(r, field)
        if value is not None and value > 0:
            sizes.setdefault(str(r.get("variant")), value)
    fig = new_figure(figsize, 100)
    ax = fig.add_subplot()
    if not sizes:
        _no_data(ax, f"no rows with {field}")
        _note_skipped(fig, len(rows), field)
        return _finish(fig, path)
    ordered = sorted(sizes.items(), key=lambda kv: kv[1])
    largest = ordered[-1][1]
    ax.barh([name for name, _ in ordered], [v for _, v in ordered], color="C0")
    for i, (_, value) in enumerate(ordered):
        ax.text(value, i, f" {value:.1f} MB (÷{largest / value:.1f})", va="center", fontsize=8)
    ax.set_xlim(0, largest * 1.35)
    ax.set_xlabel("file size (MB)")
    ax.set_title("Model file size", fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    skipped = sum(1 for r in rows if _number(r, field) is None)
    _note_skipped(fig, skipped, field)
    fig.tight_layout()
    return _finish(fig, path)


def _history_series(history: Any, x: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{metric: (x values, y values)} from a dict of lists, a list of records, or a .json/.jsonl path."""
    if isinstance(history, (str, Path)):
        text = Path(history).read_text()
        try:
            history = json.loads(text)
        except json.JSONDecodeError:
            history = [json.loads(line) for line in text.splitlines() if line.strip()]
    series: dict[str, tuple[list, list]] = {}
    if isinstance(history, Mapping):
        steps = history.get(x)
        for key, values in history.items():
            if key == x or not isinstance(values, (list, tuple, np.ndarray)):
                continue
            xs = steps if steps is not None and len(steps) == len(values) else range(len(values))
            for step, value in zip(xs, values, strict=True):
                if _number({"v": value}, "v") is not None:
                    series.setdefault(str(key), ([], []))
                    series[str(key)][0].append(float(step))
                    series[str(key)][1].append(float(value))
    elif isinstance(history, (list, tuple)):
        for i, record in enumerate(history):
            if not isinstance(record, Mapping):
                raise DataError(f"got a {type(record).__name__}", record=i, field="history",
                                expected='records like {"step": 10, "loss": 0.5, "lr": 1e-4}')
            step = _number(record, x)
            for key in record:
                value = _number(record, key)
                if key != x and value is not None:
                    series.setdefault(str(key), ([], []))
                    series[str(key)][0].append(step if step is not None else float(i))
                    series[str(key)][1].append(value)
    else:
        raise DataError(f"got a {type(history).__name__}", field="history",
                        expected="a dict of lists or a list of records")
    return {k: (np.asarray(v[0]), np.asarray(v[1])) for k, v in series.items()}


def _is_lr(name: str) -> bool:
    leaf = name.rsplit("/", 1)[-1].lower()
    return leaf in {"lr", "learning_rate"} or leaf.startswith("lr_") or leaf.endswith("_lr")


def _ema(values: np.ndarray, weight: float) -> np.ndarray:
    out, acc = np.empty_like(values), values[0]
    for i, value in enumerate(values):
        acc = weight * acc + (1 - weight) * value
        out[i] = acc
    return out


def plot_training_curves(history: Any, *, x: str = "step", keys: Sequence[str] | None = None,
                         smooth: float = 0.0, path: str | Path | None = None,
                         figsize: tuple[float, float] = (9.0, 3.4)) -> Figure:
    """Loss curves (train/val, log y) and learning rate vs step; smooth in [0,1) is an EMA weight."""
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth is an EMA weight in [0, 1), got {smooth}")
    series = _history_series(history, x)
    if keys is not None:
        series = {k: v for k, v in series.items() if k in keys}
    losses = {k: v for k, v in series.items() if "loss" in k.lower()}
    rates = {k: v for k, v in series.items() if _is_lr(k)}
    others = {k: v for k, v in series.items() if keys is not None and k not in losses and k not in rates}
    panels = [(title, group) for title, group in (("loss", losses), ("learning rate", rates), ("other", others))
              if group]
    fig = new_figure(figsize, 100)
    if not panels:
        _no_data(fig.add_subplot(), "no loss or learning-rate values in the history")
        return _finish(fig, path)
    for i, (title, group) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for j, (name, (xs, ys)) in enumerate(sorted(group.items())):
            if smooth > 0 and len(ys) > 2:
                ax.plot(xs, ys, color=f"C{j}", alpha=0.25, lw=1)
                ys = _ema(ys, smooth)
            ax.plot(xs, ys, color=f"C{j}", lw=1.5, label=name, marker="o" if len(ys) < 20 else None, ms=3)
        values = np.concatenate([ys for _, ys in group.values()])
        if title == "loss" and values.min() > 0:
            ax.set_yscale("log")
        if title == "learning rate" and values.min() > 0 and values.max() / values.min() > 20:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(fig, path)


# HumanML3D marks a foot joint planted when its squared displacement per frame is below feet_thre.
HUMANML_FEET_THRE = 0.002


def foot_contacts(joints: Any, fps: float = 20.0, *, contact_height: float | None = 0.10,
                  contact_speed: float | None = None, per_joint: bool = False) -> np.ndarray:
    """Contacts [T, 2] (left, right foot), or [T, 4] (l ankle, l toe, r ankle, r toe) if per_joint.

    A joint is planted when it moves slower than contact_speed m/s until the next frame (default:
    HumanML3D's feet_thre=0.002 at this fps) and, unless contact_height is None, is within
    contact_height m of its own lowest level. With contact_height=None the flags equal HumanML3D's.
    """
    joints = as_joints(joints)
    if contact_speed is None:
        contact_speed = math.sqrt(HUMANML_FEET_THRE) * fps
    feet = np.array([*LEFT_FOOT, *RIGHT_FOOT])
    # Forward difference as in HumanML3D: frame t is planted if the joint stays put until t+1.
    speed = np.linalg.norm(np.diff(joints[:, feet], axis=0), axis=-1) * fps
    speed = np.concatenate([speed, speed[-1:]], axis=0) if len(joints) > 1 else np.zeros((1, 4))
    planted = speed < contact_speed
    if contact_height is not None:
        heights = joints[:, feet, 1]
        # Each joint's own low level: ankles sit higher than toes, and skeletons are not symmetric.
        planted &= heights - np.percentile(heights, 1, axis=0) < contact_height
    return planted if per_joint else planted.reshape(-1, 2, 2).any(axis=-1)


def plot_foot_contacts(joints: Any, fps: float = 20.0, *, contact_height: float | None = 0.10,
                       contact_speed: float | None = None, caption: str = "", path: str | Path | None = None,
                       figsize: tuple[float, float] = (8.0, 3.6)) -> Figure:
    """Foot heights over time and a per-foot contact timeline (thresholds as in foot_contacts)."""
    joints = as_joints(joints)
    contacts = foot_contacts(joints, fps, contact_height=contact_height, contact_speed=contact_speed)
    seconds = np.arange(len(joints)) / fps
    fig = new_figure(figsize, 100)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    style = StickStyle()
    floor = joints[:, [*LEFT_FOOT, *RIGHT_FOOT], 1].min()
    for (ankle, toe), side, color in ((LEFT_FOOT, "left", style.left_color), (RIGHT_FOOT, "right", style.right_color)):
        top.plot(seconds, joints[:, ankle, 1] - floor, color=color, lw=1.2, label=f"{side} ankle")
        top.plot(seconds, joints[:, toe, 1] - floor, color=color, lw=1.0, ls="--", label=f"{side} toe")
    top.set_ylabel("height (m)")
    top.legend(fontsize=7, ncol=4, loc="upper right")
    top.grid(alpha=0.3)
    top.set_title(caption or "foot heights and contacts", fontsize=10)
    dt = 1.0 / fps
    for row, color in enumerate((style.left_color, style.right_color)):
        frames = np.flatnonzero(contacts[:, row])
        bottom.broken_barh([(t * dt, dt) for t in frames], (row - 0.35, 0.7), color=color)
    bottom.set_yticks([0, 1], [f"left {contacts[:, 0].mean():.0%}", f"right {contacts[:, 1].mean():.0%}"], fontsize=8)
    bottom.set_ylim(-0.6, 1.6)
    bottom.set_xlim(0, max(seconds[-1] + dt, dt))
    bottom.set_xlabel("time (s)")
    fig.tight_layout()
    return _finish(fig, path)


def plot_pose_grid(joints: Any, frames: Sequence[int] | None = None, *, num: int = 8, ncols: int = 4,
                   fps: float = 20.0, caption: str = "", panel_size: float = 2.2, dpi: float = 80,
                   azim: float = DEFAULT_AZIM, elev: float = DEFAULT_ELEV, style: StickStyle | None = None,
                   path: str | Path | None = None) -> Figure:
    """Grid of stick-figure poses at the given frames (default: `num` evenly spaced)."""
    joints = as_joints(joints)
    total = len(joints)
    chosen = (np.linspace(0, total - 1, min(num, total)).round().astype(int).tolist() if frames is None
              else [int(t) for t in frames])
    bad = [t for t in chosen if not 0 <= t < total]
    if bad or not chosen:
        raise ValueError(f"frames {bad[:5] or chosen} invalid for a {total}-frame motion")
    ncols = max(1, min(ncols, len(chosen)))
    nrows = math.ceil(len(chosen) / ncols)
    fig = new_figure((panel_size * ncols, panel_size * nrows + (0.4 if caption else 0)), dpi)
    for i, t in enumerate(chosen):
        ax = fig.add_subplot(nrows, ncols, i + 1, projection="3d")
        draw_frame(ax, joints, t, caption=f"t={t / fps:.2f}s (#{t})", style=style, azim=azim, elev=elev)
        ax.title.set_fontsize(8)
    if caption:
        fig.suptitle(caption, fontsize=10)
    return _finish(fig, path)
