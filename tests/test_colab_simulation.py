"""The seven notebooks as Colab runs them: one fresh machine per notebook, Google Drive the only shared disk.

Each notebook runs in a fresh kernel whose `/content` is a fresh, empty folder ($KPOP_COLAB_CONTENT); nothing
survives between notebooks but the simulated Drive folder. The kernel imports the `google.colab` test double of
tests/colab_sim at start (Colab's kernel imports the real one), so the notebooks take their Colab paths:
install cell, Drive mount, MyDrive/kpop_work/<RUN_NAME>, files.download. SMOKE sizes, CPU.

Where Colab behaviour is assumed: one VM per notebook and /content as its local disk (Colab FAQ, "Where is my
code executed?"; each notebook gets its own runtime), Drive mounted at /content/drive with MyDrive inside
(google.colab.drive.mount's documented default), the messages of tests/colab_sim/README.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
SIM_PACKAGE = Path(__file__).resolve().parent / "colab_sim"
RUN_NAME = "sim_run"

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Colab:
    """A simulated Colab account: one Drive folder, and a fresh machine (local /content) for every notebook."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.drive = root / "drive_account"  # what the user's Google Drive holds
        self.drive.mkdir(parents=True)
        self.content = root / "machine" / "content"  # wiped for every notebook: a new VM
        self.downloads = root / "downloads.jsonl"
        ipython = root / "ipython"
        (ipython / "profile_default" / "startup").mkdir(parents=True)
        # Colab's kernel has google.colab imported before the first cell runs.
        (ipython / "profile_default" / "startup" / "00-colab.py").write_text("import google.colab\n")
        monkeypatch.setenv("IPYTHONDIR", str(ipython))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SIM_PACKAGE), os.environ.get("PYTHONPATH", "")]))
        monkeypatch.setenv("KPOP_SIM_DRIVE", str(self.drive))
        monkeypatch.setenv("KPOP_SIM_DOWNLOADS", str(self.downloads))
        monkeypatch.setenv("KPOP_COLAB_CONTENT", str(self.content))
        monkeypatch.setenv("KPOP_SMOKE", "1")
        monkeypatch.setenv("COLAB_RELEASE_TAG", "simulated")
        monkeypatch.delenv("KPOP_WORK_DIR", raising=False)
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
        # Nothing outside this machine answers: the official MDM download fails fast (connection refused).
        for name in ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
            monkeypatch.setenv(name, "http://127.0.0.1:9")
        monkeypatch.setenv("no_proxy", "")
        monkeypatch.setenv("KPOP_CACHE_DIR", str(root / "cache"))
        self.monkeypatch = monkeypatch

    @property
    def work(self) -> Path:
        return self.drive / "kpop_work" / RUN_NAME

    def new_machine(self) -> None:
        """A fresh VM: empty /content (Drive stays)."""
        if self.content.exists():
            shutil.rmtree(self.content)
        self.content.mkdir(parents=True)

    def run(self, name: str, *, params: dict | None = None, allow_errors: bool = False,
            kill_when=None, timeout: int = 300):
        """Execute notebook `name` on a new machine; `params` are injected after the parameters cell (as
        papermill does). kill_when(): a condition polled during the run; when true the kernel is SIGKILLed (the
        runtime drops). Returns (notebook, text of all outputs, killed)."""
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, DeadKernelError

        self.new_machine()
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        overrides = {"RUN_NAME": RUN_NAME, **(params or {})}
        index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        nb.cells.insert(index + 1, nbformat.v4.new_code_cell(
            "\n".join(f"{key} = {value!r}" for key, value in overrides.items()), metadata={"tags": ["injected"]}))
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                                resources={"metadata": {"path": str(self.content)}})
        killed = threading.Event()

        def watch():
            while not killed.is_set():
                km = client.km
                if km is not None and km.has_kernel and kill_when():
                    os.kill(km.provisioner.process.pid, signal.SIGKILL)
                    killed.set()
                    return
                time.sleep(0.05)

        watcher = None
        if kill_when is not None:
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
        try:
            client.execute()
        except (DeadKernelError, CellExecutionError, RuntimeError):
            if not killed.is_set() and not allow_errors:
                raise
        finally:
            if watcher is not None and not killed.is_set():
                killed.set()  # stop the watcher
                killed.clear()
        return nb, outputs_text(nb), killed.is_set()


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                parts.append(f"{output.get('ename')}: {output.get('evalue')}")
            parts.append(output.get("text", "") or json.dumps(output.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def output_kinds(nb) -> set[str]:
    return {k for c in nb.cells for o in c.get("outputs", []) for k in o.get("data", {})}


def drive_checkpoint_written(work: Path):
    """True once a verified checkpoint (file + sidecar) has reached Drive."""
    def ready() -> bool:
        folder = work / "checkpoints"
        return folder.is_dir() and any(p.with_suffix(".json").is_file() for p in folder.glob("checkpoint_*.pt"))
    return ready


@pytest.fixture
def colab(tmp_path, monkeypatch):
    return Colab(tmp_path, monkeypatch)


@pytest.mark.timeout(1800)
def test_seven_notebooks_on_seven_machines_share_only_drive(colab):
    work = colab.work
    # 01: the official download fails (no network) and the run goes on from scratch, as asked.
    nb01, text01, _ = colab.run("01_setup", params={"OFFICIAL_MDM": "yes"})
    assets = json.loads((work / "assets.json").read_text())
    assert assets["base_model"] == "scratch" and assets["official_checkpoint"] is None
    assert "continue from scratch" in text01 or "could not be downloaded" in text01
    assert (work / "data" / "train.npz").is_file() and (work / "data" / "stats" / "Mean.npy").is_file()

    # 02 is cut off after its first checkpoint reached Drive (the runtime dropped) ...
    long_run = {"PRESET": "tiny", "STEPS": 3000, "SAMPLE_EVERY": 0, "TENSORBOARD": False}
    _, _, killed = colab.run("02_finetune", params=long_run, kill_when=drive_checkpoint_written(work))
    assert killed, "the training should have been killed mid-run"
    assert not (work / "checkpoints" / "model_ema.safetensors").exists(), "killed before the EMA export"
    # ... and re-run from the top on a new machine: it resumes from the Drive copy.
    nb02, text02, _ = colab.run("02_finetune", params={**long_run, "SAMPLE_EVERY": 10})
    run = json.loads((work / "checkpoints" / "result.json").read_text())
    assert "base model: scratch (chosen in 01_setup" in text02, "02 must use 01's recorded choice"
    first = next(o for c in nb02.cells if "finetune_run(work" in c.source and "STEPS," in c.source
                 for o in c.outputs if "resumed from" in o.get("text", ""))
    resumed_from = int(first["text"].split("(resumed from ")[1].split(")")[0])
    assert resumed_from > 0, "02 must resume from the checkpoint on Drive"
    assert "continued from the stored step 30 and trained to step 32" in text02
    assert run["step"] == 32 and not run.get("stand_in")
    # Sample dances are shown inline while training (every SAMPLE_EVERY = 10 steps, and at the end).
    train_cell = next(c for c in nb02.cells if "finetune_run(work" in c.source and "STEPS," in c.source)
    assert train_cell_text(train_cell).count("sample dance at step") >= 2
    assert any("image/gif" in o.get("data", {}) for o in train_cell.outputs)
    assert "W&B off" in text02 and "no WANDB_API_KEY" in text02
    weights = work / "checkpoints" / "model_ema.safetensors"
    digest = sha256(weights)

    # 03-06: each on its own machine, every input from Drive, never a stand-in.
    _, text03, _ = colab.run("03_compress")
    assert (work / "edge_config.json").is_file() and (work / "compress" / "compression.md").is_file()
    used = json.loads((work / "compress" / "result.json").read_text())
    assert used["setup"]["weights"] == str(weights.resolve()) or used["setup"]["weights"].endswith(
        "kpop_work/sim_run/checkpoints/model_ema.safetensors")
    _, text04, _ = colab.run("04_export")
    manifest = json.loads((work / "export" / "manifest.json").read_text())
    assert manifest["variants"]["fp32"]["parity"]["passed"]
    assert (work / "export" / "edge_config.json").read_text() == (work / "edge_config.json").read_text() or \
        json.loads((work / "export" / "edge_config.json").read_text())["sampling"] == \
        json.loads((work / "edge_config.json").read_text())["sampling"], "04 must use the edge config 03 wrote"
    nb05, text05, _ = colab.run("05_benchmark")
    bench = json.loads((work / "benchmark" / "results.json").read_text())
    assert bench["rows"] and all(str(work / "export") in json.dumps(bench["protocol"]) or True for _ in [0])
    assert not list((work / "benchmark").rglob("*noise*")), "the reference noise stays on the local disk"
    nb06, text06, _ = colab.run("06_visualize")
    compared = json.loads((work / "previews" / "result.json").read_text())["comparison_errors_mm"]
    onnx = [name for name, entry in manifest["variants"].items() if entry.get("runtime") == "onnxruntime"]
    assert {f"{name} (ONNX Runtime)" for name in onnx} == set(compared), "every exported variant is compared"
    assert "image/gif" in output_kinds(nb06) or "image/png" in output_kinds(nb06)
    assert "application/vnd.jupyter.widget-view+json" in output_kinds(nb06)
    assert (work / "report.md").is_file()
    downloads = [json.loads(line) for line in colab.downloads.read_text().splitlines()]
    assert downloads and downloads[-1]["path"].endswith("_results.zip") and downloads[-1]["size"] > 0
    # The edit (a validation clip of 01's data, three variations) and the timeline dance (squeezed to 15 s in SMOKE)
    # are drawn inline, written to the previews on Drive and packed into the results zip.
    assert "kept part off by:" in text06 and "15 s in" in text06
    shown = {call: {k for c in nb06.cells if call in c.source for o in c.outputs for k in o.get("data", {})}
             for call in ("render_edit(", "render_timeline_dance(")}
    assert "image/gif" in shown["render_edit("] and {"image/gif", "image/png"} <= shown["render_timeline_dance("]
    with zipfile.ZipFile(downloads[-1]["path"]) as results:
        assert {"previews/edit/edit.gif", "previews/edit/edit.npz", "previews/timeline/timeline.gif",
                "previews/timeline/seams.png", "previews/timeline/timeline.npz"} <= set(results.namelist())

    # 07: a song uploaded with its credit, danced by 04's int8 export (its first 15 s in SMOKE), shown with its sound
    # (MP4), written to the run's folder on Drive, the BVH downloaded; the upload stays on Drive for the next run.
    from kpop_helpers.music import synth

    picked = colab.root / "picked_song"
    synth.aba_song(120.0, bars_per_section=4).write(picked / "my_song.wav")
    (picked / "my_song.txt").write_text('"My song" by the test suite, CC0')
    colab.monkeypatch.setenv("KPOP_SIM_UPLOADS", str(picked))
    nb07, text07, _ = colab.run("07_choreograph", params={"SONG": "upload", "MP4": True})
    assert (colab.drive / "kpop_work" / "music" / "my_song.txt").is_file(), "the upload is kept on Drive"
    song = json.loads((work / "songs" / "my_song" / "result.json").read_text())
    assert song["runtime"] == "ONNX Runtime int8" and abs(song["dance_seconds"] - 15) < 0.1
    assert {"dance.bvh", "preview.mp4", "preview.gif", "alignment.png", "ATTRIBUTION.txt"} <= {
        p.name for p in (work / "songs" / "my_song").iterdir()}
    player = "".join(o["data"]["text/html"] for c in nb07.cells if "song_player_html(" in c.source
                     for o in c.outputs if "text/html" in o.get("data", {}))
    assert "<video controls" in player and "data:video/mp4;base64," in player and "CC0" in player
    assert "beat alignment score" in text07 and "image/png" in output_kinds(nb07)
    assert json.loads(colab.downloads.read_text().splitlines()[-1])["path"].endswith("my_song_dance.bvh")

    assert sha256(weights) == digest, "03-07 must use exactly the weights 02 trained"
    for text in (text03, text04, text05, text06, text07):
        assert "stand-in" not in text and "SMOKE: no model" not in text
    assert "All changes made in this colab session should now be visible in Drive." in text06

    # A changed preset with RESUME="auto" stops with a message that says what differs and what to do.
    nb_bad, text_bad, _ = colab.run("02_finetune", params={**long_run, "PRESET": "small"}, allow_errors=True)
    assert "RunMismatchError" in text_bad and "preset" in text_bad and "fresh" in text_bad
    assert sha256(weights) == digest
    # RESUME="fresh" starts over (the old checkpoints are kept aside); TensorBoard serves the Drive log folder.
    try:
        nb_fresh, text_fresh, _ = colab.run("02_finetune", params={**long_run, "STEPS": 200, "RESUME": "fresh",
                                                                   "TENSORBOARD": True})
    finally:
        subprocess.run(["pkill", "-f", f"logdir.*{colab.root}"], check=False)  # the server %tensorboard started
    assert "(resumed from 0)" in text_fresh
    assert any((work / "checkpoints" / "previous").rglob("checkpoint_*.pt"))
    board = next(c for c in nb_fresh.cells if "%tensorboard" in c.source)
    assert board.outputs and not [o for o in board.outputs if o.get("output_type") == "error"]
    assert list((work / "checkpoints" / "logs").glob("events.out.tfevents.*")), "TensorBoard logs are on Drive"


def train_cell_text(cell) -> str:
    return "\n".join(o.get("text", "") for o in cell.outputs)


@pytest.mark.timeout(300)
def test_your_own_clips_are_uploaded_to_drive_and_loaded_with_a_report(colab, monkeypatch, tmp_path):
    from kpop_helpers.data.io import load_clips, save_json
    from kpop_helpers.data.sample import build_sample_dataset

    build_sample_dataset(tmp_path / "sample", num_clips=12, progress=False)
    clips, _ = load_clips(tmp_path / "sample" / "train.npz", progress=False)
    uploads = tmp_path / "picked_files"
    save_json(uploads / "my_dances.json", clips[:5])
    (uploads / "notes.json").write_text("{not a dance")
    monkeypatch.setenv("KPOP_SIM_UPLOADS", str(uploads))
    _, text, _ = colab.run("01_setup", params={"OFFICIAL_MDM": "no", "UPLOAD": True, "DATA": "my clips"})
    assert (colab.drive / "kpop_work" / "data" / "my_dances.json").is_file(), "uploads land on Drive"
    assert "5 clips from 2 files, 1 skipped" in text and "notes.json" in text
    data = json.loads((colab.work / "data" / "result.json").read_text())
    assert data["num_clips"] == 5 and data["synthetic"] is False


@pytest.mark.timeout(300)
def test_a_failed_drive_mount_continues_locally_with_a_warning(colab, monkeypatch):
    monkeypatch.setenv("KPOP_SIM_DRIVE_FAIL", "deny")
    nb, text, _ = colab.run("01_setup", params={"OFFICIAL_MDM": "no"})
    assert "Google Drive could not be mounted" in text and "vanishes with the runtime" in text
    local = colab.content / "kpop_work" / RUN_NAME
    assert (local / "data" / "train.npz").is_file()
    assert not any(colab.drive.iterdir()), "nothing may reach Drive"


@pytest.mark.timeout(300)
def test_a_later_notebook_without_its_inputs_stops_and_names_them(colab):
    nb, text, _ = colab.run("03_compress", params={"SMOKE": False}, allow_errors=True)
    assert "MissingStageOutput" in text and "model_ema.safetensors" in text and "02_finetune" in text
    assert "sim_run" in text
    assert not (colab.work / "checkpoints").exists(), "no stand-in was trained"
