"""MDM Gaussian diffusion: golden fixtures from the reference, plus behaviour the fixtures do not pin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kpop_helpers.diffusion import (
    GaussianDiffusion,
    cfg_model_fn,
    get_named_beta_schedule,
    guided_combine,
    lengths_to_mask,
    space_timesteps,
)
from tests.conftest import fixture_cases, fixture_family

FAMILY = "mdm_diffusion"
SCHEDULE_KEYS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2",
)


def _close(actual, expected, tol: dict, what: str) -> None:
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"], err_msg=what)


def _exact(actual, expected, what: str) -> None:
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    np.testing.assert_array_equal(actual, np.asarray(expected), err_msg=what)


def _diffusion(case: dict) -> GaussianDiffusion:
    diffusion = GaussianDiffusion(case["T"], "cosine", case.get("spec"))
    if "num_steps" in case:
        assert diffusion.num_steps == case["num_steps"]
    return diffusion


def _t(array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def _replay(output: torch.Tensor):
    """A model_fn that returns a stored output and records what the diffusion fed it."""
    seen: dict[str, torch.Tensor] = {}

    def model_fn(x, model_t):
        seen["x"], seen["model_t"] = x, model_t
        return output

    return model_fn, seen


def check_schedule(case, data, tol):
    diffusion = _diffusion(case)
    _close(get_named_beta_schedule("cosine", case["T"]), data["betas_named"], tol, "betas_named")
    for key in SCHEDULE_KEYS:
        _close(getattr(diffusion, key), data[key], tol, key)
    _exact(diffusion.timestep_map, data["timestep_map"], "timestep_map")


def check_respaced(case, data, tol):
    diffusion = _diffusion(case)
    _exact(space_timesteps(case["T"], case["spec"]), data["use_timesteps"], "use_timesteps")
    _exact(diffusion.use_timesteps, data["use_timesteps"], "use_timesteps")
    _exact(diffusion.timestep_map, data["timestep_map"], "timestep_map")
    _close(diffusion.base_alphas_cumprod, data["base_alphas_cumprod"], tol, "base_alphas_cumprod")
    for key in SCHEDULE_KEYS:
        _close(getattr(diffusion, key), data[key], tol, key)


def check_training_loss(case, data, tol):
    diffusion = _diffusion(case)
    x_start, lengths = _t(data["x_start"]), _t(data["lengths"])
    model_fn, seen = _replay(_t(data["model_output"]))
    _exact(lengths_to_mask(lengths, x_start.shape[-1]), data["mask"], "mask")
    loss = diffusion.training_loss(model_fn, x_start, _t(data["t"]), noise=_t(data["noise"]), lengths=lengths)
    _close(seen["x"], data["x_t"], tol, "x_t")
    _exact(seen["model_t"], data["model_t"], "model_t")
    _close(loss, data["rot_mse"], tol, "rot_mse")
    _close(loss, data["loss"], tol, "loss")
    _close(loss.mean(), data["loss_mean"], tol, "loss_mean")
    mask_loss = diffusion.training_loss(model_fn, x_start, _t(data["t"]), _t(data["mask"]), _t(data["noise"]))
    _close(mask_loss, data["loss"], tol, "loss (mask given)")


def check_p_sample(case, data, tol):
    diffusion = _diffusion(case)
    for k in range(data["t"].shape[0]):
        model_fn, _ = _replay(_t(data["model_output"][k]))
        out = diffusion.p_sample(model_fn, _t(data["x_t"][k]), _t(data["t"][k]), _t(data["noise"][k]))
        _exact(out.model_t, data["model_t"][k], f"step {k} model_t")
        for key in ("pred_xstart", "mean", "sample", "variance", "log_variance"):
            _close(getattr(out, key), data[key][k], tol, f"step {k} {key}")


def check_ddim_step(case, data, tol):
    diffusion = _diffusion(case)
    for k in range(data["t"].shape[0]):
        model_fn, _ = _replay(_t(data["model_output"][k]))
        out = diffusion.ddim_sample(model_fn, _t(data["x_t"][k]), _t(data["t"][k]), case["eta"],
                                    _t(data["noise"][k]))
        _exact(out.model_t, data["model_t"][k], f"step {k} model_t")
        for key in ("pred_xstart", "eps", "sample"):
            _close(getattr(out, key), data[key][k], tol, f"step {k} {key}")


def check_cfg(case, data, tol):
    out_cond, out_uncond, scale = _t(data["out_cond"]), _t(data["out_uncond"]), _t(data["scale"])
    _close(guided_combine(out_cond, out_uncond, scale), data["guided"], tol, "guided")
    batch = out_cond.shape[0]

    # A stand-in network whose row r answers with the stored output of the row its embedding names,
    # so the test also checks how cfg_model_fn batches, splits and recombines the 2B rows.
    def network(x, timesteps, text_emb, uncond):
        row = text_emb[:, 0].long()
        return torch.where(uncond[:, None, None, None], out_uncond[row], out_cond[row])

    model_fn = cfg_model_fn(network, torch.arange(batch, dtype=torch.float32)[:, None], scale)
    guided = model_fn(torch.zeros_like(out_cond), torch.zeros(batch, dtype=torch.int64))
    _close(guided, data["guided"], tol, "guided via cfg_model_fn")


def toy_denoiser(record: list):
    """The README's deterministic stand-in for MDM (§3.11), recording the timesteps it receives."""

    def network(x, timesteps, text_emb, uncond):
        record.append(timesteps.clone())
        m = timesteps.to(torch.float32)
        g = (1.0 / (1.0 + m / 10.0))[:, None, None, None]
        j = torch.arange(x.shape[1], dtype=torch.float32)[None, :, None, None]
        f = torch.arange(x.shape[-1], dtype=torch.float32)[None, None, None, :]
        cond = 0.8 * torch.tanh(x) + 0.3 * g * torch.sin(0.05 * j + 0.4 * f)
        free = 0.5 * torch.tanh(x) - 0.2 * g * torch.cos(0.03 * j + 0.2 * f)
        return torch.where(uncond[:, None, None, None], free, cond) if uncond is not None else cond

    return network


def check_loop(case, data, tol):
    diffusion = _diffusion(case)
    record: list[torch.Tensor] = []
    init = _t(data["init_noise"])
    model_fn = cfg_model_fn(toy_denoiser(record), torch.zeros(init.shape[0], 4), case["guidance_scale"])
    steps = list(diffusion.sample_loop_progressive(
        model_fn, sampler=case["sampler"], eta=case.get("eta", 0.0), noise=init,
        step_noise=_t(data["step_noise"]), progress=False))
    _exact(torch.stack([s.t for s in steps]), data["t_index"], "t_index")
    _exact(torch.stack([s.model_t for s in steps]), data["model_t"], "model_t")
    for k, received in enumerate(record):  # every pass, conditioned or not, sees timestep_map[t]
        _exact(received, np.resize(data["model_t"][k], received.shape[0]), f"step {k} network timesteps")
    _close(steps[0].sample, data["first_sample"], tol, "first_sample")
    _close(steps[-1].sample, data["sample"], tol, "sample")


CHECKS = {
    "schedule": check_schedule,
    "respaced": check_respaced,
    "training_loss": check_training_loss,
    "p_sample": check_p_sample,
    "ddim_step": check_ddim_step,
    "cfg": check_cfg,
    "loop": check_loop,
}


@pytest.mark.reference
@pytest.mark.parametrize("case", fixture_cases(FAMILY) or [None],
                         ids=lambda c: c["name"] if c else "no-cases")
def test_reference_case(case):
    folder, cases_json = fixture_family(FAMILY)
    if case is None:
        pytest.skip(f"{folder}/cases.json lists no cases")
    if case["kind"] not in CHECKS:
        pytest.fail(f"case {case['name']}: unknown kind {case['kind']!r} (known: {sorted(CHECKS)})")
    with np.load(folder / case["file"], allow_pickle=False) as npz:
        data = {key: npz[key] for key in npz.files}
    CHECKS[case["kind"]](case, data, cases_json["tolerance"][case["kind"]])


# ---- behaviour not covered by the fixtures ------------------------------------------------------


def test_respacing_errors_are_clear():
    with pytest.raises(ValueError, match="integer stride"):
        space_timesteps(1000, "ddim1")
    with pytest.raises(ValueError, match="cannot divide section of 3 steps into 5"):
        space_timesteps(3, [5])
    with pytest.raises(ValueError, match="not understood"):
        space_timesteps(100, "ddimx")
    with pytest.raises(ValueError, match="at least 2 steps"):
        GaussianDiffusion(100, respacing=[1])
    with pytest.raises(ValueError, match="unknown noise schedule"):
        GaussianDiffusion(100, schedule="sigmoid")


def test_full_respacing_is_identity_and_string_lists_match_lists():
    assert space_timesteps(37, "ddim37") == list(range(37))
    assert space_timesteps(37, None) == list(range(37))
    assert space_timesteps(37, "") == list(range(37))
    assert space_timesteps(50, "4,1,3") == space_timesteps(50, [4, 1, 3])
    assert space_timesteps(100, 10) == space_timesteps(100, [10]) == space_timesteps(100, "10")
    plain, spaced = GaussianDiffusion(60), GaussianDiffusion(60, respacing=[60])
    np.testing.assert_allclose(spaced.alphas_cumprod, plain.alphas_cumprod, rtol=0, atol=0)


def test_respaced_alphas_follow_the_base_schedule():
    diffusion = GaussianDiffusion(200, "linear", respacing=[7, 3])
    np.testing.assert_allclose(diffusion.alphas_cumprod, diffusion.base_alphas_cumprod[diffusion.timestep_map],
                               rtol=1e-12)
    assert diffusion.timestep_map[-1] == 199 and diffusion.num_steps == 10


def _toy_model_fn():
    return cfg_model_fn(toy_denoiser([]), torch.zeros(2, 4), 2.5)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_seeded_loops_are_deterministic_and_use_documented_noise_order(sampler):
    diffusion = GaussianDiffusion(30, respacing=[6])
    shape = (2, 263, 1, 5)
    eta = 0.5 if sampler == "ddim" else 0.0
    run = (lambda **kw: diffusion.p_sample_loop(_toy_model_fn(), shape, progress=False, **kw)) \
        if sampler == "ddpm" else \
        (lambda **kw: diffusion.ddim_sample_loop(_toy_model_fn(), shape, eta=eta, progress=False, **kw))
    first, again, other = run(seed=3), run(seed=3), run(seed=4)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    # Seeded noise = initial noise then one draw per step, from a CPU generator seeded the same way.
    gen = torch.Generator().manual_seed(3)
    init = torch.randn(shape, generator=gen)
    steps = torch.stack([torch.randn(shape, generator=gen) for _ in range(diffusion.num_steps)])
    assert torch.equal(first, run(noise=init, step_noise=steps))


def test_last_ddpm_step_returns_the_x0_prediction():
    diffusion = GaussianDiffusion(1000)
    x, x0 = torch.randn(2, 263, 1, 4), torch.randn(2, 263, 1, 4)
    out = diffusion.p_sample(lambda x_t, m: x0, x, 0, torch.randn_like(x))
    torch.testing.assert_close(out.sample, x0, rtol=1e-6, atol=1e-6)
    ddim = diffusion.ddim_sample(lambda x_t, m: x0, x, 0, eta=0.7)
    torch.testing.assert_close(ddim.sample, x0, rtol=1e-6, atol=1e-6)


def test_training_loss_ignores_padding_and_backpropagates():
    diffusion = GaussianDiffusion(50)
    x0, noise = torch.randn(3, 263, 1, 6), torch.randn(3, 263, 1, 6)
    weight = torch.ones((), requires_grad=True)
    lengths = torch.tensor([6, 2, 0])
    t = torch.tensor([0, 10, 49])

    def model_fn(x_t, model_t):
        return weight * x_t + torch.where(torch.arange(6) >= 2, 100.0, 0.0)  # garbage in frames 2..5

    loss = diffusion.training_loss(model_fn, x0, t, noise=noise, lengths=lengths)
    x_t = diffusion.q_sample(x0, t, noise)
    expected_row1 = ((x_t[1, ..., :2] - x0[1, ..., :2]) ** 2).mean()
    torch.testing.assert_close(loss[1], expected_row1, rtol=1e-5, atol=1e-6)
    assert loss.shape == (3,) and loss[2] == 0
    loss.mean().backward()
    assert weight.grad is not None and torch.isfinite(weight.grad) and weight.grad != 0


def test_bad_inputs_raise():
    diffusion = GaussianDiffusion(20)
    x = torch.randn(2, 263, 1, 3)
    with pytest.raises(ValueError, match=r"0\.\.19"):
        diffusion.q_sample(x, 20)
    with pytest.raises(ValueError, match="shape"):
        diffusion.p_sample(lambda x_t, m: x_t[:, :10], x, 5)
    with pytest.raises(ValueError, match="one tensor per step"):
        diffusion.p_sample_loop(lambda x_t, m: x_t, noise=x, step_noise=torch.zeros(3, *x.shape), progress=False)
    with pytest.raises(ValueError, match="guidance scale"):
        guided_combine(x, x, torch.ones(3))


def test_cfg_runs_one_doubled_batch_and_scale_one_skips_the_unconditioned_rows():
    batches: list[int] = []
    record: list[torch.Tensor] = []
    toy = toy_denoiser(record)

    def network(x, t, emb, uncond):
        batches.append(x.shape[0])
        return toy(x, t, emb, uncond)

    x, t = torch.randn(2, 263, 1, 4), torch.tensor([5, 7])
    guided = cfg_model_fn(network, torch.zeros(2, 4), torch.tensor([1.0, 0.0]))(x, t)
    cond = toy(x, t, None, torch.zeros(2, dtype=torch.bool))
    free = toy(x, t, None, torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(guided[0], cond[0])
    torch.testing.assert_close(guided[1], free[1])
    assert batches == [4]
    assert torch.equal(cfg_model_fn(network, torch.zeros(2, 4), 1.0)(x, t), cond)
    assert batches == [4, 2]
