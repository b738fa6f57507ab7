"""Shared test helpers: where the golden fixtures and the real motion data live."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def fixtures_dir() -> Path:
    """The golden fixture folder: $KPOP_FIXTURES, else ../shared/fixtures."""
    return Path(os.environ.get("KPOP_FIXTURES", str(SHARED / "fixtures"))).resolve()


def fixture_family(name: str) -> tuple[Path, dict]:
    """(folder, cases.json) of one fixture family; skips the test with a reason when it is absent."""
    folder = fixtures_dir() / name
    cases = folder / "cases.json"
    if not cases.is_file():
        pytest.skip(f"fixture family '{name}' not found at {folder} (set KPOP_FIXTURES or put ../shared beside the repo)")
    return folder, json.loads(cases.read_text())


def fixture_cases(name: str) -> list[dict]:
    """Every case of a family, for parametrisation at collection time (empty if absent)."""
    cases = fixtures_dir() / name / "cases.json"
    if not cases.is_file():
        return []
    return json.loads(cases.read_text())["cases"]


def real_motion_dir() -> Path:
    """../shared/data/real_motion; skips with a reason when absent."""
    folder = SHARED / "data" / "real_motion"
    if not folder.is_dir():
        pytest.skip(f"real motion capture not found at {folder} (needs ../shared beside the repo)")
    return folder
