"""Small numpy versions of the few scipy functions the generation path uses, with scipy's numbers.

Importing scipy.signal, scipy.interpolate and scipy.ndimage costs about 80 MiB of resident memory, too much
for the edge runtime's 200 MiB budget; these functions give the same results (tests/test_numeric.py
compares them with scipy) from numpy alone. Ground floor: imports only numpy and the standard library.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

Mode = Literal["nearest", "reflect"]
# scipy.ndimage's boundary modes as np.pad modes: scipy's "reflect" (d c b a | a b c d) is numpy's "symmetric".
_PAD_MODES = {"nearest": "edge", "reflect": "symmetric"}


def _pad(x: np.ndarray, before: int, after: int, mode: str) -> np.ndarray:
    """x padded along axis 0 the way scipy.ndimage extends a line (also past a whole length, as scipy does)."""
    if mode not in _PAD_MODES:
        raise ValueError(f"mode must be one of {tuple(_PAD_MODES)}, got {mode!r}")
    widths = [(before, after)] + [(0, 0)] * (x.ndim - 1)
    return np.pad(x, widths, mode=_PAD_MODES[mode])


def _as_float(x: np.ndarray) -> np.ndarray:
    """float64 working copy (scipy.ndimage computes in double and casts back to the input's dtype)."""
    return np.asarray(x, dtype=np.complex128 if np.iscomplexobj(x) else np.float64)


def _out_dtype(x: np.ndarray) -> np.dtype:
    """The input's float dtype (scipy keeps it); integer inputs give float64 where scipy would truncate."""
    return x.dtype if x.dtype.kind in "fc" else np.dtype(np.float64)


def gaussian_filter1d(x: np.ndarray, sigma: float, *, axis: int = 0, mode: Mode = "nearest",
                      truncate: float = 4.0) -> np.ndarray:
    """Gaussian filter along one axis, equal to scipy.ndimage.gaussian_filter1d (order 0, cval unused)."""
    x = np.asarray(x)
    sigma = float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    radius = int(truncate * sigma + 0.5)
    # scipy's kernel, same expression so the weights are bitwise scipy's.
    weights = np.exp(-0.5 / (sigma * sigma) * np.arange(-radius, radius + 1) ** 2)
    weights = weights / weights.sum()
    line = np.moveaxis(_as_float(x), axis, 0)
    n = line.shape[0]
    if n == 0:
        return x.astype(_out_dtype(x))
    padded = _pad(line, radius, radius, mode)
    # scipy's symmetric-kernel loop: centre tap first, then pairs from the outermost tap inwards.
    out = padded[radius:radius + n] * weights[radius]
    for j in range(radius, 0, -1):
        out += (padded[radius - j:radius - j + n] + padded[radius + j:radius + j + n]) * weights[radius - j]
    return np.moveaxis(out, 0, axis).astype(_out_dtype(x), copy=False)


def gaussian_filter(x: np.ndarray, sigma: float | Sequence[float], mode: Mode = "reflect",
                    truncate: float = 4.0) -> np.ndarray:
    """Gaussian filter over every axis, equal to scipy.ndimage.gaussian_filter (order 0)."""
    x = np.asarray(x)
    sigmas = [float(s) for s in np.broadcast_to(np.asarray(sigma, dtype=np.float64), (x.ndim,))]
    out = x
    for axis, axis_sigma in enumerate(sigmas):
        if axis_sigma > 1e-15:  # scipy skips (near-)zero sigmas
            out = gaussian_filter1d(out, axis_sigma, axis=axis, mode=mode, truncate=truncate)
    return out.astype(_out_dtype(x), copy=True) if out is x else out


def local_minima(x: np.ndarray) -> np.ndarray:
    """Indices of strict local minima of a 1-D array, equal to scipy.signal.argrelextrema(x, np.less)[0].

    order 1, mode 'clip': an end point is compared with itself, so it is never a minimum.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"local_minima takes a 1-D array, got shape {x.shape}")
    if x.size < 3:
        return np.zeros(0, dtype=np.intp)
    inner = x[1:-1]
    return (np.flatnonzero((inner < x[:-2]) & (inner < x[2:])) + 1).astype(np.intp)


def _not_a_knot_slopes(x: np.ndarray, y: np.ndarray, dx: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """First derivatives s [n, C] at the knots of scipy's not-a-knot spline (its system, its special cases)."""
    n = x.shape[0]
    dxr = dx[:, None]
    if n == 2:  # scipy: both ends clamped to the secant's slope, i.e. the line
        return np.concatenate([slope, slope])
    if n == 3:  # scipy: the parabola through the three points, from a dense 3x3 system
        a = np.array([[1.0, 1.0, 0.0], [dx[1], 2 * (dx[0] + dx[1]), dx[0]], [0.0, 1.0, 1.0]])
        b = np.stack([2 * slope[0], 3 * (dxr[0] * slope[1] + dxr[1] * slope[0]), 2 * slope[1]])
        return np.linalg.solve(a, b)
    # The tridiagonal system, filled as scipy fills it: lower[i] s[i-1] + diag[i] s[i] + upper[i] s[i+1] = b[i].
    diag, lower, upper = np.empty(n), np.zeros(n), np.zeros(n)
    diag[1:-1] = 2 * (dx[:-1] + dx[1:])
    lower[1:-1] = dx[1:]
    upper[1:-1] = dx[:-1]
    b = np.empty((n, y.shape[1]), dtype=y.dtype)
    b[1:-1] = 3 * (dxr[1:] * slope[:-1] + dxr[:-1] * slope[1:])
    d = x[2] - x[0]
    diag[0], upper[0] = dx[1], d
    b[0] = ((dxr[0] + 2 * d) * dxr[1] * slope[0] + dxr[0] ** 2 * slope[1]) / d
    d = x[-1] - x[-3]
    diag[-1], lower[-1] = dx[-2], d
    b[-1] = (dxr[-1] ** 2 * slope[-2] + (2 * d + dxr[-1]) * dxr[-2] * slope[-1]) / d
    # LU without pivoting, as LAPACK's banded solver does when no row swap is needed (the rows inside are
    # diagonally dominant, so elimination stays stable); the scalar factors are shared by every column.
    pivot = diag.copy()
    for i in range(1, n):
        factor = lower[i] / pivot[i - 1]
        pivot[i] = diag[i] - factor * upper[i - 1]
        b[i] -= factor * b[i - 1]
    b[-1] /= pivot[-1]
    for i in range(n - 2, -1, -1):
        b[i] = (b[i] - upper[i] * b[i + 1]) / pivot[i]
    return b


SPLINE_COLUMNS = 32  # columns solved together in cubic_spline


def cubic_spline(x: np.ndarray, y: np.ndarray, at: np.ndarray, *, axis: int = 0) -> np.ndarray:
    """scipy.interpolate.CubicSpline(x, y, axis=axis, bc_type="not-a-knot")(at), extrapolating past the ends.

    x: strictly increasing knots [n >= 2]; y: values with n entries along `axis` (any other shape: the
    columns share one solve). 2 knots give the line and 3 the parabola, as in scipy. float64 (or complex) out.
    """
    x = np.asarray(x, dtype=np.float64)
    y = _as_float(y)
    if x.ndim != 1 or x.shape[0] < 2:
        raise ValueError(f"x must be 1-D with at least 2 knots, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x must contain only finite values")
    axis = axis % max(y.ndim, 1)
    if y.ndim == 0 or y.shape[axis] != x.shape[0]:
        raise ValueError(f"y has shape {y.shape}: expected {x.shape[0]} values along axis {axis}")
    dx = np.diff(x)
    if np.any(dx <= 0):
        raise ValueError("x must be strictly increasing")
    values = np.moveaxis(y, axis, 0)
    trailing = values.shape[1:]
    values = values.reshape(x.shape[0], -1)
    at = np.asarray(at, dtype=np.float64)
    points = at.ravel()
    # Interval i holds [x[i], x[i+1]); the last knot and anything outside use the end intervals (extrapolate).
    interval = np.clip(np.searchsorted(x, points, side="right") - 1, 0, x.shape[0] - 2)
    dt = (points - x[interval])[:, None]
    out = np.empty((points.size, values.shape[1]), dtype=values.dtype)
    # Columns are independent: a block at a time keeps the dozen [knots, columns] temporaries small (a whole
    # song's features [2700, 263] would otherwise hold ~70 MB at once).
    for a in range(0, values.shape[1], SPLINE_COLUMNS):
        block = values[:, a:a + SPLINE_COLUMNS]
        slope = np.diff(block, axis=0) / dx[:, None]
        s = _not_a_knot_slopes(x, block, dx, slope)
        # Piecewise-cubic coefficients of each interval, scipy's PPoly form c0 t^3 + c1 t^2 + c2 t + c3.
        t = (s[:-1] + s[1:] - 2 * slope) / dx[:, None]
        c0 = t / dx[:, None]
        c1 = (slope - s[:-1]) / dx[:, None] - t
        c2, c3 = s[:-1], block[:-1]
        # PPoly sums powers c3 + c2 dt + c1 dt^2 + c0 dt^3 in this order (not Horner): same rounding as scipy.
        out[:, a:a + SPLINE_COLUMNS] = (c3[interval] + c2[interval] * dt + c1[interval] * (dt * dt)
                                       + c0[interval] * (dt * dt * dt))
    out = out.reshape(at.shape + trailing)
    # The evaluation points take the place of `axis` in the output, as in scipy.
    order = list(range(out.ndim))
    order = order[at.ndim:at.ndim + axis] + order[:at.ndim] + order[at.ndim + axis:]
    return out.transpose(order)


def _line(x: np.ndarray, size: int, what: str) -> np.ndarray:
    """A 1-D array and a filter size >= 1, checked."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{what} takes a 1-D array, got shape {x.shape}")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    return x


def uniform_filter1d(x: np.ndarray, size: int, mode: Mode = "nearest") -> np.ndarray:
    """Moving average of a 1-D array, equal to scipy.ndimage.uniform_filter1d (origin 0)."""
    x = _line(x, size, "uniform_filter1d")
    size, n = int(size), x.shape[0]
    if n == 0:
        return x.astype(_out_dtype(x))
    # scipy centres a window of `size` at size // 2: an even window reaches one further back than forward.
    padded = _pad(_as_float(x), size // 2, size - size // 2 - 1, mode)
    # scipy's running sum: the first window added in order, then += (entering - leaving), each output that
    # sum / size; cumsum of a 1-D array adds in sequence, so the rounding is scipy's.
    first = np.add.accumulate(padded[:size])[-1]
    steps = padded[size:size + n - 1] - padded[:n - 1]
    return (np.cumsum(np.concatenate([[first], steps])) / size).astype(_out_dtype(x), copy=False)


def median_filter(x: np.ndarray, size: int, mode: Mode = "nearest") -> np.ndarray:
    """Moving median of a 1-D array, equal to scipy.ndimage.median_filter (origin 0).

    For an even size scipy takes the upper of the two middle values (rank size // 2), not their mean.
    """
    x = _line(x, size, "median_filter")
    size, n = int(size), x.shape[0]
    if n == 0:
        return x.copy()
    padded = _pad(x, size // 2, size - size // 2 - 1, mode)
    windows = np.lib.stride_tricks.sliding_window_view(padded, size)
    return np.partition(windows, size // 2, axis=-1)[:, size // 2].copy()
