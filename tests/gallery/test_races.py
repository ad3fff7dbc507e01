"""Gallery calls racing another process's delete, made deterministic: a second :class:`Gallery` on
the same database (its own index folder, as another server process) deletes the subject or face at
the exact step between the call's read and its write. A 10-minute soak of two servers on PostgreSQL
answered 500s there: search KeyError, merge IntegrityError (faces_subject_id_fkey), PATCH
StaleDataError. The subject gone meanwhile is not found (404), nothing changed; a search leaves it out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event

from faceatlas.engine import Embedding, get_pack, l2_normalize
from faceatlas.gallery import Gallery, NotFound

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


def _no_interleaving_on_postgres(db_url: str) -> None:
    """On PostgreSQL the call holds the collection's row from its start (every write takes it first:
    test_write_races.py), so another process's delete waits for it: the step made here cannot happen
    there (and, run in this thread, would wait forever)."""
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL: the collection's row lock orders the delete after the call")


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
        db_url: str, gallery: Gallery, other: Gallery, people: dict[str, list[int]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Soak: IntegrityError (faces_subject_id_fkey), a 500."""
    _no_interleaving_on_postgres(db_url)
    raced = _after_subject_lookup(monkeypatch, gallery, "a", lambda: other.delete_subject("c", "a"))
    with pytest.raises(NotFound, match="'a'"):
        gallery.merge_subjects("c", "a", "b")
    assert raced == ["a"]
    monkeypatch.undo()
    with pytest.raises(NotFound):
        gallery.get_subject("c", "a")
    kept = gallery.get_subject("c", "b")
    assert kept.faces == 3 and kept.metadata == {"from": "b"}
    [match] = gallery.search("c", Embedding(_vectors(1, 3)[0], RID), k=1, rank_only=True)
    assert (match.external_id, match.best_face_id) == ("b", people["b"][0])


def test_a_merge_of_a_subject_deleted_meanwhile_is_not_found_and_changes_nothing(
        db_url: str, gallery: Gallery, other: Gallery, people: dict[str, list[int]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The subject absorbed deleted meanwhile: the merge answered as done (SQLAlchemy's warning
    that its DELETE matched no row), ``keep`` given the metadata of a subject that was gone."""
    _no_interleaving_on_postgres(db_url)
    _after_subject_lookup(monkeypatch, gallery, "b", lambda: other.delete_subject("c", "b"))
    with pytest.raises(NotFound, match="'b'"):
        gallery.merge_subjects("c", "a", "b")
    monkeypatch.undo()
    kept = gallery.get_subject("c", "a")
    assert kept.faces == 3 and kept.metadata == {}


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
        db_url: str, gallery: Gallery, other: Gallery, people: dict[str, list[int]]) -> None:
    """A face deleted between the move's read of the faces and its update: the update moved the
    others and the index was given the deleted face back."""
    _no_interleaving_on_postgres(db_url)
    gone, stays = people["a"][:2]
    armed = [True]

    def then_deleted(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if armed and statement.lstrip().startswith("SELECT faces.id, faces.embedding"):
            armed.clear()
            other.delete_face("c", gone)

    event.listen(gallery.engine, "after_cursor_execute", then_deleted)
    try:
        with pytest.raises(NotFound):
            gallery.move_faces("c", [gone, stays], "c")
    finally:
        event.remove(gallery.engine, "after_cursor_execute", then_deleted)
    assert not armed
    assert gallery.get_subject("c", "a").faces == 2 and gallery.get_subject("c", "c").faces == 3
    ids, _ = gallery.face_vectors("c")
    assert gone not in ids.tolist()
    [match] = gallery.search("c", Embedding(_vectors(0, 3)[1], RID), k=1, rank_only=True)
    assert (match.external_id, match.best_face_id) == ("a", stays)


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
