"""kpop_helpers.music: loading (formats, rates, channels, bad files), beats and tempo on synthetic tracks with
known beats, downbeats, sections, the no-beat fallback, analysis.json, the figure and the shared songs.

Needs the [audio] extra (soundfile, soxr); the shared songs need ../shared (skipped with a reason).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile", reason="kpop_helpers.music needs soundfile: pip install 'kpop-helpers[audio]'")
pytest.importorskip("soundfile", reason="kpop_helpers.music needs soundfile: pip install 'kpop-helpers[audio]'")

from conftest import SHARED  # noqa: E402

from kpop_helpers.errors import DataError  # noqa: E402
from kpop_helpers.music import MusicAnalysis, analyze, f_measure, load_audio, plot_analysis, synth  # noqa: E402
from kpop_helpers.utils import ffmpeg_path  # noqa: E402

MUSIC = SHARED / "data" / "music"
SONGS = ("vibe_ace_kevin_macleod.ogg", "lets_go_fishin_karissa_hobbs.ogg", "hungarian_dance_5_brahms.ogg")


def tone(seconds: float, sr: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """[N] or [N, channels] sine; channel c has amplitude 0.1 * (c + 1) so a downmix is checkable."""
    t = np.arange(int(seconds * sr)) / sr
    wave = np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels == 1:
        return 0.3 * wave
    return np.stack([0.1 * (c + 1) * wave for c in range(channels)], axis=1)


def peak_hz(samples: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * sr / samples.size)


# ---------------------------------------------------------------- loading: bad files


def _bad_files(folder: Path) -> dict[str, Path]:
    good = folder / "good.wav"
    sf.write(good, tone(3.0, 22050), 22050)
    data = good.read_bytes()
    cases = {"missing": folder / "nope.wav", "empty": folder / "empty.wav"}
    cases["empty"].write_bytes(b"")
    cases["truncated_wav"] = folder / "cut.wav"
    cases["truncated_wav"].write_bytes(data[: len(data) // 2])
    cases["header_only"] = folder / "header.wav"
    cases["header_only"].write_bytes(data[:30])
    flac = folder / "good.flac"
    sf.write(flac, tone(3.0, 22050), 22050)
    cases["truncated_flac"] = folder / "cut.flac"
    cases["truncated_flac"].write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    cases["text_as_wav"] = folder / "notes.wav"
    cases["text_as_wav"].write_text("these are dance notes, not audio\n" * 20)
    cases["text_as_mp3"] = folder / "notes.mp3"
    cases["text_as_mp3"].write_text("not an mp3 either\n" * 20)
    cases["image_as_ogg"] = folder / "cover.ogg"
    cases["image_as_ogg"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    nan = tone(3.0, 22050)
    nan[1000] = np.nan
    cases["nan_samples"] = folder / "nan.wav"
    sf.write(cases["nan_samples"], nan, 22050, subtype="FLOAT")
    inf = tone(3.0, 22050)
    inf[5] = np.inf
    cases["inf_samples"] = folder / "inf.wav"
    sf.write(cases["inf_samples"], inf, 22050, subtype="FLOAT")
    cases["too_short"] = folder / "blip.wav"
    sf.write(cases["too_short"], tone(1.5, 22050), 22050)
    return cases


BAD = ("missing", "empty", "truncated_wav", "header_only", "truncated_flac", "text_as_wav", "text_as_mp3",
       "image_as_ogg", "nan_samples", "inf_samples", "too_short")
WORDS = {"missing": "not found", "empty": "empty", "truncated_wav": "truncated", "too_short": "at least 2 s",
         "nan_samples": "NaN", "inf_samples": "NaN or infinite"}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return _bad_files(tmp_path_factory.mktemp("bad_audio"))


@pytest.mark.parametrize("case", BAD)
def test_bad_audio_raises_data_error_naming_the_file(bad_files, case):
    path = bad_files[case]
    with pytest.raises(DataError) as info:
        load_audio(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    if case in WORDS:
        assert WORDS[case] in str(info.value)


def test_bad_samples_in_memory():
    with pytest.raises(DataError, match="NaN"):
        load_audio((np.full(44100, np.nan, np.float32), 22050))
    with pytest.raises(DataError, match="at least 2 s"):
        load_audio((np.zeros(1000, np.float32), 22050))
    with pytest.raises(DataError, match="8000 to 192000"):
        load_audio((np.zeros(60000, np.float32), 4000))
    with pytest.raises(DataError, match="sample_rate"):
        load_audio((np.zeros(60000, np.float32),))


# ---------------------------------------------------------------- loading: formats, rates, channels


@pytest.mark.parametrize("ext, rate, channels", [
    ("wav", 8000, 1), ("wav", 44100, 2), ("wav", 192000, 1), ("flac", 48000, 6), ("ogg", 44100, 2),
    ("mp3", 44100, 2), ("aiff", 16000, 1)])
def test_formats_rates_and_channels_load_as_mono_22k(tmp_path, ext, rate, channels):
    if ext.upper() not in sf.available_formats() and not (ext == "aiff" and "AIFF" in sf.available_formats()):
        pytest.skip(f"this libsndfile cannot write {ext}")
    path = tmp_path / f"tone.{ext}"
    sf.write(path, tone(3.0, rate, channels=channels), rate)
    audio = load_audio(path)
    assert audio.sr == 22050 and audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert audio.channels == channels and audio.source == str(path)
    assert abs(audio.duration_s - 3.0) < 0.08  # MP3 adds encoder padding
    assert abs(peak_hz(audio.samples, audio.sr) - 440.0) < 2.0
    if channels > 1 and ext in ("wav", "flac"):  # the downmix is the mean of the channels
        expected = 0.1 * (channels + 1) / 2
        assert abs(np.max(np.abs(audio.samples)) - expected) < 0.01


def test_keep_channels_native_rate_and_memory_layouts(tmp_path):
    stereo = tone(2.5, 44100, channels=2)
    path = tmp_path / "st.wav"
    sf.write(path, stereo, 44100)
    kept = load_audio(path, sr=None, mono=False)
    assert kept.samples.shape == (2, stereo.shape[0]) and kept.sr == 44100
    # [N, C] (soundfile's layout) and [C, N] (librosa's) give the same mono audio; int16 is scaled to [-1, 1].
    a = load_audio((stereo, 44100))
    b = load_audio((stereo.T.copy(), 44100))
    np.testing.assert_allclose(a.samples, b.samples)
    c = load_audio(((stereo * 32767).astype(np.int16), 44100))
    np.testing.assert_allclose(c.samples, a.samples, atol=1e-3)
    assert load_audio(a, sr=11025).sr == 11025


def test_ffmpeg_reads_what_soundfile_cannot(tmp_path):
    exe = ffmpeg_path()
    if exe is None:
        pytest.skip("no ffmpeg (imageio-ffmpeg or PATH) to make and read an M4A")
    wav = tmp_path / "t.wav"
    sf.write(wav, tone(3.0, 44100), 44100)
    m4a = tmp_path / "t.m4a"
    subprocess.run([exe, "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True, timeout=60)
    audio = load_audio(m4a)
    assert abs(audio.duration_s - 3.0) < 0.1 and abs(peak_hz(audio.samples, audio.sr) - 440.0) < 2.0


# ---------------------------------------------------------------- beats and tempo on synthetic tracks


def test_f_measure_matches_mir_eval():
    mir_eval = pytest.importorskip("mir_eval", reason="cross-check needs mir_eval")
    rng = np.random.default_rng(0)
    for _ in range(30):
        ref = np.sort(rng.uniform(0, 30, rng.integers(5, 60)))
        est = np.sort(np.concatenate([ref[rng.random(ref.size) < 0.8] + rng.normal(0, 0.05, size=None),
                                      rng.uniform(0, 30, rng.integers(0, 10))]))
        assert f_measure(ref, est) == pytest.approx(mir_eval.beat.f_measure(ref, est, 0.07), abs=1e-12)
    assert f_measure([], [1.0]) == 0.0


TRACKS = {
    "click_70": lambda: synth.click_track(70, 18),
    "click_100": lambda: synth.click_track(100, 14),
    "click_128": lambda: synth.click_track(128, 12, offset_s=0.3),
    "click_180": lambda: synth.click_track(180, 10),
    "rock_90": lambda: synth.drum_track(90, 16, pattern="rock"),
    "four_on_floor_120": lambda: synth.drum_track(120, 12, pattern="four_on_floor"),
    "hiphop_150": lambda: synth.drum_track(150, 12, pattern="hiphop"),
}


@pytest.mark.parametrize("name", list(TRACKS))
def test_synthetic_tempo_beats_and_positions(name):
    track = TRACKS[name]()
    result = analyze((track.samples, track.sr))
    assert abs(result.tempo_bpm / track.bpm - 1) < 0.02, result.summary()
    assert f_measure(track.beat_times, result.beat_times) >= 0.9
    assert result.warnings == [] and result.clear_beat
    # Positions: downbeats are the beats at position 1; bar and eight-count positions step by one.
    np.testing.assert_array_equal(result.downbeat_times, result.beat_times[result.bar_positions == 1])
    assert np.all(np.diff(result.bar_positions) % 4 == 1) and np.all(np.diff(result.count_positions) % 8 == 1)
    assert set(result.bar_positions[result.count_positions == 1]) == {1}
    if name.startswith("click"):  # accented clicks: the downbeats are the accents
        assert f_measure(track.downbeat_times, result.downbeat_times) >= 0.9


@pytest.mark.parametrize("kind, start, end, sound", [("step", 100, 130, "drums"), ("ramp", 90, 140, "click")])
def test_tempo_changes_are_followed(kind, start, end, sound):
    track = synth.tempo_change_track(start, end, 24, kind=kind, sound=sound)
    result = analyze((track.samples, track.sr))
    assert f_measure(track.beat_times, result.beat_times) >= 0.9
    assert start * 0.95 <= result.tempo_bpm <= end * 1.05


def test_bpm_forces_the_tempo():
    track = synth.click_track(120, 12)
    result = analyze((track.samples, track.sr), bpm=120)
    assert result.tempo_bpm == 120 and result.tempo_forced
    assert f_measure(track.beat_times, result.beat_times) >= 0.9
    half = analyze((track.samples, track.sr), bpm=60)
    assert half.tempo_bpm == 60 and abs(np.median(np.diff(half.beat_times)) - 1.0) < 0.05
    with pytest.raises(DataError, match="bpm"):
        analyze((track.samples, track.sr), bpm=0)


@pytest.mark.parametrize("make", [lambda: synth.silence(8), lambda: synth.tone(8), lambda: synth.noise(10)],
                         ids=["silence", "drone", "noise"])
def test_no_clear_beat_gives_the_default_grid_and_a_warning(make):
    track = make()
    result = analyze((track.samples, track.sr))
    assert not result.clear_beat and "no clear beat" in result.warnings[0]
    assert result.tempo_bpm == 100.0
    np.testing.assert_allclose(np.diff(result.beat_times), 0.6)
    assert result.beat_times[0] == 0.0 and result.bar_positions[0] == 1 and len(result.sections) == 1
    forced = analyze((track.samples, track.sr), bpm=90)
    assert forced.tempo_bpm == 90 and np.allclose(np.diff(forced.beat_times), 60 / 90)
    assert "no clear beat" in forced.warnings[0]


# ---------------------------------------------------------------- sections, analysis.json, figure


@pytest.fixture(scope="module")
def aba():
    track = synth.aba_song(128, bars_per_section=6)
    return track, analyze((track.samples, track.sr))


def test_sections_of_an_aba_song(aba):
    track, result = aba
    assert [s.label for s in result.sections] == ["A", "B", "A"]
    for got, (start, end, _) in zip(result.sections, track.sections):
        assert abs(got.start_s - start) < 60 / 128 and abs(got.end_s - end) < 60 / 128
    for s in result.sections[1:]:  # boundaries sit on downbeats, and start eight-counts
        assert np.min(np.abs(result.downbeat_times - s.start_s)) < 1e-9
        assert result.count_positions[np.argmin(np.abs(result.beat_times - s.start_s))] == 1
    assert all(np.isfinite(s.loudness_db) and s.bars >= 2 for s in result.sections)


def test_analysis_json_round_trip_and_validation(aba, tmp_path):
    _, result = aba
    path = result.save(tmp_path / "analysis.json")
    back = MusicAnalysis.load(path)
    np.testing.assert_allclose(back.beat_times, result.beat_times, atol=1e-4)
    np.testing.assert_array_equal(back.count_positions, result.count_positions)
    for a, b in zip(back.sections, result.sections):
        assert (a.label, a.bars) == (b.label, b.bars) and abs(a.start_s - b.start_s) < 1e-6
    assert back.tempo_bpm == round(result.tempo_bpm, 3) and back.warnings == result.warnings
    assert MusicAnalysis.load(tmp_path).source == result.source  # a folder means its analysis.json
    data = json.loads(path.read_text())
    data["bar_positions"][0] = 5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match="bar_positions") as info:
        MusicAnalysis.load(bad)
    assert str(bad) in str(info.value)
    cut = tmp_path / "cut.json"
    cut.write_text(path.read_text()[:200])
    with pytest.raises(DataError, match="truncated"):
        MusicAnalysis.load(cut)


def test_figure_renders(aba, tmp_path):
    track, result = aba
    fig = plot_analysis(result, (track.samples, track.sr), tmp_path / "a.png")
    assert len(fig.axes) == 3 and (tmp_path / "a.png").stat().st_size > 10_000
    assert len(plot_analysis(result).axes) == 2


def test_optional_trackers_say_what_to_install():
    track = synth.click_track(120, 4)
    for name in ("beat_this", "madmom", "allin1"):
        try:
            __import__(name)
        except ImportError:
            with pytest.raises(ImportError, match="pip install"):
                analyze((track.samples, track.sr), tracker=name)
    with pytest.raises(DataError, match="tracker"):
        analyze((track.samples, track.sr), tracker="metronome")


# ---------------------------------------------------------------- the shared songs


@pytest.mark.parametrize("song", SONGS)
def test_shared_songs_give_a_plausible_analysis(song):
    path = MUSIC / song
    if not path.is_file():
        pytest.skip(f"shared song not found at {path} (needs ../shared beside the repo)")
    manifest = {f["path"]: f for f in json.loads((MUSIC / "manifest.json").read_text())["files"]}
    result = analyze(path)
    assert abs(result.duration_s - manifest[song]["duration_s"]) < 0.05
    assert 60 <= result.tempo_bpm <= 200 and result.clear_beat
    expected_beats = result.tempo_bpm * result.duration_s / 60
    assert abs(result.beat_times.size - expected_beats) < 0.15 * expected_beats
    assert result.downbeat_times.size >= result.beat_times.size // 4 - 1
    assert result.sections[0].start_s == 0 and result.sections[-1].end_s == pytest.approx(result.duration_s)


def test_the_analysis_in_its_own_process_equals_the_one_in_this_process(aba, tmp_path):
    from kpop_helpers.music.isolated import analyze_in_process

    track, _ = aba
    path = track.write(tmp_path / "aba.wav")
    here = analyze(path, bpm=128)
    there, info = analyze_in_process(path, bpm=128)
    np.testing.assert_allclose(there.beat_times, here.beat_times, atol=1e-4)  # analysis.json keeps 0.1 ms
    assert [s.label for s in there.sections] == [s.label for s in here.sections] and there.tempo_forced
    assert 0 < info["peak_rss_mib"] < 200 and info["seconds"] > 0  # the song side of the 200 MiB bound
    short, _ = analyze_in_process(path, excerpt_s=8.0)
    assert short.duration_s == pytest.approx(8.0, abs=0.01)
    bad = tmp_path / "notes.mp3"
    bad.write_text("these are not sounds")
    with pytest.raises(DataError, match="notes.mp3"):
        analyze_in_process(bad)
    with pytest.raises(DataError, match="missing.wav"):
        analyze_in_process(tmp_path / "missing.wav")


def test_music_cli_writes_the_analysis_and_its_figure(aba, tmp_path):
    import sys

    track, _ = aba
    path = track.write(tmp_path / "aba.wav")
    done = subprocess.run([sys.executable, "-m", "kpop_helpers.music", str(path), "--out", str(tmp_path / "a.json"),
                           "--figure", str(tmp_path / "a.png")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert MusicAnalysis.load(line["analysis"]).tempo_bpm == pytest.approx(128, rel=0.02)
    assert (tmp_path / "a.png").stat().st_size > 10_000 and "sections ABA" in line["summary"]
    bad = subprocess.run([sys.executable, "-m", "kpop_helpers.music", str(path), "--bpm", "5"], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode == 2 and "bpm" in bad.stderr
