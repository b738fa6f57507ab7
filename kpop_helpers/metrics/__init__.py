"""Dance-quality metrics without learned evaluators: AIST++/Bailando features, FID, Div, BAS, EDGE PFC.

numpy + scipy only (no torch), so the edge runtime can use them. `mode="compat"` reproduces the published
reference code, quirks included; `mode="corrected"` fixes the quirks. See docs/metrics.md.
"""

from kpop_helpers.metrics.beat import (
    BeatAlignment,
    beat_align,
    beat_align_score,
    beat_alignment,
    kinetic_velocity,
    motion_beats,
    music_beat_frames,
    music_beats_from_audio,
)
from kpop_helpers.metrics.convert import (
    HAND_LENGTH_M,
    resample,
    t2m_to_smpl24,
    to_aist_convention,
    to_edge_convention,
    y_up_to_z_up,
    z_up_to_y_up,
)
from kpop_helpers.metrics.fid import (
    FIDResult,
    average_pairwise_distance,
    calc_fid,
    frechet_distance,
    normalize_features,
    quantized_metrics,
)
from kpop_helpers.metrics.fidelity import fidelity
from kpop_helpers.metrics.geometric import BodyUnits, extract_geometric_features, measure_body_units
from kpop_helpers.metrics.kinetic import MODES, extract_kinetic_features
from kpop_helpers.metrics.pfc import FootContact, foot_contact_terms, physical_foot_contact
from kpop_helpers.metrics.suite import bailando_features, dance_quality

__all__ = [
    "MODES", "HAND_LENGTH_M", "BeatAlignment", "BodyUnits", "FIDResult", "FootContact",
    "average_pairwise_distance", "bailando_features", "beat_align", "beat_align_score", "beat_alignment",
    "calc_fid", "dance_quality", "extract_geometric_features", "extract_kinetic_features", "fidelity",
    "foot_contact_terms", "frechet_distance", "kinetic_velocity", "measure_body_units", "motion_beats",
    "music_beat_frames", "music_beats_from_audio", "normalize_features", "physical_foot_contact",
    "quantized_metrics", "resample", "t2m_to_smpl24", "to_aist_convention", "to_edge_convention",
    "y_up_to_z_up", "z_up_to_y_up",
]
