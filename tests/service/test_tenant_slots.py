"""The places of a tenant's exports (``TenantSlots``): a place's release is also a ``weakref.finalize``
callback of its call's Meter, which the garbage collector may run in any thread, that one included
while it holds the slots' lock (in ``take`` or ``held``): a non-reentrant lock deadlocked there."""

from __future__ import annotations

import gc
import threading
import weakref

from faceatlas.service.shared_state import TenantSlots


class _Call:
    """A call that holds a place (as a Meter does), in a reference cycle: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_a_place_freed_by_the_collector_while_the_lock_is_held_does_not_deadlock() -> None:
    slots = TenantSlots(1)
    done = threading.Event()

    def run() -> None:
        release = slots.take("acme")
        assert release is not None
        call = _Call()
        weakref.finalize(call, release)  # as metered(hold=...) does
        del call, release
        with slots._lock:  # the collector runs while take/held hold the lock (an allocation triggers it)
            gc.collect()
        done.set()

    gc_was = gc.isenabled()
    gc.disable()  # no collection before the one under the lock
    try:
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(10)
    finally:
        if gc_was:
            gc.enable()
    assert done.is_set(), "the release run by the collector under the slots' lock deadlocked"
    assert slots.held("acme") == 0
    again = slots.take("acme")  # the place is free again, once
    assert again is not None and slots.take("acme") is None
    again()
    again()
    assert slots.held("acme") == 0
