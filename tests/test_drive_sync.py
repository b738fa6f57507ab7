"""Drive mirroring against a real second folder: verified copies, outages, catching up, loading from Drive."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from kpop_helpers.checkpoints import CheckpointManager, SyncRetry
from kpop_helpers.checkpoints.atomic import CHECKPOINT_RE, file_digest

FAST_RETRY = SyncRetry(initial_delay_s=0.05, max_delay_s=0.2)


class Net(torch.nn.Module):
    def __init__(self, width: int = 256):
        super().__init__()
        self.layer = torch.nn.Linear(width, width)  # ~260 kB of weights: copies take real I/O


def _net(value: float) -> Net:
    net = Net()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.fill_(value)
    return net


def _manager(local: Path, drive: Path, **kwargs) -> CheckpointManager:
    kwargs.setdefault("max_checkpoints", 3)
    return CheckpointManager(local, google_drive_sync=True, drive_dir=drive, sync_retry=FAST_RETRY,
                             flush_on_exit_s=None, **kwargs)


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if CHECKPOINT_RE.match(p.name)}


def _assert_verified_copy(local: Path, drive: Path) -> None:
    """Every local checkpoint is on Drive, byte-identical and matching its sidecar hash."""
    assert _names(local) == _names(drive)
    for name in _names(local):
        sidecar = json.loads((drive / name).with_suffix(".json").read_text())
        assert file_digest(drive / name).sha256 == sidecar["sha256"] == file_digest(local / name).sha256


def _wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_sync_copies_verify_hashes_and_manifest(tmp_path):
    local, drive = tmp_path / "local", tmp_path / "drive"
    with _manager(local, drive) as manager:
        for step in range(4):
            manager.save_checkpoint(_net(step), None, 0, step, float(step))
        assert manager.flush(timeout=30)
        _assert_verified_copy(local, drive)
        assert _names(drive) == {f"checkpoint_epoch0_step{s}.pt" for s in (1, 2, 3)}
        assert (drive / "latest.json").read_bytes() == (local / "latest.json").read_bytes()
        assert manager.sync_status()["available"] is True


def test_training_never_blocks_while_drive_is_gone_and_sync_catches_up(tmp_path):
    local, drive, away = tmp_path / "local", tmp_path / "drive", tmp_path / "drive_unmounted"
    manager = _manager(local, drive)
    saved = []
    for step in range(2):
        saved.append(manager.save_checkpoint(_net(step), None, 0, step, 1.0))
    assert manager.flush(timeout=30)
    baseline = manager.last_save_seconds

    # Drive vanishes and its path turns into a regular file: every mkdir/open/listing there fails with OSError.
    drive.rename(away)
    drive.write_bytes(b"not a folder")
    latencies = []
    for step in range(2, 9):
        started = time.perf_counter()
        saved.append(manager.save_checkpoint(_net(step), None, 0, step, 1.0))
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)  # let the sync thread hit the outage and back off between saves
    assert _wait_for(lambda: manager.sync_status()["available"] is False)
    assert "NotADirectoryError" in manager.sync_status()["last_error"]
    started = time.perf_counter()
    assert manager.flush(timeout=0.3) is False  # flush honours its timeout instead of hanging
    assert time.perf_counter() - started < 2.0
    # Saving does not wait for Drive: each save costs what a save costs, not a retry cycle.
    assert max(latencies) < max(1.0, 20 * baseline), (latencies, baseline)
    assert _names(local) == {f"checkpoint_epoch0_step{s}.pt" for s in (6, 7, 8)}
    assert _names(away) == {f"checkpoint_epoch0_step{s}.pt" for s in (0, 1)}  # nothing pruned while away

    drive.unlink()
    away.rename(drive)
    assert manager.flush(timeout=30)
    _assert_verified_copy(local, drive)
    assert manager.sync_status()["available"] is True
    assert manager.close(timeout=10)


def test_drive_missing_at_start_is_created_once_it_can_be(tmp_path):
    blocker = tmp_path / "MyDrive"
    blocker.write_bytes(b"a file where the Drive folder should be")
    drive = blocker / "kpop_checkpoints" / "run"
    local = tmp_path / "local"
    manager = _manager(local, drive)
    manager.save_checkpoint(_net(1), None, 0, 1, 1.0)
    assert manager.flush(timeout=0.3) is False
    assert manager.sync_status()["available"] is False
    blocker.unlink()
    assert manager.flush(timeout=30)
    _assert_verified_copy(local, drive)
    manager.close()


def test_vanished_drive_folder_is_not_recreated(tmp_path):
    """Recreating a vanished mount folder would write to the local disk and block a later remount."""
    local, drive = tmp_path / "local", tmp_path / "drive"
    manager = _manager(local, drive)
    manager.save_checkpoint(_net(1), None, 0, 1, 1.0)
    assert manager.flush(timeout=30)
    shutil.rmtree(drive)
    manager.save_checkpoint(_net(2), None, 0, 2, 1.0)
    assert manager.flush(timeout=0.5) is False
    assert not drive.exists()
    drive.mkdir()  # the mount comes back (empty): everything retained locally is copied again
    assert manager.flush(timeout=30)
    _assert_verified_copy(local, drive)
    manager.close()


def test_stale_drive_temp_files_are_removed_and_never_listed(tmp_path):
    local, drive = tmp_path / "local", tmp_path / "drive"
    drive.mkdir()
    stale = drive / ".checkpoint_epoch0_step9.pt.4194999.deadbeef.tmp"  # pid above Linux pid_max: dead
    stale.write_bytes(b"half a copy")
    with _manager(local, drive) as manager:
        manager.save_checkpoint(_net(1), None, 0, 1, 1.0)
        assert manager.flush(timeout=30)
        assert not stale.exists()
        _assert_verified_copy(local, drive)


def _load(manager: CheckpointManager, **kwargs) -> tuple[dict | None, Net]:
    net = Net()
    return manager.load_latest_checkpoint(net, from_drive=True, **kwargs), net


def test_from_drive_restores_a_fresh_runtime_and_picks_the_newer_valid_side(tmp_path):
    drive = tmp_path / "drive"
    with _manager(tmp_path / "runtime_a", drive) as first:
        for step in range(5):
            first.save_checkpoint(_net(step), None, 0, step, 1.0)
        assert first.flush(timeout=30)

    # A new runtime with an empty local disk: the newest Drive checkpoint is copied back and loaded.
    fresh_local = tmp_path / "runtime_b"
    reader = CheckpointManager(fresh_local, 3, google_drive_sync=False, drive_dir=drive, flush_on_exit_s=None)
    state, net = _load(reader)
    assert state["step"] == 4 and state["path"] == fresh_local / "checkpoint_epoch0_step4.pt"
    assert torch.all(net.layer.weight == 4)
    assert file_digest(state["path"]).sha256 == file_digest(drive / "checkpoint_epoch0_step4.pt").sha256

    # The local side is newer (saved while not syncing): it wins.
    reader.save_checkpoint(_net(5), None, 0, 5, 1.0)
    state, net = _load(reader)
    assert state["step"] == 5 and torch.all(net.layer.weight == 5)

    # Drive is newer but its newest copy is corrupt: warn and take the next valid one, from either side.
    with _manager(tmp_path / "runtime_c", drive) as other:
        other.save_checkpoint(_net(6), None, 0, 6, 1.0)
        other.save_checkpoint(_net(7), None, 0, 7, 1.0)
        assert other.flush(timeout=30)
    newest = drive / "checkpoint_epoch0_step7.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="checkpoint_epoch0_step7"):
        state, net = _load(reader)
    assert state["step"] == 6 and torch.all(net.layer.weight == 6)
    assert not (fresh_local / "checkpoint_epoch0_step7.pt").exists()  # the corrupt copy never lands locally


def test_from_drive_without_reachable_drive_uses_local(tmp_path):
    local = tmp_path / "local"
    manager = CheckpointManager(local, 3, google_drive_sync=False, drive_dir=tmp_path / "missing",
                                flush_on_exit_s=None)
    manager.save_checkpoint(_net(3), None, 0, 3, 1.0)
    with pytest.warns(UserWarning, match="not readable"):
        state, _ = _load(manager)
    assert state["step"] == 3


def test_from_drive_repairs_a_corrupt_local_copy_of_the_newest_checkpoint(tmp_path):
    local, drive = tmp_path / "local", tmp_path / "drive"
    with _manager(local, drive) as manager:
        for step in range(3):
            manager.save_checkpoint(_net(step), None, 0, step, 1.0)
        assert manager.flush(timeout=30)
        newest = local / "checkpoint_epoch0_step2.pt"
        with open(newest, "r+b") as f:
            f.truncate(newest.stat().st_size - 100)
        with pytest.warns(UserWarning, match="truncated"):
            state, net = _load(manager)
        assert state["step"] == 2 and torch.all(net.layer.weight == 2)
        assert file_digest(newest).sha256 == file_digest(drive / newest.name).sha256  # repaired from Drive


def test_saves_do_not_wait_for_a_stuck_drive_copy(tmp_path):
    """A FUSE call can hang for minutes; the sync thread holds its Drive lock for as long, saving must not care."""
    local, drive = tmp_path / "local", tmp_path / "drive"
    manager = _manager(local, drive)
    manager.save_checkpoint(_net(0), None, 0, 0, 1.0)
    assert manager.flush(timeout=30)
    with manager.sync.lock:  # the Drive side is now stuck exactly as inside a hanging copy
        started = time.perf_counter()
        for step in range(1, 4):
            manager.save_checkpoint(_net(step), None, 0, step, 1.0)
        assert time.perf_counter() - started < 5.0
        assert manager.flush(timeout=0.3) is False
        assert _names(drive) == {"checkpoint_epoch0_step0.pt"}
    assert manager.flush(timeout=30)
    _assert_verified_copy(local, drive)
    manager.close()


def test_sync_outside_colab_without_drive_dir_is_disabled_with_a_log_line(tmp_path, caplog):
    with caplog.at_level("INFO", logger="kpop_helpers.checkpoints"):
        manager = CheckpointManager(tmp_path, google_drive_sync=True, flush_on_exit_s=None)
    assert manager.sync is None and manager.drive_dir is None and manager.sync_status() is None
    assert "Drive sync disabled" in caplog.text
    assert manager.flush(timeout=0) and manager.close()
