"""Procedural choreography engine behind the SYNTHETIC sample set: kinematics, beat timeline, moves, rendering.

Moves (the `MOVES` library at the end) write arm keyframes, body channels and foot swings into a `Timeline`
on a beat grid; `render` turns it into T2M joint positions. Joints are placed only by forward kinematics
from joint rotations on the HumanML3D target skeleton, so bone lengths are constant; legs are solved with
analytic two-bone IK towards planned foot placements, so a supporting foot stays pinned to the floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpop_helpers.motion.skeleton import T2M_PARENTS, T2M_TARGET_OFFSETS

OFFSETS = T2M_TARGET_OFFSETS.astype(np.float64)
FOOT_DROP = 0.05  # a planted ankle sits this far above the ball of its foot (m), as in real capture
TOE_FORWARD = 0.10  # the ball of a foot at home is this far ahead of the dance centre (m)
TURNOUT = 0.12  # feet point slightly outwards at home (rad)
CLEAR_HEIGHT = 0.055  # just above the 5 cm under which a foot reads as in contact (GMD foot-skating test)
MIN_TRAVEL_LIFT = 0.075  # a foot that travels rises at least this high, so it clears CLEAR_HEIGHT
_LEGS = ((1, 4, 7, 10), (2, 5, 8, 11))  # hip, knee, ankle, toe joints of the left and right leg
_ARMS = ((13, 16, 18, 20), (14, 17, 19, 21))  # collar, shoulder, elbow, wrist joints
_BONE_LENGTHS = tuple((float(np.linalg.norm(OFFSETS[leg[1]])), float(np.linalg.norm(OFFSETS[leg[2]])))
                      for leg in _LEGS)  # thigh and shin of each leg
_LEG_LENGTH = min(sum(lengths) for lengths in _BONE_LENGTHS)
_FOOT_PITCH = tuple(float(np.arcsin(FOOT_DROP / np.linalg.norm(OFFSETS[leg[3]]))) for leg in _LEGS)

# Bone directions of a relaxed standing body with SMPL-like proportions (body frame: x left, y up, z forward),
# as the HumanML3D pipeline produces them; the T2M rest offsets are only axis-aligned placeholders (they would
# put the shoulders below the collarbones). Right-side bones mirror the left.
_REST_DIRECTIONS = {1: (0.56, -0.83, 0.0), 3: (0.0, 0.98, -0.2), 6: (0.0, 0.98, 0.15), 9: (0.0, 1.0, 0.05),
                    12: (0.0, 0.99, -0.1), 13: (0.53, 0.84, -0.08), 15: (0.0, 0.82, 0.57), 16: (0.92, 0.38, -0.1)}
_MIRROR = {2: 1, 14: 13, 17: 16}

# Arm poses: (elevation from hanging down, azimuth from sideways towards the front, elbow flexion,
# bend-plane lift, bend-plane inward pull), all angles in rad, mirrored for the right arm.
POSES: dict[str, tuple[float, float, float, float, float]] = {
    "down": (0.12, 0.3, 0.25, 0.0, 0.0),
    "loose": (0.28, 0.7, 0.75, 0.0, 0.4),
    "swing_fwd": (0.6, 1.45, 0.7, 0.0, 0.3),
    "swing_back": (0.4, -1.3, 0.25, 0.0, 0.0),
    "hip": (0.75, -0.35, 1.75, -0.5, 2.0),
    "chest": (0.6, 1.2, 2.3, 0.6, 2.0),
    "clap": (1.05, 1.75, 0.55, 0.2, 1.5),
    "guard": (0.55, 1.0, 2.1, 1.2, 0.6),
    "punch": (1.45, 1.62, 0.03, 0.0, 0.0),
    "point_up": (2.55, 0.7, 0.05, 0.0, 0.0),
    "point_fwd": (1.5, 1.25, 0.05, 0.0, 0.0),
    "point_side": (1.35, 0.15, 0.05, 0.0, 0.0),
    "point_low": (0.85, 0.55, 0.05, 0.0, 0.0),
    "up": (2.8, 0.3, 0.1, 0.0, 0.0),
    "wide": (1.5, 0.15, 0.15, 0.0, 0.0),
    "goalpost": (1.45, 0.1, 1.5, 3.0, 0.0),
    "cheek": (1.0, 1.45, 2.4, 2.0, 2.5),
    "heart_top": (2.75, 0.35, 1.85, 0.3, 3.0),
    "heart_chest": (0.7, 1.35, 2.0, 0.8, 2.5),
    "sweep_high": (2.2, 0.55, 0.35, 0.0, 0.0),
    "reach_fwd": (1.35, 1.3, 0.25, 0.0, 0.0),
    "open_low": (0.8, 0.45, 0.3, 0.0, 0.0),
}


@dataclass(frozen=True)
class Knobs:
    """How a style dances: the numbers every move and the renderer read (metres, radians)."""

    stance: float = 0.12  # half the distance between the balls of the feet
    lift: float = 0.09  # height a stepping foot rises
    step: float = 0.22  # length of a travelling step
    sharpness: float = 2.0  # easing exponent between arm keyframes: 1 glides, 4 hits hard
    arm_gain: float = 1.0  # scales arm swings and waves
    leg_gain: float = 1.0  # scales steps, kicks and jumps
    bounce: float = 0.04  # knee-bounce depth on every beat
    bounce_power: float = 1.0  # > 1 turns the bounce into a short accent on the beat
    level: float = 0.04  # how far below standing height the pelvis rides
    lean: float = 0.05  # forward torso lean
    energy: float = 1.0  # clip-level multiplier on every amplitude


@dataclass(frozen=True)
class Swing:
    """One foot leaving the floor at t0 and landing at t1 (seconds) on a new placement."""

    foot: int
    t0: float
    t1: float
    to_xz: np.ndarray
    to_yaw: float
    lift: float
    point: float = 0.0  # extra toe-down pitch in the air (rad)
    jump: float = 0.0  # ballistic height shared with the pelvis (m)
    reach: tuple[float, float] = (0.0, 0.0)  # world xz excursion at mid-swing (kicks)


# ---------------------------------------------------------------- rotations and kinematics


def rot_axis(axis: int, angle: np.ndarray | float) -> np.ndarray:
    """Rotation matrices [..., 3, 3] about x (0), y (1) or z (2) by angle [...] (rad, right-handed)."""
    a = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    out = np.zeros(a.shape + (3, 3))
    i, j = ((1, 2), (2, 0), (0, 1))[axis]
    out[..., axis, axis] = 1.0
    out[..., i, i] = c
    out[..., j, j] = c
    out[..., i, j] = -s
    out[..., j, i] = s
    return out


def euler(pitch: np.ndarray, yaw: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Ry(yaw) @ Rx(pitch) @ Rz(roll): positive pitch leans forward (+z), roll leans towards -x."""
    return rot_axis(1, yaw) @ rot_axis(0, pitch) @ rot_axis(2, roll)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation [3, 3] turning direction a into direction b (not antiparallel)."""
    a, b = _unit(np.asarray(a, float)), _unit(np.asarray(b, float))
    axis, cos = np.cross(a, b), float(np.dot(a, b))
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + skew + skew @ skew / (1 + cos)


def _rest_rotation(joint: int) -> np.ndarray:
    """Rotation taking the axis-aligned T2M rest offset of `joint` to its relaxed human direction."""
    source = _MIRROR.get(joint, joint)
    target = np.array(_REST_DIRECTIONS[source]) * ([-1.0, 1.0, 1.0] if joint in _MIRROR else 1.0)
    return rotation_between(OFFSETS[joint], target)


_REST = {j: _rest_rotation(j) for j in (*_REST_DIRECTIONS, *_MIRROR)}


def frame_from_bone(direction: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Rotations [T, 3, 3] taking the rest bone (0, -1, 0) to `direction`, with +z towards `hint`."""
    y = -_unit(direction)
    z = hint - np.sum(hint * y, axis=-1, keepdims=True) * y
    # A hint parallel to the bone leaves the twist free: any perpendicular will do.
    fallback = np.where(np.abs(y[..., :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]))
    fallback = fallback - np.sum(fallback * y, axis=-1, keepdims=True) * y
    z = np.where(np.linalg.norm(z, axis=-1, keepdims=True) < 1e-6, fallback, z)
    z = _unit(z)
    return np.stack([np.cross(y, z), y, z], axis=-1)


def forward_kinematics(root: np.ndarray, local: np.ndarray, offsets: np.ndarray = OFFSETS,
                       parents: tuple[int, ...] = T2M_PARENTS) -> np.ndarray:
    """Joint positions [T, J, 3] from root positions [T, 3] and local joint rotations [T, J, 3, 3].

    HumanML3D convention (`Skeleton.forward_kinematics_np`): the accumulated rotation of joint j turns the
    rest offset of the bone from its parent to j, so the children of a branching joint (pelvis, spine3)
    can sit at human angles although their rest offsets are axis-aligned.
    """
    frames, joints = local.shape[:2]
    glob = np.empty_like(local)
    pos = np.empty((frames, joints, 3))
    for j, p in enumerate(parents):
        if p < 0:
            glob[:, j], pos[:, j] = local[:, j], root
        else:
            glob[:, j] = glob[:, p] @ local[:, j]
            pos[:, j] = pos[:, p] + glob[:, j] @ offsets[j]
    return pos


def local_from_global(glob: np.ndarray, parents: tuple[int, ...] = T2M_PARENTS) -> np.ndarray:
    """Local rotations [T, J, 3, 3] (relative to the parent) from global rotations."""
    local = glob.copy()
    for j, p in enumerate(parents):
        if p >= 0:
            local[:, j] = np.swapaxes(glob[:, p], -1, -2) @ glob[:, j]
    return local


def two_bone_ik(root: np.ndarray, target: np.ndarray, pole: np.ndarray, upper: float, lower: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Middle-joint and end positions [T, 3] of a two-bone chain reaching for target, bending towards pole.

    Out-of-reach targets are clamped along the root-target line, so the chain then straightens.
    """
    delta = target - root
    dist = np.linalg.norm(delta, axis=-1, keepdims=True)
    reach = np.clip(dist, abs(upper - lower) + 1e-4, (upper + lower) * (1 - 1e-6))
    along = delta / np.maximum(dist, 1e-12)
    cos_a = np.clip((upper**2 + reach**2 - lower**2) / (2 * upper * reach), -1.0, 1.0)
    side = frame_from_bone(-along, pole)[..., 2]  # pole made perpendicular to the chain
    middle = root + upper * (cos_a * along + np.sqrt(1 - cos_a**2) * side)
    return middle, root + reach * along


def ease(u: np.ndarray, sharpness: float) -> np.ndarray:
    """Sigmoid-like easing of u in [0, 1]: 1 is linear, larger values hold then snap (dance hits)."""
    u = np.clip(u, 0.0, 1.0)
    a, b = u**sharpness, (1 - u) ** sharpness
    return a / (a + b)


def smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 (sigma in frames), edges padded by repetition."""
    if sigma <= 0:
        return x
    radius = int(3 * sigma) + 1
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(x, [(radius, radius)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    return sum(w * padded[i:i + x.shape[0]] for i, w in enumerate(kernel))


def smootherstep(u: np.ndarray) -> np.ndarray:
    """C2-continuous 0 -> 1 ramp on [0, 1]."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (u * (6 * u - 15) + 10)


# ---------------------------------------------------------------- the beat timeline


class Timeline:
    """Per-frame channels of one clip, written by moves on a beat grid and read by `render`."""

    CHANNELS = ("pelvis_pitch", "pelvis_roll", "spine_pitch", "spine_roll", "spine_yaw", "chest_pitch",
                "neck_pitch", "neck_roll", "neck_yaw", "shrug_l", "shrug_r", "dy", "sway_x", "sway_z", "bounce")

    def __init__(self, num_frames: int, fps: float, bpm: float, knobs: Knobs, rng: np.random.Generator):
        self.fps, self.bpm, self.knobs, self.rng = float(fps), float(bpm), knobs, rng
        self.spb = 60.0 / self.bpm  # seconds per beat
        self.time = np.arange(num_frames) / self.fps
        self.beat = self.time / self.spb
        self.chan = {name: np.zeros(num_frames) for name in self.CHANNELS}
        self.chan["bounce"][:] = 1.0
        self.arm_keys: list[tuple[float, np.ndarray]] = []
        self.arm_add = np.zeros((num_frames, 2, 5))
        self.facing = 0.0
        self.center = np.zeros(2)
        self.swings: list[Swing] = []
        self.start = [self.place(f) for f in (0, 1)]
        self.free_at = [0.0, 0.0]  # beat at which each foot finished its last swing
        self.pose(0.0, "loose", "loose")

    @property
    def num_frames(self) -> int:
        """Frames on the timeline."""
        return int(self.time.shape[0])

    def window(self, b0: float, b1: float, ramp: float = 0.5) -> np.ndarray:
        """1 between beats b0 and b1, fading in and out over `ramp` beats, so overlays never jump."""
        rise = smootherstep((self.beat - b0 + ramp / 2) / ramp)
        fall = smootherstep((b1 - self.beat + ramp / 2) / ramp)
        return rise * fall

    def wave(self, channel: str, b0: float, b1: float, amp: float, period: float, phase: float = 0.0) -> None:
        """Adds amp * sin(2 pi (beat - b0) / period + phase) to a channel between beats b0 and b1."""
        self.chan[channel] += amp * np.sin(2 * np.pi * (self.beat - b0) / period + phase) * self.window(b0, b1)

    def pulse(self, channel: str, b0: float, b1: float, amp: float, every: float = 1.0, offset: float = 0.0,
              power: float = 4.0) -> None:
        """Adds a sharp accent of size amp on every `every` beats (shifted by `offset`)."""
        shape = ((1 + np.cos(2 * np.pi * (self.beat - b0 - offset) / every)) / 2) ** power
        self.chan[channel] += amp * shape * self.window(b0, b1)

    def arm_wave(self, arm: int, param: int, b0: float, b1: float, amp: float, period: float,
                 phase: float = 0.0) -> None:
        """Adds an oscillation to one arm parameter (see POSES) between beats b0 and b1."""
        osc = np.sin(2 * np.pi * (self.beat - b0) / period + phase) * self.window(b0, b1)
        self.arm_add[:, arm, param] += amp * osc

    def pose(self, beat: float, left: str, right: str, mirror: bool = False) -> None:
        """Arm keyframe: the left and right arm reach the named POSES at `beat` (mirror swaps the sides)."""
        if mirror:
            left, right = right, left
        self.arm_keys.append((beat * self.spb, np.array([POSES[left], POSES[right]])))

    def hold(self, beat: float, until: float, left: str, right: str, mirror: bool = False) -> None:
        """Arm keyframes that hit a pose at `beat` and keep it until `until`."""
        self.pose(beat, left, right, mirror)
        self.pose(until, left, right, mirror)

    def place(self, foot: int, dx: float = 0.0, dz: float = 0.0) -> tuple[np.ndarray, float]:
        """World (x, z) of the ball of `foot` and its yaw at home + (dx to the left, dz forward)."""
        side = 1.0 if foot == 0 else -1.0
        left = np.array([np.cos(self.facing), -np.sin(self.facing)])
        fwd = np.array([np.sin(self.facing), np.cos(self.facing)])
        xz = self.center + left * (side * self.knobs.stance + dx) + fwd * (TOE_FORWARD + dz)
        return xz, self.facing + side * TURNOUT

    def step(self, foot: int, land: float, dur: float, dx: float = 0.0, dz: float = 0.0, *,
             lift: float | None = None, point: float = 0.0, jump: float = 0.0,
             reach: tuple[float, float] = (0.0, 0.0)) -> None:
        """Plans a swing of `foot` that lands at beat `land` after `dur` beats (shortened if still busy)."""
        start = max(land - dur, self.free_at[foot])
        if land - start < 0.15:
            return
        xz, yaw = self.place(foot, dx, dz)
        left = np.array([np.cos(self.facing), -np.sin(self.facing)])
        fwd = np.array([np.sin(self.facing), np.cos(self.facing)])
        world_reach = left * reach[0] + fwd * reach[1]
        height = self.knobs.lift if lift is None else lift
        self.swings.append(Swing(foot, start * self.spb, land * self.spb, xz, yaw, height, point, jump,
                                 (float(world_reach[0]), float(world_reach[1]))))
        self.free_at[foot] = land

    def travel(self, dx: float = 0.0, dz: float = 0.0) -> None:
        """Moves the dance centre by dx to the left and dz forward of the current facing."""
        self.center = self.center + np.array([np.cos(self.facing), -np.sin(self.facing)]) * dx
        self.center = self.center + np.array([np.sin(self.facing), np.cos(self.facing)]) * dz


# ---------------------------------------------------------------- rendering


def _foot_track(tl: Timeline, foot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ball-of-foot positions [T, 3], yaw [T], extra pitch [T] and contact [T] of one foot."""
    t = tl.time
    xz0, yaw0 = tl.start[foot]
    xz, yaw = np.tile(xz0, (t.size, 1)), np.full(t.size, yaw0)
    height, point, contact = np.zeros(t.size), np.zeros(t.size), np.ones(t.size, dtype=bool)
    for sw in sorted((s for s in tl.swings if s.foot == foot), key=lambda s: s.t0):
        inside = (t > sw.t0) & (t < sw.t1)
        u = (t[inside] - sw.t0) / (sw.t1 - sw.t0)
        moves = np.linalg.norm(sw.to_xz - xz0) > 0.01 or abs(sw.to_yaw - yaw0) > 0.05 or any(sw.reach)
        lift = max(sw.lift, MIN_TRAVEL_LIFT) if moves and sw.jump == 0 else sw.lift
        # Travel only between the moments the toe clears CLEAR_HEIGHT: a foot never slides on the floor.
        grid = np.linspace(0.0, 0.4, 81)
        above = lift * np.sin(np.pi * grid) + 4 * sw.jump * grid * (1 - grid) >= CLEAR_HEIGHT
        clear = float(grid[np.argmax(above)]) if above.any() else 0.4
        travel = smootherstep((u - clear) / (1 - 2 * clear))[:, None]
        arc = np.sin(np.pi * u)
        xz[inside] = xz0 + (sw.to_xz - xz0) * travel + np.asarray(sw.reach) * arc[:, None] ** 2
        yaw[inside] = yaw0 + (sw.to_yaw - yaw0) * travel[:, 0]
        height[inside] = lift * arc + 4 * sw.jump * u * (1 - u)
        point[inside] = sw.point * arc
        contact[inside] = False
        after = t >= sw.t1
        xz[after], yaw[after] = sw.to_xz, sw.to_yaw
        xz0, yaw0 = sw.to_xz, sw.to_yaw
    toe = np.stack([xz[:, 0], height, xz[:, 1]], axis=-1)
    return toe, yaw, point, contact


def _arm_params(tl: Timeline) -> np.ndarray:
    """Arm pose parameters [T, 2, 5] from the keyframes (eased by the style's sharpness) plus overlays."""
    keys = sorted(tl.arm_keys, key=lambda k: k[0])
    times = np.array([k[0] for k in keys])
    values = np.stack([k[1] for k in keys])
    keep = np.append(np.diff(times) > 1e-6, True)  # a later key at the same time wins
    times, values = times[keep], values[keep]
    if times.size == 1:
        return np.broadcast_to(values[0], (tl.num_frames, 2, 5)) + tl.arm_add
    idx = np.clip(np.searchsorted(times, tl.time, side="right") - 1, 0, times.size - 2)
    u = (tl.time - times[idx]) / (times[idx + 1] - times[idx])
    w = ease(u, tl.knobs.sharpness)[:, None, None]
    return values[idx] + (values[idx + 1] - values[idx]) * w + tl.arm_add


def _arm_directions(params: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Upper-arm and forearm unit directions [T, 3] in the chest frame from pose parameters [T, 5]."""
    elev, azim, flex, bend_up, bend_in = (params[:, i] for i in range(5))
    upper = np.stack([side * np.sin(elev) * np.cos(azim), -np.cos(elev), np.sin(elev) * np.sin(azim)], axis=-1)
    hint = np.stack([-side * bend_in, bend_up, np.ones_like(elev)], axis=-1)
    bend = frame_from_bone(-upper, hint)[..., 2]  # hint made perpendicular to the upper arm
    flex = np.clip(flex, 0.0, 2.7)[:, None]  # elbows do not hyperextend or fold through the upper arm
    return upper, np.cos(flex) * upper + np.sin(flex) * bend


def render(tl: Timeline) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions [T, 22, 3] (float64, metres, y up) and foot contacts [T, 2] of a planned timeline."""
    k, c, frames = tl.knobs, tl.chan, tl.num_frames
    bone = np.tile(np.eye(3), (frames, 22, 1, 1))  # accumulated rotation of each joint (see forward_kinematics)
    ankles, contacts, yaws = [], [], []
    for foot, (_, _, _, toe_j) in enumerate(_LEGS):
        toe, yaw, point, contact = _foot_track(tl, foot)
        bone[:, toe_j] = euler(_FOOT_PITCH[foot] + point, yaw, np.zeros(frames))
        ankles.append(toe - bone[:, toe_j] @ OFFSETS[toe_j])
        contacts.append(contact)
        yaws.append(yaw)
    # The pelvis rides over the supporting feet; a swinging foot pulls it only a little.
    weight = [smooth(np.where(ct, 1.0, 0.3), 2.0)[:, None] for ct in contacts]
    over = smooth((weight[0] * ankles[0] + weight[1] * ankles[1]) / (weight[0] + weight[1]), 1.5)
    facing = smooth((yaws[0] + yaws[1]) / 2, 2.0)
    sway_x, sway_z = c["sway_x"], c["sway_z"]
    phase = tl.beat - np.floor(tl.beat)
    bounce = k.bounce * k.energy * c["bounce"] * ((1 + np.cos(2 * np.pi * phase)) / 2) ** k.bounce_power
    hip_drop = -float((_REST[1] @ OFFSETS[1])[1])
    root = np.stack([over[:, 0] + np.cos(facing) * sway_x + np.sin(facing) * sway_z,
                     FOOT_DROP + 0.97 * _LEG_LENGTH + hip_drop - k.level - bounce + c["dy"],
                     over[:, 2] - np.sin(facing) * sway_x + np.cos(facing) * sway_z], axis=-1)
    bone[:, 0] = euler(c["pelvis_pitch"], facing, c["pelvis_roll"])
    for hip_j in (1, 2):
        bone[:, hip_j] = bone[:, 0] @ _REST[hip_j]
    # Lower the pelvis wherever a planted foot could not be reached, smoothly, never raising it.
    deficit = np.zeros(frames)
    for foot, (hip_j, _, _, _) in enumerate(_LEGS):
        hip = root + bone[:, hip_j] @ OFFSETS[hip_j]
        flat = np.linalg.norm((hip - ankles[foot])[:, [0, 2]], axis=-1)
        allowed = ankles[foot][:, 1] + np.sqrt(np.maximum((0.985 * _LEG_LENGTH) ** 2 - flat**2, 0.0))
        deficit = np.maximum(deficit, np.where(contacts[foot], hip[:, 1] - allowed, 0.0))
    spread = np.max([np.roll(np.pad(deficit, 4, mode="edge"), s)[4:-4] for s in range(-4, 5)], axis=0)
    root[:, 1] -= np.maximum(smooth(spread, 1.5), deficit)
    for foot, (hip_j, knee_j, ankle_j, _) in enumerate(_LEGS):
        hip = root + bone[:, hip_j] @ OFFSETS[hip_j]
        pole = np.stack([np.sin(yaws[foot]), np.full(frames, 0.1), np.cos(yaws[foot])], axis=-1)  # knees over toes
        knee, ankle = two_bone_ik(hip, ankles[foot], pole, *_BONE_LENGTHS[foot])
        bone[:, knee_j] = frame_from_bone(knee - hip, pole)
        bone[:, ankle_j] = frame_from_bone(ankle - knee, pole)
    # Spine, neck and head: the lean and each channel are shared out along the chain.
    torso = bone[:, 0]
    for joint, share in ((3, 0.35), (6, 0.35), (9, 0.3)):
        bone[:, joint] = torso @ _REST[joint]  # this bone lies in the segment below the joint
        pitch = share * (c["spine_pitch"] + k.lean) + (c["chest_pitch"] if joint == 9 else 0.0)
        torso = torso @ euler(pitch, share * c["spine_yaw"], share * c["spine_roll"])
    neck = torso @ euler(0.6 * c["neck_pitch"] - k.lean, 0.6 * c["neck_yaw"], 0.6 * c["neck_roll"])
    bone[:, 12] = neck @ _REST[12]
    bone[:, 15] = neck @ euler(0.4 * c["neck_pitch"], 0.4 * c["neck_yaw"], 0.4 * c["neck_roll"]) @ _REST[15]
    arms = _arm_params(tl)
    for arm, (collar, shoulder, elbow, wrist) in enumerate(_ARMS):
        side = 1.0 if arm == 0 else -1.0
        girdle = torso @ rot_axis(2, side * c["shrug_l" if arm == 0 else "shrug_r"])
        bone[:, collar] = girdle @ _REST[collar]
        bone[:, shoulder] = girdle @ _REST[shoulder]
        upper, fore = _arm_directions(arms[:, arm], side)
        upper, fore = (torso @ upper[..., None])[..., 0], (torso @ fore[..., None])[..., 0]
        bone[:, elbow] = frame_from_bone(upper, fore)
        bone[:, wrist] = frame_from_bone(fore, -upper)
    joints = forward_kinematics(root, local_from_global(bone))
    return joints, np.stack(contacts, axis=-1)


# ---------------------------------------------------------------- the move library
# A move fills beats [b0, b0 + n) of a timeline; `side` (+1 / -1) says whether it leads to the left or right.
