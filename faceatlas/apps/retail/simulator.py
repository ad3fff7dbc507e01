"""A store simulator: a day of visits by real faces (LFW photos) through the real engine.

Members are enrolled from one photo each; other photos of the same person are their camera
captures at entry and exit. Unknown visitors are LFW people who are not enrolled; one visitor
tries to leave with items by showing a spoof photo at the exit. The casting keeps only photos
the engine handles unambiguously (live, matching their own member at the pay FAR with a margin,
matching nobody else), so the simulator's ground truth is what the analytics must report exactly.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np

from faceatlas.apps.retail.config import Camera, Privacy, Product, StoreConfig
from faceatlas.apps.retail.events import Entry, Exit, Pick, ZoneVisit
from faceatlas.apps.retail.members import ConsentRecord
from faceatlas.apps.retail.store import ExitOutcome, RetailStore
from faceatlas.engine import Cut, FaceAnalyzer
from faceatlas.errors import InvalidArgument
from faceatlas.gallery import not_a_folder

MARGIN = 0.05
AGE_BANDS = ("18-24", "25-34", "35-49", "50-64", "65+")
GENDERS = ("female", "male", "non-binary")
OPEN, CLOSE = time(9), time(20)


def demo_store(store_id: str = "demo", *, anonymous_tracking: bool = True) -> StoreConfig:
    """A small grocery: one entrance, one exit, four shelf zones, eight products."""
    zones = ("produce", "bakery", "dairy", "drinks")
    products = [("apple", "Apples 1 kg", 299), ("bread", "Sourdough loaf", 349), ("milk", "Milk 1 l", 119),
                ("cheese", "Cheddar 200 g", 279), ("water", "Water 6x1.5 l", 389), ("juice", "Orange juice", 249),
                ("banana", "Bananas", 179), ("croissant", "Croissant", 129)]
    return StoreConfig(
        id=store_id, name="FaceAtlas demo grocery",
        cameras=[Camera(id="door-in", role="entrance"), Camera(id="door-out", role="exit"),
                 *(Camera(id=f"shelf-{z}", role="zone", zone=z) for z in zones)],
        products=[Product(sku=s, name=n, price_cents=p) for s, n, p in products],
        privacy=Privacy(anonymous_tracking=anonymous_tracking, anonymous_retention_hours=24),
    )


@dataclass
class Person:
    """A cast member of the simulation: enrolment photo (members) and capture photos."""

    key: str
    captures: list[Path]
    enrol_image: Path | None = None
    member_id: str | None = None


@dataclass
class PlannedVisit:
    """One visit of the script."""

    person: Person | None
    entry: datetime
    exit: datetime
    zones: list[str]
    items: list[str]
    spoof: Path | None = None
    track: str = ""


@dataclass
class GroundTruth:
    """What the simulated day really was; the store's analytics must report the same counts."""

    visits: int = 0
    member_visits: int = 0
    anonymous_visits: int = 0
    unique_visitors: int = 0
    returning_visitors: int = 0
    new_members: int = 0
    purchases: int = 0
    revenue_cents: int = 0
    visits_per_hour: dict[int, int] = field(default_factory=dict)
    dwell_minutes: list[float] = field(default_factory=list)
    zone_heat: dict[str, int] = field(default_factory=dict)
    basket_sizes: dict[int, int] = field(default_factory=dict)
    age_mix: dict[str, int] = field(default_factory=dict)
    gender_mix: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)


@dataclass
class SimulationResult:
    """The day's ground truth, the outcome of every exit (retries included) and the range."""

    truth: GroundTruth
    outcomes: list[ExitOutcome]
    start: datetime
    end: datetime


def check_day(lfw_dir: Path, *, members: int, visits: int) -> list[Path]:
    """The LFW people (folders of two photos or more) of a day of ``members`` and ``visits``, once
    both can be: :class:`InvalidArgument` otherwise (the demo checks before it makes anything)."""
    if visits < 1:
        raise InvalidArgument(f"a simulated day has 1 or more visits, not {visits}")
    if members < 1:  # said before the LFW folder is listed
        raise InvalidArgument(f"a simulated day has 1 or more members, not {members}")
    people = sorted(p for p in lfw_dir.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)
    if not 1 <= members <= len(people) // 2:  # the rest are the strangers who visit
        raise InvalidArgument(f"members are 1 to {len(people) // 2} of the {len(people)} LFW people with two "
                              f"photos or more, not {members}")
    return people


def check_out_folder(out: Path) -> None:
    """:class:`InvalidArgument` when the demo's output folder cannot be one: a file, or under a file
    (``--out afile`` said ``error (error): afile: file exists``, in the system's words)."""
    where = not_a_folder(out)
    if where is not None:
        raise InvalidArgument(f"--out {out} {where}, not a folder: give a folder (made if missing)")


def simulate_day(store: RetailStore, lfw_dir: Path, spoof_image: Path | None, *, members: int = 10,
                 visits: int = 40, seed: int = 0, day: date = date(2026, 3, 2),
                 on_event: Callable[[int, int], None] | None = None) -> SimulationResult:
    """Enrol ``members`` LFW people and run ``visits`` visits through ``store`` (events in time
    order, one exit event sent twice); returns the ground truth. ``on_event(done, total)`` is
    called after each event (progress bars)."""
    people = check_day(lfw_dir, members=members, visits=visits)
    rng = random.Random(seed)
    analyzer = store.analyzer
    rng.shuffle(people)
    cast = _Casting(analyzer, store)
    member_cast = cast.members(people, members)
    unknown_count = max(1, visits // 3)
    unknown_cast = cast.unknowns(people, unknown_count)
    start = datetime.combine(day, time(0))
    truth = GroundTruth()
    consent_analytics: dict[str, tuple[str, str]] = {}
    for i, person in enumerate(member_cast):
        assert person.enrol_image is not None, "members are cast with an enrolment photo"
        purposes = ("face_pay", "visit_recognition") + (("analytics",) if rng.random() < 0.7 else ())
        age, gender = rng.choice(AGE_BANDS), rng.choice(GENDERS)
        info = store.members.enrol(f"Member {i + 1}", [person.enrol_image], ConsentRecord(purposes, f"Member {i + 1}"),
                                   payment_ref=f"card-demo-{i + 1:03d}", age_band=age, gender=gender,
                                   at=start + timedelta(hours=8))
        person.member_id = info.id
        if "analytics" in purposes:
            consent_analytics[info.id] = (age, gender)
    truth.new_members = len(member_cast)
    plan = _plan(rng, store.config, member_cast, unknown_cast, visits, day, spoof_image)
    outcomes = _run(store, plan, rng, on_event)
    _fill_truth(truth, plan, store.config, consent_analytics)
    return SimulationResult(truth, outcomes, start, start + timedelta(days=1))


class _Casting:
    """Picks LFW photos the engine handles unambiguously (see the module docstring)."""

    def __init__(self, analyzer: FaceAnalyzer, store: RetailStore) -> None:
        self.analyzer = analyzer
        self.min_live = store.config.recognition.min_liveness
        self.pay = analyzer.threshold(store.config.recognition.pay_far) + MARGIN
        # the loosest visit threshold (one member's face): strangers stay below it at any size
        self.visit = float(Cut(fpir=store.config.recognition.visit_fpir).similarity(analyzer.calibration, 1) or 0)
        self.used: set[Path] = set()
        self.known: list[np.ndarray] = []

    def _face(self, path: Path, *, alone: bool = False) -> np.ndarray | None:
        """The embedding of the photo's largest face when it is live (``alone``: and the only face,
        as a member's enrolment photo must be), else None."""
        faces, found = self.analyzer.largest(path, liveness=True)
        if not faces or faces[0].liveness is None or not faces[0].liveness.is_real(self.min_live):
            return None
        if alone and found > 1:
            return None
        return faces[0].embedding

    def _distinct(self, vector: np.ndarray) -> bool:
        return all(float(vector @ other) < self.visit - MARGIN for other in self.known)

    def members(self, people: list[Path], count: int) -> list[Person]:
        chosen: list[Person] = []
        for folder in people:
            if len(chosen) == count:
                break
            images = sorted(folder.glob("*.jpg"))[:3]
            enrol = self._face(images[0], alone=True)  # members.enrol refuses a photo of several people
            if enrol is None or not self._distinct(enrol):
                continue
            captures = [p for p in images[1:] if (v := self._face(p)) is not None and float(v @ enrol) >= self.pay
                        and self._distinct(v)]
            if captures:
                chosen.append(Person(folder.name, captures, images[0]))
                self.known.append(enrol)
                self.used.add(folder)
        if len(chosen) < count:  # known only once every photo was analysed: the bound of check_day is an upper one
            raise InvalidArgument(f"only {len(chosen)} of the {len(people)} LFW people can be members (photos the "
                                  f"engine handles unambiguously), not {count}: ask for {len(chosen)} or fewer")
        return chosen

    def unknowns(self, people: list[Path], count: int) -> list[Person]:
        chosen: list[Person] = []
        for folder in people:
            if len(chosen) == count:
                break
            if folder in self.used:
                continue
            image = sorted(folder.glob("*.jpg"))[0]
            vector = self._face(image)
            if vector is not None and self._distinct(vector):
                chosen.append(Person(folder.name, [image]))
                self.known.append(vector)
                self.used.add(folder)
        return chosen


def _plan(rng: random.Random, config: StoreConfig, members: list[Person], unknowns: list[Person], visits: int,
          day: date, spoof_image: Path | None) -> list[PlannedVisit]:
    """The day's visits: members about 60 %, some people come twice, plus one spoof attempt."""
    zones, skus = config.zones, [p.sku for p in config.products]
    slots = visits - (1 if spoof_image is not None else 0)
    member_slots = min(slots, max(len(members), round(slots * 0.6)))
    visitors = (members * (1 + member_slots // max(1, len(members))))[:member_slots]
    visitors += (unknowns * (1 + (slots - member_slots) // max(1, len(unknowns))))[: slots - member_slots]
    plan: list[PlannedVisit] = []
    busy: dict[str, datetime] = {}
    opening = datetime.combine(day, OPEN)
    for person in [*visitors, *([None] if spoof_image is not None else [])]:
        earlier = busy.get(person.key) if person else None
        entry = earlier + timedelta(minutes=rng.randint(1, 120)) if earlier else \
            opening + timedelta(minutes=rng.randint(0, 360))
        exit_ = entry + timedelta(minutes=rng.randint(3, 70))
        buys = rng.random() < (0.75 if person and person.member_id else 0.3) or person is None
        items = [rng.choice(skus) for _ in range(rng.randint(1, 4))] if buys else []
        plan.append(PlannedVisit(person, entry, exit_, rng.sample(zones, rng.randint(1, len(zones))), items,
                                 spoof_image if person is None else None, f"track-{len(plan) + 1}"))
        if person:
            busy[person.key] = exit_ + timedelta(minutes=15)
    return plan


def _run(store: RetailStore, plan: list[PlannedVisit], rng: random.Random,
         on_event: Callable[[int, int], None] | None = None) -> list[ExitOutcome]:
    """Send every visit's events to the store in time order; one exit is retried."""
    events: list[tuple[datetime, int, object]] = []
    for visit in plan:
        capture = rng.choice(visit.person.captures) if visit.person else None
        events.append((visit.entry, 0, Entry("door-in", visit.entry, image=capture, track=visit.track)))
        dwell = visit.exit - visit.entry
        for n, zone in enumerate(visit.zones):
            at = visit.entry + dwell * (n + 1) / (len(visit.zones) + 2)
            events.append((at, 1, ZoneVisit(f"shelf-{zone}", at, track=visit.track)))
            for sku in visit.items[n::len(visit.zones)]:
                events.append((at, 2, Pick(f"shelf-{zone}", at, sku, track=visit.track)))
        face = visit.spoof or (rng.choice(visit.person.captures) if visit.person else None)
        events.append((visit.exit, 3, Exit("door-out", visit.exit, image=face, track=visit.track)))
    events.sort(key=lambda e: (e[0], e[1]))
    outcomes: list[ExitOutcome] = []
    retried = False
    for done, (_, _, event) in enumerate(events, 1):
        result = store.handle(event)  # type: ignore[arg-type]
        if on_event is not None:
            on_event(done, len(events))
        if isinstance(event, Exit):
            outcomes.append(result)
            if not retried and result.status == "charged":
                outcomes.append(store.handle(event))
                retried = True
    return outcomes


def _fill_truth(truth: GroundTruth, plan: list[PlannedVisit], config: StoreConfig,
                consent_analytics: dict[str, tuple[str, str]]) -> None:
    prices = {p.sku: p.price_cents for p in config.products}
    seen: Counter[str] = Counter()
    visiting_members: set[str] = set()
    for n, visit in enumerate(plan):
        member = visit.person.member_id if visit.person else None
        recognisable = visit.person is not None and (member is not None or config.privacy.anonymous_tracking)
        seen[visit.person.key if recognisable and visit.person is not None else f"visit-{n}"] += 1
        truth.visits += 1
        truth.member_visits += member is not None
        truth.visits_per_hour[visit.entry.hour] = truth.visits_per_hour.get(visit.entry.hour, 0) + 1
        truth.dwell_minutes.append((visit.exit - visit.entry).total_seconds() / 60)
        for zone in visit.zones:
            truth.zone_heat[zone] = truth.zone_heat.get(zone, 0) + 1
        if member:
            visiting_members.add(member)
        if visit.items and member:
            truth.purchases += 1
            truth.revenue_cents += sum(prices[s] for s in visit.items)
            truth.basket_sizes[len(visit.items)] = truth.basket_sizes.get(len(visit.items), 0) + 1
        elif visit.items:
            kind = "spoof" if visit.spoof else "unidentified_shopper"
            truth.alerts[kind] = truth.alerts.get(kind, 0) + 1
    truth.anonymous_visits = truth.visits - truth.member_visits
    truth.unique_visitors = len(seen)
    truth.returning_visitors = sum(1 for count in seen.values() if count > 1)
    truth.visits_per_hour = dict(sorted(truth.visits_per_hour.items()))
    truth.dwell_minutes.sort()
    truth.zone_heat = dict(sorted(truth.zone_heat.items()))
    truth.basket_sizes = dict(sorted(truth.basket_sizes.items()))
    declared = [consent_analytics[m] for m in visiting_members if m in consent_analytics]
    truth.age_mix = dict(sorted(Counter(a for a, _ in declared).items()))
    truth.gender_mix = dict(sorted(Counter(g for _, g in declared).items()))
    truth.alerts = dict(sorted(truth.alerts.items()))
