"""Edit and long-dance drawings: real Agg rendering to GIF, kept/seam colours in the pixels, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d import proj3d
from PIL import Image

import kpop_helpers.viz as viz
from kpop_helpers.errors import DataError
from kpop_helpers.motion.skeleton import T2M_PARENTS, T2M_TARGET_OFFSETS
from kpop_helpers.viz import edits
from kpop_helpers.viz.animation import to_mpl_coords
from kpop_helpers.viz.edits import (
    KEPT_COLOR,
    SEAM_COLOR,
    EditScene,
    LongDanceScene,
    edit_html,
    joint_jerk,
    kept_joint_indices,
    plot_seams,
    save_edit_gif,
    save_long_dance_gif,
)

DPI = 50  # small renders keep the file fast
LEFT_ARM = ("left_shoulder", "left_elbow", "left_wrist")  # joints 16, 18, 20
LEFT_WRIST, RIGHT_ANKLE = 20, 8


def toy_dance(frames: int, drift: float = 0.02) -> np.ndarray:
    """The T2M rest skeleton walking along x, waving its left arm up and down."""
    rest = np.zeros((22, 3), np.float32)
    for j, parent in enumerate(T2M_PARENTS):
        if parent >= 0:
            rest[j] = rest[parent] + T2M_TARGET_OFFSETS[j]
    rest[:, 1] -= rest[:, 1].min()
    out = np.repeat(rest[None], frames, axis=0)
    out[:, :, 0] += drift * np.arange(frames)[:, None]
    wave = 0.3 * np.sin(np.arange(frames) / 3.0)
    out[:, [18, 20], 1] += wave[:, None] * np.array([0.5, 1.0])
    return out.astype(np.float32)


def gif_frame(path, index: int) -> np.ndarray:
    with Image.open(path) as gif:
        gif.seek(index)
        return np.asarray(gif.convert("RGB"), dtype=np.int16)


def colour_mask(rgb: np.ndarray, colour: str, tol: int = 40) -> np.ndarray:
    """Pixels within tol (per channel) of a solid colour: antialiased or pale shading does not count."""
    target = np.array(to_rgb(colour)) * 255
    return (np.abs(rgb - target) <= tol).all(axis=-1)


def joint_pixel(scene, ax, joints: np.ndarray, t: int, joint: int) -> tuple[int, int]:
    """(row, column) of a joint in the rendered image of frame t."""
    scene.update(t)
    scene.figure.canvas.draw()
    x, y, z = to_mpl_coords(joints[min(t, len(joints) - 1), joint])
    px, py = ax.transData.transform(proj3d.proj_transform(x, y, z, ax.M)[:2])
    height = int(round(scene.figure.bbox.height))
    return int(round(height - py)), int(round(px))


def above_strip(scene) -> slice:
    """Image rows above the scene's timeline strip: the dancers and their titles."""
    return slice(0, int(scene.figure.bbox.height - scene.timeline.get_window_extent().y1) - 2)


def purplish(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 2] - rgb[..., 1] > 30) & (rgb[..., 0] - rgb[..., 1] > 10)


def near(mask: np.ndarray, row: int, col: int, radius: int = 3) -> bool:
    return bool(mask[max(0, row - radius):row + radius + 1, max(0, col - radius):col + radius + 1].any())


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return toy_dance(20)


@pytest.fixture(scope="module")
def rendered_edit(tmp_path_factory, clip):
    """An inpainting edit (first 8 frames kept, left arm kept) rendered once for several tests."""
    known = np.zeros(20, bool)
    known[:8] = True
    variations = {"variation 1": clip + [0.0, 0.0, 0.3], "variation 2": toy_dance(20, drift=-0.02)}
    path = save_edit_gif(clip, variations, tmp_path_factory.mktemp("edit") / "edit.gif", known_frames=known,
                         kept_joints=LEFT_ARM, dpi=DPI, progress=False, caption="keep the left arm")
    scene = EditScene(clip, variations, known_frames=known, kept_joints=LEFT_ARM, caption="keep the left arm",
                      dpi=DPI)
    return path, scene, variations


def test_edit_gif_has_every_frame_and_kept_joints_in_green_where_they_are(rendered_edit):
    path, scene, variations = rendered_edit
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 20 and gif.info["duration"] == 50
    t = 14  # a generated frame: only the kept arm is green
    green = colour_mask(gif_frame(path, t), KEPT_COLOR)
    for name, joints in {"original": scene.motions["original"], **variations}.items():
        ax = scene.dancers[name].ax
        assert near(green, *joint_pixel(scene, ax, joints, t, LEFT_WRIST)), name
        assert not near(green, *joint_pixel(scene, ax, joints, t, RIGHT_ANKLE)), name


def test_kept_frames_turn_the_whole_figure_green_and_titles_say_kept_or_generated(rendered_edit):
    path, scene, variations = rendered_edit
    panels = above_strip(scene)
    kept = colour_mask(gif_frame(path, 3)[panels], KEPT_COLOR).sum()
    generated = colour_mask(gif_frame(path, 14)[panels], KEPT_COLOR).sum()
    assert kept > 2 * generated > 0
    ax = scene.dancers["variation 2"].ax
    assert near(colour_mask(gif_frame(path, 3), KEPT_COLOR), *joint_pixel(scene, ax, variations["variation 2"], 3,
                                                                          RIGHT_ANKLE))
    scene.update(3)
    assert scene.dancers["variation 2"].ax.get_title() == "variation 2 · kept"
    assert scene.dancers["original"].ax.get_title() == "original · kept"
    scene.update(14)
    assert scene.dancers["variation 2"].ax.get_title() == "variation 2 · generated"
    assert scene.dancers["original"].ax.get_title() == "original · replaced"
    assert np.allclose(scene.cursor.get_xdata(), 14 / 20)


def test_without_kept_parts_nothing_is_green(tmp_path, clip):
    path = save_edit_gif(clip[:6], {"a": clip[:6]}, tmp_path / "plain.gif", dpi=DPI, progress=False)
    assert not colour_mask(gif_frame(path, 2), KEPT_COLOR).any()


def test_a_continuation_pads_the_mask_and_the_original_holds_its_last_frame(tmp_path, clip):
    original = clip[:8]
    known = np.ones(8, bool)  # the original's length: frames past it were generated
    path = save_edit_gif(original, {"next": clip}, tmp_path / "cont.gif", known_frames=known, dpi=DPI,
                         max_frames=10, progress=False)
    with Image.open(path) as gif:
        assert gif.n_frames == 10 and gif.info["duration"] == 100
    scene = EditScene(original, {"next": clip}, known_frames=known, dpi=DPI)
    assert scene.num_frames == 20 and scene.known.tolist() == [True] * 8 + [False] * 12
    scene.update(15)
    assert scene.dancers["original"].ax.get_title() == "original · ended"
    assert scene.dancers["next"].ax.get_title() == "next · generated"
    late = np.zeros(20, bool)
    late[12] = True
    with pytest.raises(DataError, match="known_frames.*frame 12"):
        EditScene(original, {"next": clip}, known_frames=late)


def test_edit_html_embeds_frames(clip):
    html = edit_html(clip[:6], {"a": clip[:6]}, kept_joints=[16], dpi=30, max_frames=3, progress=False)
    assert html.count("frames[") >= 3


def test_kept_joints_accept_names_and_indices():
    assert kept_joint_indices(LEFT_ARM) == (16, 18, 20)
    assert kept_joint_indices([20, "pelvis", 20]) == (0, 20)
    assert kept_joint_indices("head") == (15,)
    assert kept_joint_indices(None) == ()


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"kept_joints": ["left_wing"]}, "kept_joints.*unknown joint name 'left_wing'"),
    ({"kept_joints": [22]}, "kept_joints.*0..21"),
    ({"kept_joints": [1.5]}, "kept_joints"),
    ({"known_frames": np.ones(20, int)}, "known_frames.*int64.*bool"),
    ({"known_frames": np.ones(7, bool)}, "known_frames.*shape \\(7,\\)"),
    ({"known_frames": np.ones((20, 1), bool)}, "known_frames"),
])
def test_edit_scene_rejects_bad_masks(clip, kwargs, pattern):
    with pytest.raises(DataError, match=pattern):
        EditScene(clip, {"a": clip}, **kwargs)


def test_edit_scene_rejects_bad_motions(clip):
    with pytest.raises(DataError, match="record a.*22, 3"):
        EditScene(clip, {"a": clip[:, :21]})
    with pytest.raises(DataError, match="record original"):
        EditScene(clip[None], {"a": clip})
    with pytest.raises(DataError, match="variations"):
        EditScene(clip, {})
    with pytest.raises(DataError, match="variations.*duplicate"):
        EditScene(clip, {"original": clip})
    with pytest.raises(ValueError, match="gif"):
        save_edit_gif(clip, {"a": clip}, "edit.png")


SEAMS = [(20, 30)]
LABELS = [(0, 30, "sharp arm waves"), (30, 60, "slow spin")]


def test_long_dance_gif_shows_seams_in_purple_and_titles_the_prompt(tmp_path):
    dance = toy_dance(60)
    path = save_long_dance_gif(dance, tmp_path / "long.gif", seams=SEAMS, boundaries=[30], labels=LABELS,
                               max_frames=30, dpi=DPI, progress=False, caption="medley")
    with Image.open(path) as gif:
        assert gif.n_frames == 30 and gif.info["duration"] == 100  # every 2nd frame, still real time
    scene = LongDanceScene(dance, seams=SEAMS, boundaries=[30], labels=LABELS, caption="medley", dpi=DPI)
    # Above the timeline strip (which shades the seams purple all the time) only the dancer and title can be.
    top = above_strip(scene)
    assert colour_mask(gif_frame(path, 12)[top], SEAM_COLOR).sum() > 20  # frame 24: inside the seam
    assert not purplish(gif_frame(path, 2)[top]).any()  # frame 4
    assert purplish(gif_frame(path, 2)[top.stop:]).any()  # the seam span on the strip
    scene.update(24)
    assert scene.dancer.ax.get_title() == "medley\n1.2 s · sharp arm waves · seam 1"
    scene.update(45)
    assert scene.dancer.ax.get_title() == "medley\n2.2 s · slow spin"
    assert np.allclose(scene.cursor.get_xdata(), 45 / 20)


def test_long_dance_gif_caps_frames_by_default_and_stays_small(tmp_path, monkeypatch):
    monkeypatch.setattr(edits, "LONG_DANCE_MAX_FRAMES", 8)
    path = save_long_dance_gif(toy_dance(80), tmp_path / "capped.gif", seams=[(30, 50)], progress=False)
    with Image.open(path) as gif:
        assert gif.n_frames == 8
    # At the real cap and default dpi the whole GIF stays under a few MB.
    assert path.stat().st_size / 8 * edits.LONG_DANCE_MAX_FRAMES < 5 * 2**20


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"seams": [(30, 20)]}, "record 0, field 'seams'.*empty"),
    ({"seams": [(0, 10), (50, 61)]}, "record 1, field 'seams'.*61"),
    ({"seams": [(-1, 5)]}, "seams"),
    ({"seams": [(1.5, 5)]}, "seams"),
    ({"seams": ["ab"]}, "seams"),
    ({"boundaries": [61]}, "boundaries.*0..60"),
    ({"labels": [(0, 10)]}, "labels.*text"),
])
def test_long_dance_rejects_bad_spans(kwargs, pattern):
    with pytest.raises(DataError, match=pattern):
        LongDanceScene(toy_dance(60), **kwargs)
    if "labels" not in kwargs:
        with pytest.raises(DataError, match=pattern):
            plot_seams(toy_dance(60), **kwargs)


def test_joint_jerk_of_a_cubic_is_its_third_derivative():
    t = np.arange(30) / 20.0
    cubic = np.zeros((30, 22, 3), np.float32)
    cubic[..., 0] = (t**3)[:, None]
    np.testing.assert_allclose(joint_jerk(cubic, 20.0), 6.0, rtol=1e-2)
    assert joint_jerk(np.ones((10, 22, 3)), 20.0).max() == 0  # a still pose


def test_plot_seams_draws_path_and_log_jerk_with_seams(tmp_path):
    dance = toy_dance(60)
    fig = plot_seams(dance, seams=SEAMS, boundaries=[30], path=tmp_path / "seams.png")
    assert isinstance(fig, Figure) and (tmp_path / "seams.png").stat().st_size > 1000
    top, bottom = fig.axes
    assert any(line.get_color() == SEAM_COLOR for line in top.get_lines())
    assert bottom.get_yscale() == "log"
    assert "in seams" in bottom.get_title()
    assert len(bottom.patches) == 1  # the seam span
    other = Figure()
    axes = other.subplots(1, 2)
    assert plot_seams(toy_dance(3), ax=axes) is other  # too short for jerk: says so, no crash
    assert "too short" in axes[1].texts[0].get_text()


def test_package_exports():
    for name in ("EditScene", "LongDanceScene", "save_edit_gif", "edit_html", "save_long_dance_gif", "plot_seams"):
        assert getattr(viz, name) is getattr(edits, name)


def test_long_prompts_wrap_in_the_title():
    prompt = "a very long prompt about a girl group chorus with sharp arm waves and a slow spin to finish"
    scene = LongDanceScene(toy_dance(10), labels=[(0, 10, prompt)], dpi=DPI)
    lines = scene.dancer.ax.get_title().split("\n")
    assert len(lines) >= 2 and max(map(len, lines)) <= scene.dancer.style.title_width
