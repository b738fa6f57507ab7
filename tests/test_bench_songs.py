"""benchmarks/bench_songs.py in SMOKE mode: one synthetic song, the tiny export, the table and both memory figures."""

from __future__ import annotations

import json
import subprocess
import sys

from kpop_helpers.music import synth
from tests.conftest import REPO_ROOT


def test_bench_songs_smoke_writes_the_tables(tiny_export, tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    synth.aba_song(120.0).write(songs / "aba.wav")
    (songs / "aba.txt").write_text("aba: a synthetic test song (CC0)\n")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_songs.py"), "--export-dir",
                           str(tiny_export[1]), "--smoke", "--threads", "1", "--songs", str(songs), "--out", str(out),
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "music.json").read_text())
    (song,) = result["songs"]
    assert song["song"] == "aba" and song["sections"].startswith("A") and song["seeds"] == 1
    assert 0 < song["analysis_peak_rss_mib"] < song["peak_rss_mib"] <= song["peak_rss_with_figure_mib"]
    assert 0 <= song["bas_before"] <= 1 and 0 <= song["bas_after"] <= 1 and song["total_s"] > 0
    text = (out / "music.md").read_text()
    assert "analysis process (MiB)" in text and "SMOKE" in text and "aba: a synthetic test song" in text
