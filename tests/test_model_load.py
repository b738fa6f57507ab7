"""load_mdm: official checkpoint formats (raw, EMA dict, with CLIP and pe keys), our safetensors, bad files."""

from __future__ import annotations

import json
import logging
import pickle
from collections import OrderedDict

import pytest
import torch

from conftest import fixture_family
from kpop_helpers.data import DataError
from kpop_helpers.model import (
    MDM,
    PE_KEYS,
    MDMConfig,
    get_preset,
    load_clip_text_state,
    load_mdm,
    save_mdm,
)

# An official-style small run: the args.json fields of the 2022 parser, plus sizes small enough for CPU tests.
ARGS = {"arch": "trans_enc", "dataset": "humanml", "latent_dim": 32, "layers": 1, "cond_mask_prob": 0.1,
        "emb_trans_dec": False, "noise_schedule": "cosine", "diffusion_steps": 1000}
CFG = MDMConfig.from_mdm_args(ARGS)  # ff_size 1024 and 4 heads: hard-coded by the official get_model_args
_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def _model(seed: int) -> MDM:
    torch.manual_seed(seed)
    return MDM(CFG).eval()


def _official_state(model: MDM) -> OrderedDict:
    """model.state_dict() as the reference saves it: with both (shared) pe tables."""
    sd = OrderedDict(model.state_dict())
    sd[PE_KEYS[0]] = model.sequence_pos_encoder.pe
    sd[PE_KEYS[1]] = model.sequence_pos_encoder.pe
    return sd


def _inputs():
    torch.manual_seed(5)
    return torch.randn(2, 263, 1, 9), torch.tensor([0, 999]), torch.randn(2, 512)


def _same_outputs(a: MDM, b: MDM) -> bool:
    x, t, e = _inputs()
    with torch.no_grad():
        return torch.equal(a.eval()(x, t, e), b.eval()(x, t, e))


def _clip_keys() -> list[dict]:
    folder, _ = fixture_family("mdm_model")
    return json.loads((folder / "clip_keys_vitb32.json").read_text())["keys"]


def _tiny_clip_state(keys: list[dict]) -> dict[str, torch.Tensor]:
    # Real names and dtypes of the released file, tiny tensors to keep the test fast.
    return {k["name"]: torch.full((2,), 0.5, dtype=_DTYPES[k["dtype"]]) for k in keys}


def test_raw_state_dict_with_pe_keys_and_args_json(tmp_path):
    model = _model(0)
    run = tmp_path / "humanml_run"
    run.mkdir()
    torch.save(_official_state(model), run / "model000475000.pt")
    (run / "args.json").write_text(json.dumps(ARGS))
    loaded = load_mdm(run / "model000475000.pt")
    assert loaded.cfg == CFG and not loaded.training
    assert _same_outputs(model, loaded)


@pytest.mark.reference
def test_released_layout_with_clip_model_keys(tmp_path):
    model = _model(1)
    keys = _clip_keys()
    assert len(keys) == 302
    sd = _official_state(model)
    sd.update(_tiny_clip_state(keys))  # the 2022 code saved CLIP after embed_text
    path = tmp_path / "model.pt"
    torch.save(sd, path)
    assert _same_outputs(model, load_mdm(path, args_json=ARGS))

    text = load_clip_text_state(path)
    folder, _ = fixture_family("mdm_model")
    prefixes = json.loads((folder / "clip_keys_vitb32.json").read_text())["text_tower_prefixes"]
    expected = {k["name"][len("clip_model."):] for k in keys if k["name"].startswith(tuple(prefixes))}
    assert set(text) == expected and not any(k.startswith("visual.") for k in text)
    assert text["text_projection"].dtype == torch.float16  # raw dtype; the encoder up-casts


def test_ema_dict_selection(tmp_path):
    raw, avg = _model(2), _model(3)
    path = tmp_path / "model000750000.pt"
    torch.save({"model": _official_state(raw), "model_avg": _official_state(avg)}, path)
    assert _same_outputs(avg, load_mdm(path, args_json=ARGS, use_ema=True))
    assert _same_outputs(raw, load_mdm(path, args_json=ARGS, use_ema=False))
    assert _same_outputs(avg, load_mdm(path, args_json=ARGS))  # default: the averaged weights
    assert _same_outputs(raw, load_mdm(path, args_json=dict(ARGS, use_ema=False)))  # the run's own choice


def test_wrapper_prefixes_and_fp16_weights(tmp_path):
    model = _model(4)
    sd = {("module._orig_mod." if i % 2 else "_orig_mod.") + k: v for i, (k, v) in enumerate(model.state_dict().items())}
    torch.save(sd, tmp_path / "compiled.pt")
    assert _same_outputs(model, load_mdm(tmp_path / "compiled.pt", config=CFG))

    half = {k: v.half() for k, v in model.state_dict().items()}
    torch.save(half, tmp_path / "half.pt")
    loaded = load_mdm(tmp_path / "half.pt", config=CFG)
    assert loaded.embed_text.weight.dtype == torch.float32
    assert torch.equal(loaded.embed_text.weight, model.embed_text.weight.half().float())


def test_safetensors_round_trip_keeps_config_and_encoder(tmp_path):
    torch.manual_seed(6)
    model = MDM(get_preset("tiny")).eval()
    path = save_mdm(model, tmp_path / "weights.safetensors")
    sidecar = json.loads((tmp_path / "weights.json").read_text())  # written by checkpoints.export_weights
    assert sidecar["config"] == model.cfg.to_dict()
    loaded = load_mdm(path)
    assert loaded.cfg == model.cfg and loaded.text_encoder_name == "minilm"
    x, t, e = torch.randn(1, 263, 1, 7), torch.tensor([3]), torch.randn(1, 384)
    with torch.no_grad():
        assert torch.equal(model(x, t, e), loaded(x, t, e))
    # No pe table in our files: the weights file stays small.
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        assert not any("sequence_pos_encoder" in k for k in fh.keys())


def test_safetensors_round_trip_keeps_stats(tmp_path):
    stats_mod = pytest.importorskip("kpop_helpers.motion.stats")
    import numpy as np

    model = MDM(get_preset("tiny")).eval()
    model.stats = stats_mod.MotionStats(mean=np.arange(263, dtype=np.float32), std=np.full(263, 2.0, np.float32))
    loaded = load_mdm(save_mdm(model, tmp_path / "w.safetensors"))
    assert np.array_equal(np.asarray(loaded.stats.mean), np.arange(263, dtype=np.float32))
    assert np.array_equal(np.asarray(loaded.stats.std), np.full(263, 2.0, np.float32))


def test_config_inferred_from_shapes_without_any_config(tmp_path, caplog):
    model = _model(7)
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with caplog.at_level(logging.WARNING):
        loaded = load_mdm(tmp_path / "bare.pt")
    assert "inferring" in caplog.text
    assert (loaded.cfg.latent_dim, loaded.cfg.num_layers, loaded.cfg.ff_size) == (32, 1, 1024)
    assert _same_outputs(model, loaded)


def test_wrong_names_list_missing_and_unexpected(tmp_path):
    torch.save({"encoder.weight": torch.randn(4, 4), "decoder.bias": torch.randn(4)}, tmp_path / "other.pt")
    with pytest.raises(DataError) as info:
        load_mdm(tmp_path / "other.pt", config=CFG)
    text = str(info.value)
    assert "other.pt" in text and "missing keys" in text and "unexpected keys" in text
    assert "input_process.poseEmbedding.weight" in text and "encoder.weight" in text


def test_shape_mismatch_is_reported(tmp_path):
    torch.save(_model(8).state_dict(), tmp_path / "small.pt")
    with pytest.raises(DataError, match="shape mismatches.*input_process.poseEmbedding.weight"):
        load_mdm(tmp_path / "small.pt", config=MDMConfig.from_mdm_args(dict(ARGS, latent_dim=64)))


def test_truncated_file_is_reported(tmp_path):
    torch.save(_model(9).state_dict(), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.pt.*truncated or corrupt"):
        load_mdm(tmp_path / "cut.pt", config=CFG)


class _Opaque:
    def __init__(self):
        self.weights = [1, 2, 3]


def test_pickled_objects_are_refused(tmp_path):
    with open(tmp_path / "obj.pt", "wb") as fh:
        pickle.dump(_Opaque(), fh)
    with pytest.raises(DataError, match="obj.pt.*weights-only"):
        load_mdm(tmp_path / "obj.pt", config=CFG)
    torch.save({"model": _Opaque()}, tmp_path / "obj2.pt")
    with pytest.raises(DataError, match="weights-only"):
        load_mdm(tmp_path / "obj2.pt", config=CFG)


def test_other_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_mdm(tmp_path / "absent.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(DataError, match="Tensor"):
        load_mdm(tmp_path / "tensor.pt", config=CFG)
    torch.save({"step": torch.tensor(3), "optimizer": {"lr": 1.0}}, tmp_path / "noweights.pt")
    with pytest.raises(DataError, match="no weights found|non-tensor"):
        load_mdm(tmp_path / "noweights.pt", config=CFG)
    torch.save(_model(10).state_dict(), tmp_path / "m.pt")
    with pytest.raises(DataError, match="arch"):
        load_mdm(tmp_path / "m.pt", args_json=dict(ARGS, arch="gru"))
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(DataError, match="safetensors"):
        load_mdm(tmp_path / "bad.safetensors")


def test_clip_state_absent_gives_empty_dict(tmp_path):
    torch.save(_model(11).state_dict(), tmp_path / "m.pt")
    assert load_clip_text_state(tmp_path / "m.pt") == {}


def test_reads_the_checkpoint_managers_weight_export(tmp_path):
    state = pytest.importorskip("kpop_helpers.checkpoints.state")
    import numpy as np

    model = MDM(get_preset("tiny")).eval()
    path = state.export_weights(model, tmp_path / "export.safetensors", model.cfg.to_dict(),
                                mean=np.zeros(263, np.float32), std=np.ones(263, np.float32))
    loaded = load_mdm(path)
    assert loaded.cfg == model.cfg
    x, t, e = torch.randn(1, 263, 1, 5), torch.tensor([2]), torch.randn(1, 384)
    with torch.no_grad():
        assert torch.equal(model(x, t, e), loaded(x, t, e))
    assert loaded.stats is not None and np.array_equal(np.asarray(loaded.stats.std), np.ones(263, np.float32))
