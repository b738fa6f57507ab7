"""benchmarks/bench_editing.py end to end on the tiny export: every table written, bad arguments refused."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
import warnings

import pytest

from conftest import REPO_ROOT


@functools.cache
def _bench():
    """The benchmark script as a module (registered, so its dataclasses resolve their annotations)."""
    spec = importlib.util.spec_from_file_location("bench_editing", REPO_ROOT / "benchmarks" / "bench_editing.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_run(tiny_export, tmp_path_factory):
    """One --smoke run (with the PyTorch agreement rows) on the tiny export; (output folder, JSON)."""
    from kpop_helpers.data.io import save_npz
    from kpop_helpers.data.sample import generate_sample_clips
    from kpop_helpers.model import save_mdm

    model, export_dir = tiny_export
    tmp = tmp_path_factory.mktemp("bench_editing")
    weights = save_mdm(model, tmp / "model.safetensors")
    save_npz(tmp / "val.npz", generate_sample_clips(6, seed=3))  # lengths 116-191: five long enough to edit
    out = tmp / "results"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short smoke dances do not follow every timeline prompt
        code = _bench().main(["--export-dir", str(export_dir), "--model", str(weights), "--smoke", "--threads", "1",
                              "--seeds", "2", "--reference", str(tmp / "val.npz"), "--out", str(out)])
    assert code == 0
    return out, json.loads((out / "editing.json").read_text())


def test_smoke_run_writes_every_table(smoke_run):
    out, result = smoke_run
    for name in ("editing.json", "editing.md", "long_dance.gif", "seams.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert {"settings", "machine", "seams", "constraints", "body_parts", "long_dances", "agreement", "files",
            "section_s", "wall_s"} <= set(result)

    seams = result["seams"]
    settings = {(r["overlap"], r["blend"]) for r in seams["rows"]}
    assert (0, "any") in settings and (98, "first") in settings and len(settings) == 10
    for row in seams["rows"]:
        assert row["windows"] >= 2 and row["dances"] == 2
        assert row["jerk_ratio_median"] > 0 and row["jerk_ratio_p90"] <= row["jerk_ratio_max"]
        for key in ("skate_seam", "pfc_seam", "pfc_else", "root_jump_ratio", "facing_jump_ratio", "time_s"):
            assert key in row
    assert next(r for r in seams["rows"] if r["overlap"] == 0)["actual_overlap"] == 0  # back to back
    assert {"overlap", "blend", "windows", "jerk_ratio_median"} <= set(seams["best"])
    assert seams["best"]["blend"] in ("taper", "mean", "first")

    kinds = {r["kind"] for r in result["constraints"]}
    assert kinds == {"inbetween", "prefix", "lower", "upper", "continuation"}
    for row in result["constraints"]:
        # the known values are set exactly: the kept joints' root-local positions are float rounding
        assert row["local_max_mm"] < 1.0
        assert row["given_mean_mm"] <= row["given_max_mm"]
    synthetic = [r for r in result["constraints"] if r["source"] == "val" and r["kind"] in ("inbetween", "prefix")]
    assert synthetic and all(r["features_max_mm"] < 1.0 for r in synthetic)

    parts = {r["kind"]: r for r in result["body_parts"]}
    assert set(parts) == {"lower", "upper"}
    for row in parts.values():
        assert row["diversity_mm"] > 0 and row["fid_k"] is not None and row["dances"] % 2 == 0

    rows = result["long_dances"]["rows"]
    assert [(r["frames"], r["max_windows"]) for r in rows] == [(100, None), (392, None), (392, 1)]
    assert all(r["peak_rss_mib"] > 0 and r["total_s"] > 0 for r in rows)
    assert result["long_dances"]["fit"]["b_s_per_window"] is not None

    assert {(r["case"], r["variant"]) for r in result["agreement"]} >= {("timeline", "int8"), ("timeline", "fp32")}
    fp32 = [r for r in result["agreement"] if r["variant"] == "fp32"]
    assert all(r["max_mm"] < 5.0 for r in fp32)  # the same arithmetic in PyTorch and ONNX Runtime

    md = (out / "editing.md").read_text()
    assert md.startswith("# Editing and long dances") and "Chosen default: overlap" in md
    for heading in ("## Seams", "## Constraint error", "## Body-part edits", "## Long dances", "## PyTorch vs edge"):
        assert heading in md


@pytest.mark.parametrize("extra", [["--seeds", "0"], ["--threads", "0"], ["--variant", "fp16"],
                                   ["--reference", "missing.npz"]])
def test_bad_arguments_are_argparse_errors(tiny_export, extra):
    with pytest.raises(SystemExit) as info:
        _bench().main(["--export-dir", str(tiny_export[1]), *extra])
    assert info.value.code == 2


def test_export_dir_without_manifest_is_refused(tmp_path):
    with pytest.raises(SystemExit) as info:
        _bench().main(["--export-dir", str(tmp_path)])
    assert info.value.code == 2
