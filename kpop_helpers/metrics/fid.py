"""FID and diversity of kinetic/geometric features, as Bailando's `utils/metrics_new.py` computes them.

compat reproduces `normalize`, `calc_fid` and `calculate_avg_distance` (quirks F1-F3); corrected works in
float64, guards constant features and takes tr sqrt(S1 S2) from a symmetric eigen-decomposition.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.metrics.kinetic import Mode, check_mode

NORM_EPS = 1e-10
SQRTM_RETRY_EPS = 1e-5
MIN_SAMPLES = 2
EXACT_PAIR_LOOP_MAX = 256


def _as_feature_matrix(features, name: str, min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """Validate an [N, D] feature set (a list of [D] vectors is stacked)."""
    try:
        arr = np.asarray(np.stack(features) if isinstance(features, (list, tuple)) else features)
    except ValueError as exc:
        raise DataError(f"cannot stack feature vectors ({exc})", field=name, expected="vectors of equal length")
    if arr.ndim != 2:
        raise DataError(f"got shape {arr.shape}", field=name, expected="a feature matrix [N, D]")
    if arr.shape[0] < min_samples:
        raise DataError(f"got {arr.shape[0]} sample(s)", field=name,
                        expected=f"at least {min_samples} samples (FID needs a covariance, diversity a pair)")
    if not np.all(np.isfinite(arr)):
        raise DataError("contains NaN or inf", field=name, expected="finite features")
    return arr


def normalize_features(gt, pred, *, mode: Mode = "compat") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Normalise both sets with gt's mean and population std: returns (gt_norm, pred_norm, mean, std).

    compat: float32 (Bailando stores float32 features), divisor std + 1e-10, so a gt-constant feature
    explodes (F1). corrected: float64, and a gt-constant feature gets divisor 1 (its raw deviation).
    """
    check_mode(mode)
    gt_arr = _as_feature_matrix(gt, "gt", 1)
    pred_arr = _as_feature_matrix(pred, "pred", 1)
    if gt_arr.shape[1] != pred_arr.shape[1]:
        raise DataError(f"gt has {gt_arr.shape[1]} dims, pred {pred_arr.shape[1]}", field="pred",
                        expected="the same feature dimension as gt")
    dtype = np.float32 if mode == "compat" else np.float64
    gt_arr, pred_arr = gt_arr.astype(dtype, copy=False), pred_arr.astype(dtype, copy=False)
    mean = gt_arr.mean(axis=0)
    std = gt_arr.std(axis=0)
    if mode == "compat":
        divisor = std + NORM_EPS
    else:
        divisor = np.where(std > NORM_EPS, std, 1.0)
    return (gt_arr - mean) / divisor, (pred_arr - mean) / divisor, mean, std


@dataclass(frozen=True)
class FIDResult:
    """FID value (real), Re tr sqrt(S1 S2), and the imaginary part compat's complex sqrtm left (F2)."""

    fid: float
    trace_sqrt: float
    imag: float = 0.0
    retried_with_eps: bool = False


def _trace_sqrt_symmetric(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(S1 S2) = tr sqrt(sqrt(S1) S2 sqrt(S1)), a PSD matrix: sum of sqrt of clipped eigenvalues."""
    w1, v1 = np.linalg.eigh(sigma1)
    root1 = (v1 * np.sqrt(np.clip(w1, 0.0, None))) @ v1.T
    inner = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    return float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))


def _sqrtm_no_warn(matrix: np.ndarray) -> np.ndarray:
    # scipy >= 1.16 deprecates `disp`; the reference calls sqrtm(..., disp=False), whose value is sqrtm's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from scipy import linalg  # here, not at import: the edge runtime's beat path must not load scipy

        return linalg.sqrtm(matrix)


def frechet_distance(pred, gt, *, mode: Mode = "compat") -> FIDResult:
    """Frechet distance between Gaussian fits of pred [N, D] and gt [M, D] (Bailando `calc_fid(pred, gt)`)."""
    check_mode(mode)
    pred_arr = _as_feature_matrix(pred, "pred")
    gt_arr = _as_feature_matrix(gt, "gt")
    if pred_arr.shape[1] != gt_arr.shape[1]:
        raise DataError(f"pred has {pred_arr.shape[1]} dims, gt {gt_arr.shape[1]}", field="gt",
                        expected="the same feature dimension as pred")
    if mode == "corrected":
        pred_arr, gt_arr = pred_arr.astype(np.float64), gt_arr.astype(np.float64)
    # compat: means stay in the input dtype (float32 features), covariances are float64 (np.cov).
    mu1, mu2 = pred_arr.mean(axis=0), gt_arr.mean(axis=0)
    sigma1, sigma2 = np.cov(pred_arr, rowvar=False), np.cov(gt_arr, rowvar=False)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    mean_term = float(diff.dot(diff))
    traces = float(np.trace(sigma1) + np.trace(sigma2))
    if mode == "corrected":
        tr_covmean = _trace_sqrt_symmetric(sigma1, sigma2)
        return FIDResult(fid=mean_term + traces - 2.0 * tr_covmean, trace_sqrt=tr_covmean)
    covmean = _sqrtm_no_warn(sigma1.dot(sigma2))
    retried = False
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * SQRTM_RETRY_EPS
        covmean = _sqrtm_no_warn((sigma1 + offset).dot(sigma2 + offset))
        retried = True
    tr_covmean = np.trace(covmean)
    # F2: the reference returns a complex FID here; we report its real part and keep the imaginary one.
    value = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean
    return FIDResult(fid=float(np.real(value)), trace_sqrt=float(np.real(tr_covmean)),
                     imag=float(np.imag(value)), retried_with_eps=retried)


def calc_fid(pred, gt, *, mode: Mode = "compat") -> float:
    """FID (real part) between pred and gt feature sets; see `frechet_distance`."""
    return frechet_distance(pred, gt, mode=mode).fid


def average_pairwise_distance(features, *, mode: Mode = "compat") -> float:
    """Diversity: mean Euclidean distance over unordered pairs i < j (Bailando `calculate_avg_distance`).

    compat accumulates the sum in float32 in the reference's pair order (F3); corrected sums in float64.
    """
    check_mode(mode)
    arr = _as_feature_matrix(features, "features")
    n = arr.shape[0]
    num_pairs = (n * n - n) / 2
    if mode == "compat":
        if n <= EXACT_PAIR_LOOP_MAX:
            # Per-pair 1-D norms (BLAS dot in the input dtype) reproduce the reference bit for bit.
            distances = np.array([np.linalg.norm(arr[i] - arr[j]) for i in range(n) for j in range(i + 1, n)])
        else:
            # Large sets: row-wise norms, within ~1e-7 relative of the loop and far faster.
            distances = np.concatenate([np.linalg.norm(arr[i + 1:] - arr[i], axis=1) for i in range(n - 1)])
        # cumsum is strictly sequential, like the reference's `dist += ...` accumulation in the input dtype.
        total = np.cumsum(distances, dtype=distances.dtype)[-1]
        return float(total / num_pairs)
    arr = arr.astype(np.float64)
    total = 0.0
    for i in range(n - 1):
        total += float(np.linalg.norm(arr[i + 1:] - arr[i], axis=1).sum())
    return total / num_pairs


def quantized_metrics(pred_kinetic, pred_geometric, gt_kinetic, gt_geometric, *,
                      mode: Mode = "compat") -> dict[str, float]:
    """FID_k, FID_g, Div_k, Div_g (and gt diversities) as in Bailando's `quantized_metrics`.

    Both sets are normalised with the gt statistics first; diversities are on normalised features.
    Keys: fid_k, fid_g, div_k, div_g, div_k_gt, div_g_gt (Bailando's fid_m/div_m are fid_g/div_g).
    """
    gt_k, pred_k, _, _ = normalize_features(gt_kinetic, pred_kinetic, mode=mode)
    gt_g, pred_g, _, _ = normalize_features(gt_geometric, pred_geometric, mode=mode)
    return {
        "fid_k": calc_fid(pred_k, gt_k, mode=mode),
        "fid_g": calc_fid(pred_g, gt_g, mode=mode),
        "div_k": average_pairwise_distance(pred_k, mode=mode),
        "div_g": average_pairwise_distance(pred_g, mode=mode),
        "div_k_gt": average_pairwise_distance(gt_k, mode=mode),
        "div_g_gt": average_pairwise_distance(gt_g, mode=mode),
    }
