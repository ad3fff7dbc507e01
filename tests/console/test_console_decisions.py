"""The console decides as the API and the CLI do: a 1:N search at the default cut for the
collection's size (FPIR 1e-3), stated on the answer; and an enrolment's name, one rule for every
door (a new subject gets it, an existing one is renamed, and the rename is audited). In process
(``TestClient``) over a fresh SQLite database, with the real SCRFD + MobileFaceNet pack."""

from __future__ import annotations

from faceatlas.db import create_database_engine
from faceatlas.gallery import Gallery
from faceatlas.service.accounts import Accounts
from tests.console.test_console_wording import _console, _text, _upload


def test_a_name_given_with_an_enrolment_renames_the_subject_and_the_trail_says_so(fast_analyzer, examples,
                                                                                  tmp_path) -> None:
    """The console renamed an existing subject after its enrolment by a call of its own (the CLI kept
    the old name; the rename was in no audit trail). The name goes into the enrolment now: a new
    subject gets it, an existing one is renamed, audited as the API's PATCH audits a change."""
    photos = examples / "tests/test_images"
    with _console(fast_analyzer, tmp_path) as console:
        client, csrf = console.client, console.csrf
        assert client.post("/console/galleries", data={"name": "staff", "csrf": csrf}).status_code == 200
        for photo, name in (("obama.jpg", "Alice A"), ("obama2.jpg", "Alice B"), ("obama3.jpg", "")):
            enrolled = client.post("/console/galleries/staff/enrol", data={"subject": "alice", "name": name,
                                                                           "csrf": csrf},
                                   files=[("photos", _upload(photos / photo))])
            assert f"{photo}: enrolled 1 face" in _text(enrolled.text), _text(enrolled.text)[-500:]
        with Gallery.open(console.database_url, tenant="svc:acme", index_dir=tmp_path / "indexes") as gallery:
            alice = gallery.get_subject("staff", "alice")
        assert alice.name == "Alice B" and alice.faces == 3  # no name given: the name held is kept
        engine = create_database_engine(console.database_url)
        trail = [(row.action, row.target) for row in Accounts(engine).audit_log("acme", 100)]
        engine.dispose()
        assert trail.count(("subject.create", "staff/alice")) == 1
        assert trail.count(("subject.update", "staff/alice")) == 1  # the rename, once
