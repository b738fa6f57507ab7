"""The benchmark results file: results.json = {"protocol": {...}, "rows": [row, ...]}, its row fields and row key.

Both the runner (which writes it) and the report (which reads it, and an earlier run's for --compare) use
this module; neither imports the other for it. The fields are those of docs/design.md "Benchmark result row".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kpop_helpers.errors import DataError
from kpop_helpers.utils import atomic_write_text, json_ready

# The fields of docs/design.md "Benchmark result row", in that order; extra fields follow them.
ROW_FIELDS = ("variant", "runtime", "precision", "pruning", "sampler", "steps", "threads", "batch", "file_size_mb",
              "params", "step_ms_p50", "step_ms_p95", "gen_time_s", "load_time_s", "peak_rss_mib", "fidelity_mm",
              "fidelity_rel_rms", "fid_k", "fid_g", "div_k", "div_g", "pfc", "foot_skating")
# Memory fields of result files written before they were named by their unit: MB (10^6 bytes) -> MiB.
_MB_TO_MIB = {"peak_rss_mb": "peak_rss_mib", "peak_rss_quality_mb": "peak_rss_quality_mib",
              "rss_before_load_mb": "rss_before_load_mib"}


def row_key(row: dict[str, Any]) -> str:
    """The identity of a row across runs (for --resume and --compare)."""
    return f"{row['variant']}|t{row['threads']}|b{row['batch']}"


def upgrade_memory_fields(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with the old MB memory fields (e.g. peak_rss_mb) replaced by their MiB fields (peak_rss_mib)."""
    out = {}
    for key, value in record.items():
        new = _MB_TO_MIB.get(key)
        if new is None:
            out[key] = value
        elif new not in record:
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            out[new] = value * 1e6 / 2 ** 20 if numeric else value
    return out


def read_results(path: Path) -> dict[str, Any] | None:
    """A results.json (rows of older files upgraded to the current field names), or None when absent."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc})", path=path, expected="a benchmark results.json") from exc
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise DataError("no rows list", path=path, field="rows", expected='{"protocol": {...}, "rows": [...]}')
    data["rows"] = [upgrade_memory_fields(row) if isinstance(row, dict) else row for row in data["rows"]]
    return data


def write_results(path: Path, protocol: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write results.json atomically (NaN/inf as null, numpy numbers as Python numbers)."""
    atomic_write_text(path, json.dumps(json_ready({"protocol": protocol, "rows": rows}), indent=1,
                                       allow_nan=False) + "\n")
