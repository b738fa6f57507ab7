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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine every op waits for it."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_mdm(seed: int = 0):
    """A randomly initialised 'tiny' MDM with random normalisation statistics and the MiniLM encoder name."""
    import numpy as np
    import torch

    from kpop_helpers.model import MDM, get_preset
    from kpop_helpers.motion.stats import MotionStats

    torch.manual_seed(seed)
    model = MDM(get_preset("tiny")).eval()
    rng = np.random.default_rng(seed)
    model.stats = MotionStats(mean=0.1 * rng.standard_normal(263), std=0.5 + rng.random(263))
    model.text_encoder_name = "minilm"
    return model


# Prompts of the tiny export: the first one's embedding is precomputed in the export folder.
EDGE_PROMPTS = ["a powerful hip-hop dance with big arm waves", "a cute aegyo dance with small bounces"]


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """(tiny_mdm(0), its export folder): fp32 and int8 ONNX, the ONNX text tower; shared by every test file."""
    import warnings

    from kpop_helpers.config import EdgeConfig
    from kpop_helpers.export import ModelExporter

    model = tiny_mdm(0)
    folder = tmp_path_factory.mktemp("edge_export")
    config = EdgeConfig.from_dict({
        "optimization": {"quantization": {"enabled": True, "fp16": False}, "pruning": {"enabled": False}},
        "export": {"formats": ["onnx"], "text_encoder": "onnx", "prompts": EDGE_PROMPTS[:1]},
    })
    config.save(folder / "edge_config.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no recovery data" and tracer warnings: expected for an export
        ModelExporter(None, folder / "edge_config.json", model=model, threads=1, progress=False).export_all(
            folder / "out")
    return model, folder / "out"
