"""The active challenge: per-frame Face Mesh signals (the drive module's eye opening, mouth
opening and head pose) turned into actions (blink, turns, look up, mouth open), and the check
that the asked actions were done in the order asked, each within the time allowed.

An action is a change from the neutral face: a turn already held on the first frame does not
count, nor does a blink or an open mouth already under way. The neutral pose is the median of the
first half second, clipped to 15 degrees of yaw: the person is asked to face the camera, which
may sit off to one side (a laptop beside the screen, a car's pillar)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

import numpy as np

from faceatlas.apps.drive import DriveConfig, FaceMeshTracker, eye_aspect_ratios, head_pose, mouth_aspect_ratio
from faceatlas.apps.kyc.config import Action, KycConfig

NEUTRAL_S = 0.5
NEUTRAL_YAW_CLIP = 15.0
NEUTRAL_PITCH_CLIP = 15.0
FRONTAL_YAW = 15.0  # eye openness is measured on frames this close to frontal (a turned head hides an eye)
MIN_SAMPLES = 3  # a turn or an open mouth holds for at least this many frames


@dataclass(frozen=True)
class Sample:
    """One frame's Face Mesh reading of the person (``None`` fields: no face in the frame)."""

    t: float
    faces: int = 0  # faces on camera (others at least ``other_face_share`` of the person's box)
    ear: float | None = None
    yaw: float | None = None
    pitch: float | None = None
    mar: float | None = None


@dataclass(frozen=True)
class ActionEvent:
    action: Action
    start: float
    end: float


@dataclass(frozen=True)
class ChallengeResult:
    passed: bool
    done: list[ActionEvent]  # the asked actions found, in order
    failed_step: int | None  # the first action not done in time (or done out of order)
    detail: str
    seen: list[ActionEvent]  # every action seen


def mesh_samples(frames: Sequence[np.ndarray], times: Sequence[float], config: KycConfig,
                 tracker: FaceMeshTracker | None = None) -> list[Sample]:
    """Face Mesh on every frame (in video mode, so it tracks from frame to frame)."""
    own = tracker is None
    mesh = tracker or FaceMeshTracker(DriveConfig(max_faces=3))
    samples = []
    last: tuple[float, float] | None = None
    try:
        for frame, t in zip(frames, times, strict=True):
            faces = mesh.find(frame)
            if not faces:
                samples.append(Sample(t))
                continue
            # The person: the largest face at first, then the face nearest to where the person was
            # (someone behind does not take their place for a frame).
            where = last
            person = faces[0] if where is None else min(faces, key=lambda f: _distance(f.bbox, where))
            last = _centre(person.bbox)
            others = sum(1 for f in faces if f is not person and f.area >= config.other_face_share * person.area)
            pose = head_pose(person.landmarks, frame.shape[1], frame.shape[0])
            left, right = eye_aspect_ratios(person.landmarks)
            samples.append(Sample(
                t, 1 + others, (left + right) / 2.0,
                None if pose is None else pose.yaw, None if pose is None else pose.pitch,
                mouth_aspect_ratio(person.landmarks),
            ))
    finally:
        if own:
            mesh.close()
    return samples


def _centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def _distance(box: tuple[float, float, float, float], point: tuple[float, float]) -> float:
    x, y = _centre(box)
    return float(np.hypot(x - point[0], y - point[1]))


def _episodes(samples: Sequence[Sample], active: Sequence[bool | None], min_samples: int,
              max_s: float | None = None) -> list[tuple[float, float]]:
    """(start, end) of runs of ``active`` samples that began after an inactive one (a change).
    Unmeasured samples (None) are skipped; with ``max_s`` (a blink) the run must also end, within it."""
    found = []
    run: list[float] = []
    was_inactive = False
    for sample, flag in zip(samples, active, strict=True):
        if flag is None:
            continue
        if flag:
            run.append(sample.t)
            continue
        if run and was_inactive and len(run) >= min_samples and (max_s is None or run[-1] - run[0] <= max_s):
            found.append((run[0], run[-1]))
        run, was_inactive = [], True
    if run and was_inactive and len(run) >= min_samples and max_s is None:
        found.append((run[0], run[-1]))
    return found


def find_actions(samples: Sequence[Sample], config: KycConfig) -> list[ActionEvent]:
    """Every action in the samples, by start time."""
    measured = [s for s in samples if s.yaw is not None and s.pitch is not None and s.ear is not None]
    if not measured:
        return []
    first = measured[0].t
    neutral = [s for s in measured if s.t - first <= NEUTRAL_S]
    base_yaw = float(np.clip(median(s.yaw for s in neutral if s.yaw is not None), -NEUTRAL_YAW_CLIP, NEUTRAL_YAW_CLIP))
    base_pitch = float(np.clip(median(s.pitch for s in neutral if s.pitch is not None),
                               -NEUTRAL_PITCH_CLIP, NEUTRAL_PITCH_CLIP))
    frontal = [s.ear for s in measured if s.yaw is not None and abs(s.yaw - base_yaw) < FRONTAL_YAW and s.ear]
    open_ear = float(np.percentile(frontal, 75)) if frontal else 0.0
    sign = -1.0 if config.mirrored else 1.0

    def flags(test: object) -> list[bool | None]:
        return [None if s.yaw is None else bool(test(s)) for s in samples]  # type: ignore[operator]

    events: list[ActionEvent] = []
    yaw_of = {id(s): sign * (s.yaw - base_yaw) for s in measured if s.yaw is not None}
    for action, test in (
        ("turn_left", lambda s: yaw_of[id(s)] > config.turn_yaw),
        ("turn_right", lambda s: yaw_of[id(s)] < -config.turn_yaw),
        ("look_up", lambda s: s.pitch - base_pitch > config.look_up_pitch),
        ("open_mouth", lambda s: s.mar > config.mouth_open_mar),
    ):
        events += [ActionEvent(action, a, b) for a, b in _episodes(samples, flags(test), MIN_SAMPLES)]  # type: ignore[arg-type]
    if open_ear > 0:
        closed: list[bool | None] = [
            None if s.ear is None or s.yaw is None or abs(s.yaw - base_yaw) >= FRONTAL_YAW
            else s.ear / open_ear < config.blink_closed
            for s in samples
        ]
        events += [ActionEvent("blink", a, b) for a, b in _episodes(samples, closed, 1, config.blink_max_s)]
    return sorted(events, key=lambda e: e.start)


# Deliberate actions: one asked for later that is done before its turn breaks the order. Blinks and
# an open mouth (talking) also happen unasked, so they only count when asked.
STRICT: frozenset[str] = frozenset({"turn_left", "turn_right", "look_up"})


def check_challenge(samples: Sequence[Sample], challenge: Sequence[Action], config: KycConfig) -> ChallengeResult:
    """Were the ``challenge`` actions done in order, each within ``step_s`` of the previous one
    (the first within ``step_s`` of the first frame)?"""
    seen = find_actions(samples, config)
    if not samples:
        return ChallengeResult(False, [], 0, "no frames", seen)
    since = samples[0].t
    done: list[ActionEvent] = []
    for step, action in enumerate(challenge):
        later = set(challenge[step + 1:]) & STRICT - {action}
        candidates = [e for e in seen if e.start >= since]
        match = next((e for e in candidates if e.action == action), None)
        if match is None or match.start - since > config.step_s:
            when = "not done" if match is None else f"done after {match.start - since:.1f} s (> {config.step_s:g} s)"
            return ChallengeResult(False, done, step, f"step {step + 1} ({action}) {when}", seen)
        early = [e for e in candidates if e.start < match.start and e.action in later]
        if early:
            return ChallengeResult(False, done, step,
                                   f"step {step + 1}: {early[0].action} was done before {action}", seen)
        done.append(match)
        since = match.end
    return ChallengeResult(True, done, None, "done in order", seen)
