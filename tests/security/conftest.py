"""The service fixtures of tests/service (``api``: the app in process; ``server``: a real uvicorn
server; ``launch``: an extra server with its own settings), shared with the security tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "faceatlas_tests_service_conftest", Path(__file__).resolve().parents[1] / "service" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_service = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _service
_spec.loader.exec_module(_service)

api = _service.api
server = _service.server
launch = _service.launch
