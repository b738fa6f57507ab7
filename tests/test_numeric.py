"""kpop_helpers.numeric against scipy (kept installed as the reference), and the edge path's scipy-free import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import interpolate, ndimage, signal

from kpop_helpers import numeric

MODES = ("nearest", "reflect")
LENGTHS = (1, 2, 3, 4, 7, 50)


def _spline_ref(x, y, at, axis=0):
    return interpolate.CubicSpline(x, y, axis=axis, bc_type="not-a-knot")(at)


def _relative(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest difference relative to the reference's largest magnitude."""
    assert ours.shape == ref.shape
    return float(np.max(np.abs(ours - ref)) / max(float(np.max(np.abs(ref))), 1e-300))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", LENGTHS + (600,))
def test_gaussian_filter1d_is_scipys(n, mode):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 5))
    for sigma in (0.2, 0.5, 1.0, 2.5, 5.0, 20.0, 3.0 * n):  # down to a 1-tap kernel, up to far past the length
        for axis in (0, 1, -1):
            ours = numeric.gaussian_filter1d(x, sigma, axis=axis, mode=mode)
            np.testing.assert_allclose(ours, ndimage.gaussian_filter1d(x, sigma, axis=axis, mode=mode),
                                       rtol=1e-13, atol=1e-15)
        ours = numeric.gaussian_filter1d(x[:, 0], sigma, mode=mode, truncate=2.0)
        np.testing.assert_allclose(ours, ndimage.gaussian_filter1d(x[:, 0], sigma, mode=mode, truncate=2.0),
                                   rtol=1e-13, atol=1e-15)


def test_gaussian_filter1d_keeps_float32_and_rejects_bad_input():
    x = np.random.default_rng(0).normal(size=40).astype(np.float32)
    ours = numeric.gaussian_filter1d(x, 3.0)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ndimage.gaussian_filter1d(x, 3.0, mode="nearest"), rtol=1e-6)
    with pytest.raises(ValueError):
        numeric.gaussian_filter1d(x, 0.0)
    with pytest.raises(ValueError):
        numeric.gaussian_filter1d(x, 1.0, mode="wrap")


@pytest.mark.parametrize("n", LENGTHS + (599,))
def test_gaussian_filter_is_scipys(n):
    rng = np.random.default_rng(10 + n)
    speed = rng.uniform(0.0, 0.05, size=n)  # what kinetic_velocity smooths: a 1-D speed
    for sigma in (0.5, 5.0, 3.0 * n):
        np.testing.assert_allclose(numeric.gaussian_filter(speed, sigma), ndimage.gaussian_filter(speed, sigma),
                                   rtol=1e-13, atol=1e-15)
    grid = rng.normal(size=(n, 6, 3))
    for sigma in (2.0, (1.5, 0.0, 4.0)):  # every axis, a zero sigma leaves its axis alone
        for mode in MODES:
            np.testing.assert_allclose(numeric.gaussian_filter(grid, sigma, mode=mode),
                                       ndimage.gaussian_filter(grid, sigma, mode=mode), rtol=1e-13, atol=1e-15)


def test_local_minima_is_argrelextrema():
    rng = np.random.default_rng(1)
    cases = [np.array([]), np.array([1.0]), np.array([2.0, 1.0]), np.array([2.0, 1.0, 2.0]),
             np.array([1.0, 2.0, 1.0]), np.array([3.0, 1.0, 1.0, 3.0]), np.array([1.0, 0.0, np.nan, 0.0, 1.0])]
    cases += [rng.normal(size=n) for n in (5, 50, 600)] + [rng.integers(0, 3, size=200).astype(float)]
    for x in cases:
        ours, ref = numeric.local_minima(x), signal.argrelextrema(x, np.less)[0]
        np.testing.assert_array_equal(ours, ref)
        assert ours.dtype == ref.dtype
    with pytest.raises(ValueError):
        numeric.local_minima(np.zeros((3, 3)))


@pytest.mark.parametrize("n", (2, 3, 4, 5, 6, 11, 100))
@pytest.mark.parametrize("spacing", ("uniform", "random"))
def test_cubic_spline_is_scipys(n, spacing):
    rng = np.random.default_rng(100 * n + len(spacing))
    x = np.arange(n) / 20.0 if spacing == "uniform" else np.cumsum(rng.uniform(0.05, 2.0, size=n)) - 3.0
    y = rng.normal(size=(n, 7))
    span = x[-1] - x[0]
    at = np.concatenate([np.linspace(x[0] - 0.3 * span, x[-1] + 0.3 * span, 301), x])  # knots and extrapolation
    assert _relative(numeric.cubic_spline(x, y, at), _spline_ref(x, y, at)) < 1e-12
    # 1-D values, a scalar point, values along another axis and 2-D evaluation points, as scipy shapes them
    assert _relative(numeric.cubic_spline(x, y[:, 0], at), _spline_ref(x, y[:, 0], at)) < 1e-12
    assert numeric.cubic_spline(x, y[:, 0], 0.1).shape == ()
    np.testing.assert_allclose(numeric.cubic_spline(x, y[:, 0], 0.1), _spline_ref(x, y[:, 0], 0.1), rtol=1e-12)
    cube = rng.normal(size=(2, n, 3))
    grid = at[:300].reshape(60, 5)
    for axis in (1, -2):
        ours, ref = numeric.cubic_spline(x, cube, grid, axis=axis), _spline_ref(x, cube, grid, axis=axis)
        assert ours.shape == ref.shape == (2, 60, 5, 3)
        assert _relative(ours, ref) < 1e-12


def test_cubic_spline_special_cases_are_the_line_and_the_parabola():
    x, at = np.array([0.0, 2.0, 3.0]), np.linspace(-1.0, 4.0, 11)
    parabola = 0.5 * x**2 - x + 3.0
    np.testing.assert_allclose(numeric.cubic_spline(x, parabola, at), 0.5 * at**2 - at + 3.0, rtol=1e-13)
    np.testing.assert_allclose(numeric.cubic_spline(x[:2], [1.0, 5.0], at), 1.0 + 2.0 * at, rtol=1e-13)


def test_cubic_spline_on_feature_arrays():
    """HumanML3D-like features [600, 263] sampled at a retimed clock (editing.beats) and 20 -> 60 fps joints."""
    rng = np.random.default_rng(2)
    features = np.cumsum(rng.normal(size=(600, 263)), axis=0) * 0.01 + rng.normal(size=263)
    clock = np.clip(np.cumsum(rng.uniform(0.85, 1.15, size=600)) - 1.0, 0.0, 599.0)
    frames = np.arange(600.0)
    ours, ref = numeric.cubic_spline(frames, features, clock), _spline_ref(frames, features, clock)
    assert np.max(np.abs(ours - ref) / np.abs(ref)) < 1e-9  # every entry, relative to itself
    joints = rng.normal(size=(600, 24, 3))
    times, resampled = np.arange(600) / 20.0, np.arange(1798) / 60.0
    ours, ref = numeric.cubic_spline(times, joints, resampled), _spline_ref(times, joints, resampled)
    assert ours.shape == ref.shape and _relative(ours, ref) < 1e-12


def test_cubic_spline_rejects_bad_knots():
    for x, y in (([0.0], [1.0]), ([0.0, 0.0, 1.0], [1.0, 2.0, 3.0]), ([0.0, 1.0], [1.0, 2.0, 3.0]),
                 ([0.0, np.inf], [1.0, 2.0])):
        with pytest.raises(ValueError):
            numeric.cubic_spline(x, y, [0.5])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", LENGTHS + (300,))
def test_uniform_filter1d_is_scipys(n, mode):
    rng = np.random.default_rng(20 + n)
    x = rng.normal(size=n)
    for size in (1, 2, 3, 4, 5, 8, 9, 60, 2 * n + 3):  # even sizes: scipy's window reaches one further back
        np.testing.assert_allclose(numeric.uniform_filter1d(x, size, mode=mode),
                                   ndimage.uniform_filter1d(x, size, mode=mode), rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError):
        numeric.uniform_filter1d(x, 0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", LENGTHS + (300,))
def test_median_filter_is_scipys(n, mode):
    rng = np.random.default_rng(30 + n)
    for x in (rng.normal(size=n), rng.integers(0, 4, size=n).astype(float)):  # ties too
        # reflect with a window longer than 2n + 1: scipy's own 1-D and N-D rank filters disagree there
        sizes = [s for s in (1, 2, 3, 4, 5, 8, 9, 31, 2 * n + 1) if mode == "nearest" or s <= 2 * n + 1]
        for size in sizes:
            np.testing.assert_array_equal(numeric.median_filter(x, size, mode=mode),
                                          ndimage.median_filter(x, size, mode=mode))
    with pytest.raises(ValueError):
        numeric.median_filter(np.zeros((3, 3)), 3)


def _imported_scipy_modules() -> list[str]:
    """scipy modules a fresh interpreter holds after importing the choreography path's beat modules."""
    code = ("import sys; import kpop_helpers.editing.beats, kpop_helpers.metrics.beat, kpop_helpers.metrics.convert; "
            "print(' '.join(sorted(m for m in sys.modules if m == 'scipy' or m.startswith('scipy.'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_beat_path_imports_no_scipy_filters_or_splines():
    heavy = [m for m in _imported_scipy_modules()
             if m.split(".")[1:2] in (["signal"], ["ndimage"], ["interpolate"], ["stats"], ["sparse"])]
    assert not heavy, f"the beat path imports {heavy}"


def test_beat_path_imports_no_scipy():
    assert "scipy" not in _imported_scipy_modules()
