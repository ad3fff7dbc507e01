"""Albums on real LFW photos: scan, rescan by hash, corrections surviving scans and re-clusters, erasure."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from faceatlas.apps.albums import Album, album_pack
from faceatlas.engine import Embedding, FaceAnalyzer, ModelMismatch
from faceatlas.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from tests.albums.conftest import PEOPLE, copy_people, faces_of_folder, main_person, with_date


def test_scan_groups_people_and_skips_rescans_by_hash(album: Album, library: Path, monkeypatch) -> None:
    monkeypatch.setattr("faceatlas.apps.albums.album.CHUNK", 5)  # four increments in one scan
    seen: list[tuple[int, int]] = []
    first = album.scan(library, on_progress=lambda done, total: seen.append((done, total)))
    assert first.photos == 16 and first.skipped == 0 and first.faces + first.unsorted >= 16
    assert seen[-1] == (16, 16)
    mains = {person: main_person(album, person) for person in PEOPLE}
    assert len(set(mains.values())) == 4  # four people, none merged
    for person, pid in mains.items():
        assert len(faces_of_folder(album, pid, person)) >= 3
        assert album.person(pid).cover_face is not None
    again = album.scan(library)
    assert again.photos == 0 and again.skipped == 16 and again.faces == 0
    assert len(album.gallery.face_vectors("faces")[0]) == first.faces + first.unsorted


def test_merge_and_split_survive_a_scan_and_a_recluster(album: Album, library: Path, lfw: Path) -> None:
    album.scan(library)
    bush, powell = main_person(album, "George_W_Bush"), main_person(album, "Colin_Powell")
    blair = main_person(album, "Tony_Blair")
    merged_faces = set(album_ids(album, bush) + album_ids(album, powell))
    merged = album.merge(bush, powell)  # the user says they are one (wrongly, but it is theirs to say)
    album.name_person(merged.id, "Bush or Powell")
    moved = album.faces(blair)[0].id
    split = album.split([moved])
    blair_rest = [f for f in album_ids(album, blair)]
    copy_people(lfw, library, PEOPLE, 3, skip=4)  # more photos of the same people
    assert album.scan(library).photos >= 10
    for _ in range(2):
        named = album.person("Bush or Powell")
        assert {album.face(f).person for f in merged_faces} == {named.id}
        assert album.face(moved).person == split.id or album.face(moved).person not in {
            album.face(f).person for f in blair_rest}
        assert album.face(moved).person not in {album.face(f).person for f in blair_rest}
        album.recluster()


def _lance(lfw: Path, folder: Path, numbers: tuple[str, ...]) -> Path:
    folder.mkdir(parents=True)
    for number in numbers:
        shutil.copy(lfw / "Lance_Armstrong" / f"Lance_Armstrong_{number}.jpg", folder)
    return folder


def test_recluster_never_joins_two_named_people(album: Album, lfw: Path, tmp_path: Path) -> None:
    """Two groups of photos that match only through a third photo (at the album's threshold),
    named apart by the user (two look-alikes, say): the bridging photo joins one of them in the
    scan, and a re-cluster keeps them apart too, both names kept."""
    left = _lance(lfw, tmp_path / "left", ("0001", "0009", "0017"))
    right = _lance(lfw, tmp_path / "right", ("0005", "0007", "0011"))
    album.scan(left)
    lance = album.name_person(main_person(album, "left"), "Lance")
    album.scan(right)
    armstrong = album.name_person(main_person(album, "right"), "Armstrong")
    assert lance.id != armstrong.id and lance.faces == armstrong.faces == 3
    album.scan(_lance(lfw, tmp_path / "bridge", ("0018",)))
    bridge = [f for p in album.people() for f in album.faces(p.id) if "/bridge/" in f.source]
    assert len(bridge) == 1 and bridge[0].person in (lance.id, armstrong.id)
    lance_faces, armstrong_faces = album_ids(album, "Lance"), album_ids(album, "Armstrong")
    album.recluster()
    assert album.person("Lance").id == lance.id and album.person("Armstrong").id == armstrong.id
    assert album_ids(album, "Lance") == lance_faces and album_ids(album, "Armstrong") == armstrong_faces
    with pytest.raises(AlreadyExists, match="merge"):  # one name, one person
        album.name_person(armstrong.id, "Lance")
    from sqlalchemy import update

    from faceatlas.apps.albums.db import Person

    with album._sessions.begin() as session:  # two people of one name, as named before that rule
        session.execute(update(Person).where(Person.id == int(armstrong.id[1:])).values(name="Lance"))
    with pytest.raises(InvalidArgument, match=rf"use their ids \({lance.id}, {armstrong.id}\)"):
        album.person("Lance")  # the error names the ids to use instead


def test_recluster_gives_a_named_person_the_cluster_of_its_faces(album: Album, lfw: Path, tmp_path: Path) -> None:
    """Faces scanned apart (a stricter threshold then) and joined by a re-cluster: the one the user
    named keeps its name and id, though an unnamed person matches the cluster as well."""
    threshold = album.threshold
    album.threshold = 0.99  # each face a person of its own
    album.scan(_lance(lfw, tmp_path / "lance", ("0001", "0009", "0017")))
    people = sorted(int(p.id[1:]) for p in album.people())
    assert len(people) == 3
    named = album.name_person(f"p{people[-1]}", "Lance")
    album.threshold = threshold
    album.recluster()
    assert album.person("Lance").id == named.id and album.person("Lance").faces == 3
    assert [p.id for p in album.people()] == [named.id]


def test_reject_keeps_a_face_out(album: Album, library: Path, lfw: Path) -> None:
    album.scan(library)
    rumsfeld = main_person(album, "Donald_Rumsfeld")
    rejected = album.faces(rumsfeld)[-1].id
    others = [f for f in album_ids(album, rumsfeld) if f != rejected]
    album.reject(rejected)
    assert album.face(rejected).person != rumsfeld
    copy_people(lfw, library, ("Donald_Rumsfeld",), 3, skip=4)
    album.scan(library)
    album.recluster()
    assert album.face(rejected).person not in {album.face(f).person for f in others}


def test_promote_then_erase_removes_the_persons_vectors(album: Album, library: Path) -> None:
    album.scan(library)
    blair = main_person(album, "Tony_Blair")
    faces = album_ids(album, blair)
    album.gallery.for_tenant("default").create_collection("known", album.analyzer)
    known = album.gallery.for_tenant("default")
    assert album.promote(blair, known, "known", "tony") == len(faces)
    assert album.promote(blair, known, "known", "tony") == 0  # again: nothing twice (it enrolled every face again)
    assert known.get_subject("known", "tony").faces == len(faces)
    probe = album.gallery.face_vectors("faces", faces[:1])[1][0]
    match = known.search("known", Embedding(probe, album.analyzer.pack.recognizer_id), k=1)
    assert match and match[0].external_id == "tony"
    before = set(album.gallery.face_vectors("faces")[0].tolist())
    assert album.erase(blair).faces_deleted == len(faces)
    after = set(album.gallery.face_vectors("faces")[0].tolist())
    assert before - after == set(faces)
    assert blair not in {p.id for p in album.people()}


def test_contact_sheet_of_the_unsorted_pool(album: Album, library: Path, tmp_path: Path) -> None:
    report = album.scan(library)
    pool = album.faces(None)
    assert len(pool) == report.unsorted >= 1
    sheet = album.contact_sheet(None, tmp_path / "pool.png", columns=4)
    assert sheet.faces == len(pool) and sheet.unreadable == []
    with Image.open(sheet.path) as image:  # one 112-pixel tile per face of the pool, 4 to a row
        assert image.size == (112 * min(4, len(pool)), 112 * -(-len(pool) // 4))


def test_timeline_by_exif_date(album: Album, lfw: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dated"
    folder.mkdir()
    photos = sorted((lfw / "George_W_Bush").glob("*.jpg"))[:3] + sorted((lfw / "Colin_Powell").glob("*.jpg"))[:1]
    for n, (photo, year) in enumerate(zip(photos, (2021, 2019, 2020, 2018))):
        with_date(photo, folder / f"photo{n}.jpg", datetime(year, 5, 1, 12, 0, 0))
    album.scan(folder)
    bush = album.people()[0]
    years = [p.taken_at.year for p in album.timeline(bush.id) if p.taken_at]
    assert years == [2019, 2020, 2021]


def test_photos_together(album: Album, examples: Path, tmp_path: Path) -> None:
    """Obama and Biden each a person of the album (two photos of each alone), and one photo of
    them together: only that photo holds both."""
    knn = examples / "examples" / "knn_examples"
    for person in ("obama", "biden"):
        shutil.copytree(knn / "train" / person, tmp_path / "photos" / person)
    (tmp_path / "photos" / "group").mkdir()
    group = shutil.copy(knn / "test" / "obama_and_biden.jpg", tmp_path / "photos" / "group")
    album.scan(tmp_path / "photos")
    obama, biden = main_person(album, "obama"), main_person(album, "biden")
    assert obama != biden and len(faces_of_folder(album, obama, "obama")) == 2
    assert len(faces_of_folder(album, biden, "biden")) == 2
    assert len(faces_of_folder(album, obama, "group")) == len(faces_of_folder(album, biden, "group")) == 1
    alone = tmp_path / "photos" / "obama" / "obama.jpg"
    assert str(alone) in {p.source for p in album.timeline(obama)}
    together = album.together([obama, biden])
    assert [p.source for p in together] == [str(group)]  # not a photo of only one of them
    assert [p.source for p in album.together([biden, obama])] == [str(group)]


def album_ids(album: Album, person: str) -> list[int]:
    return [f.id for f in album.faces(person)]


def test_exif_orientation_is_applied(album: Album, lfw: Path, tmp_path: Path) -> None:
    """A photo stored sideways with EXIF orientation 6 (as phones write them) joins its person."""
    folder = tmp_path / "phone"
    folder.mkdir()
    photos = sorted((lfw / "George_W_Bush").glob("*.jpg"))[:3]
    for photo in photos[:2]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    with Image.open(photos[2]) as upright:
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to display
        upright.rotate(90, expand=True).save(folder / "sideways.jpg", exif=exif, quality=95)
    album.scan(folder)
    sideways = [f for p in album.people() for f in album.faces(p.id) if f.source.endswith("sideways.jpg")]
    assert sideways and sideways[0].person == main_person(album, "phone")
    assert album.person(sideways[0].person or "").faces >= 3


def test_unreadable_photos_are_reported_and_the_rest_of_their_group_is_added(album: Album, library: Path) -> None:
    good = sorted(library.rglob("*.jpg"))
    (library / "George_W_Bush" / "broken.jpg").write_bytes(b"not a photo at all")
    (library / "Colin_Powell" / "truncated.jpg").write_bytes(good[0].read_bytes()[:300])
    report = album.scan(library)
    assert sorted(Path(r.source).name for r in report.failed) == ["broken.jpg", "truncated.jpg"]
    assert all(r.code in ("invalid_image", "truncated_image") for r in report.failed)
    assert report.photos == len(good) == 16  # every readable photo, though a group held a bad one
    assert report.faces + report.unsorted >= 16


def test_a_person_id_is_never_given_again(album: Album, library: Path) -> None:
    """After a merge removes a person, a later split must not hand out the removed person's id: a
    reference to it (a bookmark, a script, the gallery subject ``p<id>``) would silently mean
    someone else. SQLite gave the highest removed id again (rowid without AUTOINCREMENT)."""
    album.scan(library)
    ids = sorted((p.id for p in album.people()), key=lambda pid: int(pid[1:]))
    highest, other = ids[-1], ids[0]
    album.merge(other, highest)  # the highest id goes
    split = album.split([album.faces(other)[0].id])
    assert split.id not in ids, f"{split.id} was given again"


def test_a_scan_stopped_mid_chunk_loses_no_face(album: Album, library: Path, monkeypatch) -> None:
    """Photos were committed before their faces: a scan stopped in between (Ctrl-C, a kill) left 50
    photos with 0 faces, and every later scan skipped them as scanned. Now a photo is recorded with
    its faces, so the next scan adds what the stopped one had not finished."""
    monkeypatch.setattr("faceatlas.apps.albums.album.CHUNK", 8)
    calls = {"n": 0}
    add = album.gallery.add_embeddings

    def stopped_on_the_second_person(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return add(*args, **kwargs)

    monkeypatch.setattr(album.gallery, "add_embeddings", stopped_on_the_second_person)
    with pytest.raises(KeyboardInterrupt):
        album.scan(library)
    monkeypatch.setattr(album.gallery, "add_embeddings", add)
    again = album.scan(library)
    assert again.photos == 16 and again.skipped == 0 and again.faces + again.unsorted >= 16
    placed = sum(p.faces for p in album.people()) + len(album.faces(None))
    assert placed == again.faces + again.unsorted
    assert len(set(main_person(album, person) for person in PEOPLE)) == 4


def test_a_name_refused_renames_nothing(album: Album, library: Path) -> None:
    """A 350-character name (or one with a line break) answered an error after the album had renamed
    the person (the album took 400 characters, the gallery 300); "p5" shadowed the real p5."""
    album.scan(library)
    person = album.people()[0]
    others = {p.id for p in album.people()} - {person.id}
    for name in ("N" * 350, "two\nlines", "  ", next(iter(others)), "unsorted"):
        with pytest.raises(InvalidArgument):
            album.name_person(person.id, name)
        assert album.person(person.id).name == person.name
    assert album.name_person(person.id, "  Ana María  ").name == "Ana María"


def test_a_photo_whose_name_is_not_utf8_is_added(album: Album, library: Path) -> None:
    """Its path could not be stored as text: the scan was an SQLAlchemy traceback and the other
    photos of its chunk were not added either."""
    import os

    photo = next(library.rglob("*.jpg"))
    odd = os.fsencode(str(photo.parent)) + b"/caf\xe9.jpg"
    with open(odd, "wb") as handle:
        handle.write(photo.read_bytes())
    os.remove(photo)
    report = album.scan(library)
    assert report.photos == 16 and not report.failed
    assert any("caf\ufffd.jpg" in f.source for p in album.people() for f in album.faces(p.id)) or \
        any("caf\ufffd.jpg" in f.source for f in album.faces(None))


def test_two_scans_adding_one_photo_is_a_conflict_that_leaves_no_vector_behind(album: Album, library: Path,
                                                                            monkeypatch) -> None:
    """The second of two scans of one folder failed with "database_unavailable: UNIQUE constraint
    failed" (nothing was wrong with the database)."""
    from faceatlas.apps.albums.db import Photo
    from faceatlas.apps.albums.photos import content_hash
    from faceatlas.errors import Conflict

    first = next(iter(sorted(library.rglob("*.jpg"))))
    add = album.gallery.add_embeddings

    def another_scan_records_the_photo_meanwhile(*args, **kwargs):
        with album._sessions.begin() as session:
            if session.query(Photo).filter_by(album_id=album._id).count() == 0:
                session.add(Photo(album_id=album._id, sha256=content_hash(first.read_bytes()), source="other"))
        return add(*args, **kwargs)

    monkeypatch.setattr(album.gallery, "add_embeddings", another_scan_records_the_photo_meanwhile)
    with pytest.raises(Conflict, match="another scan"):
        album.scan(library)
    monkeypatch.setattr(album.gallery, "add_embeddings", add)
    assert len(album.gallery.face_vectors("faces")[0]) == 0  # the chunk's vectors went with it
    again = album.scan(library)
    assert again.skipped == 1 and again.photos == 15


def test_uploads_creating_one_album_at_once_all_find_it(tmp_path: Path, fast_analyzer, new_database) -> None:
    """Five uploads to a new album at once: one 500 (the album row's unique name) and 409s leaking
    "collection 'faces' already exists"."""
    from concurrent.futures import ThreadPoolExecutor

    from faceatlas.db import create_database_engine
    from faceatlas.gallery import Gallery

    with new_database("sqlite", tmp_path) as url, Gallery.open(url, index_dir=tmp_path / "idx") as gallery:
        engine = create_database_engine(url)
        Album.attach("warmup", fast_analyzer, gallery, engine, owner="o", create=True)  # the tables exist

        import threading

        from sqlalchemy import event

        meet = {table: threading.Barrier(2, timeout=10) for table in ("album_albums", "collections")}

        def both_insert(conn, cursor, statement, parameters, context, executemany):  # staged: both looked first
            for table, barrier in meet.items():
                if statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()}"):
                    barrier.wait()

        def attach(_: int) -> int:
            return Album.attach("race", fast_analyzer, gallery, engine, owner="o", migrated=True, create=True)._id

        gallery_engine = gallery._sessions.kw["bind"]
        event.listen(engine, "before_cursor_execute", both_insert)
        event.listen(gallery_engine, "before_cursor_execute", both_insert)
        try:
            with ThreadPoolExecutor(2) as pool:
                ids = list(pool.map(attach, range(2)))
        finally:
            event.remove(engine, "before_cursor_execute", both_insert)
            event.remove(gallery_engine, "before_cursor_execute", both_insert)
        engine.dispose()
    assert len(set(ids)) == 1 and not any(b.broken for b in meet.values())


def test_opening_a_missing_album_makes_no_row_anywhere(album: Album, tmp_path: Path, fast_analyzer) -> None:
    """A read of a mistyped album name was NotFound but left a gallery tenant row
    ``app:albums:default:<typo>`` behind (one per typo, for ever)."""
    from sqlalchemy import func, select

    from faceatlas.errors import NotFound
    from faceatlas.gallery.models import Tenant

    url = album._engine.url.render_as_string(hide_password=False)
    with album.gallery._sessions() as session:
        before = session.scalar(select(func.count()).select_from(Tenant))
    with pytest.raises(NotFound, match="no album 'famliy'"):
        Album.open("famliy", fast_analyzer, url, index_dir=tmp_path / "indexes")
    with album.gallery._sessions() as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == before
        assert not session.scalar(select(Tenant.id).where(Tenant.name.like("%famliy%")))


def test_photos_under_linked_folders_are_found_once_and_a_loop_ends(lfw: Path, tmp_path: Path) -> None:
    """A library of linked person folders (``album scan`` said "no photos under this folder" where
    ``gallery enrol`` walked it); a link back to a parent folder is followed once, not forever."""
    from faceatlas.apps.albums.photos import find_photos

    real = tmp_path / "real"
    copy_people(lfw, real, PEOPLE[:2], 2)
    linked = tmp_path / "linked"
    linked.mkdir()
    for person in sorted(real.iterdir()):
        (linked / person.name).symlink_to(person, target_is_directory=True)
    (linked / "loop").symlink_to(linked, target_is_directory=True)
    found = find_photos(linked)
    assert len(found) == 4 and {p.parent.name for p in found} == {p.name for p in real.iterdir()}


def test_photos_are_kept_by_absolute_path_and_a_rescan_finds_a_moved_folder(album: Album, library: Path,
                                                                             tmp_path: Path, monkeypatch) -> None:
    """A scan of a relative folder stored paths relative to where it ran (the sheet drawn from
    anywhere else was all grey tiles, silently); a moved folder's photos, skipped by content on the
    rescan, kept their old paths for ever; a deleted photo was a grey tile nobody was told of."""
    monkeypatch.chdir(library.parent)
    album.scan(Path(library.name))
    monkeypatch.chdir(tmp_path.parent)
    blair = main_person(album, "Tony_Blair")
    sources = [f.source for f in album.faces(blair)]
    assert all(Path(s).is_absolute() and Path(s).is_file() for s in sources)
    assert album.contact_sheet(blair, tmp_path / "blair.png").unreadable == []
    (library / "moved").mkdir()
    (library / "Tony_Blair").rename(library / "moved" / "Tony_Blair")
    gone = album.contact_sheet(blair, tmp_path / "blair.png")
    assert sorted(gone.unreadable) == sorted(set(sources)) and gone.faces == len(sources)
    again = album.scan(library)
    assert again.photos == 0 and again.skipped == 16 and again.moved == 4
    assert all("/moved/Tony_Blair/" in f.source for f in album.faces(blair))
    assert album.contact_sheet(blair, tmp_path / "blair.png").unreadable == []
    assert album.scan(library).moved == 0  # found where it is kept: nothing to move
    deleted = Path(album.faces(blair)[0].source)
    deleted.unlink()
    assert album.contact_sheet(blair, tmp_path / "blair.png").unreadable == [str(deleted)]


def test_a_relative_path_of_an_old_album_is_reported_missing_until_a_rescan(album: Album, library: Path,
                                                                           tmp_path: Path, monkeypatch) -> None:
    """Albums scanned before kept paths relative to where the scan ran: nothing says where that
    was, so they are missing (even where the folder happens to be the working one)."""
    from sqlalchemy import update

    from faceatlas.apps.albums.db import Photo

    album.scan(library)
    blair = main_person(album, "Tony_Blair")
    with album._sessions.begin() as session:
        for photo in session.scalars(select_photos(album)):
            session.execute(update(Photo).where(Photo.id == photo.id).values(
                source=str(Path(photo.source).relative_to(library.parent))))
    monkeypatch.chdir(library.parent)  # where the relative paths would lead
    missing = album.contact_sheet(blair, tmp_path / "blair.png").unreadable
    assert missing and all(not Path(s).is_absolute() for s in missing)
    assert album.scan(library).moved == 16
    assert album.contact_sheet(blair, tmp_path / "blair.png").unreadable == []


def select_photos(album: Album):
    from sqlalchemy import select

    from faceatlas.apps.albums.db import Photo

    return select(Photo).where(Photo.album_id == album._id)


def test_a_person_reference_beyond_any_row_id_is_not_found(album: Album, library: Path) -> None:
    """'p' + 23 digits, or a Unicode digit ('²'), went into SQL as a number: OverflowError and
    ValueError, a 500 on every album route naming a person. Both are no person (404)."""
    album.scan(library)
    someone = album.people()[0].id
    for ref in ("99999999999999999999999", "p99999999999999999999999", "²", "p²"):
        for use in (album.person, album.faces, album.timeline, lambda r: album.merge(r, someone)):
            with pytest.raises(NotFound, match="no person"):
                use(ref)


def test_a_name_with_a_slash_is_refused_naming_the_rule(album: Album, library: Path) -> None:
    """"AC/DC" was accepted, and then no URL reached the person by it (``people/AC%2FDC/faces``
    answered the router's bare "Not Found", the Python client's call too): refused at naming."""
    album.scan(library)
    person = album.people()[0]
    for name in ("AC/DC", "/", " a/ "):
        with pytest.raises(InvalidArgument, match="without '/'"):
            album.name_person(person.id, name)
        assert album.person(person.id).name is None
    assert album.name_person(person.id, "AC-DC").name == "AC-DC"


def test_a_name_another_person_holds_is_refused(album: Album, library: Path) -> None:
    """Two people named "X" were accepted, and every later reference by "X" failed ("2 people are
    named 'X'"): the second naming is AlreadyExists (409) pointing at a merge, nothing renamed."""
    album.scan(library)
    first, second = album.people()[:2]
    album.name_person(first.id, "Ann")
    with pytest.raises(AlreadyExists, match=rf"{first.id} is already named 'Ann'.*merge"):
        album.name_person(second.id, "  Ann ")
    assert album.person(second.id).name is None and album.person("Ann").id == first.id
    assert album.name_person(first.id, "Ann").id == first.id  # naming a person again as they are is no conflict
    assert album.name_person(second.id, "ann").id == second.id  # names compare exactly, as references find them
    assert album.person("ann").id == second.id and album.person("Ann").id == first.id


def test_keep_crops_asked_of_an_album_made_without_them_is_a_conflict(album: Album, library: Path,
                                                                      fast_analyzer, tmp_path: Path) -> None:
    """An upload with keep_crops=true to an album made without crops was 200 and kept none (the
    crop route then said "keeps no face crops"): a Conflict before any photo is added."""
    from faceatlas.gallery import Gallery

    url = album._engine.url.render_as_string(hide_password=False)
    with Gallery.open(url, index_dir=tmp_path / "indexes") as gallery:
        def attach(name: str) -> Album:
            return Album.attach(name, fast_analyzer, gallery, album._engine, owner=album.owner, create=True,
                                keep_crops=True)

        with pytest.raises(Conflict, match="created without face crops"):
            attach(album.name)
        assert attach("cropped").keeps_crops
        assert attach("cropped").keeps_crops  # asked again of an album that keeps them: no conflict
    with Album.open("cropped2", fast_analyzer, url, index_dir=tmp_path / "indexes", create=True,
                    keep_crops=True) as cropped:  # as the CLI opens albums
        assert cropped.keeps_crops
    assert album.scan(library).photos == 16 and not album.keeps_crops


def test_keep_crops_false_asked_of_an_album_made_with_them_is_a_conflict(album: Album, library: Path,
                                                                       fast_analyzer, tmp_path: Path) -> None:
    """Found by a probe: an upload with keep_crops=false to an album made with crops was 200 and its
    faces' crops were kept (the crop route served them), where the opposite was already a conflict:
    the user asked for no crop, so nothing is added (Conflict naming the album's setting). Left
    unsaid (None), the album's setting applies, either way."""
    from faceatlas.gallery import Gallery

    url = album._engine.url.render_as_string(hide_password=False)
    photos = sorted(library.rglob("*.jpg"))
    with Gallery.open(url, index_dir=tmp_path / "indexes") as gallery:
        def attach(name: str, keep_crops: bool | None) -> Album:
            return Album.attach(name, fast_analyzer, gallery, album._engine, owner=album.owner, create=True,
                                keep_crops=keep_crops)

        cropped = attach("cropped", True)
        added = cropped.add_photos([("upload", photos[0].read_bytes())])
        with pytest.raises(Conflict, match="'cropped' was created keeping face crops.*not added"):
            attach("cropped", False).add_photos([("upload", photos[1].read_bytes())])
        faces = len(cropped.gallery.face_vectors("faces")[0])
        assert faces == added.faces + added.unsorted  # nothing of the refused photo
        unsaid = attach("cropped", None)
        assert unsaid.keeps_crops and unsaid.add_photos([("upload", photos[1].read_bytes())]).photos == 1
        assert all(unsaid.face_crop(f.id) for p in unsaid.people() for f in unsaid.faces(p.id))
        assert not any(attach("plain", asked).keeps_crops for asked in (False, False, None))


def test_an_album_that_holds_no_photo_takes_the_pack_of_its_first_photos(fast_analyzer, new_database,
                                                                         lfw: Path, tmp_path: Path) -> None:
    """An album whose first scan added no photo (every photo failed, or a scan of a folder without
    photos made it before that was refused first) had its pack fixed all the same: a scan of photos
    with another pack was model_mismatch ("holds embeddings of pack ...", of none). It takes the pack
    of the scan that adds its first photos; once it holds some, another pack is refused, saying what
    applies to an album (its pack, or deleting it), not `gallery reembed`."""
    other = FaceAnalyzer("yunet-frfeature")
    broken = tmp_path / "broken"
    broken.mkdir()
    photo = sorted((lfw / "Tony_Blair").glob("*.jpg"))[0].read_bytes()
    (broken / "cut.jpg").write_bytes(photo[: len(photo) // 3])  # a real photo, cut short: it fails
    library = copy_people(lfw, tmp_path / "photos", ("Tony_Blair",), 2)
    indexes = tmp_path / "indexes"
    with new_database("sqlite", tmp_path) as url:
        with Album.open("trip", other, url, index_dir=indexes, create=True) as made:
            report = made.scan(broken)
            assert report.photos == 0 and len(report.failed) == 1
        assert album_pack("trip", url) == "yunet-frfeature"
        with Album.open("trip", fast_analyzer, url, index_dir=indexes, create=True) as trip:
            assert trip.scan(library).photos == 2
        assert album_pack("trip", url) == "scrfd-mbf"
        with Album.open("trip", fast_analyzer, url, index_dir=indexes) as trip:
            assert sum(p.faces for p in trip.people()) >= 2
        with pytest.raises(ModelMismatch, match=r"with pack 'scrfd-mbf'.*`faceatlas album delete trip`") as info:
            Album.open("trip", other, url, index_dir=indexes, create=True)
        assert "reembed" not in str(info.value)


def test_a_name_that_spells_a_person_id_says_so_and_finds_that_person(album: Album, library: Path) -> None:
    """Found by a probe: `album name p4 "P6"` was refused as "not a person id" while `album show P6`
    answered "no person 'P6'" (P6 was an id to the name rule, not to references): the refusal says
    the name would be read as that id, and ``P6`` finds p6 as ``p6`` does."""
    album.scan(library)
    person, other = album.people()[:2]
    number = person.id[1:]
    for name in ("P6", "p6", "6", " 012 ", f"P{number}"):
        with pytest.raises(InvalidArgument, match=r"cannot look like a person id \(p<digits>, in any case.*ambiguous"):
            album.name_person(other.id, name)
    assert album.person(f"P{number}").id == person.id and album.person(f" P0{number}").id == person.id
    assert album.faces(f"P{number}") == album.faces(person.id)
    assert album.merge(person.id, f"P{other.id[1:]}").id == person.id
    with pytest.raises(InvalidArgument, match="cannot be 'unsorted'"):
        album.name_person(person.id, "Unsorted")
    assert album.person(person.id).name is None


def test_dot_names_are_refused(album: Album, library: Path) -> None:
    """Found by a probe: a person named "." or ".." was accepted, and no URL reached them by it (a
    client resolves ``people/../faces`` away: the router's bare 404). Refused, as a retail id is;
    an album's name was refused so already (any door: ``check_id``, not dots alone)."""
    album.scan(library)
    person = album.people()[0]
    for name in (".", "..", " .. "):
        with pytest.raises(InvalidArgument, match=r"cannot be '\.+': a name is part of a URL path"):
            album.name_person(person.id, name)
    assert album.person(person.id).name is None
    assert album.name_person(person.id, "...").name == "..."  # three dots are no path segment
    for name in (".", ".."):
        with pytest.raises(InvalidArgument, match="^an album name is 1 to"):
            Album.attach(name, album.analyzer, album.gallery, album._engine, owner=album.owner, create=True)


def test_the_timeline_of_the_unsorted_pool(album: Album, library: Path) -> None:
    """``faces unsorted`` listed the pool, ``timeline unsorted`` answered "no person 'unsorted'":
    the timeline of ``None`` is the photos holding a face of the pool, as ``faces(None)`` is its faces."""
    album.scan(library)
    pool = album.faces(None)
    assert pool
    photos = album.timeline(None)
    assert sorted(p.id for p in photos) == sorted({f.photo_id for f in pool})
    with pytest.raises(NotFound, match="'unsorted' is the pool of faces"):  # a person reference says what it is
        album.merge(album.people()[0].id, "unsorted")


def _subjects(album: Album) -> dict[str, int]:
    """The album's gallery subjects and their face counts."""
    return {s.external_id: s.faces for s in album.gallery.list_subjects("faces", limit=1000).items}


def _alone(album: Album, person: str) -> list[int]:
    """The photos on which ``person``'s faces are the only faces."""
    faces = [f for p in album.people() for f in album.faces(p.id)] + album.faces(None)
    return sorted({f.photo_id for f in faces if f.person == person} - {f.photo_id for f in faces if f.person != person})


def test_erasing_a_person_deletes_the_photos_left_with_no_face(album: Album, library: Path) -> None:
    """An erased person's photos kept their rows (content hash, path) with no face left on them, and
    the same photo added again was skipped as known for good; a photo with someone else's face stays."""
    album.scan(library)
    blair = main_person(album, "Tony_Blair")
    alone = _alone(album, blair)
    shared = sorted({f.photo_id for f in album.faces(blair)} - set(alone))
    faces = len(album.faces(blair))
    assert alone
    erased = album.erase(blair)
    left = [f for p in album.people() for f in album.faces(p.id)] + album.faces(None)
    assert {f.photo_id for f in left} >= set(shared)  # another face is on them
    again = album.scan(library)  # the photos that were theirs alone are scanned anew, not skipped
    assert (again.photos, again.skipped) == (len(alone), 16 - len(alone))
    assert again.faces + again.unsorted >= len(alone)
    assert (erased.faces_deleted, erased.photos_deleted, erased.people) == (faces, len(alone), (blair,))
    for photo in shared:
        assert album.photo(photo).id == photo


def test_erasing_a_person_names_the_ids_merged_into_them(album: Album, library: Path) -> None:
    """The ids and names that ever held the erased person's faces come back with the erasure (what
    the service erases from its stored answers and audit trail): a merged person's id, the ids a
    person emptied by a correction had; none of them stays in the album."""
    album.scan(library)
    bush, powell = main_person(album, "George_W_Bush"), main_person(album, "Colin_Powell")
    album.name_person(powell, "Zed Secret")
    kept = album.merge(bush, powell)
    lone = album.split([album.faces(kept.id)[-1].id])  # a person of one face ...
    album.move(album.faces(lone.id)[0].id, kept.id)  # ... emptied: its id is the holder's now
    erased = album.erase(kept.id)
    assert set(erased.ids) == {bush, powell, lone.id} and erased.people == (bush,)
    assert erased.names == ("Zed Secret",)
    for gone in (bush, powell, lone.id):
        with pytest.raises(NotFound):
            album.person(gone)
    assert not {bush, powell, lone.id} & set(_subjects(album))


def test_a_correction_that_takes_a_person_s_last_face_removes_the_person(album: Album, library: Path) -> None:
    """Rejecting or moving a person's only face, or splitting all their faces off, left a person of
    no face: still named, merged carrying the name, its gallery subject kept. It is removed now."""
    album.scan(library)
    blair = main_person(album, "Tony_Blair")
    faces = album_ids(album, blair)
    ghost = album.split([faces[0]])
    album.name_person(ghost.id, "Ghost")
    rejected = album.reject(faces[0])  # its only face
    assert rejected.person not in (ghost.id, None)
    moved = album.split([faces[1]])
    album.move(faces[1], blair)  # its only face back
    whole = album.split([faces[2]])
    again = album.split([faces[2]])  # all its faces off to another
    for gone in (ghost.id, "Ghost", moved.id, whole.id):
        with pytest.raises(NotFound):
            album.person(gone)
    assert not {ghost.id, moved.id, whole.id} & {p.id for p in album.people()}
    assert not {ghost.id, moved.id, whole.id} & set(_subjects(album))  # no empty gallery subject either
    assert album.person(rejected.person).faces == 1 and album.person(again.id).faces == 1
    assert ghost.id in album.erase(rejected.person).ids  # what named the ghost goes with the face's holder


def test_deleting_a_face_or_a_photo(album: Album, library: Path) -> None:
    """One face (of the unsorted pool, or a person's last), or a photo with every face on it, goes with
    its vector; a photo left with no face goes, and is scanned again when found again."""
    report = album.scan(library)
    vectors = lambda: set(album.gallery.face_vectors("faces")[0].tolist())  # noqa: E731
    pool = album.faces(None)[0]
    erased = album.delete_face(pool.id)
    assert (erased.faces_deleted, erased.people_deleted) == (1, 0) and pool.id not in vectors()
    deleted = erased.photos_deleted  # 1 when no other face was on its photo
    with pytest.raises(NotFound):
        album.face(pool.id)
    blair = main_person(album, "Tony_Blair")
    photo = _alone(album, blair)[0]
    face = next(f.id for f in album.faces(blair) if f.photo_id == photo)
    lone = album.split([face])
    erased = album.delete_face(face)  # the person's last face, the photo's only face
    assert (erased.faces_deleted, erased.photos_deleted, erased.people) == (1, 1, (lone.id,))
    with pytest.raises(NotFound):
        album.person(lone.id)
    assert lone.id not in _subjects(album)
    bush = main_person(album, "George_W_Bush")
    photo = album.faces(bush)[0].photo_id
    on_it = [f.id for p in album.people() for f in album.faces(p.id) if f.photo_id == photo]
    erased = album.delete_photo(photo)
    assert (erased.faces_deleted, erased.photos_deleted) == (len(on_it), 1) and not set(on_it) & vectors()
    with pytest.raises(NotFound):
        album.photo(photo)
    with pytest.raises(NotFound):
        album.delete_photo(photo)
    with pytest.raises(NotFound):
        album.delete_photo(2**40)  # no photo id (an INTEGER column), not a database error
    again = album.scan(library)
    assert (again.photos, again.skipped) == (deleted + 2, report.photos - deleted - 2)  # scanned anew


def test_a_photo_overwritten_at_its_path_is_a_grey_tile_then_its_old_faces_go_on_a_rescan(
        album: Album, library: Path, lfw: Path, tmp_path: Path) -> None:
    """Found by a probe: Powell's photo copied over one of Blair's at its path; the rescan added the
    new content as a second photo of that path, Blair's old faces stayed his (`timeline` listed the
    path), and his contact sheet cropped the old box out of the new picture, drawing Powell ("0
    photos unreadable"). The sheet now says the photo changed (grey tile); the rescan drops the old
    photo and its faces as `delete_photo` does (a person whose last face it was goes) and adds the
    new content."""
    from sqlalchemy import func, select

    from faceatlas.apps.albums.db import Photo

    album.scan(library)
    blair = main_person(album, "Tony_Blair")
    photo = _alone(album, blair)[0]
    path = Path(album.photo(photo).source)
    old = [f.id for f in album.faces(blair) if f.photo_id == photo]
    lone = album.split(old)  # the faces of that photo alone are a person: it goes with them
    faces = len(album.faces(blair))
    powell = sorted((lfw / "Colin_Powell").glob("*.jpg"))[4]  # one the library does not hold
    shutil.copy(powell, path)
    sheet = album.contact_sheet(lone.id, tmp_path / "lone.png")
    assert sheet.unreadable == [str(path)]  # not a crop of Powell's picture
    report = album.scan(library)
    assert (report.changed, report.photos, report.skipped) == (1, 1, 15)
    assert [e.people for e in report.erased] == [(lone.id,)] and "erased" not in report.to_dict()
    with pytest.raises(NotFound):
        album.person(lone.id)
    with pytest.raises(NotFound):
        album.photo(photo)
    assert not set(old) & set(album.gallery.face_vectors("faces")[0].tolist())
    assert len(album.faces(blair)) == faces and path.as_posix() not in {p.source for p in album.timeline(blair)}
    with album._sessions() as session:
        assert session.scalar(select(func.count()).select_from(Photo).where(Photo.source == str(path))) == 1
    new = {f.person for p in album.people() for f in album.faces(p.id) if f.source == str(path)}
    assert new == {main_person(album, "Colin_Powell")}  # Powell's face joined Powell
    assert album.contact_sheet(blair, tmp_path / "blair.png").unreadable == []
    again = album.scan(library)
    assert (again.changed, again.photos, again.erased) == (0, 0, [])


def test_a_photo_overwritten_by_another_photo_of_the_album_goes_and_the_copy_is_skipped(
        album: Album, library: Path) -> None:
    """The new content at a known path may be a photo the album holds elsewhere (`cp A.jpg B.jpg`):
    B's old photo goes all the same, and the copy is skipped (one photo, one row)."""
    album.scan(library)
    blair = main_person(album, "Tony_Blair")
    photos = [Path(album.photo(p).source) for p in _alone(album, blair)[:2]]
    before = len(album.faces(blair))
    on_second = len([f for f in album.faces(blair) if f.source == str(photos[1])])
    shutil.copy(photos[0], photos[1])
    report = album.scan(library)
    assert (report.changed, report.photos, report.skipped) == (1, 0, 16)
    assert len(album.faces(blair)) == before - on_second
    assert str(photos[1]) not in {f.source for f in album.faces(blair)}


def test_a_listing_names_the_entries_named_as_photos_that_are_no_files(lfw: Path, tmp_path: Path) -> None:
    """A FIFO, a dangling link and a link to itself named as photos were skipped by the walk without a
    word: they are in the listing's ``unreadable`` with why (nothing opened), not among its photos,
    and a loop of linked folders ends."""
    import os

    from faceatlas.apps.albums import list_photos

    library = copy_people(lfw, tmp_path / "photos", PEOPLE[:1], 2)
    os.mkfifo(library / "pipe.jpg")
    (library / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (library / "loop.png").symlink_to("loop.png")
    (library / "up").symlink_to(tmp_path, target_is_directory=True)  # holds photos/: a loop
    listing = list_photos(library)
    assert len(listing.paths) == 2 and listing.left_out == []
    assert {r.source: r.reason for r in listing.unreadable} == {
        str(library / "gone.jpg"): f"invalid_image: a dangling link (to {tmp_path / 'missing.jpg'}, nothing there "
                                   "to read): not an image file",
        str(library / "loop.png"): "invalid_image: a loop of links (to loop.png, nothing there to read): not an "
                                   "image file",
        str(library / "pipe.jpg"): "invalid_image: not a regular file but a FIFO (named pipe): not read"}


def test_a_name_in_another_unicode_form_is_the_same_name(album: Album, library: Path) -> None:
    """"José" typed with a precomposed é (NFC) and with e and a combining accent (NFD, as macOS file
    names and some input methods give it) named two people who looked the same, and a reference found
    whichever form it was typed in. Names are kept composed, and compare so: the second naming is
    AlreadyExists, and either form finds the person, a name kept decomposed before included."""
    from sqlalchemy import update

    from faceatlas.apps.albums.db import Person

    album.scan(library)
    first, second, third = album.people()[:3]
    composed, decomposed = "Jos\u00e9", "Jose\u0301"
    assert album.name_person(first.id, decomposed).name == composed  # kept composed
    with pytest.raises(AlreadyExists, match=rf"{first.id} is already named"):
        album.name_person(second.id, composed)
    assert album.person(second.id).name is None
    assert album.person(decomposed).id == album.person(composed).id == first.id
    # a name kept decomposed (before names were kept composed) is found, and held, by either form
    with album._sessions.begin() as session:
        session.execute(update(Person).where(Person.id == int(third.id[1:])).values(name="Zoe\u0308"))
    assert album.person("Zo\u00eb").id == album.person("Zoe\u0308").id == third.id
    with pytest.raises(AlreadyExists, match=rf"{third.id} is already named"):
        album.name_person(second.id, "Zo\u00eb")
    assert [f.id for f in album.faces(composed)] == [f.id for f in album.faces(first.id)]
