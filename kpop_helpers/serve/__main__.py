"""CLI: `python -m kpop_helpers.serve --export-dir DIR [--variant int8] [--host 127.0.0.1] [--port 8000] ...`.

Serves dances over HTTP with uvicorn; no torch is imported. The model is loaded once, by this one server
process; `--workers N` is the number of generation threads sharing it (not uvicorn's worker processes:
those would each load the model and keep their own queue, so the queue bound would no longer hold).
SIGTERM / Ctrl-C: new requests get 503, waiting jobs are dropped, running ones get `--grace` seconds to
finish and are then cancelled; the log names each.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path
from types import FrameType

from kpop_helpers.errors import DataError

log = logging.getLogger("kpop_helpers.serve")
KEY_ENV = "KPOP_SERVE_API_KEY"  # a key in the environment stays out of `ps` listings


def parser() -> argparse.ArgumentParser:
    """The server's arguments."""
    p = argparse.ArgumentParser(prog="python -m kpop_helpers.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export-dir", required=True, help="an export folder (manifest.json, ONNX files)")
    p.add_argument("--variant", default="int8", help="the manifest's ONNX variant (int8, fp32, pruned_ffn_int8, ...)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="generations run at once (threads sharing the model)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per generation (default: all)")
    p.add_argument("--queue", type=int, default=8, help="generations that may wait; more get 429 + Retry-After")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request, queue wait included (504)")
    p.add_argument("--grace", type=float, default=30.0, help="seconds running jobs get to finish at shutdown")
    p.add_argument("--api-key", default=None, help=f"require this X-API-Key header (or set ${KEY_ENV})")
    p.add_argument("--max-body", type=int, default=256 * 1024, help="largest request body in bytes (413)")
    p.add_argument("--max-connections", type=int, default=128, help="open connections before uvicorn answers 503")
    p.add_argument("--work-dir", type=Path, default=None, help="where the server's temp folder goes")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return p


def _check(args: argparse.Namespace) -> None:
    for name, low, high in (("workers", 1, 64), ("queue", 1, 4096), ("port", 0, 65535), ("max_body", 1024, 1 << 30)):
        value = getattr(args, name)
        if not low <= value <= high:
            raise DataError(f"{value}", field=f"--{name.replace('_', '-')}", expected=f"{low}..{high}")
    if not 0 < args.timeout <= 3600 or not 0 <= args.grace <= 3600:
        raise DataError(f"timeout {args.timeout}, grace {args.grace}", field="--timeout/--grace",
                        expected="0 < timeout <= 3600, 0 <= grace <= 3600 seconds")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Load the model, serve until a signal, shut down gracefully; 2 with the error for bad arguments or exports."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from kpop_helpers.serve.app import ServeSettings, create_app

    api_key = args.api_key or os.environ.get(KEY_ENV) or None
    try:
        _check(args)
        settings = ServeSettings(export_dir=Path(args.export_dir), variant=args.variant, workers=args.workers,
                                 queue=args.queue, timeout_s=args.timeout, api_key=api_key, threads=args.threads,
                                 max_body_bytes=args.max_body, grace_s=args.grace, work_dir=args.work_dir)
        app = create_app(settings)
    except (DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host) and api_key is None:
        log.warning("listening on %s without an API key: anyone who reaches this port can generate", args.host)
    jobs = app.state.service.jobs

    class Server(uvicorn.Server):
        """uvicorn's server, telling the queue at the first signal (not only once connections have closed)."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            jobs.request_shutdown(settings.grace_s)
            super().handle_exit(sig, frame)

    # uvicorn waits for open requests after the signal; ours end within grace (+ one denoiser step).
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            limit_concurrency=args.max_connections, timeout_graceful_shutdown=args.grace + 30,
                            server_header=False, lifespan="on")
    Server(config).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
