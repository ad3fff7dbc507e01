"""Work a request does once, not again per request: the calibration behind a search by embedding
(parsed once per process while its file is unchanged), the console's key (one read of its row per
page) and a store's charts, the dashboard's and the analytics API's PNG (drawn again only when their
figures change, per tenant)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from matplotlib.figure import Figure
from sqlalchemy import event

from faceatlas.apps.retail import Camera, Entry, RetailStore, StoreConfig
from faceatlas.db import utcnow


@contextmanager
def statements(api) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    """The SQL statements the app runs meanwhile (SQLAlchemy's ``before_cursor_execute``)."""
    seen: list[str] = []

    def note(conn, cursor, statement, *rest) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    engine = api.app.state.db
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def console_client(api, key: str) -> TestClient:  # type: ignore[no-untyped-def]
    """A console session of ``key`` over the app in this process."""
    client = TestClient(api.app)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text).group(1)
    answer = client.post("/console/login", data={"key": api.keys[key], "csrf": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return client


def test_a_search_by_embedding_reads_no_calibration_file(api, examples: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """It read and parsed the pack's calibration JSON on every request."""
    name = f"cal_{uuid.uuid4().hex[:6]}"
    with api.api_client("acme_write") as client:
        client.create_collection(name)
        client.enrol(name, "obama", examples / "tests" / "test_images" / "obama.jpg")
        face = client.detect(examples / "tests" / "test_images" / "obama.jpg", embedding=True).faces[0]
    body = {"embedding": list(face.embedding), "recognizer_id": face.recognizer_id}
    read_text, reads = Path.read_text, []

    def counted(self: Path, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
        if self.suffix == ".json":
            reads.append(self.name)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    with api.client("acme_read") as http:
        answers = [http.post(f"/v1/collections/{name}/search", json=body) for _ in range(4)]
    assert all(a.status_code == 200 for a in answers), answers[-1].text
    assert answers[-1].json()["results"][0]["matches"][0]["external_id"] == "obama"  # decided at the default FPIR
    assert len(reads) <= 1, reads  # the first search of this process may parse it; none after


def test_a_console_page_reads_its_key_once(api) -> None:
    """The session's user read the key's prefix, then the whole key row again for its principal."""
    client = console_client(api, "acme_admin")
    assert client.get("/console/galleries").status_code == 200
    with statements(api) as seen:
        assert client.get("/console/galleries").status_code == 200
    keys = [s for s in seen if "svc_api_keys" in s]
    assert len(keys) == 1, keys


def _same_figures(api, fast_analyzer, tmp_path: Path, stores: dict[str, str]) -> datetime:
    """Two visits now in each tenant's store (tenant -> store id): the same figures in both; returns now."""
    now = utcnow()
    for tenant, store_id in stores.items():
        config = StoreConfig(id=store_id, tenant=tenant, cameras=[Camera(id="door", role="door")])
        with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx") as store:
            for track in ("a", "b"):
                store.entry(Entry("door", now, track=f"{store_id}:{track}"))
    return now


def test_dashboard_charts_are_drawn_once_per_tenant_store_and_figures(api, fast_analyzer, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every view drew its charts (~100 ms each) though nothing had changed; the charts kept are
    never another tenant's, even of the same figures, and drawn again once the figures change."""
    suffix = uuid.uuid4().hex[:6]
    stores = {"acme": f"waste-a-{suffix}", "globex": f"waste-g-{suffix}"}
    now = _same_figures(api, fast_analyzer, tmp_path, stores)
    savefig, drawn = Figure.savefig, []

    def counted(self: Figure, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        drawn.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", counted)
    acme, globex = console_client(api, "acme_admin"), console_client(api, "globex_admin")
    first = acme.get(f"/console/store/{stores['acme']}")
    assert first.status_code == 200 and drawn, first.text
    charts = len(drawn)
    second = acme.get(f"/console/store/{stores['acme']}")
    assert second.status_code == 200 and len(drawn) == charts  # nothing changed: nothing drawn
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', first.text)
    assert images and images == re.findall(r'src="data:image/png;base64,([^"]+)"', second.text)
    assert globex.get(f"/console/store/{stores['globex']}").status_code == 200
    assert len(drawn) == 2 * charts  # the other tenant's store is drawn for it, not served acme's
    assert acme.get(f"/console/store/{stores['globex']}").status_code == 404
    config = StoreConfig(id=stores["acme"], tenant="acme", cameras=[Camera(id="door", role="door")])
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx") as store:
        store.entry(Entry("door", now, track=f"{stores['acme']}:c"))
    assert acme.get(f"/console/store/{stores['acme']}").status_code == 200
    assert len(drawn) > 2 * charts  # a third visit: the visits chart is drawn again


def test_an_analytics_png_is_drawn_once_per_tenant_store_and_figures(api, fast_analyzer, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``/v1/retail/stores/{id}/analytics?format=png`` drew its chart on every request though nothing
    had changed; it keeps them as the dashboard does (the app's :class:`ChartCache`), never serving
    one tenant's chart to another's store of the same figures."""
    from faceatlas.apps.retail import analytics

    suffix = uuid.uuid4().hex[:6]
    stores = {"acme": f"png-a-{suffix}", "globex": f"png-g-{suffix}"}
    now = _same_figures(api, fast_analyzer, tmp_path, stores)
    drawn: list[str] = []
    chart_png = analytics.chart_png

    def counted(report, name: str) -> bytes:  # type: ignore[no-untyped-def]
        drawn.append(name)
        return chart_png(report, name)

    monkeypatch.setattr(analytics, "chart_png", counted)
    from faceatlas.service.routes import retail as retail_routes  # it drew with the name it imported

    monkeypatch.setattr(retail_routes, "chart_png", counted, raising=False)
    params = {"from": now.date().isoformat(), "to": now.date().isoformat(), "format": "png",
              "chart": "visits_per_hour"}
    with api.client("acme_admin") as acme, api.client("globex_admin") as globex:
        first = acme.get(f"/v1/retail/stores/{stores['acme']}/analytics", params=params)
        second = acme.get(f"/v1/retail/stores/{stores['acme']}/analytics", params=params)
        assert first.status_code == second.status_code == 200, first.text
        assert first.headers["content-type"] == "image/png" and first.content[:4] == b"\x89PNG"
        assert second.content == first.content and drawn == ["visits_per_hour"]  # drawn once
        other = globex.get(f"/v1/retail/stores/{stores['globex']}/analytics", params=params)
        assert other.status_code == 200 and other.content[:4] == b"\x89PNG", other.text
        assert drawn == ["visits_per_hour"] * 2  # the other tenant's store is drawn for it, not served acme's
        assert acme.get(f"/v1/retail/stores/{stores['globex']}/analytics", params=params).status_code == 404
        assert len(drawn) == 2
