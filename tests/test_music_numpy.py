"""kpop_helpers.music.dsp and the numpy-only analysis path against librosa 0.11 (the reference).

Every port is compared with the librosa function it replaces on a synthetic drum track and on 20 s of a
real song (../shared, skipped with a reason when absent); soxr resampling keeps a tone's pitch and level;
and analyze() runs without importing librosa, numba, scipy.signal or scipy.stats.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile", reason="kpop_helpers.music needs soundfile: pip install 'kpop-helpers[audio]'")
pytest.importorskip("soxr", reason="kpop_helpers.music resamples with soxr: pip install 'kpop-helpers[audio]'")
librosa = pytest.importorskip("librosa", reason="the reference implementation: pip install librosa (in the [dev] extra)")

from kpop_helpers.music import beats as B  # noqa: E402
from kpop_helpers.music import dsp, synth  # noqa: E402
from kpop_helpers.music.audio import resample  # noqa: E402
from kpop_helpers.music.spectra import N_FFT, compute_spectra  # noqa: E402

MUSIC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "music"
SR, HOP = 22050, 512
REAL_SONG = "lets_go_fishin_karissa_hobbs.ogg"


def close(actual: np.ndarray, expected: np.ndarray, rel: float = 1e-5) -> None:
    """Equal within `rel` of each value or of the largest magnitude (values near zero)."""
    assert actual.shape == expected.shape
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rel, atol=rel * scale)


def _real_song() -> np.ndarray:
    songs = sorted(MUSIC.glob("*.ogg"))
    if not songs:
        pytest.skip(f"../shared not present: no songs at {MUSIC}")
    path = MUSIC / REAL_SONG if (MUSIC / REAL_SONG).is_file() else songs[0]
    rate = sf.info(str(path)).samplerate
    data, rate = sf.read(str(path), start=30 * rate, frames=20 * rate, dtype="float32", always_2d=True)
    return resample(data.mean(axis=1), rate, SR)


@pytest.fixture(scope="module", params=["drums", "real"])
def track(request) -> dict:
    """Samples at 22.05 kHz and librosa's features of them, computed once per track."""
    y = synth.drum_track(118.0, 20.0).samples if request.param == "drums" else _real_song()
    mel = librosa.feature.melspectrogram(y=y, sr=SR)
    env = librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=SR, aggregate=np.median).astype(np.float64)
    return {"name": request.param, "y": y, "mel": mel, "env": env}


# ---------------------------------------------------------------- filters and windows (bitwise)


def test_window_and_filters_equal_librosa():
    from scipy.signal import get_window

    for n in (1, 2, 512, 2048):
        np.testing.assert_array_equal(dsp.hann(n), get_window("hann", n, fftbins=True))
    for sr, n_fft, n_mels in ((22050, 2048, 128), (44100, 2048, 64), (16000, 1024, 40)):
        ours = dsp.mel_filters(sr, n_fft, n_mels)
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels))
    for sr, n_fft, tuning in ((22050, 2048, 0.0), (44100, 4096, 0.0), (22050, 2048, -0.25)):
        ours = dsp.chroma_filters(sr, n_fft, tuning)
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=tuning))


def test_normalize_and_power_to_db_equal_librosa():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 50)).astype(np.float32)
    x[:, 7] = 0.0  # an all-zero column stays zero (librosa's threshold and fill=None)
    for axis in (0, 1, -2):
        ref = librosa.util.normalize(x, norm=np.inf, axis=axis)
        np.testing.assert_array_equal(dsp.normalize_max(x, axis=axis), ref)
    with pytest.raises(ValueError):
        dsp.normalize_max(np.array([1.0, np.nan]))
    power = (rng.random((16, 40)) ** 8).astype(np.float32)
    for kwargs in ({}, {"ref": 0.5, "top_db": None}, {"amin": 1e-5, "top_db": 40.0}):
        ours, ref = dsp.power_to_db(power, **kwargs), librosa.power_to_db(power, **kwargs)
        assert ours.dtype == ref.dtype
        np.testing.assert_array_equal(ours, ref)


# ---------------------------------------------------------------- spectra, MFCC, onset strength


def test_stft_mel_chroma_mfcc_equal_librosa(track):
    y, mel = track["y"], track["mel"]
    stft = dsp.stft_power(y, N_FFT, HOP)
    assert stft.dtype == np.float32
    close(stft, np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP, pad_mode="constant")) ** 2)
    # The blockwise analysis spectra (small blocks: their edges are tested too).
    spectra = compute_spectra(y, SR, HOP, block_frames=100)
    close(spectra.mel_power, mel)
    close(spectra.chroma, librosa.feature.chroma_stft(y=y, sr=SR, tuning=0.0))
    close(spectra.mean_square, librosa.feature.rms(y=y, hop_length=HOP)[0].astype(np.float64) ** 2, 1e-4)
    close(spectra.mfcc(14), librosa.feature.mfcc(y=y, sr=SR, n_mfcc=14))
    db = librosa.power_to_db(mel)
    for n in (13, 20):
        close(dsp.mfcc_from_db(db, n), librosa.feature.mfcc(S=db, n_mfcc=n))


def test_onset_strength_equals_librosa(track):
    mel = track["mel"]
    db = librosa.power_to_db(mel)
    level = np.sqrt(mel.sum(axis=0, keepdims=True))
    cases = [(db, {"aggregate": np.median}), (db[:8], {"aggregate": np.mean}), (level, {"aggregate": np.mean}),
             (db, {"aggregate": np.mean, "lag": 2}), (db, {"aggregate": np.median, "center": False})]
    for spec, kwargs in cases:
        ref = librosa.onset.onset_strength(S=spec, sr=SR, hop_length=HOP, **kwargs)
        ours = dsp.onset_strength(spec, hop=HOP, **kwargs)
        assert ours.dtype == ref.dtype
        close(ours, ref)
    # music.beats' three envelopes are librosa's.
    flux, low, energy = B.onset_envelopes(mel, SR)
    close(flux, track["env"])
    close(energy, librosa.onset.onset_strength(S=level, sr=SR, hop_length=HOP, max_size=1).astype(np.float64))


# ---------------------------------------------------------------- beat tracking (identical frames)


def _librosa_beats(env: np.ndarray, bpm, **kwargs) -> np.ndarray:
    return librosa.beat.beat_track(onset_envelope=env, sr=SR, hop_length=HOP, bpm=bpm, units="frames", **kwargs)[1]


def test_beat_track_equals_librosa_at_fixed_tempi(track):
    env = track["env"]
    # 60 BPM: 43 frames per beat (odd: librosa's search starts at round-half-even of 21.5).
    for bpm in (60.0, 87.0, 118.0, 121.3, 150.0, 180.0):
        np.testing.assert_array_equal(dsp.beat_track(env, SR / HOP, bpm), _librosa_beats(env, bpm), err_msg=str(bpm))
    for kwargs in ({"trim": False}, {"tightness": 400.0}, {"tightness": 10.0}):
        ours = dsp.beat_track(env, SR / HOP, 118.0, **kwargs)
        np.testing.assert_array_equal(ours, _librosa_beats(env, 118.0, **kwargs), err_msg=str(kwargs))
    times = B.track(env, SR, 118.0)
    np.testing.assert_array_equal(times, librosa.frames_to_time(_librosa_beats(env, 118.0), sr=SR, hop_length=HOP))


def test_beat_track_equals_librosa_along_a_tempo_curve(track):
    env = track["env"]
    frames = np.arange(env.size)
    ramp = np.interp(frames, [0, env.size - 1], [100.0, 135.0])
    step = np.where(frames < env.size // 2, 96.0, 126.0)
    for curve in (ramp, step):
        np.testing.assert_array_equal(dsp.beat_track(env, SR / HOP, curve), _librosa_beats(env, curve))


def test_beat_track_edge_cases_equal_librosa():
    rng = np.random.default_rng(1)
    env = rng.random(600) ** 4
    env[0] = 50.0  # librosa's local score never reads frame 0
    np.testing.assert_array_equal(dsp.beat_track(env, SR / HOP, 120.0), _librosa_beats(env, 120.0))
    assert dsp.beat_track(np.zeros(300), SR / HOP, 120.0).size == 0 == _librosa_beats(np.zeros(300), 120.0).size
    with pytest.raises(ValueError):
        dsp.beat_track(env, SR / HOP, np.full(10, 120.0))  # neither one tempo nor one per frame


# ---------------------------------------------------------------- resampling (soxr)


@pytest.mark.parametrize("sr_from", [44100, 48000, 8000])
def test_resample_keeps_pitch_level_and_length(sr_from):
    seconds, freq = 3.0, 440.0
    n = int(seconds * sr_from)
    x = (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / sr_from)).astype(np.float32)
    y = resample(x, sr_from, SR)
    assert y.dtype == np.float32 and abs(y.size - round(n * SR / sr_from)) <= 1
    core = y[SR // 4: -SR // 4]  # away from the filter's edge transients
    spectrum = np.abs(np.fft.rfft(core * np.hanning(core.size), 16 * core.size))
    peak = np.argmax(spectrum) * SR / (16 * core.size)
    assert abs(peak - freq) < 0.5
    assert abs(np.sqrt(np.mean(core.astype(np.float64) ** 2)) / (0.5 / np.sqrt(2)) - 1) < 0.01
    # [C, N] resamples each channel alike.
    stereo = resample(np.stack([x, 0.5 * x]), sr_from, SR)
    assert stereo.shape == (2, y.size) and stereo.dtype == np.float32
    np.testing.assert_allclose(stereo[0], y, atol=1e-6)
    np.testing.assert_allclose(stereo[1], 0.5 * y, atol=1e-6)
    assert resample(x, sr_from, sr_from) is x


# ---------------------------------------------------------------- the light import path


def test_analyze_imports_neither_librosa_numba_nor_scipy_signal(tmp_path):
    path = synth.drum_track(120.0, 10.0, sr=44100).write(tmp_path / "drums.wav")  # 44.1 kHz: resampled
    code = (
        "import json, resource, sys\n"
        "from kpop_helpers.music import analyze\n"
        f"song = analyze({str(path)!r})\n"
        "print(json.dumps({'tempo': song.tempo_bpm, 'beats': int(song.beat_times.size),\n"
        "    'rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,\n"
        "    'loaded': [m for m in ('librosa', 'numba', 'scipy.signal', 'scipy.stats', 'matplotlib')\n"
        "               if m in sys.modules]}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [], f"analyze() imported {out['loaded']}"
    assert abs(out["tempo"] - 120.0) < 2.0 and out["beats"] >= 18
