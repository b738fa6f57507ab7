"""The benchmark runner: the --smoke run end to end (real model, real export, real workers), resume, compare."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kpop_helpers.bench import ROW_FIELDS, BenchConfig, parse_sampler, row_key, speedup, target_check
from kpop_helpers.bench.protocol import StepNoise, draw_noise
from kpop_helpers.data.clip import DataError

REPO = Path(__file__).resolve().parents[1]
NUMERIC = [f for f in ROW_FIELDS if f not in ("variant", "runtime", "precision", "pruning", "sampler")]


def _bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "kpop_helpers.bench", *args, "--quiet"], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, dict]:
    """One --smoke run (random tiny model, its export, every variant in its own worker)."""
    out = tmp_path_factory.mktemp("bench") / "results"
    _bench("--smoke", "--out", str(out))
    return out, json.loads((out / "results.json").read_text())


def test_smoke_rows_have_every_field_with_sane_numbers(smoke):
    _, results = smoke
    rows = results["rows"]
    variants = {r["variant"] for r in rows}
    assert {"fp32_ddpm50", "fp32_ddim4", "ort_fp32_ddim4", "ort_int8_ddim4", "torchscript_ddim4"} <= variants
    for row in rows:
        assert row["error"] is None, row
        for field in ROW_FIELDS:
            assert field in row, (row["variant"], field)
        for field in NUMERIC:
            value = row[field]
            assert isinstance(value, (int, float)) and math.isfinite(value), (row["key"], field, value)
        assert row["step_ms_p50"] > 0 and row["step_ms_p95"] >= row["step_ms_p50"], row["key"]
        assert row["gen_time_s"] > 0 and row["load_time_s"] > 0 and row["peak_rss_mib"] > 10
        assert row["params"] > 1000 and row["file_size_mb"] > 0
        assert row["fidelity_mm"] >= 0 and row["pfc"] >= 0 and row["fid_k"] >= 0
        assert row["key"] == row_key(row)
    by_key = {r["key"]: r for r in rows}
    assert len(by_key) == len(rows) == len(variants) * 2  # batches 1 and 2 at one thread
    size = {r["variant"]: r["file_size_mb"] for r in rows}
    assert size["ort_int8_ddim4"] < size["ort_fp32_ddim4"] / 1.5
    for row in rows:
        if row["runtime"] == "torch" and row["precision"] == "fp32":
            # fp32 eager rows are their own fidelity reference: exactly 0
            assert row["fidelity_mm"] == 0 and row["fidelity_rel_rms"] == 0
        elif row["runtime"] in ("onnxruntime", "torchscript") and row["precision"] == "fp32":
            assert 0 <= row["fidelity_mm"] < 1.0  # same network, another runtime: float rounding at most
    assert by_key["ort_int8_ddim4|t1|b2"]["fidelity_mm"] > by_key["ort_fp32_ddim4|t1|b2"]["fidelity_mm"]
    # a guided step runs a batch of 2 and must not be cheaper than an unguided one by much
    reference = [r for r in rows if r["is_reference"]]
    assert {(r["steps"], r["sampler"]) for r in reference} == {(50, "ddpm")}


def test_smoke_protocol_and_outputs(smoke):
    out, results = smoke
    protocol = results["protocol"]
    for key in ("cpu", "libraries", "threads", "seed", "prompts", "frames", "num_samples", "loadavg_start",
                "loadavg_end", "reference_data", "model_sha256", "noise", "procedure"):
        assert key in protocol, key
    assert protocol["cpu"]["logical_cores"] >= 1 and protocol["libraries"]["torch"]
    assert protocol["num_samples"] == len(protocol["prompts"]) == 3
    csv_lines = (out / "results.csv").read_text().strip().splitlines()
    assert csv_lines[0].split(",")[:len(ROW_FIELDS)] == list(ROW_FIELDS)
    assert len(csv_lines) == len(results["rows"]) + 1
    table = (out / "results.md").read_text()
    assert "speed-up" in table and all(r["variant"] in table for r in results["rows"])
    for png in ("pareto.png", "latency.png", "sizes.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # Every variant read the same noise file; the samples of a variant exist for quality and fidelity.
    work = out / ".work"
    assert (work / ".gitignore").read_text().strip() == "*"
    with np.load(work / "inputs.npz") as inputs:
        assert inputs["initial_noise"].shape == (3, 263, 1, 40)


def test_onnx_rows_run_the_edge_runtime_and_make_its_dances(smoke):
    """An ONNX row's dances are EdgeGenerator's for the same prompts' embeddings and noise; code_path says so."""
    from kpop_helpers.bench.variants import EDGE_CODE_PATH, TORCH_CODE_PATH
    from kpop_helpers.edge import EdgeGenerator

    out, results = smoke
    for row in results["rows"]:
        expected = EDGE_CODE_PATH if row["runtime"] == "onnxruntime" else TORCH_CODE_PATH
        assert row["code_path"] == expected, row["key"]
    assert EDGE_CODE_PATH in (out / "results.md").read_text()
    work = out / ".work"
    with np.load(work / "inputs.npz") as inputs:
        text_emb, initial = inputs["text_emb"], inputs["initial_noise"]
    with np.load(work / "samples" / "ort_fp32_ddim4.npz") as saved:
        bench_joints = saved["joints"]
    edge = EdgeGenerator(work / "smoke_model" / "export", variant="fp32", threads=1)
    prompts = results["protocol"]["prompts"]
    joints = edge.generate(prompts, frames=40, steps=4, sampler="ddim", guidance=2.5, noise=initial[:len(prompts)],
                           text_emb=text_emb)
    # The same ORT session options, loop and numpy code at one thread: the very same numbers.
    np.testing.assert_allclose(bench_joints, joints, rtol=0, atol=1e-6)
    other = edge.generate(prompts, frames=40, steps=4, sampler="ddim", guidance=2.5, noise=initial[::-1].copy(),
                          text_emb=text_emb)
    assert np.abs(other - bench_joints).max() > 1e-3  # the comparison can tell other noise apart


def test_resume_skips_rows_already_measured(smoke, tmp_path):
    out, results = smoke
    import shutil

    copy_dir = tmp_path / "results"
    shutil.copytree(out, copy_dir)
    partial = copy.deepcopy(results)
    dropped = [r for r in partial["rows"] if r["variant"] == "ort_int8_ddim4"]
    partial["rows"] = [r for r in partial["rows"] if r["variant"] != "ort_int8_ddim4"]
    (copy_dir / "results.json").write_text(json.dumps(partial))
    _bench("--smoke", "--out", str(copy_dir), "--resume")
    resumed = json.loads((copy_dir / "results.json").read_text())
    kept = {r["key"]: r for r in resumed["rows"]}
    assert set(kept) == {r["key"] for r in results["rows"]}
    assert resumed["protocol"]["resumed_rows"] == len(partial["rows"])
    for row in partial["rows"]:  # not re-measured: identical timings
        assert kept[row["key"]]["step_ms_p50"] == row["step_ms_p50"]
    for row in dropped:  # timings re-measured; the quality scores of its samples are kept
        assert kept[row["key"]]["fidelity_mm"] == pytest.approx(row["fidelity_mm"], rel=1e-6)
        assert kept[row["key"]]["fid_k"] == pytest.approx(row["fid_k"], rel=1e-6)


def test_compare_writes_ratios(smoke, tmp_path):
    out, results = smoke
    old = copy.deepcopy(results)
    for row in old["rows"]:
        row["gen_time_s"] *= 2.0
    old["rows"] = old["rows"][1:]  # one row only in the new run
    old_path = tmp_path / "old.json"
    old_path.write_text(json.dumps(old))
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    (report_dir / "results.json").write_text(json.dumps(results))
    _bench("--out", str(report_dir), "--report-only", "--compare", str(old_path))
    text = (report_dir / "compare.md").read_text()
    assert "| 0.500 |" in text and "2.00x" in text
    assert f"new only: {results['rows'][0]['key']}" in text


def test_speedup_and_target_flags():
    ref = {"variant": "fp32_ddpm1000", "is_reference": True, "threads": 2, "batch": 2, "gen_time_s": 105.0,
           "fid_k": 20.0, "pfc": 1.0}
    fast = {"variant": "ort_int8_ddim10", "threads": 2, "batch": 2, "gen_time_s": 0.9, "fid_k": 22.0, "pfc": 1.1}
    refs = {(2, 2): ref}
    assert speedup(fast, refs) == pytest.approx(105.0 / 0.9)
    assert target_check(fast, refs) == (True, "")
    worse = {**fast, "fid_k": 23.5, "gen_time_s": 1.2}
    ok, why = target_check(worse, refs)
    assert not ok and "FID_k +18%" in why and "1.2 s > 1 s" in why
    calmer = {**fast, "fid_k": 11.0}  # far below the reference: different dances, not better ones
    assert target_check(calmer, refs) == (False, "FID_k -45%")
    assert target_check({**fast, "threads": 1}, refs) == (None, "")
    assert speedup({**fast, "batch": 1}, refs) is None  # no reference at that setting


def test_sampler_specs_and_config_validation():
    assert parse_sampler("ddim10") == ("ddim", 10) and parse_sampler("DDPM") == ("ddpm", None)
    for bad in ("ddim1", "ddimx", "euler10", ""):
        with pytest.raises(DataError, match="sampler"):
            parse_sampler(bad)
    with pytest.raises(DataError, match="batches"):
        BenchConfig(batches=(3,))
    with pytest.raises(DataError, match="prompts"):
        BenchConfig(prompts=())


def test_noise_is_per_sample_deterministic_and_read_step_by_step(tmp_path):
    a = draw_noise(7, 3, 10, 4, tmp_path / "a.npy", progress=False)
    b = draw_noise(7, 2, 10, 6, tmp_path / "b.npy", progress=False)
    np.testing.assert_array_equal(a[:2], b)  # sample i depends on (seed, i) only
    steps_a, steps_b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    np.testing.assert_array_equal(steps_a[:2], steps_b[:, :4])
    reader = StepNoise(tmp_path / "a.npy", samples=[2, 0], steps=4)
    assert len(reader) == 4 and reader.shape == (4, 2, 263, 1, 10)
    for k in range(4):
        np.testing.assert_array_equal(reader[k], steps_a[[2, 0], k])
    with pytest.raises(IndexError):
        reader[4]
    with pytest.raises(DataError, match="outside"):
        StepNoise(tmp_path / "a.npy", samples=3, steps=4)


def test_quality_noise_script_scores_every_seed(smoke, tmp_path):
    """benchmarks/bench_quality_noise.py on the smoke run's tiny model: one score set per seed and a spread."""
    out, _ = smoke
    model = out / ".work" / "smoke_model" / "model.safetensors"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_quality_noise.py"), "--model", str(model),
                           "--samplers", "ddim4", "ddpm4", "--prompts", "3", "--seeds", "2", "--frames", "40",
                           "--threads", "1", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "quality_noise.json").read_text())
    assert [s["sampler"] for s in result["samplers"]] == ["ddim4", "ddpm4"]
    for entry in result["samplers"]:
        assert [row["seed"] for row in entry["per_seed"]] == result["settings"]["seeds"]
        fid = [row["fid_k"] for row in entry["per_seed"]]
        assert all(math.isfinite(v) and v >= 0 for v in fid) and fid[0] != fid[1]  # other noise, other dances
        summary = entry["summary"]["fid_k"]
        assert summary["min"] <= summary["mean"] <= summary["max"] and summary["std"] > 0
    assert "| ddpm4 | pfc |" in (tmp_path / "quality_noise.md").read_text()


@pytest.fixture(scope="module")
def two_draws(smoke, tmp_path_factory) -> tuple[Path, dict]:
    """The smoke setting with two noise draws, fp32 eager and the ORT variants only."""
    out = tmp_path_factory.mktemp("bench_draws") / "results"
    _bench("--smoke", "--draws", "2", "--only", "fp32", "ort_", "--threads", "1", "--batches", "2",
           "--out", str(out))
    return out, json.loads((out / "results.json").read_text())


def test_draws_pool_quality_over_noise_draws(smoke, two_draws):
    out, results = two_draws
    assert results["protocol"]["draws"] == 2 and len(results["protocol"]["draw_digests"]) == 2
    # Draw 0 is the one-draw run's sample set: same noise, same digest, same dances.
    assert results["protocol"]["draw_digests"][0] == smoke[1]["protocol"]["inputs_sha256"]
    def joints(path: Path) -> np.ndarray:
        with np.load(path) as data:
            return data["joints"]

    first = joints(out / ".work" / "samples" / "fp32_ddim4.npz")
    np.testing.assert_allclose(first, joints(smoke[0] / ".work" / "samples" / "fp32_ddim4.npz"), atol=1e-5)
    second = joints(out / ".work" / "samples" / "fp32_ddim4_draw1.npz")
    assert second.shape == (3, 40, 22, 3) and not np.allclose(second, first)  # fresh noise, other dances
    for row in results["rows"]:
        assert row["error"] is None and row["n_draws"] == 2 and row["n_samples"] == 6, row["key"]
        assert len(row["per_draw"]) == 2
        for field in ("fid_k", "pfc", "div_k"):
            values = [d[field] for d in row["per_draw"]]
            assert row[field] == pytest.approx(np.mean(values))
            assert row[f"{field}_sd"] == pytest.approx(np.std(values, ddof=1))
        assert row["fidelity_draws"] == 2
        if row["runtime"] == "torch":
            assert row["fidelity_mm"] == 0
    table = (out / "results.md").read_text()
    assert "2 noise draws" in table and " ± " in table


def test_draws_resume_regenerates_only_missing_draws(two_draws, tmp_path):
    import shutil

    out, results = two_draws
    copy_dir = tmp_path / "results"
    shutil.copytree(out, copy_dir)
    work = copy_dir / ".work"
    (work / "samples" / "ort_int8_ddim4_draw1.npz").unlink()
    (work / "quality" / "ort_int8_ddim4.json").unlink()
    partial = copy.deepcopy(results)
    partial["rows"] = [r for r in partial["rows"] if r["variant"] != "ort_int8_ddim4"]
    (copy_dir / "results.json").write_text(json.dumps(partial))
    _bench("--smoke", "--draws", "2", "--only", "fp32", "ort_", "--threads", "1", "--batches", "2",
           "--out", str(copy_dir), "--resume")
    resumed = {r["key"]: r for r in json.loads((copy_dir / "results.json").read_text())["rows"]}
    row = resumed["ort_int8_ddim4|t1|b2"]
    assert row["quality_draws_reused"] == 1  # draw 0 was on disk; only draw 1 was generated again
    before = next(r for r in results["rows"] if r["key"] == "ort_int8_ddim4|t1|b2")
    assert row["fid_k"] == pytest.approx(before["fid_k"], rel=1e-4)
    # Another guidance scale: no saved draw matches its sample key, every one is generated afresh.
    (copy_dir / "results.json").unlink()
    _bench("--smoke", "--draws", "2", "--only", "ort_int8", "--threads", "1", "--batches", "2", "--guidance", "3.0",
           "--out", str(copy_dir), "--resume")
    rows = json.loads((copy_dir / "results.json").read_text())["rows"]
    assert rows and all(r["quality_draws_reused"] == 0 and r["n_draws"] == 2 for r in rows)


def test_target_check_reports_the_noise_band():
    from kpop_helpers.bench.report import relative_noise

    ref = {"variant": "fp32_ddpm1000", "is_reference": True, "threads": 2, "batch": 2, "gen_time_s": 105.0,
           "fid_k": 20.0, "fid_k_sd": 4.0, "pfc": 1.0, "pfc_sd": 0.2, "n_draws": 4}
    fast = {"variant": "v", "threads": 2, "batch": 2, "gen_time_s": 0.5, "fid_k": 25.0, "fid_k_sd": 5.0, "pfc": 1.0,
            "pfc_sd": 0.2, "n_draws": 4}
    noise = relative_noise(fast, ref, "fid_k")
    assert noise == pytest.approx(1.25 * math.sqrt(2 * 0.2 ** 2 / 4))
    ok, why = target_check(fast, {(2, 2): ref})
    assert not ok and why == f"FID_k +25% ±{100 * noise:.0f}% noise"
    assert relative_noise({**fast, "n_draws": 1}, ref, "fid_k") is None
    from kpop_helpers.bench.report import headline, reference_rows

    lines = "\n".join(headline([ref, fast], reference_rows([ref, fast])))
    assert "FID_k 20 ± 4" in lines and f"  - v: FID_k +25% ±{100 * noise:.0f}%, PFC +0% ±" in lines
    with pytest.raises(DataError, match="draws"):
        BenchConfig(draws=0)


def test_full_run_target_stage_reuses_the_main_runs_draw(smoke, tmp_path):
    """benchmarks/run_full_benchmark.py's target check: draws of the DDPM candidates, draw 0 taken from the main run."""
    import importlib.util
    import shutil

    from kpop_helpers.bench.protocol import smoke_config

    spec = importlib.util.spec_from_file_location("run_full_benchmark", REPO / "benchmarks" / "run_full_benchmark.py")
    full = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(full)
    main_out = tmp_path / "results"
    shutil.copytree(smoke[0], main_out)
    config = smoke_config(out=str(main_out), progress=False)
    stats = full.target_check(config, main_out / "target", 2, ("fp32_ddpm20", "ort_int8_ddpm20"), resume=False)
    assert stats["draws"] == 2 and "ort_int8_ddpm20" in stats["variants"]
    results = json.loads((main_out / "target" / "results.json").read_text())
    rows = {r["variant"]: r for r in results["rows"]}
    assert set(rows) == {"fp32_ddpm50", "fp32_ddpm20", "ort_fp32_ddpm20", "ort_int8_ddpm20"}  # name parts match
    assert rows["fp32_ddpm50"]["quality_draws_reused"] == 1  # the main run's reference samples
    assert all(r["n_draws"] == 2 and r["threads"] == 2 and r["batch"] == 2 for r in results["rows"])
    assert "Quality over 2 noise draws" in (main_out / "target" / "results.md").read_text()


def test_old_results_files_are_read_with_memory_in_mib(tmp_path):
    from kpop_helpers.bench import read_results

    path = tmp_path / "results.json"
    path.write_text(json.dumps({"protocol": {}, "rows": [{"variant": "ref", "threads": 2, "batch": 2,
                                                          "peak_rss_mb": 1048.576, "peak_rss_quality_mb": None}]}))
    row = read_results(path)["rows"][0]
    assert "peak_rss_mb" not in row and row["peak_rss_quality_mib"] is None
    assert row["peak_rss_mib"] == pytest.approx(1000.0) and row_key(row) == "ref|t2|b2"
