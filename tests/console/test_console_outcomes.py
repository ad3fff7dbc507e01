"""The console's store, album and KYC pages say what happened and offer what the API offers: a
member's group photo refused and said so, album corrections and erasures that end on a page that
exists, questions that name who is merged, headings that follow the outcome, pending KYC sessions
and bad filters worded, alerts resolved once. In process (``TestClient``), no browser needed."""

from __future__ import annotations

from pathlib import Path

from faceatlas.apps.retail import Camera, RetailStore, StoreConfig
from tests.console.test_console_wording import _console, _text, _upload

STORE = "corner"


def _store(fast_analyzer, url: str, folder: Path) -> None:
    """A store of tenant acme, as `retail run` leaves it."""
    config = StoreConfig(id=STORE, tenant="acme", cameras=[Camera(id="door", role="door")])
    RetailStore.open(config, fast_analyzer, url, index_dir=folder / "indexes").close()


def test_a_member_photo_of_several_people_is_refused_and_said_so(fast_analyzer, examples, tmp_path) -> None:
    """A group photo enrolled its largest face (maybe a bystander's) under the member's consent,
    and the page said "face enrolled". The photo is refused, with why, the member's own photo enrolled."""
    group, obama = examples / "examples/two_people.jpg", examples / "tests/test_images/obama.jpg"
    with _console(fast_analyzer, tmp_path) as console:
        _store(fast_analyzer, console.database_url, tmp_path)
        client, csrf = console.client, console.csrf
        form = {"name": "Barack", "purposes": "visit_recognition", "csrf": csrf}
        enrolled = client.post(f"/console/store/{STORE}/members", data=form,
                               files=[("photos", _upload(group)), ("photos", _upload(obama))])
        only_group = client.post(f"/console/store/{STORE}/members", data={**form, "name": "Group"},
                                 files=[("photos", _upload(group))])
        members = _text(client.get(f"/console/store/{STORE}/members").text)
    said = _text(enrolled.text)
    assert enrolled.status_code == 200 and "Enrolled Barack" in said
    assert "two_people.jpg: too_many_faces — 2 faces in the image" in said and "a photo of the member alone" in said
    assert "obama.jpg: face enrolled" in said and "1 face enrolled" in said
    assert only_group.status_code == 422 and "Nobody enrolled" in _text(only_group.text)
    assert "Barack" in members and "Group" not in members
