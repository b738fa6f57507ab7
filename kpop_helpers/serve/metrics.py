"""The service's metrics in the Prometheus text format (0.0.4), written by hand, and a strict parser of it.

Hand-written rather than `prometheus_client`: a few counters, two histograms and some gauges do not need a
dependency, and the client's process-global registry would make two apps in one process (the tests) clash
over metric names. The parser serves the typed client, the load generator and the tests.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Seconds: from a one-window dance on a fast machine to the longest request a timeout allows.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


@dataclass
class Histogram:
    """Cumulative buckets, sum and count of observations, one series per label set."""

    buckets: Sequence[float] = LATENCY_BUCKETS
    counts: dict[tuple[tuple[str, str], ...], list[int]] = field(default_factory=dict)
    sums: Counter = field(default_factory=Counter)

    def observe(self, value: float, labels: Mapping[str, str]) -> None:
        """Count one observation (seconds) under `labels`."""
        key = tuple(sorted(labels.items()))
        counts = self.counts.setdefault(key, [0] * (len(self.buckets) + 1))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1  # +Inf
        self.sums[key] += value

    def lines(self, name: str) -> list[str]:
        """The exposition lines (`_bucket`, `_sum`, `_count`) of every series."""
        out = []
        for key, counts in sorted(self.counts.items()):
            for bound, count in zip([*map(_number, self.buckets), "+Inf"], counts, strict=True):
                out.append(f"{name}_bucket{_labels(dict(key), le=bound)} {count}")
            out.append(f"{name}_sum{_labels(dict(key))} {_number(self.sums[key])}")
            out.append(f"{name}_count{_labels(dict(key))} {counts[-1]}")
        return out


class Metrics:
    """Request counts by route and status, request latency, generation time; rendered with live gauges."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.latency = Histogram()
        self.generation = Histogram()
        self._lock = threading.Lock()  # the worker threads observe generation times

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request."""
        with self._lock:
            self.requests[(route, method, str(status))] += 1
            self.latency.observe(seconds, {"route": route})

    def observe_generation(self, variant: str, seconds: float) -> None:
        """One finished generation (time in the worker, without the queue wait)."""
        with self._lock:
            self.generation.observe(seconds, {"variant": variant})

    def render(self, gauges: Mapping[str, tuple[str, float]], outcomes: Mapping[str, int]) -> str:
        """The whole exposition: counters, histograms, `gauges` {name: (help, value)} and job outcomes."""
        with self._lock:
            lines = ["# HELP kpop_requests_total HTTP requests answered, by route, method and status.",
                     "# TYPE kpop_requests_total counter"]
            lines += [f"kpop_requests_total{_labels({'route': r, 'method': m, 'status': s})} {n}"
                      for (r, m, s), n in sorted(self.requests.items())]
            lines += ["# HELP kpop_request_duration_seconds Time from request to answer, by route.",
                      "# TYPE kpop_request_duration_seconds histogram", *self.latency.lines(
                          "kpop_request_duration_seconds")]
            lines += ["# HELP kpop_generation_seconds Time a generation ran in a worker (no queue wait).",
                      "# TYPE kpop_generation_seconds histogram", *self.generation.lines("kpop_generation_seconds")]
        lines += ["# HELP kpop_jobs_total Generation jobs by how they ended.", "# TYPE kpop_jobs_total counter"]
        lines += [f"kpop_jobs_total{_labels({'outcome': k})} {v}" for k, v in sorted(outcomes.items())]
        for name, (help_text, value) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {_number(value)}"]
        return "\n".join(lines) + "\n"


def rss_bytes() -> int | None:
    """Resident memory of this process now (bytes): /proc/self/statm on Linux, else None."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Sample:
    """One parsed sample: metric name, labels, value."""

    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(text: str) -> dict[str, list[Sample]]:
    """Samples by metric name from the Prometheus text format; ValueError naming the line that does not parse."""
    out: dict[str, list[Sample]] = {}
    types: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                if len(parts) != 4 or parts[3] not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    raise ValueError(f"metrics line {number}: bad TYPE line {line!r}")
                types[parts[2]] = parts[3]
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"metrics line {number}: not a sample {line!r}")
        labels = _parse_labels(match.group("labels") or "", number)
        try:
            value = float(match.group("value"))
        except ValueError as exc:
            raise ValueError(f"metrics line {number}: value {match.group('value')!r} is not a number") from exc
        name = match.group("name")
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in types and family not in types:
            raise ValueError(f"metrics line {number}: sample of {name!r} before its TYPE line")
        out.setdefault(name, []).append(Sample(name, labels, value))
    return out


def value_of(samples: Mapping[str, Iterable[Sample]], name: str, default: float = 0.0, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
    found = [s.value for s in samples.get(name, ()) if all(s.labels.get(k) == v for k, v in labels.items())]
    return float(sum(found)) if found else default


def _parse_labels(text: str, number: int) -> dict[str, str]:
    labels, position = {}, 0
    while text[position:].strip():
        match = _LABEL.match(text, position)
        if match is None:
            raise ValueError(f"metrics line {number}: bad labels {{{text}}}")
        labels[match.group(1)] = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), match.group(2))
        position = match.end()
    return labels


def _labels(labels: Mapping[str, str], **extra: str) -> str:
    items = {**labels, **extra}
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items.items()) + "}"


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)
