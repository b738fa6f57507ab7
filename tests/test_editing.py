"""Edit and extend: constraints from the user's side, timelines, dances of any length, in both runtimes."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from kpop_helpers.data.sample import generate_sample_clips
from kpop_helpers.edge import EdgeGenerator
from kpop_helpers.editing import Timeline, body_parts, continuation, keyframes, plan_dance
from kpop_helpers.errors import DataError
from kpop_helpers.generate import generate
from kpop_helpers.runners import onnx_runner
from kpop_helpers.sampling import (DiffusionSchedule, SamplingNoise, WindowPlan, draw_noise, hml_lower_body_mask,
                                   sample_loop)
from tests.conftest import EDGE_PROMPTS, fixture_family

SETTINGS = dict(steps=10, seed=3, sampler="ddpm", guidance=2.5)
TIMELINE = [(0, 6, EDGE_PROMPTS[0]), (6, 13, EDGE_PROMPTS[1])]  # 260 frames: two windows of the tiny model
# generate(torch eager) vs EdgeGenerator(fp32 ONNX): float rounding of two runtimes, grown by the integration
# of a 260-frame root path (measured 0.09 mm; one 40-frame window: 0.025 mm, tests/test_same_dance.py).
TORCH_ATOL = 1e-3


@pytest.fixture(scope="module")
def clip():
    """A plausible dance clip (the synthetic sample set's first clip), 20 fps, 22 T2M joints."""
    clip = generate_sample_clips(1, seed=0)[0]
    clip.positions = clip.positions[:120]
    return clip


@pytest.fixture(scope="module")
def edge(tiny_export):
    return EdgeGenerator(tiny_export[1], variant="fp32", threads=1)


# ---- windows -------------------------------------------------------------------------------------------


def test_windows_cover_the_dance_and_their_weights_sum_to_one():
    for frames, overlap, blend in [(600, 49, "taper"), (600, 98, "first"), (197, 40, "mean"), (3600, 40, "taper")]:
        plan = WindowPlan.cover(frames, 196, overlap, blend)
        assert plan.starts[0] == 0 and plan.starts[-1] + 196 == frames
        assert all(hi - lo >= overlap for lo, hi in plan.seams())
        total = np.zeros(frames)
        for w, start in enumerate(plan.starts):
            total[start:start + 196] += plan.weights()[w]
        np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert WindowPlan.cover(150, 196, 40).starts == (0,)
    assert WindowPlan.cover(600, 196, 40).starts == (0, 156, 312, 404)  # a fixed stride; the last ends the dance
    first = WindowPlan.cover(400, 196, 60, "first").weights()
    lo, hi = WindowPlan.cover(400, 196, 60, "first").seams()[0]
    assert (first[1, :hi - lo] == 0).all()  # EDGE's rule: the earlier window decides shared frames


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_split_then_merge_gives_the_sample_back(library):
    x = np.random.default_rng(0).standard_normal((2, 263, 1, 500)).astype(np.float32)
    x = torch.from_numpy(x) if library == "torch" else x
    plan = WindowPlan.cover(500, 196, 40, "taper")
    windows = plan.split(x)
    assert tuple(windows.shape) == (2 * plan.count, 263, 1, 196)
    np.testing.assert_array_equal(np.asarray(windows[plan.count + 1]), np.asarray(x[1, ..., plan.starts[1]:plan.starts[1] + 196]))
    np.testing.assert_allclose(np.asarray(plan.merge(windows, 2)), np.asarray(x), atol=1e-6)


def test_windowed_sampling_of_a_frame_local_model_equals_sampling_the_whole_dance():
    """A model whose x0 at a frame depends on that frame only cannot tell windows from the whole: same sample."""
    def local(x, t, emb, uncond):
        return np.tanh(0.5 * x + 0.01 * emb[:, :1, None, None] + 0.001 * t[:, None, None, None]) - 0.3 * uncond[:, None, None, None]

    frames, schedule = 300, DiffusionSchedule(50, respacing=[10])
    noise = draw_noise(1, 1, frames, schedule.num_steps, stochastic=True)
    emb = np.ones((1, 8), dtype=np.float32)
    whole = sample_loop(local, emb, noise, schedule, sampler="ddpm")
    plan = WindowPlan.cover(frames, 120, 30, "taper")
    windowed = sample_loop(local, np.repeat(emb, plan.count, axis=0), noise, schedule, sampler="ddpm",
                           windows=plan, max_windows=2)
    np.testing.assert_allclose(windowed, whole, atol=1e-5)


# ---- constraints from the user's side ------------------------------------------------------------------


def test_keyframes_take_frames_slices_masks_and_seconds(clip):
    assert keyframes(clip).mask.all()
    by_frames = keyframes(clip, [0, 5, slice(10, 20)])
    assert np.flatnonzero(by_frames.mask[:, 0]).tolist() == [0, 5, *range(10, 20)]
    by_seconds = keyframes(clip, seconds=[(0, 1), (4, 5)], at=30)
    rows = np.flatnonzero(by_seconds.mask[:, 0])
    assert rows.tolist() == [*range(0, 20), *range(80, 100)] and by_seconds.start == 30
    assert by_seconds.last_known == 30 + 100 and by_seconds.features.shape == (119, 263)  # 120 joints -> 119 features
    features = keyframes(by_seconds.features)  # features in, no joints to place on
    assert features.joints is None and features.mask.all()


def test_body_parts_use_mdm_columns_root_and_feet_go_with_the_pelvis(clip):
    lower, upper = body_parts(clip, "lower"), body_parts(clip, "upper")
    np.testing.assert_array_equal(lower.mask[0], hml_lower_body_mask())
    np.testing.assert_array_equal(upper.mask[0], ~hml_lower_body_mask())  # MDM's upper edit keeps the rest
    assert lower.mask[:, :4].all() and lower.mask[:, -4:].all()  # root and foot contacts with the pelvis
    assert not upper.mask[:, :4].any() and not upper.mask[:, -4:].any()
    arms = body_parts(clip, ["left_shoulder", "left_elbow", "left_wrist"])
    assert arms.joint_mask[0].sum() == 3 and not arms.mask[0, :4].any()


@pytest.mark.reference
def test_the_lower_body_map_is_mdms_mask(clip):
    """Every mdm_inpainting case that stores MDM's HML_LOWER_BODY_MASK: body_parts("lower") keeps exactly it."""
    folder, cases_json = fixture_family("mdm_inpainting")
    checked = 0
    for case in cases_json["cases"]:
        data = np.load(folder / case["file"], allow_pickle=False)
        if "hml_lower_body_mask" in data:
            np.testing.assert_array_equal(body_parts(clip, "lower").mask[0], data["hml_lower_body_mask"],
                                          err_msg=case["name"])
            checked += 1
    if not checked:
        pytest.skip(f"no case in {folder}/cases.json stores hml_lower_body_mask")


def test_continuation_asks_for_more_frames_than_it_knows(clip):
    item = continuation(clip, 3)
    assert item.mask.all() and item.min_frames == 119 + 60
    assert plan_dance("x", max_frames=196, constraints=item).frames == 179


# ---- timelines ----------------------------------------------------------------------------------------


def test_timeline_parses_tuples_dicts_and_json(tmp_path):
    path = tmp_path / "timeline.json"
    path.write_text(json.dumps([{"start": 0, "end": 10, "prompt": "a"}, {"start": 12, "end": 20, "prompt": "b"}]))
    for value in (path, [(0, 10, "a"), (12, 20, "b")], [{"start": 0, "end": 10, "prompt": "a"}, (12, 20, "b")]):
        timeline = Timeline.parse(value)
        assert timeline.prompts == ["a", "b"] and timeline.end_s == 20
    # a gap follows the nearest entry
    assert Timeline.parse(path).entry_at(np.array([0, 200, 215, 230, 399])).tolist() == [0, 0, 0, 1, 1]


def test_every_window_follows_the_prompt_at_its_centre():
    plan = plan_dance(max_frames=196, timeline=[(0, 20, "a"), (20, 40, "b"), (40, 60, "a")])
    assert plan.frames == 1200 and plan.prompts == ["a", "b"]
    centres = plan.windows.centres() / 20
    expected = [0 if c < 20 or c >= 40 else 1 for c in centres]
    assert plan.rows[0].tolist() == expected
    with pytest.warns(UserWarning, match="not followed"):
        plan_dance(max_frames=196, timeline=[(0, 21, "a"), (21, 22, "b"), (22, 40, "a")])


@pytest.mark.parametrize("timeline, match", [
    ([(0, 10, "a"), (5, 20, "b")], "do not overlap"),
    ([(10, 20, "a"), (0, 5, "b")], "ordered by start"),
    ([(0, 10, "")], "non-empty text prompt"),
    ([(5, 5, "a")], "0 <= start_s < end_s"),
    ([(0, 10)], r"\(start_s, end_s, prompt\)"),
    ([], "non-empty list"),
])
def test_bad_timelines_name_the_entry(timeline, match):
    with pytest.raises(DataError, match=match):
        Timeline.parse(timeline)


# ---- bad input ----------------------------------------------------------------------------------------


def test_bad_requests_raise_data_errors_naming_the_argument(clip):
    with pytest.raises(DataError, match="constraints.*within the dance"):
        plan_dance("x", max_frames=196, frames=50, constraints=keyframes(clip))
    with pytest.raises(DataError, match=r"joints \[T, 22, 3\]"):
        keyframes(clip.positions[:, :20])
    nan = clip.positions.copy()
    nan[7, 3, 1] = np.nan
    with pytest.raises(DataError, match="non-finite joint position at frame 7"):
        body_parts(nan)
    with pytest.raises(DataError, match="unknown joints.*left_tentacle"):
        body_parts(clip, ["left_wrist", "left_tentacle"])
    with pytest.raises(DataError, match="body part 'arms'"):
        body_parts(clip, "arms")
    with pytest.raises(DataError, match="both prompts and a timeline"):
        plan_dance("x", max_frames=196, timeline=TIMELINE)
    with pytest.raises(DataError, match="spans within 6.00 s"):
        keyframes(clip, seconds=[(0, 30)])
    assert keyframes(clip, seconds=[(4, 6)]).mask[:, 0].sum() == 39  # up to the clip's end (its last frame: no feature)
    with pytest.raises(DataError, match="blend"):
        plan_dance("x", max_frames=196, frames=400, blend="smooth")
    with pytest.raises(DataError, match="DanceConstraint"):
        plan_dance("x", max_frames=196, constraints=[np.zeros((10, 263))])


# ---- both runtimes ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_dances(tiny_export, edge, clip, one_torch_thread):
    model = tiny_export[0]
    runner = onnx_runner(tiny_export[1] / edge.entry["file"], threads=1)
    request = dict(timeline=TIMELINE, constraints=keyframes(clip, seconds=[(0, 2)], at=40), **SETTINGS)
    return {"edge": edge.generate_result(**request),
            "onnx": generate(model, runner=runner, text_encoder=edge.text_encoder, progress=False, **request),
            "torch": generate(model, progress=False, **request)}


def test_a_long_edited_dance_is_the_same_in_both_runtimes(long_dances):
    edge, onnx, torch_result = long_dances["edge"], long_dances["onnx"], long_dances["torch"]
    assert edge.joints.shape == (1, 260, 22, 3) and edge.plan.windows.count == 2
    np.testing.assert_array_equal(onnx.joints, edge.joints)  # same session, loop and noise: bit for bit
    error = float(np.abs(torch_result.joints - edge.joints).max())
    assert error <= TORCH_ATOL, f"generate(torch) vs EdgeGenerator on a long edited dance: {error * 1000:.3f} mm"


def test_the_known_part_lands_where_the_users_clip_was(long_dances, clip):
    result = long_dances["edge"]
    item = result.plan.constraints[0]
    span = slice(item.start, item.end)
    # the known features are exact in the final sample (the last step of MDM's rule returns x0)
    np.testing.assert_allclose(result.features[0, span][item.mask], item.features[item.mask], atol=1e-4)
    # so the known frames are the clip as its features describe it, placed on the user's clip
    described = item.described_joints()
    known = item.joint_mask
    own = np.linalg.norm(result.joints[0, span][known] - described[known], axis=-1)
    assert own.max() < 1e-3, f"known frames moved {own.max() * 1000:.2f} mm from the kept clip"
    to_user = np.linalg.norm(result.joints[0, span][known] - item.joints[known], axis=-1)
    assert to_user.mean() < 0.1  # what is left is the clip's retargeting to the model's skeleton


def test_a_long_dance_has_no_jump_at_its_seams(long_dances):
    """Joints are recovered once for the whole dance: every root step, seams included, is the one its features say."""
    result = long_dances["edge"]
    root = result.joints[0, :, 0]
    steps = np.linalg.norm(np.diff(root[:, [0, 2]], axis=0), axis=1)
    said = np.linalg.norm(result.features[0, :-1, 1:3], axis=1)  # root xz velocity of frame i-1 (metres/frame)
    np.testing.assert_allclose(steps, said, atol=1e-4)
    facing = np.diff(result.features[0, :, 0])  # root rotation velocity: continuous across the blend as well
    seam = np.zeros(len(facing), dtype=bool)
    for lo, hi in result.plan.seams():
        seam[lo:hi] = True
    assert np.abs(facing[seam]).max() <= np.abs(facing[~seam]).max()


def test_continuation_keeps_the_clip_and_goes_on(edge, clip):
    result = edge.generate_result(EDGE_PROMPTS[1], constraints=continuation(clip, 5), **SETTINGS)
    item = result.plan.constraints[0]
    assert result.joints.shape[1] == 119 + 100
    assert np.abs(result.joints[0, :119] - item.described_joints()).max() < 1e-3


# ---- the command line ---------------------------------------------------------------------------------


def test_edge_cli_writes_every_format_without_torch(tiny_export, tmp_path):
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps([{"start": s, "end": e, "prompt": p} for s, e, p in TIMELINE]))
    outs = [tmp_path / f"dance{suffix}" for suffix in (".npz", ".json", ".bvh")]
    code = ("import sys; from kpop_helpers.edge.__main__ import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'the edge CLI imported torch'; raise SystemExit(rc)")
    args = ["--export-dir", str(tiny_export[1]), "--variant", "fp32", "--timeline", str(timeline), "--steps", "5",
            "--threads", "1", "--quiet", *[a for out in outs for a in ("--out", str(out))]]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 260 and summary["windows"] == 2
    from kpop_helpers.data.io import load_clips

    from kpop_helpers.data.bvh import read_bvh

    clips = [load_clips(out, progress=False)[0][0] for out in outs[:2]]
    np.testing.assert_allclose(clips[0].positions, clips[1].positions, atol=1e-5)
    # the random tiny model's dance is no human shape: tell the reader y is up and the unit is metres
    bvh = read_bvh(outs[2], unit="m", up_axis="y", check_scale=False)
    np.testing.assert_allclose(bvh.positions, clips[0].positions, atol=1e-3)  # BVH: 6-decimal text
    bad = subprocess.run([sys.executable, "-m", "kpop_helpers.edge", "--export-dir", str(tiny_export[1]),
                          "--prompt", "x", "--keep-clip", str(outs[0]), "--keep", "tail", "--out",
                          str(tmp_path / "x.npz")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown joints ['tail']" in bad.stderr


def test_generate_cli_edits_a_clip_with_the_pytorch_model(tiny_export, clip, tmp_path):
    from kpop_helpers.data.io import save_npz
    from kpop_helpers.generate import main
    from kpop_helpers.model import save_mdm

    model = tiny_export[0]
    weights = tmp_path / "tiny.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_mdm(model, weights)
    model.stats.save(tmp_path)
    save_npz(tmp_path / "take.npz", [clip])
    out = tmp_path / "edit.npz"
    assert main(["--model", str(weights), "--text-encoder", "minilm", "--prompt", "a cute dance", "--keep-clip",
                 str(tmp_path / "take.npz"), "--keep", "lower", "--steps", "5", "--device", "cpu", "--quiet",
                 "--out", str(out)]) == 0
    from kpop_helpers.data.io import load_clips

    edited = load_clips(out, progress=False)[0][0]
    assert edited.positions.shape == (119, 22, 3)
