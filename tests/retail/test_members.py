"""Members: consent rules, export, and complete erasure (tables and gallery inspected)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from faceatlas.apps.retail import (
    ConsentRecord,
    ConsentRequired,
    Entry,
    Exit,
    FaceMismatch,
    NoUsableFace,
    Pick,
    RetailStore,
    compute_report,
)
from faceatlas.apps.retail.db import Consent, Member, Visit
from faceatlas.apps.retail.store import COLLECTION
from faceatlas.errors import AlreadyExists, InvalidArgument
from faceatlas.gallery import NotFound

T0 = datetime(2026, 3, 2, 10, 0)


def _all_rows_text(store: RetailStore) -> str:
    """Every row of every table in the database (retail, gallery and versions), as text."""
    metadata = MetaData()
    with store.sessions() as session:
        metadata.reflect(bind=session.connection())
        return "\n".join(repr(tuple(row)) for table in metadata.sorted_tables
                         for row in session.execute(select(table)))


def test_consent_is_required(store: RetailStore, member_photos: list[Path]) -> None:
    with pytest.raises(ConsentRequired):
        store.members.enrol("No Consent", [member_photos[0]], ConsentRecord(("marketing",), "No Consent"))
    with pytest.raises(ConsentRequired):
        store.members.enrol("No Card", [member_photos[0]], ConsentRecord(("face_pay",), "No Card"))
    info = store.members.enrol("Visits Only", [member_photos[0]], ConsentRecord(("visit_recognition",), "V"),
                               age_band="25-34", gender="female")
    assert info.age_band is None and info.gender is None and not info.has_payment_method


def test_a_member_name_is_one_line_that_fits_its_column(store: RetailStore, member_photos: list[Path]) -> None:
    """1,000 characters (wider than the column: a database error on PostgreSQL) or a line break and an
    escape in a name were enrolled; refused before any face is."""
    faces = store.gallery.get_collection(COLLECTION).faces
    for name in ("x" * 1000, "Eve\n\x1b[31mAdmin"):
        with pytest.raises(InvalidArgument):
            store.members.enrol(name, [member_photos[0]], ConsentRecord(("visit_recognition",), "Eve"))
    assert store.gallery.get_collection(COLLECTION).faces == faces and store.members.list() == []


def test_a_photo_of_several_people_is_refused_for_a_member(store: RetailStore, member_photos: list[Path],
                                                           examples: Path) -> None:
    """A group photo's largest face (maybe a bystander's, nearer the camera) was enrolled under the
    member's consent without a word. A consent is one person's: such a photo is refused, the member's
    other photos still enrolled, and each photo read says how many faces it held."""
    group, alone = examples / "examples" / "two_people.jpg", member_photos[0]
    consent = ConsentRecord(("visit_recognition",), "Gus")
    info = store.members.enrol("Gus", [group, alone], consent)
    assert info.faces == 1 and info.faces_in_image == ((str(group), 2), (str(alone), 1))
    assert [(r.source, r.code) for r in info.rejected] == [(str(group), "too_many_faces")]
    held = store.gallery.get_collection(COLLECTION).faces
    with pytest.raises(NoUsableFace) as refused:
        store.members.enrol("Group", [group], ConsentRecord(("visit_recognition",), "Group"))
    assert refused.value.code == "too_many_faces" and refused.value.faces_in_image == ((str(group), 2),)
    with pytest.raises(NoUsableFace) as regranted:
        store.members.grant(info.id, [group], ConsentRecord(("face_pay",), "Gus"), payment_ref="card-gus")
    assert regranted.value.code == "too_many_faces"
    assert store.gallery.get_collection(COLLECTION).faces == held  # no face of the group photo was kept
    assert [(m.name, m.purposes) for m in store.members.list()] == [("Gus", ("visit_recognition",))]


def test_erased_member_leaves_no_trace(store: RetailStore, member_photos: list[Path]) -> None:
    enrol, at_entry, at_exit = member_photos
    name, card, email = "Erin Erasable", "card-erin-4242", "erin@example.org"
    member = store.members.enrol(name, [enrol, at_entry], ConsentRecord(("face_pay", "analytics"), name),
                                 payment_ref=card, email=email, age_band="35-49", gender="female").id
    store.entry(Entry("in", T0, image=at_entry, track="erin-track"))
    store.pick(Pick("shelf-fruit", T0 + timedelta(minutes=1), "milk", track="erin-track"))
    assert store.exit(Exit("out", T0 + timedelta(minutes=6), image=at_exit, track="erin-track")).status == "charged"

    exported = store.members.export(member)
    assert exported["member"]["email"] == email and len(exported["faces"]) == 2
    assert exported["consents"][0]["purposes"] == ["face_pay", "analytics"]
    assert exported["visits"][0]["items"][0]["sku"] == "milk" and exported["charges"][0]["amount_cents"] == 120
    json.dumps(exported)
    before = _all_rows_text(store)
    assert member in before and card in before

    report = store.members.erase(member)
    assert (report.faces_deleted, report.consents_deleted, report.visits_anonymised) == (2, 1, 1)
    after = _all_rows_text(store)
    for secret in (member, name, card, email, "erin-track", str(enrol), str(at_entry)):
        assert secret not in after, f"{secret!r} survived erasure"
    with pytest.raises(NotFound):
        store.members.get(member)
    assert store.gallery.get_collection(COLLECTION).faces == 0
    assert store.gallery.list_subjects(COLLECTION).items == []
    face = store.analyzer.analyze_one(at_exit)
    assert store.gallery.search(COLLECTION, face, k=5, threshold=-1.0) == []
    day = store.report(T0.replace(hour=0), T0.replace(hour=23))
    assert (day.visits, day.member_visits, day.purchases, day.age_mix) == (1, 0, 1, {})


def test_withdrawal_narrows_consent_and_a_new_grant_needs_a_new_photo(store: RetailStore,
                                                                      member_photos: list[Path]) -> None:
    enrol, at_entry, at_exit = member_photos
    member = store.members.enrol("Wanda", [enrol], ConsentRecord(("face_pay", "visit_recognition", "analytics"), "W"),
                                 payment_ref="card-w", age_band="25-34", gender="female").id
    face_pay_only = store.members.withdraw(member, ["face_pay", "analytics"])
    assert (face_pay_only.withdrawn, face_pay_only.purposes, face_pay_only.faces_deleted) == \
        (("face_pay", "analytics"), ("visit_recognition",), 0)  # still recognised at the door: the face stays
    assert face_pay_only.payment_method_removed and face_pay_only.demographics_removed
    assert store.entry(Entry("in", T0, image=at_entry, track="w1")) and store.members.get(member).faces == 1
    info = store.members.get(member)
    assert (info.purposes, info.has_payment_method, info.age_band) == (("visit_recognition",), False, None)

    everything = store.members.withdraw(member)
    assert (everything.withdrawn, everything.purposes, everything.faces_deleted) == (("visit_recognition",), (), 1)
    face = store.analyzer.analyze_one(at_exit)
    assert store.gallery.search(COLLECTION, face, k=5, threshold=-1.0) == []
    with store.sessions() as session:  # the consent history stays: every record withdrawn, none deleted
        rows = list(session.scalars(select(Consent).where(Consent.member_id == member).order_by(Consent.id)))
        assert [(r.purposes, r.withdrawn_at is not None) for r in rows] == \
            [(["face_pay", "visit_recognition", "analytics"], True), (["visit_recognition"], True)]
        assert session.get(Member, member).payment_ref is None
    second = store.entry(Entry("in", T0 + timedelta(hours=1), image=at_entry, track="w2"))
    with store.sessions() as session:
        assert session.get(Visit, second).member_id is None  # no longer recognised

    with pytest.raises(ConsentRequired):
        store.members.grant(member, [at_entry], ConsentRecord(("face_pay",), "W"))  # no card
    with pytest.raises(NotFound):
        store.members.grant("nobody", [at_entry], ConsentRecord(("visit_recognition",), "W"))
    again = store.members.grant(member, [at_entry], ConsentRecord(("face_pay",), "W"), payment_ref="card-w2")
    assert (again.purposes, again.faces, again.has_payment_method) == (("face_pay",), 1, True)
    assert store.members.payment_ref(member) == "card-w2"



def test_face_pay_alone_links_the_cart_for_one_visit_only(store: RetailStore, member_photos: list[Path]) -> None:
    """``face_pay`` lets the store recognise the member to link their cart and charge it; the
    visit history (who came when, returning visits) needs ``visit_recognition``: without it, a
    closed visit keeps no member and the charge is the only link (export and erasure follow it)."""
    enrol, at_entry, at_exit = member_photos
    member = store.members.enrol("Paula", [enrol], ConsentRecord(("face_pay", "analytics"), "Paula"),
                                 payment_ref="card-p", age_band="25-34", gender="female").id

    def shop(hour: int, *, buy: bool) -> tuple[str | None, str | None, bool]:
        """One visit: (member linked while it was open, member kept after the exit, returning)."""
        start, track = T0 + timedelta(hours=hour), f"p-{hour}"
        visit_id = store.entry(Entry("in", start, image=at_entry, track=track))
        with store.sessions() as session:
            during = session.get(Visit, visit_id)
            assert during is not None
            linked = during.member_id
        if buy:
            store.pick(Pick("shelf-fruit", start + timedelta(minutes=1), "milk", track=track))
        leave = Exit("out", start + timedelta(minutes=5), image=at_exit, track=track)
        outcome = store.exit(leave)
        assert (outcome.status, outcome.member_id) == ("charged" if buy else "no_purchase", member)
        assert store.exit(leave).member_id == member  # a retried exit replays who paid
        with store.sessions() as session:
            closed = session.get(Visit, visit_id)
            assert closed is not None
            return linked, closed.member_id, closed.is_returning

    assert shop(0, buy=True) == (member, None, False)
    assert shop(2, buy=True) == (member, None, False)  # not returning: no history was kept
    exported = store.members.export(member)
    assert [v["items"][0]["sku"] for v in exported["visits"]] == ["milk", "milk"]
    assert len(exported["charges"]) == 2
    day = compute_report(store.sessions, store.config.id, T0, T0 + timedelta(hours=3), min_count=1)
    assert (day.visits, day.member_visits, day.purchases, day.age_mix) == (2, 0, 2, {"25-34": 1})
    assert store.report(T0, T0 + timedelta(hours=3)).age_mix == {"suppressed": 1}  # one member: under k (5)

    store.members.grant(member, [at_entry], ConsentRecord(("face_pay", "visit_recognition"), "Paula"),
                        payment_ref="card-p")
    assert shop(4, buy=False) == (member, member, False)
    assert shop(6, buy=False) == (member, member, True)
    assert len(store.members.export(member)["visits"]) == 4
    assert store.members.erase(member).visits_anonymised == 4


def test_a_visit_whose_exit_is_never_seen_is_closed_as_abandoned(store: RetailStore,
                                                                 member_photos: list[Path]) -> None:
    """Face pay's link lasts until the visit closes: a visit whose exit was never seen closes
    ``privacy.max_visit_hours`` (12) after its entry, at the next entry, without the member, and
    its cart raises an alert."""
    enrol, at_entry, _ = member_photos
    member = store.members.enrol("Gone", [enrol], ConsentRecord(("face_pay",), "Gone"), payment_ref="card-g").id
    visit_id = store.entry(Entry("in", T0, image=at_entry, track="gone"))
    store.pick(Pick("shelf-fruit", T0 + timedelta(minutes=1), "milk", track="gone"))
    assert store.close_abandoned(T0 + timedelta(hours=11)) == 0
    with store.sessions() as session:
        assert session.get(Visit, visit_id).member_id == member  # type: ignore[union-attr]
    later = store.entry(Entry("in", T0 + timedelta(hours=13), track="next"))
    with store.sessions() as session:
        closed = session.get(Visit, visit_id)
        assert closed is not None and (closed.outcome, closed.member_id, closed.exit_at) == ("abandoned", None, None)
    assert [(a["kind"], a["visit_id"], a["details"]["items"]) for a in store.alerts()] == [
        ("abandoned_cart", visit_id, 1)]
    assert store.close_abandoned(T0 + timedelta(hours=13, minutes=30)) == 0
    assert store.close_abandoned(T0 + timedelta(hours=26)) == 1 and len(store.alerts()) == 1  # empty cart: no alert
    assert later != visit_id


def test_a_consent_s_texts_fit_their_columns(store: RetailStore, member_photos: list[Path]) -> None:
    """granted_by of 5,000 characters was taken (its column holds 400: a 500 on PostgreSQL), at an
    enrolment and at a new grant; refused before any face is enrolled, as the name is."""
    faces = store.gallery.get_collection(COLLECTION).faces
    member = store.members.enrol("Gil", [member_photos[0]], ConsentRecord(("visit_recognition",), "g" * 400)).id
    store.members.withdraw(member)
    for consent, says in ((ConsentRecord(("visit_recognition",), "g" * 5000), "granted_by .*at most 400"),
                          (ConsentRecord(("visit_recognition",), "Gil", recorded_by="r" * 201), "recorded_by"),
                          (ConsentRecord(("visit_recognition",), "Gil", notice_version="v" * 51), "notice version"),
                          (ConsentRecord(("visit_recognition",), "  "), "who granted it")):
        with pytest.raises(InvalidArgument, match=says):
            store.members.enrol("Gil", [member_photos[1]], consent)
        with pytest.raises(InvalidArgument, match=says):
            store.members.grant(member, [member_photos[1]], consent)
    with pytest.raises(InvalidArgument, match="payment reference"):
        store.members.grant(member, [member_photos[1]], ConsentRecord(("face_pay",), "Gil"), payment_ref="p" * 401)
    assert store.gallery.get_collection(COLLECTION).faces == faces and len(store.members.list()) == 1


def test_blank_texts_are_checked_by_the_layer_and_granted_by_defaults_to_the_name(
        store: RetailStore, member_photos: list[Path]) -> None:
    """A blank name was enrolled (each door had its own check: the API let "   " through), a blank
    payment reference taken as a payment method; the texts are stripped here, for every door, and
    who granted the consent is the member's name when not given (a new grant must say it)."""
    faces = store.gallery.get_collection(COLLECTION).faces
    with pytest.raises(InvalidArgument, match="needs a name"):
        store.members.enrol("   ", [member_photos[0]], ConsentRecord(("face_pay",), "Bob"), payment_ref="  ")
    with pytest.raises(ConsentRequired, match="payment method"):
        store.members.enrol("Ann", [member_photos[0]], ConsentRecord(("face_pay",), "Bob"), payment_ref="  ")
    assert store.gallery.get_collection(COLLECTION).faces == faces and store.members.list() == []
    info = store.members.enrol("  Ann  ", [member_photos[0]], ConsentRecord(("face_pay",)), payment_ref=" card-a ")
    assert info.name == "Ann" and store.members.payment_ref(info.id) == "card-a"
    with store.sessions() as session:
        assert session.scalar(select(Consent.granted_by).where(Consent.member_id == info.id)) == "Ann"
    with pytest.raises(InvalidArgument, match="who granted it"):
        store.members.grant(info.id, [member_photos[1]], ConsentRecord(("visit_recognition",)))


def test_a_withdrawal_of_nothing_is_refused_and_one_of_what_is_gone_changes_nothing(
        store: RetailStore, member_photos: list[Path]) -> None:
    """{"consent": false, "purposes": []} answered 200 and withdrew nothing: an empty list names no
    purpose (none at all is every one). A withdrawal asked again changes nothing and says so
    (``withdrawn`` empty: the REST route then writes no audit record)."""
    member = store.members.enrol("Pat", [member_photos[0]], ConsentRecord(("face_pay", "visit_recognition"), "Pat"),
                                 payment_ref="card-p").id
    with pytest.raises(InvalidArgument, match="no purpose to withdraw"):
        store.members.withdraw(member, [])
    assert store.members.purposes(member) == ("face_pay", "visit_recognition")
    assert store.members.withdraw(member, ["face_pay"]).withdrawn == ("face_pay",)
    again = store.members.withdraw(member, ["face_pay"])
    assert (again.withdrawn, again.purposes, again.faces_deleted) == ((), ("visit_recognition",), 0)
    with store.sessions() as session:  # no new record: the first withdrawal's two, nothing after
        assert len(list(session.scalars(select(Consent).where(Consent.member_id == member)))) == 2


def test_a_new_grant_takes_the_member_s_own_face_only(store: RetailStore, examples: Path) -> None:
    """A new grant with a photo of another person (Biden's on Obama's member) was recorded: the
    member then held two people's faces, and face pay, charging the member whose faces match at
    the checkout, charged Biden's cart to Obama. While the member holds faces, a new photo's face
    must match them at the store's pay FAR: else ``face_mismatch`` (409), nothing recorded."""
    photos = examples / "tests" / "test_images"
    obama, obama2, biden = (photos / f"{name}.jpg" for name in ("obama", "obama2", "biden"))
    member = store.members.enrol("Barack", [obama], ConsentRecord(("visit_recognition",), "Barack")).id

    def state() -> tuple[int, tuple[str, ...], str | None, int]:
        with store.sessions() as session:
            consents = len(list(session.scalars(select(Consent).where(Consent.member_id == member))))
        return (store.members.get(member).faces, store.members.purposes(member), store.members.payment_ref(member),
                consents)

    before = state()
    assert before == (1, ("visit_recognition",), None, 1)
    with pytest.raises(FaceMismatch) as refused:
        store.members.grant(member, [biden], ConsentRecord(("face_pay",), "Barack"), payment_ref="card-joe")
    assert (refused.value.code, refused.value.status, refused.value.mismatched) == ("face_mismatch", 409, (str(biden),))
    assert refused.value.rejected[0].reason.startswith("face_mismatch:") and "not the member's" in str(refused.value)
    with pytest.raises(FaceMismatch) as mixed:  # one photo of his does not carry another's
        store.members.grant(member, [obama2, biden], ConsentRecord(("face_pay",), "Barack"), payment_ref="card-joe")
    assert mixed.value.mismatched == (str(biden),) and mixed.value.faces_in_image == ((str(obama2), 1), (str(biden), 1))
    assert state() == before  # no face added, no consent, no payment method
    with pytest.raises(AlreadyExists):  # an enrolment does not add a photo to an existing member either
        store.members.enrol("Joe", [biden], ConsentRecord(("visit_recognition",), "Joe"), member_id=member)
    assert state() == before  # and the member's own face is still theirs (it was deleted with the refused row)

    granted = store.members.grant(member, [obama2], ConsentRecord(("face_pay",), "Barack"), payment_ref="card-b")
    assert (granted.faces, granted.purposes) == (2, ("visit_recognition", "face_pay"))
    assert store.members.payment_ref(member) == "card-b"

    # every biometric purpose withdrawn: no face left to compare with, a new grant is taken on the
    # word of who records it (docs/retail.md)
    assert store.members.withdraw(member).faces_deleted == 2
    again = store.members.grant(member, [biden], ConsentRecord(("visit_recognition",), "Barack"))
    assert (again.faces, again.purposes) == (1, ("visit_recognition",))


def test_two_enrolments_of_one_new_member_id_at_once_keep_the_winner_s_faces(
        store: RetailStore, member_photos: list[Path]) -> None:
    """Two kiosks enrolling the same new member id at once both passed the existence check; the
    one whose member row was refused then deleted the whole gallery subject, the winner's faces
    with its own: the member enrolled (and charged at the till on that consent) had no face left,
    and the loser saw the database's IntegrityError. The loser's own faces alone go; it is
    ``AlreadyExists`` as a refusal before any photo is read would be."""
    members = store.members
    first, second = member_photos[0], member_photos[1]
    enrol_faces = members._enrol_faces
    raced: list[str] = []

    def meanwhile(member_id: str, images):  # the other kiosk's whole enrolment lands between this
        report = enrol_faces(member_id, images)  # one's check and its member row
        if not raced:
            raced.append(member_id)
            members.enrol("Other kiosk", [second], ConsentRecord(("visit_recognition",), "George"), member_id=member_id)
        return report

    members._enrol_faces = meanwhile  # type: ignore[method-assign]
    with pytest.raises(AlreadyExists, match="'m-1' exists"):
        members.enrol("This kiosk", [first], ConsentRecord(("visit_recognition",), "George"), member_id="m-1")
    members._enrol_faces = enrol_faces  # type: ignore[method-assign]
    winner = members.get("m-1")
    assert (winner.name, winner.faces) == ("Other kiosk", 1)
    faces = store.gallery.list_faces(COLLECTION, subject="m-1").items
    assert [face.source for face in faces] == [str(second)]
