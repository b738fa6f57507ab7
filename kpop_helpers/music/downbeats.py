"""Downbeats: which of every four beats is "1" (librosa has no downbeat tracker).

4/4 is assumed (K-pop is). Each beat gets three cues, each z-scored over the song: the energy onset at the
beat (accents, kicks and snares), the low-band onset (kick drums, bass notes) and the harmonic change
(1 - cosine between the chroma of the beat and of the beat before: chords change on the one). The bar phase
is the one whose beats have the highest mean summed cue over whole bars. One phase holds for the song; a
bar of 2 or 6 beats (a dropped beat, a bridge in 3/4) shifts the downbeats after it.
"""

from __future__ import annotations

import numpy as np

from kpop_helpers.music.beats import BEATS_PER_BAR, HOP, strength_at


def downbeat_phase(beats: np.ndarray, cues: list[np.ndarray], *, beats_per_bar: int = BEATS_PER_BAR) -> int:
    """Index (0..beats_per_bar-1) of the first downbeat: the phase whose beats have the highest summed z-cues."""
    if beats.size < 2 * beats_per_bar:
        return 0
    score = np.zeros(beats.size)
    for cue in cues:
        cue = np.asarray(cue, np.float64)
        spread = cue.std()
        if spread > 1e-9:
            score += (cue - cue.mean()) / spread
    # Whole bars only: a partial bar at either end would weigh one phase more than the others.
    usable = beats.size - beats.size % beats_per_bar
    means = score[:usable].reshape(-1, beats_per_bar).mean(axis=0)
    return int(np.argmax(means))


def beat_cues(chroma: np.ndarray, sr: int, beats: np.ndarray, low: np.ndarray,
              energy: np.ndarray) -> list[np.ndarray]:
    """Per-beat downbeat cues: energy accent, low-band onset (kick, bass), harmonic change (chroma [12, F] novelty)."""
    fps = sr / HOP
    cues = [strength_at(energy, beats, fps), strength_at(low, beats, fps)]
    # Segments start 2 frames (46 ms) before each beat: the tracked frame is the flux peak, a little after the
    # attack, and the attack must count as the new beat's sound, not the old one's.
    starts = np.clip(np.round(beats * fps).astype(int) - 2, 0, chroma.shape[1] - 1)
    ends = np.maximum(np.append(starts[1:], chroma.shape[1]), starts + 1)
    seg = np.stack([chroma[:, a:b].mean(axis=1) for a, b in zip(starts, ends)], axis=1)
    before = chroma[:, :starts[0]].mean(axis=1) if starts[0] > 0 else seg[:, 0]
    seg = seg / np.maximum(np.linalg.norm(seg, axis=0, keepdims=True), 1e-9)
    prev = np.concatenate([(before / max(np.linalg.norm(before), 1e-9))[:, None], seg[:, :-1]], axis=1)
    cues.append(1.0 - np.sum(seg * prev, axis=0))
    return cues
