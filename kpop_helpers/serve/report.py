"""Load results as files: JSON (everything), Markdown (the table) and a PNG (latency, throughput, RSS), pyplot-free."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kpop_helpers.utils import atomic_write_text, fmt, json_ready, markdown_table, staged_path

COLUMNS = (("variant", "variant"), ("clients", "clients"), ("requests", "requests"), ("ok", "ok"),
           ("error_count", "errors"), ("http_5xx", "5xx"), ("latency_p50_s", "p50 s"), ("latency_p95_s", "p95 s"),
           ("latency_p99_s", "p99 s"), ("dances_per_min", "dances/min"), ("cpu_percent_mean", "CPU % (1 core)"),
           ("rss_mib_peak", "peak RSS MiB"), ("rss_growth_pct", "RSS growth %"))
PERCENTILES = (("latency_p50_s", "p50", "-"), ("latency_p95_s", "p95", "--"), ("latency_p99_s", "p99", ":"))


def table_rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per (variant, clients) level, for the table."""
    return [{"variant": label, **{k: v for k, v in row.items() if k not in ("records", "samples")}}
            for label, result in results.items() for row in result["rows"]]


def markdown(results: Mapping[str, Mapping[str, Any]], *, title: str, notes: Sequence[str] = ()) -> str:
    """The Markdown report: a title, notes, and the table of every level."""
    lines = [f"# {title}", ""] + [f"- {note}" for note in notes] + ([""] if notes else [])
    return "\n".join(lines) + "\n" + markdown_table(table_rows(results), COLUMNS, _cell)


def _cell(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if key == "dances_per_min" and isinstance(value, float):
        return f"{value:.1f}"  # thousands read better whole than as 1.24e+03
    return fmt(value)


def plot(results: Mapping[str, Mapping[str, Any]], path: str | Path | None = None) -> Figure:
    """Latency percentiles and dances per minute vs clients, and the server's RSS over time (levels in turn)."""
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    latency_ax, throughput_ax, rss_ax = fig.subplots(1, 3)
    for i, (label, result) in enumerate(results.items()):
        color = f"C{i % 10}"
        rows = result["rows"]
        clients = [row["clients"] for row in rows]
        for key, name, style in PERCENTILES:
            values = [row.get(key) for row in rows]
            if any(v is not None for v in values):
                latency_ax.plot(clients, [float("nan") if v is None else v for v in values], style, marker="o",
                                color=color, label=f"{label} {name}")
        throughput_ax.plot(clients, [row.get("dances_per_min") or 0.0 for row in rows], marker="o", color=color,
                           label=label)
        offset = 0.0
        for j, row in enumerate(rows):
            samples = row.get("samples") or []
            if samples:
                rss_ax.plot([offset + s[0] for s in samples], [s[2] for s in samples], color=color,
                            label=label if j == 0 else None)
                rss_ax.axvline(offset, color="0.85", linewidth=0.8)
            offset += float(row.get("elapsed_s") or 0.0)
    latency_ax.set(xlabel="concurrent clients", ylabel="latency (s)", title="latency percentiles")
    throughput_ax.set(xlabel="concurrent clients", ylabel="dances per minute", title="throughput")
    levels = sorted({row["clients"] for result in results.values() for row in result["rows"]})
    for ax in (latency_ax, throughput_ax):
        ax.set_xticks(levels)
        ax.set_ylim(bottom=0)
    rss_ax.set(xlabel="seconds (levels in turn)", ylabel="server RSS (MiB)", title="server memory over time")
    for ax in (latency_ax, throughput_ax, rss_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if path is not None:
        with staged_path(Path(path)) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    return fig


def write_report(results: Mapping[str, Mapping[str, Any]], out_dir: str | Path, *, name: str,
                 title: str = "Serving under load", notes: Sequence[str] = (),
                 extra: Mapping[str, Any] | None = None) -> list[Path]:
    """Write `name`.json (all of it), `name`.md and `name`.png to `out_dir`; their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.json", out / f"{name}.md", out / f"{name}.png"]
    payload = {**(extra or {}), "results": dict(results)}
    atomic_write_text(paths[0], json.dumps(json_ready(payload), indent=1) + "\n")
    atomic_write_text(paths[1], markdown(results, title=title, notes=notes))
    plot(results, paths[2])
    return paths
