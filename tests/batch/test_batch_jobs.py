"""Batch jobs on a real local Ray (one session shared by this module), real LFW photos and models."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceatlas.batch import BatchOptions, dedupe, duplicate_groups, embed, enrol, face_table, phash, ray_session, search
from faceatlas.cli.main import app
from faceatlas.engine import cosine_similarity
from faceatlas.errors import ModelMismatch
from faceatlas.gallery import Gallery

PACK = "scrfd-mbf"


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module's jobs (they use a running session as it is)."""
    with ray_session(1, None):
        yield


@pytest.fixture(scope="module")
def people(shared: Path) -> list[Path]:
    """Folders of LFW people with at least 3 photos (sorted, the first few)."""
    root = shared / "data" / "lfw" / "images"
    found = []
    for folder in sorted(root.iterdir()):
        if len(list(folder.glob("*.jpg"))) >= 3:
            found.append(folder)
        if len(found) == 4:
            return found
    raise AssertionError("LFW has people with 3 photos")


def _options(batch_size: int = 4) -> BatchOptions:
    return BatchOptions(workers=1, pack=PACK, batch_size=batch_size)


def test_embed_reports_bad_inputs_and_resumes_nothing(ray_cluster, people, tmp_path, fast_analyzer):
    source = tmp_path / "in"
    source.mkdir()
    photos = [sorted(person.glob("*.jpg"))[0] for person in people[:3]]
    for photo in photos:
        shutil.copy(photo, source / photo.name)
    (source / "truncated.jpg").write_bytes(photos[0].read_bytes()[:600])
    (source / "notes.jpg").write_text("not an image at all")
    Image.new("1", (8000, 6000)).save(source / "huge.png")  # 48 MP > the 40 MP limit, read from the header
    out = tmp_path / "faces.parquet"

    report = embed(str(source), str(out), _options(batch_size=8))  # one batch, one part

    assert (report.images, report.processed, report.skipped) == (len(photos) + 3, len(photos) + 3, 0)
    with open(out / "_errors.csv") as f:
        errors = {Path(row["image_id"]).name: row["error"] for row in csv.DictReader(f)}
    assert errors == {"truncated.jpg": "truncated_image", "notes.jpg": "invalid_image", "huge.png": "image_too_large"}
    faces = face_table(str(out))
    assert {Path(i).name for i in faces.column("image_id").to_pylist()} == {p.name for p in photos}
    assert set(faces.column("recognizer_id").to_pylist()) == {fast_analyzer.pack.recognizer_id}
    first = faces.filter(faces.column("face").to_numpy() == 0).sort_by("image_id").slice(0, 1).to_pylist()[0]
    direct = fast_analyzer.analyze(first["image_id"])[0]
    assert cosine_similarity(np.asarray(first["embedding"]), direct.embedding) > 0.999
    assert np.allclose(first["box"], direct.bbox, atol=0.5)

    again = embed(str(source), str(out), _options())  # all done: nothing is read again
    assert (again.processed, again.skipped, again.faces, again.errors) == (0, report.images, report.faces, 3)
    # a manifest row naming a missing photo was dropped without a word, and a restart failed ("No files found")
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"path\n{photos[0]}\n{tmp_path / 'missing.jpg'}\n")
    listed = embed(str(manifest), str(tmp_path / "listed"), _options())
    assert (listed.images, listed.processed, listed.errors) == (2, 2, 1)
    with open(tmp_path / "listed" / "_errors.csv") as f:
        assert [(Path(r["image_id"]).name, r["error"]) for r in csv.DictReader(f)] == [("missing.jpg", "not_found")]
    rerun = embed(str(manifest), str(tmp_path / "listed"), _options())
    assert (rerun.skipped, rerun.processed, rerun.errors) == (2, 0, 1)
    # resumed with another pack: its faces would have joined the others' in one output, two spaces mixed
    (source / "later.jpg").write_bytes(sorted(people[3].glob("*.jpg"))[0].read_bytes())
    with pytest.raises(ModelMismatch, match="another embedding space"):
        embed(str(source), str(out), BatchOptions(workers=1, pack="yunet-frfeature", batch_size=4))
    assert set(face_table(str(out)).column("recognizer_id").to_pylist()) == {fast_analyzer.pack.recognizer_id}
    (source / "later.jpg").unlink()

    # the CLI exited 0 whatever failed: 1 when some images failed (as `gallery enrol`), 2 when every one did
    command = ["batch", "embed", "--workers", "1", "--pack", PACK, "--batch-size", "4", "--json"]
    partly = CliRunner().invoke(app, [*command, str(source), "--out", str(out)])
    assert partly.exit_code == 1 and json.loads(partly.stdout)["errors"] == 3, partly.output
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "notes.jpg").write_text("not an image at all")
    failed = CliRunner().invoke(app, [*command, str(unreadable), "--out", str(tmp_path / "none.parquet")])
    assert failed.exit_code == 2 and json.loads(failed.stdout)["errors"] == 1, failed.output


@pytest.mark.slow
def test_enrol_folders_then_search_identifies_other_photos(ray_cluster, people, tmp_path):
    enrol_dir, probe_dir = tmp_path / "enrol", tmp_path / "probe"
    for person in people[:3]:
        (enrol_dir / person.name).mkdir(parents=True)
        photos = sorted(person.glob("*.jpg"))
        for photo in photos[:2]:
            shutil.copy(photo, enrol_dir / person.name / photo.name)
        probe_dir.mkdir(exist_ok=True)
        shutil.copy(photos[2], probe_dir / photos[2].name)
    stranger = sorted(people[3].glob("*.jpg"))[0]
    shutil.copy(stranger, probe_dir / stranger.name)

    with Gallery.open(f"sqlite:///{tmp_path / 'g.db'}") as gallery:
        report = enrol(str(enrol_dir), "staff", gallery, _options())
        assert report.details["enrolled"] == 6 and report.details["subjects"] == 3
        assert gallery.get_collection("staff").faces == 6
        again = enrol(str(enrol_dir), "staff", gallery, _options())  # a restart enrols nothing twice
        assert again.details["enrolled"] == 0 and again.details["already_enrolled"] == 6
        assert gallery.get_collection("staff").faces == 6

        found = search(str(probe_dir), "staff", gallery, str(tmp_path / "search"), _options())
    import pyarrow.parquet as pq

    matches = {Path(r["image_id"]).name: r["subject"]
               for r in pq.read_table(tmp_path / "search" / "matches.parquet").to_pylist() if r["face"] == 0}
    expected = {sorted(p.glob("*.jpg"))[2].name: p.name for p in people[:3]}
    assert {name: matches[name] for name in expected} == expected
    assert matches[stranger.name] is None  # open-set: a stranger is nobody
    assert found.details["unknown_faces"] >= 1


def test_batch_enrol_on_a_fresh_install_makes_the_database_and_collection(ray_cluster, people, tmp_path):
    """docs/batch.md: "the collection is created with --pack when missing". On a first install (no
    database yet) `batch enrol` was not_found "no gallery database"; it makes both, as `gallery
    enrol` does. A search of a database that does not exist stays not_found (a search of nothing)."""
    root = tmp_path / "staff_photos"
    for person in people[:2]:
        (root / person.name).mkdir(parents=True)
        for photo in sorted(person.glob("*.jpg"))[:2]:
            shutil.copy(photo, root / person.name / photo.name)
    database = tmp_path / "fresh" / "faceatlas.db"  # its folder does not exist either
    options = ["--workers", "1", "--pack", PACK, "--batch-size", "4", "--db", f"sqlite:///{database}", "--json"]
    missing = CliRunner().invoke(app, ["batch", "search", str(root), "staff", "--out", str(tmp_path / "hits"),
                                       *options])
    assert missing.exit_code == 2 and "no gallery database at" in missing.output, missing.output
    assert not database.exists()
    enrolled = CliRunner().invoke(app, ["batch", "enrol", str(root), "staff", *options])
    assert enrolled.exit_code == 0, enrolled.output
    assert json.loads(enrolled.stdout)["details"]["enrolled"] == 4
    with Gallery.open(f"sqlite:///{database}", create=False) as gallery:
        staff = gallery.get_collection("staff")
        assert (staff.pack_name, staff.subjects, staff.faces) == (PACK, 2, 4)


def test_dedupe_finds_a_resized_reencoded_copy(ray_cluster, people, tmp_path):
    source = tmp_path / "photos"
    source.mkdir()
    photos = [p for person in people for p in sorted(person.glob("*.jpg"))[:3]]
    for photo in photos:
        shutil.copy(photo, source / photo.name)
    copy = source / "copy_of_first.jpg"
    Image.open(photos[4]).resize((180, 180)).save(copy, quality=60)

    report = dedupe(str(source), str(tmp_path / "dedupe"), _options())

    with open(tmp_path / "dedupe" / "duplicates.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["image_id"]).name for r in rows) == sorted([photos[4].name, copy.name])
    assert report.details["groups"] == 1 and report.details["duplicate_images"] == 1


def test_duplicate_groups_are_transitive_within_the_distance():
    base = 0xF0F0_1234_5678_9ABC
    hashes = np.asarray([base, base ^ 0b111, base ^ 0b111_0000_0000, ~base & (2**64 - 1)], np.uint64)
    labels, distance = duplicate_groups(hashes, max_distance=4)
    assert labels[0] == labels[1] == labels[2] != labels[3]  # 0-1: 3 bits, 1-2: 6 bits but 0-2: 3 bits
    assert distance.tolist()[:3] == [0, 3, 3]


def test_phash_of_a_copy_is_close_and_of_another_photo_far(people):
    a, b = sorted(people[0].glob("*.jpg"))[:2]
    image = np.asarray(Image.open(a))[:, :, ::-1].copy()
    small = np.asarray(Image.open(a).resize((125, 125)))[:, :, ::-1].copy()
    other = np.asarray(Image.open(b))[:, :, ::-1].copy()
    assert (phash(image) ^ phash(small)).bit_count() <= 4
    assert (phash(image) ^ phash(other)).bit_count() > 10


def test_an_output_folder_no_job_wrote_is_refused_and_left_alone(tmp_path):
    """`batch embed --out FOLDER` on a user's folder deleted its `part-mydata.parquet` as an orphan part
    of a killed run: a folder holding files but no job's manifest is refused before anything runs."""
    from faceatlas.batch.output import prepare
    from faceatlas.errors import InvalidArgument

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "part-mydata.parquet").write_bytes(b"the user's own data")
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidArgument, match="holds files no batch job wrote"):
        prepare(str(precious))
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt", "part-mydata.parquet"]
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InvalidArgument, match="is a file"):
        prepare(str(tmp_path / "a-file"))
    assert prepare(str(tmp_path / "new")) == set() and prepare(str(tmp_path / "new")) == set()  # new, then resumed
    (tmp_path / "new" / "part-mine.parquet").write_bytes(b"not a part of ours")  # in a job's folder: kept
    prepare(str(tmp_path / "new"))
    assert (tmp_path / "new" / "part-mine.parquet").exists()


def test_gallery_enrol_and_batch_enrol_skip_the_photos_the_other_enrolled(ray_cluster, people, tmp_path,
                                                                          fast_analyzer):
    """`gallery enrol` recorded a photo as `/abs/path.jpg`, `batch enrol` as `/abs/path.jpg#0`: each
    enrolled again every photo the other had enrolled."""
    root = tmp_path / "people"
    for person in people[:2]:
        (root / person.name).mkdir(parents=True)
        for photo in sorted(person.glob("*.jpg"))[:2]:
            shutil.copy(photo, root / person.name / photo.name)
    first, second = (sorted(str(p.resolve()) for p in (root / person.name).glob("*.jpg")) for person in people[:2])
    with Gallery.open(f"sqlite:///{tmp_path / 'g.db'}") as gallery:
        gallery.create_collection("staff", PACK)
        assert len(gallery.enrol_images("staff", people[0].name, first, fast_analyzer, once=True).added) == 2

        report = enrol(str(root), "staff", gallery, _options())  # the first person's photos: enrolled before
        assert report.details["enrolled"] == 2 and report.details["already_enrolled"] == 2
        again = gallery.enrol_images("staff", people[1].name, second, fast_analyzer, once=True)
        assert again.skipped == second and not again.added  # the batch's photos: enrolled before
        assert gallery.get_collection("staff").faces == 4


def test_a_photo_an_earlier_batch_enrol_recorded_with_its_face_number_is_skipped(people, tmp_path, fast_analyzer):
    """Faces that `batch enrol` enrolled before recorded `<path>#<face>`: both doors still skip that photo."""
    from faceatlas.batch.gallery_jobs import _enrolled_sources

    photo = str(sorted(people[0].glob("*.jpg"))[0])
    with Gallery.open(f"sqlite:///{tmp_path / 'g.db'}") as gallery:
        gallery.create_collection("staff", PACK)
        face = fast_analyzer.analyze(fast_analyzer.load_reduced(photo)[0], max_faces=1)[0]
        gallery.add_embeddings("staff", "ann", [face.as_embedding().vector],
                               recognizer_id=fast_analyzer.pack.recognizer_id, sources=[f"{photo}#0"])
        assert gallery.enrol_images("staff", "ann", [photo], fast_analyzer, once=True).skipped == [photo]
        from faceatlas.gallery import photo_source

        assert ("ann", photo_source(photo)) in _enrolled_sources(gallery, "staff")


def test_a_file_name_with_a_line_break_is_read_like_any_other(ray_cluster, people, tmp_path):
    """`bad\\nname.jpg` was read by Ray's reader as `badname.jpg` (it parsed paths as URLs) and
    dropped without a word, then refused by name; the actors read the files themselves now."""
    source = tmp_path / "nl"
    source.mkdir()
    good, bad = sorted(people[0].glob("*.jpg"))[:2]
    shutil.copy(good, source / "good.jpg")
    shutil.copy(bad, source / "bad\nname.jpg")
    odd = str(source / "bad\nname.jpg")

    report = embed(str(source), str(tmp_path / "out"), _options())
    assert (report.images, report.processed, report.errors) == (2, 2, 0)
    assert odd in face_table(str(tmp_path / "out")).column("image_id").to_pylist()
    rerun = embed(str(source), str(tmp_path / "out"), _options())
    assert (rerun.skipped, rerun.processed, rerun.errors) == (2, 0, 0)


def test_read_files_fails_each_unreadable_file_alone(tmp_path):
    """A file whose read raises (an I/O error, gone since the listing) failed Ray's read task, and
    with it the whole job: each is now its own failed image, the others are read."""
    import pyarrow.fs as pafs

    from faceatlas.batch.worker import read_files

    (tmp_path / "good.jpg").write_bytes(b"bytes")
    (tmp_path / "eio.jpg").symlink_to("/proc/self/mem")  # reading offset 0 of one's own memory: EIO
    paths = [str(tmp_path / name) for name in ("good.jpg", "eio.jpg", "gone.jpg")]
    data, failed = read_files(pafs.LocalFileSystem(), paths)
    assert data == [b"bytes", b"", b""]
    assert failed == {paths[1]: ("error", "cannot read the file: input/output error"),
                      paths[2]: ("not_found", "not read: the file was not there when the job read it")}


def test_an_unreadable_file_a_pipe_and_a_folder_row_are_failed_images_and_the_job_goes_on(
        ray_cluster, people, tmp_path):
    """An I/O error on one file (`ln -s /proc/1/mem x.jpg`) or a pipe named .jpg ended the whole job
    (exit 2, a 183-line traceback, no _errors.csv); a manifest row naming a folder was expanded by
    Ray's reader (every image in it embedded, outside the source) and logged as not_found."""
    import os

    photos = [sorted(person.glob("*.jpg"))[0] for person in people[:2]]
    source = tmp_path / "in"
    source.mkdir()
    for photo in photos:
        shutil.copy(photo, source / photo.name)
    (source / "eio.jpg").symlink_to("/proc/self/mem")  # reading offset 0 of one's own memory: EIO
    os.mkfifo(source / "pipe.jpg")
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(sorted(people[2].glob("*.jpg"))[0], folder / "inside.jpg")
    manifest = tmp_path / "list.csv"
    manifest.write_text("path\n" + "".join(f"{source / p.name}\n" for p in photos)
                        + f"{source / 'eio.jpg'}\n{source / 'pipe.jpg'}\n{folder}\n")
    out = tmp_path / "out"

    report = embed(str(manifest), str(out), _options())

    assert (report.images, report.processed, report.errors) == (5, 5, 3)
    with open(out / "_errors.csv") as f:
        errors = {Path(row["image_id"]).name: (row["error"], row["message"]) for row in csv.DictReader(f)}
    assert errors == {"eio.jpg": ("error", "cannot read the file: input/output error"),
                      "pipe.jpg": ("bad_request", "not a regular file (a pipe, socket or device)"),
                      "folder": ("bad_request", "a folder, not an image file")}
    from faceatlas.batch import image_table

    assert sorted(image_table(str(out)).column("image_id").to_pylist()) == sorted(
        [*(str(source / p.name) for p in photos), str(source / "eio.jpg"), str(source / "pipe.jpg"), str(folder)])
    assert {Path(i).name for i in face_table(str(out)).column("image_id").to_pylist()} == {p.name for p in photos}


def test_a_failure_in_a_ray_worker_is_one_line_with_its_cause(ray_cluster, people, tmp_path):
    """A worker that could not write its part (a full disk on --out) ended the job with a
    440-line traceback (exit 1): it is the project's error, one line naming the cause."""
    from faceatlas.errors import FaceAtlasError

    source = tmp_path / "in"
    source.mkdir()
    for photo in sorted(people[0].glob("*.jpg"))[:2]:
        shutil.copy(photo, source / photo.name)
    out = tmp_path / "out"

    def break_the_output(done: int, total: int) -> None:  # called once before Ray runs: the parts cannot go in
        if (out / "_images").is_dir():
            shutil.rmtree(out / "_images")
            (out / "_images").write_text("not a folder")

    with pytest.raises(FaceAtlasError) as raised:
        embed(str(source), str(out), _options(), break_the_output)
    message = str(raised.value)
    assert type(raised.value) is FaceAtlasError and not isinstance(raised.value, OSError)
    assert "\n" not in message and "ray::" not in message and len(message) < 700, message
    assert message.startswith("the job failed in Ray: FileExistsError: [Errno 17] Cannot create directory"), message
    assert f"{out}/_images" in message


@pytest.mark.slow  # 25 s of Ray: CI runs tests/batch's slow set
def test_the_summary_counts_this_run_then_the_job_and_names_the_list_of_failures(ray_cluster, people, tmp_path,
                                                                                capfd):
    """After a run with failures, a later run into the same output printed the whole output's
    faces and failures as its own; a run with nothing left said "on 0 workers"; the summary did
    not say where the failed images are listed. Its img/s left Ray's start out, the progress bar's
    did not (5.8 against 2.4 img/s): it gives both, named. Every job printed Ray's C++ error line
    `core_worker.cc:2465: Actor ... has constructor arguments in the object store and max_restarts > 0`."""
    source = tmp_path / "in"
    source.mkdir()
    first_photo, second_photo = sorted(people[0].glob("*.jpg"))[:2]
    shutil.copy(first_photo, source / first_photo.name)
    (source / "notes.jpg").write_text("not an image at all")
    out = tmp_path / "out"
    command = ["batch", "embed", str(source), "--out", str(out), "--workers", "1", "--pack", PACK, "--batch-size", "4"]

    first = CliRunner().invoke(app, command)
    text = " ".join(first.stdout.split())
    assert first.exit_code == 1, first.output
    assert re.search(r"^2 images: 2 processed now \([0-9.]+ img/s, [0-9.]+ after Ray's start, on 1 worker\): "
                     rf"[1-9] faces?, 1 failed; the failed images are listed in {re.escape(str(out))}/_errors.csv",
                     text), text
    said = capfd.readouterr().err  # what Ray's own processes and C++ code wrote to this process's stderr
    assert "core_worker.cc" not in said and "constructor arguments in the object store" not in said, said[-2000:]
    faces = int(re.search(r"now \(.*?\): (\d+) faces", text).group(1))  # type: ignore[union-attr]

    shutil.copy(second_photo, source / second_photo.name)
    second = CliRunner().invoke(app, [*command, "--json"])
    report = json.loads(second.stdout)
    assert (report["processed"], report["skipped"], report["run_errors"], report["errors"]) == (1, 2, 0, 1)
    assert report["total_seconds"] >= report["seconds"] > 0  # the whole run, and the run once Ray was up
    assert report["overall_images_per_second"] == round(1 / report["total_seconds"], 2)
    assert report["run_faces"] >= 1 and report["faces"] == faces + report["run_faces"]
    assert second.exit_code == 1  # the job's status: one of SOURCE's images failed (in the first run)

    third = CliRunner().invoke(app, command)
    text = " ".join(third.stdout.split())
    assert text.startswith(f"3 images: nothing left to do; 3 done before (all runs: {report['faces']} faces, "
                           "1 failed); the failed images are listed in"), text
    assert "worker" not in text
