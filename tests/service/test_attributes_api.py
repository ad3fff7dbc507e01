"""The API's detect gives age, gender and emotion per face on request (``?attributes=true``)."""

from __future__ import annotations


def test_detect_gives_attributes_only_when_asked(api, examples):
    photo = examples / "examples" / "knn_examples" / "train" / "obama" / "obama.jpg"
    upload = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
    with api.client("acme_detect") as client:
        asked = client.post("/v1/detect", params={"attributes": "true"}, files=upload)
        plain = client.post("/v1/detect", files=upload)
    assert asked.status_code == 200, asked.text
    (face,) = asked.json()["faces"]
    attributes = face["attributes"]
    assert attributes["gender"] == "male" and attributes["gender_score"] > 0.5
    assert 20 < attributes["age"] < 80
    assert set(attributes["emotion_scores"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert attributes["emotion"] in attributes["emotion_scores"]
    assert "attributes" not in plain.json()["faces"][0]
    through_client = api.api_client("acme_detect").detect(photo, attributes=True).faces[0]
    assert through_client.attributes is not None and through_client.attributes["gender"] == "male"
    assert api.api_client("acme_detect").detect(photo).faces[0].attributes is None
