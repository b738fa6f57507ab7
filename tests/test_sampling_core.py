"""The one sampling core: SamplerSpec parsing, numpy and torch steps agreeing, schedules as before, masks, noise."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from kpop_helpers.config import SamplingConfig
from kpop_helpers.diffusion import GaussianDiffusion
from kpop_helpers.edge import NumpyDiffusion
from kpop_helpers.errors import DataError
from kpop_helpers.sampling import (
    SCHEDULE_ARRAYS, T2M_JOINTS, Constraint, DiffusionSchedule, SamplerSpec, ddim_step, ddpm_step, draw_noise,
    guided_combine, hml_lower_body_mask, in_between_mask, posterior_mean, predict_eps_from_xstart,
)
from tests.conftest import REPO_ROOT

# ------------------------------------------------------------------------------------------ SamplerSpec


@pytest.mark.parametrize("value,expected", [
    ("ddpm20", ("ddpm", 20)),
    ("ddim10", ("ddim", 10)),
    (" DDIM4 ", ("ddim", 4)),
    ("ddpm", ("ddpm", None)),
    ({"sampler": "ddim", "steps": 10, "guidance": 2.5, "eta": 0.0}, ("ddim", 10)),
    ({"sampler": "ddim50"}, ("ddim", 50)),
    ({"sampler": "ddpm", "steps": "20", "guidance": 3, "eta": 0, "schedule": "cosine", "diffusion_steps": 1000,
      "max_frames": 196, "noise": "numpy default_rng(seed)"}, ("ddpm", 20)),  # a manifest `sampling` section
    (SamplingConfig(sampler="ddim", steps=10), ("ddim", 10)),
    (SamplerSpec("ddpm", 7), ("ddpm", 7)),
    (None, ("ddpm", None)),
])
def test_parse_accepts_every_spelling(value, expected):
    spec = SamplerSpec.parse(value)
    assert (spec.sampler, spec.steps) == expected
    assert isinstance(spec.guidance, float) and isinstance(spec.eta, float)
    assert SamplerSpec.parse(spec.name) == SamplerSpec(spec.sampler, spec.steps)


def test_parse_keywords_override_and_none_keeps():
    assert SamplerSpec.parse(sampler="ddim", steps=10, eta=0.5) == SamplerSpec("ddim", 10, 2.5, 0.5)
    assert SamplerSpec.parse("ddim10", steps=5) == SamplerSpec("ddim", 5)  # explicit keywords win
    base = {"sampler": "ddpm", "steps": 20, "guidance": 1.5, "eta": 0.0}
    assert SamplerSpec.parse(base, sampler=None, steps=None, guidance=None) == SamplerSpec("ddpm", 20, 1.5)
    assert SamplerSpec.parse(base, sampler="ddim") == SamplerSpec("ddim", 20, 1.5)
    assert SamplerSpec.parse(base).to_dict() == base


def test_parse_reads_the_repository_edge_config():
    section = json.loads((REPO_ROOT / "edge_config.json").read_text())["sampling"]
    spec = SamplerSpec.parse(section)
    assert spec.to_dict() == {key: section[key] for key in ("sampler", "steps", "guidance", "eta")}


@pytest.mark.parametrize("value,field,needle", [
    ("ddim1", "sampling", "'ddim1'"),
    ("ddimx", "sampling", "'ddimx'"),
    ("euler10", "sampling", "'euler10'"),
    ("", "sampling", "''"),
    (10, "sampling", "got 10"),
    ([10], "sampling", "got [10]"),
    ({"sampler": "ddim", "stepz": 3}, "sampling", "unknown keys ['stepz']"),
    ({"sampler": "ddim10", "steps": 20}, "sampling.steps", "contradicts"),
    ({"sampler": "ddpm", "steps": 1}, "sampling.steps", "steps 1"),
    ({"sampler": "ddpm", "steps": 2.5}, "sampling.steps", "steps 2.5"),
    ({"sampler": "ddpm", "steps": True}, "sampling.steps", "steps True"),
    ({"sampler": "ddim", "eta": 1.5}, "sampling.eta", "eta 1.5"),
    ({"sampler": "ddim", "eta": -0.1}, "sampling.eta", "eta -0.1"),
    ({"sampler": "ddpm", "guidance": float("nan")}, "sampling.guidance", "guidance nan"),
    ({"sampler": "ddpm", "guidance": "lots"}, "sampling.guidance", "guidance 'lots'"),
    ({"sampler": 3}, "sampling.sampler", "sampler 3"),
])
def test_parse_errors_name_the_value_and_what_is_expected(value, field, needle):
    with pytest.raises(DataError) as info:
        SamplerSpec.parse(value, path="edge_config.json")
    message = str(info.value)
    assert info.value.field == field and info.value.expected, message
    assert needle in message and message.startswith("edge_config.json"), message


def test_direct_construction_is_checked_too():
    with pytest.raises(DataError, match="sampler must be 'ddpm' or 'ddim'"):
        SamplerSpec("euler")
    with pytest.raises(DataError, match="eta must lie in"):
        SamplerSpec("ddim", eta=2.0)
    with pytest.raises(TypeError, match="stepz"):
        SamplerSpec.parse(stepz=3)


def test_respacing_of_a_models_schedule():
    assert SamplerSpec("ddpm", None).respacing(1000) is None
    assert SamplerSpec("ddpm", 1000).respacing(1000) is None
    assert SamplerSpec("ddpm", 10).respacing(1000) == [10]
    assert SamplerSpec("ddim", 10).respacing(1000) == "ddim10"
    assert SamplerSpec("ddim", 10).schedule(1000).timestep_map[-1] == 900
    assert SamplerSpec("ddpm", 10).schedule(1000).timestep_map[-1] == 999
    assert SamplerSpec("ddim", 10, eta=0.5).stochastic and not SamplerSpec("ddim", 10).stochastic
    with pytest.raises(DataError, match=r"steps must lie in 2\.\.50"):
        SamplerSpec("ddim", 60).respacing(50)


# ------------------------------------------------------------------------------------------ schedules


def _schedule_as_before(betas: np.ndarray) -> dict[str, np.ndarray]:
    """The mdm_diffusion README's §3.2 definitions, entry by entry in Python floats (independent of numpy)."""
    out: dict[str, list[float]] = {key: [] for key in SCHEDULE_ARRAYS}
    cumprod = 1.0
    for beta in betas.tolist():
        previous, cumprod = cumprod, cumprod * (1.0 - beta)
        row = {"betas": beta, "alphas_cumprod": cumprod, "alphas_cumprod_prev": previous,
               "sqrt_alphas_cumprod": math.sqrt(cumprod), "sqrt_one_minus_alphas_cumprod": math.sqrt(1.0 - cumprod),
               "log_one_minus_alphas_cumprod": math.log(1.0 - cumprod),
               "sqrt_recip_alphas_cumprod": math.sqrt(1.0 / cumprod),
               "sqrt_recipm1_alphas_cumprod": math.sqrt(1.0 / cumprod - 1),
               "posterior_variance": beta * (1.0 - previous) / (1.0 - cumprod),
               "posterior_mean_coef1": beta * math.sqrt(previous) / (1.0 - cumprod),
               "posterior_mean_coef2": (1.0 - previous) * math.sqrt(1.0 - beta) / (1.0 - cumprod)}
        for key, value in row.items():
            out[key].append(value)
    out["alphas_cumprod_next"] = out["alphas_cumprod"][1:] + [0.0]
    variance = out["posterior_variance"]
    out["posterior_log_variance_clipped"] = [math.log(v) for v in [variance[1]] + variance[1:]]
    return {key: np.array(values) for key, values in out.items()}


@pytest.mark.parametrize("steps,name,respacing", [(1000, "cosine", None), (1000, "cosine", "ddim10"),
                                                   (50, "cosine", "4,1,3"), (200, "linear", [7, 3])])
def test_schedule_arrays_are_the_same_as_before_everywhere(steps, name, respacing):
    core = DiffusionSchedule(steps, name, respacing)
    base = np.cumprod(1.0 - core.base_betas)
    last, betas = 1.0, []
    for i in core.use_timesteps:  # SpacedDiffusion's betas, recomputed from the base alphas_cumprod
        betas.append(1.0 - base[i] / last)
        last = base[i]
    expected = _schedule_as_before(np.array(betas))
    for other in (GaussianDiffusion(steps, name, respacing), NumpyDiffusion(steps, name, respacing)):
        for key in SCHEDULE_ARRAYS:
            # The same numpy expressions as before the merge, so equal to the last bit among the three...
            np.testing.assert_array_equal(getattr(other, key), getattr(core, key), err_msg=f"{type(other)} {key}")
            # ...and the definitions themselves (math.log / numpy log may differ by an ulp).
            np.testing.assert_allclose(getattr(core, key), expected[key], rtol=1e-13, atol=0, err_msg=key)
        np.testing.assert_array_equal(other.timestep_map, core.use_timesteps)


def test_coefficients_are_picked_then_float32_on_both_sides():
    schedule = DiffusionSchedule(1000, respacing="ddim10")
    t = np.array([0, 4, 9])
    picked = schedule.coef("alphas_cumprod_prev", t)
    assert picked.dtype == np.float32 and picked.shape == (3, 1, 1, 1)
    np.testing.assert_array_equal(picked.ravel(), schedule.alphas_cumprod_prev[t].astype(np.float32))
    torch_picked = schedule.coef("alphas_cumprod_prev", torch.from_numpy(t), ndim=3)
    assert torch_picked.dtype == torch.float32 and tuple(torch_picked.shape) == (3, 1, 1)
    np.testing.assert_array_equal(torch_picked.numpy().ravel(), picked.ravel())
    assert schedule.model_timesteps(torch.from_numpy(t)).tolist() == [0, 400, 900]
    assert schedule.model_timesteps(t).dtype == np.int64
    assert list(schedule.reverse_indices()) == list(range(9, -1, -1))


# ------------------------------------------------------------------------------------------ steps: numpy == torch


def _random_step_inputs(seed: int, batch: int = 4, frames: int = 7):
    rng = np.random.default_rng(seed)
    shape = (batch, 263, 1, frames)
    x, x0, noise = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
    return x, x0, noise


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_and_torch_steps_agree(seed):
    schedule = DiffusionSchedule(1000, respacing=[20])
    x, x0, noise = _random_step_inputs(seed)
    t = np.random.default_rng(seed).integers(0, schedule.num_steps, size=x.shape[0])
    t[0] = 0  # the last step: no noise
    tx, tx0, tnoise, tt = (torch.from_numpy(a) for a in (x, x0, noise, t))

    def same(numpy_out, torch_out, exact: bool, what: str) -> None:
        assert numpy_out.dtype == np.float32 and torch_out.dtype == torch.float32, what
        tolerance = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-6, "atol": 1e-6}  # torch sqrt/exp: 1 ulp
        np.testing.assert_allclose(torch_out.numpy(), numpy_out, err_msg=what, **tolerance)

    # Only +, -, *, / here: the two libraries agree to the bit.
    same(posterior_mean(schedule, x, t, x0), posterior_mean(schedule, tx, tt, tx0), True, "mean")
    same(predict_eps_from_xstart(schedule, x, t, x0), predict_eps_from_xstart(schedule, tx, tt, tx0), True, "eps")
    scale = np.array([2.5, 0.0, 1.0, 7.5], np.float32)
    same(guided_combine(x, x0, scale), guided_combine(tx, tx0, torch.from_numpy(scale)), True, "guided")
    same(ddpm_step(schedule, x, t, x0, noise).sample, ddpm_step(schedule, tx, tt, tx0, tnoise).sample, False, "ddpm")
    for eta in (0.0, 0.5):
        same(ddim_step(schedule, x, t, x0, eta, noise).sample, ddim_step(schedule, tx, tt, tx0, eta, tnoise).sample,
             False, f"ddim eta={eta}")
    # t = 0: DDPM returns the posterior mean, DDIM the x0 prediction.
    np.testing.assert_array_equal(ddpm_step(schedule, x, t, x0, noise).sample[0],
                                  posterior_mean(schedule, x, t, x0)[0])
    np.testing.assert_allclose(ddim_step(schedule, x, t, x0, 0.5, noise).sample[0], x0[0], rtol=0, atol=1e-6)


def test_guided_combine_checks_the_scale_shape():
    x = np.ones((3, 263, 1, 2), np.float32)
    np.testing.assert_array_equal(guided_combine(3 * x, x, 0.5), 2 * x)
    with pytest.raises(DataError, match=r"guidance scale must be a number or have shape \[3\]"):
        guided_combine(x, x, np.ones(2, np.float32))


# ------------------------------------------------------------------------------------------ constraints and masks


def test_constraint_rule_and_layouts_on_numpy_and_torch():
    rng = np.random.default_rng(3)
    shape = (2, 263, 1, 5)
    x0 = rng.standard_normal(shape, dtype=np.float32)
    mask = rng.random(shape) < 0.4
    known = rng.standard_normal(shape, dtype=np.float32)
    out = Constraint(mask, known).apply(x0)
    np.testing.assert_array_equal(out, np.where(mask, known, x0))
    torch_out = Constraint(torch.from_numpy(mask), torch.from_numpy(known)).apply(torch.from_numpy(x0))
    np.testing.assert_array_equal(torch_out.numpy(), out)
    # [F, 263] (frames x features) and [263] columns are MDM's [B, 263, 1, F] broadcast.
    frames_features = mask[0, :, 0, :].T
    np.testing.assert_array_equal(Constraint(frames_features, known).resolved(shape).mask,
                                  np.broadcast_to(mask[:1], shape))
    columns = hml_lower_body_mask()
    np.testing.assert_array_equal(Constraint(columns, known).resolved(shape).mask,
                                  np.broadcast_to(columns[None, :, None, None], shape))
    batch_frames_features = known.transpose(0, 3, 1, 2)[..., 0]
    np.testing.assert_array_equal(Constraint(mask, batch_frames_features).resolved(shape).known, known)


def test_constraint_errors_are_clear():
    shape = (2, 263, 1, 5)
    with pytest.raises(DataError, match=r"mask has shape \(263, 5\).*\(2, 263, 1, 5\)"):
        Constraint(np.ones((263, 5), bool), np.zeros(shape, np.float32)).resolved(shape)
    with pytest.raises(DataError, match="boolean mask"):
        Constraint(np.ones(shape), np.zeros(shape, np.float32)).resolved(shape)
    with pytest.raises(DataError, match="not finite"):
        Constraint(np.ones(shape, bool), np.full(shape, np.nan, np.float32)).resolved(shape)


def test_lower_body_mask_follows_the_humanml_layout():
    from kpop_helpers.motion.skeleton import T2M_JOINT_NAMES

    assert T2M_JOINTS == tuple(T2M_JOINT_NAMES)
    mask = hml_lower_body_mask()
    assert mask.dtype == bool and mask.shape == (263,) and int(mask.sum()) == 4 + 8 * 3 + 8 * 6 + 9 * 3 + 4
    assert mask[:4].all() and mask[-4:].all()
    left_knee = T2M_JOINTS.index("left_knee")  # ric columns of joint j (1..21) start at 4 + 3 (j - 1)
    assert mask[4 + 3 * (left_knee - 1):4 + 3 * left_knee].all()
    head = T2M_JOINTS.index("head")
    assert not mask[4 + 63 + 6 * (head - 1):4 + 63 + 6 * head].any()
    with pytest.raises(DataError, match="unknown joints"):
        hml_lower_body_mask(("pelvis", "tail"))


def test_in_between_mask_generates_the_middle_of_each_sample():
    mask = in_between_mask([12, 9], 12, 0.25, 0.75)
    assert mask.shape == (2, 263, 1, 12) and mask.dtype == bool
    assert mask[0, 0, 0].tolist() == [True] * 3 + [False] * 6 + [True] * 3
    assert mask[1, 0, 0].tolist() == [True] * 2 + [False] * 4 + [True] * 6  # padding beyond 9 stays known
    assert (mask == mask[:, :1]).all()
    with pytest.raises(DataError, match="lengths"):
        in_between_mask([13], 12)


# ------------------------------------------------------------------------------------------ noise and layering


def test_draw_noise_keeps_the_existing_order():
    noise = draw_noise(5, 2, 3, 4, stochastic=True)
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(noise.initial, rng.standard_normal((2, 263, 1, 3), dtype=np.float32))
    np.testing.assert_array_equal(noise.steps, rng.standard_normal((4, 2, 263, 1, 3), dtype=np.float32))
    deterministic = draw_noise(5, 2, 3, 4, stochastic=False)
    assert deterministic.steps is None and np.array_equal(deterministic.initial, noise.initial)
    with pytest.raises(DataError, match="needs step noise"):
        deterministic.check_steps(4, True, "ddpm")


def test_core_imports_neither_torch_nor_upper_layers():
    code = ("import sys, kpop_helpers.sampling as s; s.SamplerSpec.parse('ddim10'); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('kpop_helpers.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = eval(done.stdout.strip())  # a printed list of module names
    assert "torch" not in loaded
    # Below the core: the shared error, numpy's filters (floor 0) and the feature layout (motion, numpy only).
    others = {m for m in loaded if not m.startswith("kpop_helpers.sampling")}
    assert "kpop_helpers.errors" in others and "kpop_helpers.motion.features" in others
    assert all(m in ("kpop_helpers.errors", "kpop_helpers.numeric") or m.startswith("kpop_helpers.motion")
               for m in others), others


def test_edge_config_sampling_is_read_by_the_one_spec_parser(tmp_path):
    from kpop_helpers.config import EdgeConfig

    good = json.loads((REPO_ROOT / "edge_config.json").read_text())
    path = tmp_path / "edge_config.json"
    for bad, field_name in (({"sampler": "ddmp"}, "sampling.sampler"), ({"steps": 1}, "sampling.steps"),
                            ({"eta": 2.0}, "sampling.eta")):
        config = json.loads(json.dumps(good))
        config.setdefault("sampling", {}).update(bad)
        path.write_text(json.dumps(config))
        with pytest.raises(DataError) as caught:
            EdgeConfig.load(path)
        assert str(path) in str(caught.value) and field_name in str(caught.value)
