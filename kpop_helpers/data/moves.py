"""The move library of the synthetic sample set: each move writes its channels onto a Timeline, on the beat."""

from __future__ import annotations

import numpy as np

from kpop_helpers.data.choreo import Timeline


def _gain(tl: Timeline, part: str) -> float:
    return tl.knobs.energy * (tl.knobs.arm_gain if part == "arms" else tl.knobs.leg_gain)


def groove_bounce(tl: Timeline, b0: float, n: int, side: int) -> None:
    """Knee bounce with a rocking weight shift, loose swinging arms and head nods on the beat."""
    arms = _gain(tl, "arms")
    for i in range(n):
        tl.pose(b0 + i, "swing_fwd" if (i % 2 == 0) == (side > 0) else "loose",
                "loose" if (i % 2 == 0) == (side > 0) else "swing_fwd")
        tl.step(i % 2, b0 + i + 1, 0.6, dx=0.05 * side * tl.knobs.leg_gain, lift=0.6 * tl.knobs.lift)
    tl.arm_wave(0, 0, b0, b0 + n, 0.15 * arms, 2.0, 0.0)
    tl.arm_wave(1, 0, b0, b0 + n, 0.15 * arms, 2.0, np.pi)
    tl.pulse("neck_pitch", b0, b0 + n, 0.25 * tl.knobs.energy)
    tl.wave("sway_x", b0, b0 + n, 0.03 * side, 2.0)
    tl.pulse("chest_pitch", b0, b0 + n, 0.08, offset=0.5)


def _step_pair(tl: Timeline, beat: float, lead: int, dx: float, dz: float) -> None:
    """Lead foot steps to the moved centre on beat + 1, the other closes on beat + 2."""
    tl.travel(dx, dz)
    tl.step(lead, beat + 1, 0.7)
    tl.step(1 - lead, beat + 2, 0.7)


def step_touch(tl: Timeline, b0: float, n: int, side: int) -> None:
    """Side step and close, alternating directions, with claps on the close."""
    dist = tl.knobs.step * _gain(tl, "legs")
    for i in range(0, n - 1, 2):
        s = side if (i // 2) % 2 == 0 else -side
        _step_pair(tl, b0 + i, 0 if s > 0 else 1, s * dist, 0.0)
        tl.hold(b0 + i + 1, b0 + i + 1.4, "wide" if s > 0 else "open_low", "open_low" if s > 0 else "wide")
        tl.hold(b0 + i + 2, b0 + i + 2.3, "clap", "clap")
    tl.wave("spine_roll", b0, b0 + n, -0.1 * side, 4.0, np.pi / 2)


def walk_steps(tl: Timeline, b0: float, n: int, side: int) -> None:
    """Steps forward then back with arms swinging against the legs."""
    dist = 0.9 * tl.knobs.step * _gain(tl, "legs")
    for i in range(0, n - 1, 2):
        lead = (i // 2 + (side < 0)) % 2
        _step_pair(tl, b0 + i, lead, 0.0, dist if i < n // 2 else -dist)
        tl.pose(b0 + i + 1, "swing_back" if lead == 0 else "swing_fwd", "swing_fwd" if lead == 0 else "swing_back")
        tl.pose(b0 + i + 2, "loose", "loose")


def arm_wave(tl: Timeline, b0: float, n: int, side: int) -> None:
    """Arms open wide while a wave rolls through shoulders and elbows from one hand to the other."""
    tl.hold(b0 + 0.5, b0 + n - 0.5, "wide", "wide")
    amp = 0.35 * _gain(tl, "arms")
    for arm in (0, 1):
        lag = 0.0 if (arm == 0) == (side > 0) else np.pi
        tl.arm_wave(arm, 0, b0, b0 + n, amp, 2.0, -lag)
        tl.arm_wave(arm, 2, b0, b0 + n, 1.2 * amp, 2.0, -lag - np.pi / 2)
    tl.wave("shrug_l", b0, b0 + n, 0.12, 2.0, 0.0 if side > 0 else np.pi)
    tl.wave("shrug_r", b0, b0 + n, 0.12, 2.0, np.pi if side > 0 else 0.0)
    tl.wave("spine_roll", b0, b0 + n, 0.08, 2.0)


HIT_PAIRS = (("point_up", "hip"), ("hip", "point_fwd"), ("point_side", "point_side"), ("clap", "clap"),
             ("point_low", "hip"), ("up", "up"), ("goalpost", "goalpost"), ("punch", "guard"))


def point_hits(tl: Timeline, b0: float, n: int, side: int) -> None:
    """A sharp arm hit (points, claps, arms up) on every beat, held half a beat, head snapping along."""
    picks = tl.rng.choice(len(HIT_PAIRS), size=n)
    for i, pick in enumerate(picks):
        left, right = HIT_PAIRS[pick]
        tl.hold(b0 + i, b0 + i + 0.55, left, right, mirror=(side < 0) != (i % 2 == 1))
    tl.pulse("neck_yaw", b0, b0 + n, 0.3 * side, every=2.0)
    tl.pulse("chest_pitch", b0, b0 + n, -0.08)
    tl.step(0 if side > 0 else 1, b0 + 2, 0.6, dx=0.06 * side)


def body_roll(tl: Timeline, b0: float, n: int, side: int) -> None:
    """A wave rolling up the spine from hips to head every two beats, knees soft."""
    amp = 0.18 * tl.knobs.energy
    for channel, lag, scale in (("pelvis_pitch", 0.0, -0.5), ("spine_pitch", 0.7, 1.0), ("chest_pitch", 1.4, 0.8),
                                ("neck_pitch", 2.1, 0.8)):
        tl.wave(channel, b0, b0 + n, scale * amp, 2.0, -lag)
    tl.wave("sway_z", b0, b0 + n, -0.04 * tl.knobs.energy, 2.0, -0.3)
    tl.chan["dy"] -= 0.03 * tl.window(b0, b0 + n)
    tl.hold(b0 + 0.5, b0 + n - 0.5, "open_low", "chest", mirror=side < 0)


def step_turn(tl: Timeline, b0: float, n: int, side: int) -> None:
    """A full turn on the spot in steps (a half turn in two beats), arms tucked then opening."""
    total = side * (2 * np.pi if n >= 4 else np.pi)
    start = tl.facing
    lead = 0 if side > 0 else 1
    for k in range(1, n):
        tl.facing = start + total * k / (n - 1)
        tl.step((lead + k - 1) % 2, b0 + k, 0.75, lift=0.8 * tl.knobs.lift)
    tl.step((lead + n - 1) % 2, b0 + n, 0.75, lift=0.8 * tl.knobs.lift)
    tl.hold(b0 + 0.5, b0 + n - 0.6, "chest", "chest")
    tl.pose(b0 + n, "wide", "wide")


def jump(tl: Timeline, b0: float, n: int, side: int) -> None:
    """Crouch, jump with both feet landing on a beat, arms thrown up at the top."""
    g, legs = 9.81, _gain(tl, "legs")
    land = b0 + n
    height = float(np.clip(0.16 * legs, 0.06, 0.25))
    flight = min(2 * np.sqrt(2 * height / g) / tl.spb, n - 0.8)
    height = g * (flight * tl.spb) ** 2 / 8  # ballistic: the flight time fixes the height
    takeoff = land - flight
    dx = 0.1 * side * (tl.rng.random() < 0.5)
    tl.travel(dx, 0.08 * legs)
    for foot in (0, 1):
        tl.step(foot, land, flight, lift=0.05, jump=height)
    t0, t1 = takeoff * tl.spb, land * tl.spb
    u = np.clip((tl.time - t0) / (t1 - t0), 0.0, 1.0)
    tl.chan["dy"] += 4 * height * u * (1 - u)
    for at in (takeoff - 0.25, land + 0.2):
        tl.chan["dy"] -= 0.08 * legs * np.exp(-0.5 * ((tl.beat - at) / 0.18) ** 2)
    tl.chan["bounce"] *= 1 - tl.window(takeoff, land, 0.3)
    tl.pose(takeoff - 0.3, "swing_back", "swing_back")
    tl.pose(takeoff + flight / 2, "up", "up")
    tl.pose(land + 0.3, "guard", "guard")


def kick_step(tl: Timeline, b0: float, n: int, side: int) -> None:
    """Alternating front kicks peaking on the beat, the opposite arm punching or opening for balance."""
    legs = _gain(tl, "legs")
    for i in range(0, n - 1, 2):
        foot = (i // 2 + (side < 0)) % 2
        tl.step(foot, b0 + i + 1.5, 1.0, lift=0.22 * legs, point=0.6, reach=(0.0, 0.35 * legs))
        tl.hold(b0 + i + 1, b0 + i + 1.4, "punch" if foot == 1 else "wide", "punch" if foot == 0 else "wide")
        tl.pose(b0 + i + 2, "guard", "guard")
    tl.pulse("spine_pitch", b0, b0 + n, -0.1, offset=1.0, every=2.0)


def hip_sway(tl: Timeline, b0: float, n: int, side: int) -> None:
    """Weight sways hip to hip over two beats, one hand on the hip, the other arm slicing on 2 and 4."""
    amp = tl.knobs.energy
    tl.wave("sway_x", b0, b0 + n, 0.06 * amp * side, 2.0)
    tl.wave("pelvis_roll", b0, b0 + n, 0.12 * amp * side, 2.0)
    tl.wave("spine_roll", b0, b0 + n, -0.2 * amp * side, 2.0)
    tl.wave("neck_roll", b0, b0 + n, 0.15 * side, 2.0, np.pi)
    for i in range(n):
        tl.hold(b0 + i, b0 + i + 0.5, "hip", "point_low" if i % 2 else "open_low", mirror=side < 0)


def chest_pop(tl: Timeline, b0: float, n: int, side: int) -> None:
    """Chest popping out on the beat, shoulders shrugging on the off-beat, fists up in a guard."""
    tl.hold(b0 + 0.5, b0 + n - 0.5, "guard", "guard")
    tl.pulse("chest_pitch", b0, b0 + n, -0.25 * tl.knobs.energy, power=6.0)
    tl.pulse("shrug_l", b0, b0 + n, 0.2, offset=0.5, every=2.0 if side > 0 else 1.0)
    tl.pulse("shrug_r", b0, b0 + n, 0.2, offset=0.5 if side > 0 else 1.5, every=2.0)
    tl.arm_wave(0, 0, b0, b0 + n, 0.15 * _gain(tl, "arms"), 1.0)
    tl.arm_wave(1, 0, b0, b0 + n, 0.15 * _gain(tl, "arms"), 1.0)


def aegyo_cheeks(tl: Timeline, b0: float, n: int, side: int) -> None:
    """Fists at the cheeks, head tilting side to side, little taps of the feet in place."""
    tl.hold(b0 + 0.5, b0 + n - 0.4, "cheek", "cheek")
    tl.wave("neck_roll", b0, b0 + n, 0.3 * side, 2.0, np.pi / 2)
    tl.wave("spine_roll", b0, b0 + n, 0.08 * side, 2.0, np.pi / 2)
    tl.wave("shrug_l", b0, b0 + n, 0.1, 1.0)
    tl.wave("shrug_r", b0, b0 + n, 0.1, 1.0, np.pi)
    for i in range(n):
        tl.step((i + (side < 0)) % 2, b0 + i + 1, 0.5, dz=0.05 * (i % 2), lift=0.6 * tl.knobs.lift)


def heart_arms(tl: Timeline, b0: float, n: int, side: int) -> None:
    """A heart drawn with both arms over the head, then a small heart at the chest, swaying."""
    half = max(n // 2, 1)
    tl.hold(b0 + 1, b0 + half, "heart_top", "heart_top")
    tl.hold(b0 + half + 0.5, b0 + n - 0.3, "heart_chest", "heart_chest")
    tl.wave("sway_x", b0, b0 + n, 0.04 * side, 2.0)
    tl.wave("spine_roll", b0, b0 + n, -0.1 * side, 2.0)


def punch_hits(tl: Timeline, b0: float, n: int, side: int) -> None:
    """Alternating punches on every beat with a torso twist, stomping on the first and third beat."""
    for i in range(n):
        tl.hold(b0 + i, b0 + i + 0.5, "punch", "guard", mirror=(i % 2 == 1) == (side > 0))
        if i % 2 == 0:
            tl.step((i // 2 + (side < 0)) % 2, b0 + i, 0.5, lift=1.4 * tl.knobs.lift)
    tl.wave("spine_yaw", b0, b0 + n, 0.35 * tl.knobs.energy * side, 2.0, np.pi / 2)


def footwork_shuffle(tl: Timeline, b0: float, n: int, side: int) -> None:
    """Double-time steps travelling sideways and back while the torso jacks on every beat."""
    dist = 0.4 * tl.knobs.step * _gain(tl, "legs")
    for h in range(2 * n):
        direction = side if h < n else -side
        if h % 2 == 0:
            tl.travel(direction * dist, 0.0)
        tl.step((h + (direction < 0)) % 2, b0 + (h + 1) / 2, 0.45, dz=0.06 * (h % 2), lift=0.7 * tl.knobs.lift)
    tl.pulse("spine_pitch", b0, b0 + n, 0.25 * tl.knobs.energy, power=2.0)
    tl.pulse("pelvis_pitch", b0, b0 + n, -0.1 * tl.knobs.energy, power=2.0)
    tl.hold(b0 + 0.5, b0 + n - 0.5, "loose", "loose")
    tl.arm_wave(0, 1, b0, b0 + n, 0.5 * _gain(tl, "arms"), 1.0)
    tl.arm_wave(1, 1, b0, b0 + n, 0.5 * _gain(tl, "arms"), 1.0, np.pi)


def arm_sweep(tl: Timeline, b0: float, n: int, side: int) -> None:
    """Slow arm arcs from low, out to the side and overhead, the body leaning into them, weight shifting."""
    seq = ("open_low", "wide", "sweep_high", "up", "wide", "open_low")
    for i in range(n + 1):
        tl.pose(b0 + i, seq[i % len(seq)], seq[(i + 1) % len(seq)], mirror=side < 0)
    for arm in (0, 1):  # the arms keep flowing through the poses instead of settling
        tl.arm_wave(arm, 2, b0, b0 + n, 0.3 * _gain(tl, "arms"), 2.0, arm * np.pi)
        tl.arm_wave(arm, 1, b0, b0 + n, 0.2 * _gain(tl, "arms"), 4.0, arm * np.pi / 2)
    tl.wave("spine_roll", b0, b0 + n, -0.18 * side, 2.0 * n, 0.0)
    tl.wave("sway_x", b0, b0 + n, 0.05 * side, 2.0 * n)
    tl.wave("neck_pitch", b0, b0 + n, -0.15, 2.0 * n)
    _step_pair(tl, b0, 0 if side > 0 else 1, 0.5 * side * tl.knobs.step, 0.0)


def lunge_reach(tl: Timeline, b0: float, n: int, side: int) -> None:
    """A lunge forward reaching out with one arm, then stepping back."""
    foot = 0 if side > 0 else 1
    tl.step(foot, b0 + 1, 0.9, dz=0.3 * tl.knobs.leg_gain)
    tl.chan["dy"] -= 0.05 * tl.knobs.energy * tl.window(b0 + 1, b0 + n - 1, 1.0)
    tl.chan["chest_pitch"] += 0.15 * tl.window(b0 + 1, b0 + n - 1, 1.0)
    tl.hold(b0 + 1, b0 + n - 1, "reach_fwd", "open_low", mirror=side < 0)
    tl.arm_wave(0 if side > 0 else 1, 0, b0 + 1, b0 + n - 1, 0.25 * _gain(tl, "arms"), 2.0)
    tl.step(foot, b0 + n, 0.9)


MOVES = {fn.__name__: fn for fn in (groove_bounce, step_touch, walk_steps, arm_wave, point_hits, body_roll,
                                    step_turn, jump, kick_step, hip_sway, chest_pop, aegyo_cheeks, heart_arms,
                                    punch_hits, footwork_shuffle, arm_sweep, lunge_reach)}
