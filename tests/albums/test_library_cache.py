"""The placed faces an upload is placed against are kept per process between calls (the service
attaches an album per request on its one engine): a second upload reuses them, this process's
corrections update them in place, and another process's placements, corrections and erasures
(another engine on the same database) make them reload, so no stale person and no erased face
is ever matched."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from faceatlas.apps.albums import Album
from faceatlas.apps.albums.album import COLLECTION, LIBRARIES, Libraries, _Library
from faceatlas.db import create_database_engine
from faceatlas.gallery import Gallery
from tests.albums.conftest import copy_people, faces_of_folder, main_person

PEOPLE = ("George_W_Bush", "Colin_Powell", "Tony_Blair")


@pytest.fixture
def service(tmp_path: Path, fast_analyzer, new_database) -> Iterator[tuple[str, object, Gallery]]:
    """A database URL, and one engine and gallery shared by every album attached to them (as the service's)."""
    with new_database("sqlite", tmp_path) as url:
        engine = create_database_engine(url)
        gallery = Gallery.open(url, index_dir=tmp_path / "indexes")
        try:
            yield url, engine, gallery
        finally:
            LIBRARIES.forget(engine)
            gallery.close()
            engine.dispose()


def attach(service: tuple[str, object, Gallery], analyzer, *, create: bool = False) -> Album:
    _, engine, gallery = service
    return Album.attach("family", analyzer, gallery, engine, owner="default", create=create)  # type: ignore[arg-type]


def other_process(service: tuple[str, object, Gallery], analyzer, tmp_path: Path) -> Album:
    """The album opened on an engine of its own: what another process sees of the database."""
    return Album.open("family", analyzer, service[0], index_dir=tmp_path / "indexes")


def upload(album: Album, photo: Path) -> None:
    album.add_photos([(str(photo), photo.read_bytes())], total=1)


def cached(album: Album) -> _Library | None:
    return LIBRARIES.cached(album._engine, album._id)


def placed(album: Album) -> dict[int, int]:
    """Face id -> person id of every placed face, as the database has them."""
    ids, _, labels = album._placed()
    return dict(zip(ids.tolist(), labels.tolist()))


def assert_current(album: Album) -> None:
    """The cached library is the database's placed faces, at the album's revision, vectors included."""
    library = cached(album)
    assert library is not None and library.token == album._token()
    assert dict(zip(library.ids.tolist(), library.labels.tolist())) == placed(album)
    _, vectors = album.gallery.face_vectors(COLLECTION, library.ids.tolist())
    order = np.argsort(library.ids)
    assert np.allclose(library.index.reconstruct_n(0, len(library))[order], vectors, atol=1e-5)


@pytest.fixture
def scanned(service, fast_analyzer, lfw: Path, tmp_path: Path) -> Album:
    album = attach(service, fast_analyzer, create=True)
    album.scan(copy_people(lfw, tmp_path / "photos", PEOPLE, 3))
    return album


def test_a_second_upload_reuses_the_library_and_corrections_update_it_in_place(
        scanned: Album, service, fast_analyzer, lfw: Path) -> None:
    library = cached(scanned)
    assert library is not None and len(library) == len(placed(scanned))
    assert_current(scanned)
    request = attach(service, fast_analyzer)  # the next request: another Album on the same engine
    before = len(library)
    upload(request, sorted((lfw / "George_W_Bush").glob("*.jpg"))[5])
    assert cached(request) is library and len(library) > before  # not read again: the new faces added
    assert_current(request)
    bush, powell = main_person(request, "George_W_Bush"), main_person(request, "Colin_Powell")
    blair = main_person(request, "Tony_Blair")
    request.merge(bush, powell)
    request.split(faces_of_folder(request, blair, "Tony_Blair")[:1])
    request.reject(faces_of_folder(request, bush, "Colin_Powell")[0])
    unsorted = request.faces(None)
    if unsorted:  # a face of the pool given to a person joins the library with its vector
        request.move(unsorted[0].id, bush)
    request.recluster()
    assert cached(scanned) is library  # every correction of this process applied in place
    assert_current(scanned)
    upload(scanned, sorted((lfw / "Tony_Blair").glob("*.jpg"))[5])
    assert cached(scanned) is library
    assert_current(scanned)


def test_a_merge_by_another_process_is_seen(scanned: Album, service, fast_analyzer, lfw: Path,
                                            tmp_path: Path) -> None:
    library = cached(scanned)
    bush, powell = main_person(scanned, "George_W_Bush"), main_person(scanned, "Colin_Powell")
    with other_process(service, fast_analyzer, tmp_path) as other:
        kept = other.merge(bush, powell).id
    photo = sorted((lfw / "Colin_Powell").glob("*.jpg"))[4]
    upload(scanned, photo)
    reloaded = cached(scanned)
    assert reloaded is not library and int(powell[1:]) not in reloaded.labels.tolist()
    assert_current(scanned)
    new_faces = [f for f in scanned.faces(kept) if f.source == str(photo)]
    assert new_faces  # Powell's new face joins the merged person, not the one merged away
    people = {p.id for p in scanned.people()}
    assert all(f.person in people for p in scanned.people() for f in scanned.faces(p.id))


def test_an_erasure_by_another_process_is_never_matched_again(scanned: Album, service, fast_analyzer,
                                                              lfw: Path, tmp_path: Path) -> None:
    blair = main_person(scanned, "Tony_Blair")
    erased = set(faces_of_folder(scanned, blair, "Tony_Blair"))
    assert erased <= set(cached(scanned).ids.tolist())
    with other_process(service, fast_analyzer, tmp_path) as other:
        assert other.erase(blair).faces_deleted >= len(erased)
    photo = sorted((lfw / "Tony_Blair").glob("*.jpg"))[4]
    report = scanned.add_photos([(str(photo), photo.read_bytes())], total=1)
    assert not erased & set(cached(scanned).ids.tolist())
    assert_current(scanned)
    new = [f for p in scanned.people() for f in scanned.faces(p.id) if f.source == str(photo)]
    assert new and report.new_people == len({f.person for f in new})  # nothing of the erased one to join
    assert all(scanned.person(f.person or "").faces == 1 for f in new)


def test_an_erasure_here_drops_the_library_at_once_and_other_placements_reload(
        scanned: Album, service, fast_analyzer, lfw: Path, tmp_path: Path) -> None:
    library = cached(scanned)
    with other_process(service, fast_analyzer, tmp_path) as other:  # another process's upload
        upload(other, sorted((lfw / "George_W_Bush").glob("*.jpg"))[6])
    assert library.token != scanned._token()
    upload(scanned, sorted((lfw / "George_W_Bush").glob("*.jpg"))[7])
    assert cached(scanned) is not library
    assert_current(scanned)  # the other process's faces are in it
    scanned.erase(main_person(scanned, "Tony_Blair"))
    assert cached(scanned) is None


def test_libraries_keep_the_most_recently_used_within_their_budget() -> None:
    engine = create_database_engine("sqlite://")
    libraries = Libraries(max_faces=10)
    vectors = np.eye(6, 8, dtype=np.float32)

    def library(revision: int) -> _Library:
        return _Library(np.arange(6), vectors, np.zeros(6, np.int64), (datetime(2026, 1, 1), revision))

    first, second = library(1), library(1)
    libraries.put(engine, 1, first)
    assert libraries.get(engine, 1, first.token) is first
    assert libraries.get(engine, 1, (first.token[0], 2)) is None  # another revision: dropped
    assert libraries.cached(engine, 1) is None
    libraries.put(engine, 1, first)
    libraries.put(engine, 2, second)  # 12 faces > 10: the least recently used goes
    assert libraries.cached(engine, 1) is None and libraries.cached(engine, 2) is second
    libraries.forget(engine)
    assert libraries.cached(engine, 2) is None
    engine.dispose()
