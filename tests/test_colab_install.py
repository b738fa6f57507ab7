"""The notebooks' setup cell installs the package as in Colab: from a folder standing for REPO_URL, in a fresh
environment where kpop_helpers is not importable yet, with pip's output and a clear error when it fails.

The "Colab" environment is a new virtualenv that sees this checkout's dependencies (a .pth line naming the
project venv's site-packages, whose own .pth files, like the editable install, are not processed) but not
kpop_helpers itself. pip runs without an index and without build isolation, so nothing is downloaded: the
dependencies are already there, as Colab preinstalls most of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
SIM_PACKAGE = Path(__file__).resolve().parent / "colab_sim"

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


def source_copy(target: Path) -> Path:
    """The repository's files (as a fork on Drive would hold them), without venvs and build leftovers."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                                capture_output=True, text=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is needed to list the repository's files")
    for name in listed:
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


def colab_env(root: Path) -> Path:
    """A venv that sees our dependencies but not kpop_helpers; returns its python."""
    venv = root / "colab_venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # The venv's bundled setuptools may be too old to build wheels without `wheel`; use the project's.
    for leftover in [*site.glob("setuptools*"), site / "_distutils_hack", site / "distutils-precedence.pth"]:
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    (site / "_project_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = subprocess.run([str(python), "-c", "import kpop_helpers"], capture_output=True, text=True, cwd=root,
                           env=clean)
    assert check.returncode != 0, "the fresh environment must not see kpop_helpers yet"
    kernels = root / "jupyter" / "kernels" / "colab_sim"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(
        '{"argv": ["%s", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "colab sim", '
        '"language": "python"}' % python)
    return python


def setup_cell(repo_url: str) -> str:
    """Notebook 01's setup cell with REPO_URL typed into its form field."""
    nb = nbformat.read(REPO / "notebooks" / "01_setup.ipynb", as_version=4)
    source = next(c.source for c in nb.cells if c.cell_type == "code")
    lines = [f'REPO_URL = "{repo_url}"  #@param {{type:"string"}}' if line.startswith("REPO_URL = ") else line
             for line in source.splitlines()]
    return "\n".join(lines)


@pytest.mark.timeout(600)
def test_setup_cell_installs_from_a_local_folder_and_explains_a_failure(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    colab_env(tmp_path)  # the "colab_sim" kernel runs its python
    fork = source_copy(tmp_path / "MyDrive" / "kpop-toolkit")
    content = tmp_path / "content"
    content.mkdir()
    ipython = tmp_path / "ipython" / "profile_default" / "startup"
    ipython.mkdir(parents=True)
    (ipython / "00-colab.py").write_text("import google.colab\n")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYTHONPATH", str(SIM_PACKAGE))
    monkeypatch.setenv("KPOP_COLAB_CONTENT", str(content))
    monkeypatch.setenv("KPOP_SIM_DRIVE", str(tmp_path / "MyDrive"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # nothing may be downloaded: every dependency is there
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # (pip reads this "no" option inverted: 0 = no isolation)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(setup_cell(str(tmp_path / "no-such-fork"))),
                nbformat.v4.new_code_cell(setup_cell(str(fork))),
                nbformat.v4.new_code_cell("import kpop_helpers, sys\nprint('FROM', kpop_helpers.__file__)")]
    NotebookClient(nb, timeout=540, kernel_name="colab_sim", allow_errors=True,
                   resources={"metadata": {"path": str(content)}}).execute()
    failed, installed, check = (c.outputs for c in nb.cells)
    failure = "\n".join(o.get("text", "") + o.get("evalue", "") for o in failed)
    assert "pip could not install" in failure and "Check REPO_URL and REF" in failure
    assert "no-such-fork" in failure, "pip's own output is shown"
    text = "\n".join(o.get("text", "") for o in installed)
    assert not [o for o in installed if o.get("output_type") == "error"], text
    assert f"installed kpop-helpers from file://{fork}" in text
    assert "Mounted at" in text, "the setup cell mounts Drive after installing"
    where = "\n".join(o.get("text", "") for o in check)
    assert "FROM" in where and "colab_venv" in where and str(REPO) not in where, where
