"""Benchmark outputs: results.csv, the Markdown table with speed-ups and target flags, compare.md, and plots."""

from __future__ import annotations

import csv
import io
import logging
import math
from functools import partial
from pathlib import Path
from typing import Any, Sequence

from kpop_helpers.bench.schema import ROW_FIELDS, read_results, row_key
from kpop_helpers.errors import DataError
from kpop_helpers.utils import atomic_write_text, fmt, markdown_table

logger = logging.getLogger(__name__)

# The edge target: a 196-frame dance in <= 1 s on 2 threads, >= 100x the fp32 1000-step procedure, with FID_k
# and PFC within 15 % of the reference procedure's. Two-sided on purpose: a broken variant (e.g. pruned without
# recovery) can score a much LOWER FID_k or PFC than the reference by producing calmer, different dances.
TARGET_SECONDS = 1.0
TARGET_THREADS = 2
TARGET_BATCH = 2
TARGET_SPEEDUP = 100.0
QUALITY_TOLERANCE = 0.15
COMPARE_FIELDS = ("step_ms_p50", "step_ms_p95", "gen_time_s", "load_time_s", "peak_rss_mib", "file_size_mb",
                  "fidelity_mm", "fid_k", "pfc")


def _num(row: dict[str, Any] | None, field: str) -> float | None:
    value = None if row is None else row.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


# Benchmark cells: 4 significant digits, thousands separators for large times and sizes.
_fmt = partial(fmt, digits=4, group_large=True)


def reference_rows(rows: Sequence[dict[str, Any]]) -> dict[tuple[Any, Any], dict[str, Any]]:
    """The reference procedure's row per (threads, batch)."""
    return {(r.get("threads"), r.get("batch")): r for r in rows if r.get("is_reference") and not r.get("error")}


def speedup(row: dict[str, Any], refs: dict[tuple[Any, Any], dict[str, Any]]) -> float | None:
    """Reference gen_time_s / this row's gen_time_s at the same threads and batch (None if either is missing)."""
    ref = refs.get((row.get("threads"), row.get("batch")))
    ours, theirs = _num(row, "gen_time_s"), _num(ref, "gen_time_s")
    return theirs / ours if ours and theirs else None


def target_check(row: dict[str, Any], refs: dict[tuple[Any, Any], dict[str, Any]]) -> tuple[bool | None, str]:
    """(meets the edge target?, reason) for a threads=2, batch=2 row; (None, '') for other settings."""
    if row.get("threads") != TARGET_THREADS or row.get("batch") != TARGET_BATCH:
        return None, ""
    ref = refs.get((TARGET_THREADS, TARGET_BATCH))
    failures = []
    seconds, gain = _num(row, "gen_time_s"), speedup(row, refs)
    if seconds is None or seconds > TARGET_SECONDS:
        failures.append(f"{_fmt(seconds)} s > {TARGET_SECONDS:g} s" if seconds is not None else "no time")
    if gain is None or gain < TARGET_SPEEDUP:
        failures.append(f"{gain:.0f}x < {TARGET_SPEEDUP:.0f}x" if gain is not None else "no reference time")
    for field, label in (("fid_k", "FID_k"), ("pfc", "PFC")):
        ours, theirs = _num(row, field), _num(ref, field)
        if ours is None or theirs is None:
            failures.append(f"no {label}")
        elif abs(ours - theirs) > QUALITY_TOLERANCE * abs(theirs) and abs(ours - theirs) > 1e-12:
            noise = relative_noise(row, ref, field)
            band = f" ±{100 * noise:.0f}% noise" if noise is not None else ""
            failures.append(f"{label} {100 * (ours / theirs - 1):+.0f}%{band}" if theirs
                            else f"{label} {ours:.3g} vs 0")
    return not failures, "; ".join(failures)


def relative_noise(row: dict[str, Any], ref: dict[str, Any] | None, field: str) -> float | None:
    """Standard error of row/ref - 1 from the spread between noise draws (None without >= 2 draws on both sides).

    First-order propagation: se(a/b) / (a/b) = sqrt((sd_a^2 / n_a) / a^2 + (sd_b^2 / n_b) / b^2).
    """
    a, b = _num(row, field), _num(ref, field)
    sd_a, sd_b = _num(row, f"{field}_sd"), _num(ref, f"{field}_sd")
    n_a, n_b = _num(row, "n_draws"), _num(ref, "n_draws")
    if None in (a, b, sd_a, sd_b, n_a, n_b) or not a or not b or n_a < 2 or n_b < 2:
        return None
    return (a / b) * math.sqrt(sd_a ** 2 / n_a / a ** 2 + sd_b ** 2 / n_b / b ** 2)


SPEED_COLUMNS = (
    ("variant", "variant"), ("runtime", "runtime"), ("code_path", "code path"), ("precision", "prec."),
    ("pruning", "pruning"), ("steps", "sampler"), ("threads", "thr."), ("batch", "batch"), ("file_size_mb", "size MB"),
    ("params", "params"), ("step_ms_p50", "step p50 ms"), ("step_ms_p95", "step p95 ms"),
    ("gen_time_s", "dance s"), ("speedup", "speed-up"), ("load_time_s", "load s"),
    ("peak_rss_mib", "peak RSS MiB"), ("target", "meets target"),
)
QUALITY_COLUMNS = (
    ("variant", "variant"), ("fidelity_mm", "fidelity mm"), ("fidelity_rel_rms", "rel. RMS"),
    ("fid_k", "FID_k"), ("fid_g", "FID_g"), ("div_k", "Div_k"), ("div_g", "Div_g"), ("pfc", "PFC"),
    ("foot_skating", "foot skating"), ("n_samples", "dances"), ("n_draws", "draws"),
)


def _score(row: dict[str, Any], field: str) -> str:
    """A quality score with its spread between noise draws when there is one: '66.6 ± 12'."""
    spread = _num(row, f"{field}_sd")
    return _fmt(row.get(field)) + (f" ± {_fmt(spread)}" if spread is not None else "")


def _cell(row: dict[str, Any], field: str, refs: dict[tuple[Any, Any], dict[str, Any]]) -> str:
    if field == "variant":
        cell = f"**{row.get('variant')}** (ref)" if row.get("is_reference") else str(row.get("variant"))
        if row.get("error"):
            cell += f" ⚠ {str(row['error'])[:80]}"
    elif field == "steps":
        cell = f"{row.get('sampler')} {row.get('steps')}"
    elif field == "speedup":
        gain = speedup(row, refs)
        cell = f"{gain:,.1f}x" if gain is not None else "–"
    elif field == "target":
        ok, why = target_check(row, refs)
        cell = "–" if ok is None else ("**yes**" if ok else f"no ({why})")
    elif field == "params":
        cell = f"{row['params'] / 1e6:.2f}M" if _num(row, "params") else "–"
    elif field == "gen_time_s":
        cell = _fmt(row.get(field)) + ("*" if row.get("gen_time_estimated") else "")
    elif _num(row, f"{field}_sd") is not None:
        cell = _score(row, field)
    else:
        cell = _fmt(row.get(field))
    return cell.replace("|", "/")


def _table(rows: Sequence[dict[str, Any]], columns, refs, rename: dict[str, str] | None = None) -> list[str]:
    named = [(field, (rename or {}).get(field, label)) for field, label in columns]
    return markdown_table(rows, named, cell=partial(_cell, refs=refs)).splitlines()


def results_markdown(results: dict[str, Any]) -> str:
    """The results as Markdown: protocol summary, headline, a speed table (every row), a quality table (per variant)."""
    protocol, rows = results.get("protocol", {}), list(results.get("rows", []))
    refs = reference_rows(rows)
    cpu = protocol.get("cpu", {})
    libs = protocol.get("libraries", {})
    frames = protocol.get("frames", "?")
    lines = ["# Benchmark results", "",
             f"- Machine: {cpu.get('model', '?')}, {cpu.get('usable_cores', '?')} usable cores "
             f"(SIMD: {', '.join(cpu.get('simd', [])) or '?'}); {protocol.get('platform', '?')}",
             f"- Load average (1/5/15 min): {protocol.get('loadavg_start')} at the start, "
             f"{protocol.get('loadavg_end')} at the end. The benchmark itself keeps about 1 busy; more means other "
             "processes shared the cores and the times are inflated (per-row values: loadavg_1m in results.json).",
             "- Libraries: " + ", ".join(f"{k} {v}" for k, v in libs.items() if v),
             f"- Protocol: {protocol.get('num_samples', '?')} prompts, {frames} frames at 20 fps, guidance "
             f"{protocol.get('guidance', '?')}, seed {protocol.get('seed', '?')}, text encoder "
             f"{protocol.get('text_encoder', '?')}; reference set {protocol.get('reference_data', '?')} "
             f"({protocol.get('num_reference', '?')} clips); metrics mode {protocol.get('metrics_mode', '?')}.",
             f"- Reference procedure: fp32 eager PyTorch, full DDPM schedule (**ref**). Speed-up = its {frames}-frame "
             "time / the row's, at the same threads and batch.",
             f"- Target (threads {TARGET_THREADS}, batch {TARGET_BATCH}): {frames} frames in <= {TARGET_SECONDS:g} s, "
             f">= {TARGET_SPEEDUP:.0f}x the reference, FID_k and PFC within ±{QUALITY_TOLERANCE:.0%} of the "
             "reference's (two-sided: a much lower score means different dances, not better ones).",
             "- Batch 1 = one unguided forward per step; batch 2 = the guided (cond + uncond) pair of one prompt. "
             "Dance times marked * are steps x step p50 (a measured loop would have taken too long).",
             "- Fidelity: joint error vs the fp32 eager variant with the same sampler and steps, same prompts and "
             "noise. Quality: every prompt in one guided batch, at the largest thread count."]
    draws = protocol.get("draws") or 1
    if draws > 1:
        lines.append(f"- Quality over {draws} noise draws (each one dance per prompt): scores are the mean over draws "
                     "± the standard deviation between draws; a failed quality target shows the standard error of "
                     "the relative difference as '±N% noise' (a difference within about twice that is not resolved).")
    if protocol.get("notes"):
        lines.append(f"- Notes: {protocol['notes']}")
    lines += ["", *headline(rows, refs), "## Speed, size and memory", ""]
    lines += _table(rows, SPEED_COLUMNS, refs, {"gen_time_s": f"{frames}-frame s"})
    per_variant = list({r["variant"]: r for r in rows}.values())
    lines += ["", "## Quality", ""] + _table(per_variant, QUALITY_COLUMNS, refs)
    real = next((r for r in rows if _num(r, "div_k_gt") is not None), None)
    if real is not None:
        lines += ["", f"The reference set itself: Div_k {_fmt(real.get('div_k_gt'))}, Div_g {_fmt(real.get('div_g_gt'))}, "
                      f"PFC {_fmt(real.get('pfc_gt'))} (a variant's Div close to these, a low FID and a PFC near the "
                      "real one mean dances like the real ones)."]
    return "\n".join(lines) + "\n"


def headline(rows: Sequence[dict[str, Any]], refs: dict[tuple[Any, Any], dict[str, Any]]) -> list[str]:
    """A few sentences: the reference time, the fastest variant, and which variants meet the target."""
    out = ["## Headline", ""]
    setting = (TARGET_THREADS, TARGET_BATCH)
    if setting not in refs and refs:
        setting = max(refs, key=lambda k: (k[1] == TARGET_BATCH, k[0] or 0))  # e.g. a 1-thread smoke run
    ref = refs.get(setting)
    candidates = [r for r in rows if (r.get("threads"), r.get("batch")) == setting and _num(r, "gen_time_s")]
    if ref is None or not candidates:
        return out + ["No reference row was measured.", ""]
    fastest = min(candidates, key=lambda r: r["gen_time_s"])
    out.append(f"At {setting[0]} thread(s), batch {setting[1]}:")
    out.append(f"- Reference ({ref['variant']}): {_fmt(ref.get('gen_time_s'))} s per dance"
               f"{' (steps x p50)' if ref.get('gen_time_estimated') else ''}, step p50 "
               f"{_fmt(ref.get('step_ms_p50'))} ms, FID_k {_score(ref, 'fid_k')}, PFC {_score(ref, 'pfc')}, "
               f"{_fmt(ref.get('file_size_mb'))} MB.")
    gain = speedup(fastest, refs)
    out.append(f"- Fastest: {fastest['variant']}: {_fmt(fastest.get('gen_time_s'))} s "
               f"({gain:,.0f}x), FID_k {_score(fastest, 'fid_k')}, PFC {_score(fastest, 'pfc')}, "
               f"fidelity {_fmt(fastest.get('fidelity_mm'))} mm, {_fmt(fastest.get('file_size_mb'))} MB.")
    if setting == (TARGET_THREADS, TARGET_BATCH):
        passing = [r["variant"] for r in candidates if target_check(r, refs)[0]]
        out.append(f"- Meeting the target: {', '.join(passing) if passing else 'none'}.")
        fast = [r for r in candidates if not r.get("is_reference") and (_num(r, "gen_time_s") or 1e9) <= TARGET_SECONDS
                and (speedup(r, refs) or 0) >= TARGET_SPEEDUP]
        if fast:
            out.append("- Quality of the variants fast enough for the target, relative to the reference "
                       "(± standard error from the spread between noise draws, where measured):")
            out += [f"  - {r['variant']}: {quality_delta(r, ref, 'fid_k', 'FID_k')}, "
                    f"{quality_delta(r, ref, 'pfc', 'PFC')}" for r in fast]
    return out + [""]


def quality_delta(row: dict[str, Any], ref: dict[str, Any], field: str, label: str) -> str:
    """'FID_k +12% ±9%' (relative to the reference; the band only with noise draws on both sides)."""
    ours, theirs = _num(row, field), _num(ref, field)
    if ours is None or not theirs:
        return f"{label} –"
    noise = relative_noise(row, ref, field)
    return f"{label} {100 * (ours / theirs - 1):+.0f}%" + (f" ±{100 * noise:.0f}%" if noise is not None else "")


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """results.csv: the design's row fields first, then every extra field seen."""
    fields = list(ROW_FIELDS) + sorted({k for r in rows for k in r} - set(ROW_FIELDS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in fields})
    atomic_write_text(path, buffer.getvalue())


def compare_markdown(new: dict[str, Any], old: dict[str, Any], old_name: str = "old") -> str:
    """Ratios new/old for rows with the same key (variant, threads, batch); time ratios < 1 mean faster now."""
    old_rows = {row_key(r): r for r in old.get("rows", [])}
    columns = [("key", "key"), *((f, f"{f} new/old") for f in COMPARE_FIELDS),
               ("speedup", "speed-up (old/new gen time)")]
    lines = ["# Comparison with " + old_name, "",
             f"- New run: {new.get('protocol', {}).get('started', '?')} on {new.get('protocol', {}).get('cpu', {}).get('model', '?')}",
             f"- Old run: {old.get('protocol', {}).get('started', '?')} on {old.get('protocol', {}).get('cpu', {}).get('model', '?')}",
             "- Ratios are new / old per matching row; a row missing in either run is listed at the end.", ""]
    ratios, unmatched = [], []
    for row in new.get("rows", []):
        key = row_key(row)
        before = old_rows.pop(key, None)
        if before is None:
            unmatched.append(f"new only: {key}")
            continue
        cells = {"key": key}
        for field in COMPARE_FIELDS:
            a, b = _num(row, field), _num(before, field)
            cells[field] = f"{a / b:.3f}" if a is not None and b else ("=" if a == b == 0 else "–")
        a, b = _num(row, "gen_time_s"), _num(before, "gen_time_s")
        cells["speedup"] = f"{b / a:.2f}x" if a and b else "–"
        ratios.append(cells)
    lines += markdown_table(ratios, columns).splitlines()
    unmatched += [f"old only: {key}" for key in old_rows]
    if unmatched:
        lines += ["", *[f"- {u}" for u in unmatched]]
    return "\n".join(lines) + "\n"


def make_plots(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """pareto.png, latency.png and sizes.png via kpop_helpers.viz.plots (skipped, with a warning, if unavailable)."""
    try:
        from kpop_helpers.viz import plots
    except ImportError as exc:  # matplotlib is an optional extra
        logger.warning("plots skipped: %s", exc)
        return []
    rows = [r for r in results.get("rows", []) if not r.get("error")]
    threads = max((r.get("threads") or 0 for r in rows), default=0)
    guided = [r for r in rows if r.get("batch") == TARGET_BATCH] or rows
    headline_rows = [r for r in guided if r.get("threads") == threads]
    written = []
    pareto = partial(plots.plot_pareto, reference_band=QUALITY_TOLERANCE, max_latency=TARGET_SECONDS)
    for name, draw, subset in (("pareto.png", pareto, headline_rows),
                               ("latency.png", plots.plot_latency, guided),
                               ("sizes.png", plots.plot_sizes, rows)):
        path = out_dir / name
        fig = draw(list(subset), path=path)
        fig.clear()
        written.append(path)
    return written


def write_report(results: dict[str, Any], out_dir: Path, compare: str | Path | None = None,
                 plots: bool = True) -> list[Path]:
    """results.csv, results.md, the plots and (with `compare`) compare.md into out_dir; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(results.get("rows", []), out_dir / "results.csv")
    atomic_write_text(out_dir / "results.md", results_markdown(results))
    written = [out_dir / "results.csv", out_dir / "results.md"]
    if compare is not None:
        old = read_results(Path(compare))
        if old is None:
            raise DataError("file not found", path=compare, expected="an earlier benchmark results.json")
        atomic_write_text(out_dir / "compare.md", compare_markdown(results, old, str(compare)))
        written.append(out_dir / "compare.md")
    if plots:
        written += make_plots(results, out_dir)
    return written
