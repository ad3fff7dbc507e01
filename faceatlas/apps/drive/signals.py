"""Signals over time: sliding-window shares (PERCLOS), blinks, sustained states (yawns, glances),
windowed counts and the per-driver calibration. Pure Python; fed one sample per frame."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from statistics import median


class SlidingShare:
    """Time-weighted share (and total) of samples with a flag set over the last ``window_s`` seconds.

    Each sample covers ``dt`` seconds ending at ``t``; samples wholly older than ``t - window_s`` fall out.
    PERCLOS is ``SlidingShare(60).share`` of "eyes at least 80 % closed".
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float, bool]] = deque()
        self._covered = 0.0
        self._flagged = 0.0

    def add(self, t: float, dt: float, flag: bool) -> None:
        self._samples.append((t, dt, flag))
        self._covered += dt
        self._flagged += dt if flag else 0.0
        self.expire(t)

    def expire(self, now: float) -> None:
        """Drop samples that ended before ``now - window_s``."""
        while self._samples and self._samples[0][0] <= now - self.window_s:
            _, dt, flag = self._samples.popleft()
            self._covered -= dt
            self._flagged -= dt if flag else 0.0

    @property
    def covered_s(self) -> float:
        """Seconds of samples in the window."""
        return max(0.0, self._covered)

    @property
    def flagged_s(self) -> float:
        """Seconds with the flag set in the window."""
        return max(0.0, self._flagged)

    @property
    def share(self) -> float:
        """flagged / covered, 0 when the window is empty."""
        return self.flagged_s / self._covered if self._covered > 1e-9 else 0.0


class WindowedCount:
    """How many events happened in the last ``window_s`` seconds."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def add(self, t: float) -> None:
        self._times.append(t)

    def count(self, now: float) -> int:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        return len(self._times)


@dataclass(frozen=True)
class Episode:
    """A finished stretch of a sustained state: when it started and how long it lasted."""

    start: float
    duration: float


class Sustained:
    """Tracks a boolean state with hysteresis: on when ``value`` passes ``on``, off when it passes ``off``.

    ``above`` True means "on" is high values (mouth opening), False means low values (eye openness).
    :meth:`update` returns the finished :class:`Episode` when the state switches off; a missing
    measurement cancels a running episode without reporting it.
    """

    def __init__(self, on: float, off: float, *, above: bool) -> None:
        self.on, self.off, self.above = on, off, above
        self.started: float | None = None

    def update(self, t: float, value: float | None) -> Episode | None:
        """Feed one sample (``None``: no measurement)."""
        if value is None:
            self.started = None
            return None
        if self.started is None:
            if (value > self.on) if self.above else (value < self.on):
                self.started = t
            return None
        if (value < self.off) if self.above else (value > self.off):
            episode = Episode(self.started, t - self.started)
            self.started = None
            return episode
        return None

    def running_for(self, t: float) -> float:
        """Seconds the current episode has lasted (0 when off)."""
        return 0.0 if self.started is None else t - self.started


@dataclass(frozen=True)
class Baseline:
    """The driver's calibrated open-eye EAR and forward head/gaze direction."""

    open_ear: float
    yaw: float
    pitch: float


class Calibrator:
    """Collects samples with a face for ``duration_s`` seconds, then gives the medians as a :class:`Baseline`.

    Medians keep blinks and brief glances out of the baseline.
    """

    def __init__(self, duration_s: float) -> None:
        self.duration_s = duration_s
        self._ear: list[float] = []
        self._yaw: list[float] = []
        self._pitch: list[float] = []
        self._covered = 0.0

    def add(self, dt: float, ear: float, yaw: float, pitch: float) -> Baseline | None:
        """Add one sample; returns the baseline once enough face time is collected."""
        self._ear.append(ear)
        self._yaw.append(yaw)
        self._pitch.append(pitch)
        self._covered += dt
        if self._covered + 1e-9 < self.duration_s:
            return None
        return Baseline(open_ear=median(self._ear), yaw=median(self._yaw), pitch=median(self._pitch))
