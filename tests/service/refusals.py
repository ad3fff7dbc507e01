"""``refused``: the assertion that a Python client call is refused with a given status and code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from faceatlas.client import FaceAtlasApiError


def refused(call: Callable[[], Any], status: int, code: str) -> FaceAtlasApiError:
    """The :class:`FaceAtlasApiError` that ``call`` raises, asserted to carry ``status`` and ``code``."""
    with pytest.raises(FaceAtlasApiError) as caught:
        call()
    assert (caught.value.status, caught.value.code) == (status, code), caught.value
    return caught.value
