"""benchmarks/bench_students.py on the tiny export: every recipe timed in a torch-free process and scored over
noise draws against a reference sample set, the student rows read their sampler from their own export."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.conftest import REPO_ROOT


def test_students_benchmark_runs_on_the_tiny_export(tiny_export, tmp_path):
    from kpop_helpers.edge import EdgeGenerator
    from kpop_helpers.model import save_mdm
    from kpop_helpers.prompts import DANCE_PROMPTS

    model, out = tiny_export
    weights = save_mdm(model, tmp_path / "teacher.safetensors")
    edge = EdgeGenerator(out, variant="fp32", threads=1)
    full = int(edge.config["diffusion_steps"])  # the tiny model's whole schedule stands in for MDM's 1000 steps
    joints = edge.generate(list(DANCE_PROMPTS[:3]), frames=196, seed=0, sampler="ddpm", steps=full)
    np.savez(tmp_path / "reference.npz", joints=joints)
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_students.py"), "--teacher-export",
                           str(out), "--teacher-weights", str(weights), "--student", f"same={out}",
                           "--reference-samples", str(tmp_path / "reference.npz"), "--prompts", "3", "--draws", "2",
                           "--repeats", "1", "--threads", "1", "--only", "ddpm6_cond", "ddim4", "student",
                           "--work", str(tmp_path / "work"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "students.json").read_text())
    rows = {row["name"]: row for row in result["rows"]}
    assert set(rows) == {"teacher_ddpm20", "teacher_ddpm6_cond", "teacher_ddim4_cond", "student_same"}
    assert rows["teacher_ddpm20"]["calls_per_step"] == "2" and rows["teacher_ddpm6_cond"]["calls_per_step"] == "1"
    assert all(not row["torch"] and row["n_draws"] == 2 and row["peak_rss_mib"] > 0 for row in rows.values())
    assert rows["teacher_ddpm20"]["fidelity_to_shipped_mm"] == 0.0  # its own dance, same seeds
    assert rows["student_same"]["sampler"] == edge.sampling["sampler"]  # the export's own sampler
    # Fewer model rows per step is faster: 6 conditioned steps against 20 guided pairs.
    assert rows["teacher_ddpm6_cond"]["dance_s"] < rows["teacher_ddpm20"]["dance_s"]
    assert "FID_k" in (tmp_path / "students.md").read_text()
