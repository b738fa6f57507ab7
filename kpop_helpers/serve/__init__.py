"""Serve the edge model over HTTP: a bounded, torch-free dance service, its typed client and a load generator.

    python -m kpop_helpers.serve --export-dir export --variant int8            # http://127.0.0.1:8000/docs
    python -m kpop_helpers.serve.load --url http://127.0.0.1:8000 --clients 1 2 4 --seconds 60 --out load

`app` (FastAPI, needs the `serve` extra) is imported only by the server; `client`, `metrics` and `load`
need httpx (and psutil, matplotlib for `load`) only, so a load machine does not install the server.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DanceClient", "ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    """Lazy exports: importing the package (e.g. for the client) does not import FastAPI or the runtime."""
    if name in ("ServeSettings", "create_app"):
        from kpop_helpers.serve import app

        return getattr(app, name)
    if name == "DanceClient":
        from kpop_helpers.serve.client import DanceClient

        return DanceClient
    raise AttributeError(f"module 'kpop_helpers.serve' has no attribute {name!r}")
