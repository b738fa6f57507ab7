"""A device installs `kpop-helpers[serve]` alone: no torch comes with it, and it serves the edge model's dances.

A fresh venv (another interpreter than the suite's when one is on PATH) gets `pip install '<repo>[serve]'` from the
package index; the server started from that venv answers with the dance EdgeGenerator makes here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT_S = 900
UNREACHABLE = re.compile(r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
                         r"ConnectTimeout|Could not fetch URL|No route to host|Network is unreachable")


def _interpreter() -> str:
    """Another Python than the suite's when one runs here (3.12 first: a board's), else the suite's own."""
    for name in ("python3.12", "python3.13", "python3.10"):
        found = shutil.which(name)  # may be a pyenv shim that refuses to run: try it
        if found and subprocess.run([found, "-c", "import venv"], capture_output=True).returncode == 0:
            return found
        for versions in sorted(Path.home().glob(f".pyenv/versions/{name[6:]}*/bin/{name}")):
            return str(versions)
    return sys.executable


def test_the_serve_extra_installs_without_torch_and_serves_a_dance(tiny_export, tmp_path):
    from kpop_helpers.edge import EdgeGenerator
    from kpop_helpers.serve.client import DanceClient
    from kpop_helpers.serve.process import running_server

    venv = tmp_path / "device"
    subprocess.run([_interpreter(), "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    try:
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               f"{REPO}[serve]"], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip needed more than {INSTALL_TIMEOUT_S} s (slow or unreachable index)")
    if done.returncode != 0 and UNREACHABLE.search(done.stdout + done.stderr):
        pytest.skip(f"the package index could not be reached ({UNREACHABLE.search(done.stdout + done.stderr)[0]})")
    assert done.returncode == 0, done.stderr[-3000:]
    probe = subprocess.run([str(python), "-c", "import importlib.util as u, sys; "
                            "print(sys.version.split()[0], u.find_spec('torch') is None)"],
                           capture_output=True, text=True, check=True)
    version, torch_absent = probe.stdout.split()
    assert torch_absent == "True", f"[serve] pulled torch into the device's Python {version}"

    export = tiny_export[1]
    with running_server(export, variant="fp32", python=str(python), args=["--threads", "1"],
                        log_path=tmp_path / "server.log") as server:
        served = DanceClient(server.url).dance("a cute aegyo dance with small bounces", seconds=2, seed=7, steps=5)
    here = EdgeGenerator(export, variant="fp32", threads=1).generate("a cute aegyo dance with small bounces",
                                                                     seconds=2, seed=7, steps=5)[0]
    np.testing.assert_allclose(served, here, atol=1e-5)  # the same files, loop and noise in another venv
