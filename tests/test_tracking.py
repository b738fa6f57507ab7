"""Tracker: TensorBoard events read back, W&B offline runs and resume, no prompt without a key, no leaked secrets."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kpop_helpers.colab import default_drive_dir, get_secret, gpu_info, in_colab, mount_drive
from kpop_helpers.tracking import Tracker, resolve_wandb_mode

SECRET_KEY = "fake-wandb-key-0123456789abcdef"
SECRET_TOKEN = "hf_faketoken_9876543210"


def _events(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def _gif(path: Path, frames: int = 4) -> Path:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)) for _ in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=50, loop=0)
    return path


def test_tensorboard_scalars_images_and_gifs_read_back(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key either
    png = tmp_path / "pose.png"
    Image.fromarray(np.full((20, 30, 3), 200, dtype=np.uint8)).save(png)
    with Tracker(tmp_path / "tb", use_wandb="auto", config={"lr": 1e-4}) as tracker:
        assert tracker.wandb_mode == "disabled" and tracker.run_id is None
        for step in range(6):
            tracker.log_scalars({"train/loss": 1.0 / (step + 1), "train/lr": np.float32(1e-4)}, step)
        tracker.log_image("samples/pose", png, 5)
        tracker.log_image("samples/array", np.linspace(0, 1, 16 * 8 * 3).reshape(16, 8, 3), 5)
        tracker.log_gif("samples/dance", _gif(tmp_path / "dance.gif"), 5)
    events = _events(tmp_path / "tb")
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("train/loss")] == [
        (s, round(1.0 / (s + 1), 6)) for s in range(6)]
    gif = events.Images("samples/dance")[0]
    assert gif.encoded_image_string.startswith(b"GIF89a") and (gif.width, gif.height) == (32, 24)
    assert events.Images("samples/pose")[0].encoded_image_string == png.read_bytes()
    assert (events.Images("samples/array")[0].width, events.Images("samples/array")[0].height) == (8, 16)


def test_tensorboard_resume_continues_the_step_counter_and_purges_orphans(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with Tracker(tmp_path, use_wandb=False) as first:
        for step in range(10):  # the run crashes after step 9; its last checkpoint was at step 5
            first.log_scalars({"loss": float(step)}, step)
    with Tracker(tmp_path, use_wandb=False, resume_step=5) as resumed:
        for _ in range(5, 13):
            resumed.log_scalars({"loss": 100.0})  # no step given: continues from resume_step
    values = [(e.step, e.value) for e in _events(tmp_path).Scalars("loss")]
    assert values == [(s, float(s)) for s in range(5)] + [(s, 100.0) for s in range(5, 13)]


def test_bad_inputs_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="use_wandb"):
        resolve_wandb_mode("yes")
    with Tracker(tmp_path, use_wandb=False) as tracker:
        with pytest.raises(TypeError, match="'loss'"):
            tracker.log_scalars({"loss": "low"}, 0)
        with pytest.raises(ValueError, match="shape"):
            tracker.log_image("bad", np.zeros((5, 5, 7)), 0)


def _isolated_env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HF_"))}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), WANDB_DIR=str(tmp_path / "wandb_root"), WANDB_CONFIG_DIR=str(home / ".config"),
               WANDB_CACHE_DIR=str(home / ".cache"), WANDB_DATA_DIR=str(home / ".data"),
               # Any network attempt would hit a closed local port and fail fast instead of hanging.
               WANDB_BASE_URL="http://127.0.0.1:9", **extra)
    return env


_TRACKER_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from kpop_helpers.tracking import Tracker
    log_dir, use_wandb, resume_step, run_id = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] or None
    use_wandb = {"True": True, "False": False}.get(use_wandb, use_wandb)
    # Secrets arrive through the environment: W&B records argv in its run metadata.
    config = {"lr": 1e-4, "max_tokens": 77, "wandb_api_key": os.environ["CFG_KEY"],
              "notes": "token " + os.environ["CFG_NOTE_TOKEN"]}
    tracker = Tracker(log_dir, project="kpop-test", run_name="r1", use_wandb=use_wandb, config=config,
                      resume_step=resume_step, wandb_run_id=run_id)
    for step in range(resume_step, resume_step + 4):
        tracker.log_scalars({"loss": 1.0 + step}, step)
    print(json.dumps({"run_id": tracker.run_id, "mode": tracker.wandb_mode}))
    tracker.close()
""")


def _run_tracker(tmp_path: Path, use_wandb: str, resume_step: int = 0, run_id: str = "", **env: str) -> dict:
    script = tmp_path / "track.py"
    script.write_text(_TRACKER_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "logs"), use_wandb, str(resume_step), run_id],
        env=_isolated_env(tmp_path, CFG_KEY=SECRET_KEY, CFG_NOTE_TOKEN=SECRET_TOKEN, **env),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _wandb_records(path: Path) -> list:
    """Decode a .wandb file (LevelDB-log framing of protobuf Records) to check what was really logged."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _history(path: Path) -> list[dict]:
    rows = []
    for record in _wandb_records(path):
        if record.WhichOneof("record_type") == "history":
            items = record.history.item
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items})
    return rows


def test_wandb_offline_writes_a_run_and_resume_continues_it(tmp_path):
    first = _run_tracker(tmp_path, "offline", HF_TOKEN=SECRET_TOKEN)
    assert first["mode"] == "offline" and first["run_id"]
    runs = sorted((tmp_path / "wandb_root" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(first["run_id"])
    history = _history(runs[0] / f"run-{first['run_id']}.wandb")
    # The run is named after the run name (the notebooks pass RUN_NAME).
    names = [r.run.display_name for r in _wandb_records(runs[0] / f"run-{first['run_id']}.wandb")
             if r.WhichOneof("record_type") == "run"]
    assert names and set(names) == {"r1"}
    assert [(row["global_step"], row["loss"]) for row in history] == [(s, 1.0 + s) for s in range(4)]

    resumed = _run_tracker(tmp_path, "offline", resume_step=3, run_id=first["run_id"], HF_TOKEN=SECRET_TOKEN)
    assert resumed == first
    runs = sorted((tmp_path / "wandb_root" / "wandb").glob(f"offline-run-*-{first['run_id']}"))
    assert len(runs) == 2
    history = _history(runs[1] / f"run-{first['run_id']}.wandb")
    assert [row["global_step"] for row in history] == [3, 4, 5, 6]
    tensorboard = [(e.step, e.value) for e in _events(tmp_path / "logs").Scalars("loss")]
    assert tensorboard == [(s, 1.0 + s) for s in range(7)]

    # Neither the config's key nor the environment token appears in any file written.
    for file in tmp_path.rglob("*"):
        if file.is_file() and file.name != "track.py":
            blob = file.read_bytes()
            assert SECRET_KEY.encode() not in blob and SECRET_TOKEN.encode() not in blob, file
    config_text = _events(tmp_path / "logs").Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"max_tokens": 77' in config_text and "REDACTED" in config_text


def test_no_key_and_auto_disables_wandb_without_prompting(tmp_path):
    result = _run_tracker(tmp_path, "auto")
    assert result == {"run_id": None, "mode": "disabled"}
    assert not (tmp_path / "wandb_root").exists() and not (tmp_path / "logs" / "wandb").exists()
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))


def test_explicit_wandb_without_key_falls_back_to_offline(tmp_path):
    assert _run_tracker(tmp_path, "True")["mode"] == "offline"
    assert resolve_wandb_mode(False) == ("disabled", None)


def test_colab_helpers_outside_colab(tmp_path):
    assert not in_colab()
    assert mount_drive() is None and get_secret("WANDB_API_KEY") is None
    assert default_drive_dir("run 1/../x") == Path("/content/drive/MyDrive/kpop_checkpoints/run_1_.._x")
    info = gpu_info()
    assert info["available"] is False and info["count"] == 0


def test_colab_secret_lookup_through_the_userdata_api(monkeypatch):
    """Stands in for the Colab runtime (unavailable here) with the two userdata behaviours get_secret relies on."""

    class SecretNotFoundError(Exception):
        pass

    def get(name: str) -> str:
        if name != "WANDB_API_KEY":
            raise SecretNotFoundError(name)
        return SECRET_KEY

    colab = types.ModuleType("google.colab")
    colab.userdata = types.SimpleNamespace(get=get)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", colab.userdata)
    assert in_colab()
    assert get_secret("WANDB_API_KEY") == SECRET_KEY and get_secret("HF_TOKEN") is None


def test_wandb_off_prints_one_line_saying_why(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DISABLED", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key either
    with Tracker(tmp_path / "a", use_wandb=False, run_name="my-run") as tracker:
        assert tracker.run_name == "my-run" and tracker.wandb_off_reason == "wandb='off'"
    with Tracker(tmp_path / "b", use_wandb="auto"):
        pass
    monkeypatch.setitem(sys.modules, "wandb", None)  # what Python does for a package that is not installed
    with Tracker(tmp_path / "c", use_wandb="offline"):
        pass
    lines = capsys.readouterr().out.splitlines()
    # Turned off on purpose (a): logged, not printed; asked for but off (b, c): one printed line each.
    assert [line.split(";")[0] for line in lines] == [
        "W&B off: no WANDB_API_KEY in the environment or Colab secrets",
        "W&B off: wandb not installed (pip install wandb)"]
    assert all(f"TensorBoard logs in {tmp_path / name}" in line for line, name in zip(lines, "bc"))
