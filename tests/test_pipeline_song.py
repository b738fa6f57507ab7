"""Notebook 07's stage: the song picked, the section prompts read, the song danced, shown with sound (tiny model)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("soundfile", reason="song analysis needs the [audio] extra (soundfile, soxr)")

from kpop_helpers.errors import DataError  # noqa: E402
from kpop_helpers.music import synth  # noqa: E402
from kpop_helpers.pipeline import (  # noqa: E402
    ExportResult, SongPreview, WorkDirs, alignment_summary, analyse_song, choreograph_song, download_song_dance,
    load_result, load_song_previews, parse_section_prompts, pick_song, save_result, song_files, song_folder,
    song_plan, song_player_html, write_report,
)
from kpop_helpers.pipeline import song as stage  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CREDIT = '"ABA" by the test suite, CC0'


@pytest.fixture
def work(tmp_path, monkeypatch) -> WorkDirs:
    """A work folder outside Colab that sees no shared songs."""
    monkeypatch.setattr(stage, "SHARED_MUSIC", tmp_path / "no_shared_songs")
    monkeypatch.delenv("KPOP_MUSIC_DIR", raising=False)
    (tmp_path / "work").mkdir()
    return WorkDirs(tmp_path / "work")


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """A 24-s A-B-A song at 120 BPM with its credit beside it."""
    path = synth.aba_song(120.0, bars_per_section=4).write(tmp_path_factory.mktemp("music") / "aba.wav")
    path.with_suffix(".txt").write_text(CREDIT)
    return path


def test_section_prompts_are_read_by_label():
    text = "A: a smooth groove; b : powerful hip-hop hits, on the beat\n C2: house: quick footwork;"
    assert parse_section_prompts(text) == {"A": "a smooth groove", "B": "powerful hip-hop hits, on the beat",
                                           "C2": "house: quick footwork"}
    assert parse_section_prompts("") == {} and parse_section_prompts("  ; ") == {}


@pytest.mark.parametrize("text, match", [
    ("a smooth groove", "part 1 'a smooth groove' is not 'LABEL: prompt'"),
    ("A: a groove; B:", "part 2 'B:' is not"),
    ("chorus: big moves", "part 1 'chorus: big moves'"),
    ("A: one; a: two", "section A is given twice"),
])
def test_bad_section_prompts_name_the_field_and_the_format(text, match):
    with pytest.raises(DataError, match=match) as caught:
        parse_section_prompts(text)
    assert caught.value.field == "SECTION_PROMPTS" and "LABEL: prompt" in caught.value.expected


def test_a_song_is_picked_by_path_name_folder_or_made(work, tmp_path, capsys):
    folder = tmp_path / "my_songs"
    for name in ("b_song.wav", "a_song.wav"):
        synth.click_track(120.0, 3.0).write(folder / name)
    (folder / "notes.txt").write_text("not a song")
    assert pick_song(work, folder=folder) == folder / "a_song.wav"  # the first song of the folder
    assert pick_song(work, "b_song.wav", folder=folder) == folder / "b_song.wav"
    assert pick_song(work, str(folder / "b_song.wav")) == folder / "b_song.wav"
    assert pick_song(work, str(folder)) == folder / "a_song.wav"
    with pytest.raises(DataError, match="no song 'missing.mp3'") as caught:
        pick_song(work, "missing.mp3", folder=folder)
    assert caught.value.field == "SONG"
    demo = pick_song(work, "upload")  # outside Colab: no dialog, the default (no songs anywhere: the demo)
    assert "not in Colab" in capsys.readouterr().out
    assert demo == work.local / "music" / "demo_song_aba_120bpm.wav" and demo.with_suffix(".txt").is_file()
    assert pick_song(work) == demo and stage.song_credit(demo).startswith("Music: A synthetic A-B-A demo song")
    assert "no aba.txt credit" in stage.song_credit(tmp_path / "aba.wav")


def test_a_song_is_danced_on_the_beat_shown_with_sound_and_downloaded(work, song, tiny_export, capsys):
    manifest = tiny_export[1] / "manifest.json"
    save_result(ExportResult(str(tiny_export[1]), str(manifest), "", [], {}, 0.0), work.export)
    analysis = analyse_song(work, song, smoke=True)
    out = song_folder(work, song)
    assert analysis.duration_s == pytest.approx(stage.SMOKE_EXCERPT_S, abs=0.05)
    assert (out / "analysis.png").is_file() and (out / "analysis.json").is_file()
    plan = song_plan(analysis, {"A": "a smooth groove", "Z": "never danced"})
    assert "a smooth groove" in plan and "never danced" not in plan and "no section Z" in capsys.readouterr().out
    preview = choreograph_song(work, song, analysis=analysis, prompts={"A": "a smooth groove"}, seed=1, mp4=True,
                               smoke=True, progress=False)
    assert preview.runtime == "ONNX Runtime int8" and preview.dance_seconds == pytest.approx(15.0, abs=0.1)
    assert {"bvh", "npz", "gif", "mp4", "attribution", "analysis_png", "summary"} <= set(preview.outputs)
    assert preview.bas_after >= preview.bas_before and "->" in alignment_summary(preview)
    assert preview.timeline[0][2] == "a smooth groove" and preview.attribution == f"Music: {CREDIT}"
    stored = load_result(SongPreview, out)
    assert stored.outputs == preview.outputs and stored.bas_after == pytest.approx(preview.bas_after)
    report = write_report(work.root, songs=load_song_previews(work)).read_text()
    assert "## Songs danced (07)" in report and "songs/aba/dance.bvh" in report and "CC0" in report
    shown = song_player_html(preview)
    assert "<video controls" in shown and "data:video/mp4;base64," in shown and "CC0" in shown
    assert "too large to show here" in song_player_html(preview, max_mb=0)
    assert "dance.bvh" in song_files(preview) and "alignment.png" in song_files(preview)
    assert download_song_dance(work, preview) == out / "dance.bvh"  # outside Colab: where it is
    assert f"BVH: {out / 'dance.bvh'}" in capsys.readouterr().out


def test_the_pytorch_runtime_dances_and_the_gif_gets_an_audio_player(work, song, tiny_export, monkeypatch):
    from kpop_helpers.pipeline import training

    monkeypatch.setattr(training, "ensure_weights", lambda *a, **k: SimpleNamespace(weights=tiny_export[0]))
    preview = choreograph_song(work, song, runtime="PyTorch", align="tempo", excerpt_s=12, smoke=True,
                               progress=False)  # no analysis given: analysed here, the first 12 s
    assert preview.runtime == "PyTorch (cpu)" and preview.dance_seconds == pytest.approx(12.0, abs=0.1)
    shown = song_player_html(preview)
    assert "data:image/gif;base64," in shown and "<audio controls" in shown and "data:audio/wav;base64," in shown


@pytest.mark.parametrize("setting, field", [({"runtime": "TensorRT"}, "RUNTIME"), ({"align": "jump"}, "ALIGN")])
def test_a_bad_choice_names_its_field(work, song, setting, field):
    with pytest.raises(DataError) as caught:
        choreograph_song(work, song, **setting)
    assert caught.value.field == field
