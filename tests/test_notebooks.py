"""The seven Colab notebooks: stripped, valid and Colab-ready (tests/test_colab_simulation.py runs them as Colab)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = ("01_setup", "02_finetune", "03_compress", "04_export", "05_benchmark", "06_visualize", "07_choreograph")
BADGE = re.compile(r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
                   r"\(https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/main/notebooks/(\w+)\.ipynb\)")
SMOKE_LINE = 'SMOKE = os.environ.get("KPOP_SMOKE", "0") == "1"'


def read(name: str):
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=nbformat.NO_CONVERT)


def code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_the_seven_notebooks_are_present():
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == list(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_stripped_and_colab_ready(name):
    nb = read(name)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: cell {i} keeps outputs"
    # Only fine-tuning needs a GPU runtime (03 for the recovery fine-tune); the rest is CPU work (07 included).
    assert nb.metadata.get("accelerator") == ("GPU" if name in ("02_finetune", "03_compress") else None)
    assert nb.metadata["colab"]["name"] == f"{name}.ipynb"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    badge = BADGE.search(first.source)
    assert badge and badge.group(1) == name, f"{name}: no Colab badge pointing at itself"
    purpose = [p for p in first.source.split("\n\n") if p.strip() and not p.startswith(("#", "[!["))]
    assert purpose and len(purpose[0].split()) > 25, f"{name}: needs a one-paragraph purpose"
    assert "**Reads**" in first.source and "**Writes**" in first.source, f"{name}: say what it reads and writes"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_setup_installs_in_colab_only_and_parameters_are_forms(name):
    nb = read(name)
    setup = code(nb)[0]
    assert setup == code(read("01_setup"))[0], "the setup cell is the same in every notebook"
    assert '"google.colab" in sys.modules' in setup
    assert re.search(r'^REPO_URL = "https://github\.com/[\w.-]+/[\w.-]+"  #@param', setup, re.M)
    assert re.search(r'^REF = "[^"]+"  #@param', setup, re.M)
    assert "kpop-helpers[colab] @ {source}" in setup and " -e " not in setup and "--editable" not in setup
    assert "-q" not in setup.split("pip")[1].split("\n")[0], "pip's output must stay visible on failure"
    assert re.search(r"if IN_COLAB:\n\s+mount_drive\(\)", setup)
    assert "gpu_info()" in setup
    assert "sys.path" not in "\n".join(code(nb)), "no sys.path hacks: the package is installed"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert SMOKE_LINE in tagged[0].source
    assert 'RUN_NAME = "kpop_run"  #@param' in tagged[0].source, "the same RUN_NAME field in every notebook"
    assert "resolve_work_dir(WORK_DIR, RUN_NAME)" in "\n".join(code(nb))
    assert "finish_notebook(work" in code(nb)[-1], "the last cell saves to Drive and unmounts it"


def test_strip_tool_reports_clean_notebooks_and_catches_outputs(tmp_path):
    tool = [sys.executable, str(REPO / "tools" / "strip_notebooks.py")]
    clean = subprocess.run([*tool, "--check", str(NOTEBOOK_DIR)], capture_output=True, text=True, cwd=REPO)
    assert clean.returncode == 0, clean.stderr
    nb = read("01_setup")
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    nb.cells[1].execution_count = 3
    nb.metadata["accelerator"] = "GPU"
    dirty = tmp_path / "01_setup.ipynb"
    nbformat.write(nb, dirty)
    check = subprocess.run([*tool, "--check", str(dirty)], capture_output=True, text=True, cwd=REPO)
    assert check.returncode == 1 and "outputs" in check.stderr and "accelerator" in check.stderr
    fixed = subprocess.run([*tool, str(dirty)], capture_output=True, text=True, cwd=REPO)
    assert fixed.returncode == 0, fixed.stderr
    again = nbformat.read(dirty, as_version=4)
    assert again.cells[1].outputs == [] and "accelerator" not in again.metadata  # 01 is CPU work
    assert again.cells[2].metadata["tags"] == ["parameters"]


def test_06_edit_and_timeline_fields_are_what_the_pipeline_reads():
    import ast

    from kpop_helpers.pipeline import KEEP_CHOICES, parse_timeline_text

    params = next(c.source for c in read("06_visualize").cells if "parameters" in c.metadata.get("tags", []))
    keep = re.search(r'^KEEP = "([^"]+)"  #@param (\[.*\])$', params, re.M)
    assert keep and ast.literal_eval(keep.group(2)) == list(KEEP_CHOICES) and keep.group(1) in KEEP_CHOICES
    timeline = re.search(r'^TIMELINE = ("[^"]+")  #@param', params, re.M)
    assert timeline and parse_timeline_text(ast.literal_eval(timeline.group(1)))[-1][1] == 60
    for field in ("EDIT_CLIP_INDEX", "EDIT_CLIP_FILE", "UPLOAD_CLIP", "VARIATIONS", "EDIT_PROMPT"):
        assert re.search(rf"^{field} = .*  #@param", params, re.M), f"06: {field} is a form field"


def test_07_song_fields_are_what_the_pipeline_reads():
    import ast

    from kpop_helpers.choreograph import ALIGN_METHODS
    from kpop_helpers.editing.song import DEFAULT_STYLE
    from kpop_helpers.pipeline import RUNTIMES, parse_section_prompts

    nb = read("07_choreograph")
    params = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for field, choices in (("ALIGN", ALIGN_METHODS), ("RUNTIME", RUNTIMES)):
        found = re.search(rf'^{field} = "([^"]+)"  #@param (\[.*\])$', params, re.M)
        assert found and ast.literal_eval(found.group(2)) == list(choices) and found.group(1) == choices[0]
    prompts = re.search(r'^SECTION_PROMPTS = ("[^"]+")  #@param', params, re.M)
    assert prompts and set(parse_section_prompts(ast.literal_eval(prompts.group(1)))) == {"A", "B"}
    assert re.search(rf'^STYLE = "{DEFAULT_STYLE}"  #@param', params, re.M)
    for field in ("SONG", "SONG_FOLDER", "EXCERPT_S", "BPM", "SEED", "MP4"):
        assert re.search(rf"^{field} = .*  #@param", params, re.M), f"07: {field} is a form field"
    calls = "\n".join(code(nb))
    for call in ("pick_song(", "analyse_song(", "song_plan(", "choreograph_song(", "song_player_html(",
                 "download_song_dance("):
        assert f"pipeline.{call}" in calls, f"07 calls pipeline.{call}"
