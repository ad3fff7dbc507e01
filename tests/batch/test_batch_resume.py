"""A batch job killed with SIGKILL half-way and restarted ends with the output of one
uninterrupted run: every image once, the same faces and embeddings."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from faceatlas.batch import analyze_batch, face_table, image_table
from faceatlas.engine import FaceAnalyzer
from faceatlas.settings import EngineSettings

REPO = Path(__file__).resolve().parents[2]
PACK = "scrfd-mbf"


def _command(source: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "faceatlas.cli", "batch", "embed", str(source), "--out", str(out), "--workers", "1",
            "--batch-size", "4", "--pack", PACK, "--json"]


@pytest.mark.slow
def test_killed_job_resumes_to_the_uninterrupted_output(shared, tmp_path):
    photos = sorted((shared / "data" / "lfw" / "images").glob("A*/*.jpg"))[:64]
    source = tmp_path / "photos"
    source.mkdir()
    for number, photo in enumerate(photos):
        (source / f"{number:03d}_{photo.name}").symlink_to(photo)
    out = tmp_path / "faces.parquet"
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    child = subprocess.Popen(_command(source, out), env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while len(list((out / "_images").glob("part-*.parquet"))) < 4 and time.monotonic() < deadline:
            assert child.poll() is None, "the job ended before it could be killed half-way"
            time.sleep(0.2)
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the driver and the Ray processes it started here
        child.wait()
    interrupted = image_table(str(out)).num_rows
    assert 0 < interrupted < len(photos)

    finished = subprocess.run(_command(source, out), env=env, cwd=tmp_path, capture_output=True, text=True,
                              start_new_session=True, timeout=900)
    assert finished.returncode == 0 and finished.stdout.strip(), (finished.stdout, finished.stderr[-3000:])
    assert finished.stdout.lstrip().startswith("{"), finished.stdout[:1000]
    report = json.loads(finished.stdout)
    assert report["skipped"] >= interrupted and report["skipped"] + report["processed"] == len(photos)

    images = image_table(str(out)).column("image_id").to_pylist()
    assert sorted(images) == sorted(str(p) for p in source.iterdir())  # every image once
    faces = face_table(str(out)).sort_by([("image_id", "ascending"), ("face", "ascending")])
    keys = list(zip(faces.column("image_id").to_pylist(), faces.column("face").to_pylist()))
    assert len(keys) == len(set(keys))

    settings = EngineSettings()
    paths = sorted(str(p) for p in source.iterdir())
    reference, _ = analyze_batch(paths, [Path(p).read_bytes() for p in paths], FaceAnalyzer(PACK, threads=1), settings)
    reference = reference.sort_by([("image_id", "ascending"), ("face", "ascending")])
    assert keys == list(zip(reference.column("image_id").to_pylist(), reference.column("face").to_pylist()))
    ours = np.asarray(faces.column("embedding").to_pylist(), np.float32)
    theirs = np.asarray(reference.column("embedding").to_pylist(), np.float32)
    assert np.min(np.sum(ours * theirs, axis=1)) > 0.999


@pytest.mark.slow
def test_sigterm_ends_a_job_as_ctrl_c_does_and_leaves_no_temporary_faces(shared, tmp_path):
    """SIGTERM during a job printed Ray's "*** SIGTERM received ... PC: @" stack dump and exited 15,
    not 130 as every command on SIGTERM, without the "interrupted after N of M" line; `batch enrol`
    without --work left its temporary folder of embeddings (biometric data) behind for good."""
    people = sorted(p for p in (shared / "data" / "lfw" / "images").glob("A*") if len(list(p.glob("*.jpg"))) >= 4)
    source = tmp_path / "people"
    for person in people[:6]:
        (source / person.name).mkdir(parents=True)
        for photo in sorted(person.glob("*.jpg"))[:4]:
            (source / person.name / photo.name).symlink_to(photo)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(temporary), "RAY_TMPDIR": "/tmp"}
    child = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", "batch", "enrol", str(source), "staff",
                              "--db", f"sqlite:///{tmp_path / 'g.db'}", "--workers", "1", "--batch-size", "2",
                              "--pack", PACK], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list(temporary.glob("faceatlas-enrol-*/_images/part-*.parquet")) and time.monotonic() < deadline:
            assert child.poll() is None, "the job ended before it could be stopped"
            time.sleep(0.1)
        child.send_signal(signal.SIGTERM)  # `kill PID`: the driver only, as a container's stop
        stdout, stderr = child.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # whatever of it is left (nothing, when it ended as it should)
        child.wait()
    assert child.returncode == 130, (child.returncode, stderr[-3000:])
    assert "SIGTERM received" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert re.search(r"interrupted after \d+ of 24 images: no face is enrolled yet; the same command again resumes",
                     stderr), stderr  # stopped while embedding: the faces are enrolled once all are embedded
    assert not list(temporary.glob("faceatlas-enrol-*"))


def _stopped_job(update_to: tuple[int, int], enrolled: int = 0):
    """A job that heard of ``update_to`` images, enrolled ``enrolled`` faces, then was stopped (Ctrl-C)."""

    def job(*given, on_enrolled=None, **_):
        given[-1](*update_to)  # the progress callback: the last positional argument of embed and enrol
        if enrolled:
            on_enrolled(enrolled)
        raise KeyboardInterrupt

    return job


def test_an_interrupted_enrol_says_how_many_faces_it_enrolled(tmp_path, monkeypatch):
    """`batch enrol` stopped while embedding said "the faces enrolled before the stop are kept" when
    none was: the faces are enrolled on the driver once every image is embedded. It says how many."""
    from typer.testing import CliRunner

    from faceatlas.cli import batch as batch_cli
    from faceatlas.cli.main import app

    command = ["batch", "enrol", str(tmp_path), "staff", "--db", f"sqlite:///{tmp_path / 'g.db'}", "--json"]
    for enrolled, work, said in (
            (0, [], "interrupted after 8 of 150 images: no face is enrolled yet; the same command again resumes "
                    "(embedding again: --work DIR keeps the faces embedded)"),
            (0, ["--work", str(tmp_path / "w")], "no face is enrolled yet; the same command again resumes ("),
            (5, [], "interrupted after 8 of 150 images: the 5 faces enrolled before the stop are kept; the same "
                    "command again enrols the rest")):
        monkeypatch.setattr(batch_cli, "enrol_job", _stopped_job((8, 150), enrolled))
        result = CliRunner().invoke(app, [*command, *work])
        output = " ".join(result.output.split())
        assert result.exit_code == 130 and said in output, output


def test_an_interrupted_embed_counts_the_images_written(tmp_path, monkeypatch):
    """`batch embed` stopped said "after 8 of 150 images" while its done-manifest held 16 (the workers
    write their parts before the driver hears of them): it counts what was written."""
    from typer.testing import CliRunner

    from faceatlas.batch.jobs import BatchReport, _record_failed
    from faceatlas.cli import batch as batch_cli
    from faceatlas.cli.main import app

    out = tmp_path / "out"
    photos = [f"/photos/{i}.jpg" for i in range(16)]
    _record_failed(photos, "not_found", "no such file", str(out), BatchReport(str(out)))  # a done-manifest of 16
    monkeypatch.setattr(batch_cli, "embed_job", _stopped_job((8, 150)))
    result = CliRunner().invoke(app, ["batch", "embed", str(tmp_path), "--out", str(out), "--json"])
    output = " ".join(result.output.split())
    assert result.exit_code == 130 and "interrupted after 16 of 150 images: the images done" in output, output
    said = json.loads(result.stdout)  # --json: stdout was empty, now one JSON object of that much
    assert said["interrupted"] is True and (said["done"], said["total"]) == (16, 150), said
    result = CliRunner().invoke(app, ["batch", "embed", str(tmp_path), "--out", str(tmp_path / "none"), "--json"])
    assert "interrupted after 8 of 150 images" in " ".join(result.output.split())  # nothing written: the bar's


def test_an_enrol_stopped_after_a_commit_counts_the_faces_committed(tmp_path, monkeypatch):
    """Ctrl-C in `batch enrol`'s gallery stage said "the 580 faces enrolled" where the gallery held
    581: a subject's faces were committed, and the stop landed before the count was told (in the
    index's update, or on the way back). The count told is what the gallery holds."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    from faceatlas.batch import BatchOptions, BatchReport, gallery_jobs
    from faceatlas.batch.output import FACE_SCHEMA, IMAGE_SCHEMA, out_filesystem, write_part
    from faceatlas.batch.source import Source
    from faceatlas.engine import get_pack
    from faceatlas.gallery import Gallery

    pack = get_pack(PACK)
    photos = {f"/people/{name}/{name}_0001.jpg": name for name in ("Ann", "Bob", "Cid")}
    vectors = np.random.default_rng(0).normal(size=(len(photos), pack.embedding_size)).astype(np.float32)
    count = len(photos)
    faces = pa.table({"image_id": list(photos), "face": [0] * count, "box": [[0.0, 0.0, 9.0, 9.0]] * count,
                      "det_score": [0.9] * count, "keypoints": [[0.0] * 10] * count, "quality": [0.8] * count,
                      "yaw": [0.0] * count, "pitch": [0.0] * count, "roll": [0.0] * count,
                      "embedding": vectors.tolist(), "recognizer_id": [pack.recognizer_id] * count,
                      "pack": [pack.name] * count}, schema=FACE_SCHEMA)
    images = pa.table({"image_id": list(photos), "faces": [1] * count, "width": [9] * count, "height": [9] * count,
                       "phash": [0] * count, "error": [""] * count, "message": [""] * count}, schema=IMAGE_SCHEMA)
    work = tmp_path / "work"

    def embedded(source, out, *_, **__):  # the faces of every image, as the Ray workers write them
        write_part(*out_filesystem(out), faces, images)
        return BatchReport(out=out, images=count, processed=count)

    monkeypatch.setattr(gallery_jobs, "embed_source", embedded)
    gallery = Gallery.open(f"sqlite:///{tmp_path / 'g.db'}")
    gallery.create_collection("staff", pack)
    add = gallery.add_embeddings
    calls = []

    def stopped_after_the_second_commit(*args, **kwargs):
        ids = add(*args, **kwargs)  # committed
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C after the commit, before the job told its count
        return ids

    monkeypatch.setattr(gallery, "add_embeddings", stopped_after_the_second_commit)
    told = []
    source = Source(pafs.LocalFileSystem(), sorted(photos), photos, "/people")
    with pytest.raises(KeyboardInterrupt):
        gallery_jobs._enrol(source, str(work), "staff", gallery, BatchOptions(workers=1, pack=PACK), None,
                            work=str(work), all_faces=False, min_quality=0.0, on_enrolled=told.append)
    held = gallery.get_collection("staff").faces
    assert held == 2 and told[-1] == held, (told, held)

