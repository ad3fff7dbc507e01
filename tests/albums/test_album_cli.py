"""`faceatlas album ...` on real LFW photos."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from faceatlas.cli.main import app
from tests.albums.conftest import copy_people


def test_album_commands(lfw: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'album.db'}")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    monkeypatch.setenv("FACEATLAS_PACK", "scrfd-mbf")
    library = copy_people(lfw, tmp_path / "photos", ("George_W_Bush", "Tony_Blair"), 3)
    runner = CliRunner()

    def run(*args: str) -> object:
        result = runner.invoke(app, ["album", *args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    for _ in range(2):  # reading an album that is not there makes none
        missing = runner.invoke(app, ["album", "people"])
        assert missing.exit_code == 2 and "not_found" in missing.output and "no album database" in missing.output
    scanned = run("scan", str(library), "--pack", "scrfd-mbf")
    assert scanned["photos"] == 6 and scanned["faces"] >= 5
    assert run("scan", str(library))["skipped"] == 6
    people = run("people", "--min-faces", "2")
    assert len(people) >= 2 and all(p["faces"] >= 2 for p in people)
    first, second = people[0]["id"], people[1]["id"]
    # two people of no shared photo (one face per LFW photo): a line saying so, not an empty one
    apart = runner.invoke(app, ["album", "together", first, second])
    assert apart.exit_code == 0 and apart.output.strip() == f"no photo holds all of {first}, {second}", apart.output
    assert run("together", first, second) == []
    assert run("name", first, "Alice")["name"] == "Alice"
    taken = runner.invoke(app, ["album", "name", second, "Alice"])  # every later "Alice" was ambiguous
    assert taken.exit_code != 0 and "already_exists" in taken.output and "merge" in taken.output, taken.output
    slashed = runner.invoke(app, ["album", "name", second, "AC/DC"])
    assert slashed.exit_code != 0 and "without '/'" in slashed.output, slashed.output
    sheet = tmp_path / "sheet.png"
    faces = run("show", "Alice", "--sheet", str(sheet))
    assert sheet.is_file() and len(faces) == people[0]["faces"]
    assert [p.name for p in tmp_path.rglob("*.png")] == ["sheet.png"]  # written only where asked
    pool = run("show", "unsorted", "--sheet", str(tmp_path / "pool.png"))  # the quality gate's pool
    assert len(pool) == scanned["unsorted"] and all(f["person"] is None for f in pool)
    pool_photos = run("timeline", "unsorted")  # was "no person 'unsorted'" where show listed the pool
    assert sorted(p["id"] for p in pool_photos) == sorted({f["photo_id"] for f in pool})
    assert (tmp_path / "pool.png").is_file()
    moved = run("move", str(faces[0]["id"]), second)
    assert moved["person"] == second
    rejected = run("reject", str(faces[0]["id"]))
    assert rejected["person"] not in (first, second)
    split = run("split", str(faces[1]["id"]))
    assert split["faces"] == 1
    # listed by `album people` as by the API and the client (min faces 1): the CLI's default was 2
    assert split["id"] in {p["id"] for p in run("people")}
    merged = run("merge", first, split["id"])
    assert merged["id"] == first
    assert run("recluster")["people"] >= 2
    assert [p["source"] for p in run("timeline", "Alice")]
    assert runner.invoke(app, ["gallery", "create", "known", "--pack", "scrfd-mbf"]).exit_code == 0
    assert run("promote", "Alice", "known", "alice")["faces"] >= 1
    declined = runner.invoke(app, ["album", "erase", "Alice"], input="n\n")  # it erased at once, unasked
    assert declined.exit_code == 1 and "(Alice) and their" in declined.output, declined.output
    assert declined.output.rstrip().endswith("Aborted."), declined.output  # as every question answered no
    assert "Alice" in {p["name"] for p in run("people")}
    assert run("erase", "Alice", "--yes")["faces_deleted"] >= 1  # --json asks nothing: --yes says so
    bad = runner.invoke(app, ["album", "show", "nobody"])
    assert bad.exit_code == 2 and "not_found" in bad.output


def test_promote_into_a_collection_of_another_pack_says_what_can_be_done(lfw: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    """`album promote` into a collection of another pack said "--pack yunet-frfeature or
    FACEATLAS_PACK=..., or reembed this collection": promote has no --pack and an album's faces cannot
    be made with another pack. It says to promote into a collection of the album's pack, or make one."""
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'album.db'}")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    library = copy_people(lfw, tmp_path / "photos", ("Tony_Blair",), 2)
    runner = CliRunner()
    assert runner.invoke(app, ["album", "scan", str(library), "--pack", "scrfd-mbf"]).exit_code == 0
    person = json.loads(runner.invoke(app, ["album", "people", "--json"]).stdout)[0]["id"]
    assert runner.invoke(app, ["album", "name", person, "Ann"]).exit_code == 0
    assert runner.invoke(app, ["gallery", "create", "fr", "--pack", "yunet-frfeature"]).exit_code == 0
    refused = runner.invoke(app, ["album", "promote", "Ann", "fr", "ann"])
    assert refused.exit_code == 2, refused.output
    said = refused.output.strip()
    assert said.startswith("error (model_mismatch): collection 'fr' holds embeddings of pack 'yunet-frfeature'"), said
    assert said.endswith("An album's faces are of its pack 'scrfd-mbf': promote into a collection of that pack, or "
                         "create one (`faceatlas gallery create NAME --pack scrfd-mbf`)."), said
    assert "FACEATLAS_PACK" not in said and "reembed" not in said
    listed = json.loads(runner.invoke(app, ["gallery", "list", "fr", "--json"]).stdout)
    assert listed["items"] == []
    # a collection keeping crops can be reembedded to the album's pack: said too
    created = runner.invoke(app, ["gallery", "create", "kept", "--pack", "yunet-frfeature", "--keep-crops"])
    assert created.exit_code == 0, created.output
    kept = runner.invoke(app, ["album", "promote", "Ann", "kept", "ann"])
    assert kept.exit_code == 2 and kept.output.strip().endswith(
        "or reembed 'kept' to it (`faceatlas gallery reembed kept --pack scrfd-mbf`, from its kept crops)."), \
        kept.output


def test_deleting_a_face_a_photo_and_an_album(lfw: Path, tmp_path: Path, monkeypatch) -> None:
    """There was no command to delete a face, a photo or an album: each asks first (declined:
    "Aborted.", exit 1; --json asks nothing, so it needs --yes), and an unknown one is not_found
    before any question."""
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'album.db'}")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    monkeypatch.setenv("FACEATLAS_PACK", "scrfd-mbf")
    library = copy_people(lfw, tmp_path / "photos", ("George_W_Bush", "Tony_Blair"), 2)
    runner = CliRunner()

    def run(*args: str) -> dict:
        result = runner.invoke(app, ["album", *args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    scanned = run("scan", str(library))
    person = runner.invoke(app, ["album", "people", "--min-faces", "1", "--json"])
    face = json.loads(person.stdout)[0]["cover_face"]
    photo = next(f["photo_id"] for f in run("show", json.loads(person.stdout)[0]["id"]) if f["id"] != face)
    for args in (["delete-face", str(face)], ["delete-photo", str(photo)], ["delete", "default"]):
        declined = runner.invoke(app, ["album", *args], input="n\n")
        assert declined.exit_code == 1 and declined.output.rstrip().endswith("Aborted."), declined.output
        unasked = runner.invoke(app, ["album", *args, "--json"])
        assert unasked.exit_code == 2 and "give --yes" in unasked.output, unasked.output
    first = run("delete-face", str(face), "--yes")
    assert (first["face"], first["faces_deleted"]) == (face, 1)
    gone = runner.invoke(app, ["album", "delete-face", str(face), "--yes"])
    assert gone.exit_code == 2 and "not_found" in gone.output
    deleted = run("delete-photo", str(photo), "--yes")
    assert (deleted["photo"], deleted["photos_deleted"]) == (photo, 1) and deleted["faces_deleted"] >= 1
    assert run("scan", str(library))["photos"] == first["photos_deleted"] + 1  # scanned again, not skipped
    deleted = run("delete", "default", "--yes")
    assert deleted["album"] == "default" and deleted["photos_deleted"] == scanned["photos"]
    missing = runner.invoke(app, ["album", "delete", "default", "--yes"])
    assert missing.exit_code == 2 and "no album 'default'" in missing.output
    assert run("scan", str(library))["photos"] == scanned["photos"]  # a new album of the same photos


def test_a_scan_with_failed_photos_says_which_and_exits_1(lfw: Path, tmp_path: Path, monkeypatch) -> None:
    """`album scan` of a folder with unreadable photos exited 0 and named them only under --json,
    where `detect` and `batch embed` exit 1 on the same folder: 1 and one line per failed photo."""
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'album.db'}")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    library = copy_people(lfw, tmp_path / "photos", ("Tony_Blair",), 2)
    (library / "notes.jpg").write_text("not a photo")
    result = CliRunner().invoke(app, ["album", "scan", str(library), "--pack", "scrfd-mbf"])
    assert result.exit_code == 1, result.output
    flat = result.output.replace("\n", "")  # rich wraps a long temp path at the terminal's width
    assert "2 photos added" in flat and "failed:" in flat and "notes.jpg" in flat


def test_a_scan_names_the_heic_photos_it_leaves_out(lfw: Path, tmp_path: Path, monkeypatch) -> None:
    """A library's iPhone photos (.heic) were passed over without a word: "2 photos added" of a
    folder of 3, and a folder of HEIC photos alone was "no photos under this folder"."""
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'album.db'}")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    library = copy_people(lfw, tmp_path / "photos", ("Tony_Blair",), 2)
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    (library / "IMG_0001.HEIC").write_bytes(heic)
    runner = CliRunner()
    result = runner.invoke(app, ["album", "scan", str(library), "--pack", "scrfd-mbf"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())  # rich wraps a long temp path at the terminal's width
    assert "2 photos added" in flat and "1 HEIC/HEIF photos left out" in flat
    assert "IMG_0001.HEIC" in result.output.replace("\n", "")
    again = runner.invoke(app, ["album", "scan", str(library), "--json"])
    assert json.loads(again.stdout)["left_out"] == [str((library / "IMG_0001.HEIC").resolve())]
    only = tmp_path / "iphone"
    only.mkdir()
    (only / "IMG_0002.heic").write_bytes(heic)
    refused = runner.invoke(app, ["album", "scan", str(only)])
    flat = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "1 HEIC/HEIF photos" in flat and "convert" in flat


def test_a_stopped_scan_says_how_far_it_got_and_the_next_scan_goes_on(lfw: Path, tmp_path: Path) -> None:
    """A kill (or Ctrl-C) during `album scan` ended with the progress bar alone; now one line says
    how far it got and what is kept, and the next scan skips the photos added before the stop."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    library = tmp_path / "photos"
    library.mkdir()
    for person in sorted(p for p in lfw.iterdir() if p.is_dir())[:120]:
        (library / person.name).symlink_to(person, target_is_directory=True)
    db = tmp_path / "album.db"
    env = {**os.environ, "FACEATLAS_DATABASE_URL": f"sqlite:///{db}", "FACEATLAS_INDEX_DIR": str(tmp_path / "idx"),
           "FACEATLAS_THREADS": "1"}
    scan = [sys.executable, "-m", "faceatlas.cli", "album", "scan", str(library), "--pack", "scrfd-mbf"]
    scanning = subprocess.Popen(scan, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, added = time.monotonic() + 180, 0
    while added == 0 and time.monotonic() < deadline and scanning.poll() is None:
        time.sleep(0.2)
        with sqlite3.connect(db) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
            added = connection.execute("SELECT count(*) FROM album_photos").fetchone()[0] \
                if "album_photos" in tables else 0
    scanning.send_signal(signal.SIGTERM)
    _, errors = scanning.communicate(timeout=60)
    assert added > 0 and scanning.returncode == 130, (scanning.returncode, errors[-2000:])
    assert "interrupted after " in errors and "the photos added before the stop are kept" in errors
    again = subprocess.run([*scan, "--json"], env=env, capture_output=True, text=True, timeout=900)
    assert json.loads(again.stdout)["skipped"] >= added


def test_show_from_another_folder_draws_the_photos_and_says_which_are_gone(lfw: Path, tmp_path: Path,
                                                                          monkeypatch) -> None:
    """`album scan lib` then `album show p1 --sheet ...` from another folder: every tile grey,
    exit 0, no word of it; `show` and `timeline` listed `lib/...`."""
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'album.db'}")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    copy_people(lfw, tmp_path / "lib", ("Tony_Blair",), 3)
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["album", "scan", "lib", "--pack", "scrfd-mbf"]).exit_code == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    person = json.loads(runner.invoke(app, ["album", "people", "--json"]).stdout)[0]["id"]
    photos = json.loads(runner.invoke(app, ["album", "timeline", person, "--json"]).stdout)
    assert photos and all(Path(p["source"]).is_absolute() and Path(p["source"]).is_file() for p in photos)
    shown = runner.invoke(app, ["album", "show", person, "--sheet", str(tmp_path / "p.png")])
    assert shown.exit_code == 0 and "0 photos unreadable" in shown.stderr and "warning" not in shown.stderr
    Path(photos[0]["source"]).unlink()
    shown = runner.invoke(app, ["album", "show", person, "--sheet", str(tmp_path / "p.png"), "--json"])
    assert shown.exit_code == 0 and json.loads(shown.stdout)
    assert "warning: 1 photos could not be read" in shown.stderr and photos[0]["source"] in shown.stderr


def test_a_scan_that_adds_nothing_makes_no_album(lfw: Path, tmp_path: Path, monkeypatch) -> None:
    """Found by a probe: `album scan` of a folder of HEIC photos alone (or of nothing) said "no photos"
    and made the album all the same, fixing its pack: a scan of photos with another pack was then
    model_mismatch ("holds embeddings of pack ...", holding none) suggesting `gallery reembed`, which
    no album has, and `album people` listed an empty album; the empty folder drew "scanning 0/?"
    before its error. Now nothing is made and nothing drawn; an album of photos of another pack
    says what applies (its pack, or delete it)."""
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'album.db'}")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    library = copy_people(lfw, tmp_path / "photos", ("Tony_Blair",), 2)
    iphone, empty = tmp_path / "iphone", tmp_path / "empty"
    iphone.mkdir()
    empty.mkdir()
    (iphone / "IMG_0001.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    runner = CliRunner()
    assert runner.invoke(app, ["album", "scan", str(library), "-a", "home", "--pack", "scrfd-mbf"]).exit_code == 0
    for folder, name in ((iphone, "trip"), (empty, "e")):
        refused = runner.invoke(app, ["album", "scan", str(folder), "-a", name, "--pack", "yunet-frfeature"])
        flat = " ".join(refused.output.split())
        assert refused.exit_code == 2 and "no photos under this folder" in flat, refused.output
        assert "scanning" not in refused.output, refused.output  # no bar before the error
        missing = runner.invoke(app, ["album", "people", "-a", name])
        assert missing.exit_code == 2 and f"no album '{name}'" in missing.output, missing.output
    scanned = runner.invoke(app, ["album", "scan", str(library), "-a", "trip", "--pack", "scrfd-mbf", "--json"])
    assert scanned.exit_code == 0 and json.loads(scanned.stdout)["photos"] == 2, scanned.output
    other = runner.invoke(app, ["album", "scan", str(library), "-a", "trip", "--pack", "yunet-frfeature"])
    flat = " ".join(other.output.split())
    assert other.exit_code == 2 and "model_mismatch" in flat, other.output
    assert "--pack scrfd-mbf" in flat and "`faceatlas album delete trip`" in flat and "reembed" not in flat, flat


def test_a_sheet_is_never_written_over_a_photo_of_the_album(lfw: Path, tmp_path: Path, monkeypatch) -> None:
    """Found by a probe: `album show p1 --sheet <a photo of the album>` wrote the sheet over the photo.
    Refused (one line, exit 2), by its path or a link to it; any other file is overwritten as asked."""
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'album.db'}")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    library = copy_people(lfw, tmp_path / "lib", ("Tony_Blair",), 2)
    runner = CliRunner()
    assert runner.invoke(app, ["album", "scan", str(library), "--pack", "scrfd-mbf"]).exit_code == 0
    person = json.loads(runner.invoke(app, ["album", "people", "--json"]).stdout)[0]["id"]
    photo = Path(json.loads(runner.invoke(app, ["album", "timeline", person, "--json"]).stdout)[0]["source"])
    link = tmp_path / "link.jpg"
    link.symlink_to(photo)
    kept = photo.read_bytes()
    monkeypatch.chdir(photo.parent)
    for target in (str(photo), photo.name, str(link)):
        refused = runner.invoke(app, ["album", "show", person, "--sheet", target])
        flat = " ".join(refused.output.split())
        assert refused.exit_code == 2 and "error (validation_error)" in flat and "destroy the photo" in flat, flat
        assert photo.read_bytes() == kept
    other = tmp_path / "other.jpg"
    other.write_bytes(b"anything")
    assert runner.invoke(app, ["album", "show", person, "--sheet", str(other)]).exit_code == 0
    assert other.read_bytes() != b"anything"


def test_a_scan_says_how_many_photos_changed_at_their_paths(lfw: Path, tmp_path: Path, monkeypatch) -> None:
    """Found by a probe: a photo overwritten at its path was added alongside the old one, without a word."""
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'album.db'}")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    library = copy_people(lfw, tmp_path / "lib", ("Tony_Blair", "Colin_Powell"), 2)
    runner = CliRunner()
    assert runner.invoke(app, ["album", "scan", str(library), "--pack", "scrfd-mbf"]).exit_code == 0
    target = sorted((library / "Tony_Blair").glob("*.jpg"))[0]
    target.write_bytes(sorted((lfw / "Colin_Powell").glob("*.jpg"))[5].read_bytes())
    result = runner.invoke(app, ["album", "scan", str(library)])
    flat = " ".join(result.output.split())
    assert result.exit_code == 0 and "1 photos added, 3 skipped, 1 photos changed" in flat, flat
    again = json.loads(runner.invoke(app, ["album", "scan", str(library), "--json"]).stdout)
    assert (again["changed"], again["photos"], again["skipped"]) == (0, 0, 4) and "erased" not in again
    people = json.loads(runner.invoke(app, ["album", "people", "--json"]).stdout)
    sources = [photo["source"] for person in people
               for photo in json.loads(runner.invoke(app, ["album", "timeline", person["id"], "--json"]).stdout)]
    assert sources.count(str(target.resolve())) == 1


def test_a_scan_names_the_dangling_links_and_fifos_named_as_photos(lfw: Path, tmp_path: Path) -> None:
    """`album scan` passed over a FIFO named `pipe.jpg` and a dangling link `gone.jpg` without a word
    (`detect` and `gallery enrol` report them as `invalid_image`): now each is among the report's
    `failed` with why, never opened (a FIFO read waits for a writer for ever: the scan runs in a
    process with a timeout), not counted as a photo, and a loop of links ends."""
    import os
    import subprocess
    import sys

    library = copy_people(lfw, tmp_path / "photos", ("Tony_Blair",), 2)
    os.mkfifo(library / "pipe.jpg")
    (library / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (library / "Tony_Blair" / "loop.jpg").symlink_to("loop.jpg")  # a link to itself
    (library / "Tony_Blair" / "back").symlink_to(library, target_is_directory=True)  # a loop of folders
    env = {**os.environ, "FACEATLAS_DATABASE_URL": f"sqlite:///{tmp_path / 'album.db'}",
           "FACEATLAS_INDEX_DIR": str(tmp_path / "indexes")}
    scan = [sys.executable, "-m", "faceatlas.cli", "album", "scan", "--pack", "scrfd-mbf"]
    done = subprocess.run([*scan, str(library), "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # failures: 1, as for a photo that does not decode
    report = json.loads(done.stdout)
    assert report["photos"] == 2 and report["left_out"] == [], report
    failed = {row["source"]: f"{row['error']}: {row['message']}" for row in report["failed"]}
    assert sorted(failed) == sorted(str(p) for p in (library / "pipe.jpg", library / "gone.jpg",
                                                     library / "Tony_Blair" / "loop.jpg")), failed
    assert failed[str(library / "pipe.jpg")] == "invalid_image: not a regular file but a FIFO (named pipe): not read"
    assert failed[str(library / "gone.jpg")] == (f"invalid_image: a dangling link (to {tmp_path / 'missing.jpg'}, "
                                                 "nothing there to read): not an image file")
    assert failed[str(library / "Tony_Blair" / "loop.jpg")].startswith("invalid_image: a loop of links (to loop.jpg")
    again = subprocess.run([*scan, str(library)], env=env, capture_output=True, text=True, timeout=300)
    said = "".join((again.stdout + again.stderr).split())  # rich wraps a long temp path at the terminal's width
    assert again.returncode == 1 and "0photosadded,2skipped,3failed" in said, said
    assert f"failed:{library / 'pipe.jpg'}:invalid_image:notaregularfilebutaFIFO(namedpipe):notread" in said, said
    assert f"failed:{library / 'gone.jpg'}:invalid_image:adanglinglink(to{tmp_path / 'missing.jpg'}" in said, said
    # entries of no photo alone: no photo to add (no album made), and the error names them
    alone = tmp_path / "alone"
    alone.mkdir()
    os.mkfifo(alone / "pipe.jpg")
    refused = subprocess.run([*scan, str(alone), "-a", "other"], env=env, capture_output=True, text=True, timeout=300)
    flat = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode == 2 and "no photos under this folder" in flat and "FIFO" in flat, flat


def test_an_empty_pool_says_so_and_draws_no_sheet(lfw: Path, tmp_path: Path, monkeypatch) -> None:
    """`album timeline unsorted` on an empty pool printed one blank line, and `album show unsorted --sheet`
    wrote a blank 112x112 PNG, "contact sheet: u.png (0 faces...)": each says there is nothing."""
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'album.db'}")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    library = copy_people(lfw, tmp_path / "photos", ("George_W_Bush", "Tony_Blair"), 2)
    runner = CliRunner()
    assert runner.invoke(app, ["album", "scan", str(library), "--pack", "scrfd-mbf"]).exit_code == 0
    people = json.loads(runner.invoke(app, ["album", "people", "--json"]).stdout)
    for face in json.loads(runner.invoke(app, ["album", "show", "unsorted", "--json"]).stdout):  # empty the pool
        assert runner.invoke(app, ["album", "move", str(face["id"]), people[0]["id"]]).exit_code == 0
    timeline = runner.invoke(app, ["album", "timeline", "unsorted"])
    assert timeline.exit_code == 0 and timeline.output.strip() == "no photo holds a face of unsorted", timeline.output
    sheet = tmp_path / "u.png"
    shown = runner.invoke(app, ["album", "show", "unsorted", "--sheet", str(sheet)])
    assert shown.exit_code == 0 and "no faces in unsorted: no contact sheet written" in shown.output, shown.output
    assert "contact sheet:" not in shown.output and not sheet.exists()


def test_a_sheet_that_cannot_be_written_is_refused_before_drawing(lfw: Path, tmp_path: Path, monkeypatch) -> None:
    """`show --sheet folder` said "cannot write an image with suffix '(none)'", and `--sheet /proc/x.png`
    "error (error): ... could not write the image" after drawing: a folder is named as one, and a file
    that cannot be written is bad_request with why, as `counts --plot` says it."""
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'album.db'}")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    library = copy_people(lfw, tmp_path / "photos", ("George_W_Bush",), 2)
    runner = CliRunner()
    assert runner.invoke(app, ["album", "scan", str(library), "--pack", "scrfd-mbf"]).exit_code == 0
    person = json.loads(runner.invoke(app, ["album", "people", "--json"]).stdout)[0]["id"]
    folder = tmp_path / "sheets"
    folder.mkdir()
    shown = runner.invoke(app, ["album", "show", person, "--sheet", str(folder)])
    said = " ".join(shown.output.split())
    assert shown.exit_code == 2 and f"contact sheet {folder} is a folder: give a file" in said, said
    shown = runner.invoke(app, ["album", "show", person, "--sheet", "/proc/x.png"])
    said = " ".join(shown.output.split())
    assert shown.exit_code == 2 and "error (bad_request): contact sheet /proc/x.png cannot be written (" in said, said
    assert list(folder.iterdir()) == []
