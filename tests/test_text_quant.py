"""The int8 text tower: written by the exporter when its embeddings agree with fp32, chosen by the edge runtime,
added to an old export by `python -m kpop_helpers.compress.text_quant`, and lighter in memory than fp32."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from kpop_helpers.compress.text_quant import PARITY_PROMPTS, TextQuantError, add_int8_text, cosine_rows
from kpop_helpers.edge import EdgeGenerator
from kpop_helpers.edge.manifest import TEXT_INT8_ONNX_FILE, TEXT_ONNX_FILE
from kpop_helpers.errors import DataError
from tests.conftest import REPO_ROOT

PROMPTS = ["a fierce girl-crush routine that points up and out", "a slow lyrical turn", "aegyo"]


def test_export_writes_an_int8_tower_whose_embeddings_agree_with_fp32(tiny_export):
    _, out = tiny_export
    info = json.loads((out / "manifest.json").read_text())["text_encoder"]["int8"]
    assert info["onnx"] == TEXT_INT8_ONNX_FILE and (out / info["data"]).is_file()
    assert info["min_cosine"] >= info["threshold"] == 0.99 and info["prompts"] == len(PARITY_PROMPTS)
    assert info["size_bytes"] < 0.7 * sum((out / f).stat().st_size for f in (TEXT_ONNX_FILE, TEXT_ONNX_FILE + ".data"))
    # Measured again here on prompts the export's check did not see.
    fp32 = EdgeGenerator(out, variant="fp32", threads=1, text_precision="fp32")
    auto = EdgeGenerator(out, variant="int8", threads=1)  # "auto": the text tower of the denoiser's precision
    assert fp32.text_encoder.path.name == TEXT_ONNX_FILE and auto.text_encoder.path.name == TEXT_INT8_ONNX_FILE
    assert EdgeGenerator(out, variant="fp32", threads=1).text_encoder.path.name == TEXT_ONNX_FILE
    cosine = cosine_rows(fp32.encode(PROMPTS), auto.encode(PROMPTS))
    assert cosine.min() >= 0.99 and cosine.max() < 1.0 - 1e-7  # close, and really a different (quantised) tower


def test_text_precision_is_checked(tiny_export, tmp_path):
    _, out = tiny_export
    with pytest.raises(DataError, match="text_precision"):
        EdgeGenerator(out, variant="fp32", threads=1, text_precision="int4")
    old = tmp_path / "old_export"
    shutil.copytree(out, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["text_encoder"]["int8"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="compress.text_quant"):
        EdgeGenerator(old, variant="fp32", threads=1, text_precision="int8")
    assert EdgeGenerator(old, variant="int8", threads=1).text_encoder.path.name == TEXT_ONNX_FILE


def test_an_old_export_gets_the_int8_tower_from_the_cli_and_a_failed_check_writes_nothing(tiny_export, tmp_path):
    _, out = tiny_export
    old = tmp_path / "old_export"
    shutil.copytree(out, old)
    for name in (TEXT_INT8_ONNX_FILE, TEXT_INT8_ONNX_FILE + ".data"):
        (old / name).unlink()
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["text_encoder"]["int8"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TextQuantError, match="cosine"):
        add_int8_text(old, min_cosine=1.0)
    assert sorted(p.name for p in old.iterdir()) == sorted(p.name for p in out.iterdir()
                                                          if not p.name.startswith(TEXT_INT8_ONNX_FILE))
    assert "int8" not in json.loads((old / "manifest.json").read_text())["text_encoder"]
    done = subprocess.run([sys.executable, "-m", "kpop_helpers.compress.text_quant", str(old)], capture_output=True,
                          text=True, timeout=300, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((old / "manifest.json").read_text())["text_encoder"]["int8"]
    assert info == json.loads(done.stdout) and info["min_cosine"] >= 0.99
    assert (old / TEXT_INT8_ONNX_FILE).stat().st_mode & 0o044 == 0o044  # readable like every other export file
    bad = subprocess.run([sys.executable, "-m", "kpop_helpers.compress.text_quant", str(tmp_path / "nothing")],
                         capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert bad.returncode == 2 and "manifest.json" in bad.stderr


PEAK = """
import sys
from kpop_helpers.edge import EdgeGenerator
from kpop_helpers.utils import peak_rss_mib
edge = EdgeGenerator(sys.argv[1], variant="int8", threads=1, text_precision=sys.argv[2])
edge.generate(["a dancer waves both arms"], frames=60, steps=3, seed=0)
print(peak_rss_mib())
"""


def test_the_int8_tower_lowers_the_edge_runtimes_peak_memory(tiny_export):
    """The real MiniLM tower in both exports; the tiny denoiser adds little, so the text side shows."""
    _, out = tiny_export
    peaks = {}
    for precision in ("fp32", "int8"):
        done = subprocess.run([sys.executable, "-c", PEAK, str(out), precision], capture_output=True, text=True,
                              timeout=300, cwd=REPO_ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        peaks[precision] = float(done.stdout.strip().splitlines()[-1])
    assert peaks["int8"] <= peaks["fp32"] - 10, peaks  # MiB: 21 MB of int8 weights instead of 87 MB of fp32
    assert peaks["int8"] <= 160, peaks  # the edge runtime's bound (issue 17), with room for the official denoiser


def test_text_side_benchmark_runs_on_the_tiny_export(tiny_export, tmp_path):
    _, out = tiny_export
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_text_side.py"), "--export-dir",
                           str(out), "--variant", "fp32", "--threads", "1", "--repeats", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "text_side.json").read_text())
    rows = {r["text"]: r for r in result["rows"]}
    assert rows["int8"]["peak_rss_mib"] < rows["fp32"]["peak_rss_mib"] and not rows["int8"]["torch_imported"]
    assert rows["int8"]["text_file"] == TEXT_INT8_ONNX_FILE and result["cosine"]["min"] >= 0.98
    assert "peak RSS (MiB)" in (tmp_path / "text_side.md").read_text()
