"""Our [colab] extras against what Colab preinstalls (requirements/colab-constraints.txt).

Offline: every requirement of kpop-helpers[colab] on a package Colab ships accepts Colab's version.
Slow, needs PyPI: pip really resolves kpop-helpers[colab] for Colab's Python and platform with Colab's versions
pinned, and the newest release of each package Colab lacks (what pip in Colab would take) fits those pins.
torch stays out of the resolution: a metadata-only torch wheel of Colab's version stands in for Colab's own, so
no torch or CUDA wheel is fetched (without PEP 658 metadata on the index pip would download the 530 MB wheel).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "requirements" / "colab-constraints.txt"
PROJECT = "kpop-helpers"
RESOLVE_TIMEOUT_S = 150
# Colab runs Ubuntu 22.04 (glibc 2.35, x86_64); pip does not widen --platform to older manylinux tags itself.
PLATFORMS = ([f"manylinux_2_{minor}_x86_64" for minor in range(35, 4, -1)]
             + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"])
# Packages named in the issue that Colab preinstalls and we use: each must be pinned.
MUST_PIN = ("numpy", "scipy", "tqdm", "safetensors", "matplotlib", "pillow", "transformers", "protobuf",
            "tensorboard", "wandb", "accelerate", "ipywidgets", "imageio", "imageio-ffmpeg", "librosa", "gdown")
TORCH_FAMILY = ("torch", "torchvision", "torchaudio", "triton")


def read_constraints(path: Path = CONSTRAINTS) -> tuple[dict[str, Version], dict[str, str]]:
    """({canonical name: pinned version}, {header key: value}) of a constraints file with `# key: value` lines."""
    pins: dict[str, Version] = {}
    header: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = re.match(r"#\s*([a-z-]+):\s*(\S+)\s*$", line)
            if match:
                header[match.group(1)] = match.group(2)
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;#]+)", line)
        if not match:
            raise ValueError(f"{path}:{number}: {raw!r} is not 'name==version'")
        name = canonicalize_name(match.group(1))
        if name in pins:
            raise ValueError(f"{path}:{number}: {name} is pinned twice")
        pins[name] = Version(match.group(2))
    return pins, header


def pyproject() -> dict:
    """The [project] table of pyproject.toml."""
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def expand_extra(project: dict, extra: str) -> list[Requirement]:
    """The base dependencies plus every requirement of `extra`, with kpop-helpers[...] self-references expanded."""
    extras = project["optional-dependencies"]
    found = [Requirement(r) for r in project["dependencies"]]
    todo, seen = [extra], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in extras:
            raise KeyError(f"pyproject.toml: extra [{name}] is referenced but not defined")
        seen.add(name)
        for text in extras[name]:
            req = Requirement(text)
            if canonicalize_name(req.name) == PROJECT:
                todo += sorted(req.extras)
            else:
                found.append(req)
    return found


def colab_environment(header: dict[str, str]) -> dict[str, str]:
    """Marker values of Colab's interpreter (Linux, x86_64, CPython of the header's version)."""
    version = header["python-version"]
    return {"python_version": version, "python_full_version": f"{version}.0", "sys_platform": "linux",
            "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def violations(requirements: list[Requirement], pins: dict[str, Version], env: dict[str, str]) -> list[str]:
    """One line per requirement whose package Colab pins at a version the requirement refuses."""
    found = []
    for req in requirements:
        name = canonicalize_name(req.name)
        if name not in pins or (req.marker is not None and not req.marker.evaluate(env)):
            continue
        if not req.specifier.contains(pins[name], prereleases=True):
            found.append(f"{name}: we require '{req.specifier}', Colab preinstalls {pins[name]}")
    return found


def test_constraints_file_is_well_formed():
    pins, header = read_constraints()
    assert Version(header["python-version"]).release[:1] == (3,), header
    assert Version(header["colab-torch"]) >= Version("2.2"), header
    assert [n for n in MUST_PIN if n not in pins] == []
    assert [n for n in pins if n in TORCH_FAMILY or n.startswith(("nvidia-", "cuda-"))] == [], \
        "torch and its CUDA wheels are Colab's own: keep them out of the constraints"


def test_colab_extras_accept_every_version_colab_preinstalls():
    pins, header = read_constraints()
    requirements = expand_extra(pyproject(), "colab")
    assert {"onnx", "transformers", "wandb", "ipywidgets"} <= {canonicalize_name(r.name) for r in requirements}
    problems = violations(requirements, pins, colab_environment(header))
    assert problems == [], "our [colab] extras would replace packages Colab preinstalls:\n" + "\n".join(problems)


def test_the_offline_check_names_package_specifier_and_colab_version(tmp_path):
    constraints = tmp_path / "c.txt"
    constraints.write_text("# python-version: 3.12\nIPyWidgets==7.7.1\nprotobuf==5.29.6\n")
    pins, header = read_constraints(constraints)
    reqs = [Requirement("ipywidgets>=8"), Requirement("protobuf>=4"), Requirement("numpy>=3"),
            Requirement("protobuf>=6; python_version < '3.12'")]
    assert violations(reqs, pins, colab_environment(header)) == [
        "ipywidgets: we require '>=8', Colab preinstalls 7.7.1"]
    constraints.write_text("numpy>=2\n")
    with pytest.raises(ValueError, match=r"c\.txt:1: 'numpy>=2' is not 'name==version'"):
        read_constraints(constraints)


# --- the real resolution (slow, needs PyPI) ---------------------------------------------------------------


def stub_torch_wheel(version: str, folder: Path) -> Path:
    """A metadata-only torch wheel (no files, no dependencies) standing in for Colab's preinstalled torch."""
    dist_info = f"torch-{version}.dist-info"
    files = {f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n",
             f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: kpop-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist_info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{dist_info}/RECORD"])
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"torch-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return wheel


def project_wheel(tmp_path: Path) -> Path:
    """A wheel of kpop-helpers built from this pyproject.toml (the metadata pip sees; the code is left out)."""
    src = tmp_path / "src"
    (src / "kpop_helpers").mkdir(parents=True)
    (src / "kpop_helpers" / "__init__.py").write_text("")
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copy(REPO / "README.md", src)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(src)]
    if importlib.util.find_spec("setuptools"):  # build with what is installed: no download of setuptools
        cmd.append("--no-build-isolation")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return next((tmp_path / "dist").glob("kpop_helpers-*.whl"))


def pip_dry_run(args: list[str], report: Path, python_version: str) -> dict:
    """`pip install --dry-run` for Colab's interpreter and platform; the JSON report. Skips when the index is out
    of reach or the resolution takes too long."""
    abi = "cp" + python_version.replace(".", "")
    # few, short retries: offline, pip gives up in seconds instead of minutes
    cmd = [sys.executable, "-m", "pip", "install", "--retries", "1", "--timeout", "20", "--dry-run",
           "--ignore-installed", "--report",
           str(report), "--python-version", python_version, "--implementation", "cp", "--abi", abi,
           "--only-binary=:all:", *[f"--platform={p}" for p in PLATFORMS], *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip needed more than {RESOLVE_TIMEOUT_S} s to resolve (slow or unreachable index)")
    output = done.stdout + done.stderr
    if done.returncode != 0:
        # offline, pip reports the packages it could not list as unavailable (even as a "conflict")
        unreachable = re.search(r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
                                r"ConnectTimeout|Could not fetch URL|No route to host|Network is unreachable", output)
        if unreachable and re.search(r"no matching distribution", output, re.IGNORECASE):
            pytest.skip(f"the package index could not be reached ({unreachable.group(0)})")
        # keep pip's explanation of the conflict, not its progress lines or notes on local index folders
        shown = "\n".join(line for line in output.splitlines()
                           if not line.lstrip().startswith(("WARNING: Location", "Collecting", "Downloading",
                                                            "Processing", "Using cached", "Obtaining", "━")))
        pytest.fail(f"pip could not resolve for Colab (Python {python_version}):\n{shown[-6000:]}")
    return json.loads(report.read_text())


@pytest.mark.slow
def test_pip_resolves_colab_extras_against_colab_preinstalled_versions(tmp_path):
    pins, header = read_constraints()
    python_version, torch_version = header["python-version"], header["colab-torch"]
    wheels = tmp_path / "wheels"
    stub_torch_wheel(torch_version, wheels)
    torch_pin = tmp_path / "torch-pin.txt"
    torch_pin.write_text(f"torch=={torch_version}\n")
    wheel = project_wheel(tmp_path)

    start = time.monotonic()
    report = pip_dry_run(["--find-links", str(wheels), "-c", str(torch_pin), "-c", str(CONSTRAINTS),
                          f"{PROJECT}[colab] @ {wheel.as_uri()}"], tmp_path / "colab.json", python_version)
    print(f"resolution of {PROJECT}[colab] for Colab: {time.monotonic() - start:.1f} s")
    chosen = {canonicalize_name(i["metadata"]["name"]): Version(i["metadata"]["version"]) for i in report["install"]}
    assert chosen["torch"] == Version(torch_version), "a real torch wheel slipped into the resolution"
    assert not [n for n in chosen if n.startswith(("nvidia-", "cuda-")) or n == "triton"], sorted(chosen)

    # pip in Colab keeps what is installed but takes the newest release of a package Colab lacks: that release
    # must fit Colab's pins, or pip would upgrade a preinstalled package (onnx>=1.23 would lift protobuf to 6).
    wanted = requirements_on_new_packages(report, pins, colab_environment(header))
    specs = [f"{name}{spec}" for name, spec in sorted(wanted.items())]
    newest = pip_dry_run(["--no-deps", *specs], tmp_path / "newest.json", python_version)
    latest = {canonicalize_name(i["metadata"]["name"]): Version(i["metadata"]["version"]) for i in newest["install"]}
    held_back = [f"{name}: pip in Colab would take {latest.get(name)} (the newest '{spec}'), but with Colab's "
                 f"preinstalled versions only {chosen[name]} resolves: cap it in the [colab] extra"
                 for name, spec in zip(sorted(wanted), specs) if latest.get(name) != chosen[name]]
    assert held_back == []


def requirements_on_new_packages(report: dict, pins: dict[str, Version], env: dict[str, str]) -> dict[str, str]:
    """{name: combined specifier} for each resolved package Colab does not preinstall, from every requirement on it
    (ours with the [colab] extras, the others' unconditional ones)."""
    reqs = expand_extra(pyproject(), "colab")
    for item in report["install"]:
        if canonicalize_name(item["metadata"]["name"]) != PROJECT:
            reqs += [Requirement(r) for r in item["metadata"].get("requires_dist") or []]
    chosen = {canonicalize_name(i["metadata"]["name"]) for i in report["install"]}
    wanted: dict[str, SpecifierSet] = {n: SpecifierSet() for n in chosen if n not in pins and n not in (PROJECT, "torch")}
    for req in reqs:
        name = canonicalize_name(req.name)
        if name in wanted and (req.marker is None or req.marker.evaluate(env)):
            wanted[name] &= req.specifier
    return {name: str(spec) for name, spec in wanted.items()}
