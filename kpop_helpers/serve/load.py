"""Load generator and monitor: N concurrent clients for T seconds against a local server, its CPU and RSS sampled.

    python -m kpop_helpers.serve.load --url http://127.0.0.1:8000 --clients 1 2 4 8 --seconds 60 --out load
    python -m kpop_helpers.serve.load --url ... --clients 4 --seconds 30 --mix window=3,long=1 --out load

Bounded: at most 64 clients, 3600 s per level, and only a server on this machine (the monitor reads its
process by the pid /v1/info gives). Writes load.json, load.md and load.png (latency percentiles and
throughput vs clients, RSS over time) to --out.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.serve.client import DanceClient, ServeError

MAX_CLIENTS, MAX_SECONDS = 64, 3600.0
# Request kinds of a mix: keywords of DanceClient.dance_answer. "window" is one model window (its default length).
KINDS: dict[str, dict[str, Any]] = {
    "window": {},
    "short": {"seconds": 5.0},
    "long": {"seconds": 30.0},
    "timeline": {"timeline": [(0.0, 4.0, "a powerful hip-hop dance with big arm waves"),
                              (4.0, 8.0, "a cute aegyo dance with small bounces"),
                              (8.0, 12.0, "sharp k-pop chorus moves with quick footwork")]},
    "bvh": {"seconds": 5.0, "format": "bvh"},
    "npz": {"seconds": 5.0, "format": "npz"},
}
PROMPTS = ("a powerful hip-hop dance with big arm waves", "a cute aegyo dance with small bounces",
           "sharp k-pop chorus moves with quick footwork", "a smooth girl-group dance with hair flips")


@dataclass
class Record:
    """One request: when it started (s from the level's start), how long it took, its status and kind."""

    start_s: float
    latency_s: float
    status: int  # 0: no answer (connection error)
    kind: str
    queue_s: float | None = None
    generation_s: float | None = None


def check_url(url: str) -> str:
    """The URL, if it names a server on this machine; DataError otherwise (this tool loads only local servers)."""
    host = urlsplit(url).hostname or ""
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if not local or urlsplit(url).scheme not in ("http", "https"):
        raise DataError(f"{url!r}", field="--url", expected="http://localhost:PORT or http://127.0.0.1:PORT")
    return url


def parse_mix(text: str) -> list[tuple[str, float]]:
    """"window=3,long=1" -> [("window", 3.0), ("long", 1.0)]; DataError naming an unknown kind or bad weight."""
    mix = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, weight = part.partition("=")
        if kind not in KINDS:
            raise DataError(f"kind {kind!r}", field="--mix", expected=f"kinds among {sorted(KINDS)}")
        try:
            value = float(weight) if weight else 1.0
        except ValueError as exc:
            raise DataError(f"weight {weight!r}", field="--mix", expected="kind=weight, weight > 0") from exc
        if not value > 0:
            raise DataError(f"weight {weight!r}", field="--mix", expected="kind=weight, weight > 0")
        mix.append((kind, value))
    if not mix:
        raise DataError("empty", field="--mix", expected="e.g. window=3,long=1")
    return mix


class Monitor(threading.Thread):
    """Samples a process's CPU % (of one core) and RSS (MiB) every `interval_s` until stopped."""

    def __init__(self, pid: int, interval_s: float = 0.5):
        super().__init__(daemon=True, name="kpop-monitor")
        import psutil

        self.process, self.interval_s = psutil.Process(pid), interval_s
        self.samples: list[tuple[float, float, float]] = []  # (s from start, cpu %, rss MiB)
        self._stop_event = threading.Event()
        self._start = time.perf_counter()

    def run(self) -> None:
        import psutil

        self.process.cpu_percent(None)  # the first call only sets the reference point
        while not self._stop_event.wait(self.interval_s):
            try:
                cpu, rss = self.process.cpu_percent(None), self.process.memory_info().rss / 2**20
            except psutil.Error:  # the server went away: stop sampling, keep what was seen
                return
            self.samples.append((time.perf_counter() - self._start, cpu, rss))

    def stop(self) -> list[tuple[float, float, float]]:
        """Stop sampling; the samples."""
        self._stop_event.set()
        self.join(5)
        return self.samples


def run_level(url: str, clients: int, seconds: float, mix: list[tuple[str, float]], *, api_key: str | None = None,
              request: dict[str, Any] | None = None, pid: int | None = None, seed: int = 0) -> dict[str, Any]:
    """One load level: `clients` threads send dances for `seconds`; the summary row with its records and samples."""
    if not 1 <= clients <= MAX_CLIENTS or not 0 < seconds <= MAX_SECONDS:
        raise DataError(f"{clients} clients for {seconds} s", field="--clients/--seconds",
                        expected=f"1..{MAX_CLIENTS} clients, 0 < seconds <= {MAX_SECONDS:g}")
    records: list[Record] = []
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds
    kinds, weights = [k for k, _ in mix], [w for _, w in mix]

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        with DanceClient(url, api_key) as dancer:
            count = 0
            while time.perf_counter() < deadline:
                kind = rng.choices(kinds, weights)[0]
                kw = {**KINDS[kind], **(request or {})}
                if "timeline" not in kw:
                    kw.setdefault("prompt", PROMPTS[(index + count) % len(PROMPTS)])
                t0 = time.perf_counter()
                wait = 0.0
                try:
                    answer = dancer.dance_answer(seed=rng.randrange(2**31), **kw)
                    record = Record(t0 - start, answer.latency_s, 200, kind, answer.queue_s, answer.generation_s)
                except ServeError as exc:
                    record = Record(t0 - start, time.perf_counter() - t0, exc.status, kind)
                    wait = exc.retry_after_s or 0.0
                except httpx.HTTPError:
                    record = Record(t0 - start, time.perf_counter() - t0, 0, kind)
                    wait = 0.5
                with lock:
                    records.append(record)
                count += 1
                if wait:  # a 429 asks the client to come back later; do so, but not past the deadline
                    time.sleep(max(0.0, min(wait, deadline - time.perf_counter())))

    monitor = Monitor(pid) if pid is not None else None
    if monitor is not None:
        monitor.start()
    threads = [threading.Thread(target=client, args=(i,), name=f"kpop-client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    samples = monitor.stop() if monitor is not None else []
    return summarise(records, clients=clients, elapsed_s=elapsed, samples=samples)


def summarise(records: list[Record], *, clients: int, elapsed_s: float,
              samples: list[tuple[float, float, float]]) -> dict[str, Any]:
    """A row: latency percentiles (answered dances), throughput, errors by status, CPU and RSS of the server."""
    ok = [r for r in records if r.status == 200]
    latency = np.array([r.latency_s for r in ok]) if ok else np.array([np.nan])
    errors: dict[str, int] = {}
    for r in records:
        if r.status != 200:
            errors[str(r.status)] = errors.get(str(r.status), 0) + 1
    row: dict[str, Any] = {
        "clients": clients, "elapsed_s": round(elapsed_s, 3), "requests": len(records), "ok": len(ok),
        "errors": errors, "error_count": sum(errors.values()),
        "http_5xx": sum(n for s, n in errors.items() if s.startswith("5")),
        "latency_p50_s": _q(latency, 50), "latency_p95_s": _q(latency, 95), "latency_p99_s": _q(latency, 99),
        "latency_mean_s": _q(latency, None), "latency_max_s": _q(latency, 100),
        "dances_per_min": round(len(ok) / elapsed_s * 60.0, 3) if elapsed_s > 0 else None,
        "queue_p50_s": _q(np.array([r.queue_s for r in ok if r.queue_s is not None] or [np.nan]), 50),
        "generation_p50_s": _q(np.array([r.generation_s for r in ok if r.generation_s is not None] or [np.nan]), 50),
    }
    if samples:
        t, cpu, rss = (np.array(col) for col in zip(*samples, strict=True))
        window = min(60.0, t[-1] / 4)  # first and last minute (a quarter of a short run)
        first, last = rss[t <= t[0] + window], rss[t >= t[-1] - window]
        row.update(cpu_percent_mean=round(float(cpu.mean()), 1), cpu_percent_max=round(float(cpu.max()), 1),
                   rss_mib_start=round(float(rss[0]), 1), rss_mib_peak=round(float(rss.max()), 1),
                   rss_mib_end=round(float(rss[-1]), 1),
                   rss_growth_pct=round(float((last.mean() - first.mean()) / first.mean() * 100), 2))
    row["records"] = [asdict(r) for r in records]
    row["samples"] = [[round(a, 3), round(b, 1), round(c, 2)] for a, b, c in samples]
    return row


def _q(values: np.ndarray, q: float | None) -> float | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    return round(float(values.mean() if q is None else np.percentile(values, q)), 4)


def run_load(url: str, clients: list[int], seconds: float, mix: list[tuple[str, float]], *,
             api_key: str | None = None, request: dict[str, Any] | None = None, warmup: int = 1,
             monitor: bool = True) -> dict[str, Any]:
    """Every level in turn against one server (`warmup` unrecorded dances first); the result dict of load.json."""
    check_url(url)
    with DanceClient(url, api_key) as probe:
        info = probe.info()
        for i in range(warmup):  # the first runs of an ORT session allocate; do not time them
            probe.dance_answer(PROMPTS[0], seed=i, **{**KINDS[mix[0][0]], **(request or {})})
    rows = [run_level(url, n, seconds, mix, api_key=api_key, request=request,
                      pid=info["pid"] if monitor else None, seed=n) for n in clients]
    return {"url": url, "variant": info.get("variant"), "mix": dict(mix), "seconds": seconds,
            "request": request or {}, "server": {k: info.get(k) for k in ("variant", "workers", "queue", "sampling",
                                                                           "max_frames", "versions", "params")},
            "rows": rows}


def main(argv: list[str] | None = None) -> int:
    """Run the levels and write load.json / load.md / load.png; 2 with the error for bad arguments."""
    p = argparse.ArgumentParser(prog="python -m kpop_helpers.serve.load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the server, on this machine")
    p.add_argument("--clients", type=int, nargs="+", default=[1],
                   help=f"concurrent clients of each level, run in turn (<= {MAX_CLIENTS})")
    p.add_argument("--seconds", type=float, required=True, help=f"seconds per level (<= {MAX_SECONDS:g})")
    p.add_argument("--mix", default="window", help=f"kind=weight,... among {sorted(KINDS)}")
    p.add_argument("--steps", type=int, default=None, help="sampler steps of every request (default: the server's)")
    p.add_argument("--api-key", default=None)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", type=Path, required=True, help="folder for load.json, load.md, load.png")
    args = p.parse_args(argv)
    from kpop_helpers.serve.report import write_report

    try:
        check_url(args.url)
        mix = parse_mix(args.mix)
        for n in args.clients:
            if not 1 <= n <= MAX_CLIENTS or not 0 < args.seconds <= MAX_SECONDS:
                raise DataError(f"{n} clients for {args.seconds} s", field="--clients/--seconds",
                                expected=f"1..{MAX_CLIENTS} clients, 0 < seconds <= {MAX_SECONDS:g}")
        request = {"steps": args.steps} if args.steps is not None else None
        result = run_load(args.url, args.clients, args.seconds, mix, api_key=args.api_key, request=request,
                          warmup=args.warmup)
    except (DataError, ServeError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = write_report({result["variant"] or "server": result}, args.out, name="load")
    print(" ".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
