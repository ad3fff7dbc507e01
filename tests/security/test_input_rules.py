"""Issue 15 (10): one rule for subject ids and collection names wherever they enter (body or URL
path), and one check for vectors (finite after the float32 cast, a norm neither zero nor beyond
float32, computed in float64)."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient

from faceatlas.engine import Embedding, check_vectors
from faceatlas.errors import InvalidArgument

BAD_IDS = {
    "long": "a" * 5000,
    "just_too_long": "a" * 201,
    "nul": "a\x00b",
    "sql": "x';DROP TABLE subjects;--",
    "space": "two words",
    "unicode": "ünïcode",
    "slash_encoded": "a/b",
}


@pytest.fixture
def client(api, examples) -> TestClient:
    tenant = f"rules{uuid.uuid4().hex[:8]}"
    api.accounts.create_tenant(tenant)
    key = api.accounts.create_key(tenant, ["admin"], rate_per_second=10_000, burst=10_000).token
    client = TestClient(api.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"})
    assert client.post("/v1/collections", json={"name": "people"}).status_code == 201
    return client


@pytest.mark.parametrize("name", BAD_IDS)
def test_a_subject_id_in_the_path_follows_the_body_rule(client, examples, name):
    bad = quote(BAD_IDS[name], safe="")
    photo = (examples / "tests" / "test_images" / "obama.jpg").read_bytes()
    enrol = client.post(f"/v1/collections/people/subjects/{bad}/faces", files={"image": ("o.jpg", photo, "image/jpeg")})
    in_body = client.post("/v1/collections/people/subjects", json={"id": BAD_IDS[name]})
    read = client.get(f"/v1/collections/people/subjects/{bad}")
    assert in_body.status_code == 422 and in_body.json()["error"]["code"] == "validation_error"
    # the path rule answers 422, an encoded slash too (it found no route: a bare 404); a NUL never passes the URL (400)
    expected = {"nul": 400}.get(name, 422)
    assert enrol.status_code == read.status_code == expected, enrol.text
    assert enrol.json()["error"]["code"] == {400: "bad_request", 404: "not_found", 422: "validation_error"}[expected]
    assert client.get("/v1/collections/people/subjects").json()["subjects"] == []


def test_a_collection_name_in_the_path_follows_the_body_rule(client):
    response = client.get(f"/v1/collections/{'c' * 5000}")
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"


def test_a_valid_id_of_200_characters_is_accepted(client):
    assert client.post("/v1/collections/people/subjects", json={"id": "a" * 200}).status_code == 201
    assert client.get(f"/v1/collections/people/subjects/{'a' * 200}").status_code == 200


@pytest.mark.parametrize("values", [[1e38] * 128, [3e38, 3e38], [1e39] + [0.0] * 127, [0.0] * 128])
def test_search_refuses_vectors_whose_float32_norm_is_not_finite_or_zero(client, values):
    collection = client.get("/v1/collections/people").json()
    vector = values + [0.0] * (collection["embedding_size"] - len(values))
    response = client.post("/v1/collections/people/search",
                           json={"embedding": vector, "recognizer_id": collection["recognizer_id"]})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


def test_the_vector_check_computes_the_norm_in_float64():
    with pytest.raises(InvalidArgument):
        check_vectors(np.full((1, 128), 1e38, np.float32))
    with pytest.raises(InvalidArgument):
        Embedding(np.full(128, 1e38), "any")
    big_but_fine = np.full(128, 1e18, np.float32)  # norm about 1.1e19: finite in float32
    assert Embedding(big_but_fine, "any").vector.dtype == np.float32


def test_gallery_add_embeddings_uses_the_same_vector_check(api):
    from faceatlas.gallery import Gallery

    gallery = Gallery.open(api.database_url).for_tenant(f"g{uuid.uuid4().hex[:6]}")
    gallery.create_collection("c", "scrfd-mbf")
    size = gallery.get_collection("c").embedding_size
    recognizer = gallery.get_collection("c").recognizer_id
    with pytest.raises(InvalidArgument):
        gallery.add_embeddings("c", "s", np.full((1, size), 1e38, np.float32), recognizer_id=recognizer)
    with pytest.raises(InvalidArgument):
        gallery.add_embeddings("c", "a" * 5000, np.ones((1, size), np.float32), recognizer_id=recognizer)
    assert gallery.list_subjects("c").items == []
