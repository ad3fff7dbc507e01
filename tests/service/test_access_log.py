"""The ids that name a person are kept out of the server's access log: a subject's id (often their
name), an album's person, a store's member. The audit trail erases a deleted subject's id, but the
access log kept ``DELETE /v1/collections/staff/subjects/jane_privacy`` where no deletion reaches it."""

from __future__ import annotations

from pathlib import Path

import httpx

from faceatlas.db import create_database_engine
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.service.redact import redact_people


def test_redact_people_replaces_the_segments_of_personal_parameters_only() -> None:
    route = "/v1/collections/{collection}/subjects/{subject}/merge"
    assert redact_people("/v1/collections/jane/subjects/jane/merge", route) == \
        "/v1/collections/jane/subjects/{subject}/merge"  # a collection named as its subject is kept
    assert redact_people("/v1/retail/stores/12/members/12", "/v1/retail/stores/{store_id}/members/{member_id}") == \
        "/v1/retail/stores/12/members/{member_id}"
    assert redact_people("/v1/collections/staff", "/v1/collections/{collection}") == "/v1/collections/staff"
    # no route took it (a redirect, a 404, a refusal): the segment after subjects, people or members
    assert redact_people("/v1/collections/staff/subjects/jane%20doe/") == "/v1/collections/staff/subjects/{subject}/"
    assert redact_people("/v1/albums/a/people/Aunt%20Mary/faces") == "/v1/albums/a/people/{person}/faces"
    assert redact_people("/v1/collections/staff/subject/jane") == "/v1/collections/staff/subject/{subject}"
    assert redact_people("/v1/collections/staff/subjects") == "/v1/collections/staff/subjects"
    # a KYC session's id names one person's identity check
    assert redact_people("/v1/kyc/sessions/c0c7e8/submit", "/v1/kyc/sessions/{session_id}/submit") == \
        "/v1/kyc/sessions/{session_id}/submit"
    assert redact_people("/v1/kyc/sessions/c0c7e8") == "/v1/kyc/sessions/{session_id}"


def test_no_person_s_id_is_written_to_the_access_log(service_tools, shared: Path, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = create_database_engine(database_url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    admin = accounts.create_key("acme", ["admin"], rate_per_second=100, burst=100).token
    log = tmp_path / "server.log"
    process, url = service_tools.start(database_url, shared, log)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=30) as http:
            assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201
            for subject in ("jane_privacy", "jane_alias"):
                assert http.post("/v1/collections/staff/subjects", json={"id": subject}).status_code == 201
            assert http.patch("/v1/collections/staff/subjects/jane_privacy", json={"name": "Jane"}).status_code == 200
            assert http.get("/v1/collections/staff/subjects/jane_privacy").status_code == 200
            merged = http.post("/v1/collections/staff/subjects/jane_alias/merge", json={"into": "jane_privacy"})
            assert merged.status_code == 200, merged.text
            assert http.delete("/v1/collections/staff/subjects/jane_privacy").status_code == 204
            assert http.get("/v1/collections/staff/subjects/jane_privacy").status_code == 404
            assert http.get("/v1/albums/holiday/people/Aunt%20Mary/faces").status_code == 404
            # the people of an album's photos together, by name in the query string
            assert http.get("/v1/albums/holiday/together", params=[("people", "Aunt Mary"),
                                                                   ("people", "jane_q")]).status_code == 404
            assert http.get("/v1/collections/staff").status_code == 200
            # not routed: a trailing slash (redirected), a mistyped route (404)
            assert http.get("/v1/collections/staff/subjects/jane_slash/").status_code in (307, 404)
            assert http.get("/v1/collections/staff/subject/jane_typo").status_code == 404
            session = http.post("/v1/kyc/sessions")
            assert session.status_code == 201, session.text
            session_id = session.json()["id"]
            assert http.get(f"/v1/kyc/sessions/{session_id}").status_code == 200
            assert http.post(f"/v1/kyc/sessions/{session_id}/submit").status_code == 415  # no document
    finally:
        service_tools.stop(process)
        engine.dispose()
    text = log.read_text()
    assert "DELETE /v1/collections/staff/subjects/{subject} HTTP" in text, text[-3000:]
    assert "POST /v1/collections/staff/subjects/{subject}/merge HTTP" in text
    assert "GET /v1/albums/holiday/people/{person}/faces HTTP" in text
    assert "GET /v1/albums/holiday/together?people={people}&people={people} HTTP" in text
    assert "GET /v1/collections/staff HTTP" in text  # a collection's name is not a person's: kept
    assert "GET /v1/kyc/sessions/{session_id} HTTP" in text
    assert "POST /v1/kyc/sessions/{session_id}/submit HTTP" in text
    assert "jane_" not in text and "Aunt" not in text and session_id not in text
