"""MDM denoiser: golden fixtures of the reference forward pass, state_dict layout, config and export."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from conftest import fixture_cases, fixture_family
from kpop_helpers.data import DataError
from kpop_helpers.model import MDM, PE_KEYS, PRESETS, MDMConfig, get_preset, load_mdm, set_text_encoder, sinusoid_table

FAMILY = "mdm_model"


def _family(case):
    """(folder, cases.json); skips when the family is absent or lists no case."""
    folder, spec = fixture_family(FAMILY)
    if case is None:
        pytest.skip(f"{FAMILY}/cases.json lists no case")
    return folder, spec


def _case_io(folder, case):
    data = np.load(folder / case["file"], allow_pickle=False)
    return {k: torch.from_numpy(data[k]) for k in ("x", "timesteps", "text_emb", "out_cond", "out_uncond")}


def _case_model(folder, case, **overrides) -> MDM:
    cfg = MDMConfig.from_mdm_args(case["config"], source=case["name"])
    if overrides:
        cfg = MDMConfig.from_dict({**cfg.to_dict(), **overrides})
    return load_mdm(folder / case["state_dict"], config=cfg)


@pytest.mark.reference
@pytest.mark.parametrize("case", fixture_cases(FAMILY) or [None], ids=lambda c: c["name"] if c else "absent")
def test_forward_matches_reference(case):
    folder, spec = _family(case)
    model = _case_model(folder, case)
    io = _case_io(folder, case)
    batch = io["x"].shape[0]
    assert model.training is False
    with torch.no_grad():
        out_cond = model(io["x"], io["timesteps"], io["text_emb"])
        out_uncond = model(io["x"], io["timesteps"], io["text_emb"], torch.ones(batch, dtype=torch.bool))
    for name, out in (("out_cond", out_cond), ("out_uncond", out_uncond)):
        assert out.shape == io[name].shape
        err = (out - io[name]).abs().max().item()
        print(f"{case['name']} {name} max abs err {err:.3e}")
        assert err <= spec["tolerance"][name]["max_abs"], f"{case['name']} {name}: {err}"


@pytest.mark.reference
@pytest.mark.parametrize("case", fixture_cases(FAMILY) or [None], ids=lambda c: c["name"] if c else "absent")
def test_per_row_mixed_conditioning(case):
    folder, spec = _family(case)
    model = _case_model(folder, case)
    io = _case_io(folder, case)
    batch = io["x"].shape[0]
    # Both patterns, so a batch of 1 still checks a masked and an unmasked row.
    for pattern in (torch.arange(batch) % 2 == 0, torch.arange(batch) % 2 == 1):
        with torch.no_grad():
            out = model(io["x"], io["timesteps"], io["text_emb"], pattern)
        expected = torch.where(pattern.view(-1, 1, 1, 1), io["out_uncond"], io["out_cond"])
        tol = min(spec["tolerance"]["out_cond"]["max_abs"], spec["tolerance"]["out_uncond"]["max_abs"])
        assert (out - expected).abs().max().item() <= tol


@pytest.mark.reference
@pytest.mark.parametrize("case", fixture_cases(FAMILY) or [None], ids=lambda c: c["name"] if c else "absent")
def test_train_mode_condition_dropout_matches_reference_draw(case):
    folder, spec = _family(case)
    io = _case_io(folder, case)
    batch = io["x"].shape[0]
    tol = spec["tolerance"]["out_cond"]["max_abs"]
    for prob, seed in ((0.5, 3), (1.0, 4), (0.5, 11)):
        # Dropout off isolates the condition draw; the reference draws bernoulli(ones(B)*p) first.
        model = _case_model(folder, case, dropout=0.0, cond_mask_prob=prob).train()
        torch.manual_seed(seed)
        drawn = torch.bernoulli(torch.ones(batch) * prob).bool()
        torch.manual_seed(seed)
        out = model(io["x"], io["timesteps"], io["text_emb"]).detach()
        expected = torch.where(drawn.view(-1, 1, 1, 1), io["out_uncond"], io["out_cond"])
        assert (out - expected).abs().max().item() <= tol
    # An explicit uncond replaces the draw: the global generator is left untouched.
    state = torch.get_rng_state()
    model(io["x"], io["timesteps"], io["text_emb"], torch.zeros(batch, dtype=torch.bool))
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.reference
def test_official_preset_layout_matches_keys_file():
    folder, spec = fixture_family(FAMILY)
    import json

    keys = json.loads((folder / spec["keys_file"]).read_text())
    model = MDM(PRESETS["humanml_trans_enc_512"])
    expected = [(k["name"], k["shape"]) for k in keys["keys"] if not k.get("positional_encoding_buffer")]
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == expected
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())
    assert model.num_parameters() == keys["num_parameters"]
    # The pe buffers exist (non-persistent), shared, with the file's shape.
    pe_specs = {k["name"]: k["shape"] for k in keys["keys"] if k.get("positional_encoding_buffer")}
    assert set(pe_specs) == set(PE_KEYS)
    buffers = dict(model.named_buffers(remove_duplicate=False))
    for name, shape in pe_specs.items():
        assert list(buffers[name].shape) == shape
    assert model.sequence_pos_encoder.pe is model.embed_timestep.sequence_pos_encoder.pe


@pytest.mark.reference
@pytest.mark.parametrize("case", fixture_cases(FAMILY) or [None], ids=lambda c: c["name"] if c else "absent")
def test_recomputed_pe_equals_stored_table(case):
    folder, _ = _family(case)
    stored = torch.load(folder / case["state_dict"], weights_only=True)
    for key in PE_KEYS:
        table = sinusoid_table(stored[key].shape[0], stored[key].shape[2])
        assert torch.equal(table, stored[key])


def test_sinusoid_table_formula():
    table = sinusoid_table(1000, 64)
    p, i = 321, 5
    omega = math.exp(2 * i * -math.log(10000.0) / 64)
    assert table.shape == (1000, 1, 64)
    assert table[p, 0, 2 * i].item() == pytest.approx(math.sin(p * omega), abs=1e-4)
    assert table[p, 0, 2 * i + 1].item() == pytest.approx(math.cos(p * omega), abs=1e-4)


def test_config_validation_and_round_trip():
    cfg = get_preset("small", cond_mask_prob=0.2)
    assert MDMConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"latent_dim": 63, "num_heads": 1}, {"latent_dim": 64, "num_heads": 3}, {"diffusion_steps": 6000},
                {"dropout": 1.5}, {"activation": "swish"}, {"num_layers": 0}):
        with pytest.raises(DataError):
            MDMConfig(**bad)
    with pytest.raises(DataError, match="unknown MDMConfig fields"):
        MDMConfig.from_dict({"latent_dim": 64, "layers": 2})
    with pytest.raises(DataError):
        get_preset("huge")


def test_from_mdm_args_official_runs():
    # The 2022 args.json predates most options: every missing one takes the parser default.
    args_2022 = {"arch": "trans_enc", "latent_dim": 512, "layers": 8, "cond_mask_prob": 0.1, "dataset": "humanml",
                 "emb_trans_dec": False, "noise_schedule": "cosine", "sigma_small": True, "lambda_vel": 0.0}
    assert MDMConfig.from_mdm_args(args_2022) == PRESETS["humanml_trans_enc_512"]
    args_50 = dict(args_2022, diffusion_steps=50, mask_frames=True, use_ema=True, text_encoder_type="clip")
    assert MDMConfig.from_mdm_args(args_50) == PRESETS["humanml_enc_512_50steps"]
    assert MDMConfig.from_mdm_args(dict(args_2022, dataset="kit")).njoints == 251
    for field, value in (("arch", "trans_dec"), ("text_encoder_type", "bert"), ("emb_policy", "concat"),
                         ("context_len", 20), ("dataset", "humanact12"), ("unconstrained", True)):
        with pytest.raises(DataError, match=field.split("_")[0]):
            MDMConfig.from_mdm_args(dict(args_2022, **{field: value}))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_run(name):
    torch.manual_seed(0)
    model = MDM(PRESETS[name]).eval()
    assert model.num_parameters() > 0
    frames = 12
    x = torch.randn(2, model.cfg.njoints, model.cfg.nfeats, frames)
    with torch.no_grad():
        out = model(x, torch.tensor([0, model.cfg.diffusion_steps - 1]), torch.randn(2, model.cfg.text_dim))
    assert out.shape == x.shape and torch.isfinite(out).all()
    if name != "humanml_trans_enc_512":
        assert model.num_parameters() <= MDM(PRESETS["humanml_trans_enc_512"]).num_parameters()


def _tiny(**overrides) -> MDM:
    torch.manual_seed(1)
    return MDM(get_preset("tiny", text_encoder="clip", text_dim=512, **overrides)).eval()


def test_rows_are_independent_in_eval():
    model = _tiny()
    x, t, e = torch.randn(3, 263, 1, 10), torch.tensor([5, 500, 49 - 1]), torch.randn(3, 512)
    with torch.no_grad():
        together = model(x, t, e, torch.tensor([False, True, False]))
        alone = model(x[1:2], t[1:2], e[1:2], torch.tensor([True]))
    assert torch.allclose(together[1:2], alone, atol=1e-6)
    with torch.no_grad():
        assert torch.equal(model(x, t, e, True), model(x, t, e, torch.ones(3, dtype=torch.bool)))


def test_frame_mask_hides_padding_only_when_enabled():
    x, t, e = torch.randn(2, 263, 1, 16), torch.tensor([3, 7]), torch.randn(2, 512)
    valid = torch.arange(16).unsqueeze(0) < torch.tensor([[10], [16]])
    x2 = x.clone()
    x2[0, :, :, 10:] = 5.0  # change only the padded frames of row 0
    masked, unmasked = _tiny(mask_frames=True), _tiny(mask_frames=False)
    with torch.no_grad():
        a, b = masked(x, t, e, None, valid), masked(x2, t, e, None, valid)
        c, d = unmasked(x, t, e, None, valid), unmasked(x2, t, e, None, valid)
    assert torch.allclose(a[0, ..., :10], b[0, ..., :10], atol=1e-5)
    assert torch.allclose(a[1], b[1], atol=1e-6)
    # The released model ignores the mask (reference quirk): padding leaks into valid frames.
    assert (c[0, ..., :10] - d[0, ..., :10]).abs().max() > 1e-3


def test_forward_rejects_wrong_shapes():
    model = _tiny()
    with pytest.raises(DataError, match="x"):
        model(torch.randn(2, 250, 1, 8), torch.tensor([1, 2]), torch.randn(2, 512))
    with pytest.raises(DataError, match="text_emb"):
        model(torch.randn(2, 263, 1, 8), torch.tensor([1, 2]), torch.randn(2, 384))


def test_switching_text_encoder_reinitialises_projection(caplog):
    class FakeMiniLM:  # only name/dim matter to set_text_encoder
        name, dim = "minilm", 384

    model = _tiny()
    before = model.embed_text.weight.detach().clone()
    set_text_encoder(model, type("SameClip", (), {"name": "clip", "dim": 512})())
    assert torch.equal(model.embed_text.weight, before)
    with caplog.at_level(logging.WARNING, logger="kpop_helpers.model.mdm"):
        set_text_encoder(model, FakeMiniLM())
    assert "re-initialised" in caplog.text and "384" in caplog.text
    assert model.embed_text.weight.shape == (64, 384)
    assert model.cfg.text_dim == 384 and model.text_encoder_name == "minilm" and model.cfg.text_encoder == "minilm"
    preset_model = MDM(PRESETS["tiny"])
    set_text_encoder(preset_model, type("Clip", (), {"name": "clip", "dim": 512})())
    assert preset_model.cfg.text_dim == 512 and PRESETS["tiny"].text_dim == 384  # the preset is not edited
    assert "embed_text.weight" in model.state_dict() and "stats" not in str(list(model.state_dict()))
    with torch.no_grad():
        out = model(torch.randn(1, 263, 1, 6), torch.tensor([4]), torch.randn(1, 384))
    assert out.shape == (1, 263, 1, 6)


def test_onnx_export_with_dynamic_batch_and_frames(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = _tiny()
    args = (torch.randn(2, 263, 1, 20), torch.tensor([1, 40]), torch.randn(2, 512), torch.tensor([False, True]))
    batch = torch.export.Dim("batch", min=1, max=64)
    frames = torch.export.Dim("frames", min=2, max=196)
    shapes = {"x": {0: batch, 3: frames}, "timesteps": {0: batch}, "text_emb": {0: batch}, "uncond": {0: batch}}
    path = tmp_path / "mdm.onnx"
    torch.onnx.export(model, args, str(path), dynamo=True, dynamic_shapes=shapes)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, t, e, u = torch.randn(3, 263, 1, 33), torch.tensor([0, 7, 49]), torch.randn(3, 512), torch.tensor([1, 0, 1]).bool()
    (out,) = session.run(None, {"x": x.numpy(), "timesteps": t.numpy(), "text_emb": e.numpy(), "uncond": u.numpy()})
    with torch.no_grad():
        expected = model(x, t, e, u).numpy()
    assert np.abs(out - expected).max() < 1e-4
