"""Errors shared by every layer of the package (the ground floor: imports nothing of kpop_helpers)."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data: the message names the file, the record and the field, and what was expected."""

    def __init__(self, message: str, *, path: str | Path | None = None, record: int | str | None = None,
                 field: str | None = None, expected: str | None = None):
        parts = []
        if path is not None:
            parts.append(f"{path}")
        if record is not None:
            parts.append(f"record {record}")
        if field is not None:
            parts.append(f"field '{field}'")
        where = ": ".join([", ".join(parts)]) if parts else ""
        text = f"{where}: {message}" if where else message
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)
        self.path = None if path is None else str(path)
        self.record = record
        self.field = field
        self.expected = expected
