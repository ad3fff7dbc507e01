"""Members: enrolment with an explicit consent record, consent withdrawal (the faces go at once,
the account stays) and a new grant with a new photo (of the member: one of another person is
refused while the member holds faces), export of their data, complete erasure."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from faceatlas.apps.retail.db import (
    CartItem,
    Charge,
    Consent,
    Member,
    Refund,
    Visit,
    ZoneVisitRecord,
    utcnow,
)
from faceatlas.apps.retail.payments import PaymentBackend
from faceatlas.db import rowcount, utc_text
from faceatlas.engine import Face, FaceAnalyzer, NoFace
from faceatlas.engine.image import ImageInput
from faceatlas.errors import (
    AlreadyExists,
    Conflict,
    ConsentRequired,
    FileMissing,
    InvalidArgument,
    InvalidImage,
    TooManyFaces,
)
from faceatlas.gallery import EnrolReport, Gallery, NotFound, Rejection, check_text, source_crop

PURPOSES = ("face_pay", "visit_recognition", "analytics", "marketing")
BIOMETRIC_PURPOSES = ("face_pay", "visit_recognition")
TEXT_MAX = 400  # a member's name, email and payment reference, who granted a consent: the columns' width
RECORDED_BY_MAX = 200  # a consent's recorded_by and notice_version: their columns' widths
NOTICE_VERSION_MAX = 50


@dataclass(frozen=True)
class ConsentRecord:
    """What a member agreed to: ``purposes`` (of :data:`PURPOSES`), given by ``granted_by`` (the
    person, or a guardian; None at an enrolment: the member, by their name; a new grant needs it),
    recorded by ``recorded_by`` (staff or kiosk) under ``notice_version``."""

    purposes: tuple[str, ...]
    granted_by: str | None = None
    recorded_by: str = "kiosk"
    notice_version: str = "v1"
    granted_at: datetime | None = None


@dataclass(frozen=True)
class MemberInfo:
    """A member as the app shows it (the payment reference is never echoed back)."""

    id: str
    name: str
    enrolled_at: datetime
    purposes: tuple[str, ...]
    faces: int
    has_payment_method: bool
    age_band: str | None = None
    gender: str | None = None
    # of an enrolment or a new grant: the images that gave no usable face (their code and why);
    # the source is the gallery's name for the image (a path, or "image#N", the N-th from 0)
    rejected: tuple[Rejection, ...] = ()
    # of an enrolment or a new grant: (source, how many faces the image holds) of each image read
    faces_in_image: tuple[tuple[str, int], ...] = ()


class NoUsableFace(NoFace):
    """No image of an enrolment or a new grant gave a usable face; ``rejected``: each image's
    :class:`~faceatlas.gallery.Rejection`, as :attr:`MemberInfo.rejected` names them; ``faces_in_image`` as
    :attr:`MemberInfo.faces_in_image`. Its code is ``too_many_faces`` when every image was refused
    for holding several people (a photo of the member alone is wanted), else ``no_face``."""

    def __init__(self, rejected: Iterable[Rejection], faces_in_image: Iterable[tuple[str, int]] = ()) -> None:
        self.rejected = tuple(rejected)
        self.faces_in_image = tuple(faces_in_image)
        if self.rejected and all(rejection.code == TooManyFaces.code for rejection in self.rejected):
            self.code = TooManyFaces.code
        super().__init__("no usable face in the enrolment images: "
                         f"{[(rejection.source, rejection.reason) for rejection in self.rejected]}")


class FaceMismatch(Conflict):
    """A new grant's photo of someone else than the member: its face does not match the faces the
    member holds at the store's face pay FAR (``recognition.pay_far``, as face pay matches at the
    checkout). Nothing is recorded: no face added, no consent. ``mismatched``: the sources of the
    photos whose face is not the member's; ``rejected`` and ``faces_in_image`` as
    :class:`NoUsableFace` names them (the mismatched photos among the rejected, code ``face_mismatch``)."""

    code = "face_mismatch"

    def __init__(self, mismatched: Iterable[str], rejected: Iterable[Rejection],
                 faces_in_image: Iterable[tuple[str, int]] = ()) -> None:
        self.mismatched = tuple(mismatched)
        self.rejected = tuple(rejected)
        self.faces_in_image = tuple(faces_in_image)
        which = ("the photo's face is" if len(self.mismatched) == 1 and len(self.faces_in_image) <= 1
                 else f"the face of {', '.join(self.mismatched)} is")
        super().__init__(f"{which} not the member's: it does not match the faces the member holds (at the "
                         "store's face pay FAR); nothing was recorded. A new consent is the member's own, "
                         "given with a photo of them alone")


@dataclass
class WithdrawalReport:
    """What a consent withdrawal did: the purposes ``withdrawn`` and those still consented
    (``purposes``); the faces deleted from the gallery (every one, once no biometric purpose is
    left), and whether the payment method and the declared demographics were dropped."""

    member_id: str
    withdrawn: tuple[str, ...]
    purposes: tuple[str, ...]
    faces_deleted: int = 0
    payment_method_removed: bool = False
    demographics_removed: bool = False


@dataclass
class ErasureReport:
    """What an erasure removed or anonymised."""

    member_id: str
    faces_deleted: int = 0
    consents_deleted: int = 0
    visits_anonymised: int = 0
    charges_anonymised: int = 0
    details: dict[str, Any] = field(default_factory=dict)


class MemberRegistry:
    """Members of one store; their faces live in the store's gallery collection, keyed by member id."""

    def __init__(self, store_id: str, sessions: sessionmaker[Session], gallery: Gallery, collection: str,
                 analyzer: FaceAnalyzer, payments: PaymentBackend, *, pay_far: float) -> None:
        self.store_id = store_id
        self.pay_far = pay_far  # a new grant's photo matches the member's faces at face pay's FAR
        self._sessions = sessions
        self._gallery = gallery
        self._collection = collection
        self._analyzer = analyzer
        self._payments = payments

    def enrol(self, name: str, images: Iterable[ImageInput], consent: ConsentRecord, *,
              payment_ref: str | None = None, email: str | None = None, age_band: str | None = None,
              gender: str | None = None, member_id: str | None = None, at: datetime | None = None) -> MemberInfo:
        """Enrol a member from face images under ``consent``. A biometric purpose (face_pay or
        visit_recognition) is required; face_pay also needs ``payment_ref``; the declared age
        band and gender are kept only when the consent covers "analytics".

        Each photo must show the member alone: one holding several faces is refused
        (``too_many_faces`` in ``rejected``), none of its faces enrolled, the member's other photos
        still are (:class:`NoUsableFace` when none is left). A consent is one person's: the largest
        face of a group photo may be a bystander's (someone nearer the camera), who would then be
        recognised at the door and charged at the checkout on the member's consent, with no consent
        of their own. Saying "the largest of N faces" after the fact, as a gallery enrolment does,
        leaves that face held until staff notice; a retake at the kiosk costs a second.
        ``faces_in_image`` says how many faces each photo read holds.

        ``member_id`` names a new member: one that exists (of any store) is :class:`AlreadyExists`
        before any photo is read (its photo was added to the member's faces, then the member row
        refused and the member's own faces deleted with it). A photo is added to an existing
        member only by :meth:`grant`, which checks it is theirs.

        The texts are stripped of surrounding spaces, whichever door gave them: a blank name is
        refused (``validation_error``), a blank ``payment_ref`` is none (face pay without one:
        ``consent_required``), a blank email none; ``consent.granted_by`` None is the member's name."""
        # before any face is enrolled; kept composed (NFC) and stripped as every name (check_text)
        name = check_text(name, "member name", max_length=TEXT_MAX) or ""
        email = check_text(email, "email", max_length=TEXT_MAX) or None
        if not name:
            raise InvalidArgument("a member needs a name (not blank)")
        purposes, granted_by, payment_ref = _checked(consent, payment_ref, member=name)
        if member_id is not None:
            with self._sessions() as session:
                if session.get(Member, member_id) is not None:
                    raise AlreadyExists(f"member '{member_id}' exists: a new photo of theirs is a new consent "
                                        "(grant), checked to be theirs")
        member_id = member_id or uuid.uuid4().hex
        at = at or utcnow()
        report = self._enrol_faces(member_id, images)
        analytics = "analytics" in purposes
        try:
            with self._sessions.begin() as session:
                session.add(Member(id=member_id, store_id=self.store_id, name=name, email=email,
                                   payment_ref=payment_ref if "face_pay" in purposes else None,
                                   age_band=age_band if analytics else None, gender=gender if analytics else None,
                                   enrolled_at=at))
                session.flush()
                session.add(Consent(member_id=member_id, purposes=list(purposes), granted_by=granted_by,
                                    recorded_by=consent.recorded_by, notice_version=consent.notice_version,
                                    granted_at=consent.granted_at or at))
        except IntegrityError as exc:  # the same new id enrolled by another call meanwhile: its faces stay
            self._forget_faces(member_id, report.added)
            raise AlreadyExists(f"member '{member_id}' exists: it was enrolled by another request meanwhile") from exc
        except Exception:
            self._forget_faces(member_id, report.added)
            raise
        return replace(self.get(member_id), rejected=tuple(report.rejected), faces_in_image=tuple(report.found))

    def _forget_faces(self, member_id: str, face_ids: Iterable[int]) -> None:
        """Delete the faces a refused enrolment added, and its subject when no face is left: faces of
        the same id enrolled by another request (the one whose member row was recorded) stay theirs."""
        for face_id in face_ids:
            self._gallery.delete_face(self._collection, face_id)
        try:
            if not self._gallery.get_subject(self._collection, member_id).faces:
                self._gallery.delete_subject(self._collection, member_id)
        except NotFound:  # deleted meanwhile
            pass

    def _enrol_faces(self, member_id: str, images: Iterable[ImageInput]) -> EnrolReport:
        """The member's face of each image, each image showing them alone (see :meth:`enrol`);
        :class:`NoUsableFace` when no image gave one."""
        report = self._gallery.enrol_images(self._collection, member_id, images, self._analyzer, alone=True)
        if not report.added:
            raise NoUsableFace(report.rejected, report.found)
        return report

    def _grant_faces(self, member_id: str, images: Iterable[ImageInput]) -> EnrolReport:
        """The member's face of each image, read as :meth:`_enrol_faces` reads them and added once
        every one is theirs (see :meth:`grant`): :class:`NoUsableFace` when no image gave one,
        :class:`FaceMismatch` (nothing added) when one is another person's."""
        keep_crops = self._gallery.get_collection(self._collection).keep_crops
        report = EnrolReport()
        read: list[tuple[str, Face, bytes | None]] = []
        for number, image in enumerate(images):  # as Gallery.enrol_images(..., alone=True) reads them
            source = str(image) if isinstance(image, str | Path) else f"image#{number}"
            try:
                decoded = self._analyzer.load_reduced(image)[0]
            except (InvalidImage, FileMissing) as exc:
                report.rejected.append(Rejection.of(source, exc))
                continue
            faces, found = self._analyzer.largest(decoded)
            report.found.append((source, found))
            if not faces:
                report.rejected.append(Rejection(source, NoFace.code, "no face found in the image"))
            elif found > 1:
                report.rejected.append(Rejection(source, TooManyFaces.code, f"{found} faces in the image, where one "
                                                 "person alone is expected"))
            else:
                read.append((source, faces[0], source_crop(decoded, faces[0]) if keep_crops else None))
        if not read:
            raise NoUsableFace(report.rejected, report.found)
        if self._holds_faces(member_id):
            mismatched = [source for source, face, _ in read if not self._gallery.verify(
                self._collection, member_id, face, far=self.pay_far, calibration=self._analyzer.calibration).match]
            if mismatched:
                why = "not the member's face (it does not match the faces they hold)"
                raise FaceMismatch(mismatched, report.rejected + [Rejection(source, FaceMismatch.code, why)
                                                                  for source in mismatched], report.found)
        report.added = self._gallery.add_embeddings(
            self._collection, member_id, np.stack([face.as_embedding().vector for _, face, _ in read]),
            recognizer_id=self._analyzer.pack.recognizer_id, qualities=[face.quality for _, face, _ in read],
            sources=[source for source, _, _ in read], crops=[crop for _, _, crop in read])
        return report

    def _holds_faces(self, member_id: str) -> bool:
        """Whether the member's gallery subject holds a face (none once every biometric purpose is
        withdrawn); the store's pay FAR is checked to have a threshold first (:class:`NotCalibrated`)."""
        try:
            held = self._gallery.get_subject(self._collection, member_id).faces
        except NotFound:
            return False
        if held:
            self._analyzer.threshold(self.pay_far)  # uncalibrated: refused, never checked on a guess
        return held > 0

    def withdraw(self, member_id: str, purposes: Iterable[str] | None = None, *,
                 at: datetime | None = None) -> WithdrawalReport:
        """Withdraw the member's consent to ``purposes`` (default: every one), effective at once.

        Once no biometric purpose (face_pay, visit_recognition) is left, every face and vector of
        the member leaves the gallery before the consent is marked withdrawn, so the member is no
        longer recognised anywhere, face pay included. Without face_pay the payment method
        reference is dropped; without analytics the declared age band and gender. The member,
        the consent history (``withdrawn_at`` set; what stays is a new record of the remaining
        purposes), visits and charges stay: :meth:`erase` removes those. A new consent needs a
        new photo (:meth:`grant`). Withdrawing what is not consented changes nothing (``withdrawn``
        is empty: nothing to record); an empty ``purposes`` withdraws nothing and is
        :class:`InvalidArgument` (None is every purpose)."""
        at = at or utcnow()
        requested_given = tuple(dict.fromkeys(purposes)) if purposes is not None else None
        if requested_given == ():
            raise InvalidArgument("no purpose to withdraw: name one or more of "
                                  f"{list(PURPOSES)}, or none at all to withdraw every one")
        unknown = [p for p in requested_given or () if p not in PURPOSES]
        if unknown:
            raise InvalidArgument(f"unknown consent purposes {unknown}; known: {list(PURPOSES)}")
        with self._sessions() as session:
            self._member(session, member_id)
            active = active_purposes(session, member_id)
        requested = requested_given if requested_given is not None else active
        withdrawn = tuple(p for p in active if p in requested)
        remaining = tuple(p for p in active if p not in requested)
        report = WithdrawalReport(member_id, withdrawn, remaining)
        if not withdrawn:
            return report
        if not any(p in BIOMETRIC_PURPOSES for p in remaining):  # biometric data first: never held unconsented
            try:
                report.faces_deleted = self._gallery.delete_subject(self._collection, member_id)
            except NotFound:
                report.faces_deleted = 0
        with self._sessions.begin() as session:
            member = self._member(session, member_id)
            rows = list(session.scalars(select(Consent).where(Consent.member_id == member_id,
                                                              Consent.withdrawn_at.is_(None))
                                        .order_by(Consent.id)))
            for row in rows:
                row.withdrawn_at = at
            if remaining:
                last = rows[-1]
                session.add(Consent(member_id=member_id, purposes=list(remaining), granted_by=last.granted_by,
                                    recorded_by=last.recorded_by, notice_version=last.notice_version,
                                    granted_at=last.granted_at))
            if "face_pay" not in remaining and member.payment_ref is not None:
                member.payment_ref, report.payment_method_removed = None, True
            if "analytics" not in remaining and (member.age_band, member.gender) != (None, None):
                member.age_band, member.gender, report.demographics_removed = None, None, True
        return report

    def grant(self, member_id: str, images: Iterable[ImageInput], consent: ConsentRecord, *,
              payment_ref: str | None = None, age_band: str | None = None,
              gender: str | None = None) -> MemberInfo:
        """Record a new consent of an existing member (after a withdrawal, or to change purposes)
        with new face images, under the same rules as :meth:`enrol` (each photo of the member
        alone): faces withdrawn before are never restored, the member gives a new photo.

        While the member holds faces (a biometric purpose still consented), each new photo's face
        must be theirs: verified 1:1 against the faces held at the store's face pay FAR
        (``recognition.pay_far``, the match face pay charges on). One that is not is
        :class:`FaceMismatch` and nothing is recorded (no face added, no consent): another
        person's face on the member's account would pay at the checkout on it. A member holding
        no face (every biometric purpose withdrawn: their faces were deleted) has nothing to be
        compared with: their new photo is taken as the enrolment's is, on the word of the staff
        or kiosk that records the consent. Without a calibrated threshold for the pay FAR a member
        holding faces cannot be checked: :class:`NotCalibrated`, nothing recorded (as face pay).
        Its texts are checked as :meth:`enrol` checks them; ``consent.granted_by`` is required."""
        purposes, granted_by, payment_ref = _checked(consent, payment_ref)
        with self._sessions() as session:
            self._member(session, member_id)
        report = self._grant_faces(member_id, images)
        analytics = "analytics" in purposes
        at = utcnow()
        try:
            with self._sessions.begin() as session:
                member = self._member(session, member_id)
                session.add(Consent(member_id=member_id, purposes=list(purposes), granted_by=granted_by,
                                    recorded_by=consent.recorded_by, notice_version=consent.notice_version,
                                    granted_at=consent.granted_at or at))
                if "face_pay" in purposes:
                    member.payment_ref = payment_ref
                if analytics and (age_band or gender):
                    member.age_band, member.gender = age_band, gender
        except Exception:
            for face_id in report.added:
                self._gallery.delete_face(self._collection, face_id)
            raise
        return replace(self.get(member_id), rejected=tuple(report.rejected), faces_in_image=tuple(report.found))

    def get(self, member_id: str) -> MemberInfo:
        """One member (NotFound when there is none)."""
        with self._sessions() as session:
            member = self._member(session, member_id)
            return self._info(session, member)

    def list(self) -> list[MemberInfo]:
        """Every member of the store, by enrolment time."""
        with self._sessions() as session:
            rows = session.scalars(select(Member).where(Member.store_id == self.store_id)
                                   .order_by(Member.enrolled_at, Member.id))
            return [self._info(session, row) for row in rows]

    def purposes(self, member_id: str) -> tuple[str, ...]:
        """The purposes of the member's active consents."""
        with self._sessions() as session:
            return active_purposes(session, member_id)

    def shares_identity(self, member_id: str) -> bool:
        """Whether events leaving the store (its JSONL, webhook and MQTT sinks) may name this member:
        only under an active consent to ``visit_recognition`` (face pay alone links a member to
        their cart inside the store, never to an event sent out). False for no such member."""
        with self._sessions() as session:
            known = session.scalar(select(Member.id).where(Member.id == member_id,
                                                           Member.store_id == self.store_id))
            return known is not None and "visit_recognition" in active_purposes(session, member_id)

    def payment_ref(self, member_id: str) -> str | None:
        """The member's payment method reference, when face pay is consented."""
        with self._sessions() as session:
            member = self._member(session, member_id)
            return member.payment_ref if "face_pay" in active_purposes(session, member_id) else None

    def export(self, member_id: str) -> dict[str, Any]:
        """Everything the store holds about the member, JSON-ready (face vectors are described,
        not dumped)."""
        with self._sessions() as session:
            member = self._member(session, member_id)
            consents = session.scalars(select(Consent).where(Consent.member_id == member_id).order_by(Consent.id))
            visits = list(session.scalars(select(Visit).where(_theirs(member_id)).order_by(Visit.entry_at)))
            charges = session.scalars(select(Charge).where(Charge.member_id == member_id).order_by(Charge.at))
            out: dict[str, Any] = {
                "member": _row(member),
                "consents": [_row(c) for c in consents],
                "visits": [self._visit_export(session, v) for v in visits],
                "charges": [_row(c) for c in charges],
            }
        faces = self._gallery.list_faces(self._collection, subject=member_id, limit=1000).items
        out["faces"] = [face.to_dict() for face in faces]
        return out

    def erase(self, member_id: str) -> ErasureReport:
        """Erase the member on request: the gallery subject with every face, vector and crop, the
        consents and the member row; their visits and charges stay only as anonymous counts (no
        link, no track id), and the payment backend forgets their account reference."""
        report = ErasureReport(member_id)
        with self._sessions() as session:
            payment_ref = self._member(session, member_id).payment_ref
        try:
            report.faces_deleted = self._gallery.delete_subject(self._collection, member_id)
        except NotFound:
            report.details["gallery"] = "no subject"
        if payment_ref:
            self._payments.forget(payment_ref)
        with self._sessions.begin() as session:
            report.visits_anonymised = rowcount(session.execute(
                update(Visit).where(_theirs(member_id)).values(member_id=None, track=None)))
            report.charges_anonymised = rowcount(session.execute(
                update(Charge).where(Charge.member_id == member_id).values(member_id=None)))
            report.consents_deleted = rowcount(session.execute(delete(Consent).where(Consent.member_id == member_id)))
            session.execute(delete(Member).where(Member.id == member_id))
        return report

    def _member(self, session: Session, member_id: str) -> Member:
        found = session.scalar(select(Member).where(Member.id == member_id, Member.store_id == self.store_id))
        if found is None:
            raise NotFound(f"member '{member_id}' not found in store '{self.store_id}'")
        return found

    def _info(self, session: Session, member: Member) -> MemberInfo:
        try:
            faces = self._gallery.get_subject(self._collection, member.id).faces
        except NotFound:  # consent withdrawn: no face kept
            faces = 0
        return MemberInfo(member.id, member.name, member.enrolled_at, active_purposes(session, member.id), faces,
                          member.payment_ref is not None, member.age_band, member.gender)

    @staticmethod
    def _visit_export(session: Session, visit: Visit) -> dict[str, Any]:
        zones = session.scalars(select(ZoneVisitRecord).where(ZoneVisitRecord.visit_id == visit.id))
        items = session.scalars(select(CartItem).where(CartItem.visit_id == visit.id))
        refunds = session.scalars(select(Refund).join(Charge, Charge.id == Refund.charge_id)
                                  .where(Charge.visit_id == visit.id))
        return {**_row(visit), "zones": [_row(z) for z in zones], "items": [_row(i) for i in items],
                "refunds": [_row(r) for r in refunds]}


def _checked(consent: ConsentRecord, payment_ref: str | None, *,
             member: str | None = None) -> tuple[tuple[str, ...], str, str | None]:
    """The consent's purposes, who granted it and the payment reference, once they allow an
    enrolment (or a new grant) and its texts fit their columns (``granted_by`` of 5,000 characters
    was taken: a 500 on PostgreSQL). Texts are stripped: ``granted_by`` blank is refused, None is
    ``member`` (an enrolment's member name; a new grant has none: refused); ``payment_ref`` blank
    is none. The one check of these, whichever door (API, console, library) gave them."""
    granted_by = consent.granted_by if consent.granted_by is not None else member
    for what, text, longest in (("granted_by (who granted the consent)", granted_by, TEXT_MAX),
                                ("recorded_by", consent.recorded_by, RECORDED_BY_MAX),
                                ("notice version", consent.notice_version, NOTICE_VERSION_MAX),
                                ("payment reference", payment_ref, TEXT_MAX)):
        check_text(text, what, max_length=longest)  # before any face is enrolled
    granted_by = (granted_by or "").strip()
    if not granted_by:
        raise InvalidArgument("a consent needs who granted it (granted_by: the person, or a guardian" +
                              ("; by default the member's name)" if member is not None else ")"))
    payment_ref = (payment_ref or "").strip() or None
    purposes = tuple(dict.fromkeys(consent.purposes))
    unknown = [p for p in purposes if p not in PURPOSES]
    if unknown:
        raise InvalidArgument(f"unknown consent purposes {unknown}; known: {list(PURPOSES)}")
    if not any(p in BIOMETRIC_PURPOSES for p in purposes):
        raise ConsentRequired("enrolment needs consent to " + " or ".join(p.replace("_", " ")
                                                                          for p in BIOMETRIC_PURPOSES))
    if "face_pay" in purposes and not payment_ref:
        raise ConsentRequired("face pay needs a payment method reference (not blank)")
    return purposes, granted_by, payment_ref


def _theirs(member_id: str) -> ColumnElement[bool]:
    """The member's visits: those recognised as theirs (``visit_recognition``) and those their
    charges paid for (face pay keeps no other link once the visit is closed)."""
    paid = select(Charge.visit_id).where(Charge.member_id == member_id)
    return or_(Visit.member_id == member_id, Visit.id.in_(paid))


def active_purposes(session: Session, member_id: str) -> tuple[str, ...]:
    """The purposes of the member's consents not withdrawn, read in ``session``."""
    rows = session.scalars(select(Consent.purposes).where(Consent.member_id == member_id,
                                                          Consent.withdrawn_at.is_(None)))
    return tuple(dict.fromkeys(p for purposes in rows for p in purposes))


def _row(row: Any) -> dict[str, Any]:
    out = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        out[column.key] = utc_text(value) if isinstance(value, datetime) else value
    return out

