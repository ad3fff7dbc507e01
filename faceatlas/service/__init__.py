"""The metered multi-tenant REST API (FastAPI) over the engine and galleries."""

from faceatlas.service.app import check_address, check_processes, create_app, preflight
from faceatlas.settings import ServiceSettings

__all__ = ["ServiceSettings", "check_address", "check_processes", "create_app", "preflight"]
