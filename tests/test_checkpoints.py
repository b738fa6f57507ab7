"""CheckpointManager: atomic saves under SIGKILL, hash-verified loading with fallback, retention, RNG, export."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from kpop_helpers.checkpoints import (
    CheckpointManager, SyncRetry, capture_rng_state, export_weights, load_exported_weights, restore_rng_state,
)
from kpop_helpers.checkpoints.atomic import CHECKPOINT_RE, is_temp_name, file_digest, temp_path_for
from kpop_helpers.data import DataError

FAST_RETRY = SyncRetry(initial_delay_s=0.05, max_delay_s=0.2)


class TinyNet(torch.nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.inp = torch.nn.Linear(8, width)
        self.out = torch.nn.Linear(width, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.inp(x)))


def _trained(seed: int = 0) -> tuple[TinyNet, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = TinyNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 8)).pow(2).mean().backward()
        optimizer.step()
    return model, optimizer


def _local_only(folder: Path, **kwargs) -> CheckpointManager:
    return CheckpointManager(folder, google_drive_sync=False, flush_on_exit_s=None, **kwargs)


def _allowed_leaves_only(obj, where="state", leaves=(torch.Tensor, bool, int, float, str, type(None))) -> None:
    """weights_only checkpoints must hold tensors, numbers, strings and containers only."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            _allowed_leaves_only(value, f"{where}[{key!r}]", leaves)
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            _allowed_leaves_only(value, f"{where}[{index}]", leaves)
    else:
        assert isinstance(obj, leaves), f"{where}: {type(obj)}"


def test_roundtrip_restores_model_optimizer_and_every_extra_state(tmp_path):
    model, optimizer = _trained()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    optimizer.step()
    scheduler.step()
    ema = TinyNet()
    mean, std = np.linspace(-1, 1, 263, dtype=np.float32), np.full(263, 0.5, dtype=np.float32)
    manager = _local_only(tmp_path / "ckpt")
    path = manager.save_checkpoint(
        model, optimizer, 3, 1200, torch.tensor(0.25), metrics={"val_loss": np.float32(0.5)},
        metadata={"note": "warm start"}, ema=ema.state_dict(), scheduler=scheduler, data_position=4711,
        best_metric=0.5, model_config={"layers": 8, "latent_dim": 512}, mean=mean, std=std,
        text_encoder="minilm", wandb_run_id="abc123", key_counts=np.arange(6, dtype=np.uint64))
    assert path.name == "checkpoint_epoch3_step1200.pt"

    sidecar = json.loads(path.with_suffix(".json").read_text())
    digest = file_digest(path)
    assert (sidecar["sha256"], sidecar["size"]) == (digest.sha256, digest.size)
    assert (sidecar["epoch"], sidecar["step"], sidecar["loss"]) == (3, 1200, 0.25)
    assert sidecar["metrics"] == {"val_loss": 0.5}
    manifest = json.loads((tmp_path / "ckpt" / "latest.json").read_text())
    assert manifest["latest"]["file"] == path.name and manifest["latest"]["sha256"] == digest.sha256
    _allowed_leaves_only(torch.load(path, weights_only=True))

    fresh = TinyNet()
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1.0)
    state = manager.load_checkpoint(path, fresh, fresh_opt)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, fresh.state_dict()[name]), name
    assert fresh_opt.state_dict()["param_groups"][0]["lr"] == optimizer.state_dict()["param_groups"][0]["lr"]
    for key, value in optimizer.state_dict()["state"][0].items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(fresh_opt.state_dict()["state"][0][key])), key
    assert (state["epoch"], state["step"], state["loss"], state["data_position"]) == (3, 1200, 0.25, 4711)
    assert state["model_config"] == {"layers": 8, "latent_dim": 512} and state["text_encoder"] == "minilm"
    assert state["wandb_run_id"] == "abc123" and state["metadata"] == {"note": "warm start"}
    assert state["mean"].dtype == np.float32 and np.array_equal(state["mean"], mean)
    assert np.array_equal(state["std"], std)
    assert state["key_counts"].dtype == np.uint64 and np.array_equal(state["key_counts"], np.arange(6))
    assert state["scheduler"] == scheduler.state_dict()
    for name, tensor in ema.state_dict().items():
        assert torch.equal(state["ema"][name], tensor)
    assert "rng_state" in state  # captured automatically


def test_bad_extra_state_is_rejected_with_its_name(tmp_path):
    model, optimizer = _trained()
    manager = _local_only(tmp_path)
    with pytest.raises(ValueError, match="reserved"):
        manager.save_checkpoint(model, optimizer, 0, 0, 1.0, step_size=1, sha256="x")
    with pytest.raises(TypeError, match=r"extra_state\['callback'\]"):
        manager.save_checkpoint(model, optimizer, 0, 0, 1.0, callback=object())
    assert manager.list_checkpoints() == []


_KILL_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from kpop_helpers.checkpoints import CheckpointManager, SyncRetry

    class Big(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1_500_000))
            self.b = torch.nn.Parameter(torch.zeros(7))

    model = Big()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    manager = CheckpointManager(sys.argv[1], 2, True, sys.argv[2], flush_on_exit_s=None,
                                sync_retry=SyncRetry(0.05, 0.2), async_save=sys.argv[3] == "async")
    state = manager.load_latest_checkpoint(model, optimizer)
    step = 0 if state is None else state["step"] + 1
    print("START", step, flush=True)
    while True:
        model.w.grad = torch.ones_like(model.w)
        optimizer.step()  # gives the optimizer momentum buffers worth saving
        with torch.no_grad():
            model.w.fill_(step)
            model.b.fill_(step)
        manager.save_checkpoint(model, optimizer, 0, step, float(step), data_position=step,
                                stats=np.full(4096, step, dtype=np.float64))
        step += 1
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_at_random_moments_never_breaks_the_previous_checkpoint(tmp_path):
    local, drive = tmp_path / "local", tmp_path / "drive"
    script = tmp_path / "saver.py"
    script.write_text(_KILL_SCRIPT)
    rng = random.Random(1234)
    temp_files_seen, resumed_steps = 0, []
    for round_index in range(4):
        mode = "async" if round_index % 2 else "sync"  # both save paths must survive the kill
        proc = subprocess.Popen([sys.executable, str(script), str(local), str(drive), mode], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
        try:
            started = proc.stdout.readline()
            assert started.startswith("START"), started
            resumed_steps.append(int(started.split()[1]))
            time.sleep(rng.uniform(0.25, 1.0))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        for folder in (local, drive):
            names = os.listdir(folder) if folder.is_dir() else []
            temp_files_seen += sum(is_temp_name(name) for name in names)
            assert all(CHECKPOINT_RE.match(n) or n.endswith(".json") or is_temp_name(n) for n in names), names
        # Every checkpoint the Drive side shows with a sidecar is complete and verified.
        for sidecar in drive.glob("checkpoint_*.json") if drive.is_dir() else []:
            pt = sidecar.with_suffix(".pt")
            if pt.exists():
                assert file_digest(pt).sha256 == json.loads(sidecar.read_text())["sha256"], pt

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a kill between .pt and sidecar leaves an unverifiable newest file
            manager = _local_only(local)
            assert not any(is_temp_name(n) for n in os.listdir(local)), "temp files must be cleaned on start"
            listed = manager.list_checkpoints()
            assert listed and all(CHECKPOINT_RE.match(entry["name"]) for entry in listed)
            model = torch.nn.Module()
            model.w = torch.nn.Parameter(torch.empty(1_500_000))
            model.b = torch.nn.Parameter(torch.empty(7))
            state = manager.load_latest_checkpoint(model)
        assert state is not None and state["step"] == listed[0]["step"]
        assert torch.all(model.w == state["step"]) and torch.all(model.b == state["step"])
        assert state["data_position"] == state["step"] and np.all(state["stats"] == state["step"])
        manager.close()
    assert resumed_steps == sorted(resumed_steps) and resumed_steps[-1] > 0, resumed_steps
    assert temp_files_seen >= 1, "no kill landed inside a write; the test did not exercise the crash path"


def test_async_save_snapshots_the_state_and_reports_write_errors(tmp_path):
    model, optimizer = _trained()
    manager = _local_only(tmp_path / "ckpt", async_save=True)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    path = manager.save_checkpoint(model, optimizer, 0, 1, 1.0, ema=model.state_dict())
    with torch.no_grad():  # training goes on immediately and changes the weights in place
        for parameter in model.parameters():
            parameter.add_(1.0)
    second = manager.save_checkpoint(model, optimizer, 0, 2, 1.0, ema=model.state_dict())  # reuses the buffers
    expected_second = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.0)
    assert manager.flush(timeout=30) and path.is_file() and second.is_file()
    for file, values in ((path, expected), (second, expected_second)):
        fresh = TinyNet()
        state = manager.load_checkpoint(file, fresh)
        for name, tensor in values.items():
            assert torch.equal(fresh.state_dict()[name], tensor) and torch.equal(state["ema"][name], tensor), name

    # The folder turns into a file: the background write fails and the next call raises it.
    for file in (tmp_path / "ckpt").iterdir():
        file.unlink()
    (tmp_path / "ckpt").rmdir()
    (tmp_path / "ckpt").write_bytes(b"")
    manager.save_checkpoint(model, optimizer, 0, 3, 1.0)
    with pytest.raises(OSError):
        manager.save_checkpoint(model, optimizer, 0, 4, 1.0)
    manager.close()


def test_temp_files_are_never_listed_and_are_cleaned_on_start(tmp_path):
    model, optimizer = _trained()
    manager = _local_only(tmp_path)
    good = manager.save_checkpoint(model, optimizer, 0, 10, 1.0)
    dead_pid = 2**22 + 12345  # above pid_max on default Linux, so never alive
    stale = tmp_path / f".checkpoint_epoch0_step20.pt.{dead_pid}.0badc0de.tmp"
    stale.write_bytes(b"partial")
    assert [entry["path"] for entry in manager.list_checkpoints()] == [good]
    _local_only(tmp_path)
    assert not stale.exists()
    own = temp_path_for(tmp_path / "checkpoint_epoch0_step30.pt")  # a live writer's temp file stays
    own.write_bytes(b"in progress")
    _local_only(tmp_path)
    assert own.exists()


def _three_checkpoints(folder: Path) -> tuple[CheckpointManager, list[Path], TinyNet]:
    manager = _local_only(folder)
    paths = []
    for step in (100, 200, 300):
        model, optimizer = _trained(seed=step)
        paths.append(manager.save_checkpoint(model, optimizer, 1, step, 1.0 / step))
    return manager, paths, _trained(seed=200)[0]


def test_truncated_newest_checkpoint_falls_back_with_a_warning(tmp_path):
    manager, paths, expected = _three_checkpoints(tmp_path)
    with open(paths[-1], "r+b") as f:
        f.truncate(paths[-1].stat().st_size // 2)
    model = TinyNet()
    with pytest.warns(UserWarning, match="truncated"):
        state = manager.load_latest_checkpoint(model)
    assert state["step"] == 200 and state["path"] == paths[1]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in expected.state_dict().items())
    with pytest.raises(DataError, match="size"):
        manager.load_checkpoint(paths[-1], TinyNet())


def test_same_size_corruption_is_caught_by_the_hash(tmp_path):
    manager, paths, _ = _three_checkpoints(tmp_path)
    size = paths[-1].stat().st_size
    with open(paths[-1], "r+b") as f:
        f.seek(size // 2)
        chunk = f.read(64)
        f.seek(size // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))
    assert paths[-1].stat().st_size == size
    with pytest.raises(DataError, match="sha256 mismatch"):
        manager.load_checkpoint(paths[-1], TinyNet())
    with pytest.warns(UserWarning, match="sha256"):
        state = manager.load_latest_checkpoint(TinyNet())
    assert state["step"] == 200


def test_load_latest_returns_none_for_an_empty_folder(tmp_path):
    assert _local_only(tmp_path).load_latest_checkpoint(TinyNet()) is None


def test_retention_keeps_newest_n_plus_best_on_both_sides(tmp_path):
    local, drive = tmp_path / "local", tmp_path / "drive"
    manager = CheckpointManager(local, 3, True, drive, best_metric="val_loss", best_mode="min",
                                sync_retry=FAST_RETRY, flush_on_exit_s=None)
    model, optimizer = _trained()
    val = [5.0, 1.0, 4.0, 3.0, 6.0, 7.0, 8.0, 9.0]
    for step, value in enumerate(val):
        manager.save_checkpoint(model, optimizer, 0, step, 1.0, metrics={"val_loss": value})
    assert manager.flush(timeout=30)

    def steps(folder: Path) -> list[int]:
        return sorted(int(CHECKPOINT_RE.match(p.name)["step"]) for p in folder.glob("*.pt"))

    assert steps(local) == [1, 5, 6, 7] and steps(drive) == [1, 5, 6, 7]
    assert manager.best_checkpoint_path.name == "checkpoint_epoch0_step1.pt"
    sidecars = {folder: sorted(p.name for p in folder.glob("checkpoint_*.json")) for folder in (local, drive)}
    assert sidecars[local] == sidecars[drive]
    manager.save_checkpoint(model, optimizer, 0, 8, 1.0, metrics={"val_loss": 0.5})  # new best
    assert manager.flush(timeout=30)
    assert steps(local) == [6, 7, 8] and steps(drive) == [6, 7, 8]
    manager.close()

    maximise = _local_only(tmp_path / "max", max_checkpoints=1, best_metric="accuracy", best_mode="max")
    for step, accuracy in enumerate([0.2, 0.9, 0.5]):
        maximise.save_checkpoint(model, optimizer, 0, step, 1.0, metrics={"accuracy": accuracy})
    assert [entry["step"] for entry in maximise.list_checkpoints()] == [2, 1]
    assert [entry["is_best"] for entry in maximise.list_checkpoints()] == [False, True]


def _draws(generator: np.random.Generator, torch_gen: torch.Generator) -> list:
    return [random.random(), random.gauss(0, 1), np.random.standard_normal(3).tolist(), np.random.randint(0, 2**31),
            generator.standard_normal(3).tolist(), generator.integers(0, 2**62, 2).tolist(),
            torch.randn(5).tolist(), torch.randint(0, 2**40, (2,)).tolist(),
            torch.randn(3, generator=torch_gen).tolist()]


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64])
def test_rng_restore_gives_bit_identical_draws_after_weights_only_load(tmp_path, bit_generator):
    generator = np.random.Generator(bit_generator(7))
    torch_gen = torch.Generator().manual_seed(11)
    random.gauss(0, 1)  # leaves a cached gaussian in python's and numpy's legacy generators
    np.random.standard_normal()
    generator.random(1)
    state = capture_rng_state(generator, torch_generators={"data": torch_gen})
    torch.save(state, tmp_path / "rng.pt")
    expected = _draws(generator, torch_gen)
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)
    _allowed_leaves_only(loaded, leaves=(torch.Tensor, int, str))  # tensors/ints/lists/dicts/strings only
    assert _draws(generator, torch_gen) != expected  # the generators moved on
    restore_rng_state(loaded, generator, torch_generators={"data": torch_gen})
    assert _draws(generator, torch_gen) == expected


def test_rng_state_saved_by_the_manager_resumes_the_same_stream(tmp_path):
    model, optimizer = _trained()
    manager = _local_only(tmp_path)
    manager.save_checkpoint(model, optimizer, 0, 1, 1.0)
    expected = (torch.rand(4).tolist(), np.random.rand(2).tolist(), random.random())
    state = manager.load_latest_checkpoint(TinyNet())
    restore_rng_state(state["rng_state"])
    assert (torch.rand(4).tolist(), np.random.rand(2).tolist(), random.random()) == expected


def test_secrets_never_reach_checkpoint_or_sidecar(tmp_path, monkeypatch):
    env_secret = "env-secret-value-7f3a9c"
    monkeypatch.setenv("HF_TOKEN", env_secret)
    model, optimizer = _trained()
    manager = _local_only(tmp_path)
    path = manager.save_checkpoint(
        model, optimizer, 0, 1, 1.0,
        metadata={"wandb_api_key": "meta-secret-111111", "notes": f"token was {env_secret}"},
        model_config={"max_tokens": 77, "hf_token": "cfg-secret-222222", "auth": {"password": "pw-secret-3333"},
                      "wandbApiKey": "camel-secret-44444"})
    for file in (path, path.with_suffix(".json"), tmp_path / "latest.json"):
        blob = file.read_bytes()
        for secret in (b"meta-secret-111111", b"cfg-secret-222222", b"pw-secret-3333", b"camel-secret-44444",
                       env_secret.encode()):
            assert secret not in blob, (file.name, secret)
    state = manager.load_checkpoint(path, TinyNet())
    assert state["model_config"]["max_tokens"] == 77 and state["model_config"]["hf_token"] == "***REDACTED***"


def test_export_weights_roundtrip_and_corruption(tmp_path):
    model, _ = _trained()
    mean, std = np.random.rand(263).astype(np.float32), np.random.rand(263).astype(np.float32) + 0.1
    path = export_weights(model, tmp_path / "export" / "mdm_ema", {"arch": "trans_enc", "latent_dim": 16},
                          mean=mean, std=std, metadata={"step": 1200})
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    loaded = load_exported_weights(path)
    assert loaded.config == {"arch": "trans_enc", "latent_dim": 16} and loaded.metadata == {"step": 1200}
    assert np.array_equal(loaded.mean, mean) and np.array_equal(loaded.std, std)
    assert all(torch.equal(v, loaded.state_dict[k]) for k, v in model.state_dict().items())
    half = load_exported_weights(export_weights(model.state_dict(), tmp_path / "half.safetensors", {},
                                                dtype=torch.float16))
    assert half.mean is None and all(v.dtype == torch.float16 for v in half.state_dict.values())
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="sha256"):
        load_exported_weights(path)
