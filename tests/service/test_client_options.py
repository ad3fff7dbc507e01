"""Every option of the face and gallery routes, usage and retail analytics is reachable from the
Python client (faceatlas.client), end to end against the app on real photos: search's threshold,
aggregate and all_faces, a search by embedding, verify's threshold, enrol's all_faces and
min_quality, detect's max_faces, a collection's metadata, usage between two days and as CSV, a
store's analytics as CSV."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from faceatlas.apps.retail import Camera, RetailStore, StoreConfig
from faceatlas.client import FaceAtlasClientError, SearchResult
from faceatlas.engine import get_pack
from tests.service.refusals import refused


def _named(result: SearchResult) -> list[str]:
    return [m.external_id for m in result.matches]


def test_search_verify_and_detect_take_every_option_of_their_routes(api, examples: Path) -> None:
    images, knn = examples / "tests/test_images", examples / "examples/knn_examples"
    _, client = api.own_tenant()
    client.create_collection("people", metadata={"site": "hq"})
    assert client.get_collection("people").metadata == {"site": "hq"}
    client.enrol("people", "obama", images / "obama.jpg")
    client.enrol("people", "obama", images / "obama3.jpg")
    client.enrol("people", "biden", images / "biden.jpg")
    query = images / "obama2.jpg"

    [default] = client.search("people", query)
    assert _named(default)[:1] == ["obama"] and default.unknown is False
    [strict] = client.search("people", query, threshold=0.99)  # a raw cosine cut no photo of another day reaches
    assert strict.matches == () and strict.unknown is True
    [loose] = client.search("people", query, threshold=-1.0, k=2)
    assert _named(loose) == ["obama", "biden"]
    [mean] = client.search("people", query, aggregate="mean")
    top = mean.matches[0]
    assert top.external_id == "obama" and top.matched_faces == 2
    # scored by its mean template (which may be nearer the query than any one face), not its best face
    assert top.similarity == top.mean_similarity != top.best_similarity == default.matches[0].similarity
    refused(lambda: client.search("people", query, aggregate="worst"), 422, "validation_error")
    refused(lambda: client.search("people", query, threshold=0.5, far=1e-3), 422, "validation_error")

    pair = knn / "test/obama_and_biden.jpg"
    assert len(client.search("people", pair)) == 1  # the largest face only, as before
    everyone = client.search("people", pair, all_faces=True, threshold=0.3)
    assert len(everyone) == 3 and {"obama", "biden"} <= {name for r in everyone for name in _named(r)[:1]}

    detected = client.detect(query, embedding=True)
    face = detected.faces[0]
    assert face.embedding is not None and face.recognizer_id == get_pack("scrfd-mbf").recognizer_id
    found = client.search_embedding("people", face.embedding, face.recognizer_id)
    assert found.face is None and _named(found)[:1] == ["obama"] and found.unknown is False
    assert found.matches[0].similarity == default.matches[0].similarity  # the same face, by image or vector
    as_array = client.search_embedding("people", np.asarray(face.embedding, np.float32), face.recognizer_id,
                                       rank_only=True, k=1)
    assert _named(as_array) == ["obama"] and as_array.unknown is None
    assert client.search_embedding("people", face.embedding, face.recognizer_id, threshold=0.99).unknown is True
    assert client.search_embedding("people", face.embedding, face.recognizer_id,
                                   aggregate="mean").matches[0].similarity == top.similarity
    other_space = get_pack("dlib").recognizer_id  # 128-d too: only the space tells them apart
    refused(lambda: client.search_embedding("people", face.embedding, other_space), 409, "model_mismatch")
    refused(lambda: client.search_embedding("people", [0.1] * 512, face.recognizer_id), 409, "model_mismatch")
    for odd in ([float("nan")] * 128, np.full(128, np.inf), [object()] * 128):  # none is sent
        with pytest.raises(FaceAtlasClientError) as caught:
            client.search_embedding("people", odd, face.recognizer_id)
        assert caught.value.code == "invalid_argument" and "finite numbers" in str(caught.value)

    verdict = client.verify("people", "obama", query)
    assert verdict.match is True and verdict.threshold < 0.99
    strict_verdict = client.verify("people", "obama", query, threshold=0.99)
    assert strict_verdict.match is False and strict_verdict.threshold == 0.99
    assert strict_verdict.similarity == verdict.similarity
    assert client.verify("people", "obama", query, far=1e-3).threshold < verdict.threshold
    refused(lambda: client.verify("people", "obama", query, far=1e-3, threshold=0.5), 422, "validation_error")

    assert len(client.detect(examples / "examples/two_people.jpg").faces) == 2
    [largest] = client.detect(examples / "examples/two_people.jpg", max_faces=1).faces
    assert largest.quality is not None and largest.embedding is None


def test_enrol_takes_every_face_and_refuses_poor_ones(api, examples: Path) -> None:
    knn = examples / "examples/knn_examples"
    pair = knn / "test/obama_and_biden.jpg"  # two clear faces and a small blurred one (quality < 0.1)
    _, client = api.own_tenant()
    client.create_collection("crowd")
    one = client.enrol("crowd", "largest", pair)
    assert len(one.face_ids) == 1 and one.rejected == 0
    every = client.enrol("crowd", "every", pair, all_faces=True)
    assert len(every.face_ids) == 3 and every.rejected == 0
    good = client.enrol("crowd", "good", pair, all_faces=True, min_quality=0.3)
    assert len(good.face_ids) == 2 and good.rejected == 1 and all(f.quality >= 0.3 for f in good.faces)
    poor = refused(lambda: client.enrol("crowd", "kit", knn / "train/kit_harington/john2.jpeg", min_quality=0.5),
                    422, "validation_error")  # quality 0.34: no face reaches the gate
    assert "min_quality" in poor.message
    refused(lambda: client.get_subject("crowd", "kit"), 404, "not_found")  # nothing made of it
    kept = client.enrol("crowd", "kit", knn / "train/kit_harington/john1.jpeg", min_quality=0.5)
    assert len(kept.face_ids) == 1 and kept.rejected == 0
    assert [client.get_subject("crowd", s).faces for s in ("largest", "every", "good", "kit")] == [1, 3, 2, 1]
    refused(lambda: client.enrol("crowd", "kit", pair, min_quality=1.5), 422, "validation_error")


def test_usage_between_two_days_and_as_csv(api, examples: Path) -> None:
    _, client = api.own_tenant()
    first = datetime.now(UTC).date()
    for _ in range(3):
        client.detect(examples / "examples/two_people.jpg")
    client.list_collections()
    last = datetime.now(UTC).date()

    usage = client.usage(start=first, end=last)
    calls = {row.operation: row.calls for row in usage.rows}
    assert calls["detect"] == 3 and calls["collections.list"] == 1
    assert sum(row.faces for row in usage.rows if row.operation == "detect") == 6
    assert client.usage(start=first.isoformat(), end=last.isoformat()) == usage  # days as ISO text too
    assert client.usage(start=first) == usage == client.usage(end=last) == client.usage()
    assert client.usage(end=first - timedelta(days=1)).rows == ()
    assert client.usage(start=last + timedelta(days=1)).rows == ()
    refused(lambda: client.usage(start=last + timedelta(days=1), end=first), 422, "validation_error")

    text = client.usage_csv(start=first, end=last)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "tenant,day,operation,calls,faces,errors,failed"
    assert [{k: str(v) for k, v in row.raw.items()} for row in usage.rows] == rows
    assert sum(int(r["calls"]) for r in rows) == sum(row.calls for row in usage.rows) == 4
    assert list(csv.DictReader(io.StringIO(client.usage_csv(end=first - timedelta(days=1))))) == []


def test_retail_analytics_as_csv_holds_the_reports_rows(api, fast_analyzer, tmp_path: Path) -> None:
    tenant, client = api.own_tenant()
    config = StoreConfig(id=f"csv-{uuid.uuid4().hex[:8]}", tenant=tenant, cameras=[Camera(id="door", role="door")])
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx"):
        pass
    window = {"start": "2026-11-01", "end": "2026-11-03"}
    report = client.retail_analytics(config.id, **window)
    assert (report.first, report.last) == ("2026-11-01", "2026-11-03")
    rows = list(csv.reader(io.StringIO(client.retail_analytics_csv(config.id, **window))))
    assert rows[0] == ["metric", "key", "value"]
    summary = {key: float(value) for metric, key, value in rows[1:] if metric == "summary"}
    assert summary == {key: float(value) for key, value in report.summary.items()} and summary
    sections = [(metric, key, float(value)) for metric, key, value in rows[1:] if metric != "summary"]
    assert sections == [(r.metric, r.key, float(r.value)) for r in report.sections]
    refused(lambda: client.retail_analytics_csv(config.id, start="2026-11-05", end="2026-11-01"),
             422, "validation_error")  # days backwards
    refused(lambda: client.retail_analytics_csv("no-such-store"), 404, "not_found")
