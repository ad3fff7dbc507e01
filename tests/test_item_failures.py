"""One input of many that failed is one JSON object at every door, ``{"source", "error",
"message"}`` (``Rejection.to_dict``; the API's ``ItemFailureOut``, the client's ``ItemFailure``).
A scripting probe found three shapes: ``detect --json``'s ``{"image", "error", "message"}``,
``gallery enrol --json``'s ``{"source", "reason": "no_face: ..."}`` (the code inside a string) and
``album scan --json``'s ``[["path", "invalid_image: ..."]]`` pairs, the API's upload answer too (a
tuple schema, ``prefixItems``). Real photos and files: a text file named .jpg, a photo of no face."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from faceatlas.cli.main import app

runner = CliRunner()
SHAPE = {"source", "error", "message"}


@pytest.fixture
def inputs(tmp_path: Path, examples: Path) -> Path:
    """A folder of a face photo, a photo of no face (a grey square) and a text file named .jpg."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "obama.jpg").write_bytes((examples / "examples" / "obama_small.jpg").read_bytes())
    cv2.imwrite(str(folder / "blank.jpg"), np.full((200, 200, 3), 128, np.uint8))
    (folder / "notes.jpg").write_text("not an image")
    return folder


def _json(args: list[str], code: int) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_detect_and_liveness_give_a_failed_image_as_source_error_message(inputs: Path) -> None:
    """`detect --json` gave `{"image", "error", "message"}`: now the shape of every door (and its
    `image`, as every row of `results` names its image)."""
    for command in ("detect", "liveness"):
        rows = {Path(r["image"]).name: r for r in _json([command, str(inputs), "-p", "scrfd-mbf", "--json"],
                                                         1)["results"]}
        failed = rows["notes.jpg"]
        assert set(failed) == {"image"} | SHAPE, failed
        assert failed["source"] == failed["image"] == str(inputs / "notes.jpg"), failed
        assert failed["error"] == "invalid_image" and not failed["message"].startswith("invalid_image"), failed
    blank = _json(["liveness", str(inputs / "blank.jpg"), "-p", "scrfd-mbf", "--json"], 1)["results"][0]
    assert set(blank) == {"image"} | SHAPE and blank["error"] == "no_face", blank


def test_gallery_enrol_gives_each_rejected_photo_as_source_error_message(inputs: Path, tmp_path: Path) -> None:
    """`gallery enrol --json`'s `rejected` was `{"source", "reason": "no_face: ..."}`, the code
    inside a string a script had to split."""
    db = f"sqlite:///{tmp_path / 'g.db'}"
    assert runner.invoke(app, ["gallery", "create", "staff", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    enrolled = _json(["gallery", "enrol", "staff", str(inputs), "-s", "x", "--db", db, "--json"], 1)
    assert enrolled["added"] == 1, enrolled
    rejected = {Path(r["source"]).name: r for r in enrolled["rejected"]}
    assert all(set(r) == SHAPE for r in rejected.values()), rejected
    assert rejected["blank.jpg"]["error"] == "no_face" and rejected["notes.jpg"]["error"] == "invalid_image"
    assert rejected["blank.jpg"]["source"] == str(inputs / "blank.jpg"), rejected
    assert rejected["blank.jpg"]["message"] == "no face found in the image", rejected


def test_album_scan_gives_each_failed_photo_as_source_error_message(inputs: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`album scan --json`'s `failed` was a list of pairs, `[["path", "invalid_image: ..."]]`."""
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    report = _json(["album", "scan", str(inputs), "--pack", "scrfd-mbf", "--db", f"sqlite:///{tmp_path / 'a.db'}",
                    "--json"], 1)
    assert report["photos"] == 2, report  # the face and the grey square: a photo of no face is a photo
    [failed] = report["failed"]
    assert set(failed) == SHAPE, failed
    assert failed["source"] == str(inputs / "notes.jpg") and failed["error"] == "invalid_image", failed
    assert failed["message"] and not failed["message"].startswith("invalid_image"), failed


def test_the_api_and_the_client_read_a_scan_report_of_a_failed_photo(inputs: Path, tmp_path: Path,
                                                                      fast_analyzer, new_database) -> None:
    """The API's upload answer (``AlbumScanOut``, its response model) and the client's
    ``AlbumScan`` take a real scan's report, a text file named .jpg among its ``failed``: one
    ``ItemFailureOut`` / ``ItemFailure`` each, as the CLI gives it (they held pairs). The client
    reads an older server's pairs as the same."""
    from faceatlas.apps.albums import Album
    from faceatlas.client import ItemFailure
    from faceatlas.client.results import _failures
    from faceatlas.service.schemas import AlbumScanOut, ItemFailureOut

    with new_database("sqlite", tmp_path) as url, \
            Album.open("trip", fast_analyzer, url, index_dir=tmp_path / "indexes", create=True) as album:
        report = album.scan(inputs).to_dict()
    expected = {"source": str(inputs / "notes.jpg"), "error": "invalid_image"}
    answer = AlbumScanOut.model_validate(report)
    [item] = answer.failed
    assert isinstance(item, ItemFailureOut) and item.model_dump(include={"source", "error"}) == expected
    assert answer.model_dump()["failed"] == report["failed"]
    [parsed] = _failures(report, "failed")
    assert isinstance(parsed, ItemFailure) and (parsed.source, parsed.error) == tuple(expected.values())
    assert parsed.message == item.message and parsed.raw == report["failed"][0]
    old = {"failed": [[item.source, f"{item.error}: {item.message}"]]}  # a server before ItemFailureOut
    assert _failures(old, "failed") == (parsed,)
