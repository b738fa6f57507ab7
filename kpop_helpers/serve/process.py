"""The server as a child process (`python -m kpop_helpers.serve`): started on a free localhost port, stopped by SIGTERM.

Used by the serving benchmark (one server per variant) and the tests; each server is the real CLI.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now (the OS picks it; a tiny window remains before the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A running server: its process, its base URL and the file its output goes to."""

    process: subprocess.Popen
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.is_file() else ""

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM (graceful shutdown), then SIGKILL after `timeout_s`; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def start_server(export_dir: str | Path, *, variant: str = "int8", args: Sequence[str] = (),
                 log_path: str | Path, startup_timeout_s: float = 120.0, env: dict[str, str] | None = None,
                 python: str | None = None) -> ServerProcess:
    """Start `python -m kpop_helpers.serve` on a free port and wait until /healthz answers 200."""
    port = free_port()
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [python or sys.executable, "-m", "kpop_helpers.serve", "--export-dir", str(export_dir),
               "--variant", variant, "--host", "127.0.0.1", "--port", str(port), *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop(10)
    raise RuntimeError(f"the server did not answer /healthz within {startup_timeout_s} s:\n{server.log()[-3000:]}")


@contextmanager
def running_server(export_dir: str | Path, **kwargs: object) -> Iterator[ServerProcess]:
    """`start_server(...)` for the block; stopped (SIGTERM) when it ends."""
    server = start_server(export_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
