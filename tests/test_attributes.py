"""Face attributes (gender, emotion, age) on real photos: right on clearly male and female faces,
absent unless asked for, and given by the CLI's detect --attributes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from faceatlas.cli.main import app
from faceatlas.engine import EMOTIONS, get_pack

runner = CliRunner()

MEN = ("examples/knn_examples/train/obama/obama.jpg", "examples/knn_examples/train/kit_harington/john1.jpeg")
WOMEN = ("examples/knn_examples/train/rose_leslie/img1.jpg", "examples/knn_examples/train/rose_leslie/img2.jpg")
LFW = {"Jennifer_Lopez/Jennifer_Lopez_0001.jpg": "female", "Serena_Williams/Serena_Williams_0001.jpg": "female",
       "Colin_Powell/Colin_Powell_0040.jpg": "male", "Tony_Blair/Tony_Blair_0018.jpg": "male"}


@pytest.mark.parametrize(("photo", "gender"), [*((m, "male") for m in MEN), *((w, "female") for w in WOMEN)])
def test_clearly_male_and_female_faces_get_their_gender(fast_analyzer, examples, photo, gender):
    face = fast_analyzer.analyze_one(examples / photo, attributes=True)
    assert face.attributes is not None
    assert face.attributes.gender == gender
    assert 0.5 < face.attributes.gender_score <= 1.0


def test_lfw_people_get_their_gender_emotion_and_an_adult_age(fast_analyzer, shared):
    faces = fast_analyzer.analyze_many([shared / "data" / "lfw" / "images" / p for p in LFW], max_faces=1,
                                       attributes=True)
    for (photo, gender), (face,) in zip(LFW.items(), faces):
        found = face.attributes
        assert found is not None and found.gender == gender, photo
        assert found.age is not None and 18 <= found.age <= 75, (photo, found.age)
        assert found.emotion in EMOTIONS and found.emotion_scores is not None
        assert [name for name, _ in found.emotion_scores] == list(EMOTIONS)
        assert sum(p for _, p in found.emotion_scores) == pytest.approx(1.0, abs=1e-3)


def test_attributes_are_none_unless_asked_for(fast_analyzer, examples):
    photo = examples / "examples" / "two_people.jpg"
    plain = fast_analyzer.analyze(photo)
    asked = fast_analyzer.analyze(photo, attributes=True)
    assert len(plain) == len(asked) == 2
    assert all(face.attributes is None and "attributes" not in face.to_dict() for face in plain)
    assert all(face.to_dict()["attributes"]["gender"] in ("female", "male") for face in asked)


def test_attribute_models_are_pinned_files_of_the_pack_with_their_licences():
    pack = get_pack("scrfd-mbf")
    assert pack.attributes is not None
    for model in pack.attributes.files:
        assert model in pack.files and model.sha256 is not None and len(model.sha256) == 64
    assert any(text.startswith("MIT") for text in pack.attribute_licenses)
    assert any(text.startswith("unknown") and "SSR-Net" in text for text in pack.attribute_licenses)
    mit = get_pack("yunet-frfeature").attributes
    assert mit is not None and mit.age is None and mit.gender is not None


def test_cli_detect_attributes(examples):
    photo = str(examples / "examples" / "knn_examples" / "train" / "rose_leslie" / "img1.jpg")
    asked = runner.invoke(app, ["detect", photo, "-p", "scrfd-mbf", "--attributes", "--json"])
    plain = runner.invoke(app, ["detect", photo, "-p", "scrfd-mbf", "--json"])
    assert asked.exit_code == 0, asked.output
    (face,) = json.loads(asked.stdout)["results"][0]["faces"]
    assert face["attributes"]["gender"] == "female" and "age" in face["attributes"]
    assert "licence is unknown" in asked.stderr
    assert "attributes" not in json.loads(plain.stdout)["results"][0]["faces"][0]
    table = runner.invoke(app, ["detect", photo, "-p", "scrfd-mbf", "--attributes"])
    assert "female" in table.stdout and "emotion" in table.stdout
