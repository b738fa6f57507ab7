"""Notebook 06's edit-and-extend stage: clip, KEEP, timeline text, the edit and long-dance renders (tiny model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_mdm
from kpop_helpers.data.clip import MotionClip
from kpop_helpers.data.io import save_npz
from kpop_helpers.errors import DataError
from kpop_helpers.pipeline import (
    KEEP_CHOICES, EditPreview, LongDancePreview, WorkDirs, load_result, parse_timeline_text, pick_clip, render_edit,
    render_timeline_dance,
)
from kpop_helpers.pipeline.edits import SMOKE_GIF_FRAMES, SMOKE_TIMELINE_SECONDS, edit_constraint, kept_error_mm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return tiny_mdm(0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[MotionClip]:
    """Three clips of the synthetic sample set (20 fps, several seconds each)."""
    from kpop_helpers.data.io import load_clips
    from kpop_helpers.data.sample import build_sample_dataset

    folder = tmp_path_factory.mktemp("sample")
    build_sample_dataset(folder, num_clips=6, progress=False)
    found, _ = load_clips(folder / "train.npz", progress=False)
    return found[:3]


def test_timeline_text_reads_parts_in_seconds():
    text = "0-20: a hip-hop dance;20 - 40 s : a cute aegyo dance, with small steps\n 40.5-60: house: quick footwork;"
    assert parse_timeline_text(text) == [(0.0, 20.0, "a hip-hop dance"),
                                         (20.0, 40.0, "a cute aegyo dance, with small steps"),
                                         (40.5, 60.0, "house: quick footwork")]


@pytest.mark.parametrize("text, match", [
    ("", "TIMELINE.*empty"),
    ("   ;  ", "TIMELINE.*empty"),
    ("0-20 a dance", "TIMELINE.*part 1 '0-20 a dance' is not 'start-end: prompt'"),
    ("0-20: a dance; twenty-40: more", "TIMELINE.*part 2"),
    ("0-20:", "TIMELINE.*part 1"),
    ("20-10: backwards", "TIMELINE.*part 1 runs from 20 s to 10 s"),
    ("0-20: a; 15-30: b", "TIMELINE.*part 2 runs from 15 s to 30 s \\(part 1 ends at 20 s\\).*none starts before"),
])
def test_bad_timeline_text_names_the_field_and_the_format(text, match):
    with pytest.raises(DataError, match=match) as caught:
        parse_timeline_text(text)
    assert caught.value.field == "TIMELINE" and ("start-end: prompt" in caught.value.expected
                                                 or "in time order" in caught.value.expected)


def test_keep_choices_make_the_constraints_they_say(clips):
    clip = clips[0]
    between = edit_constraint(clip, "in-between", 40)
    rows = between.joint_mask.all(axis=1)
    assert between.features.shape[0] == 40 and rows[:10].all() and rows[30:].all() and not rows[10:30].any()
    lower = edit_constraint(clip, "lower body", 40)
    assert lower.joint_mask[:, 0].all() and not lower.joint_mask[:, 20].any()  # pelvis kept, left wrist not
    upper = edit_constraint(clip, "upper body", 40)
    assert not upper.joint_mask[:, 0].any() and upper.joint_mask[:, 20].all()
    cont = edit_constraint(clip, "continue", 40)
    assert cont.features.shape[0] == 20 and cont.min_frames == 40
    fast = MotionClip(np.repeat(clip.positions, 3, axis=0), fps=60.0)  # resampled to 20 fps first
    np.testing.assert_allclose(edit_constraint(fast, "lower body", 40).joints[:5], lower.joints[:5], atol=1e-4)
    with pytest.raises(DataError, match="field 'KEEP'.*'legs'.*" + ", ".join(KEEP_CHOICES)):
        edit_constraint(clip, "legs", 40)
    with pytest.raises(DataError, match="at least 9 frames"):
        edit_constraint(clip.positions[:5], "in-between", 40)


def test_pick_clip_from_the_runs_validation_clips_or_a_file(tmp_path, clips):
    work = WorkDirs(tmp_path / "work")
    data = work.data
    save_npz(data / "train.npz", clips[:2])
    save_npz(data / "val.npz", clips[2:])
    (data / "stats").mkdir(parents=True)
    (data / "result.json").write_text(json.dumps(dict(
        data_dir=str(data), train=str(data / "train.npz"), val=str(data / "val.npz"), metadata="", num_clips=3,
        stats_dir=str(data / "stats"), num_train=2, num_val=1, feature_frames=0, seconds=0.0)))
    picked = pick_clip(work, 0)
    np.testing.assert_allclose(picked.positions, clips[2].positions, atol=1e-6)
    assert picked.source == "val.npz #0"
    with pytest.raises(DataError, match="EDIT_CLIP_INDEX.*got 1; .*val.npz holds 1 validation clips.*0..0"):
        pick_clip(work, 1)
    own = save_npz(tmp_path / "mine.npz", clips)
    np.testing.assert_allclose(pick_clip(work, 2, str(own)).positions, clips[2].positions, atol=1e-6)
    for bad in (-1, 3, 1.0, True):
        with pytest.raises(DataError, match="EDIT_CLIP_INDEX.*0..2"):
            pick_clip(work, bad, own)


@pytest.mark.parametrize("keep", ["in-between", "upper body"])
def test_render_edit_draws_the_original_beside_its_variations(tmp_path, model, clips, keep):
    out = tmp_path / "edit"
    edit = render_edit(model, out, clips[0], keep=keep, variations=2, smoke=True, progress=False)
    assert load_result(EditPreview, out) == edit
    with Image.open(edit.gif) as gif:
        assert gif.n_frames <= SMOKE_GIF_FRAMES + 1 and gif.size[0] > 2 * gif.size[1]  # three panels side by side
    with np.load(edit.motions) as data:
        assert data["variations"].shape == (2, 40, 22, 3) and data["original"].shape == (40, 22, 3)
        assert str(data["keep"]) == keep and str(data["prompt"]) == clips[0].text == edit.prompt
        known, kept = data["known_frames"], list(data["kept_joints"])
    if keep == "in-between":
        assert edit.known_spans == [[0, 10], [30, 40]] and known[:10].all() and not known[10:30].any()
        assert kept == edit.kept_joints == []
    else:
        assert edit.known_spans == [] and not known.any()
        assert "left_wrist" in kept and "pelvis" not in kept and kept == edit.kept_joints
    assert len(edit.kept_error_mm) == 2 and max(edit.kept_error_mm) < 1.0  # MDM's rule keeps the known values


def test_render_edit_rejects_bad_knobs_before_any_work(tmp_path, clips):
    with pytest.raises(DataError, match="VARIATIONS.*1..8"):
        render_edit("no-such-weights", tmp_path, clips[0], variations=0, smoke=True, progress=False)
    with pytest.raises(DataError, match="KEEP"):
        render_edit("no-such-weights", tmp_path, clips[0], keep="arms", smoke=True, progress=False)


def test_kept_error_measures_the_pose_where_the_path_is_regenerated(clips):
    upper = edit_constraint(clips[0], "upper body", 40)
    turned = upper.joints.copy()
    c, s = np.cos(0.7), np.sin(0.7)  # the same pose, elsewhere in the room and facing elsewhere
    x, z = turned[..., 0].copy(), turned[..., 2].copy()
    turned[..., 0], turned[..., 2] = c * x + s * z + 3.0, -s * x + c * z - 1.0
    assert kept_error_mm(turned[None], upper)[0] < 1e-3
    lower = edit_constraint(clips[0], "lower body", 40)  # the pelvis is kept: measured in the room
    assert kept_error_mm(turned[None], lower)[0] > 100.0
    assert kept_error_mm(lower.joints[None] + 0.01 * np.array([1.0, 0, 0]), lower)[0] == pytest.approx(10.0)


def test_timeline_dance_is_squeezed_under_smoke_and_drawn_with_its_seams(tmp_path, model):
    text = "0-30: a hip-hop dance; 30-60: a cute aegyo dance"  # the tiny model's 196-frame windows: 2 parts fit 15 s
    dance = render_timeline_dance(model, tmp_path / "timeline", text, smoke=True, progress=False)
    assert load_result(LongDancePreview, tmp_path / "timeline") == dance
    assert dance.dance_seconds == SMOKE_TIMELINE_SECONDS == 15 and dance.windows == 2 and len(dance.seams) == 1
    assert dance.timeline == [[0.0, 7.5, "a hip-hop dance"], [7.5, 15.0, "a cute aegyo dance"]]
    assert dance.boundaries == [150]
    with np.load(dance.motions) as data:
        assert data["joints"].shape == (300, 22, 3) and list(data["prompts"]) == [e[2] for e in dance.timeline]
        assert data["seams"].tolist() == dance.seams
    with Image.open(dance.gif) as gif:
        assert gif.n_frames <= SMOKE_GIF_FRAMES + 1
    assert Image.open(dance.png).size[0] > 300
    with pytest.raises(DataError, match="TIMELINE"):
        render_timeline_dance(model, tmp_path / "bad", "0-20 no colon", smoke=True, progress=False)


def test_edit_player_plays_the_saved_edit(tmp_path, model, clips):
    pytest.importorskip("ipywidgets")
    from kpop_helpers.pipeline import edit_player

    edit = render_edit(model, tmp_path, clips[1], keep="continue", variations=1, smoke=True, progress=False)
    player = edit_player(edit, dpi=30)
    assert player.current_png.startswith(b"\x89PNG") and player.slider.max == edit.frames - 1
    player.slider.value = edit.frames - 1
    assert player.current_png and edit_player(edit.out_dir, dpi=30).slider.max == edit.frames - 1
