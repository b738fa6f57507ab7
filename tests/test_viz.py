"""Visualisation: real Agg rendering of stick figures, videos, inline HTML, widgets, comparisons and plots."""

from __future__ import annotations

import io
import json
import re

import matplotlib as mpl
import numpy as np
import pytest
from conftest import fixture_cases, fixture_family
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure
from PIL import Image

from kpop_helpers.data import DataError
from kpop_helpers.motion.skeleton import (
    RIGHT_FOOT,
    T2M_KINEMATIC_CHAIN,
    T2M_PARENTS,
    T2M_TARGET_OFFSETS,
)
from kpop_helpers.viz import (
    ComparePlayer,
    MotionPlayer,
    StickStyle,
    animate,
    compare,
    draw_frame,
    foot_contacts,
    load_results,
    plot_foot_contacts,
    plot_latency,
    plot_pareto,
    plot_pose_grid,
    plot_sizes,
    plot_training_curves,
    render_frames_png,
    save_gif,
    save_mp4,
    show,
    to_html,
)
from kpop_helpers.viz.animation import new_figure, scene_png

FPS = 20.0
DPI = 40  # small renders keep the whole file fast


def _rotation(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def synthetic_dance(frames: int, *, move: bool = True) -> np.ndarray:
    """T2M target skeleton posed by forward kinematics: waving arms, kicking legs, bouncing, turning, drifting."""
    out = np.zeros((frames, 22, 3), np.float32)
    for f in range(frames):
        phase = 2 * np.pi * f / FPS if move else 0.0
        local = [np.eye(3) for _ in range(22)]
        local[0] = _rotation(1, 0.3 * phase)
        local[16] = _rotation(2, 0.9 + 0.6 * np.sin(phase))
        local[17] = _rotation(2, -0.9 - 0.6 * np.sin(phase + 1))
        local[18] = _rotation(0, 0.7 * np.sin(2 * phase))
        local[1] = _rotation(0, 0.4 * np.sin(phase))
        local[2] = _rotation(0, -0.4 * np.sin(phase))
        rotations: list[np.ndarray] = []
        for j, parent in enumerate(T2M_PARENTS):
            if parent < 0:
                out[f, j] = [0.4 * np.sin(0.5 * phase), 0.95 + 0.05 * np.sin(2 * phase), 0.4 * np.cos(0.5 * phase)]
                rotations.append(local[j])
            else:
                out[f, j] = out[f, parent] + rotations[parent] @ T2M_TARGET_OFFSETS[j]
                rotations.append(rotations[parent] @ local[j])
    out[..., 1] -= out[..., 1].min()
    return out


@pytest.fixture(scope="module")
def dance() -> np.ndarray:
    return synthetic_dance(40)


@pytest.fixture(scope="module")
def still() -> np.ndarray:
    return synthetic_dance(12, move=False)


def pixels(png: bytes | str) -> np.ndarray:
    source = io.BytesIO(png) if isinstance(png, bytes) else png
    return np.asarray(Image.open(source).convert("RGB"), dtype=np.float32)


def mean_pixel_change(a: bytes | str, b: bytes | str) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


# --- stick figure --------------------------------------------------------------------------------

def test_rendered_frames_move_for_a_dance_and_stay_identical_for_a_still_pose(tmp_path, dance, still):
    moving = render_frames_png(dance, tmp_path / "dance", [0, 10], dpi=DPI)
    static = render_frames_png(still, tmp_path / "still", [0, 10], dpi=DPI)
    assert [p.name for p in moving] == ["frame_00000.png", "frame_00010.png"]
    assert pixels(str(moving[0])).shape == (160, 160, 3)
    assert mean_pixel_change(str(moving[0]), str(moving[1])) > 1.0
    assert mean_pixel_change(str(static[0]), str(static[1])) < 1e-6


def test_draw_frame_maps_y_up_to_the_vertical_axis_and_colours_chains(dance):
    fig = new_figure((3, 3), DPI)
    ax = fig.add_subplot(projection="3d")
    style = StickStyle()
    figure = draw_frame(ax, dance, 7, caption="wave", style=style)
    assert ax.get_title() == "wave"
    for (line, chain), expected in zip(figure.chain_lines, T2M_KINEMATIC_CHAIN, strict=True):
        x, y, z = line.get_data_3d()
        assert chain == list(expected)
        np.testing.assert_allclose(z, dance[7, chain, 1])  # data y (up) -> matplotlib z (vertical)
        np.testing.assert_allclose(y, -dance[7, chain, 2])
        np.testing.assert_allclose(x, dance[7, chain, 0])
    colours = [line.get_color() for line, _ in figure.chain_lines]
    assert colours == [style.right_color, style.left_color, style.spine_color, style.right_color, style.left_color]


def test_camera_follows_the_root_with_a_fixed_window():
    walk = np.repeat(synthetic_dance(1, move=False), 20, axis=0)
    walk[:, :, 0] += np.linspace(0, 5, 20)[:, None]  # 5 m along x
    fig = new_figure((3, 3), DPI)
    figure = draw_frame(fig.add_subplot(projection="3d"), walk, 0)
    widths = []
    for t in (0, 19):
        figure.update(t)
        low, high = figure.ax.get_xlim()
        assert (low + high) / 2 == pytest.approx(walk[t, 0, 0], abs=1e-5)
        assert figure.ax.get_zlim()[0] == pytest.approx(walk[..., 1].min(), abs=1e-5)
        widths.append(high - low)
    assert widths[0] == pytest.approx(widths[1])
    trail_x = figure.trail.get_data_3d()[0]
    assert len(trail_x) == 20 and trail_x[-1] == pytest.approx(walk[19, 0, 0])


def test_bad_joints_raise_a_data_error_naming_the_field():
    with pytest.raises(DataError, match="joints.*\\[T>=1, 22, 3\\]"):
        render_frames_png(np.zeros((5, 21, 3)), "/nonexistent")
    bad = synthetic_dance(3)
    bad[1, 4, 0] = np.nan
    with pytest.raises(DataError, match="frame 1"):
        to_html(bad)


# --- files and inline HTML -----------------------------------------------------------------------

def test_gif_is_valid_and_keeps_real_time_when_subsampled(tmp_path, dance):
    path = save_gif(dance[:12], tmp_path / "out" / "dance.gif", dpi=DPI, fps=FPS)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 12
        assert gif.info["duration"] == 50
    path = save_gif(dance[:12], tmp_path / "half.gif", dpi=DPI, fps=FPS, max_frames=6)
    with Image.open(path) as gif:
        assert gif.n_frames == 6 and gif.info["duration"] == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.gif", "out"]  # no temp files left
    with pytest.raises(ValueError, match="'.gif'"):
        save_gif(dance[:3], tmp_path / "dance.mp4")


def test_mp4_is_valid_and_readable_by_ffmpeg(tmp_path, dance):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    path = save_mp4(dance[:10], tmp_path / "dance.mp4", dpi=DPI, fps=FPS)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = list(reader)
    assert len(frames) == 10
    assert meta["fps"] == pytest.approx(FPS)
    assert tuple(meta["size"]) == (160, 160)
    assert len(frames[0]) == 160 * 160 * 3


def test_to_html_keeps_a_long_dance_under_the_embed_limit():
    long_dance = np.tile(synthetic_dance(100), (20, 1, 1))  # 2000 frames, 100 s
    with mpl.rc_context({"animation.embed_limit": 1.0}):
        html = to_html(long_dance, caption="long", dpi=60, progress=False)
    assert len(html.encode()) <= 2**20
    assert '<div class="animation">' in html and "new Animation(frames" in html
    embedded = html.count('"data:image/png;base64,')
    assert 20 <= embedded < 2000


def test_to_html_keeps_every_frame_when_they_fit_and_refuses_an_impossible_budget(dance):
    html = to_html(dance[:30], dpi=DPI, max_mb=2.0, progress=False)
    assert html.count('"data:image/png;base64,') == 30
    with pytest.raises(ValueError, match="cannot hold one frame"):
        to_html(dance[:30], dpi=DPI, max_mb=0.001, progress=False)


def test_show_returns_notebook_html(dance):
    pytest.importorskip("IPython")
    shown = show(dance[:5], "wave", dpi=DPI, progress=False)
    assert shown.data.count('"data:image/png;base64,') == 5


def test_animate_returns_a_working_funcanimation(dance):
    anim = animate(dance, caption="wave", dpi=DPI, max_frames=8)
    assert isinstance(anim, FuncAnimation)
    html = anim.to_jshtml()
    assert html.count('"data:image/png;base64,') == 8
    interval_ms = float(re.search(r"new Animation\(frames, img_id, slider_id, ([0-9.]+)", html).group(1))
    assert interval_ms == pytest.approx(1000 * 5 / FPS)  # 40 frames strided by 5 still play in real time


# --- widget player -------------------------------------------------------------------------------

def test_player_slider_redraws_the_frame(dance, still):
    player = MotionPlayer({"wave": dance, "still": still}, dpi=DPI)
    first = player.current_png
    assert first and player.image.value == first
    player.slider.value = 10
    assert player.current_png != first and player.image.value == player.current_png
    assert mean_pixel_change(first, player.current_png) > 1.0
    assert player.render(10) == player.current_png
    player.slider.value = 0
    assert player.current_png == first
    player.azimuth.value = 30
    assert player.current_png != first


def test_player_dropdown_switches_clip_and_bounds(dance, still):
    player = MotionPlayer({"wave": dance, "still": still}, captions={"wave": "a wave"}, dpi=DPI)
    player.slider.value = 30
    wave_png = player.current_png
    player.dropdown.value = "still"
    assert player.clip == "still"
    assert player.slider.max == player.play.max == len(still) - 1
    assert player.slider.value == len(still) - 1
    assert player.current_png != wave_png
    player.select("wave")
    assert player.slider.max == len(dance) - 1
    with pytest.raises(KeyError):
        player.select("nope")


def test_player_speed_and_single_array(still):
    player = MotionPlayer(still, fps=FPS, dpi=DPI)
    assert player.clip == "motion" and player.slider.max == len(still) - 1
    for speed in (0.5, 1.0, 4.0):
        player.speed.value = speed
        shown_per_second = player.play.step * 1000 / player.play.interval
        assert shown_per_second == pytest.approx(FPS * speed, rel=0.02)
    with pytest.raises(DataError, match="captions"):
        MotionPlayer({"a": still, "b": still}, captions=["only one"])


# --- comparison ----------------------------------------------------------------------------------

def test_compare_errors_are_zero_for_identical_and_positive_for_perturbed(dance):
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, dance.shape).astype(np.float32)
    result = compare({"fp32": dance, "copy": dance.copy(), "int8": dance + noise}, caption="wave")
    assert result.reference == "fp32"
    np.testing.assert_array_equal(result.errors["copy"], 0.0)
    expected = np.linalg.norm(noise, axis=-1).mean(axis=-1)
    np.testing.assert_allclose(result.errors["int8"], expected, rtol=1e-5)
    assert result.mean_errors_mm()["int8"] == pytest.approx(expected.mean() * 1000, rel=1e-4)
    scene = result.scene(dpi=DPI)
    scene.update(5)
    assert scene.dancers["copy"].ax.get_title() == "copy\nerror 0.0 mm"
    assert scene.dancers["int8"].ax.get_title() == f"int8\nerror {expected[5] * 1000:.1f} mm"
    assert scene.dancers["fp32"].ax.get_title() == "fp32\n(reference)"
    before = scene_png(scene, 5)
    assert scene.cursor.get_xdata()[0] == pytest.approx(5 / FPS)
    after = scene_png(scene, 25)
    assert scene.cursor.get_xdata()[0] == pytest.approx(25 / FPS)
    assert mean_pixel_change(before, after) > 0.5


def test_compare_exports_and_player(tmp_path, dance):
    shifted = dance.copy()
    shifted[..., 0] += 0.05
    result = compare({"fp32": dance, "pruned": shifted}, reference="pruned")
    np.testing.assert_allclose(result.errors["fp32"], 0.05, rtol=1e-4)
    gif = result.save_gif(tmp_path / "cmp.gif", max_frames=5, dpi=DPI, panel_size=2.0)
    with Image.open(gif) as image:
        assert image.n_frames == 5
    html = result.to_html(max_frames=4, dpi=DPI, panel_size=2.0, progress=False)
    assert html.count('"data:image/png;base64,') == 4
    player = ComparePlayer(result, dpi=DPI, panel_size=2.0)
    first = player.current_png
    player.slider.value = 12
    assert player.current_png != first
    with pytest.raises(DataError, match="reference"):
        compare({"a": dance}, reference="b")


def test_compare_cuts_to_the_shortest_motion_with_a_warning(dance):
    with pytest.warns(UserWarning, match="different lengths"):
        result = compare({"a": dance, "b": dance[:25]})
    assert result.num_frames == 25 and result.errors["b"].shape == (25,)


# --- plots ---------------------------------------------------------------------------------------

def _row(variant, runtime, precision, threads, **values):
    row = {"variant": variant, "runtime": runtime, "precision": precision, "pruning": None, "sampler": "ddim",
           "steps": 10, "threads": threads, "batch": 1, "file_size_mb": None, "params": 1000, "step_ms_p50": None,
           "step_ms_p95": None, "gen_time_s": None, "load_time_s": 0.1, "peak_rss_mib": 300.0, "fidelity_mm": None,
           "fidelity_rel_rms": None, "fid_k": None, "fid_g": None, "div_k": None, "div_g": None, "pfc": None,
           "foot_skating": None}
    row.update(values)
    return row


RESULTS = {
    "protocol": {"frames": 120, "prompts": 4, "seed": 0},
    "rows": [
        _row("fp32_ddim10", "torch", "fp32", 1, file_size_mb=80.0, step_ms_p50=40.0, step_ms_p95=48.0,
             gen_time_s=0.45, fid_k=10.0),
        _row("fp32_ddim10", "torch", "fp32", 4, file_size_mb=80.0, step_ms_p50=15.0, step_ms_p95=19.0,
             gen_time_s=0.18, fid_k=10.0),
        _row("ort_int8_ddim10", "onnxruntime", "int8", 1, file_size_mb=20.5, step_ms_p50=18.0, step_ms_p95=21.0,
             gen_time_s=0.2, fid_k=11.0),
        _row("ort_int8_ddim10", "onnxruntime", "int8", 4, file_size_mb=20.5, step_ms_p50=7.0, step_ms_p95=None,
             gen_time_s=0.09, fid_k=11.0),
        _row("pruned_ffn", "torch", "fp32", 1, pruning="ffn"),  # failed run: every measurement None
        {"variant": "half_written"},  # keys missing entirely
    ],
}


def test_benchmark_plots_skip_rows_with_missing_values(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(RESULTS))
    pareto = plot_pareto(path, path=tmp_path / "plots" / "pareto.png")
    ax = pareto.axes[0]
    assert isinstance(pareto, Figure) and ax.get_xscale() == "log"
    labels = sorted(text.get_text() for text in ax.texts)
    assert labels == ["fp32_ddim10 (1t)", "fp32_ddim10 (4t)", "ort_int8_ddim10 (1t)", "ort_int8_ddim10 (4t)"]
    assert any("skipped 2 row" in text.get_text() for text in pareto.texts)
    with Image.open(tmp_path / "plots" / "pareto.png") as png:
        assert png.size[0] > 100

    latency = plot_latency(RESULTS)
    bars = latency.axes[0].patches
    assert sorted(bar.get_height() for bar in bars) == [7.0, 15.0, 18.0, 40.0]
    assert [t.get_text() for t in latency.axes[0].get_xticklabels()] == ["fp32_ddim10", "ort_int8_ddim10"]

    sizes = plot_sizes(RESULTS["rows"])
    assert sorted(bar.get_width() for bar in sizes.axes[0].patches) == [20.5, 80.0]

    empty = plot_pareto({"rows": [_row("x", "torch", "fp32", 1)]})
    assert any("no rows" in t.get_text() for t in empty.axes[0].texts)


def test_pareto_shows_noise_bars_the_reference_band_and_the_latency_limit():
    rows = [_row("fp32_ddpm1000", "torch", "fp32", 2, file_size_mb=71.0, gen_time_s=75.0, fid_k=80.0,
                 fid_k_sd=20.0, n_draws=4, is_reference=True),
            _row("ort_int8_ddpm20", "onnxruntime", "int8", 2, file_size_mb=19.0, gen_time_s=0.7, fid_k=74.0,
                 fid_k_sd=10.0, n_draws=4),
            _row("ort_int8_ddim10", "onnxruntime", "int8", 2, file_size_mb=19.0, gen_time_s=0.3, fid_k=150.0)]
    ax = plot_pareto(rows, reference_band=0.15, max_latency=1.0).axes[0]
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    # Standard errors (sd / sqrt(draws)) for the two rows with draws only.
    spans = sorted(float(np.ptp(c.lines[2][0].get_segments()[0][:, 1])) for c in bars)
    assert spans == pytest.approx([2 * 10.0 / 2, 2 * 20.0 / 2])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "reference ±15%" in legend and "gen_time_s limit 1" in legend
    band = next(p for p in ax.patches if p.get_label() == "reference ±15%")
    assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx((68.0, 92.0))


def test_load_results_rejects_malformed_input(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DataError, match="broken.json.*invalid JSON"):
        load_results(broken)
    with pytest.raises(DataError, match="rows"):
        load_results({"protocol": {}})
    with pytest.raises(DataError, match="record 1"):
        load_results({"rows": [{"variant": "a"}, 3]})


def test_training_curves_from_dict_and_records():
    steps = list(range(0, 100, 10))
    history = {"step": steps, "loss": [1.0 / (s + 1) for s in steps], "lr": [1e-4] * 10,
               "val_loss": [0.5] * 10}
    fig = plot_training_curves(history, smooth=0.5)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "learning rate"]
    assert fig.axes[0].get_yscale() == "log"
    assert {line.get_label() for line in fig.axes[0].lines} >= {"loss", "val_loss"}

    records = [{"step": s, "loss": 1.0 / (s + 1), "lr": 1e-4 * (1 - s / 100)} for s in steps]
    records[4]["val_loss"] = 0.3
    records[9]["val_loss"] = 0.2
    records[5]["loss"] = None
    fig = plot_training_curves(records)
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    np.testing.assert_array_equal(lines["val_loss"].get_xdata(), [40, 90])
    assert len(lines["loss"].get_xdata()) == 9


def test_foot_contacts_and_plot(still):
    lifted = still.copy()
    lifted[4:8, list(RIGHT_FOOT), 1] += 0.2
    contacts = foot_contacts(lifted, FPS)
    assert contacts[:, 0].all()
    # Frame 3 is about to lift and frame 7 about to land: neither is planted (forward difference).
    np.testing.assert_array_equal(contacts[:, 1], [True] * 3 + [False] * 5 + [True] * 4)
    fig = plot_foot_contacts(lifted, FPS, caption="lift the right foot")
    timeline = fig.axes[1]
    assert [t.get_text() for t in timeline.get_yticklabels()] == ["left 100%", "right 58%"]
    assert len(fig.axes[0].lines) == 4


@pytest.mark.reference
@pytest.mark.parametrize("case", fixture_cases("humanml_features") or [None], ids=lambda c: c["name"] if c else "none")
def test_foot_contacts_match_humanml3d_flags(case):
    folder, spec = fixture_family("humanml_features")
    if case is None:
        pytest.skip("humanml_features has no cases")
    if case["kind"] != "process_file":
        pytest.skip(f"case kind {case['kind']!r} has no input joints to detect contacts on")
    tolerance = spec["tolerance"]["features_hml3d"]
    first, last = tolerance["contact_columns"]
    with np.load(folder / case["file"], allow_pickle=False) as data:
        joints = data["global_positions_hml3d"]
        expected = data["features_hml3d"][:, first:last]
        feet_thre = float(data["feet_thre"])
    # HumanML3D thresholds squared metres per frame; at 20 fps that is sqrt(feet_thre) * 20 m/s.
    got = foot_contacts(joints, FPS, contact_height=None, contact_speed=np.sqrt(feet_thre) * FPS, per_joint=True)
    assert np.abs(got[:-1].astype(np.float32) - expected).max() <= tolerance["contact_max_abs"]


def test_pose_grid(dance):
    fig = plot_pose_grid(dance, [0, 10, 20], caption="poses", dpi=DPI)
    axes3d = [ax for ax in fig.axes if ax.name == "3d"]
    assert [ax.get_title() for ax in axes3d] == ["t=0.00s (#0)", "t=0.50s (#10)", "t=1.00s (#20)"]
    default = plot_pose_grid(dance, dpi=DPI)
    assert len(default.axes) == 8
    with pytest.raises(ValueError, match="invalid"):
        plot_pose_grid(dance, [0, 99])
