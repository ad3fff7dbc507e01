"""`faceatlas remote` against a real `faceatlas serve`: each command a thin call of the Python
client, its answer the server's JSON on stdout, a failure one line ``error (code): message`` (exit 2),
a declined delete "Aborted." (exit 1) with nothing deleted."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from faceatlas.cli.main import app

runner = CliRunner()


def _remote(server, key: str, *args: object, **options: object):
    return runner.invoke(app, ["remote", *map(str, args), "--server", server.url, "--key", server.keys[key]],
                         **options)


def _answer(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _error_line(result, status: int = 2) -> str:
    assert result.exit_code == status and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_remote_manages_collections_and_subjects(server, examples: Path) -> None:
    """`remote` had detect, compare, enrol, search and usage only: a collection to enrol to had to
    be made with curl. Now collections, collection-create/-delete, subjects, subject-delete,
    verify, liveness and usage --from/--to/--csv are there too."""
    photo = examples / "tests/test_images/obama.jpg"
    other = examples / "tests/test_images/obama2.jpg"
    name = f"remote_{uuid.uuid4().hex[:6]}"
    created = _answer(_remote(server, "acme_write", "collection-create", name, "--keep-crops"))
    assert created["name"] == name and created["keep_crops"] is True and created["subjects"] == 0
    assert name in [c["name"] for c in _answer(_remote(server, "acme_read", "collections"))]
    _answer(_remote(server, "acme_write", "enrol", name, "obama", photo))
    page = _answer(_remote(server, "acme_read", "subjects", name, "--limit", "10"))
    assert [(s["external_id"], s["faces"]) for s in page["subjects"]] == [("obama", 1)] and page["next"] is None
    verdict = _answer(_remote(server, "acme_read", "verify", name, "obama", other))
    assert verdict["external_id"] == "obama" and verdict["match"] is True
    assert _error_line(_remote(server, "acme_read", "verify", name, "obama", other, "--far", "1e-3", "--threshold",
                               "0.5")).startswith("error (validation_error): ")  # refused before any call
    found = _answer(_remote(server, "acme_read", "search", name, other, "-k", "1"))
    assert [m["external_id"] for m in found["results"][0]["matches"]] == ["obama"]
    assert (found["fpir"], found["faces_in_image"]) == (1e-3, 1)  # the server's whole answer (faces_in_image was cut)
    live = _answer(_remote(server, "acme_detect", "liveness", photo))
    assert set(live) >= {"real", "score", "probabilities", "face"}

    # a delete asks first: declined, "Aborted." (exit 1) and nothing deleted; --json cannot ask
    declined = _remote(server, "acme_write", "subject-delete", name, "obama", input="n\n")
    assert declined.exit_code == 1 and declined.output.rstrip().endswith("Aborted."), declined.output
    assert "1 faces" in declined.output
    asked = _remote(server, "acme_write", "subject-delete", name, "obama", "--json")
    assert asked.exit_code == 2 and json.loads(asked.stdout)["error"] == "usage"
    assert _answer(_remote(server, "acme_read", "subjects", name))["subjects"]
    gone = _answer(_remote(server, "acme_write", "subject-delete", name, "obama", "--yes"))
    assert gone == {"deleted": f"subject 'obama' of '{name}'", "faces": 1}
    assert _answer(_remote(server, "acme_read", "subjects", name))["subjects"] == []
    missing = _error_line(_remote(server, "acme_write", "subject-delete", name, "obama", "--yes"))
    assert missing.startswith("error (not_found): the server answered 404: ")

    declined = _remote(server, "acme_write", "collection-delete", name, input="n\n")
    assert declined.exit_code == 1 and declined.output.rstrip().endswith("Aborted."), declined.output
    assert name in [c["name"] for c in _answer(_remote(server, "acme_read", "collections"))]
    assert _answer(_remote(server, "acme_write", "collection-delete", name, "-y")) == {
        "deleted": f"collection '{name}'", "faces": 0}
    assert name not in [c["name"] for c in _answer(_remote(server, "acme_read", "collections"))]

    today = date.today().isoformat()
    usage = _answer(_remote(server, "acme_admin", "usage", "--from", today, "--to", today))
    assert usage["rows"] and all(row["day"] == today for row in usage["rows"])
    assert "collections.create" in {row["operation"] for row in usage["rows"]}
    csv = _remote(server, "acme_admin", "usage", "--from", today, "--csv")
    assert csv.exit_code == 0 and csv.stdout.splitlines()[0].startswith("tenant,day,operation"), csv.output
    assert _remote(server, "acme_admin", "usage", "--from", "May 1").exit_code == 2  # not a date: refused here


def test_remote_says_failures_as_the_local_commands_do(server, examples: Path, tmp_path: Path) -> None:
    """A missing file was `bad_request` (locally `invalid_image`), `compare` said "no face found in
    image_a" (locally the file), `compare --far nan` went to the server (search refused it here),
    and `search` took `--k` but not `-k` (`gallery search` takes -k)."""
    photo = examples / "tests/test_images/obama.jpg"
    blank = tmp_path / "blank.jpg"
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(blank)
    missing = tmp_path / "nosuch.jpg"
    assert _error_line(_remote(server, "acme_detect", "compare", missing, photo)) == (
        f"error (file_not_found): {missing}: no such file")
    assert _error_line(_remote(server, "acme_detect", "detect", tmp_path)) == (
        f"error (invalid_image): {tmp_path}: a folder, not an image file")
    no_face = _error_line(_remote(server, "acme_detect", "compare", photo, blank), 1)  # no answer: 1, not 2
    assert no_face.startswith("error (no_face): ") and f"image_b ({blank})" in no_face, no_face
    nan = [_error_line(_remote(server, "acme_read", command, *args, "--far", "nan"))
           for command, args in (("compare", (photo, photo)), ("search", ("c", photo)))]
    assert nan[0] == nan[1] == "error (validation_error): far is a rate between 0 and 1 (both excluded), not nan"
    name = f"k_{uuid.uuid4().hex[:6]}"
    _answer(_remote(server, "acme_write", "collection-create", name))
    try:
        for subject in ("a", "b"):
            _answer(_remote(server, "acme_write", "enrol", name, subject, photo))
        for k in (["-k", "1"], ["--k", "1"]):
            ranked = _answer(_remote(server, "acme_read", "search", name, photo, *k, "--rank-only"))
            assert len(ranked["results"][0]["matches"]) == 1, k
        missing_collection = _error_line(_remote(server, "acme_read", "search", f"{name}_x", blank))
        assert missing_collection.startswith("error (not_found): "), missing_collection  # before no_face
        slash = _error_line(_remote(server, "acme_read", "search", f"{name}/x", photo))
        assert slash.startswith("error (validation_error): ") and "A-Z, a-z, 0-9" in slash, slash
    finally:
        _answer(_remote(server, "acme_write", "collection-delete", name, "--yes"))


def test_remote_detect_reads_an_image_from_standard_input(server, examples: Path) -> None:
    """`remote detect - < photo.jpg` was `invalid_image: -: no such file`: `-` sends standard input's
    bytes, which the server decodes as a file's."""
    photo = examples / "tests/test_images/obama.jpg"
    found = _answer(_remote(server, "acme_detect", "detect", "-", input=photo.read_bytes()))
    assert len(found["faces"]) == 1


def test_remote_ensure_steps_and_a_photo_without_a_face(server, examples: Path, tmp_path: Path) -> None:
    """Run twice, `remote collection-create` was 2 already_exists and `remote subject-delete` 2
    not_found: --exist-ok (the same --keep-crops; other crops are still an error) and --missing-ok
    make them 0, said in the answer. A search of a photo without a face was exit 2 as an outage is: 1."""
    photo = examples / "tests/test_images/obama.jpg"
    blank = tmp_path / "blank.jpg"
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(blank)
    name = f"ensure_{uuid.uuid4().hex[:6]}"
    made = _answer(_remote(server, "acme_write", "collection-create", name, "--exist-ok"))
    assert made["name"] == name and made["existed"] is False, made
    try:
        again = _answer(_remote(server, "acme_write", "collection-create", name, "--exist-ok"))
        assert again["name"] == name and again["existed"] is True, again
        assert _error_line(_remote(server, "acme_write", "collection-create", name)).startswith(
            "error (already_exists): ")  # without the flag: as before
        other = _error_line(_remote(server, "acme_write", "collection-create", name, "--keep-crops", "--exist-ok"))
        assert other.startswith("error (already_exists): ") and "crops not kept" in other, other
        _answer(_remote(server, "acme_write", "enrol", name, "obama", photo))
        no_face = _remote(server, "acme_read", "search", name, blank, "--json")
        assert no_face.exit_code == 1 and json.loads(no_face.stdout)["error"] == "no_face", no_face.output
        delete = ["subject-delete", name, "obama", "--yes", "--missing-ok"]
        assert _answer(_remote(server, "acme_write", *delete)) == {
            "deleted": f"subject 'obama' of '{name}'", "faces": 1, "missing": False}
        assert _answer(_remote(server, "acme_write", *delete)) == {
            "deleted": f"subject 'obama' of '{name}'", "faces": 0, "missing": True}
        assert _error_line(_remote(server, "acme_write", *delete[:-1])).startswith("error (not_found): ")
    finally:
        _answer(_remote(server, "acme_write", "collection-delete", name, "--yes"))
    assert _answer(_remote(server, "acme_write", "subject-delete", name, "obama", "--yes", "--missing-ok"))["missing"]
