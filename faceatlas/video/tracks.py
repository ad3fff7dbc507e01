"""Track state kept by the pipeline: lifetime, last box, the best faces, the identity vote."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from faceatlas.video.identity import IdentityMatch, IdentityVote


def byte_tracker(detection_fps: float, timeout: float) -> sv.ByteTrack:
    """supervision's ByteTrack for detections arriving at ``detection_fps``, keeping lost tracks
    ``timeout`` seconds. (ByteTrack is deprecated in supervision 0.28-0.30; hence the pin < 0.31.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return sv.ByteTrack(
            track_activation_threshold=0.3,
            lost_track_buffer=max(1, round(timeout * 30)),
            minimum_matching_threshold=0.8,
            frame_rate=max(1.0, detection_fps),
            minimum_consecutive_frames=2,
        )


@dataclass
class FaceSample:
    """One usable face of a track: its quality, the frame it came from and the aligned crop."""

    quality: float
    frame: int
    crop: np.ndarray = field(repr=False)
    used: bool = False
    time: float = 0.0


@dataclass
class Track:
    """A face or person track. ``samples`` keeps the ``keep`` best faces by quality (face tracks)."""

    id: int
    kind: str
    first_frame: int
    first_time: float
    last_time: float
    box: np.ndarray
    keep: int = 5
    samples: list[FaceSample] = field(default_factory=list)
    vote: IdentityVote = field(default_factory=IdentityVote)
    used_quality: float = -1.0
    unknown_reported: bool = False
    linked: int | None = None
    latest: FaceSample | None = None  # the newest usable face, kept for re-checking the identity
    checked_time: float = 0.0
    classes: dict[str, float] = field(default_factory=dict)  # detector confidence summed per class
    hits: int = 0  # analyzed frames with a detection on this track

    @property
    def label(self) -> str:
        """The class voted over the track (the most confidence summed); a face track's is "face"."""
        if self.kind == "face" or not self.classes:
            return self.kind
        return max(self.classes, key=lambda name: self.classes[name])

    @property
    def dwell(self) -> float:
        return max(0.0, self.last_time - self.first_time)

    @property
    def identity(self) -> IdentityMatch | None:
        return self.vote.identity

    def add_sample(self, sample: FaceSample) -> None:
        """Keep ``sample`` when it is among the ``keep`` best (crops of the others are freed), and
        as the latest face."""
        self.latest = sample
        self.samples.append(sample)
        self.samples.sort(key=lambda s: s.quality, reverse=True)
        del self.samples[self.keep :]

    def due_for_recognition(self, min_evidence: int, margin: float, recheck: float | None = None) -> list[FaceSample]:
        """Faces to embed now: the first ``min_evidence`` best faces once there are that many,
        later a face at least ``margin`` better in quality than every face used so far, and, on a
        named track, its latest face every ``recheck`` seconds (is it still that person?)."""
        unused = [s for s in self.samples if not s.used]
        if not self.vote.evidence:
            return unused[:min_evidence] if len(unused) >= min_evidence else []
        if unused and unused[0].quality >= self.used_quality + margin:
            return unused[:1]
        latest = self.latest
        if recheck is not None and self.identity is not None and latest is not None and not latest.used \
                and latest.time - self.checked_time >= recheck:
            return [latest]
        return []

    def record(self, sample: FaceSample, match: IdentityMatch | None) -> None:
        """Add the match of ``sample`` to the vote."""
        sample.used = True
        self.checked_time = max(self.checked_time, sample.time)
        self.used_quality = max(self.used_quality, sample.quality)
        self.vote.add(match)


def empty_detections(kind: str) -> sv.Detections:
    """No detection, tracked (with the face index column for faces)."""
    empty = sv.Detections.empty()
    empty.tracker_id = np.zeros(0, int)
    if kind == "face":
        empty.data["face"] = np.zeros(0, int)
    return empty


def track_ids(detections: sv.Detections) -> np.ndarray:
    """The tracker ids of tracked detections (none before tracking)."""
    return detections.tracker_id if detections.tracker_id is not None else np.zeros(0, int)


def box_list(box: np.ndarray) -> list[float]:
    return [round(float(v), 1) for v in box]
