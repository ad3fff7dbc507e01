"""The Python client's album methods (faceatlas.client) end to end on the real service (SQLite and
PostgreSQL) and real photos: uploads, people, names, timeline, photos together, face crops, the
corrections (move, reject, merge, split, re-cluster), promotion to a gallery collection, erasure."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from PIL import Image

from faceatlas.client import (
    AlbumDeletion,
    AlbumErasure,
    AlbumFace,
    AlbumPerson,
    AlbumPromotion,
    AlbumScan,
    FaceAtlasApiError,
)
from tests.service.refusals import refused


def _counts(people: list[AlbumPerson]) -> dict[str, int]:
    return {p.id: p.faces for p in people}


def test_uploads_people_names_timeline_together_and_crops(api, examples: Path) -> None:
    knn = examples / "examples" / "knn_examples"
    client = api.api_client("acme_write")
    album = f"family_{uuid.uuid4().hex[:6]}"
    key = f"scan-{uuid.uuid4().hex}"
    first = client.album_add_photo(album, knn / "train" / "obama" / "obama.jpg", keep_crops=True, idempotency_key=key)
    assert first == AlbumScan(photos=1, skipped=0, failed=(), faces=1, unsorted=0, new_people=1)
    assert hash(first) == hash(AlbumScan(1, 0, (), 1, 0, 1))
    # a retry with the key is answered as the first time (not "skipped"), and adds nothing
    again = client.album_add_photo(album, knn / "train" / "obama" / "obama.jpg", keep_crops=True, idempotency_key=key)
    assert again == first
    # keep_crops=False of an album made with crops: 409, nothing added (its crops were kept); left out
    # (the default), the album's setting applies: the client sent keep_crops=false unasked
    refused(lambda: client.album_add_photo(album, knn / "train" / "obama" / "obama2.jpg", keep_crops=False),
            409, "conflict")
    assert client.album_add_photo(album, (knn / "train" / "obama" / "obama2.jpg").read_bytes()).photos == 1
    with open(knn / "train" / "biden" / "biden.jpg", "rb") as photo:  # a file object
        assert client.album_add_photo(album, photo).new_people == 1
    assert client.album_add_photo(album, io.BytesIO((knn / "train" / "biden" / "biden2.jpg").read_bytes())).faces == 1
    group = client.album_add_photo(album, knn / "test" / "obama_and_biden.jpg")
    assert (group.photos, group.faces, group.unsorted, group.new_people) == (1, 2, 1, 0)  # a blurred face behind
    again = client.album_add_photo(album, knn / "test" / "obama_and_biden.jpg")
    assert (again.photos, again.skipped, again.faces) == (0, 1, 0)
    assert album in client.albums()

    people = client.album_people(album, min_faces=2)
    assert [p.faces for p in people] == [3, 3] and all(p.name is None for p in people)
    assert all(p.cover_face is not None and p.cover_source == "upload" for p in people)
    faces = {p.id: client.album_faces(album, p.id) for p in people}
    assert all(isinstance(f, AlbumFace) and f.person == p and not f.unsorted and len(f.bbox) == 4
               for p, fs in faces.items() for f in fs)
    photos_of = {p: {f.photo_id for f in fs} for p, fs in faces.items()}
    obama, biden = sorted(photos_of, key=lambda p: min(photos_of[p]))  # Obama's photos came first
    shared_photo = max(max(ids) for ids in photos_of.values())  # the group photo, uploaded last
    assert photos_of[obama] & photos_of[biden] == {shared_photo}
    unsorted = client.album_faces(album, "unsorted")  # the pool the quality gate kept out
    assert [(f.photo_id, f.person, f.unsorted) for f in unsorted] == [(shared_photo, None, True)]

    named = client.album_name_person(album, obama, "Barack", idempotency_key=f"name-{uuid.uuid4().hex}")
    assert (named.id, named.name, named.faces) == (obama, "Barack", 3)
    assert {p.id: p.name for p in client.album_people(album)} == {obama: "Barack", biden: None}

    timeline = client.album_timeline(album, "Barack")
    assert [p.id for p in timeline] == sorted(photos_of[obama])  # the dated one first, then as added
    assert [p.taken_at for p in timeline] == ["2012-12-06T15:46:01", None, None]  # obama.jpg's EXIF date
    assert all(p.source == "upload" and p.added_at for p in timeline)
    assert [p.id for p in client.album_together(album, ["Barack", biden])] == [shared_photo]
    assert {p.id for p in client.album_together(album, [biden])} == photos_of[biden]
    assert {p.id for p in client.album_together(album, biden)} == photos_of[biden]  # one name, not its letters
    with pytest.raises(FaceAtlasApiError) as unknown:
        client.album_together(album, ["Barack", "nobody"])
    assert (unknown.value.status, unknown.value.code) == (404, "not_found")

    for face in faces[obama] + faces[biden]:
        crop = client.album_face_crop(album, face.id)
        assert crop[:2] == b"\xff\xd8"  # JPEG
        with Image.open(io.BytesIO(crop)) as image:
            assert image.format == "JPEG" and min(image.size) >= 32
            image.load()

    reader = api.api_client("acme_read")  # reading needs read, correcting write
    assert _counts(reader.album_people(album)) == {obama: 3, biden: 3}
    with pytest.raises(FaceAtlasApiError) as forbidden:
        reader.album_name_person(album, biden, "Joe")
    assert forbidden.value.status == 403
    other = api.api_client("globex_admin")  # another tenant has no such album
    assert album not in other.albums()
    with pytest.raises(FaceAtlasApiError) as elsewhere:
        other.album_people(album)
    assert (elsewhere.value.status, elsewhere.value.code) == (404, "not_found")


def test_corrections_promotion_and_erasure(api, shared: Path) -> None:
    lfw = shared / "data" / "lfw" / "images"
    client = api.api_client("acme_write")
    album = f"press_{uuid.uuid4().hex[:6]}"
    for photo in sorted((lfw / "George_W_Bush").glob("*.jpg"))[:3] + sorted((lfw / "Tony_Blair").glob("*.jpg"))[1:3]:
        assert client.album_add_photo(album, photo).photos == 1
    people = client.album_people(album, min_faces=2)
    assert [p.faces for p in people] == [3, 2]
    bush, blair = people[0].id, people[1].id
    with pytest.raises(FaceAtlasApiError) as no_crops:  # the album keeps no crops
        client.album_face_crop(album, client.album_faces(album, bush)[0].id)
    assert (no_crops.value.status, no_crops.value.code) == (404, "not_found")
    george_key, tony_key = f"george-{uuid.uuid4().hex}", f"tony-{uuid.uuid4().hex}"
    george = client.album_name_person(album, bush, "George", idempotency_key=george_key)
    assert (george.id, george.name) == (bush, "George")
    assert client.album_name_person(album, blair, "Tony", idempotency_key=tony_key).name == "Tony"
    faces = client.album_faces(album, "George")
    assert [f.person for f in faces] == [bush] * 3

    key = f"move-{uuid.uuid4().hex}"
    moved = client.album_move_face(album, faces[0].id, blair, idempotency_key=key)
    assert (moved.id, moved.person, moved.unsorted) == (faces[0].id, blair, False)
    assert client.album_move_face(album, faces[0].id, blair, idempotency_key=key) == moved
    assert _counts(client.album_people(album, min_faces=2)) == {bush: 2, blair: 3}
    assert faces[0].id in {f.id for f in client.album_faces(album, blair)}

    rejected = client.album_reject_face(album, faces[0].id)
    assert rejected.person not in (bush, blair, None)
    assert _counts(client.album_people(album)) == {bush: 2, blair: 2, rejected.person: 1}
    merged = client.album_merge(album, bush, rejected.person)
    assert (merged.id, merged.name, merged.faces) == (bush, "George", 3)
    assert _counts(client.album_people(album)) == {bush: 3, blair: 2}

    split = client.album_split(album, [faces[1].id])
    assert split.faces == 1 and split.id not in (bush, blair) and split.name is None
    assert [f.id for f in client.album_faces(album, split.id)] == [faces[1].id]
    assert _counts(client.album_people(album)) == {bush: 2, blair: 2, split.id: 1}
    report = client.album_recluster(album)
    assert report.people == len(client.album_people(album)) and report.moved >= 0
    assert _counts(client.album_people(album)) == {bush: 2, blair: 2, split.id: 1}  # corrections kept

    admin = api.api_client("acme_admin")
    known = f"known_{uuid.uuid4().hex[:6]}"
    admin.create_collection(known)
    promoted = client.album_promote(album, blair, known, "tony", idempotency_key=f"promote-{uuid.uuid4().hex}")
    assert promoted == AlbumPromotion(collection=known, subject="tony", faces=2)
    assert admin.get_subject(known, "tony").faces == 2
    assert client.album_promote(album, blair, known, "tony").faces == 0  # the subject holds them already
    assert admin.get_subject(known, "tony").faces == 2
    assert admin.search(known, lfw / "Tony_Blair" / sorted(p.name for p in (lfw / "Tony_Blair").glob("*.jpg"))[0]
                        )[0].matches[0].external_id == "tony"  # a photo the album never had

    erased = client.album_erase_person(album, "Tony")  # named by id above, erased by name
    assert erased == AlbumErasure(person="Tony", faces_deleted=2, photos_deleted=1)  # the other holds a bystander
    # a retry of a call that named them (by another reference, or answering with them) is answered
    # without their name or id, and not run again; another person's answer is replayed as it was
    for retry in (lambda: client.album_name_person(album, blair, "Tony", idempotency_key=tony_key),
                  lambda: client.album_move_face(album, faces[0].id, blair, idempotency_key=key)):
        with pytest.raises(FaceAtlasApiError) as forgotten:
            retry()
        assert (forgotten.value.status, forgotten.value.code) == (404, "not_found")
        assert "Tony" not in forgotten.value.message and blair not in forgotten.value.message
    assert client.album_name_person(album, bush, "George", idempotency_key=george_key) == george
    assert _counts(client.album_people(album)) == {bush: 2, split.id: 1}
    with pytest.raises(FaceAtlasApiError) as gone:
        client.album_faces(album, blair)
    assert (gone.value.status, gone.value.code) == (404, "not_found")
    assert admin.get_subject(known, "tony").faces == 2  # the promoted copy is the collection's own
    with pytest.raises(FaceAtlasApiError) as missing:
        client.album_people(f"none_{uuid.uuid4().hex[:6]}")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    admin.delete_collection(known)


def test_deleting_a_face_a_photo_and_an_album(api, shared: Path) -> None:
    lfw = shared / "data" / "lfw" / "images"
    client = api.api_client("acme_write")
    album = f"gone_{uuid.uuid4().hex[:6]}"
    photos = sorted((lfw / "George_W_Bush").glob("*.jpg"))[:3]
    for photo in photos:
        assert client.album_add_photo(album, photo).photos == 1
    faces = client.album_faces(album, client.album_people(album)[0].id)
    assert len(faces) == 3
    refused(lambda: api.api_client("acme_read").album_delete_face(album, faces[0].id), 403, "forbidden")
    key = f"face-{uuid.uuid4().hex}"
    deleted = client.album_delete_face(album, faces[0].id, idempotency_key=key)
    assert deleted == AlbumDeletion(faces_deleted=1, photos_deleted=1, people_deleted=0)
    assert deleted.raw["face"] == faces[0].id
    assert client.album_delete_face(album, faces[0].id, idempotency_key=key) == deleted  # replayed
    refused(lambda: client.album_delete_face(album, faces[0].id), 404, "not_found")
    assert client.album_delete_photo(album, faces[1].photo_id) == AlbumDeletion(1, 1, 0)
    assert sum(client.album_add_photo(album, photo).photos for photo in photos) == 2  # the two scanned again
    assert client.album_delete(album) == AlbumDeletion(faces_deleted=3, photos_deleted=3, people_deleted=1)
    assert album not in client.albums()
    refused(lambda: client.album_delete(album), 404, "not_found")
