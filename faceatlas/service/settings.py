"""Service settings, read from ``FACEATLAS_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from faceatlas.db import DEFAULT_DATA_DIR, default_database_url


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


class ServiceSettings(BaseModel):
    """Everything an operator can tune; ``from_env()`` reads the environment."""

    database_url: str = Field(default_factory=default_database_url)
    index_dir: Path = DEFAULT_DATA_DIR.expanduser() / "indexes"
    pack: str | None = None
    max_upload_bytes: int = 15 * 1024 * 1024
    workers: int = 2
    queue_size: int = 32
    batching: bool = True
    max_batch: int = 32
    max_wait_ms: float = 4.0
    url_fetch_allowlist: list[str] = Field(default_factory=list)
    default_monthly_quota: int | None = None

    @classmethod
    def from_env(cls, **overrides: object) -> ServiceSettings:
        env = os.environ
        values: dict[str, object] = {
            "database_url": default_database_url(),
            "index_dir": Path(env.get("FACEATLAS_INDEX_DIR", DEFAULT_DATA_DIR.expanduser() / "indexes")),
            "pack": env.get("FACEATLAS_PACK"),
            "max_upload_bytes": int(env.get("FACEATLAS_MAX_UPLOAD_BYTES", 15 * 1024 * 1024)),
            "workers": int(env.get("FACEATLAS_WORKERS", 2)),
            "queue_size": int(env.get("FACEATLAS_QUEUE_SIZE", 32)),
            "batching": env.get("FACEATLAS_BATCHING", "1") not in ("0", "false", "no"),
            "url_fetch_allowlist": _env_list("FACEATLAS_URL_ALLOWLIST"),
        }
        values.update(overrides)
        return cls(**values)
