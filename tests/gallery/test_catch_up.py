"""Catch-up of a process's index with what other processes committed: proportional to what changed
(the faces stamped with a revision newer than the index's), not to the collection (every face id
read and diffed, seconds at millions of faces, on the first search after each enrolment elsewhere).
Two ``Gallery`` objects on one database and one index folder stand for two processes."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, event, select, text

from faceatlas.db import upgrade
from faceatlas.engine import Embedding, get_pack, l2_normalize
from faceatlas.gallery import Gallery, models
from faceatlas.gallery.index import IndexState, TemplateIndex, empty_index, load_index, save_index
from faceatlas.gallery.models import Collection, FaceRecord, Subject
from tests.gallery._steps import assert_in_step

DIM = 128
_FACES_READ = re.compile(r"\bfrom faces\b", re.IGNORECASE)


def _vectors(count: int, seed: int) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32))


def _full_id_reads(statements: list[str]) -> list[str]:
    """The statements that read faces of the collection bounded neither by a revision nor by ids."""
    return [s for s in statements if _FACES_READ.search(s)
            and "faces.revision >" not in s and not re.search(r"faces\.id (IN|=)", s, re.IGNORECASE)]


def _record(gallery: Gallery) -> list[str]:
    statements: list[str] = []
    event.listen(gallery.engine, "before_cursor_execute",
                 lambda _conn, _cursor, statement, *_args: statements.append(statement))
    return statements


def _index_file_ids(folder: Path) -> set[int]:
    with np.load(next(folder.glob("collection-*.npz")), allow_pickle=False) as stored:
        return {int(i) for i in stored["ids"] if i >= 0}


def _subject_ids(gallery: Gallery) -> dict[str, int]:
    with gallery._sessions() as session:
        return {external: sid for sid, external in session.execute(select(Subject.id, Subject.external_id))}


def _groups(index: TemplateIndex) -> dict[int, int]:
    """Face id -> the subject the template index groups it under."""
    rows = np.flatnonzero(index._ids[: index._rows] >= 0)
    return {int(index._ids[r]): int(index._groups[index._node_of[r]]) for r in rows}


def test_another_process_s_enrolment_is_caught_up_without_reading_every_face_id(
        db_url: str, index_dir: Path) -> None:
    rid = get_pack("scrfd-mbf").recognizer_id
    vectors = _vectors(41, 1)
    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as a, \
            Gallery.open(db_url, tenant="t", index_dir=index_dir) as b:
        a.create_collection("c", get_pack("scrfd-mbf"))
        for n in range(4):
            a.add_embeddings("c", f"s{n}", vectors[n * 10:(n + 1) * 10], recognizer_id=rid)
        assert a.search("c", Embedding(vectors[0], rid), k=1, rank_only=True)[0].external_id == "s0"
        (new,) = b.add_embeddings("c", "new", vectors[40:], recognizer_id=rid)
        statements = _record(a)
        found = a.search("c", Embedding(vectors[40], rid), k=1, rank_only=True)
        assert found[0].external_id == "new" and found[0].best_face_id == new
        assert _full_id_reads(statements) == []
        assert any("faces.revision >" in s for s in statements), statements
        # a save of a copy behind the database, with no removal committed since: no id read either
        b.add_embeddings("c", "newer", _vectors(1, 2), recognizer_id=rid)
        statements.clear()
        with a._sessions() as session:
            collection_id = session.scalars(select(Collection.id)).one()
        a._indexes.save(collection_id)
        assert _full_id_reads(statements) == []
        assert new in _index_file_ids(index_dir)


def _six_subjects_loaded(gallery: Gallery, vectors: np.ndarray) -> None:
    """Collection "c" (the template index: over 40 faces) of subjects s0..s5, ten of ``vectors``
    each, its index loaded by a search in ``gallery`` (process A)."""
    rid = get_pack("scrfd-mbf").recognizer_id
    gallery.create_collection("c", get_pack("scrfd-mbf"))
    for n in range(6):
        gallery.add_embeddings("c", f"s{n}", vectors[n * 10:(n + 1) * 10], recognizer_id=rid)
    gallery.search("c", Embedding(vectors[0], rid), k=1, rank_only=True)


@pytest.mark.parametrize("how", ["move", "merge"])
def test_a_face_moved_by_another_process_is_regrouped_under_its_new_subject(
        db_url: str, index_dir: Path, how: str) -> None:
    rid = get_pack("scrfd-mbf").recognizer_id
    vectors = _vectors(60, 3)
    options = {"tenant": "t", "index_dir": index_dir, "ann_min_faces": 40}
    with Gallery.open(db_url, **options) as a, Gallery.open(db_url, **options) as b:
        _six_subjects_loaded(a, vectors)
        with a._sessions() as session:
            coll = session.scalars(select(Collection)).one()
            index = a._indexes.get(session, coll)
        assert isinstance(index, TemplateIndex)
        ids = _subject_ids(a)
        faces_of_s2 = b.face_vectors("c")[0][20:30].tolist()
        if how == "move":
            b.move_faces("c", faces_of_s2[:3], "s1")
            moved = faces_of_s2[:3]
        else:
            b.merge_subjects("c", "s1", "s2")
            moved = faces_of_s2
        statements = _record(a)
        a.search("c", Embedding(vectors[20], rid), k=1, rank_only=True)
        with a._sessions() as session:
            index = a._indexes.get(session, session.scalars(select(Collection)).one())
        groups = _groups(index)  # type: ignore[arg-type]
        assert {face: groups[face] for face in moved} == {face: ids["s1"] for face in moved}
        assert _full_id_reads(statements) == []
        assert len(index) == 60


@pytest.mark.parametrize("how", ["move", "merge"])
@pytest.mark.parametrize("file", ["stale", "ahead"])
def test_a_face_moved_since_a_file_marked_stale_or_ahead_was_written_is_regrouped_at_its_load(
        db_url: str, index_dir: Path, tmp_path: Path, how: str, file: str) -> None:
    """A file marked stale (a delete's journal carried out at the next start) or ahead of the
    database (one restored from an older backup) has no revision to read the moves against: its
    catch-up diffed face ids only and kept the faces moved since under their old subject (a
    merged-away one), routed by its templates until the next rebuild."""
    rid = get_pack("scrfd-mbf").recognizer_id
    vectors = _vectors(60, 9)
    options = {"tenant": "t", "index_dir": index_dir, "ann_min_faces": 40}
    with Gallery.open(db_url, **options) as a:  # the file: s2's faces under s2
        _six_subjects_loaded(a, vectors)
        ids = _subject_ids(a)
        face_ids = a.face_vectors("c")[0]
        with a._sessions() as session:
            collection_id = session.scalars(select(Collection.id)).one()
    with Gallery.open(db_url, tenant="t", index_dir=tmp_path / "elsewhere", ann_min_faces=40) as b:  # another machine
        moved = face_ids[20:30].tolist() if how == "merge" else face_ids[20:23].tolist()
        if how == "merge":
            b.merge_subjects("c", "s1", "s2")
        else:
            b.move_faces("c", moved, "s1")
    path = next(index_dir.glob("collection-*.npz"))
    if file == "stale":
        with Gallery.open(db_url, **options) as a:  # a delete killed before its commit: its journal
            a._indexes.intend_erase(collection_id, face_ids[40:50])
    else:  # the file ahead of the database, as a restore of an older backup leaves it
        saved = load_index(path)
        assert saved is not None
        saved.revision += 10
        save_index(saved, path)
    with Gallery.open(db_url, **options) as a:
        saved = load_index(path)
        assert saved is not None and (saved.revision == -1) == (file == "stale")
        found = a.search("c", Embedding(vectors[21], rid), k=1, rank_only=True)
        assert found[0].external_id == "s1"  # the answer is the database's, whatever the grouping
        faces = assert_in_step(a)
        with a._sessions() as session:
            groups = _groups(a._indexes.get(session, session.scalars(select(Collection)).one()))  # type: ignore[arg-type]
        assert {face: groups[face] for face in moved} == {face: ids["s1"] for face in moved}
        assert len(faces) == 60


@pytest.mark.parametrize("change", ["enrolment", "delete"])
def test_this_process_s_copy_ahead_of_the_row_a_search_read_is_used_as_it_is(
        db_url: str, index_dir: Path, change: str) -> None:
    """A search reads the collection's row, then another thread's enrolment (or delete) commits and
    moves this process's copy on before the search asks for it: the copy holds every change up to its
    revision and is used as it is. It was caught up to the older row: every face id read and diffed
    (250–450 ms at 300,000 faces, 2 % of the searches under steady enrolments), and the copy put back
    at the older revision (the next enrolment then left it behind: caught up again)."""
    rid = get_pack("scrfd-mbf").recognizer_id
    vectors = _vectors(61, 10)
    options = {"tenant": "t", "index_dir": index_dir, "ann_min_faces": 40}
    with Gallery.open(db_url, **options) as gallery:
        _six_subjects_loaded(gallery, vectors)
        cache = gallery._indexes
        gone = gallery.face_vectors("c")[0][30:40].tolist()
        with gallery._sessions() as session:
            row = session.scalars(select(Collection)).one()  # the search's read, at revision R
            before = row.revision
            held = cache._states[row.id]
            if change == "enrolment":
                (new,) = gallery.add_embeddings("c", "new", vectors[60:], recognizer_id=rid)  # another thread's
            else:
                gallery.delete_subject("c", "s3")
            assert cache._states[row.id] is held and held.revision == before + 1
            catch_ups: list[int] = []
            real_catch_up = cache._catch_up

            def counted(*call: object) -> object:
                catch_ups.append(1)
                return real_catch_up(*call)  # type: ignore[arg-type]

            cache._catch_up = counted  # type: ignore[method-assign]
            statements = _record(gallery)
            index = cache.get(session, row)
            assert row.revision == before
        assert index is held.index and cache._states[row.id] is held and held.revision == before + 1
        assert catch_ups == [] and [s for s in statements if _FACES_READ.search(s)] == []
        ids = set(index.ids().tolist())
        if change == "enrolment":
            assert new in ids and len(ids) == 61
        else:
            assert not set(gone) & ids and len(ids) == 50
            found = gallery.search("c", Embedding(vectors[35], rid), k=3, rank_only=True)
            assert "s3" not in {match.external_id for match in found}
        assert len(assert_in_step(gallery)) == len(ids)


def test_a_file_ahead_of_the_database_loses_the_faces_the_database_does_not_hold(
        db_url: str, index_dir: Path, tmp_path: Path) -> None:
    """A file ahead of the database (one restored from an older backup, with faces erased since
    that backup's writes), unlike this process's copy ahead of a row it read: every face id diffed,
    the faces the database lacks out of the search and the file."""
    rid = get_pack("scrfd-mbf").recognizer_id
    vectors = _vectors(60, 11)
    options = {"tenant": "t", "index_dir": index_dir, "ann_min_faces": 40}
    with Gallery.open(db_url, **options) as a:
        _six_subjects_loaded(a, vectors)
        gone = a.face_vectors("c")[0][30:40].tolist()
    with Gallery.open(db_url, tenant="t", index_dir=tmp_path / "elsewhere", ann_min_faces=40) as b:
        b.delete_subject("c", "s3")  # through another folder: this one's file keeps the faces
    path = next(index_dir.glob("collection-*.npz"))
    saved = load_index(path)
    assert saved is not None and set(gone) <= set(saved.index.ids().tolist())
    saved.revision += 10
    save_index(saved, path)
    with Gallery.open(db_url, **options) as a:
        found = a.search("c", Embedding(vectors[35], rid), k=3, rank_only=True)
        assert "s3" not in {match.external_id for match in found}
        assert len(assert_in_step(a)) == 50
        assert not set(gone) & _index_file_ids(index_dir)


def test_a_subject_deleted_by_another_process_leaves_the_search_and_the_file_and_moves_are_kept(
        db_url: str, index_dir: Path) -> None:
    """A removal since the copy's revision: the full id diff, with the faces moved meanwhile regrouped."""
    rid = get_pack("scrfd-mbf").recognizer_id
    vectors = _vectors(60, 4)
    options = {"tenant": "t", "index_dir": index_dir, "ann_min_faces": 40}
    with Gallery.open(db_url, **options) as a, Gallery.open(db_url, **options) as b:
        _six_subjects_loaded(a, vectors)
        face_ids = b.face_vectors("c")[0]
        gone = face_ids[30:40].tolist()
        b.move_faces("c", face_ids[:2].tolist(), "s5")
        b.delete_subject("c", "s3")
        b.add_embeddings("c", "late", _vectors(1, 5), recognizer_id=rid)
        found = a.search("c", Embedding(vectors[35], rid), k=3, rank_only=True)
        assert "s3" not in {match.external_id for match in found}
        with a._sessions() as session:
            index = a._indexes.get(session, session.scalars(select(Collection)).one())
        assert not set(gone) & set(index.ids().tolist())
        assert not set(gone) & _index_file_ids(index_dir)  # rewritten at once
        groups = _groups(index)  # type: ignore[arg-type]
        assert groups[int(face_ids[0])] == groups[int(face_ids[1])] == _subject_ids(a)["s5"]


def test_a_database_of_0003_is_stamped_and_an_index_file_from_before_the_upgrade_caught_up(
        db_url: str, index_dir: Path) -> None:
    pack = get_pack("scrfd-mbf")
    vectors = _vectors(21, 6)
    created = datetime(2026, 12, 5, 10, 0, 0)
    engine = create_engine(db_url)
    try:
        upgrade(engine, Path(models.__file__).parent / "migrations", "0003")
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO tenants (id, name, created_at) VALUES (1, 't', :c)"), {"c": created})
            connection.execute(text(
                "INSERT INTO collections (id, tenant_id, name, pack_name, pack_version, recognizer_id, embedding_size, "
                "keep_crops, metadata, revision, created_at) VALUES (1, 1, 'c', :p, :v, :r, :d, false, '{}', 7, :c)"),
                {"p": pack.name, "v": pack.version, "r": pack.recognizer_id, "d": DIM, "c": created})
            for n in range(2):
                connection.execute(text("INSERT INTO subjects (id, collection_id, external_id, name, metadata, "
                                        "created_at, updated_at) VALUES (:i, 1, :e, :e, '{}', :c, :c)"),
                                   {"i": n + 1, "e": f"s{n}", "c": created})
            for face in range(20):  # faces 1..20: s0 holds 1..10, s1 11..20
                connection.execute(text("INSERT INTO faces (id, collection_id, subject_id, embedding, created_at) "
                                        "VALUES (:i, 1, :s, :e, :c)"),
                                   {"i": face + 1, "s": face // 10 + 1, "e": vectors[face].tobytes(), "c": created})
            if connection.dialect.name == "postgresql":  # ids given here: the sequences move past them
                for table in ("tenants", "collections", "subjects", "faces"):
                    connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 100)"))
    finally:
        engine.dispose()
    # the file of a process from before the upgrade, at revision 5: faces 1..10, and face 99 (deleted since)
    index = empty_index(11, DIM)
    index.add(np.asarray([*range(1, 11), 99], np.int64), np.vstack([vectors[:10], vectors[20:]]),
              np.asarray([1] * 11, np.int64))
    index_dir.mkdir(parents=True)
    save_index(IndexState(index, 5, {"recognizer_id": pack.recognizer_id, "created": created.isoformat()}),
               index_dir / "collection-1.npz")
    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as gallery:
        with gallery._sessions() as session:
            assert session.execute(select(Collection.revision, Collection.removed_revision)).one() == (7, 7)
            assert set(session.scalars(select(FaceRecord.revision))) == {0}  # no face row rewritten
        rid = pack.recognizer_id
        assert gallery.search("c", Embedding(vectors[20], rid), k=1, rank_only=True)[0].best_face_id != 99
        assert gallery.search("c", Embedding(vectors[15], pack.recognizer_id), k=1,
                              rank_only=True)[0].external_id == "s1"
        with gallery._sessions() as session:
            caught_up = gallery._indexes.get(session, session.scalars(select(Collection)).one())
        assert sorted(caught_up.ids().tolist()) == list(range(1, 21))
        assert _index_file_ids(index_dir) == set(range(1, 21))  # rewritten at once: 99 left it
        statements = _record(gallery)
        (new,) = gallery.for_tenant("t").add_embeddings("c", "s2", _vectors(1, 7), recognizer_id=pack.recognizer_id)
        with gallery._sessions() as session:
            assert session.scalar(select(FaceRecord.revision).where(FaceRecord.id == new)) == 8
        assert _full_id_reads(statements) == []


def test_the_downgrade_of_0004_keeps_every_subject_and_face(db_url: str) -> None:
    """A database is never migrated back by FaceAtlas, but an operator's `alembic downgrade` is
    Alembic's promise: 0004's downgrade copied the ``collections`` table on SQLite (batch mode),
    whose drop cascaded to every subject and face (foreign keys are on) and left the faces' table
    without AUTOINCREMENT. The columns are dropped in place; nothing else changes."""
    from alembic import command
    from alembic.config import Config

    from faceatlas.db import create_database_engine

    with Gallery.open(db_url) as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        gallery.add_embeddings("c", "s", _vectors(3, 8), recognizer_id=get_pack("scrfd-mbf").recognizer_id)
    engine = create_database_engine(db_url)
    try:
        config = Config()
        config.set_main_option("script_location", str(Path(models.__file__).parent / "migrations"))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0003")
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM faces")) == 3
            assert connection.scalar(text("SELECT count(*) FROM subjects")) == 1
            if connection.dialect.name == "sqlite":
                table = connection.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'faces'"))
                assert "AUTOINCREMENT" in table.upper() and "revision" not in table
    finally:
        engine.dispose()
    with Gallery.open(db_url) as gallery:  # upgraded again at open: the faces are there, searchable
        assert gallery.get_collection("c").faces == 3
