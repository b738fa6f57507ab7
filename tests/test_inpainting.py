"""MDM's editing rule (known values in every step) against the mdm_inpainting golden fixtures, in both paths.

Every case of cases.json runs through the numpy path (the edge sampler loop) and the torch path
(GaussianDiffusion's loops); the masks are rebuilt from the case parameters and must match exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kpop_helpers.diffusion import GaussianDiffusion, cfg_model_fn
from kpop_helpers.edge import sample_loop
from kpop_helpers.sampling import (
    Constraint, DiffusionSchedule, SamplerSpec, SamplingNoise, hml_lower_body_mask, in_between_mask,
)
from tests.conftest import fixture_cases, fixture_family
from tests.test_diffusion import toy_denoiser
from tests.test_edge import _toy_denoiser as numpy_toy_denoiser

FAMILY = "mdm_inpainting"
KINDS = ("inpaint_loop",)
MODES = ("in_between", "upper_body", "free")

pytestmark = pytest.mark.reference


def _case_data(case: dict | None) -> tuple[dict, dict, dict]:
    """(case, its arrays, its tolerance); skips with a reason when the family or its cases are absent."""
    folder, cases_json = fixture_family(FAMILY)
    if case is None:
        pytest.skip(f"{folder}/cases.json lists no cases")
    kind = case["kind"]
    assert kind in KINDS, f"case {case['name']}: unknown kind {kind!r} (known: {list(KINDS)})"
    data = dict(np.load(folder / case["file"], allow_pickle=False))
    return case, data, cases_json["tolerance"][kind]


def _spec(case: dict) -> SamplerSpec:
    return SamplerSpec.parse(sampler=case["sampler"], guidance=case["guidance_scale"], eta=case.get("eta", 0.0))


def _close(actual: np.ndarray, expected: np.ndarray, tol: dict, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"], err_msg=what)


CASES = fixture_cases(FAMILY) or [None]
IDS = [c["name"] if c else "no-cases" for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_masks_are_rebuilt_exactly(case):
    case, data, _ = _case_data(case)
    mask, lengths = data["inpainting_mask"], data["lengths"]
    assert mask.dtype == np.bool_ and lengths.dtype == np.int64
    mode = case["mode"]
    if mode == "in_between":
        rebuilt = in_between_mask(lengths, mask.shape[-1], case["prefix_end"], case["suffix_start"])
        np.testing.assert_array_equal(rebuilt, mask)
    elif mode == "upper_body":
        columns = hml_lower_body_mask()
        np.testing.assert_array_equal(columns, data["hml_lower_body_mask"])
        np.testing.assert_array_equal(np.broadcast_to(columns[None, :, None, None], mask.shape), mask)
    elif mode != "free":  # a free mask is arbitrary stored data: nothing to rebuild
        pytest.fail(f"case {case['name']}: unknown mode {mode!r} (known: {list(MODES)})")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_numpy_path_reproduces_the_sample(case):
    case, data, tol = _case_data(case)
    spec = _spec(case)
    schedule = DiffusionSchedule(case["T"], "cosine", case["spec"])
    assert schedule.num_steps == case["num_steps"]
    init = data["init_noise"]
    sample = sample_loop(numpy_toy_denoiser([]), np.zeros((init.shape[0], 4), np.float32),
                         SamplingNoise(init, data["step_noise"]), schedule, sampler=spec.sampler,
                         guidance=spec.guidance, eta=spec.eta,
                         constraint=Constraint(data["inpainting_mask"], data["inpainted_motion"]))
    _close(sample, data["sample"], tol, f"{case['name']} numpy sample")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch_path_reproduces_the_sample(case, one_torch_thread):
    case, data, tol = _case_data(case)
    spec = _spec(case)
    diffusion = GaussianDiffusion(case["T"], "cosine", case["spec"])
    init = torch.from_numpy(data["init_noise"])
    model_fn = cfg_model_fn(toy_denoiser([]), torch.zeros(init.shape[0], 4), spec.guidance)
    constraint = Constraint(torch.from_numpy(data["inpainting_mask"]), torch.from_numpy(data["inpainted_motion"]))
    kwargs = dict(noise=init, step_noise=torch.from_numpy(data["step_noise"]), progress=False, constraint=constraint)
    if spec.sampler == "ddpm":
        sample = diffusion.p_sample_loop(model_fn, **kwargs)
    else:
        sample = diffusion.ddim_sample_loop(model_fn, eta=spec.eta, **kwargs)
    _close(sample.numpy(), data["sample"], tol, f"{case['name']} torch sample")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_constraint_changes_the_sample(case):
    """Guard against a constraint that is silently ignored: without it the fixtures' sample is not reached."""
    case, data, tol = _case_data(case)
    spec = _spec(case)
    init = data["init_noise"]
    free = sample_loop(numpy_toy_denoiser([]), np.zeros((init.shape[0], 4), np.float32),
                       SamplingNoise(init, data["step_noise"]), DiffusionSchedule(case["T"], "cosine", case["spec"]),
                       sampler=spec.sampler, guidance=spec.guidance, eta=spec.eta)
    assert np.abs(free - data["sample"]).max() > 100 * tol["atol"]
