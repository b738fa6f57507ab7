"""CheckpointManager: atomic, hash-verified, Drive-mirrored training checkpoints that survive a dying runtime.

Typical trainer loop::

    manager = CheckpointManager("checkpoints/run1", max_checkpoints=5, best_metric="val_loss")
    # Colab: mirrored to /content/drive/MyDrive/kpop_checkpoints/run1; elsewhere pass drive_dir=...
    state = manager.load_latest_checkpoint(model, optimizer, device="cuda", from_drive=True)
    if state is not None:
        restore_rng_state(state["rng_state"]); scheduler.load_state_dict(state["scheduler"]); ...
    ...
    manager.save_checkpoint(model, optimizer, epoch, step, loss, metrics={"val_loss": v},
                            ema=ema.state_dict(), scheduler=scheduler, scaler=scaler, data_position=i,
                            model_config=cfg, mean=mean, std=std, text_encoder="minilm", wandb_run_id=run_id)
    manager.close()   # waits for the Drive copies

Constructor: ``CheckpointManager(checkpoint_dir="checkpoints", max_checkpoints=5, google_drive_sync=True,
drive_dir=None, *, best_metric=None, best_mode="min", sync_retry=None, run_name=None, capture_rng=True,
verify_writes=True, async_save=False, flush_on_exit_s=120.0, stale_temp_age_s=3600.0)``.
``best_metric`` is a key of ``metrics`` (or "loss"). Without Colab, sync needs an explicit ``drive_dir``;
with ``google_drive_sync=False`` an explicit ``drive_dir`` is still read by ``from_drive=True``.

Guarantees:

- ``save_checkpoint`` writes ``checkpoint_epoch{E}_step{S}.pt`` atomically (temp file, fsync, ``os.replace``),
  re-reads it to check the hash (``verify_writes``), writes its ``.json`` sidecar (sha256, size, epoch, step,
  loss, metrics, metadata, time), then ``latest.json``, and only then prunes to the newest
  ``max_checkpoints`` plus the best by ``best_metric``. A SIGKILL at any instant leaves the previous
  checkpoint loadable; leftover temp files are removed on the next start.
- ``async_save=True`` copies the state to CPU memory and does the file work in a background thread
  (one write in flight; ``flush``/``load_*``/``list_checkpoints`` wait for it, errors surface on the next
  call). Recommended for large models or fast steps: the caller blocks only for the copy.
- Everything in a checkpoint loads with ``torch.load(weights_only=True)``: extra state is encoded by
  :func:`kpop_helpers.checkpoints.state.encode_state` (numpy arrays come back as numpy arrays, objects with
  ``state_dict()`` as their state dict), and an RNG snapshot is added as ``rng_state`` unless given.
  Credential-like entries are scrubbed from metadata and extra state.
- Loading checks the sha256 against the sidecar; ``load_latest_checkpoint`` warns and falls back to the
  previous good checkpoint when the newest is truncated or corrupt, and with ``from_drive=True`` takes the
  newest valid copy from either side, copying a Drive one back into the local folder.
- Drive mirroring runs in :class:`kpop_helpers.checkpoints.sync.DriveSync`; training never waits for it.
"""

from __future__ import annotations

import atexit
import logging
import pickle
import time
import warnings
import weakref
import zipfile
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from kpop_helpers.checkpoints.atomic import (
    LATEST_NAME, SIDECAR_FORMAT, CheckpointInfo, ChecksumError, SourceFileError, atomic_torch_save,
    atomic_write_bytes, atomic_write_json, best_checkpoint, checkpoint_name, copy_verified, delete_checkpoint,
    read_sidecar, remove_stale_temp_files, scan_checkpoints, file_digest, sidecar_path, split_retention,
)
from kpop_helpers.checkpoints.state import (
    StagingBuffers, capture_rng_state, decode_state, encode_state, scrub_secrets,
)
from kpop_helpers.checkpoints.sync import DriveSync, RetentionPolicy, SyncRetry, resolve_drive_dir
from kpop_helpers.errors import DataError

log = logging.getLogger("kpop_helpers.checkpoints")

FORMAT_VERSION = 1
RESERVED_KEYS = frozenset({"epoch", "step", "loss", "metrics", "metadata", "model", "optimizer", "path", "name",
                           "format", "version", "sha256", "size", "time", "extra", "model_state", "optimizer_state"})
_LIVE: weakref.WeakSet[CheckpointManager] = weakref.WeakSet()
_LOAD_ERRORS = (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile, OSError)


class CheckpointManager:
    """Saves, prunes, verifies and mirrors training checkpoints; see the module docstring for the guarantees."""

    def __init__(self, checkpoint_dir: str | Path = "checkpoints", max_checkpoints: int = 5,
                 google_drive_sync: bool = True, drive_dir: str | Path | None = None, *,
                 best_metric: str | None = None, best_mode: str = "min", sync_retry: SyncRetry | None = None,
                 run_name: str | None = None, capture_rng: bool = True, verify_writes: bool = True,
                 async_save: bool = False, flush_on_exit_s: float | None = 120.0,
                 stale_temp_age_s: float = 3600.0):
        if int(max_checkpoints) < 1:
            raise ValueError(f"max_checkpoints must be >= 1, got {max_checkpoints}")
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
        self.checkpoint_dir = Path(checkpoint_dir).expanduser().resolve()
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.retention = RetentionPolicy(int(max_checkpoints), best_metric, best_mode)
        self.capture_rng = capture_rng
        self.verify_writes = verify_writes
        self.flush_on_exit_s = flush_on_exit_s
        self.async_save = async_save
        self.last_save_seconds: float | None = None  # time save_checkpoint blocked the caller
        self.last_write_seconds: float | None = None  # time the file work took (in the background when async)
        self._writer: ThreadPoolExecutor | None = None
        self._pending_write: Future | None = None
        self._staging: StagingBuffers | None = None
        # Our own pid in a temp name can only be a leftover of a dead process that had the same pid,
        # unless another live manager of this process writes to the same folder.
        shared = any(other.checkpoint_dir == self.checkpoint_dir for other in list(_LIVE))
        removed = remove_stale_temp_files(self.checkpoint_dir, max_age_s=stale_temp_age_s,
                                          own_pid_is_stale=not shared)
        if removed:
            log.info("removed %d unfinished temp file(s) from %s", len(removed), self.checkpoint_dir)
        self.drive_dir, anchor = resolve_drive_dir(google_drive_sync, drive_dir,
                                                    run_name or self.checkpoint_dir.name)
        if self.drive_dir is not None and self.drive_dir == self.checkpoint_dir:
            raise ValueError(f"drive_dir and checkpoint_dir are the same folder: {self.drive_dir}")
        self.sync: DriveSync | None = None
        if self.drive_dir is not None and google_drive_sync:
            self.sync = DriveSync(self.checkpoint_dir, self.drive_dir, retention=self.retention, retry=sync_retry,
                                  anchor=anchor, stale_temp_age_s=stale_temp_age_s)
            self.sync.start()
            log.info("checkpoints: %s, mirrored to %s", self.checkpoint_dir, self.drive_dir)
        _LIVE.add(self)

    # ------------------------------------------------------------ saving

    def save_checkpoint(self, model: torch.nn.Module | Mapping, optimizer: Any, epoch: int, step: int,
                        loss: float | torch.Tensor | None, metrics: Mapping | None = None,
                        metadata: Mapping | None = None, **extra_state: Any) -> Path:
        """Atomically write ``checkpoint_epoch{E}_step{S}.pt`` + sidecar, prune, and queue the Drive copy.

        With ``async_save=True`` this returns once the state is copied to CPU memory; the file appears
        shortly after (``flush``/``load_*`` wait for it, and a write error is raised by the next call).
        """
        started = time.perf_counter()
        self._wait_for_write()  # one write in flight at most: bounded memory, errors surface here
        clash = RESERVED_KEYS.intersection(extra_state)
        if clash:
            raise ValueError(f"save_checkpoint: extra state names {sorted(clash)} are reserved")
        if self.capture_rng and "rng_state" not in extra_state:
            extra_state["rng_state"] = capture_rng_state()
        snapshot: StagingBuffers | bool = False
        if self.async_save:  # the previous write is done, so its staging buffers are free again
            snapshot = self._staging = self._staging or StagingBuffers()
        loss_value = None if loss is None else float(loss.item() if isinstance(loss, torch.Tensor) else loss)
        payload = {
            "format": SIDECAR_FORMAT, "version": FORMAT_VERSION, "epoch": int(epoch), "step": int(step),
            "loss": loss_value, "metrics": {str(k): _plain_number(v) for k, v in (metrics or {}).items()},
            "metadata": scrub_secrets(encode_state(dict(metadata or {}), "metadata")), "time": time.time(),
            "model": encode_state(_state_dict_of(model), "model", snapshot=snapshot),
            "optimizer": None if optimizer is None else encode_state(_state_dict_of(optimizer), "optimizer",
                                                                      snapshot=snapshot),
            "extra": scrub_secrets(encode_state(extra_state, "extra_state", snapshot=snapshot)),
        }
        final = self.checkpoint_dir / checkpoint_name(epoch, step)
        if snapshot:
            snapshot.finish()
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kpop-checkpoint-writer")
            self._pending_write = self._writer.submit(self._write, final, payload, sorted(extra_state))
        else:
            self._write(final, payload, sorted(extra_state))
        self.last_save_seconds = time.perf_counter() - started
        return final

    def _write(self, final: Path, payload: dict, extra_keys: list[str]) -> Path:
        """The file work of a save: payload, verification, sidecar, manifest, pruning, Drive request."""
        started = time.perf_counter()
        digest = atomic_torch_save(payload, final)
        if self.verify_writes and file_digest(final) != digest:
            raise OSError(f"{final}: the bytes on disk differ from the bytes written (failing disk?); "
                          "older checkpoints were kept")
        sidecar = {"format": SIDECAR_FORMAT, "version": FORMAT_VERSION, "file": final.name,
                   **{key: payload[key] for key in ("epoch", "step", "loss", "metrics", "metadata", "time")},
                   "sha256": digest.sha256, "size": digest.size,
                   "time_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(payload["time"])),
                   "extra_keys": extra_keys, "torch": torch.__version__}
        atomic_write_json(sidecar_path(final), sidecar)
        self._prune_local()
        if self.sync is not None:
            self.sync.request()
        self.last_write_seconds = time.perf_counter() - started
        log.info("saved %s (%.1f MB, %.2f s)", final.name, digest.size / 1e6, self.last_write_seconds)
        return final

    def _wait_for_write(self, timeout: float | None = None) -> bool:
        """Wait for the background write (if any); re-raise its error here. False when ``timeout`` ran out."""
        pending = self._pending_write
        if pending is None:
            return True
        if not wait([pending], timeout).done:
            return False
        self._pending_write = None
        pending.result()
        return True

    def _prune_local(self) -> None:
        """Write the manifest for the retained set, then delete the rest (the new checkpoint is already verified)."""
        infos = scan_checkpoints(self.checkpoint_dir)
        keep, delete = split_retention(infos, self.retention.max_checkpoints, self.retention.metric,
                                       self.retention.mode)
        best = best_checkpoint(infos, self.retention.metric, self.retention.mode)
        manifest = {"format": "kpop_checkpoint_manifest", "version": FORMAT_VERSION, "updated": time.time(),
                    "latest": _summary(infos[0]) if infos else None,
                    "best": None if best is None else {**_summary(best), "metric": self.retention.metric,
                                                       "mode": self.retention.mode,
                                                       "value": best.metric(self.retention.metric)},
                    "checkpoints": [info.name for info in keep]}
        atomic_write_json(self.checkpoint_dir / LATEST_NAME, manifest)
        for info in delete:
            try:
                delete_checkpoint(info)
            except OSError as exc:  # e.g. still open on Windows: try again after the next save
                log.warning("could not delete old checkpoint %s: %s", info.path, exc)

    # ------------------------------------------------------------ loading

    def load_checkpoint(self, path: str | Path, model: torch.nn.Module | None, optimizer: Any = None,
                        device: str | torch.device = "cpu", *, strict: bool = True) -> dict:
        """Verify ``path`` against its sidecar, load it into ``model``/``optimizer``, return the rest of the state.

        The dict holds epoch, step, loss, metrics, metadata, path, time and every extra state by its name
        (``rng_state``, ``ema``, ...); with ``model=None``/``optimizer=None`` their state dicts come back as
        ``model_state``/``optimizer_state``. Raises DataError when the file is missing, truncated or corrupt.
        """
        self._wait_for_write()
        payload = self._read_verified(Path(path), device)
        return self._apply(Path(path), payload, model, optimizer, strict)

    def load_latest_checkpoint(self, model: torch.nn.Module | None, optimizer: Any = None,
                               device: str | torch.device = "cpu", from_drive: bool = False, *,
                               strict: bool = True) -> dict | None:
        """Load the newest valid checkpoint (warning about and skipping bad ones); None when there is none."""
        self._wait_for_write()
        for info, side in self._candidates(from_drive):
            path = info.path
            try:
                if side == "drive":
                    path = self._copy_back(info)
                payload = self._read_verified(path, device)
            except (DataError, ChecksumError, SourceFileError, OSError) as exc:
                warnings.warn(f"skipping checkpoint {info.path}: {exc}; falling back to an older one", stacklevel=2)
                log.warning("skipping checkpoint %s: %s", info.path, exc)
                continue
            return self._apply(path, payload, model, optimizer, strict)
        return None

    def list_checkpoints(self) -> list[dict]:
        """Local checkpoints newest first: path, name, epoch, step, loss, metrics, metadata, sha256, size, time."""
        self._wait_for_write()
        infos = scan_checkpoints(self.checkpoint_dir)
        best = best_checkpoint(infos, self.retention.metric, self.retention.mode)
        return [{**info.as_dict(), "is_best": info is best} for info in infos]

    @property
    def best_checkpoint_path(self) -> Path | None:
        """The local checkpoint with the best ``best_metric`` (None without a metric)."""
        self._wait_for_write()
        best = best_checkpoint(scan_checkpoints(self.checkpoint_dir), self.retention.metric, self.retention.mode)
        return None if best is None else best.path

    def _candidates(self, from_drive: bool) -> list[tuple[CheckpointInfo, str]]:
        local = [(info, "local") for info in scan_checkpoints(self.checkpoint_dir)]
        if not from_drive:
            return local
        if self.drive_dir is None:
            warnings.warn("from_drive=True but no Drive folder is configured; using local checkpoints", stacklevel=3)
            return local
        try:
            drive = scan_checkpoints(self.drive_dir)
        except OSError as exc:
            warnings.warn(f"Drive folder {self.drive_dir} is not readable ({exc}); using local checkpoints",
                          stacklevel=3)
            return local
        remote = [(info, "drive") for info in drive]
        # Newest first across both sides; on a tie the local copy goes first (no copy needed) and the
        # Drive copy of the same checkpoint stays as the fallback when the local file turns out corrupt.
        return sorted(local + remote, key=lambda pair: (*pair[0].sort_key(), pair[1] == "local"), reverse=True)

    def _copy_back(self, info: CheckpointInfo) -> Path:
        """Copy a Drive checkpoint into the local folder, verifying it on the way; returns the local path."""
        if info.digest is None:
            raise DataError("has no readable sidecar, so its content cannot be verified", path=info.path,
                            field="sha256", expected="a .json sidecar with sha256 and size")
        lock = self.sync.lock if self.sync is not None else _NullLock()
        with lock:
            sidecar = info.sidecar.read_bytes()
            target = self.checkpoint_dir / info.name
            copy_verified(info.path, target, info.digest)
            atomic_write_bytes(sidecar_path(target), sidecar, create_folder=False)
        log.info("copied %s back from Drive", info.name)
        return target

    def _read_verified(self, path: Path, device: str | torch.device) -> dict:
        if not path.is_file():
            raise DataError("checkpoint file not found", path=path, expected="an existing checkpoint_*.pt file")
        sidecar = read_sidecar(path)
        if sidecar is None:
            warnings.warn(f"{path}: no sidecar, so its sha256 cannot be checked; loading it anyway", stacklevel=3)
        else:
            try:
                actual = file_digest(path)
            except OSError as exc:
                raise DataError(f"cannot read checkpoint: {exc}", path=path) from exc
            if actual.size != sidecar.get("size"):
                raise DataError(f"checkpoint is {actual.size} bytes (truncated or replaced)", path=path,
                                field="size", expected=f"{sidecar.get('size')} bytes as in the sidecar")
            if actual.sha256 != sidecar.get("sha256"):
                raise DataError(f"sha256 mismatch: content is {actual.sha256[:16]}... (corrupted)", path=path,
                                field="sha256", expected=f"{str(sidecar.get('sha256'))[:16]}... as in the sidecar")
        try:
            payload = torch.load(path, map_location=device, weights_only=True)
        except _LOAD_ERRORS as exc:
            raise DataError(f"cannot load checkpoint: {type(exc).__name__}: {exc}", path=path) from exc
        if not isinstance(payload, dict) or payload.get("format") != SIDECAR_FORMAT or "model" not in payload:
            raise DataError("not a kpop_helpers checkpoint", path=path, field="format",
                            expected=f"a dict with format={SIDECAR_FORMAT!r} and a 'model' state dict")
        return payload

    def _apply(self, path: Path, payload: dict, model: Any, optimizer: Any, strict: bool) -> dict:
        result: dict[str, Any] = {key: payload.get(key) for key in ("epoch", "step", "loss", "metrics", "metadata")}
        result["path"] = path
        result["time"] = payload.get("time")
        if model is not None:
            _unwrap(model).load_state_dict(payload["model"], strict=strict)
        else:
            result["model_state"] = payload["model"]
        if optimizer is not None and payload.get("optimizer") is not None:
            optimizer.load_state_dict(payload["optimizer"])
        elif optimizer is None:
            result["optimizer_state"] = payload.get("optimizer")
        result.update(decode_state(payload.get("extra") or {}))
        result["metadata"] = decode_state(result["metadata"] or {})
        return result

    # ------------------------------------------------------------ Drive and lifetime

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every checkpoint saved so far is written and verified on Drive; False on timeout."""
        started = time.monotonic()
        if not self._wait_for_write(timeout):
            return False
        if self.sync is None:
            return True
        return self.sync.flush(None if timeout is None else max(0.0, timeout - (time.monotonic() - started)))

    def close(self, timeout: float | None = None) -> bool:
        """Finish the pending write, flush Drive (up to ``timeout``) and stop the threads; True when caught up."""
        _LIVE.discard(self)
        try:
            self._wait_for_write()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None
            caught_up = True if self.sync is None else self.sync.close(timeout)
        return caught_up

    def sync_status(self) -> dict | None:
        """Drive mirror state (available, pending, last_error, ...), None when not syncing."""
        return None if self.sync is None else self.sync.status()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def flush_all(timeout: float | None = None) -> bool:
    """Flush every live manager's Drive copies (used by colab.flush_and_unmount); True when all caught up."""
    return all([manager.flush(timeout) for manager in list(_LIVE)])


@atexit.register
def _flush_at_exit() -> None:
    for manager in list(_LIVE):
        busy = manager._pending_write is not None or (manager.sync is not None and manager.sync.pending)
        if busy and manager.flush_on_exit_s:
            log.warning("waiting up to %.0f s for checkpoint writes and Drive copies before exit",
                        manager.flush_on_exit_s)
            try:
                manager.close(manager.flush_on_exit_s)
            except Exception:  # nothing can be raised to anyone at exit; make sure it is seen
                log.exception("checkpoint write failed at exit")


def _unwrap(model: Any) -> Any:
    """The module whose state dict is saved: torch.compile and DataParallel/DDP wrappers are peeled off."""
    model = getattr(model, "_orig_mod", model)
    if isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def _state_dict_of(obj: Any) -> Any:
    return obj if isinstance(obj, Mapping) else _unwrap(obj).state_dict()


def _plain_number(value: Any) -> Any:
    """Metrics as plain Python values (tensors and numpy scalars become floats)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, str)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _summary(info: CheckpointInfo) -> dict:
    return {"file": info.name, "epoch": info.epoch, "step": info.step, "sha256": info.sha256, "size": info.size,
            "time": info.time}


class _NullLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: Any) -> None:
        return None
