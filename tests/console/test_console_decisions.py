"""The console decides as the API and the CLI do: a 1:N search at the default cut for the
collection's size (FPIR 1e-3), stated on the answer; and an enrolment's name, one rule for every
door (a new subject gets it, an existing one is renamed, and the rename is audited). In process
(``TestClient``) over a fresh SQLite database, with the real SCRFD + MobileFaceNet pack."""

from __future__ import annotations

import numpy as np

from faceatlas.db import create_database_engine
from faceatlas.engine import DEFAULT_FAR, Embedding
from faceatlas.gallery import Gallery
from faceatlas.service.accounts import Accounts
from tests.console.test_console_wording import _console, _text, _upload

SUBJECTS = 2_000


def test_a_stranger_the_api_calls_unknown_is_no_match_in_the_console(fast_analyzer, examples, tmp_path) -> None:
    """2,000 subjects, one of them as similar to the query face as lies between the 1:1 FAR 1e-4
    threshold and the FPIR 1e-3 threshold for 2,000: the API answered unknown, the console named the
    subject (it cut at DEFAULT_FAR, a cut that names ever more strangers as the collection grows;
    about 18% of them at this size). Both now cut at the FPIR for the collection's size, and the
    console's answer says so."""
    photo = examples / "tests/test_images/obama.jpg"
    query = fast_analyzer.largest(fast_analyzer.load_reduced(str(photo))[0])[0][0].as_embedding().vector
    query = query / np.linalg.norm(query)
    calibration = fast_analyzer.calibration
    one_to_one = calibration.threshold(DEFAULT_FAR)
    for_the_size = calibration.fpir_threshold(1e-3, SUBJECTS)
    assert one_to_one + 0.02 < for_the_size  # the two cuts differ at this size (else the test proves nothing)
    target = (one_to_one + for_the_size) / 2
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((SUBJECTS, len(query))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    side = vectors[0] - (vectors[0] @ query) * query  # s0: similarity `target` to the query face
    vectors[0] = target * query + np.sqrt(1 - target**2) * side / np.linalg.norm(side)
    recognizer = fast_analyzer.pack.recognizer_id
    with _console(fast_analyzer, tmp_path) as console:
        client, csrf = console.client, console.csrf
        assert client.post("/console/galleries", data={"name": "crowd", "csrf": csrf}).status_code == 200
        with Gallery.open(console.database_url, tenant="svc:acme", index_dir=tmp_path / "indexes") as gallery:
            for number, vector in enumerate(vectors):
                gallery.add_embeddings("crowd", f"s{number}", vector[None], recognizer_id=recognizer)
            # the setup: a 1:1 FAR cut names s0, the cut for 2,000 subjects does not
            stranger = Embedding(query.astype(np.float32), recognizer)
            assert [m.external_id for m in gallery.search("crowd", stranger, far=DEFAULT_FAR,
                                                          calibration=calibration)] == ["s0"]
        api = client.post("/v1/collections/crowd/search", files={"image": _upload(photo)},
                          headers={"Authorization": f"Bearer {console.key}"})
        assert api.status_code == 200, api.text
        assert api.json()["results"][0]["unknown"] is True and api.json()["fpir"] == 1e-3
        searched = client.post("/console/galleries/crowd/search", data={"csrf": csrf}, files={"photo": _upload(photo)})
        assert searched.status_code == 200, searched.text[-500:]
        answer = _text(searched.text)
        assert "Unknown" in answer and "Nobody in crowd reaches the decision threshold" in answer, answer[-800:]
        assert "(s0)" not in answer
        assert "Decided at FPIR 0.001 for the collection's size" in answer


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
