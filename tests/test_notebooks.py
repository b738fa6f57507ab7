"""The six Colab notebooks: stripped, valid, Colab-ready, and executable in order (smoke mode, CPU, fresh kernels)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = ("01_setup", "02_finetune", "03_compress", "04_export", "05_benchmark", "06_visualize")
BADGE = re.compile(r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
                   r"\(https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/main/notebooks/(\w+)\.ipynb\)")
SMOKE_LINE = 'SMOKE = os.environ.get("KPOP_SMOKE", "0") == "1"'


def read(name: str):
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=nbformat.NO_CONVERT)


def code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_the_six_notebooks_are_present():
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == list(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_stripped_and_colab_ready(name):
    nb = read(name)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: cell {i} keeps outputs"
    assert nb.metadata["accelerator"] == "GPU"
    assert nb.metadata["colab"]["name"] == f"{name}.ipynb"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    badge = BADGE.search(first.source)
    assert badge and badge.group(1) == name, f"{name}: no Colab badge pointing at itself"
    purpose = [p for p in first.source.split("\n\n") if p.strip() and not p.startswith(("#", "[!["))]
    assert purpose and len(purpose[0].split()) > 25, f"{name}: needs a one-paragraph purpose"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_setup_installs_non_editable_in_colab_only_and_parameters_are_forms(name):
    nb = read(name)
    setup = code(nb)[0]
    assert '"google.colab" in sys.modules' in setup
    install = next(line for line in setup.splitlines() if "pip" in line)
    assert "git+" in setup and "kpop-helpers[colab]" in setup and " -e" not in install and "--editable" not in setup
    # Colab-only calls sit under `if IN_COLAB:`; the rest runs everywhere.
    assert re.search(r"if IN_COLAB:\n(\s+#.*\n)*\s+subprocess\.run\(", setup)
    assert re.search(r"if IN_COLAB:\n\s+mount_drive\(\)", setup)
    assert "gpu_info()" in setup
    assert "sys.path" not in "\n".join(code(nb)), "no sys.path hacks: the package is installed"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert SMOKE_LINE in tagged[0].source
    assert re.search(r"#@param", tagged[0].source)


def test_strip_tool_reports_clean_notebooks_and_catches_outputs(tmp_path):
    tool = [sys.executable, str(REPO / "tools" / "strip_notebooks.py")]
    clean = subprocess.run([*tool, "--check", str(NOTEBOOK_DIR)], capture_output=True, text=True, cwd=REPO)
    assert clean.returncode == 0, clean.stderr
    nb = read("01_setup")
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    nb.cells[1].execution_count = 3
    nb.metadata.pop("accelerator")
    dirty = tmp_path / "01_setup.ipynb"
    nbformat.write(nb, dirty)
    check = subprocess.run([*tool, "--check", str(dirty)], capture_output=True, text=True, cwd=REPO)
    assert check.returncode == 1 and "outputs" in check.stderr
    fixed = subprocess.run([*tool, str(dirty)], capture_output=True, text=True, cwd=REPO)
    assert fixed.returncode == 0, fixed.stderr
    again = nbformat.read(dirty, as_version=4)
    assert again.cells[1].outputs == [] and again.metadata["accelerator"] == "GPU"
    assert again.cells[2].metadata["tags"] == ["parameters"]


def _execute(name: str) -> tuple[object, float]:
    """Run one notebook in a fresh python3 kernel of this interpreter, from notebooks/ like Jupyter does."""
    from nbclient import NotebookClient

    nb = read(name)
    started = time.perf_counter()
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    return nb, time.perf_counter() - started


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", "") or json.dumps(output.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


@pytest.fixture
def smoke_env(tmp_path, monkeypatch):
    """KPOP_SMOKE=1 and a work folder in tmp_path (jupyter_client starts the python3 kernel with sys.executable)."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    work = tmp_path / "work"
    monkeypatch.setenv("KPOP_SMOKE", "1")
    monkeypatch.setenv("KPOP_WORK_DIR", str(work))
    return work


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_notebooks_run_in_order_in_fresh_kernels(smoke_env):
    work = smoke_env
    seconds = {}
    executed = {}
    for name in NOTEBOOKS:
        executed[name], seconds[name] = _execute(name)
    print("notebook wall times (s):", {k: round(v, 1) for k, v in seconds.items()})
    # Each notebook left its files for the next one.
    assert (work / "data" / "train.npz").is_file() and (work / "data" / "stats" / "Mean.npy").is_file()
    run = json.loads((work / "checkpoints" / "result.json").read_text())
    assert run["resumed_from"] > 0 and run["step"] > run["resumed_from"], "02 must show the resumed run"
    assert "continued from the stored step" in _text(executed["02_finetune"])
    assert (work / "edge_config.json").is_file() and (work / "compress" / "compression.md").is_file()
    manifest = json.loads((work / "export" / "manifest.json").read_text())
    assert manifest["variants"]["fp32"]["parity"]["passed"]
    assert json.loads((work / "benchmark" / "results.json").read_text())["rows"]
    assert (work / "previews" / "comparison.gif").is_file()
    # Figures and widgets reached the outputs (pyplot-free figures need the inline backend in the setup cell).
    for name in ("01_setup", "02_finetune", "05_benchmark", "06_visualize"):
        kinds = {k for c in executed[name].cells for o in c.get("outputs", []) for k in o.get("data", {})}
        assert "image/png" in kinds, f"{name} shows no figure"
    widgets = {k for c in executed["06_visualize"].cells for o in c.get("outputs", []) for k in o.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" in widgets


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_later_notebook_runs_alone_and_recreates_what_it_needs(smoke_env):
    nb, _ = _execute("06_visualize")
    assert (smoke_env / "checkpoints" / "model_ema.safetensors").is_file()
    assert (smoke_env / "export" / "manifest.json").is_file()
    assert "fp32 (PyTorch)" in _text(nb)
