"""/v1/albums on the real service (SQLite and PostgreSQL): scan by upload, people, corrections,
erasure, and tenant isolation."""

from __future__ import annotations

import uuid
from pathlib import Path


def test_album_upload_people_corrections_and_erase(api, shared: Path) -> None:
    lfw = shared / "data" / "lfw" / "images"
    album = f"album_{uuid.uuid4().hex[:6]}"
    photos = sorted((lfw / "George_W_Bush").glob("*.jpg"))[:3] + sorted((lfw / "Tony_Blair").glob("*.jpg"))[1:3]
    with api.client("acme_write") as http:
        for photo in photos:
            answer = http.post(f"/v1/albums/{album}/photos", files={"image": photo.read_bytes()})
            assert answer.status_code == 200, answer.text
        again = http.post(f"/v1/albums/{album}/photos", files={"image": photos[0].read_bytes()}).json()
        assert again["skipped"] == 1 and again["photos"] == 0
        people = http.get(f"/v1/albums/{album}/people", params={"min_faces": 2}).json()["people"]
        assert [p["faces"] for p in people] == [3, 2]
        bush, blair = people[0]["id"], people[1]["id"]
        named = http.patch(f"/v1/albums/{album}/people/{bush}", json={"name": "George"})
        assert named.status_code == 200 and named.json()["name"] == "George"
        faces = http.get(f"/v1/albums/{album}/people/George/faces").json()["faces"]
        assert len(faces) == people[0]["faces"]
        moved = http.post(f"/v1/albums/{album}/faces/{faces[0]['id']}/move", json={"to": blair}).json()
        assert moved["person"] == blair
        rejected = http.post(f"/v1/albums/{album}/faces/{faces[0]['id']}/reject").json()
        assert rejected["person"] not in (bush, blair)
        merged = http.post(f"/v1/albums/{album}/people/{bush}/merge", json={"absorb": rejected["person"]}).json()
        assert merged["id"] == bush
        split = http.post(f"/v1/albums/{album}/split", json={"faces": [faces[1]["id"]]}).json()
        assert split["faces"] == 1
        assert http.post(f"/v1/albums/{album}/recluster").status_code == 200
        known = f"known_{uuid.uuid4().hex[:6]}"
        assert http.post("/v1/collections", json={"name": known}).status_code in (200, 201)
        promoted = http.post(f"/v1/albums/{album}/people/{blair}/promote", json={"collection": known,
                                                                                "subject": "tony"}).json()
        assert promoted["faces"] >= 2
        assert http.get(f"/v1/collections/{known}/subjects/tony").json()["faces"] == promoted["faces"]
        erased = http.delete(f"/v1/albums/{album}/people/{blair}").json()
        assert erased["faces_deleted"] >= 2
        missing = http.get(f"/v1/albums/{album}/people/{blair}/faces")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    with api.client("acme_read") as http:  # reading needs read, correcting needs write
        assert http.get(f"/v1/albums/{album}/people").status_code == 200
        assert http.post(f"/v1/albums/{album}/recluster").status_code == 403
    with api.client("globex_admin") as http:  # another tenant's album of that name does not exist for them
        assert http.get(f"/v1/albums/{album}/people").status_code == 404
        assert album not in http.get("/v1/albums").json()["albums"]


def test_reads_and_corrections_of_a_missing_album_create_nothing(api, shared: Path) -> None:
    album = f"typo_{uuid.uuid4().hex[:6]}"
    photo = sorted((shared / "data" / "lfw" / "images" / "Tony_Blair").glob("*.jpg"))[0]
    with api.client("acme_write") as http:
        for answer in (http.get(f"/v1/albums/{album}/people"), http.get(f"/v1/albums/{album}/people/p1/faces"),
                       http.get(f"/v1/albums/{album}/people/unsorted/faces"),
                       http.get(f"/v1/albums/{album}/faces/1/crop"),
                       http.patch(f"/v1/albums/{album}/people/p1", json={"name": "Ann"}),
                       http.post(f"/v1/albums/{album}/split", json={"faces": [1]}),
                       http.post(f"/v1/albums/{album}/recluster"), http.delete(f"/v1/albums/{album}/people/p1")):
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"] == {"code": "not_found", "message": f"no album '{album}'"}
        assert album not in http.get("/v1/albums").json()["albums"]
        assert http.post(f"/v1/albums/{album}/photos", files={"image": photo.read_bytes()}).status_code == 200
        assert album in http.get("/v1/albums").json()["albums"]  # uploading a photo creates it
        assert [p["faces"] for p in http.get(f"/v1/albums/{album}/people").json()["people"]] == [1]


def test_timeline_and_photos_together(api, shared: Path) -> None:
    knn = shared / "data" / "face_recognition_examples" / "examples" / "knn_examples"
    album = f"pair_{uuid.uuid4().hex[:6]}"
    uploads = [knn / "train" / "obama" / "obama.jpg", knn / "train" / "obama" / "obama2.jpg",
               knn / "train" / "biden" / "biden.jpg", knn / "train" / "biden" / "biden2.jpg",
               knn / "test" / "obama_and_biden.jpg"]
    with api.client("acme_write") as http:
        for photo in uploads:
            assert http.post(f"/v1/albums/{album}/photos", files={"image": photo.read_bytes()}).status_code == 200
        people = http.get(f"/v1/albums/{album}/people", params={"min_faces": 2}).json()["people"]
        assert [p["faces"] for p in people] == [3, 3]
        photos_of = {p["id"]: {f["photo_id"] for f in http.get(f"/v1/albums/{album}/people/{p['id']}/faces").json()
                               ["faces"]} for p in people}
        group = max(max(ids) for ids in photos_of.values())  # uploaded last
        obama, biden = sorted(photos_of, key=lambda p: min(photos_of[p]))  # Obama's photos came first
        assert photos_of[obama] & photos_of[biden] == {group}
        http.patch(f"/v1/albums/{album}/people/{obama}", json={"name": "Barack"})
    with api.client("acme_read") as http:  # read scope
        timeline = http.get(f"/v1/albums/{album}/people/Barack/timeline")
        assert timeline.status_code == 200, timeline.text
        photos = timeline.json()["photos"]
        assert [p["id"] for p in photos] == sorted(photos_of[obama])  # the dated one first, then as added
        assert [p["taken_at"] for p in photos] == ["2012-12-06T15:46:01", None, None]  # obama.jpg's EXIF date
        assert all(p["source"] == "upload" and p["added_at"] for p in photos)
        together = http.get(f"/v1/albums/{album}/together", params={"people": ["Barack", biden]})
        assert together.status_code == 200, together.text
        assert [p["id"] for p in together.json()["photos"]] == [group]  # not the photos of one of them alone
        alone = http.get(f"/v1/albums/{album}/together", params={"people": [biden]}).json()["photos"]
        assert {p["id"] for p in alone} == photos_of[biden]
        assert http.get(f"/v1/albums/{album}/together").status_code == 422  # no people
        unknown = http.get(f"/v1/albums/{album}/together", params={"people": ["Barack", "nobody"]})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        assert http.get(f"/v1/albums/{album}/people/nobody/timeline").status_code == 404
    with api.client("globex_admin") as http:  # another tenant has no such album
        assert http.get(f"/v1/albums/{album}/people/Barack/timeline").status_code == 404
        assert http.get(f"/v1/albums/{album}/together", params={"people": ["Barack"]}).status_code == 404


def test_an_upload_that_is_no_photo_is_refused_and_makes_no_album(api, shared: Path) -> None:
    """Empty, non-image, truncated or 10-gigapixel uploads answered 200 with the photo under
    `failed`, billed as a success, and made the album; every other image route refuses them."""
    import struct
    import zlib

    photo = sorted((shared / "data" / "lfw" / "images" / "Tony_Blair").glob("*.jpg"))[0].read_bytes()
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)  # a PNG whose header says 10 GP
    huge = b"".join([b"\x89PNG\r\n\x1a\n", *(struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body)) for kind, body in ((b"IHDR", header), (b"IDAT", zlib.compress(b"\0" * 64)),
                                                          (b"IEND", b"")))])
    album = f"none_{uuid.uuid4().hex[:6]}"
    expected = {"empty": (b"", 400, "empty_image"), "text": (b"no photo", 400, "invalid_image"),
                "truncated": (photo[: len(photo) // 2], 400, "truncated_image"),
                "huge": (huge, 413, "image_too_large")}
    with api.client("acme_write") as http:
        for what, (data, status, code) in expected.items():
            answer = http.post(f"/v1/albums/{album}/photos", files={"image": data})
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), (what, answer.text)
        assert album not in http.get("/v1/albums").json()["albums"]
        twice = http.post(f"/v1/albums/{album}/photos", files=[("image", photo), ("image", photo)])
        assert (twice.status_code, twice.json()["error"]["code"]) == (422, "validation_error")
        assert http.post(f"/v1/albums/{album}/photos", files={"image": photo}).status_code == 200


def test_names_keep_crops_and_the_unsorted_timeline_answer_what_they_mean(api, shared: Path) -> None:
    """Found by a probe: a name "AC/DC" was 200 and then no URL reached it (the router's bare 404);
    a second person named "Ann" was 200 and every later "Ann" answered "2 people are named";
    ``keep_crops=true`` on an album made without crops was 200 and kept none; ``people/unsorted/
    timeline`` was 404 where ``people/unsorted/faces`` answered."""
    lfw = shared / "data" / "lfw" / "images"
    album = f"names_{uuid.uuid4().hex[:6]}"
    photos = sorted((lfw / "George_W_Bush").glob("*.jpg"))[:2] + sorted((lfw / "Tony_Blair").glob("*.jpg"))[:2]
    with api.client("acme_write") as http:
        for photo in photos[:3]:
            assert http.post(f"/v1/albums/{album}/photos", files={"image": photo.read_bytes()}).status_code == 200
        people = http.get(f"/v1/albums/{album}/people").json()["people"]
        first, second = people[0]["id"], people[1]["id"]
        slashed = http.patch(f"/v1/albums/{album}/people/{first}", json={"name": "AC/DC"})
        assert slashed.status_code == 422 and "without '/'" in slashed.json()["error"]["message"], slashed.text
        assert http.patch(f"/v1/albums/{album}/people/{first}", json={"name": "Ann"}).status_code == 200
        taken = http.patch(f"/v1/albums/{album}/people/{second}", json={"name": "Ann"})
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "already_exists", taken.text
        assert "merge" in taken.json()["error"]["message"]
        assert http.get(f"/v1/albums/{album}/people/Ann/faces").status_code == 200
        crops = http.post(f"/v1/albums/{album}/photos", params={"keep_crops": "true"},
                          files={"image": photos[3].read_bytes()})
        assert crops.status_code == 409 and "created without face crops" in crops.json()["error"]["message"], crops.text
        assert len(http.get(f"/v1/albums/{album}/people/{first}/timeline").json()["photos"]) >= 1
        pool = http.get(f"/v1/albums/{album}/people/unsorted/faces").json()["faces"]
        timeline = http.get(f"/v1/albums/{album}/people/unsorted/timeline")
        assert timeline.status_code == 200, timeline.text
        assert sorted(p["id"] for p in timeline.json()["photos"]) == sorted({f["photo_id"] for f in pool})
        assert http.post(f"/v1/albums/{album}/photos", files={"image": photos[3].read_bytes()}).json()["photos"] == 1


def test_keep_crops_false_dot_names_and_ids_in_either_case(api, shared: Path) -> None:
    """Found by a probe: ``?keep_crops=false`` on an album made with crops was 200 and its face's crop
    was served (the user had asked for none): 409 naming the album's setting, nothing added, and
    left out the album's setting applies. A person named ".." was 200 and then no URL reached them
    (the router's bare 404); "P6" was refused as "not a person id" while ``people/P6`` was no one."""
    lfw = shared / "data" / "lfw" / "images"
    album = f"crops_{uuid.uuid4().hex[:6]}"
    photos = sorted((lfw / "George_W_Bush").glob("*.jpg"))[:2] + sorted((lfw / "Tony_Blair").glob("*.jpg"))[:1]
    with api.client("acme_write") as http:
        made = http.post(f"/v1/albums/{album}/photos", params={"keep_crops": "true"},
                         files={"image": photos[0].read_bytes()})
        assert made.status_code == 200, made.text
        refused = http.post(f"/v1/albums/{album}/photos", params={"keep_crops": "false"},
                            files={"image": photos[2].read_bytes()})
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict", refused.text
        assert "created keeping face crops" in refused.json()["error"]["message"]
        people = http.get(f"/v1/albums/{album}/people").json()["people"]
        assert sum(p["faces"] for p in people) == made.json()["faces"]  # the refused photo added nothing
        unsaid = http.post(f"/v1/albums/{album}/photos", files={"image": photos[1].read_bytes()})
        assert unsaid.status_code == 200 and unsaid.json()["photos"] == 1, unsaid.text
        person = http.get(f"/v1/albums/{album}/people").json()["people"][0]
        crop = http.get(f"/v1/albums/{album}/faces/{person['cover_face']}/crop")
        assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
        number = person["id"][1:]
        for name in ("..", ".", "P6", f"P{number}"):
            named = http.patch(f"/v1/albums/{album}/people/{person['id']}", json={"name": name})
            assert named.status_code == 422 and named.json()["error"]["code"] == "validation_error", named.text
        assert "URL path" in http.patch(f"/v1/albums/{album}/people/{person['id']}", json={"name": ".."}).text
        assert "look like a person id" in http.patch(f"/v1/albums/{album}/people/{person['id']}",
                                                     json={"name": "P6"}).text
        upper = http.get(f"/v1/albums/{album}/people/P{number}/faces")
        assert upper.status_code == 200, upper.text
        assert upper.json() == http.get(f"/v1/albums/{album}/people/{person['id']}/faces").json()
        dots = http.post("/v1/albums/%2E%2E/photos", files={"image": photos[2].read_bytes()})
        assert dots.status_code in (404, 422) and ".." not in http.get("/v1/albums").json()["albums"], dots.text


def test_an_upload_answer_says_why_it_has_no_moved_changed_or_left_out(api, shared: Path) -> None:
    """Found by a probe: the upload's answer lacked `moved` and `left_out` of `album scan --json`'s
    report, without a word. They mean nothing for an upload (no path; one photo, HEIC refused): the
    answer keeps them out and the API's description says why."""
    photo = sorted((shared / "data" / "lfw" / "images" / "Tony_Blair").glob("*.jpg"))[0].read_bytes()
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    album = f"keys_{uuid.uuid4().hex[:6]}"
    described = api.app.openapi()["paths"]["/v1/albums/{album}/photos"]["post"]["description"]
    assert all(f"``{field}``" in described for field in ("moved", "changed", "left_out")), described
    with api.client("acme_write") as http:
        refused = http.post(f"/v1/albums/{album}/photos", files={"image": heic})
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "invalid_image")
        for _ in range(2):  # added, then skipped
            answer = http.post(f"/v1/albums/{album}/photos", files={"image": photo})
            assert answer.status_code == 200, answer.text
            assert not {"moved", "changed", "left_out", "erased"} & set(answer.json())
    assert answer.json()["skipped"] == 1


def test_the_upload_answer_lists_its_failed_photos_as_objects_not_pairs(api, shared: Path) -> None:
    """`failed` was `list[tuple[str, str]]`, a tuple schema (`prefixItems`) that openapi-generator
    handles badly: now a list of `ItemFailureOut`, `{"source", "error", "message"}` (as the CLI's
    `--json` gives one input that failed, and an error body its code and message). A real upload's
    answer holds the list (empty: a photo that does not decode is refused before the album is made,
    400 invalid_image; tests/test_item_failures.py reads a real scan's failed photo through this model)."""
    document = api.app.openapi()
    schemas = document["components"]["schemas"]
    answer = document["paths"]["/v1/albums/{album}/photos"]["post"]["responses"]["200"]["content"]
    assert answer["application/json"]["schema"] == {"$ref": "#/components/schemas/AlbumScanOut"}
    assert not _keys(schemas["AlbumScanOut"]) & {"prefixItems"}, schemas["AlbumScanOut"]
    assert schemas["AlbumScanOut"]["properties"]["failed"]["items"] == {"$ref": "#/components/schemas/ItemFailureOut"}
    item = schemas["ItemFailureOut"]
    assert set(item["properties"]) == set(item["required"]) == {"source", "error", "message"}, item
    assert all(item["properties"][key]["type"] == "string" for key in item["properties"]), item
    assert "prefixItems" not in _keys(document)  # no other answer holds a tuple schema either
    photo = sorted((shared / "data" / "lfw" / "images" / "Tony_Blair").glob("*.jpg"))[0].read_bytes()
    with api.client("acme_write") as http:
        done = http.post(f"/v1/albums/failed_{uuid.uuid4().hex[:6]}/photos", files={"image": photo})
        assert done.status_code == 200 and done.json()["failed"] == [], done.text
        refused = http.post(f"/v1/albums/failed_{uuid.uuid4().hex[:6]}/photos", files={"image": b"not an image"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "invalid_image"), refused.text


def _keys(schema: object) -> set[str]:
    """Every key of the JSON ``schema``, at any depth."""
    if isinstance(schema, dict):
        return set(schema).union(*(_keys(value) for value in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_keys(value) for value in schema))
    return set()
