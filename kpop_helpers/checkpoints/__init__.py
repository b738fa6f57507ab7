"""Crash-safe, hash-verified, Drive-mirrored training checkpoints and the weights-only export.

Public API (stable; the trainer and the notebooks use it):

- :class:`CheckpointManager` -- ``save_checkpoint``, ``load_checkpoint``, ``load_latest_checkpoint``,
  ``list_checkpoints``, ``flush``, ``close`` (see :mod:`kpop_helpers.checkpoints.manager`).
- :class:`SyncRetry` -- back-off of the Drive mirror thread (:mod:`kpop_helpers.checkpoints.sync`).
- :func:`capture_rng_state` / :func:`restore_rng_state` -- every RNG, weights_only-safe.
- :func:`export_weights` / :func:`load_exported_weights` -- ``.safetensors`` + config JSON for export.
- :func:`scrub_secrets` -- remove credentials from config dicts before they are stored or logged.
"""

from kpop_helpers.checkpoints.manager import CheckpointManager, flush_all
from kpop_helpers.checkpoints.state import (
    ExportedWeights, capture_rng_state, decode_state, encode_state, export_weights, load_exported_weights,
    restore_rng_state, scrub_secrets,
)
from kpop_helpers.checkpoints.sync import DriveSync, RetentionPolicy, SyncRetry

__all__ = [
    "CheckpointManager", "DriveSync", "ExportedWeights", "RetentionPolicy", "SyncRetry", "capture_rng_state",
    "decode_state", "encode_state", "export_weights", "flush_all", "load_exported_weights", "restore_rng_state",
    "scrub_secrets",
]
