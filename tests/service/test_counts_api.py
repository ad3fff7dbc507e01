"""`GET /v1/cameras/{id}/counts`: a camera's per-minute counts per class, as the database sink of
`faceatlas watch` stored them, for the caller's tenant only."""

from __future__ import annotations


def _counts(minute: str, classes: dict) -> object:
    from faceatlas.video.events import Event

    return Event("counts", "gate", 100, 60.0, data={"minute": minute, "frame_size": [768, 432], "classes": classes})


def test_camera_counts_are_served_per_tenant_minute_and_class(api):
    from faceatlas.video.sinks import DatabaseSink

    heat = [[0] * 32 for _ in range(18)]
    sink = DatabaseSink(api.database_url, tenant="acme")
    sink.emit(_counts("2026-12-04T10:00", {"car": {"seen": 3, "in:lane1": 2, "heatmap": heat},
                                           "person": {"seen": 1}}))
    sink.emit(_counts("2026-12-04T10:01", {"car": {"seen": 5, "out:lane1": 4}}))
    sink.emit(_counts("2026-12-04T10:02", {"bus": {"seen": 1}}))
    sink.close()
    other = DatabaseSink(api.database_url, tenant="globex")
    other.emit(_counts("2026-12-04T10:00", {"car": {"seen": 99}}))
    other.close()
    with api.client("acme_read") as acme:
        every = acme.get("/v1/cameras/gate/counts").json()
        cars = acme.get("/v1/cameras/gate/counts", params={"class": "car", "from": "2026-12-04T10:01:00Z"}).json()
        window = acme.get("/v1/cameras/gate/counts", params={"from": "2026-12-04T10:00", "to": "2026-12-04T10:02"})
        unknown = acme.get("/v1/cameras/nowhere/counts").json()
        plural = acme.get("/v1/cameras/gate/counts", params={"class": "cars"})  # a typo: not "no cars"
    assert every["camera"] == "gate"
    assert [(r["minute"], r["class"]) for r in every["counts"]] == [
        ("2026-12-04T10:00", "car"), ("2026-12-04T10:00", "person"), ("2026-12-04T10:01", "car"),
        ("2026-12-04T10:02", "bus")]
    assert every["counts"][0]["counts"] == {"seen": 3, "in:lane1": 2}  # the heatmap stays out of the API
    assert [r["counts"]["seen"] for r in cars["counts"]] == [5]
    assert {r["minute"] for r in window.json()["counts"]} == {"2026-12-04T10:00", "2026-12-04T10:01"}
    assert unknown["counts"] == []
    assert plural.status_code == 422 and plural.json()["error"]["code"] == "validation_error"
    with api.client("acme_read") as acme:  # minutes given backwards: an error, as days are in /v1/usage
        backwards = acme.get("/v1/cameras/gate/counts", params={"from": "2026-12-04T10:02", "to": "2026-12-04T10:00"})
    assert backwards.status_code == 422 and "'from' is after 'to'" in backwards.json()["error"]["message"]
    assert "'cars'" in plural.json()["error"]["message"] and "car" in plural.json()["error"]["message"]


def test_counts_bounds_are_times_with_offsets_and_long_ranges_say_truncated(api):
    from faceatlas.video.events import Event
    from faceatlas.video.sinks import DatabaseSink

    sink = DatabaseSink(api.database_url, tenant="acme")
    for minute in ("10:00", "10:01", "10:02"):
        data = {"minute": f"2026-12-04T{minute}", "classes": {"car": {"seen": 1}}}
        sink.emit(Event("counts", "bay", 1, 1.0, data=data))
    sink.close()

    def minutes(**params: object) -> list[str]:
        with api.client("acme_read") as acme:
            answer = acme.get("/v1/cameras/bay/counts", params=params)
        assert answer.status_code == 200, answer.text
        return [row["minute"][-5:] for row in answer.json()["counts"]]

    assert minutes(**{"from": "2026-12-04T11:01+01:00"}) == ["10:01", "10:02"]
    assert minutes(**{"from": "2026-12-04 10:01", "to": "2026-12-04T10:02Z"}) == ["10:01"]
    with api.client("acme_read") as acme:
        bad = acme.get("/v1/cameras/bay/counts", params={"from": "garbage"})
        page = acme.get("/v1/cameras/bay/counts", params={"limit": 2}).json()
        rest = acme.get("/v1/cameras/bay/counts", params={"from": page["next_from"], "limit": 2}).json()
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    assert "ISO 8601" in bad.json()["error"]["message"]
    assert page["truncated"] and page["next_from"] == "2026-12-04T10:02"
    assert [r["minute"][-5:] for r in page["counts"]] == ["10:00", "10:01"]
    assert not rest["truncated"] and rest["next_from"] is None
    assert [r["minute"][-5:] for r in rest["counts"]] == ["10:02"]
