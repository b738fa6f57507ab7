"""Choreograph a song: sections to prompts, the whole song danced (edge and PyTorch), on the beat, written out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("soundfile", reason="song analysis needs the [audio] extra (soundfile, soxr)")

from kpop_helpers.choreograph import choreograph, write_song_outputs  # noqa: E402
from kpop_helpers.edge import EdgeGenerator  # noqa: E402
from kpop_helpers.editing.song import INTENSITY_WORDS, intensity_words, song_timeline  # noqa: E402
from kpop_helpers.errors import DataError  # noqa: E402
from kpop_helpers.generate import TorchDanceGenerator  # noqa: E402
from kpop_helpers.music import analyze, synth  # noqa: E402
from tests.conftest import SHARED  # noqa: E402

MUSIC = SHARED / "data" / "music"
STEPS = 5


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    """A synthetic A-B-A song (two drum/tone patterns) at 120 BPM: sections with known repeats."""
    return synth.aba_song(120.0).write(tmp_path_factory.mktemp("song") / "aba.wav")


@pytest.fixture(scope="module")
def analysis(song):
    return analyze(song)


@pytest.fixture(scope="module")
def edge(tiny_export):
    return EdgeGenerator(tiny_export[1], variant="fp32", threads=1)


def test_sections_become_prompts_with_intensity_from_loudness(analysis):
    assert [s.label for s in analysis.sections] == ["A", "B", "A"]
    styled = song_timeline(analysis)
    assert styled.end_s == pytest.approx(analysis.duration_s) and styled.entries[0].start_s == 0
    assert all(any(e.prompt.startswith(w) for w in INTENSITY_WORDS) for e in styled.entries)
    mapped = song_timeline(analysis, {"B": "a big chorus"})
    assert mapped.entries[1].prompt == "a big chorus" and mapped.entries[0].prompt == styled.entries[0].prompt
    assert song_timeline(analysis, ["one", "two", "three"]).prompts == ["one", "two", "three"]
    assert intensity_words([-30, -10, -20, -5]) == ["a gentle", "a smooth", "an energetic", "a powerful"][:1] + \
        ["an energetic", "a smooth", "a powerful"]
    with pytest.raises(DataError, match="labels \\['C'\\] are not sections"):
        song_timeline(analysis, {"C": "x"})
    with pytest.raises(DataError, match="one prompt per section"):
        song_timeline(analysis, ["one", "two"])


def test_the_whole_song_is_danced_and_put_on_the_beat(song, analysis, edge):
    dance = choreograph(song, edge, analysis=analysis, steps=STEPS, seed=1)
    assert dance.joints.shape == (round(analysis.duration_s * 20), 22, 3)
    assert np.isfinite(dance.joints).all()
    assert dance.plan.windows is not None  # longer than the model: windows
    assert dance.bas_after >= dance.bas_before  # snapping to the beats never lowers the score it aims at
    none = choreograph(song, edge, analysis=analysis, steps=STEPS, seed=1, align="none")
    assert none.bas_after == pytest.approx(none.bas_before)


def test_pytorch_and_edge_make_the_same_song_dance(song, analysis, edge, tiny_export, one_torch_thread):
    settings = dict(analysis=analysis, steps=STEPS, seed=2, sampler="ddpm", guidance=2.5, align="none")
    a = choreograph(song, edge, **settings)
    b = choreograph(song, TorchDanceGenerator(tiny_export[0], text_encoder=edge.text_encoder, progress=False),
                    **settings)
    assert float(np.abs(a.joints - b.joints).max()) < 2e-3  # float rounding of two runtimes over the song


def test_outputs_load_back_and_credit_the_song(song, analysis, edge, tmp_path):
    credit = song.with_suffix(".txt")
    credit.write_text("\"ABA\" by the test suite, CC0")
    dance = choreograph(song, edge, analysis=analysis, steps=STEPS)
    paths = write_song_outputs(dance, tmp_path / "out", gif=True, gif_frames=8, progress=False)
    from kpop_helpers.data.io import load_clips
    from kpop_helpers.music import MusicAnalysis

    clip = load_clips(paths["npz"], progress=False)[0][0]
    np.testing.assert_allclose(clip.positions, dance.joints, atol=1e-6)
    assert MusicAnalysis.load(paths["analysis"]).tempo_bpm == pytest.approx(analysis.tempo_bpm, rel=1e-3)
    assert len(json.loads(paths["timeline"].read_text())) == 3
    assert "CC0" in paths["attribution"].read_text()
    summary = json.loads(paths["summary"].read_text())
    assert summary["sections"] == ["A", "B", "A"] and summary["bas_after"] == pytest.approx(dance.bas_after)


@pytest.mark.parametrize("name", ["hungarian_dance_5_brahms", "lets_go_fishin_karissa_hobbs", "vibe_ace_kevin_macleod"])
def test_cli_choreographs_every_shared_song(name, tiny_export, tmp_path):
    path = MUSIC / f"{name}.ogg"
    if not path.is_file():
        pytest.skip(f"{path} not found (needs ../shared beside the repo)")
    code = ("import sys; from kpop_helpers.choreograph.__main__ import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'the song CLI imported torch'; raise SystemExit(rc)")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", code, str(path), "--export-dir", str(tiny_export[1]),
                           "--excerpt", "20", "--steps", str(STEPS), "--threads", "1", "--gif-frames", "6",
                           "--quiet", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["seconds"] == pytest.approx(20, abs=0.1) and summary["tempo_bpm"] > 40
    assert (out / "dance.bvh").is_file() and (out / "ATTRIBUTION.txt").is_file()


def test_bad_audio_is_refused_naming_the_file(tiny_export, tmp_path):
    bad = tmp_path / "notes.mp3"
    bad.write_text("these are not sounds")
    done = subprocess.run([sys.executable, "-m", "kpop_helpers.choreograph", str(bad), "--export-dir",
                           str(tiny_export[1]), "--out", str(tmp_path / "o")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "notes.mp3" in done.stderr
