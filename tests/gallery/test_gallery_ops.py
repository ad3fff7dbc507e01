"""Gallery operations on real photos, on SQLite and PostgreSQL; the operations that search or
change vectors (search, delete, merge, move) on both vector backends, FAISS and Milvus Lite."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from faceatlas.engine import Calibration, Embedding, ModelMismatch, NotCalibrated, get_pack
from faceatlas.errors import FarNotCalibrated, InvalidArgument, InvalidInput, LowQuality, NoFace
from faceatlas.gallery import PAGE_MAX, AlreadyExists, Gallery, NotFound, Rejection, mismatch_message, rejection_error
from faceatlas.gallery.index import load_index
from faceatlas.gallery.models import FaceRecord, Subject

BOTH_BACKENDS = pytest.mark.parametrize("vector_backend", ["faiss", "milvus"], indirect=True)


def _rows(gallery: Gallery, model, *conditions) -> int:
    with gallery._sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*conditions))


@BOTH_BACKENDS
def test_obama_photo_finds_obama(enrolled: Gallery, test_dir: Path, fast_analyzer) -> None:
    [found], _ = enrolled.search_image("people", str(test_dir / "obama1.jpg"), fast_analyzer, k=3)
    assert [m.external_id for m in found.matches] == ["obama"]  # cut at FAR 1e-4 by default: nobody else
    assert found.unknown is False and found.face is not None
    [rank], _ = enrolled.search_image("people", str(test_dir / "obama1.jpg"), fast_analyzer, k=3, rank_only=True)
    ranked = rank.matches
    assert rank.unknown is None and ranked[0].external_id == "obama"
    assert ranked[0].similarity > 0.5
    assert ranked[0].similarity - ranked[1].similarity > 0.2


def test_a_search_refuses_options_that_are_not_what_they_name(enrolled: Gallery, test_dir: Path,
                                                              fast_analyzer) -> None:
    """k=2.5 reached faiss as a float (TypeError, a 500 to an API user); fpir=0 said the calibration
    lacked that rate: both are the caller's argument, refused as such before any search."""
    face = fast_analyzer.analyze(str(test_dir / "obama1.jpg"), max_faces=1)[0]
    for k in (2.5, "3", 0, True):
        with pytest.raises(InvalidInput, match="k is the number of subjects"):
            enrolled.search("people", face, k=k)
    for rate in ({"fpir": 0.0}, {"far": 1.0}, {"fpir": float("nan")}):
        with pytest.raises(InvalidInput, match="a rate between 0 and 1") as refused:
            enrolled.search("people", face, **rate)
        assert not isinstance(refused.value, FarNotCalibrated)
    assert [m.external_id for m in enrolled.search("people", face, k=np.int64(2))] == ["obama"]


def test_group_photo_identifies_each_face(enrolled: Gallery, test_dir: Path, fast_analyzer) -> None:
    results, found = enrolled.search_image("people", str(test_dir / "kit_with_rose.jpg"), fast_analyzer,
                                           all_faces=True, k=1, threshold=0.4)
    assert {r.matches[0].external_id for r in results if r.matches} == {"kit_harington", "rose_leslie"}
    assert found == len(results) == 2
    [largest], among = enrolled.search_image("people", str(test_dir / "kit_with_rose.jpg"), fast_analyzer, k=1)
    assert among == 2 and list(largest.face.bbox) == list(results[0].face.bbox)  # the largest of the 2, and says so


def test_subject_is_one_identity_not_many_votes(enrolled: Gallery, test_dir: Path, fast_analyzer) -> None:
    face = fast_analyzer.analyze_one(str(test_dir / "obama1.jpg"))
    best = enrolled.search("people", face, k=5, rank_only=True)
    mean = enrolled.search("people", face, k=5, aggregate="mean", rank_only=True)
    for matches in (best, mean):
        names = [m.external_id for m in matches]
        assert len(names) == len(set(names)) == 5
        assert names[0] == "obama"
    obama = mean[0]
    assert obama.matched_faces == 2 and obama.mean_similarity is not None
    assert obama.similarity == obama.mean_similarity > 0.5


def test_threshold_raw_and_far(enrolled: Gallery, test_dir: Path, fast_analyzer) -> None:
    face = fast_analyzer.analyze_one(str(test_dir / "obama1.jpg"))
    assert [m.external_id for m in enrolled.search("people", face, k=5, threshold=0.45)] == ["obama"]
    info = enrolled.get_collection("people")
    calibration = Calibration("scrfd-mbf", info.recognizer_id, {"1e-3": 0.30, "1e-4": 0.40, "1e-5": 0.50})
    matches = enrolled.search("people", face, k=5, far=1e-4, calibration=calibration)
    assert [m.external_id for m in matches] == ["obama"] and matches[0].far_level == 1e-5
    stranger = Calibration("dlib", "other:1", {"1e-4": 0.4})
    with pytest.raises(NotCalibrated):
        enrolled.search("people", face, far=1e-4, calibration=stranger)


def test_verify(enrolled: Gallery, test_dir: Path, fast_analyzer) -> None:
    face = fast_analyzer.analyze_one(str(test_dir / "obama1.jpg"))
    assert enrolled.verify("people", "obama", face, threshold=0.4).match
    rejected = enrolled.verify("people", "biden", face, threshold=0.4)
    assert not rejected.match and rejected.similarity < 0.4


def test_model_mismatch_refused(gallery: Gallery, fast_analyzer, train_dir: Path) -> None:
    gallery.create_collection("dlib-people", "dlib")
    dlib_id = get_pack("dlib").recognizer_id
    with pytest.raises(ModelMismatch, match="dlib-people.*recognizer"):
        gallery.enrol_images("dlib-people", "obama", [str(train_dir / "obama" / "obama.jpg")], fast_analyzer)
    with pytest.raises(ModelMismatch, match="512-d"):
        gallery.add_embeddings("dlib-people", "x", np.ones((1, 512)), recognizer_id=dlib_id)
    with pytest.raises(ModelMismatch):
        gallery.search_image("dlib-people", str(train_dir / "obama" / "obama.jpg"), fast_analyzer)


def test_a_mismatch_says_how_to_resolve_it(gallery: Gallery, fast_analyzer, train_dir: Path) -> None:
    """"Use a collection of that pack or reembed this one" was said of a collection that differs only
    in its int8 or flip variant (a setting makes the same space) and by a server, whose cure is to
    run the collection's pack: each says its own."""
    photo = str(train_dir / "obama" / "obama.jpg")
    plain, flipped, int8 = (get_pack("scrfd-mbf", runtime=r, flip=f).recognizer_id
                            for r, f in (("float", False), ("float", True), ("int8", False)))
    for collection, pack, setting in (("flipped", get_pack("scrfd-mbf", flip=True), "FACEATLAS_FLIP=1"),
                                      ("int8", get_pack("scrfd-mbf", runtime="int8"), "FACEATLAS_RUNTIME=int8")):
        gallery.create_collection(collection, pack)
        with pytest.raises(ModelMismatch) as refused:
            gallery.enrol_images(collection, "obama", [photo], fast_analyzer)
        assert setting in str(refused.value) and "reembed" not in str(refused.value), str(refused.value)
    both = get_pack("scrfd-mbf", runtime="int8", flip=True).recognizer_id
    assert "FACEATLAS_RUNTIME=float" in mismatch_message("collection 'c'", "scrfd-mbf", plain, int8)
    assert "FACEATLAS_FLIP=0" in mismatch_message("collection 'c'", "scrfd-mbf", plain, flipped)
    told = mismatch_message("collection 'c'", "scrfd-mbf", both, plain)
    assert "FACEATLAS_RUNTIME=int8 and FACEATLAS_FLIP=1" in told and "reembed" not in told
    gallery.create_collection("dlib-people", "dlib")  # another pack, from the CLI or the library
    with pytest.raises(ModelMismatch) as refused:
        gallery.enrol_images("dlib-people", "obama", [photo], fast_analyzer)
    told = str(refused.value)
    assert "--pack dlib" in told and "FACEATLAS_PACK=dlib" in told and "reembed" in told
    assert "FACEATLAS_FLIP" not in told and "server" not in told
    gallery.serving = fast_analyzer.pack  # a server running scrfd-mbf
    gallery.for_tenant("svc:acme").create_collection("staff", "dlib")
    with pytest.raises(ModelMismatch) as refused:
        gallery.for_tenant("svc:acme").enrol_images("staff", "obama", [photo], fast_analyzer)
    told = str(refused.value)
    assert "this server runs pack 'scrfd-mbf'" in told and "`faceatlas serve --pack dlib`" in told, told
    assert "FACEATLAS_PACK=dlib" in told and "one pack" in told
    assert _rows(gallery, FaceRecord) == 0


def test_quality_gate_and_all_faces(gallery: Gallery, test_dir: Path, fast_analyzer) -> None:
    gallery.create_collection("c", fast_analyzer)
    group = str(test_dir / "obama_and_biden.jpg")
    assert len(gallery.enrol_images("c", "group", [group], fast_analyzer, all_faces=True).added) == 3
    strict = gallery.enrol_images("c", "strict", [group], fast_analyzer, all_faces=True, min_quality=1.0)
    assert not strict.added and len(strict.rejected) == 3 and "low_quality" in strict.rejected[0].reason


@BOTH_BACKENDS
def test_delete_subject_leaves_no_trace(enrolled: Gallery, index_dir: Path, vector_backend: str,
                                        milvus_held: Callable[[Iterable[int]], list[int]]) -> None:
    face_ids = [f.id for f in enrolled.list_faces("people", subject="obama").items]
    assert len(face_ids) == 2
    assert _rows(enrolled, FaceRecord, FaceRecord.id.in_(face_ids), FaceRecord.crop.is_not(None)) == 2
    assert enrolled.delete_subject("people", "obama") == 2

    assert _rows(enrolled, FaceRecord, FaceRecord.id.in_(face_ids)) == 0
    assert _rows(enrolled, Subject, Subject.external_id == "obama") == 0
    with enrolled._sessions() as session:
        collection = enrolled._collection(session, "people")
        live_ids = set(enrolled._indexes.get(session, collection).ids().tolist())
        db_ids = set(session.scalars(select(FaceRecord.id).where(FaceRecord.collection_id == collection.id)))
    assert live_ids == db_ids and not live_ids & set(face_ids)
    if vector_backend == "faiss":
        on_disk = load_index(enrolled._indexes.path(collection.id))
        assert on_disk is not None and set(on_disk.index.ids().tolist()) == db_ids
    else:  # Milvus, asked directly
        assert milvus_held(face_ids) == [] and milvus_held(db_ids) == sorted(db_ids)
    with pytest.raises(NotFound):
        enrolled.get_subject("people", "obama")


def test_rejections_are_typed(gallery: Gallery, test_dir: Path, fast_analyzer, tmp_path: Path) -> None:
    """Each image an enrolment refuses is a Rejection: its source, the error tree's code and a message
    (doors read those, not a "code: why" text); ``reason`` is the text they show, as before."""
    gallery.create_collection("c", fast_analyzer)
    blank, broken = tmp_path / "blank.jpg", tmp_path / "broken.jpg"
    cv2.imwrite(str(blank), np.full((240, 240, 3), 128, np.uint8))
    broken.write_bytes(b"not a photo at all")
    group = str(test_dir / "obama_and_biden.jpg")
    report = gallery.enrol_images("c", "x", [str(blank), str(broken), group], fast_analyzer, alone=True)
    assert not report.added
    no_face, bad, many = report.rejected
    assert no_face == Rejection(source=str(blank), code="no_face", message="no face found in the image")
    assert no_face.reason == "no_face: no face found in the image"
    assert (bad.source, bad.code) == (str(broken), "invalid_image") and bad.reason == f"invalid_image: {bad.message}"
    assert (many.source, many.code) == (group, "too_many_faces")
    assert many.message == "3 faces in the image, where one person alone is expected"
    strict = gallery.enrol_images("c", "y", [group], fast_analyzer, min_quality=1.0).rejected
    assert [(r.source, r.code) for r in strict] == [(group, "low_quality")]
    assert strict[0].reason == f"low_quality ({strict[0].message})" and strict[0].message.endswith(" < 1.00")
    # one code: the error of the tree that has it; several: bad_request
    assert type(rejection_error([no_face], "none")) is NoFace and type(rejection_error(strict, "none")) is LowQuality
    mixed = rejection_error(report.rejected, "nothing enrolled")
    assert (type(mixed), mixed.code, str(mixed)) == (InvalidInput, "bad_request", "nothing enrolled")


@BOTH_BACKENDS
def test_merge_subjects(enrolled: Gallery, test_dir: Path, fast_analyzer) -> None:
    enrolled.update_subject("people", "obama", metadata={"role": "president"})
    enrolled.update_subject("people", "biden", name="Joe Biden", metadata={"role": "vp", "state": "DE"})
    merged = enrolled.merge_subjects("people", keep="obama", absorb="biden")
    assert merged.faces == 4 and merged.metadata == {"role": "president", "state": "DE"}
    with pytest.raises(NotFound):
        enrolled.get_subject("people", "biden")
    face = fast_analyzer.analyze_one(str(test_dir / "obama1.jpg"))
    names = [m.external_id for m in enrolled.search("people", face, k=10, rank_only=True)]
    assert names.count("obama") == 1 and "biden" not in names


@BOTH_BACKENDS
def test_move_faces_and_face_vectors(enrolled: Gallery, fast_analyzer) -> None:
    biden = [f.id for f in enrolled.list_faces("people", subject="biden").items]
    ids, vectors = enrolled.face_vectors("people", biden)
    assert ids.tolist() == sorted(biden) and vectors.shape == (len(biden), 128)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert enrolled.move_faces("people", biden, "someone_else", name="Someone") == len(biden)
    assert enrolled.get_subject("people", "biden").faces == 0
    assert enrolled.get_subject("people", "someone_else").faces == len(biden)
    query = Embedding(vectors[0], fast_analyzer.pack.recognizer_id)
    assert enrolled.search("people", query, k=1)[0].external_id == "someone_else"
    with pytest.raises(NotFound):
        enrolled.move_faces("people", [10**9], "obama")


def test_subjects_crud_and_pagination(gallery: Gallery) -> None:
    info = gallery.create_collection("c", "scrfd-mbf", metadata={"site": "hq"})
    for i in range(25):
        gallery.add_subject("c", f"s{i:02d}", name=f"Person {i}", metadata={"i": i})
    with pytest.raises(AlreadyExists):
        gallery.add_subject("c", "s00")
    seen, cursor, pages = [], None, 0
    while True:
        page = gallery.list_subjects("c", limit=10, after=cursor)
        seen += [s.external_id for s in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"s{i:02d}" for i in range(25)] and pages == 3
    vectors = np.random.default_rng(0).normal(size=(12, 128))
    gallery.add_embeddings("c", "s01", vectors, recognizer_id=info.recognizer_id)
    first = gallery.list_faces("c", subject="s01", limit=5)
    rest = gallery.list_faces("c", subject="s01", limit=10, after=first.next_cursor)
    assert len(first.items) == 5 and len(rest.items) == 7 and rest.next_cursor is None
    updated = gallery.update_subject("c", "s01", name="Renamed", metadata={"x": 1}, new_external_id="s99")
    assert (updated.name, updated.metadata, updated.faces) == ("Renamed", {"i": 1, "x": 1}, 12)
    assert [c.name for c in gallery.list_collections()] == ["c"]
    gallery.delete_collection("c")
    assert gallery.list_collections() == [] and _rows(gallery, FaceRecord) == 0


def test_limits_ids_and_databases_that_name_nothing_are_refused(gallery: Gallery, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`gallery list C --limit 9223372036854775807` was an OverflowError traceback on SQLite (the
    database's error on PostgreSQL); a delete of subject "" (an unset variable) named no subject;
    an empty database URL opened the default database (`--db "$DB"` with DB unset)."""
    gallery.create_collection("c", "scrfd-mbf")
    gallery.add_subject("c", "s")
    for limit in (0, PAGE_MAX + 1, 2**63 - 1):
        for listing in (gallery.list_subjects, gallery.list_faces):
            with pytest.raises(InvalidArgument):
                listing("c", limit=limit)
    assert len(gallery.list_subjects("c", limit=PAGE_MAX).items) == 1
    for blank in ("", "  "):
        with pytest.raises(InvalidArgument):
            gallery.delete_subject("c", blank)
    assert gallery.get_collection("c").subjects == 1
    default = tmp_path / "default.db"
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{default}")
    for url in ("", " "):
        with pytest.raises(InvalidArgument):
            Gallery.open(url)
    assert not default.exists()


def test_tenants_are_isolated(enrolled: Gallery, test_dir: Path, fast_analyzer) -> None:
    other = enrolled.for_tenant("other")
    assert other.list_collections() == []
    with pytest.raises(NotFound):
        other.search_image("people", str(test_dir / "obama1.jpg"), fast_analyzer)
    other.create_collection("people", fast_analyzer)
    face = fast_analyzer.analyze_one(str(test_dir / "obama1.jpg"))
    assert other.search("people", face) == []
    assert enrolled.search("people", face)[0].external_id == "obama"


def test_export_import_round_trip(enrolled: Gallery, tmp_path: Path, test_dir: Path, fast_analyzer) -> None:
    enrolled.update_subject("people", "obama", metadata={"role": "president"})
    enrolled.add_subject("people", "nobody", metadata={"empty": True})
    path = tmp_path / "people.parquet"
    assert enrolled.export("people", path) == 9
    target = enrolled.for_tenant("restore")
    assert target.import_(path, name="copy") == 9
    original, copy = enrolled.get_collection("people"), target.get_collection("copy")
    assert (copy.recognizer_id, copy.keep_crops, copy.subjects, copy.faces) == (
        original.recognizer_id, True, original.subjects, original.faces)
    assert target.get_subject("copy", "obama").metadata == {"role": "president"}
    assert target.get_subject("copy", "nobody").faces == 0
    face = fast_analyzer.analyze_one(str(test_dir / "obama1.jpg"))
    before, after = enrolled.search("people", face, k=5), target.search("copy", face, k=5)
    assert [(m.external_id, round(m.similarity, 5)) for m in before] == [
        (m.external_id, round(m.similarity, 5)) for m in after]


def _times(gallery: Gallery, collection: str) -> tuple[dict, list]:
    """The subjects' (created_at, updated_at) by external id, and the faces' (subject, source, created_at)."""
    subjects = {s.external_id: (s.created_at, s.updated_at) for s in gallery.list_subjects(collection).items}
    faces = sorted((f.subject, f.source, f.created_at) for f in gallery.list_faces(collection).items)
    return subjects, faces


def test_an_export_restored_elsewhere_keeps_when_each_subject_and_face_was_made(
        enrolled: Gallery, tmp_path: Path, db_url: str, new_database, fast_analyzer) -> None:
    """An export carried no times: a backup restored stamped every subject and face with the import's
    time, and lost when each person was enrolled. They travel (UTC, as the database keeps them), and
    an export written before they did still imports, with the import's time."""
    import pyarrow.parquet as pq

    from faceatlas.db import utcnow

    enrolled.add_subject("people", "nobody")  # a subject without faces: its times travel too
    with enrolled._sessions.begin() as session:  # known times, as enrolled years ago
        for index, subject in enumerate(session.scalars(select(Subject).order_by(Subject.id))):
            subject.created_at = datetime(2019, 3, 1 + index, 8, 15, 30, 123456)
            subject.updated_at = datetime(2021, 7, 1 + index, 17, 0, 5, 654321)
        for index, face in enumerate(session.scalars(select(FaceRecord).order_by(FaceRecord.id))):
            face.created_at = datetime(2019, 4, 1, 9, 0) + timedelta(hours=index, microseconds=index)
    subjects, faces = _times(enrolled, "people")
    assert subjects["nobody"] == (datetime(2019, 3, 1 + len(subjects) - 1, 8, 15, 30, 123456),
                                  datetime(2021, 7, 1 + len(subjects) - 1, 17, 0, 5, 654321))
    path = tmp_path / "people.parquet"
    assert enrolled.export("people", path) == 9
    (tmp_path / "restored").mkdir()
    with new_database("postgresql" if db_url.startswith("postgresql") else "sqlite", tmp_path / "restored") as url:
        restored = Gallery.open(url, tenant="restore", index_dir=tmp_path / "restored" / "indexes")
        try:
            assert restored.import_(path) == 9
            assert _times(restored, "people") == (subjects, faces)

            # an export of a FaceAtlas before the times: no times columns, no format_minor in its header
            table = pq.read_table(path)
            header = json.loads(table.schema.metadata[b"faceatlas.gallery"])
            assert (header["format"], header["format_minor"]) == (1, 1)
            del header["format_minor"]
            old = tmp_path / "old.parquet"
            pq.write_table(table.drop_columns(["subject_created_at", "subject_updated_at", "face_created_at"])
                           .replace_schema_metadata({b"faceatlas.gallery": json.dumps(header).encode()}), old)
            before = utcnow()
            assert restored.import_(old, name="old") == 9
            after = utcnow()
            old_subjects, old_faces = _times(restored, "old")
            assert old_subjects.keys() == subjects.keys()
            stamps = [t for pair in old_subjects.values() for t in pair] + [f[2] for f in old_faces]
            assert all(before <= stamp <= after for stamp in stamps), stamps
            assert [f[:2] for f in old_faces] == [f[:2] for f in faces]
        finally:
            restored.close()


def _edited_export(source: Path, target: Path, *, header: dict | None = None, column: str | None = None,
                   value: object = None) -> Path:
    """``source`` rewritten with its export header replaced, or one column's first value replaced."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    if column is not None:
        values = table.column(column).to_pylist()
        values[0] = value
        table = table.set_column(table.schema.get_field_index(column), column,
                                 pa.array(values, type=table.schema.field(column).type))
    if header is not None:
        table = table.replace_schema_metadata({b"faceatlas.gallery": json.dumps(header).encode()})
    pq.write_table(table, target)
    return target


def test_an_import_refused_part_way_leaves_nothing(enrolled: Gallery, tmp_path: Path) -> None:
    """A hostile client's edited exports: a header naming a collection no URL reaches ("bad name/../x",
    "..") was created, an unknown format was read, subject metadata that is not JSON was a 500, and a
    file refused at a row left its collection behind (subjects created, no faces)."""
    path = tmp_path / "people.parquet"
    enrolled.export("people", path)
    import pyarrow.parquet as pq

    header = json.loads(pq.read_schema(path).metadata[b"faceatlas.gallery"])
    target = enrolled.for_tenant("hostile")
    nan = [float("nan")] * header["embedding_size"]
    refused = {
        "name": _edited_export(path, tmp_path / "a.parquet", header={**header, "collection": "bad name/../x"}),
        "dots": _edited_export(path, tmp_path / "b.parquet", header={**header, "collection": ".."}),
        "format": _edited_export(path, tmp_path / "c.parquet", header={**header, "format": 99}),
        "size": _edited_export(path, tmp_path / "d.parquet", header={**header, "embedding_size": "128"}),
        "metadata": _edited_export(path, tmp_path / "e.parquet", column="subject_metadata", value="not json"),
        "nan": _edited_export(path, tmp_path / "f.parquet", column="embedding", value=nan),
        "id": _edited_export(path, tmp_path / "g.parquet", column="external_id", value="no/slash"),
        "crop": _dropped_column(path, tmp_path / "h.parquet", "crop"),  # a KeyError traceback
        "time as text": _retyped_column(path, tmp_path / "i.parquet", "subject_created_at", ["2019-03-01"], "string"),
        "time past 9999": _retyped_column(path, tmp_path / "j.parquet", "face_created_at", [10**12], "timestamp[s]"),
    }
    for what, file in refused.items():
        with pytest.raises(InvalidInput):
            target.import_(file, name=None if what in ("name", "dots") else f"copy_{what}")
        assert target.list_collections() == [], what
    with pytest.raises(InvalidInput):
        target.import_(path, name=".")
    assert target.import_(path, name="copy") == 9 and [c.name for c in target.list_collections()] == ["copy"]
    with pytest.raises(AlreadyExists):  # a name taken: the collection there stays whole
        target.import_(refused["nan"], name="copy")
    assert target.get_collection("copy").faces == 9


LONE_SURROGATE = json.loads('"\\ud83d"')  # half an emoji, as a JSON escape gives it
UNSTORABLE = {"surrogate": f"a{LONE_SURROGATE}b", "nul": "a\x00b"}


@pytest.mark.parametrize("bad", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_text_the_database_cannot_hold_is_refused_before_anything_is_stored(gallery: Gallery, bad: str) -> None:
    """A lone surrogate in a name or in metadata (at any depth, key or value) was stored: the write
    answered 500 with its row kept, and every later listing, get or search that showed it failed
    (UTF-8 cannot encode it). A NUL was a psycopg DataError on PostgreSQL (SQLite kept it). Each is
    refused by the gallery's rules, before a row is written."""
    gallery.create_collection("c", "scrfd-mbf")
    gallery.add_subject("c", "ok", name="Ok", metadata={"k": "v"})
    metadatas = [{"k": bad}, {bad: 1}, {"k": [{"deep": bad}]}, {"k": {"deeper": {bad: True}}}]
    writes = [*(lambda m=m: gallery.create_collection("d", "scrfd-mbf", metadata=m) for m in metadatas),
              *(lambda m=m: gallery.add_subject("c", "s", metadata=m) for m in metadatas),
              *(lambda m=m: gallery.update_subject("c", "ok", metadata=m) for m in metadatas),
              lambda: gallery.add_subject("c", "s", name=bad),
              lambda: gallery.ensure_subject("c", "s", name=bad),
              lambda: gallery.update_subject("c", "ok", name=bad),
              lambda: gallery.add_subject("c", f"s{bad}"),
              lambda: gallery.for_tenant(f"t{bad}")]
    for write in writes:
        with pytest.raises(InvalidArgument):
            write()
    assert [c.name for c in gallery.list_collections()] == ["c"]
    subjects = gallery.list_subjects("c").items
    assert [(s.external_id, s.name, s.metadata) for s in subjects] == [("ok", "Ok", {"k": "v"})]


def _tiny_export(gallery: Gallery, path: Path) -> dict:
    """A collection of two subjects with random faces exported to ``path``; its export header."""
    import pyarrow.parquet as pq

    rid = gallery.create_collection("tiny", "scrfd-mbf", metadata={"site": "hq"}).recognizer_id
    rng = np.random.default_rng(0)
    for subject in ("ada", "bob"):
        gallery.add_embeddings("tiny", subject, rng.normal(size=(2, 128)), recognizer_id=rid,
                               sources=[f"{subject}.jpg"] * 2)
    gallery.export("tiny", path)
    return json.loads(pq.read_schema(path).metadata[b"faceatlas.gallery"])


def _raw_header(source: Path, target: Path, header: bytes) -> Path:
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(source).replace_schema_metadata({b"faceatlas.gallery": header}), target)
    return target


def test_an_import_with_text_too_deep_or_unstorable_is_refused_and_leaves_nothing(gallery: Gallery,
                                                                                   tmp_path: Path) -> None:
    """An edited export whose header or a subject's metadata nests 100,000 levels was a RecursionError
    traceback (the API's 500); a NUL in its source, pack version or a name was a psycopg DataError on
    PostgreSQL (the CLI said database_unavailable) and stored on SQLite; a lone surrogate in its header
    was stored. Each is bad input, and no collection is left behind."""
    path = tmp_path / "tiny.parquet"
    header = _tiny_export(gallery, path)
    deep = "[" * 100_000 + "]" * 100_000
    refused: dict[str, tuple[Path, type[Exception]]] = {
        "deep header": (_raw_header(path, tmp_path / "a.parquet", deep.encode()), InvalidInput),
        "deep metadata": (_edited_export(path, tmp_path / "b.parquet", column="subject_metadata", value=deep),
                          InvalidInput),
        "deep header metadata": (_edited_export(path, tmp_path / "c.parquet",
                                                header={**header, "metadata": json.loads("[" * 500 + "]" * 500)}),
                                 InvalidInput),
    }
    for key in ("pack_version", "pack_name", "recognizer_id"):
        for what, bad in UNSTORABLE.items():
            refused[f"{what} {key}"] = (_edited_export(path, tmp_path / f"{key}-{what}.parquet",
                                                       header={**header, key: bad}), InvalidArgument)
    for what, bad in UNSTORABLE.items():
        refused[f"{what} header metadata"] = (_edited_export(path, tmp_path / f"m-{what}.parquet",
                                                             header={**header, "metadata": {"k": bad}}),
                                              InvalidArgument)
        refused[f"{what} subject metadata"] = (_edited_export(path, tmp_path / f"s-{what}.parquet",
                                                              column="subject_metadata",
                                                              value=json.dumps({"k": bad})), InvalidArgument)
    for column in ("source", "name"):  # Parquet's strings are UTF-8: a NUL is what they can hold
        refused[f"nul {column}"] = (_edited_export(path, tmp_path / f"{column}.parquet", column=column,
                                                   value="a\x00b"), InvalidArgument)
    target = gallery.for_tenant("restore")
    with pytest.raises(InvalidArgument):  # an empty name (`--name "$NAME"`, unset) is not the exported name
        target.import_(path, name="")
    for what, (file, error) in refused.items():
        with pytest.raises(error):
            target.import_(file, name="copy")
        assert target.list_collections() == [], what
    assert target.import_(path, name="copy") == 4


def _dropped_column(path: Path, target: Path, column: str) -> Path:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    pq.write_table(table.drop_columns([column]).replace_schema_metadata(table.schema.metadata), target)
    return target


def _retyped_column(path: Path, target: Path, column: str, first: list, kind: str) -> Path:
    """``path`` rewritten with ``column`` of type ``kind``: ``first`` then nulls."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    values = pa.array(first + [None] * (table.num_rows - len(first))).cast(pa.type_for_alias(kind))
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, values), target)
    return target


def test_reembed_needs_crops(enrolled: Gallery, gallery_without_crops, dlib_analyzer, test_dir: Path) -> None:
    report = gallery_without_crops.reembed("plain", dlib_analyzer)
    assert not report.applied and len(report.unmigratable) == 1
    assert gallery_without_crops.get_collection("plain").pack_name == "scrfd-mbf"

    report = enrolled.reembed("people", dlib_analyzer)
    assert report.applied and report.migrated == 9 and not report.unmigratable
    info = enrolled.get_collection("people")
    assert (info.pack_name, info.recognizer_id) == ("dlib", dlib_analyzer.pack.recognizer_id)
    [found], _ = enrolled.search_image("people", str(test_dir / "obama1.jpg"), dlib_analyzer)
    assert found.matches[0].external_id == "obama"


@pytest.fixture
def gallery_without_crops(enrolled: Gallery, train_dir: Path, fast_analyzer) -> Gallery:
    enrolled.create_collection("plain", fast_analyzer)
    enrolled.enrol_images("plain", "obama", [str(train_dir / "obama" / "obama.jpg")], fast_analyzer)
    return enrolled


def test_search_answers_unknown_for_a_stranger_by_default(enrolled: Gallery, examples: Path, fast_analyzer) -> None:
    """Issue 16.3: without a threshold, search named the nearest subjects of a stranger."""
    stranger = examples / "examples" / "lin-manuel-miranda.png"  # not enrolled in 'people'
    [found], _ = enrolled.search_image("people", str(stranger), fast_analyzer, k=3)
    assert found.matches == [] and found.unknown is True  # unknown at the default FAR
    [ranked], _ = enrolled.search_image("people", str(stranger), fast_analyzer, k=3, rank_only=True)
    assert len(ranked.matches) == 3 and ranked.unknown is None  # ranking without a decision is still there


def test_face_crop_is_served_only_where_crops_are_kept(gallery, fast_analyzer, examples: Path) -> None:
    photo = str(examples / "tests" / "test_images" / "obama.jpg")
    gallery.create_collection("kept", fast_analyzer, keep_crops=True)
    gallery.create_collection("bare", fast_analyzer)
    kept = gallery.enrol_images("kept", "obama", [photo], fast_analyzer).added[0]
    bare = gallery.enrol_images("bare", "obama", [photo], fast_analyzer).added[0]
    crop = cv2.imdecode(np.frombuffer(gallery.face_crop("kept", kept), np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None and min(crop.shape[:2]) >= 64
    assert gallery.face_crop("bare", bare) is None
    with pytest.raises(NotFound):
        gallery.face_crop("bare", kept)  # a face of another collection
    gallery.delete_subject("kept", "obama")
    with pytest.raises(NotFound):
        gallery.face_crop("kept", kept)


def test_a_face_enrolled_during_a_reembedding_is_reembedded_too(enrolled: Gallery, dlib_analyzer, fast_analyzer,
                                                                 train_dir: Path, test_dir: Path) -> None:
    """A face enrolled in the old space after the re-embedding read the faces stayed 512-d in a 128-d
    collection: every later search and export failed ("cannot reshape array")."""
    photo = str(train_dir / "biden" / "biden.jpg")

    class EnrolsMeanwhile:
        pack = dlib_analyzer.pack
        enrolled_once = False

        def analyze(self, image, **options):
            if not self.enrolled_once:  # another process enrols while the crops are re-embedded
                self.enrolled_once = True
                enrolled.enrol_images("people", "biden", [photo], fast_analyzer)
            return dlib_analyzer.analyze(image, **options)

    report = enrolled.reembed("people", EnrolsMeanwhile())
    assert report.applied and report.migrated == 10
    info = enrolled.get_collection("people")
    assert info.faces == 10 and info.recognizer_id == dlib_analyzer.pack.recognizer_id
    ids, vectors = enrolled.face_vectors("people")
    assert vectors.shape == (10, dlib_analyzer.pack.embedding_size)
    [found], _ = enrolled.search_image("people", str(test_dir / "obama1.jpg"), dlib_analyzer)
    assert found.matches[0].external_id == "obama"


def _at_once(calls: int, call: Callable[[], object]) -> list[str]:
    """``call`` in ``calls`` threads released together: 'ok' or the name of the error each raised."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    start = threading.Barrier(calls)

    def one(_: int) -> str:
        start.wait()
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
            return type(exc).__name__
        return "ok"

    with ThreadPoolExecutor(calls) as pool:
        return sorted(pool.map(one, range(calls)))


def test_concurrent_deletes_of_one_thing_delete_it_once(gallery: Gallery) -> None:
    """Six deletes of one collection (of one subject) at once all succeeded but two: each one that read
    the row before another's commit deleted nothing and said it had (the API: 204 and an audit record
    for each). The delete that finds the row gone is NotFound."""
    rng = np.random.default_rng(0)
    for round_ in range(3):
        rid = gallery.create_collection("race", "scrfd-mbf").recognizer_id
        for subject in ("s0", "s1"):
            gallery.add_embeddings("race", subject, rng.normal(size=(2, 128)), recognizer_id=rid)
        assert _at_once(6, lambda: gallery.delete_subject("race", "s0")) == ["NotFound"] * 5 + ["ok"], round_
        assert [s.external_id for s in gallery.list_subjects("race").items] == ["s1"]
        assert gallery.get_collection("race").faces == 2
        assert _at_once(6, lambda: gallery.delete_collection("race")) == ["NotFound"] * 5 + ["ok"], round_
        assert gallery.list_collections() == []


class _MeetsAfterItsFirstPhoto:
    """An analyzer that, after reading its first photo, waits for the other enrolment to have read
    its first too: both have then checked which photos the subject holds before either writes."""

    def __init__(self, analyzer, meet) -> None:
        self._analyzer, self._meet, self._met = analyzer, meet, False

    def load_reduced(self, image):
        loaded = self._analyzer.load_reduced(image)
        if not self._met:
            self._met = True
            self._meet.wait(timeout=60)
        return loaded

    def __getattr__(self, name: str):
        return getattr(self._analyzer, name)


def test_two_enrolments_of_one_folder_at_once_enrol_each_photo_once(db_url: str, index_dir: Path, shared: Path,
                                                                    fast_analyzer) -> None:
    """Two `gallery enrol` runs of one folder at once enrolled every photo twice (24 faces of 12
    photos, both exit 0): each read the subject's photos before the other had written any. The
    second to write now skips what the first enrolled meanwhile, and says so."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    *photos, before = sorted(str(p) for p in (shared / "data" / "lfw" / "images" / "Colin_Powell").glob("*.jpg"))[:6]
    with Gallery.open(db_url, tenant="test", index_dir=index_dir) as setup:
        setup.create_collection("people", fast_analyzer)
        # enrolled before (the folder has grown): no insert of a new subject orders the two runs
        assert setup.enrol_images("people", "powell", [before], fast_analyzer).added
    meet = threading.Barrier(2)

    def enrol(_: int):
        with Gallery.open(db_url, tenant="test", index_dir=index_dir) as run:  # one per process, as two CLI runs
            return run.enrol_images("people", "powell", photos, _MeetsAfterItsFirstPhoto(fast_analyzer, meet),
                                    once=True)

    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(enrol, range(2)))
    assert sorted(len(r.added) for r in reports) == [0, len(photos)], [(r.added, r.skipped) for r in reports]
    assert sorted(sorted(r.skipped) for r in reports) == [[], photos]
    with Gallery.open(db_url, tenant="test", index_dir=index_dir) as after:
        faces = after.list_faces("people", limit=100).items
        assert sorted(f.source for f in faces) == sorted([*photos, before])
        assert after.get_collection("people").faces == len(photos) + 1
        ids, _ = after.face_vectors("people")
        [found], _ = after.search_image("people", photos[0], fast_analyzer, k=1, rank_only=True)
        assert found.matches[0].external_id == "powell" and found.matches[0].matched_faces == len(photos) + 1
        assert sorted(ids.tolist()) == sorted(f.id for f in faces)


def test_an_import_keeps_crops_only_when_its_file_carries_them(enrolled: Gallery, tmp_path: Path,
                                                                dlib_analyzer) -> None:
    """`gallery export --without-crops` of a collection keeping crops, imported, made a collection that
    kept crops and held none: its `reembed` failed "13 faces have no stored crop". An export without
    crops says so, and an older one (its header still saying keep_crops) imports without them too."""
    bare = tmp_path / "bare.parquet"
    assert enrolled.export("people", bare, with_crops=False) == 9
    target = enrolled.for_tenant("restore")
    assert target.import_(bare, name="bare") == 9
    assert not target.get_collection("bare").keep_crops
    older = _edited_export(bare, tmp_path / "older.parquet",
                           header={**json.loads(_header_bytes(bare)), "keep_crops": True})
    assert target.import_(older, name="older") == 9
    assert not target.get_collection("older").keep_crops
    refused = target.reembed("older", dlib_analyzer)
    assert not refused.applied and len(refused.unmigratable) == 9  # said as a collection without crops is
    full = tmp_path / "full.parquet"
    enrolled.export("people", full)
    assert target.import_(full, name="full") == 9 and target.get_collection("full").keep_crops
    assert target.reembed("full", dlib_analyzer).migrated == 9


def _header_bytes(path: Path) -> bytes:
    import pyarrow.parquet as pq

    return pq.read_schema(path).metadata[b"faceatlas.gallery"]
