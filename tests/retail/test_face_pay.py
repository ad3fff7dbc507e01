"""Checkout-free face pay end to end through the real engine (scrfd-mbf + MiniFASNet)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from faceatlas.apps.retail import ConsentRecord, Entry, Exit, Pick, RetailStore, ZoneVisit
from faceatlas.apps.retail.db import Alert, Charge, LedgerEntry, Refund
from faceatlas.engine import NotCalibrated

T0 = datetime(2026, 3, 2, 10, 0)


def _enrol(store: RetailStore, photo: Path, name: str = "Member One") -> str:
    consent = ConsentRecord(("face_pay", "analytics"), granted_by=name, recorded_by="staff-7")
    return store.members.enrol(name, [photo], consent, payment_ref=f"card-{name}", email="one@example.org",
                               age_band="50-64", gender="male", at=T0 - timedelta(days=1)).id


def _count(store: RetailStore, model: type) -> int:
    with store.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_member_is_charged_exactly_once(store: RetailStore, member_photos: list[Path]) -> None:
    enrol, at_entry, at_exit = member_photos
    member = _enrol(store, enrol)
    visit = store.entry(Entry("in", T0, image=at_entry, track="t-1"))
    assert store.zone_visit(ZoneVisit("shelf-fruit", T0 + timedelta(minutes=2), track="t-1")) == visit
    store.pick(Pick("shelf-fruit", T0 + timedelta(minutes=3), "apple", 2, track="t-1"))
    store.pick(Pick("shelf-fruit", T0 + timedelta(minutes=4), "milk", track="t-1"))
    assert store.cart(visit).items == 3 and store.cart(visit).total_cents == 220

    leave = Exit("out", T0 + timedelta(minutes=12), image=at_exit, track="t-1")
    first = store.exit(leave)
    assert (first.status, first.member_id, first.amount_cents, first.repeated) == ("charged", member, 220, False)
    again = store.exit(leave)
    assert again.repeated and again.charge_id == first.charge_id
    assert _count(store, Charge) == 1 and _count(store, LedgerEntry) == 1
    with store.sessions() as session:
        ledger = session.scalar(select(LedgerEntry))
        assert (ledger.account, ledger.amount_cents, ledger.kind) == ("card-Member One", 220, "charge")
        assert session.scalar(select(Charge.status)) == "charged"

    refund_key = "rma-1"
    store.refund(first.charge_id, 50, reason="bruised apple", key=refund_key)
    store.refund(first.charge_id, 50, key=refund_key)
    assert _count(store, Refund) == 1
    with store.sessions() as session:
        assert session.scalar(select(Charge.refunded_cents)) == 50
        assert session.scalar(select(func.sum(LedgerEntry.amount_cents))) == 170
    assert store.report(T0.replace(hour=0), T0.replace(hour=23)).revenue_cents == 170
    assert store.alerts() == []

    # ten refunds of what is left at once paid back seven times the charge (the check ran unlocked)
    from concurrent.futures import ThreadPoolExecutor

    from faceatlas.errors import Conflict, InvalidArgument

    def refund_rest(number: int) -> object:
        try:
            return store.refund(first.charge_id, key=f"rest-{number}")
        except (InvalidArgument, Conflict) as exc:  # reserved meanwhile; or refunded in full already
            return exc

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(refund_rest, range(10)))
    assert sum(isinstance(a, int) for a in answers) == 1, answers
    with store.sessions() as session:
        assert session.scalar(select(Charge.refunded_cents)) == 220
        assert session.scalar(select(func.sum(Refund.amount_cents))) == 220
        assert session.scalar(select(func.sum(LedgerEntry.amount_cents))) == 0
    with pytest.raises(InvalidArgument, match="another refund"):  # a key is one refund: not another charge's
        store.refund(first.charge_id, 10, key=refund_key)
    for amount in (None, 10):  # it said "refund of 0 outside 1..0 cents"
        with pytest.raises(Conflict, match=f"charge {first.charge_id} is fully refunded"):
            store.refund(first.charge_id, amount, key=f"late-{amount}")


def test_charge_idempotency_is_a_database_constraint(store: RetailStore) -> None:
    row = {"store_id": "test-store", "event_id": "exit-1", "amount_cents": 1, "currency": "EUR", "items": 1,
           "status": "charged", "at": T0}
    with store.sessions.begin() as session:
        session.execute(insert(Charge), [row])
    with pytest.raises(IntegrityError), store.sessions.begin() as session:
        session.execute(insert(Charge), [row])


def test_stranger_is_not_charged_and_raises_an_alert(store: RetailStore, member_photos: list[Path],
                                                     stranger_photo: Path) -> None:
    _enrol(store, member_photos[0])
    visit = store.entry(Entry("in", T0, image=stranger_photo, track="t-9"))
    store.pick(Pick("shelf-fruit", T0 + timedelta(minutes=1), "milk", track="t-9"))
    outcome = store.exit(Exit("out", T0 + timedelta(minutes=5), image=stranger_photo, track="t-9"))
    assert (outcome.status, outcome.member_id, outcome.alert, outcome.visit_id) == (
        "unpaid", None, "unidentified_shopper", visit)
    assert _count(store, Charge) == 0 and _count(store, LedgerEntry) == 0
    [alert] = store.alerts()
    assert alert["kind"] == "unidentified_shopper" and alert["details"]["amount_cents"] == 120
    store.resolve_alert(alert["id"])
    assert store.alerts() == [] and len(store.alerts(open_only=False)) == 1


def test_an_alert_is_resolved_once(store: RetailStore) -> None:
    """Resolving a resolved alert wrote a new resolved_at over the first, and no door could say it
    had been resolved already: the first resolution stays, and the answer says so."""
    alert = store.observations.alert("spoof", "out", "event-1", T0, {"items": 1})
    first = store.resolve_alert(alert)
    again = store.resolve_alert(alert)
    assert (first.id, first.already, again.already) == (alert, False, True)
    assert again.resolved_at == first.resolved_at
    with store.sessions() as session:
        assert session.get(Alert, alert).resolved_at == first.resolved_at


def test_spoof_at_the_exit_is_refused(store: RetailStore, spoof_samples: Path) -> None:
    real, spoof = spoof_samples / "image_T1.jpg", spoof_samples / "image_F2.jpg"
    _enrol(store, real, "Sample Person")
    store.entry(Entry("in", T0, image=real, track="t-2"))
    store.pick(Pick("shelf-fruit", T0 + timedelta(minutes=1), "apple", track="t-2"))
    outcome = store.exit(Exit("out", T0 + timedelta(minutes=4), image=spoof, track="t-2"))
    assert (outcome.status, outcome.alert, outcome.charge_id) == ("refused", "spoof", None)
    assert _count(store, Charge) == 0 and _count(store, LedgerEntry) == 0
    with store.sessions() as session:
        assert session.scalar(select(Alert.kind)) == "spoof"


def test_uncalibrated_pack_refuses_to_charge(store: RetailStore, member_photos: list[Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _enrol(store, member_photos[0])
    store.entry(Entry("in", T0, image=member_photos[1], track="t-3"))
    store.pick(Pick("shelf-fruit", T0, "apple", track="t-3"))
    monkeypatch.setattr(store.analyzer, "calibration", None)
    with pytest.raises(NotCalibrated, match="face pay refused"):
        store.exit(Exit("out", T0 + timedelta(minutes=3), image=member_photos[2], track="t-3"))
    assert _count(store, Charge) == 0


def test_a_cart_is_read_only_through_its_own_store(store: RetailStore, db_url: str, config, fast_analyzer,
                                                   tmp_path: Path) -> None:
    """`GET /stores/{own}/visits/{id}/cart` answered any store's visit (another tenant's cart), and
    an id that never was an empty cart."""
    from faceatlas.errors import NotFound

    visit = store.entry(Entry("in", T0, track="t-9"))
    store.pick(Pick("shelf-fruit", T0 + timedelta(minutes=1), "apple", 1, track="t-9"))
    assert store.cart(visit).items == 1
    other = RetailStore.open(config.model_copy(update={"id": "other-shop", "tenant": "evil"}), fast_analyzer,
                             db_url, index_dir=tmp_path / "other")
    try:
        with pytest.raises(NotFound):
            other.cart(visit)
    finally:
        other.close()
    with pytest.raises(NotFound):
        store.cart(visit + 1000)


def test_exits_of_one_visit_at_once_charge_it_once_and_answer_every_one(store: RetailStore,
                                                                         member_photos: list[Path]) -> None:
    """Ten face pays of one open visit at once (ten exit events): four answered 500 (the unique
    charge per visit refused their INSERT); now one charges and the others find no open visit."""
    from concurrent.futures import ThreadPoolExecutor

    enrol, at_entry, at_exit = member_photos
    _enrol(store, enrol)
    visit = store.entry(Entry("in", T0, image=at_entry, track="t-5"))
    store.pick(Pick("shelf-fruit", T0 + timedelta(minutes=3), "apple", 2, track="t-5"))
    leave = [Exit("out", T0 + timedelta(minutes=9), image=at_exit, id=f"pay-{n}") for n in range(10)]
    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(store.exit, leave))
    assert sorted(o.status for o in outcomes) == ["charged"] + ["no_visit"] * 9
    assert _count(store, Charge) == 1 and _count(store, LedgerEntry) == 1
    assert store.cart(visit).items == 2


def test_a_face_that_matches_two_members_is_charged_to_neither(store: RetailStore, member_photos: list[Path]) -> None:
    """One person enrolled under two accounts (or look-alikes, twins): face pay charged whichever
    member was nearer by chance, so a cart could land on another person's card. A face matching
    two members at the pay FAR pays nothing and raises an ``ambiguous_identity`` alert (naming no
    member, as every alert)."""
    enrol, at_entry, at_exit = member_photos
    first = _enrol(store, enrol, "Account One")
    second = _enrol(store, at_entry, "Account Two")
    assert first != second
    visit = store.entry(Entry("in", T0, track="t-9"))
    store.pick(Pick("shelf-fruit", T0 + timedelta(minutes=1), "milk", track="t-9"))
    outcome = store.exit(Exit("out", T0 + timedelta(minutes=5), image=at_exit, track="t-9"))
    assert (outcome.status, outcome.member_id, outcome.alert, outcome.charge_id) == (
        "unpaid", None, "ambiguous_identity", None)
    assert _count(store, Charge) == 0 and _count(store, LedgerEntry) == 0
    [alert] = store.alerts()
    assert (alert["kind"], alert["visit_id"], alert["details"]) == (
        "ambiguous_identity", visit, {"items": 1, "amount_cents": 120, "face_seen": True, "members_matched": 2})


@pytest.mark.parametrize("field", ["reason", "key"])
def test_a_refund_with_a_nul_or_a_control_character_is_refused_before_any_money_moves(
        store: RetailStore, member_photos: list[Path], field: str) -> None:
    """PostgreSQL's text refuses NUL: the API answered 500 for a refund key or reason holding one
    (SQLite stored it), and a reason took line breaks and escapes that a refund listing shows."""
    from faceatlas.errors import InvalidArgument

    enrol, at_entry, at_exit = member_photos
    _enrol(store, enrol)
    store.entry(Entry("in", T0, image=at_entry, track="t-1"))
    store.pick(Pick("shelf-fruit", T0 + timedelta(minutes=3), "milk", track="t-1"))
    charge = store.exit(Exit("out", T0 + timedelta(minutes=12), image=at_exit, track="t-1")).charge_id
    bad = ["a\x00b"] if field == "key" else ["a\x00b", "line\nbreak", "\x1b[2J", "x\u202egnp"]
    for text in bad:
        with pytest.raises(InvalidArgument, match=f"refund {field}"):
            store.refund(charge, 10, **{field: text})
    assert _count(store, Refund) == 0
    store.refund(charge, 10, reason="  bruised  ", key="k\tey")  # a key is only hashed: any other text is one
    with store.sessions() as session:
        assert session.scalar(select(Refund.reason)) == "bruised"
