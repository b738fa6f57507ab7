"""Training windows: clips -> HumanML3D features -> normalised, length-masked windows of <= 196 frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from kpop_helpers.data.clip import MotionClip
from kpop_helpers.motion.features import joints_to_features
from kpop_helpers.motion.resample import resample_positions
from kpop_helpers.motion.skeleton import FPS_HUMANML
from kpop_helpers.motion.stats import MotionStats, compute_stats


@dataclass
class Window:
    """One training example: raw (un-normalised) features [L, 263] and its captions."""

    features: np.ndarray
    texts: list[str]
    clip_index: int


def clips_to_features(clips: list[MotionClip], *, progress: bool = True) -> list[np.ndarray]:
    """Convert each clip (resampled to 20 fps) to HumanML3D features [T-1, 263]."""
    out = []
    for clip in tqdm(clips, desc="features", disable=not progress, leave=False):
        pos = clip.positions
        if abs(clip.fps - FPS_HUMANML) > 1e-6:
            pos = resample_positions(pos, clip.fps, FPS_HUMANML)
        out.append(joints_to_features(pos[:, :22]))
    return out


def make_windows(features: list[np.ndarray], clips: list[MotionClip], *, max_frames: int = 196,
                 min_frames: int = 40, stride: int = 98) -> list[Window]:
    """Cut feature sequences into overlapping windows of at most `max_frames` rows."""
    windows = []
    for index, (feats, clip) in enumerate(zip(features, clips)):
        texts = [t for t in clip.texts if t] or [clip.style or "a dance"]
        n = feats.shape[0]
        if n < min_frames:
            continue
        if n <= max_frames:
            windows.append(Window(feats, texts, index))
            continue
        starts = list(range(0, n - max_frames + 1, stride))
        if starts[-1] != n - max_frames:
            starts.append(n - max_frames)
        windows.extend(Window(feats[s:s + max_frames], texts, index) for s in starts)
    return windows


def split_by_clip(num_clips: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded split of clip indices into (train, val); val is empty if val_fraction is 0."""
    order = np.random.default_rng(seed).permutation(num_clips)
    n_val = int(round(num_clips * val_fraction)) if val_fraction > 0 else 0
    if val_fraction > 0 and num_clips > 1:
        n_val = min(max(n_val, 1), num_clips - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class WindowBatcher:
    """Deterministic batches: the batch of a given step depends only on (seed, step), so resume is exact."""

    def __init__(self, windows: list[Window], stats: MotionStats, text_cache: dict[str, torch.Tensor],
                 *, batch_size: int, max_frames: int, seed: int):
        if not windows:
            raise ValueError("no training windows: every clip is shorter than min_frames")
        self.windows, self.stats, self.text_cache = windows, stats, text_cache
        self.batch_size, self.max_frames, self.seed = batch_size, max_frames, seed
        self.normalised = [torch.from_numpy(stats.normalize(w.features).astype(np.float32)) for w in windows]

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.windows) // self.batch_size)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.windows))

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """Batch number `step` (0-based): x [B,263,1,T], lengths [B], text embeddings [B,D]."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = self._epoch_order(epoch)
        idx = [order[(pos * self.batch_size + k) % len(order)] for k in range(self.batch_size)]
        rng = np.random.default_rng([self.seed, 1_000_003, step])
        return collate([self.normalised[i] for i in idx],
                       [self.text_cache[self._pick(self.windows[i].texts, rng)] for i in idx], self.max_frames)

    def all_batches(self, batch_size: int) -> list[dict[str, torch.Tensor]]:
        """Every window once, in order, with its first caption (for validation)."""
        out = []
        for start in range(0, len(self.windows), batch_size):
            ids = range(start, min(start + batch_size, len(self.windows)))
            out.append(collate([self.normalised[i] for i in ids],
                               [self.text_cache[self.windows[i].texts[0]] for i in ids], self.max_frames))
        return out

    @staticmethod
    def _pick(texts: list[str], rng: np.random.Generator) -> str:
        return texts[int(rng.integers(len(texts)))]


def collate(seqs: list[torch.Tensor], text_embs: list[torch.Tensor], max_frames: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence (MDM layout [B,263,1,T]) and build the frame mask."""
    lengths = torch.tensor([min(s.shape[0], max_frames) for s in seqs])
    T = int(lengths.max())
    x = torch.zeros(len(seqs), seqs[0].shape[1], 1, T)
    for i, s in enumerate(seqs):
        n = int(lengths[i])
        x[i, :, 0, :n] = s[:n].T
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return {"x": x, "lengths": lengths, "mask": mask, "text_emb": torch.stack(text_embs)}


def dataset_stats(features: list[np.ndarray]) -> MotionStats:
    """Normalisation statistics of a data set, computed the HumanML3D way."""
    return compute_stats(features)
