"""Background mirror of a local checkpoint folder onto Google Drive (or any second folder).

Training never waits for Drive: :meth:`DriveSync.request` only sets an event. The worker thread then
*reconciles* the two folders: every checkpoint retained locally whose sidecar hash is not yet on Drive
is copied (newest first) to a temp name on Drive, re-read and verified against the sidecar's sha256 and
size, and renamed; then the sidecar and ``latest.json`` follow, and Drive is pruned to the newest
``max_checkpoints`` plus the best (only files already verified there are ever counted, so an old copy
goes only after its replacement is safe). Because the pending work is recomputed by comparing folders,
nothing is lost when Drive disappears (unmounted folder, a file where the folder was, writes failing
with OSError): the thread retries with exponential back-off and catches up when Drive returns.

The Drive folder is created at most once, and only below an *anchor* that already exists (in Colab,
``/content/drive/MyDrive``): recreating a vanished mount point would write to the local disk and block
the next ``drive.mount``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from kpop_helpers.checkpoints.atomic import (
    LATEST_NAME, ChecksumError, SourceFileError, atomic_write_bytes, copy_verified, delete_checkpoint,
    remove_stale_temp_files, scan_checkpoints, split_retention,
)
from kpop_helpers.colab import default_drive_dir, drive_mount_point, drive_mounted, in_colab, mount_drive

log = logging.getLogger("kpop_helpers.checkpoints")


@dataclass
class SyncRetry:
    """Exponential back-off between attempts while Drive is unavailable."""

    initial_delay_s: float = 2.0
    max_delay_s: float = 60.0
    factor: float = 2.0
    jitter: float = 0.1

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (>= 1)."""
        base = min(self.max_delay_s, self.initial_delay_s * self.factor ** max(0, failures - 1))
        return base * (1.0 + self.jitter * random.random())


@dataclass
class RetentionPolicy:
    """Which checkpoints a folder keeps: the newest ``max_checkpoints`` plus the best by ``metric``."""

    max_checkpoints: int = 5
    metric: str | None = None
    mode: str = "min"


class DriveSync:
    """Worker thread that mirrors ``local_dir`` into ``drive_dir`` with verified copies."""

    def __init__(self, local_dir: Path, drive_dir: Path, *, retention: RetentionPolicy,
                 retry: SyncRetry | None = None, anchor: Path | None = None, stale_temp_age_s: float = 3600.0):
        self.local_dir = Path(local_dir)
        self.drive_dir = Path(drive_dir)
        self.retention = retention
        self.retry = retry or SyncRetry()
        self.anchor = anchor
        self.stale_temp_age_s = stale_temp_age_s
        self._drive_seen = False
        self._requested = 0
        self._completed = 0
        self._failures = 0
        self._stop = False
        self._wake = threading.Event()
        self._done = threading.Condition()
        self.lock = threading.RLock()  # held while touching Drive; the loader takes it to read Drive safely
        self.available: bool | None = None
        self.last_error: str | None = None
        self.last_success: float | None = None
        self.copied: deque[str] = deque(maxlen=256)  # names copied during this session, in order
        self._thread = threading.Thread(target=self._run, name=f"kpop-drive-sync:{self.drive_dir.name}", daemon=True)

    # ------------------------------------------------------------ API used by the manager

    def start(self) -> None:
        """Start the worker and schedule a first reconcile (catches up with an earlier session)."""
        self._thread.start()
        self.request()

    def request(self) -> int:
        """Ask for a reconcile without waiting; returns the generation that :meth:`flush` waits for."""
        with self._done:
            self._requested += 1
            generation = self._requested
        self._wake.set()
        return generation

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything saved before this call is on Drive; False on timeout or when stopped."""
        target = self.request()
        deadline = None if timeout is None else time.monotonic() + timeout
        next_report = time.monotonic() + 60.0
        with self._done:
            while self._completed < target:
                if not self._thread.is_alive():
                    return False
                now = time.monotonic()
                remaining = None if deadline is None else deadline - now
                if remaining is not None and remaining <= 0:
                    return False
                if now >= next_report:  # an endless wait must say what it waits for
                    log.warning("still waiting for Drive %s: %s", self.drive_dir, self.last_error or "copying")
                    next_report = now + 60.0
                # Wake up now and then to notice a dead thread even if nobody notifies.
                self._done.wait(1.0 if remaining is None else min(remaining, 1.0))
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to ``timeout``), then stop the worker; returns whether Drive was fully caught up."""
        caught_up = self.flush(timeout) if self._thread.is_alive() else False
        self._stop = True
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)
        return caught_up

    @property
    def pending(self) -> bool:
        """True while a requested reconcile has not completed."""
        return self._completed < self._requested

    def status(self) -> dict:
        """Snapshot for logs and notebooks."""
        return {"drive_dir": str(self.drive_dir), "available": self.available, "pending": self.pending,
                "last_error": self.last_error, "last_success": self.last_success, "failures": self._failures,
                "copied": len(self.copied)}

    # ------------------------------------------------------------ worker

    def _run(self) -> None:
        while not self._stop:
            delay = self.retry.delay(self._failures) if self._failures else None
            self._wake.wait(delay)
            self._wake.clear()
            if self._stop:
                break
            with self._done:
                generation = self._requested
            if generation <= self._completed and not self._failures:
                continue
            try:
                with self.lock:
                    self.reconcile()
            except (OSError, ChecksumError) as exc:
                self._record_failure(exc)
                continue
            except Exception as exc:  # a bug must not kill the thread silently: log, back off, retry
                log.exception("Drive sync: unexpected error")
                self._record_failure(exc)
                continue
            if self._failures or self.available is False:
                log.warning("Drive sync: %s is reachable again; caught up", self.drive_dir)
            self._failures = 0
            self.available = True
            self.last_error = None
            self.last_success = time.time()
            with self._done:
                self._completed = max(self._completed, generation)
                self._done.notify_all()

    def _record_failure(self, exc: BaseException) -> None:
        self._failures += 1
        self.available = False
        self.last_error = f"{type(exc).__name__}: {exc}"
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(level, "Drive sync: %s unavailable (%s); training continues, retrying in about %.0f s",
                self.drive_dir, self.last_error, self.retry.delay(self._failures))
        with self._done:
            self._done.notify_all()

    def _ensure_drive_dir(self) -> None:
        drive = self.drive_dir
        if drive.is_dir():
            self._drive_seen = True
            return
        if drive.exists():
            raise NotADirectoryError(f"Drive path {drive} exists but is not a folder")
        if self._drive_seen:
            raise FileNotFoundError(f"Drive folder {drive} disappeared (Drive unmounted?)")
        if self.anchor is not None and not self.anchor.is_dir():
            raise FileNotFoundError(f"{self.anchor} is not there (Drive not mounted?)")
        drive.mkdir(parents=True, exist_ok=True)
        self._drive_seen = True

    def reconcile(self) -> None:
        """One pass: copy what is missing, then the manifest, then prune Drive; raises OSError when Drive fails."""
        self._ensure_drive_dir()
        remove_stale_temp_files(self.drive_dir, max_age_s=self.stale_temp_age_s, own_pid_is_stale=True)
        remote = {info.name: info for info in scan_checkpoints(self.drive_dir)}
        try:
            local = scan_checkpoints(self.local_dir)
        except FileNotFoundError:
            local = []
        for info in local:
            digest = info.digest
            if digest is None:
                continue  # no sidecar yet (being written) or lost: nothing to verify against
            other = remote.get(info.name)
            if other is not None and other.digest == digest and _size_of(other.path) == digest.size:
                continue
            try:
                sidecar = info.sidecar.read_bytes()
            except FileNotFoundError:
                continue  # pruned locally meanwhile
            # Sidecar first: a .pt only ever appears on Drive with its hash already beside it.
            atomic_write_bytes(self.drive_dir / info.sidecar.name, sidecar, create_folder=False)
            try:
                copy_verified(info.path, self.drive_dir / info.name, digest)
            except SourceFileError as exc:
                if info.path.exists():
                    raise OSError(f"local checkpoint unreadable: {exc}") from exc
                log.debug("Drive sync: %s was pruned locally before it was copied", info.name)
                continue
            except ChecksumError as exc:
                if exc.side != "source":
                    raise
                log.error("Drive sync: not copying %s: %s", info.name, exc)
                continue
            self.copied.append(info.name)
            log.info("Drive sync: %s copied and verified (%.1f MB)", info.name, digest.size / 1e6)
        manifest = self.local_dir / LATEST_NAME
        if manifest.is_file():
            atomic_write_bytes(self.drive_dir / LATEST_NAME, manifest.read_bytes(), create_folder=False)
        self._prune_drive()

    def _prune_drive(self) -> None:
        infos = scan_checkpoints(self.drive_dir)
        verified = [info for info in infos if info.digest is not None and _size_of(info.path) == info.size]
        keep, delete = split_retention(verified, self.retention.max_checkpoints, self.retention.metric,
                                       self.retention.mode)
        if keep:
            # Unverifiable leftovers (no sidecar, wrong size) go once they are older than everything kept.
            oldest_kept = min(info.sort_key() for info in keep)
            delete += [info for info in infos if info not in verified and info.sort_key() < oldest_kept]
        for info in delete:
            delete_checkpoint(info)
            log.info("Drive sync: pruned %s", info.name)


def resolve_drive_dir(enabled: bool, drive_dir: str | Path | None, run_name: str) -> tuple[Path | None, Path | None]:
    """(Drive folder, anchor that must exist before it may be created); the folder is None when there is none.

    In Colab without ``drive_dir`` this is ``default_drive_dir(run_name)`` (mounting Drive if needed); outside
    Colab sync needs an explicit folder. With sync off, an explicit folder is still returned for reading.
    """
    if not enabled:  # an explicit folder is still read by load_latest_checkpoint(from_drive=True)
        return (None if drive_dir is None else Path(drive_dir).expanduser().absolute()), None
    if drive_dir is None:
        if not in_colab():
            log.info("Drive sync disabled: not running in Colab and no drive_dir given")
            return None, None
        if not drive_mounted():
            try:
                mount_drive()
            except Exception as exc:  # the sync thread keeps retrying until the mount appears
                log.warning("could not mount Google Drive (%s); checkpoints stay local until it is mounted", exc)
        drive_dir = default_drive_dir(run_name)
    drive_dir = Path(drive_dir).expanduser().absolute()
    mount_point = drive_mount_point()
    try:
        relative = drive_dir.relative_to(mount_point)
        return drive_dir, mount_point / relative.parts[0] if relative.parts else mount_point
    except ValueError:
        pass
    anchor = drive_dir
    while not anchor.is_dir() and anchor.parent != anchor:
        anchor = anchor.parent
    return drive_dir, anchor


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
