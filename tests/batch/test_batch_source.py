"""What a batch job reads (no Ray): folders, globs, manifests; and the door's typed errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceatlas.batch import resolve_source
from faceatlas.cli.main import app
from faceatlas.errors import FileMissing, InvalidArgument, NotFound
from faceatlas.gallery import Gallery


@pytest.fixture()
def folders(shared: Path, tmp_path: Path) -> Path:
    root = tmp_path / "people"
    for person in sorted((shared / "data" / "lfw" / "images").glob("Ab*"))[:2]:
        (root / person.name).mkdir(parents=True)
        for photo in sorted(person.glob("*.jpg"))[:2]:
            shutil.copy(photo, root / person.name / photo.name)
    (root / "readme.txt").write_text("not listed: not an image suffix")
    return root


def test_folder_glob_and_manifest_name_the_same_files_and_subjects(folders: Path, tmp_path: Path):
    from_folder = resolve_source(str(folders))
    files = sorted(str(p.resolve()) for p in folders.glob("*/*.jpg"))
    assert from_folder.paths == files
    assert from_folder.subjects == {f: Path(f).parent.name for f in files}
    assert resolve_source(str(folders / "*" / "*.jpg")).paths == files
    assert resolve_source(f"file://{folders}").paths == files

    manifest = folders / "manifest.csv"
    lines = ["path,subject"] + [f"{Path(f).relative_to(folders)},{Path(f).stem}" for f in files[:3]]
    manifest.write_text("\n".join(lines) + "\n")
    from_manifest = resolve_source(str(manifest))
    assert from_manifest.paths == files[:3]
    assert from_manifest.subjects == {f: Path(f).stem for f in files[:3]}


def test_missing_or_empty_sources_are_typed_errors(tmp_path: Path):
    with pytest.raises(FileMissing, match="nothing-here: no such file or folder"):
        resolve_source(str(tmp_path / "nothing-here"))
    (tmp_path / "bad.csv").write_text("file,who\nx.jpg,a\n")
    with pytest.raises(InvalidArgument, match="'path' column"):
        resolve_source(str(tmp_path / "bad.csv"))
    result = CliRunner().invoke(app, ["batch", "embed", str(tmp_path / "empty*"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "validation_error" in result.output


def test_a_link_back_up_the_tree_is_listed_once_and_a_name_not_utf8_is_named(folders: Path, tmp_path: Path):
    """pyarrow's listing followed `up -> ..` round and round (3.5 minutes of CPU until killed); a
    file name that is not UTF-8 was a UnicodeDecodeError traceback."""
    import os
    import threading

    (folders / "up").symlink_to("..", target_is_directory=True)
    listed: list[list[str]] = []
    worker = threading.Thread(target=lambda: listed.append(resolve_source(str(folders)).paths), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive() and listed, "the listing did not end"
    assert listed[0] == sorted(str(p.resolve()) for p in folders.glob("A*/*.jpg"))
    os.unlink(folders / "up")
    odd = os.fsencode(str(folders)) + b"/caf\xe9.jpg"
    with open(odd, "wb") as handle:
        handle.write(b"x")
    with pytest.raises(InvalidArgument, match="caf.\\.jpg: a file name that is not UTF-8"):
        resolve_source(str(folders))


def test_more_local_workers_than_the_machine_can_hold_are_refused_before_ray_starts(folders: Path, tmp_path: Path):
    """`--workers 100000` on 2 cores started 60 Ray workers that never finished and outlived the job."""
    import os

    too_many = str(4 * (os.cpu_count() or 1) + 1)
    for command in ("embed", "dedupe"):
        result = CliRunner().invoke(app, ["batch", command, str(folders), "--out", str(tmp_path / command),
                                          "--workers", too_many])
        assert result.exit_code == 2 and "workers on this machine" in result.output, result.output
        assert "images" not in result.output and not (tmp_path / command).exists()


def test_a_glob_lists_each_file_once_and_does_not_follow_links_to_folders(folders: Path, tmp_path: Path):
    """`'gsrc/**/*.jpg'` with `a/loop -> ..` listed every photo 41 times (two such links never
    ended); a link to a sibling folder listed its photos twice; a link out of the tree was followed."""
    import threading

    first = sorted(folders.iterdir())[0]
    (first / "loop").symlink_to("..", target_is_directory=True)
    (folders / "again").symlink_to(first.name, target_is_directory=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(next(first.glob("*.jpg")), outside / "elsewhere.jpg")
    (first / "out").symlink_to(outside, target_is_directory=True)
    files = sorted(str(p.resolve()) for p in folders.glob("A*/*.jpg"))
    listed: list[list[str]] = []
    worker = threading.Thread(target=lambda: listed.extend(resolve_source(str(folders / pattern)).paths
                                                           for pattern in ("**/*.jpg", "*/*.jpg", "**")),
                              daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive() and len(listed) == 3, "the listing did not end"
    assert listed == [files, files, sorted([*files, str(folders / "readme.txt")])]
    assert resolve_source(str(folders / "again" / "*.jpg")).paths == sorted(  # a link named in the fixed part is
        str(folders / "again" / p.name) for p in first.glob("*.jpg"))  # the user's choice: followed, named so
    assert resolve_source(str(folders / "**" / "*.jpg")).paths == resolve_source(str(folders)).paths


def test_a_folder_or_file_named_with_glob_characters_is_that_folder_or_file(folders: Path, tmp_path: Path):
    """`batch embed "party [2024]"` read the name as a glob (`[2024]` one character of 2, 0, 4) and
    found no images."""
    party = tmp_path / "party [2024]"
    shutil.copytree(folders, party)
    files = sorted(str(p) for p in party.glob("*/*.jpg"))
    source = resolve_source(str(party))
    assert source.paths == files and source.subjects == {f: Path(f).parent.name for f in files}
    odd = party / "who? *me*.jpg"
    shutil.copy(files[0], odd)
    assert resolve_source(str(odd)).paths == [str(odd)]
    assert resolve_source(str(tmp_path / "party*" / "*" / "*.jpg")).paths == files  # still a glob


def test_a_manifest_row_with_an_extra_field_or_a_second_subject_is_refused_by_its_line(folders: Path):
    """The same path with two subjects took the last one silently; `imgs/a, b.jpg,Adam` (a comma
    not quoted) became path `imgs/a`, subject `b.jpg`, and `Adam` was dropped."""
    files = sorted(folders.glob("*/*.jpg"))
    first, second = (str(f.relative_to(folders)) for f in files[:2])
    manifest = folders / "manifest.csv"
    manifest.write_text(f"path,subject\n{first},Adam\n{second},Bea\n./{first},Cleo\n")
    with pytest.raises(InvalidArgument, match=r"line 4 gives \./.* the subject 'Cleo', an earlier line 'Adam'"):
        resolve_source(str(manifest))
    manifest.write_text(f"path,subject\n{first},Adam\n{first},Adam\n{second}\n")  # the same twice: one photo
    assert resolve_source(str(manifest)).subjects == {str(files[0]): "Adam"}
    manifest.write_text(f"path,subject\n{first},Adam\nx/../{first},Adam\n{files[0]},Adam\n")  # written 3 ways
    assert resolve_source(str(manifest)).paths == [str(files[0])]  # was listed (and counted) twice
    odd = files[0].with_name("a, b.jpg")
    shutil.copy(files[0], odd)
    manifest.write_text(f"path,subject\n{second},Bea\n{odd.relative_to(folders)},Adam\n")
    with pytest.raises(InvalidArgument, match="line 3 has 3 fields for 2 columns; quote"):
        resolve_source(str(manifest))
    manifest.write_text(f'path,subject\n{second},Bea\n"{odd.relative_to(folders)}",Adam\n')
    assert resolve_source(str(manifest)).subjects == {str(files[1]): "Bea", str(odd): "Adam"}


def test_a_manifest_naming_a_column_twice_is_refused_naming_it(folders: Path, tmp_path: Path):
    """A header `path,subject,path` read the last `path` column, silently: refused in one line
    naming the column, before any job starts."""
    first, second = (str(f.relative_to(folders)) for f in sorted(folders.glob("*/*.jpg"))[:2])
    manifest = folders / "manifest.csv"
    manifest.write_text(f"path,subject,path\n{first},Adam,{second}\n")
    with pytest.raises(InvalidArgument, match="names the column 'path' 2 times"):
        resolve_source(str(manifest))
    manifest.write_text(f"path,subject,subject\n{first},Adam,Bea\n")
    with pytest.raises(InvalidArgument, match="names the column 'subject' 2 times"):
        resolve_source(str(manifest))
    result = CliRunner().invoke(app, ["batch", "embed", str(manifest), "--out", str(tmp_path / "o"), "--workers", "1"])
    said = result.output.strip()
    assert result.exit_code == 2 and "error (validation_error)" in said and "'subject' 2 times" in said, said
    assert len(said.splitlines()) <= 2 and not (tmp_path / "o").exists(), said  # one line (wrapped at most)
    manifest.write_text(f"path,subject,note,note\n{first},Adam,a,b\n")  # a column the manifest does not read
    assert resolve_source(str(manifest)).subjects == {str(folders / first): "Adam"}


def test_a_manifest_that_is_not_csv_is_refused_by_the_line_where_its_record_begins(folders: Path):
    """An unterminated quote on line 2 was reported on line 1 (the last good record's line); a path
    with a NUL character (csv takes it) was an ArrowInvalid traceback."""
    first, second = (str(f.relative_to(folders)) for f in sorted(folders.glob("*/*.jpg"))[:2])
    manifest = folders / "manifest.csv"
    for text, line in (('path,subject\n"a.jpg\n', 2),
                       (f'path,subject\n{first},Adam\n\n"{second},Bea\n{first},Adam\n', 4)):  # to the end
        manifest.write_text(text)
        with pytest.raises(InvalidArgument, match=rf"not a valid CSV manifest \(line {line}: unexpected end of data\)"):
            resolve_source(str(manifest))
    manifest.write_text(f"path\n{first}\n\n{second}\x00.jpg\n")
    with pytest.raises(InvalidArgument, match="line 4 names a path with a NUL character"):
        resolve_source(str(manifest))


def test_a_manifest_of_folders_only_is_refused_as_folders_not_as_missing_files(folders: Path, tmp_path: Path):
    """A manifest whose one row names a folder that is there (`../bsrc/Ann`) was refused with "none
    of the 1 files it lists exists (e.g. .../bsrc/Ann)"; beside a file, such a row is a failed
    image (bad_request, "a folder, not an image file"), as docs/batch.md says."""
    person = sorted(p for p in folders.iterdir() if p.is_dir())[0]
    manifest = tmp_path / "m" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"path\n../{folders.name}/{person.name}\n")
    result = CliRunner().invoke(app, ["batch", "embed", str(manifest), "--out", str(tmp_path / "o"), "--workers", "1"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "error (validation_error)" in said, said
    assert "exists" not in said and f"{person} is a folder, not an image file" in said, said
    assert "none of the 1 paths it lists is an image file (1 folder)" in said, said
    assert not (tmp_path / "o").exists()

    manifest.write_text(f"path\n../{folders.name}/{person.name}\ngone.jpg\n../{folders.name}\n")
    with pytest.raises(InvalidArgument, match=r"\(2 folders, 1 missing\): .* is a folder, not an image file"):
        resolve_source(str(manifest))
    manifest.write_text("path\ngone.jpg\n")
    with pytest.raises(InvalidArgument, match="none of the 1 files it lists exists"):
        resolve_source(str(manifest))
    photo = sorted(person.glob("*.jpg"))[0]
    manifest.write_text(f"path\n../{folders.name}/{person.name}\n{photo}\n")  # a file beside: the job's to fail
    assert resolve_source(str(manifest)).paths == sorted([str(person), str(photo)])


def test_a_face_that_is_nobody_has_null_matches_as_docs_batch_md_says(folders: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch, fast_analyzer):
    """docs/batch.md said a face that is nobody has "an empty subject" in matches.parquet: it is null,
    as its rank, name, similarity and far level. The faces are embedded here, not on Ray."""
    import pyarrow.parquet as pq

    import faceatlas.batch.gallery_jobs as jobs
    from faceatlas.batch import BatchOptions, BatchReport, analyze_batch, search
    from faceatlas.batch.output import out_filesystem, prepare, write_part
    from faceatlas.engine import Cut
    from faceatlas.settings import EngineSettings

    def embed_here(src, out, options, on_progress=None, *, faces=True, kind=None):
        prepare(out, kind, src.key)
        table, images = analyze_batch(src.paths, [Path(p).read_bytes() for p in src.paths], fast_analyzer,
                                      EngineSettings())
        write_part(*out_filesystem(out), table, images)
        return BatchReport(out=out, images=len(src.paths), processed=len(src.paths))

    monkeypatch.setattr(jobs, "embed_source", embed_here)
    ann, bea = (sorted(person.glob("*.jpg")) for person in sorted(p for p in folders.iterdir() if p.is_dir()))
    with Gallery.open(f"sqlite:///{tmp_path / 'g.db'}") as gallery:
        gallery.create_collection("staff", "scrfd-mbf")
        gallery.enrol_images("staff", "ann", [str(ann[0])], fast_analyzer, once=True)
        search(str(folders), "staff", gallery, str(tmp_path / "hits"), BatchOptions(workers=1), cut=Cut(threshold=0.99))
    matches = pq.read_table(tmp_path / "hits" / "matches.parquet").to_pylist()
    rows = {(Path(r["image_id"]).name, r["face"]): r for r in matches}
    assert rows[(ann[0].name, 0)]["subject"] == "ann" and rows[(ann[0].name, 0)]["rank"] == 1  # the photo enrolled
    nobody = rows[(bea[0].name, 0)]
    assert {key: nobody[key] for key in ("rank", "subject", "name", "similarity", "far_level")} == dict.fromkeys(
        ("rank", "subject", "name", "similarity", "far_level"))
    doc = " ".join((Path(__file__).resolve().parents[2] / "docs" / "batch.md").read_text().split())
    said = doc[doc.index("**search** runs"):doc.index("**dedupe**")]
    assert "empty subject" not in said and "`rank`, `subject`, `name`, `similarity` and `far_level` are null" in said


def test_batch_enrol_refuses_a_bad_subject_id_before_anyone_is_enrolled(folders: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    """A folder 'Ann Lee' among person folders stopped `batch enrol` after every image was embedded
    and the subjects before it were enrolled (`gallery enrol` refuses it first)."""
    import faceatlas.batch.gallery_jobs as jobs

    def no_ray(*args, **kwargs):
        raise AssertionError("the images were embedded")

    monkeypatch.setattr(jobs, "embed_source", no_ray)
    shutil.copytree(sorted(folders.iterdir())[0], folders / "Ann Lee")
    shutil.copytree(sorted(folders.iterdir())[0], folders / "Zed")
    db = f"sqlite:///{tmp_path / 'g.db'}"
    Gallery.open(db).close()
    result = CliRunner().invoke(app, ["batch", "enrol", str(folders), "people", "--db", db, "--workers", "1"])
    assert result.exit_code == 2 and "validation_error" in result.output and "'Ann Lee'" in result.output
    assert "Ann Lee/" in result.output.replace("\n", "")  # which file it is the subject of
    with Gallery.open(db) as gallery, pytest.raises(NotFound):
        gallery.get_collection("people")  # nothing made, nobody enrolled (and Ray never started)


def test_a_refused_batch_enrol_or_search_makes_no_database(folders: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    """`batch enrol SRC coll1 --min-quality 5 --db sqlite:///nodir/sub/bx.db` was validation_error,
    yet bx.db was made with its tables (and nodir/sub): the CLI opened the gallery before the job
    checked what it was given. `batch search --k 0` on a database that is not there said not_found."""
    import faceatlas.batch.gallery_jobs as jobs

    def no_ray(*args, **kwargs):
        raise AssertionError("the images were embedded")

    monkeypatch.setattr(jobs, "embed_source", no_ray)
    manifest = tmp_path / "m.csv"
    photo = sorted(folders.glob("*/*.jpg"))[0]
    manifest.write_text(f"path,subject\n{photo},Ann Lee\n")
    db = f"sqlite:///{tmp_path / 'nodir' / 'sub' / 'bx.db'}"
    for args, said in (([str(folders), "coll1", "--min-quality", "5"], "validation_error): min_quality"),
                       ([str(tmp_path / "gone"), "coll1"], "file_not_found): " + str(tmp_path / "gone")),
                       ([str(folders), "bad name!"], "validation_error): a collection name"),
                       ([str(manifest), "coll1"], "validation_error): a subject id"),
                       ([str(folders), "coll1", "--pack", "no-such-pack"], "unknown_pack)")):
        result = CliRunner().invoke(app, ["batch", "enrol", *args, "--db", db, "--workers", "1"])
        assert result.exit_code == 2 and f"error ({said}" in result.output, (args, result.output)
        assert not (tmp_path / "nodir").exists(), args
    for args, said in (([str(folders), "coll1", "--k", "0"], "validation_error): k is"),
                       ([str(tmp_path / "gone"), "coll1"], "file_not_found): " + str(tmp_path / "gone")),
                       ([str(folders), "bad name!"], "validation_error): a collection name"),
                       ([str(folders), "coll1", "--pack", "no-such-pack"], "unknown_pack)"),
                       ([str(folders), "coll1"], "not_found): no gallery database")):
        result = CliRunner().invoke(app, ["batch", "search", *args, "--out", str(tmp_path / "o"), "--db", db,
                                          "--workers", "1"])
        assert result.exit_code == 2 and f"error ({said}" in result.output, (args, result.output)
        assert not (tmp_path / "nodir").exists() and not (tmp_path / "o").exists(), args


def test_a_second_job_on_an_output_another_job_holds_is_refused_and_touches_nothing(folders: Path, tmp_path: Path):
    """Two `batch embed` on one --out at once both exited 0 with every face twice (444 manifest
    rows for 222 images), and a job starting while another ran tidied the other's temporary
    parts away (a FileNotFoundError traceback in the running one)."""
    import subprocess
    import sys

    from faceatlas.batch.output import prepare
    from faceatlas.errors import Conflict

    out = tmp_path / "out"
    prepare(str(out))
    running = out / f".part-{'a' * 32}.parquet.{'b' * 8}.tmp"  # the running job's part being written
    running.write_bytes(b"half a part")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(120)",
                               str(out / "_lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(Conflict, match="in use: another batch job holds it"):
            prepare(str(out))
        result = CliRunner().invoke(app, ["batch", "embed", str(folders), "--out", str(out), "--workers", "1"])
        assert result.exit_code == 2 and "error (conflict)" in result.output, result.output
        assert "in use: another batch job holds it" in result.output.replace("\n", "")
        assert running.exists()
    finally:
        holder.kill()
        holder.wait()
    assert prepare(str(out)) == set() and not running.exists()  # the holder gone: a killed run's leftovers go


def test_a_ray_address_nobody_answers_fails_in_one_line(folders: Path, tmp_path: Path):
    """`--ray-address 127.0.0.1:1` hung for good (ray.init retried forever, deaf to Ctrl-C and SIGTERM)."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", "batch", "embed", str(folders), "--out",
                              str(tmp_path / "out"), "--workers", "1", "--ray-address", "127.0.0.1:1"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=90)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    lines = [line for line in stderr.splitlines() if line.startswith("error")]
    assert child.returncode == 2 and len(lines) == 1, stderr[-2000:]
    assert lines[0].startswith("error (cluster_unavailable): cannot reach the Ray cluster at 127.0.0.1:1: "
                               "connection refused"), lines
    assert not (tmp_path / "out").exists()  # nothing made: the output is not claimed for a job that never ran


def test_a_job_that_fails_before_it_writes_an_image_leaves_no_output_claimed(folders: Path, tmp_path: Path):
    """`batch embed people --out o3 --ray-address 127.0.0.1:1` failed (cluster_unavailable) but left
    o3 with _lock, _images/ and a _job.json saying embed: `batch dedupe people --out o3` was then
    refused ("o3 is the output of a batch embed job, not of batch dedupe") though nothing had run."""
    from faceatlas.batch import BatchReport
    from faceatlas.batch.jobs import _record_failed
    from faceatlas.batch.output import hold, prepare

    def tree(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"/" for p in folder.rglob("*")}

    new = tmp_path / "new" / "out"  # its parent is new too
    for job in (["embed", str(folders), "--out", str(new)], ["dedupe", str(folders), "--out", str(new)],
                ["enrol", str(folders), "staff", "--work", str(new), "--db", f"sqlite:///{tmp_path / 'g.db'}"]):
        result = CliRunner().invoke(app, ["batch", *job, "--workers", "1", "--ray-address", "127.0.0.1:1"])
        assert result.exit_code == 2 and "error (cluster_unavailable)" in result.output, result.output
        assert not (tmp_path / "new").exists(), job
    assert not (tmp_path / "g.db").exists()  # enrol: no database, no collection made either
    other = tmp_path / "other"  # an embed's output, there before: left as it was
    prepare(str(other), "embed", resolve_source(str(folders)).key)
    before = tree(other)
    result = CliRunner().invoke(app, ["batch", "dedupe", str(folders), "--out", str(other), "--workers", "1",
                                      "--ray-address", "127.0.0.1:1"])
    assert result.exit_code == 2 and "error (cluster_unavailable)" in result.output, result.output
    assert tree(other) == before

    # whatever else ends a job before it wrote an image (a cluster that answers, then refuses it)
    with pytest.raises(RuntimeError, match="refused"), hold(str(new)):
        prepare(str(new), "embed", "SOURCE")
        raise RuntimeError("ray.init: refused")
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeError, match="refused"), hold(str(other)):
        prepare(str(other), "embed", resolve_source(str(folders)).key)
        raise RuntimeError("ray.init: refused")
    assert tree(other) == before
    with pytest.raises(RuntimeError, match="failed"), hold(str(new)):  # a job that did write: kept, to resume
        prepare(str(new), "embed", "SOURCE")
        _record_failed([str(folders / "gone.jpg")], "not_found", "no such file", str(new), BatchReport(out=str(new)))
        raise RuntimeError("the job failed in Ray")
    assert (new / "_job.json").is_file() and len(list((new / "_images").iterdir())) == 1


def test_a_subject_is_the_first_folder_under_the_source_not_the_parent(folders: Path, tmp_path: Path):
    """`people/Adam_Sandler/2019/x.jpg` was enrolled as subject "2019": two people with a 2019/
    folder became one subject."""
    photos = sorted(folders.glob("*/*.jpg"))
    root = tmp_path / "nested"
    for person, photo in (("Adam", photos[0]), ("Bea", photos[1])):
        (root / person / "2019").mkdir(parents=True)
        shutil.copy(photo, root / person / "2019" / "x.jpg")
    shutil.copy(photos[0], root / "Adam" / "y.jpg")
    shutil.copy(photos[1], root / "top.jpg")  # right in SOURCE: nobody's
    expected = {str(root / "Adam" / "2019" / "x.jpg"): "Adam", str(root / "Bea" / "2019" / "x.jpg"): "Bea",
                str(root / "Adam" / "y.jpg"): "Adam"}
    assert resolve_source(str(root)).subjects == expected
    assert resolve_source(str(root / "**" / "*.jpg")).subjects == expected  # a glob: under its fixed part
    assert resolve_source(str(root / "*" / "2019" / "*.jpg")).subjects == {
        path: who for path, who in expected.items() if "2019" in path}
    assert resolve_source(str(root / "Adam")).subjects == {str(root / "Adam" / "2019" / "x.jpg"): "2019"}


def test_an_output_of_another_source_or_kind_of_job_is_refused_before_anything_runs(
        folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A second source into one output was counted with the first ("1 images ... 15 faces, 7 failed",
    exit 2) and search reported the first source's matches; `batch dedupe` wrote into an embed's
    output, and `batch embed` into a dedupe's took its hashes-only rows as done (no faces at all)."""
    from faceatlas.batch.output import prepare

    out = tmp_path / "out"
    prepare(str(out), "embed", resolve_source(str(folders)).key)  # what `batch embed FOLDERS --out OUT` records
    other = tmp_path / "other"
    shutil.copytree(folders, other)

    def refused(*args: str) -> str:
        result = CliRunner().invoke(app, ["batch", *args, "--workers", "1"])
        assert result.exit_code == 2 and "error (validation_error)" in result.output, result.output
        assert "processed" not in result.output  # no job ran
        assert "0/?" not in result.output and "━" not in result.output  # nor a bar of it: one line (README)
        return " ".join(result.output.split())

    assert f"holds the output of another source ({folders}), not of {other}" in refused(
        "embed", str(other), "--out", str(out))
    assert "is the output of a batch embed job, not of batch dedupe" in refused("dedupe", str(folders), "--out",
                                                                                str(out))
    prepare(str(tmp_path / "dd" / "images"), "dedupe", resolve_source(str(folders)).key)
    assert "is the output of a batch dedupe job, not of batch embed" in refused(
        "embed", str(folders), "--out", str(tmp_path / "dd" / "images"))
    monkeypatch.chdir(folders.parent)  # the same folder named from elsewhere is the same source
    assert prepare(str(out), "embed", resolve_source(folders.name).key) == set()


def test_an_empty_source_or_output_is_refused(folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`batch embed ''` walked the current folder (283 images) and `--out ''` wrote into it."""
    monkeypatch.chdir(folders)
    db = f"sqlite:///{tmp_path / 'g.db'}"
    for args, said in ((["embed", "", "--out", str(tmp_path / "out")], "SOURCE is empty"),
                       (["embed", " ", "--out", str(tmp_path / "out")], "SOURCE is empty"),
                       (["embed", str(folders), "--out", ""], "--out is empty"),
                       (["dedupe", str(folders), "--out", ""], "--out is empty"),
                       (["enrol", str(folders), "staff", "--work", "", "--db", db], "--work is empty")):
        result = CliRunner().invoke(app, ["batch", *args, "--workers", "1"])
        assert result.exit_code == 2 and f"error (validation_error): {said}" in result.output, (args, result.output)
    assert sorted(p.name for p in folders.iterdir()) == sorted([*(p.name for p in folders.glob("A*")), "readme.txt"])


def test_batch_enrol_leaves_no_temporary_embeddings_and_removes_those_a_killed_job_left(
        folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`batch enrol` without --work left /tmp/faceatlas-enrol-* (embeddings: biometric data) behind
    for good when it was killed; its own goes however it ends, a killed one's with the next job."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    import faceatlas.batch.gallery_jobs as jobs
    from faceatlas.batch import BatchOptions, enrol
    from faceatlas.errors import FaceAtlasError

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    old = time.time() - 3600
    killed, running, fresh = (temporary / f"faceatlas-enrol-{name}" for name in ("killed", "running", "fresh"))
    for folder in (killed, running, fresh):
        (folder / "_images").mkdir(parents=True)
        (folder / "part-0.parquet").write_bytes(b"embeddings")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(120)",
                               str(running / "_lock")], stdout=subprocess.PIPE, text=True)
    seen: list[str] = []

    def fails(source, folder, *args, **kwargs):
        seen.append(folder)
        raise FaceAtlasError("the job failed")

    monkeypatch.setattr(jobs, "embed_source", fails)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for folder in (killed, running):
            os.utime(folder, (old, old))
        from faceatlas.gallery import Gallery

        with Gallery.open(f"sqlite:///{tmp_path / 'g.db'}") as gallery, pytest.raises(FaceAtlasError, match="failed"):
            enrol(str(folders), "staff", gallery, BatchOptions(workers=1))
    finally:
        holder.kill()
        holder.wait()
    assert len(seen) == 1 and Path(seen[0]).parent == temporary and not Path(seen[0]).exists()
    assert sorted(p.name for p in temporary.iterdir()) == [fresh.name, running.name]


def test_every_source_names_an_image_by_the_path_it_was_reached_by(shared: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    """A glob resolved links (a folder and a manifest did not): `batch embed 'dd/*.jpg'`, dd holding
    links into the shared photos, recorded `/work/shared/...`, not `dd/...`; `batch search
    'cams/**/*.jpg'` matched 5 files and reported 4 images, `cams/door/X.jpg` and `cams/till/X.jpg`
    being links to one photo: which camera a hit came from was lost. Every form now names an image
    by its absolute path, no link resolved; a re-run skips what is done by those ids."""
    from faceatlas.batch import BatchOptions, BatchReport, embed_source
    from faceatlas.batch.jobs import _record_failed
    from faceatlas.batch.output import prepare

    photos = sorted((shared / "data" / "lfw" / "images").glob("Ab*/*.jpg"))[:2]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dd").mkdir()
    for photo in photos:
        (tmp_path / "dd" / photo.name).symlink_to(photo)
    for camera in ("door", "till"):
        (tmp_path / "cams" / camera).mkdir(parents=True)
        (tmp_path / "cams" / camera / "X.jpg").symlink_to(photos[0])
    (tmp_path / "link").symlink_to("dd", target_is_directory=True)
    named = sorted(str(tmp_path / "dd" / photo.name) for photo in photos)
    (tmp_path / "m.csv").write_text(f"path\ndd/{photos[0].name}\n{named[0]}\n./dd/../dd/{photos[1].name}\n")

    for given in ("dd/*.jpg", "dd", str(tmp_path / "dd"), "m.csv", "dd/../dd/*.jpg"):  # m.csv names one file twice
        assert resolve_source(given).paths == named, given
    assert resolve_source(f"dd/{photos[0].name}").paths == named[:1]
    cams = [str(tmp_path / "cams" / camera / "X.jpg") for camera in ("door", "till")]
    for given in ("cams/**/*.jpg", "cams/*/X.jpg", "cams"):
        source = resolve_source(given)
        assert source.paths == cams and source.subjects == dict(zip(cams, ["door", "till"])), given
    through = sorted(str(tmp_path / "link" / photo.name) for photo in photos)
    assert resolve_source("link/*.jpg").paths == resolve_source("link").paths == through
    assert resolve_source("link").key != resolve_source("dd").key  # their images' ids differ: two sources

    out = str(tmp_path / "out")  # a re-run skips the images done by their ids (no Ray: nothing left to do)
    source = resolve_source("cams/**/*.jpg")
    prepare(out, "dedupe", source.key)
    _record_failed(source.paths, "not_found", "done before", out, BatchReport(out=out))
    report = embed_source(resolve_source("cams/**/*.jpg"), out, BatchOptions(workers=1), faces=False)
    assert (report.images, report.skipped, report.processed) == (2, 2, 0)


def test_an_output_keeps_no_lock_file_once_its_job_ends_and_stays_one_job_at_a_time(folders: Path, tmp_path: Path,
                                                                                      monkeypatch: pytest.MonkeyPatch):
    """Finished outputs kept an empty `_lock` (faces.parquet/_lock, hits/_lock, dups/_lock,
    dups/images/_lock). A job removes it as it ends, done, failed or interrupted, while it still
    holds it; a killed job's `_lock` (nobody's) does not stop a resume; a second job is refused;
    and a job that locked a `_lock` removed meanwhile (opened before the end of the job that held
    it) takes the one there, so two jobs never hold one output."""
    import fcntl
    import os

    import faceatlas.batch.output as output
    from faceatlas.batch import BatchOptions, BatchReport, embed_source
    from faceatlas.batch.jobs import _record_failed
    from faceatlas.batch.output import hold, prepare
    from faceatlas.errors import Conflict

    def locks(folder: Path) -> list[str]:
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("_lock"))

    source = resolve_source(str(folders))
    faces = str(tmp_path / "faces.parquet")  # a job run to its end (its images done before: no Ray)
    prepare(faces, "dedupe", source.key)
    _record_failed(source.paths, "not_found", "done before", faces, BatchReport(out=faces))
    assert embed_source(source, faces, BatchOptions(workers=1), faces=False).skipped == len(source.paths)
    with hold(str(tmp_path / "dups"), dataset=False):  # as search and dedupe: OUT, then the dataset in it
        assert locks(tmp_path) == ["dups/_lock"]
        prepare(str(tmp_path / "dups" / "images"), "dedupe", source.key)
        with hold(str(tmp_path / "dups" / "images")):
            assert locks(tmp_path) == ["dups/_lock", "dups/images/_lock"]
            with hold(str(tmp_path / "dups" / "images")):  # the same process again: the same hold
                pass
            assert locks(tmp_path) == ["dups/_lock", "dups/images/_lock"]
    for ending in (RuntimeError("the job failed in Ray"), KeyboardInterrupt()):
        with pytest.raises(type(ending)), hold(str(tmp_path / "dups"), dataset=False):
            raise ending
    assert locks(tmp_path) == [] and (tmp_path / "faces.parquet" / "_job.json").is_file()

    (tmp_path / "dups" / "_lock").write_bytes(b"")  # a killed job's, locked by nobody: no stop to a resume
    assert prepare(str(tmp_path / "dups" / "images")) == set()
    with hold(str(tmp_path / "dups"), dataset=False):
        other = os.open(tmp_path / "dups" / "_lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    assert locks(tmp_path) == []

    opened = os.open  # a job that opened `_lock` just before the job that held it removed it, and ended
    ended: list[int] = []

    def open_then_ended(path, flags, mode=0o777, **kwargs):
        descriptor = opened(path, flags, mode, **kwargs)
        if str(path).endswith("_lock") and not ended:
            ended.append(descriptor)
            os.unlink(path)
        return descriptor

    monkeypatch.setattr(output.os, "open", open_then_ended)
    with hold(str(tmp_path / "dups"), dataset=False):
        monkeypatch.setattr(output.os, "open", opened)
        assert ended and (tmp_path / "dups" / "_lock").is_file()  # it holds the one there, not the removed one
        again = os.open(tmp_path / "dups" / "_lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(again)
        with pytest.raises(Conflict, match="in use"):
            output._lock(str(tmp_path / "dups" / "_lock"), "dups")
    assert locks(tmp_path) == []
