"""Gallery calls racing another process's delete, made deterministic: a second :class:`Gallery` on
the same database (its own index folder, as another server process) deletes the subject or face at
the exact step between the call's read and its write. A 10-minute soak of two servers on PostgreSQL
answered 500s there: search KeyError, merge IntegrityError (faces_subject_id_fkey), PATCH
StaleDataError. The subject gone meanwhile is not found (404), nothing changed; a search leaves it out.
A merge or move racing a delete is made with :func:`tests.gallery._steps.when` (the delete in a
thread of its own): on PostgreSQL the call holds the collection's row, so the delete waits for its
commit and acts on what it left; the database and both index folders agree either way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceatlas.engine import Embedding, get_pack, l2_normalize
from faceatlas.gallery import Gallery, NotFound
from tests.gallery._steps import assert_in_step, on_disk, when

RID = get_pack("scrfd-mbf").recognizer_id


def _vectors(seed: int, n: int) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32))


@pytest.fixture
def other(db_url: str, tmp_path: Path, gallery: Gallery) -> Iterator[Gallery]:
    """Another process's gallery: the same database and tenant, an index folder of its own."""
    opened = Gallery.open(db_url, tenant="test", index_dir=tmp_path / "other")
    yield opened
    opened.close()


@pytest.fixture
def people(gallery: Gallery) -> dict[str, list[int]]:
    """Collection 'c' with subjects 'a', 'b' (metadata {'from': 'b'}) and 'c', three faces each."""
    gallery.create_collection("c", "scrfd-mbf")
    faces = {name: gallery.add_embeddings("c", name, _vectors(seed, 3), recognizer_id=RID)
             for seed, name in enumerate("abc")}
    gallery.update_subject("c", "b", metadata={"from": "b"})
    return faces


def _after_subject_lookup(monkeypatch: pytest.MonkeyPatch, gallery: Gallery, external_id: str,
                          then: Callable[[], Any]) -> list[str]:
    """``then()`` once, right after ``gallery`` read subject ``external_id`` (its ``_subject``)."""
    raced: list[str] = []

    def lookup(session: Any, collection: Any, wanted: str) -> Any:
        found = Gallery._subject(session, collection, wanted)
        if wanted == external_id and not raced:
            raced.append(wanted)
            then()
        return found

    monkeypatch.setattr(gallery, "_subject", lookup)
    return raced


def _delete_first(gallery: Gallery) -> bool:
    """Whether the other process's delete, made at a step before the call's first write, commits
    before the call: on SQLite (no lock taken yet there); not on PostgreSQL, where the call holds
    the collection's row from its start (every write takes it first: test_write_races.py), so the
    delete waits for the call's commit and acts on what the call left."""
    return gallery.engine.dialect.name != "postgresql"


def _indexes_saved(*galleries: Gallery) -> None:
    """Each gallery's index of 'c' loaded and written to its folder, as a server has them: the
    files a delete must scrub."""
    for each in galleries:
        each.search("c", Embedding(_vectors(2, 3)[0], RID), k=1, rank_only=True)
        each.flush()


def _noting(said: list[str], call: Callable[[], object]) -> Callable[[], object]:
    """``call``, its NotFound's message appended to ``said``."""
    def noted() -> object:
        try:
            return call()
        except NotFound as exc:
            said.append(str(exc))
            raise
    return noted


@pytest.mark.parametrize("aggregate", ["best", "mean"])
def test_a_search_leaves_out_a_subject_deleted_after_its_faces_were_read(
        gallery: Gallery, other: Gallery, people: dict[str, list[int]], aggregate: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Soak: KeyError at ``subjects[subject_id]``, a 500."""
    query = Embedding(_vectors(0, 3).mean(axis=0), RID)  # nearest subject: 'a'
    assert gallery.search("c", query, k=3, rank_only=True, aggregate=aggregate)[0].external_id == "a"
    nearest = gallery._nearest_subjects

    def then_deleted(*args: Any) -> Any:
        found = nearest(*args)
        other.delete_subject("c", "a")
        return found

    monkeypatch.setattr(gallery, "_nearest_subjects", then_deleted)
    matches = gallery.search("c", query, k=3, rank_only=True, aggregate=aggregate)
    assert sorted(m.external_id for m in matches) == ["b", "c"]


def test_a_merge_into_a_subject_deleted_meanwhile_is_not_found_and_changes_nothing(
        gallery: Gallery, other: Gallery, people: dict[str, list[int]]) -> None:
    """Soak: IntegrityError (faces_subject_id_fkey), a 500: ``keep`` deleted by another process
    after the merge read it. SQLite: the delete commits first, the merge is NotFound and changes
    nothing. PostgreSQL: the delete waits for the merge's commit, then deletes ``keep`` with the
    faces merged into it (its RETURNING, not a read before that commit); the merge answers done, or
    NotFound where its answer (read after its commit) already sees ``keep`` deleted. Either way no
    file of either index folder keeps a vector the acknowledged delete erased, and the database and
    the index agree."""
    _indexes_saved(gallery, other)
    said: list[str] = []
    deleted: list[int] = []
    merge = _noting(said, lambda: gallery.merge_subjects("c", "a", "b"))
    called, raced = when(gallery, "before UPDATE subjects", merge,
                         lambda: deleted.append(other.delete_subject("c", "a")), racing_on=other)
    erased, left = [_vectors(0, 3)], people["b"] + people["c"]
    if _delete_first(gallery):
        assert (called, raced, deleted) == (["NotFound"], ["ok"], [3]) and "'a'" in said[0], (called, raced, said)
        kept = gallery.get_subject("c", "b")
        assert kept.faces == 3 and kept.metadata == {"from": "b"}
        [match] = gallery.search("c", Embedding(_vectors(1, 3)[0], RID), k=1, rank_only=True)
        assert (match.external_id, match.best_face_id) == ("b", people["b"][0])
    else:  # the merge committed first (a's delete erased its 6 faces); its answer, read after its
        # commit, may already see a deleted: NotFound, as if after the delete
        assert called in (["ok"], ["NotFound"]) and (raced, deleted) == (["ok"], [6]), (called, raced, deleted)
        assert called == ["ok"] or "'a'" in said[0], said
        erased, left = [_vectors(0, 3), _vectors(1, 3)], people["c"]  # b's faces merged into a before its delete
    assert not on_disk(other, np.vstack(erased))  # the deleting process's folder, at once
    with pytest.raises(NotFound):
        gallery.get_subject("c", "a")
    faces = assert_in_step(gallery)
    assert sorted(faces) == sorted(left)
    assert not on_disk(gallery, np.vstack(erased))
    assert on_disk(gallery, _vectors(2, 3)) and on_disk(other, _vectors(2, 3))  # the folders' files were looked in


def test_a_merge_of_a_subject_deleted_meanwhile_is_not_found_and_changes_nothing(
        gallery: Gallery, other: Gallery, people: dict[str, list[int]]) -> None:
    """``absorb`` deleted by another process after the merge read it: the merge answered as done
    (SQLAlchemy's warning that its DELETE matched no row), ``keep`` given the metadata of a subject
    that was gone. SQLite: the delete commits first, the merge is NotFound and changes nothing.
    PostgreSQL: the delete waits for the merge, which moves ``absorb``'s faces and metadata to
    ``keep``; then ``absorb`` is gone: the delete is NotFound and erases nothing."""
    _indexes_saved(gallery, other)
    said: list[str] = []
    merge = _noting(said, lambda: gallery.merge_subjects("c", "a", "b"))
    called, raced = when(gallery, "before UPDATE subjects", merge, lambda: other.delete_subject("c", "b"),
                         racing_on=other)
    faces = assert_in_step(gallery)
    kept = gallery.get_subject("c", "a")
    if _delete_first(gallery):
        assert (called, raced) == (["NotFound"], ["ok"]) and "'b'" in said[0], (called, raced, said)
        assert kept.faces == 3 and kept.metadata == {}
        assert sorted(faces) == sorted(people["a"] + people["c"])
        assert not on_disk(other, _vectors(1, 3)) and not on_disk(gallery, _vectors(1, 3))
    else:
        assert (called, raced) == (["ok"], ["NotFound"]), (called, raced)
        assert kept.faces == 6 and kept.metadata == {"from": "b"}
        [match] = gallery.search("c", Embedding(_vectors(1, 3)[0], RID), k=1, rank_only=True)
        assert (match.external_id, match.best_face_id) == ("a", people["b"][0])
    with pytest.raises(NotFound):
        gallery.get_subject("c", "b")
    assert on_disk(gallery, _vectors(0, 3)) and on_disk(other, _vectors(2, 3))


def test_a_change_of_a_subject_deleted_meanwhile_is_not_found(
        gallery: Gallery, other: Gallery, people: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Soak: StaleDataError on PATCH, a 500."""
    raced = _after_subject_lookup(monkeypatch, gallery, "a", lambda: other.delete_subject("c", "a"))
    with pytest.raises(NotFound, match="'a'"):
        gallery.change_subject("c", "a", name="Renamed", metadata={"x": 1})
    assert raced == ["a"]
    monkeypatch.undo()
    with pytest.raises(NotFound):
        gallery.get_subject("c", "a")


def test_a_move_of_a_face_deleted_meanwhile_is_not_found_and_moves_nothing(
        gallery: Gallery, other: Gallery, people: dict[str, list[int]]) -> None:
    """A face deleted by another process between the move's read of the faces and its update: the
    update moved the others and the index was given the deleted face back. SQLite: the delete
    commits first, the move is NotFound and moves nothing. PostgreSQL: the delete waits for the
    move, then deletes the face from the subject it was moved to. Either way the deleted face's
    vector is in no index file nor in the index, which agrees with the database."""
    _indexes_saved(gallery, other)
    gone, stays = people["a"][:2]
    called, raced = when(gallery, "after SELECT faces.id, faces.embedding",
                         lambda: gallery.move_faces("c", [gone, stays], "c"),
                         lambda: other.delete_face("c", gone), racing_on=other)
    assert not on_disk(other, _vectors(0, 3)[:1])  # the deleting process's folder, at once
    if _delete_first(gallery):
        assert (called, raced) == (["NotFound"], ["ok"]), (called, raced)
        owner, counts = "a", (2, 3)
    else:
        assert (called, raced) == (["ok"], ["ok"]), (called, raced)
        owner, counts = "c", (1, 4)
    assert (gallery.get_subject("c", "a").faces, gallery.get_subject("c", "c").faces) == counts
    faces = assert_in_step(gallery)
    assert gone not in faces and stays in faces
    ids, _ = gallery.face_vectors("c")
    assert gone not in ids.tolist()
    [match] = gallery.search("c", Embedding(_vectors(0, 3)[1], RID), k=1, rank_only=True)
    assert (match.external_id, match.best_face_id) == (owner, stays)
    assert not on_disk(gallery, _vectors(0, 3)[:1]) and on_disk(gallery, _vectors(0, 3)[1:])


def test_an_enrolment_renaming_a_subject_deleted_meanwhile_creates_it_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A door's enrolment renames an existing subject in its transaction: the rename of a subject
    deleted meanwhile was a StaleDataError (a 500); it is run once more, as a subject created by
    another enrolment meanwhile, and creates the subject. SQLite only: on PostgreSQL the
    enrolment holds the collection's row lock, which the delete's revision bump waits for."""
    url = f"sqlite:///{tmp_path / 'g.db'}"
    with Gallery.open(url, tenant="t", index_dir=tmp_path / "one") as gallery, \
            Gallery.open(url, tenant="t", index_dir=tmp_path / "two") as other:
        gallery.create_collection("c", "scrfd-mbf")
        gallery.add_embeddings("c", "a", _vectors(0, 2), recognizer_id=RID)
        find = Gallery._find_or_create_subject
        raced: list[bool] = []

        def lookup(session: Any, collection: Any, external_id: str, name: str | None) -> Any:
            found = find(session, collection, external_id, name)
            if not raced:
                raced.append(True)
                other.delete_subject("c", external_id)
            return found

        monkeypatch.setattr(Gallery, "_find_or_create_subject", staticmethod(lookup))
        ids, _, created, _ = gallery._enrol_vectors("c", "a", _vectors(1, 1), RID, None, None, None, "Anna",
                                                    rename=True)
        monkeypatch.undo()
        assert raced and created
        info = gallery.get_subject("c", "a")
        assert (info.name, info.faces) == ("Anna", 1)
        [match] = gallery.search("c", Embedding(_vectors(1, 1)[0], RID), k=1, rank_only=True)
        assert (match.external_id, match.best_face_id) == ("a", ids[0])
