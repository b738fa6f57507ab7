"""Song sections on bar lines: boundaries from a bar-level self-similarity novelty, labels A/B/C by repetition.

Method: each bar (downbeat to downbeat) gets the mean of its chroma (12, harmony) and MFCC 1-13 (timbre)
frames; each feature is z-scored over the song and the two blocks weighted equally; bars are compared by
cosine similarity. Foote's checkerboard novelty (a kernel `KERNEL_BARS` bars to either side) peaks where
the music before a bar line differs from the music after it; peaks above `MIN_NOVELTY`, at least `MIN_BARS`
apart, are the boundaries, so every section starts on a downbeat and lasts at least two bars. Sections then
share a label when their bars find matches in each other (mean best-match cosine >= `SAME_LABEL`): a repeated
chorus is A again; neighbours with one label are joined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpop_helpers.music.spectra import Spectra

MIN_BARS = 2
KERNEL_BARS = 8
MIN_NOVELTY = 0.15
RELATIVE_NOVELTY = 0.25
BARS_PER_SECTION = 6
SAME_LABEL = 0.55


@dataclass(frozen=True)
class Section:
    """One section: start and end (s, on downbeats except the song's ends), label, mean loudness, bars."""

    start_s: float
    end_s: float
    label: str
    loudness_db: float
    bars: int


def label_name(index: int) -> str:
    """A, B, ... Z, then A2, B2, ..."""
    letter = chr(ord("A") + index % 26)
    return letter if index < 26 else f"{letter}{index // 26 + 1}"


def bar_features(spectra: Spectra, bar_starts: np.ndarray, duration_s: float) -> np.ndarray:
    """[bars, 25]: mean chroma (12) and MFCC 1-13 per bar, z-scored per feature, each block scaled to unit weight."""
    chroma = spectra.chroma
    mfcc = spectra.mfcc(14)[1:]
    rate = spectra.sr / spectra.hop
    frames = np.clip(np.round(np.append(bar_starts, duration_s) * rate).astype(int), 0, chroma.shape[1])
    blocks = []
    # Spread floors in each feature's own units: bars that differ by less than this are the same music, and
    # z-scoring must not blow their differences up to unit size (a steady loop would look like many sections).
    for feats, floor in ((chroma, 0.03), (mfcc, 1.0)):
        rows = [feats[:, a:b].mean(axis=1) if b > a else feats[:, min(a, feats.shape[1] - 1)]
                for a, b in zip(frames[:-1], frames[1:])]
        x = np.asarray(rows, np.float64)
        spread = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.maximum(spread, floor)
        blocks.append(x / np.sqrt(x.shape[1]))
    return np.hstack(blocks)


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    """Cosine similarity between rows (0 for all-zero rows)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.where(norms > 1e-9, x / np.maximum(norms, 1e-9), 0.0)
    return unit @ unit.T


def novelty(similarity: np.ndarray, kernel_bars: int = KERNEL_BARS) -> np.ndarray:
    """Foote novelty at each bar line k (between bars k-1 and k): Gaussian-weighted mean similarity within
    each side minus across, over `kernel_bars` bars to either side (fewer at the song's ends)."""
    n = similarity.shape[0]
    out = np.zeros(n)
    sigma = kernel_bars / 2.0
    for k in range(1, n):
        lo, hi = max(0, k - kernel_bars), min(n, k + kernel_bars)
        idx = np.arange(lo, hi)
        g = np.exp(-0.5 * ((idx - k + 0.5) / sigma) ** 2)
        w = np.outer(g, g)
        side = idx >= k
        same = side[:, None] == side[None, :]
        block = similarity[lo:hi, lo:hi]
        left, right = ~side, side
        within = 0.5 * (np.average(block[np.ix_(left, left)], weights=w[np.ix_(left, left)])
                        + np.average(block[np.ix_(right, right)], weights=w[np.ix_(right, right)]))
        out[k] = within - np.average(block[~same], weights=w[~same])
    return out


def pick_boundaries(curve: np.ndarray, *, min_bars: int = MIN_BARS) -> list[int]:
    """Bar indices of the strongest novelty peaks, at least `min_bars` from each other and the ends.

    A peak counts when it reaches MIN_NOVELTY and RELATIVE_NOVELTY of the strongest one; at most one
    boundary per BARS_PER_SECTION bars on average (real sections run 4-16 bars).
    """
    n = curve.size
    if n < 2 * min_bars:
        return []
    threshold = max(MIN_NOVELTY, RELATIVE_NOVELTY * float(curve[min_bars:n - min_bars + 1].max(initial=0.0)))
    limit = max(0, int(round(n / BARS_PER_SECTION)) - 1)
    chosen: list[int] = []
    for k in np.argsort(-curve, kind="stable"):
        if curve[k] < threshold or len(chosen) >= limit:
            break
        if k < min_bars or n - k < min_bars:
            continue
        is_peak = curve[k] >= curve[max(0, k - 1)] and curve[k] >= curve[min(n - 1, k + 1)]
        if is_peak and all(abs(int(k) - c) >= min_bars for c in chosen):
            chosen.append(int(k))
    return sorted(chosen)


def segment_similarity(similarity: np.ndarray, bounds: list[int]) -> np.ndarray:
    """[S, S]: how well each segment's bars find a match in the other's (mean best-match cosine, both ways).

    Best matches, not means: a repeated chorus matches bar for bar even when a fill or an ad-lib differs.
    """
    spans = list(zip(bounds[:-1], bounds[1:]))
    out = np.ones((len(spans), len(spans)))
    for i, (a, b) in enumerate(spans):
        for j, (c, d) in enumerate(spans):
            if i != j:
                block = similarity[a:b, c:d]
                out[i, j] = 0.5 * (block.max(axis=1).mean() + block.max(axis=0).mean())
    return out


def assign_labels(similarity: np.ndarray, bounds: list[int], *, same: float = SAME_LABEL) -> list[str]:
    """One label per segment [bounds[i], bounds[i+1]): that of the most similar earlier segment reaching `same`,
    else a new letter."""
    sims = segment_similarity(similarity, bounds)
    labels: list[int] = []
    for i in range(len(bounds) - 1):
        earlier = [j for j in range(i) if sims[i, j] >= same]
        labels.append(labels[max(earlier, key=lambda j: sims[i, j])] if earlier else max(labels, default=-1) + 1)
    return [label_name(i) for i in labels]


def mean_db(power: np.ndarray, frame_rate: float, start_s: float, end_s: float) -> float:
    """Mean loudness (dB of the mean power) of the frames in [start_s, end_s)."""
    a = int(np.floor(start_s * frame_rate))
    b = max(a + 1, int(np.ceil(end_s * frame_rate)))
    chunk = power[a:b] if a < power.size else power[-1:]
    return float(10.0 * np.log10(max(float(np.mean(chunk)), 1e-10)))


def find_sections(spectra: Spectra, downbeats: np.ndarray, duration_s: float, power: np.ndarray, *,
                  min_bars: int = MIN_BARS) -> list[Section]:
    """Sections of a song whose bars start at `downbeats` (a pickup before the first joins the first section)."""
    starts = np.asarray(downbeats, np.float64)
    starts = starts[starts < duration_s]
    frame_rate = spectra.sr / spectra.hop
    if starts.size < 2 * min_bars:
        return [Section(0.0, duration_s, "A", mean_db(power, frame_rate, 0.0, duration_s), int(starts.size))]
    feats = bar_features(spectra, starts, duration_s)
    similarity = cosine_matrix(feats)
    bounds = [0] + pick_boundaries(novelty(similarity), min_bars=min_bars) + [starts.size]
    labels = assign_labels(similarity, bounds)
    # Neighbours that got one label were split by a weak boundary: join them (and relabel in order).
    keep = [0] + [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]
    bounds = [bounds[i] for i in keep] + [starts.size]
    labels = assign_labels(similarity, bounds)
    edges = np.append(starts, duration_s)
    sections = []
    for (a, b), label in zip(zip(bounds[:-1], bounds[1:]), labels):
        start = 0.0 if a == 0 else float(edges[a])
        end = duration_s if b == starts.size else float(edges[b])
        sections.append(Section(start, end, label, mean_db(power, frame_rate, start, end), b - a))
    return sections
