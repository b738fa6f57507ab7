"""Known-value constraints (MDM's editing rule) and the masks of MDM's edit modes, for every sampling loop.

MDM edits by replacing the model's x0 prediction right after the (guided) model call, at every step:
``pred_x0 = pred_x0 * ~mask + known * mask``; the posterior mean / DDIM update then use the replaced x0
and the sample itself is never overwritten (so known entries of the result are close to, not equal to,
`known`). The masks follow MDM's `sample/edit.py` and `data_loaders/humanml_utils.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.motion.features import FEATURE_DIM
from kpop_helpers.motion.skeleton import T2M_JOINT_NAMES
from kpop_helpers.sampling.xp import Array, namespace, to_numpy

NUM_FEATURES = FEATURE_DIM  # HumanML3D feature vector
T2M_JOINTS: tuple[str, ...] = T2M_JOINT_NAMES  # HumanML3D's joint order
LOWER_BODY_JOINTS: tuple[str, ...] = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee",
                                      "left_ankle", "right_ankle", "left_foot", "right_foot")
_LAYOUTS = "[B,263,1,F] or broadcastable to it, [F,263] (frames x features), [B,F,263] or [263] (columns)"


def hml_lower_body_mask(joints: Sequence[str] = LOWER_BODY_JOINTS) -> np.ndarray:
    """Bool [263]: the HumanML3D feature columns of the given T2M joints (default MDM's HML_LOWER_BODY_MASK).

    Layout: 4 root columns (rot velocity, xz velocity, height), ric (3) and rotation (6) of joints 1..21,
    local velocity (3) of joints 0..21, 4 foot contacts. Root and foot-contact columns are True exactly
    when the pelvis (root) is among `joints`, as in MDM's lower-body mask.
    """
    unknown = sorted(set(joints) - set(T2M_JOINTS))
    if unknown:
        raise DataError(f"unknown joints {unknown}", field="joints", expected=f"names from {list(T2M_JOINTS)}")
    chosen = np.array([name in joints for name in T2M_JOINTS])
    root = np.full(4, chosen[0])
    mask = np.concatenate([root, chosen[1:].repeat(3), chosen[1:].repeat(6), chosen.repeat(3), root])
    assert mask.shape == (NUM_FEATURES,)  # 4 + 21*3 + 21*6 + 22*3 + 4
    return mask


def in_between_mask(lengths: Sequence[int] | np.ndarray, frames: int, prefix_end: float = 0.25,
                    suffix_start: float = 0.75, features: int = NUM_FEATURES) -> np.ndarray:
    """Bool [B,features,1,frames] of MDM's in_between edit: frames [int(p*L), int(s*L)) generated, rest known.

    Padding frames beyond a sample's length L stay known (True), exactly as MDM's edit.py builds it.
    """
    lengths = np.asarray(to_numpy(lengths)).reshape(-1)
    if not 0.0 <= prefix_end <= suffix_start <= 1.0:
        raise DataError(f"prefix_end={prefix_end}, suffix_start={suffix_start}", field="in_between",
                        expected="0 <= prefix_end <= suffix_start <= 1")
    if lengths.size and (lengths.min() < 0 or lengths.max() > frames):
        raise DataError(f"lengths {lengths.tolist()} for {frames} frames", field="lengths",
                        expected=f"0 <= length <= {frames}")
    mask = np.ones((lengths.shape[0], features, 1, int(frames)), dtype=bool)
    for i, length in enumerate(lengths.tolist()):
        mask[i, :, :, int(prefix_end * length):int(suffix_start * length)] = False
    return mask


def _mdm_layout(values: Array, sample_shape: tuple[int, ...], what: str) -> np.ndarray:
    """values in MDM's layout [B,263,1,F] (broadcast), from any of the accepted layouts."""
    array = to_numpy(values)
    given, features = tuple(array.shape), sample_shape[1]
    if array.ndim == 1 and array.shape[0] == features:
        array = array.reshape(1, features, 1, 1)
    elif array.ndim == 2 and array.shape[-1] == features:  # [F, 263]: the project's features layout
        array = array.T[None, :, None, :]
    elif array.ndim == 3 and array.shape[-1] == features:  # [B, F, 263]
        array = array.transpose(0, 2, 1)[:, :, None, :]
    if array.ndim == 4:
        try:
            return np.broadcast_to(array, sample_shape)
        except ValueError:
            pass
    raise DataError(f"{what} has shape {given}, which does not fit a sample of shape "
                    f"{tuple(sample_shape)}", field=f"constraint.{what}", expected=_LAYOUTS)


@dataclass
class Constraint:
    """Known values for sampling: where `mask` is True the x0 prediction is replaced by `known` at every step.

    mask: bool, the sample's shape [B,263,1,F] or broadcastable to it, or [F,263] / [B,F,263] (frames x
    features) or [263] (feature columns, e.g. `hml_lower_body_mask()`). known: the known values in the
    same layouts, in the sample's (normalised) space. Numpy or torch; `apply` works on either.
    """

    mask: Array
    known: Array
    _copies: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def resolved(self, sample_shape: Sequence[int]) -> Constraint:
        """This constraint as numpy arrays of exactly `sample_shape` (MDM layout), checked."""
        sample_shape = tuple(int(n) for n in sample_shape)
        if len(sample_shape) != 4:
            raise DataError(f"sample shape {sample_shape}", field="constraint", expected="[B, 263, 1, F]")
        mask = _mdm_layout(self.mask, sample_shape, "mask")
        if mask.dtype != np.bool_:
            raise DataError(f"mask has dtype {mask.dtype}", field="constraint.mask",
                            expected="a boolean mask (True = known)")
        known = _mdm_layout(self.known, sample_shape, "known").astype(np.float32)
        if not np.isfinite(known[mask]).all():
            raise DataError("known values are not finite where the mask is True", field="constraint.known",
                            expected="finite values at every known entry")
        return Constraint(np.array(mask, dtype=bool), np.ascontiguousarray(known))  # owned, writable copies

    def apply(self, pred_xstart: Array) -> Array:
        """MDM's rule: pred_xstart * ~mask + known * mask, in pred_xstart's library and device."""
        xp = namespace(pred_xstart)
        key = (xp.device_key(pred_xstart), tuple(pred_xstart.shape))
        if key not in self._copies:  # checked and copied once per device and sample shape
            resolved = self.resolved(pred_xstart.shape)
            self._copies[key] = (xp.asarray(resolved.mask, pred_xstart, "bool"),
                                 xp.asarray(resolved.known, pred_xstart, "float32"))
        mask, known = self._copies[key]
        # The reference's arithmetic form (not a `where`): it reproduces the fixtures bit for bit.
        return pred_xstart * ~mask + known * mask
