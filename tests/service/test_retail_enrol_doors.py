"""A member's enrolment is checked once, in the retail layer, whichever door sends it: the API and
the console refuse the same blank input with the same code, and store the same stripped texts.
The API took a blank name with a blank payment reference (201: a face-pay member with no name and
a blank payment method) while the console refused it (422); the console stripped the name, the
API stored it with its spaces."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from faceatlas.apps.retail import Camera, RetailStore, StoreConfig
from faceatlas.apps.retail.db import Consent, Member
from tests.service.test_console_faults import _console


@pytest.mark.parametrize(("form", "status", "code"), [
    ({"name": "   ", "granted_by": "Bob", "purposes": "face_pay", "payment_ref": "  "}, 422, "validation_error"),
    ({"name": "Ann", "granted_by": "Bob", "purposes": "face_pay", "payment_ref": "  "}, 403, "consent_required"),
    ({"name": "Ann", "granted_by": "  ", "purposes": "visit_recognition"}, 422, "validation_error"),
])
def test_blank_enrolment_texts_are_refused_alike_by_the_api_and_the_console(
        api, examples: Path, fast_analyzer, tmp_path: Path, form: dict, status: int, code: str) -> None:
    config = StoreConfig(id=f"blank-{tmp_path.name[-6:]}", tenant="acme", cameras=[Camera(id="door", role="door")])
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx"):
        pass
    photo = (examples / "examples" / "lin-manuel-miranda.png").read_bytes()
    base = f"/v1/retail/stores/{config.id}/members"
    with api.client("acme_admin") as acme:
        refused = acme.post(base, files={"image": photo}, data=form)
        assert (refused.status_code, refused.json()["error"]["code"]) == (status, code), refused.text
        client, csrf = _console(api, "acme_admin")
        page = client.post(f"/console/store/{config.id}/members", files=[("photos", ("lin.png", photo, "image/png"))],
                           data={"csrf": csrf, **form})
        client.close()
        assert page.status_code == status and code in page.text, page.text[-500:]
        assert acme.get(base).json()["members"] == []  # neither door enrolled anyone


def test_a_name_with_surrounding_spaces_is_stored_stripped_by_both_doors(api, examples: Path, fast_analyzer,
                                                                        tmp_path: Path) -> None:
    """And ``granted_by`` left out is the member's name, stripped, through either door."""
    config = StoreConfig(id=f"strip-{tmp_path.name[-6:]}", tenant="acme", cameras=[Camera(id="door", role="door")])
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx"):
        pass
    photos = examples / "tests" / "test_images"
    base = f"/v1/retail/stores/{config.id}/members"
    with api.client("acme_admin") as acme:
        by_api = acme.post(base, files={"image": (photos / "obama.jpg").read_bytes()},
                           data={"name": "  Barack Obama  ", "purposes": "face_pay", "payment_ref": " card-1 "})
        assert by_api.status_code == 201, by_api.text
        assert (by_api.json()["name"], by_api.json()["has_payment_method"]) == ("Barack Obama", True)
        client, csrf = _console(api, "acme_admin")
        page = client.post(f"/console/store/{config.id}/members",
                           files=[("photos", ("biden.jpg", (photos / "biden.jpg").read_bytes(), "image/jpeg"))],
                           data={"csrf": csrf, "name": "  Joe Biden  ", "purposes": "visit_recognition",
                                 "granted_by": ""})
        client.close()
        assert page.status_code == 200, page.text[-500:]
        listed = {m["id"]: m["name"] for m in acme.get(base).json()["members"]}
    assert sorted(listed.values()) == ["Barack Obama", "Joe Biden"]
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx") as store, \
            store.sessions() as session:
        rows = {m.id: (m.name, m.payment_ref) for m in session.scalars(select(Member))
                if m.id in listed}
        granted = {c.member_id: c.granted_by for c in session.scalars(select(Consent)) if c.member_id in listed}
    assert sorted(rows.values()) == [("Barack Obama", "card-1"), ("Joe Biden", None)]
    assert sorted(granted.values()) == ["Barack Obama", "Joe Biden"]


@pytest.mark.parametrize("odd", ["", "#1?a\\b"])
@pytest.mark.parametrize("door", ["api", "console"])
def test_a_member_is_erased_by_one_use_case_whichever_door_asks(api, examples: Path, fast_analyzer,
                                                                tmp_path: Path, door: str, odd: str) -> None:
    """``service.tenants.erase_retail_member`` for the API's DELETE and the console's erase form:
    the member's id leaves the audit trail, and the stored answer of their enrolment
    (Idempotency-Key) names them no more (a retry is answered 404, not run again). Also for a store
    whose id holds ``#``, ``?`` and ``\\``, which a request's path holds percent-encoded (its
    answers were not matched, and kept)."""
    config = StoreConfig(id=f"erase-{door}-{tmp_path.name[-6:]}{odd}", tenant="acme",
                         cameras=[Camera(id="door", role="door")])
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx"):
        pass
    lin = (examples / "examples" / "lin-manuel-miranda.png").read_bytes()
    base = f"/v1/retail/stores/{quote(config.id, safe='')}/members"
    key = {"Idempotency-Key": f"enrol-{config.id}"}
    form = {"name": "Lin", "purposes": "visit_recognition"}
    with api.client("acme_admin") as acme:
        enrolled = acme.post(base, files={"image": lin}, data=form, headers=key)
        assert enrolled.status_code == 201, enrolled.text
        member = enrolled.json()["id"]
        if door == "api":
            erased = acme.delete(f"{base}/{member}")
            assert erased.status_code == 200 and erased.json()["faces_deleted"] == 1, erased.text
        else:
            client, csrf = _console(api, "acme_admin")
            page = client.post(f"/console/store/{quote(config.id, safe='')}/members/{member}/erase",
                               data={"csrf": csrf, "confirm": "erase"})
            client.close()
            assert page.status_code == 200 and "1 face" in page.text, page.text[-500:]
        assert acme.get(base).json()["members"] == []
        retried = acme.post(base, files={"image": lin}, data=form, headers=key)
        assert (retried.status_code, retried.json()["error"]["code"]) == (404, "not_found")
        assert member not in retried.text
        trail = [(e["action"], e["target"]) for e in acme.get("/v1/audit").json()["events"]
                 if e["target"].startswith(f"{config.id}/")]
    assert ("retail.erase", f"{config.id}/[erased]") in trail and not any(member in t for _, t in trail)
