"""A console form's photos under its one-time token (:func:`console.uploads.each_photo`): a photo
whose work is cancelled (a level-triggered cancel of anyio's task groups) frees its claim without
I/O, as the API's routes do, so that the form sent again does it; awaiting the release while
cancelled left the claim held for good, and every later sending answered "still on this photo"."""

from __future__ import annotations

from types import SimpleNamespace

import anyio
import pytest

from faceatlas.service.console import uploads
from faceatlas.service.deps import Meter
from faceatlas.service.shared_state import MemoryState
from faceatlas.settings import ServiceSettings

ONCE = "f" * 22


class Upload:
    filename = "a.jpg"

    async def read(self) -> bytes:
        return b"photo"


def test_a_cancelled_photo_frees_its_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = MemoryState(lambda tenant: 0, ServiceSettings())
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(shared=shared)), state=SimpleNamespace(),
                              url=SimpleNamespace(path="/console/galleries/c/enrol"))
    principal = SimpleNamespace(tenant_id="acme", allows=lambda scope: True)

    async def gate(request, principal, operation, scope):  # the API's gate needs the whole app
        meter = Meter(principal, operation)
        request.state.meter = meter
        return meter

    monkeypatch.setattr(uploads, "gate", gate)
    monkeypatch.setattr(uploads, "charge_pixels", lambda request, data: None)

    async def slow(data: bytes, meter: Meter) -> dict:
        await anyio.sleep(30)
        return {}

    async def main() -> None:
        with anyio.move_on_after(0.2):
            await uploads.each_photo(request, principal, "enrol", "write", [Upload()], slow, once=ONCE, path="/v1/x")

    anyio.run(main)
    assert shared._running == {}
    assert shared.begin_idempotent("acme", f"console:{ONCE}:0", "") is None  # a new sending does the photo
