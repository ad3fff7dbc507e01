"""The FastAPI application: wiring of settings, database, engine pool, metering and routes."""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from faceatlas.apps.albums import migrate as migrate_albums
from faceatlas.apps.retail import migrate as migrate_retail
from faceatlas.db import create_database_engine
from faceatlas.engine import FaceAnalyzer
from faceatlas.errors import Unauthorized
from faceatlas.gallery import Gallery
from faceatlas.service.accounts import Accounts, KeyCeilings, billed
from faceatlas.service.db import migrate
from faceatlas.service.deps import QuotaCounter, usage_row
from faceatlas.service.errors import install_error_handlers
from faceatlas.service.fetch import allowed_origins
from faceatlas.service.inference import InferencePool
from faceatlas.service.limits import RefuseNul, UploadLimit
from faceatlas.service.metrics import ServiceMetrics
from faceatlas.service.ratelimit import TokenBuckets
from faceatlas.service.redact import RedactQuerySecrets
from faceatlas.service.routes import account, albums, events, faces, galleries, retail
from faceatlas.settings import ServiceSettings
from faceatlas.video import VideoBase


def create_app(settings: ServiceSettings | None = None, analyzer: FaceAnalyzer | None = None) -> FastAPI:
    """The service app. Models load and migrations run at startup (``/readyz`` says when done)."""
    settings = settings or ServiceSettings.from_env()
    allowed_origins(settings.url_fetch_allowlist)  # a malformed allow-list entry fails at start, not per request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        state.db = create_database_engine(settings.database_url)
        migrate(state.db)
        VideoBase.metadata.create_all(state.db)  # the events table `faceatlas watch` writes
        migrate_retail(state.db)  # the retail tables whose analytics the console reads
        migrate_albums(state.db)  # the albums' tables
        state.accounts = Accounts(
            state.db, KeyCeilings(settings.max_keys_per_tenant, settings.max_key_rate_per_tenant)
        )
        state.quotas = QuotaCounter(state.accounts.calls_this_month)
        state.gallery = Gallery.open(settings.database_url, index_dir=settings.index_dir)
        state.tenant_galleries = {}
        state.analyzer = analyzer or FaceAnalyzer(settings.pack)
        state.pool = InferencePool(
            state.analyzer,
            state.metrics,
            workers=settings.workers,
            queue_size=settings.queue_size,
            batching=settings.batching,
            max_batch=settings.max_batch,
            max_wait=settings.max_wait_ms / 1000.0,
        )
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            state.pool.close()
            state.gallery.close()
            state.db.dispose()

    # Swagger UI and ReDoc load their scripts from a CDN: served only when the operator enables them.
    app = FastAPI(
        title="FaceAtlas",
        version="1",
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
        description="Face detection, 1:1 comparison, liveness, galleries and 1:N search; metered per call.",
    )
    app.state.settings = settings
    app.state.metrics = ServiceMetrics()
    app.state.buckets = TokenBuckets()
    app.state.ready = False
    install_error_handlers(app)
    app.include_router(faces.router, prefix="/v1")
    app.include_router(galleries.router, prefix="/v1")
    app.include_router(events.router, prefix="/v1")
    app.include_router(retail.router, prefix="/v1")
    app.include_router(albums.router, prefix="/v1")
    app.include_router(account.router, prefix="/v1")

    @app.middleware("http")
    async def meter_calls(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        meter = getattr(request.state, "meter", None)
        operation = meter.operation if meter else "other"
        app.state.metrics.requests.labels(operation, str(response.status_code)).inc()
        app.state.metrics.latency.labels(operation).observe(time.perf_counter() - started)
        if meter is not None:
            # the bill's row is committed before the answer leaves: a call answered is a call recorded,
            # even if the process is killed next; a 5xx is recorded but neither billed nor counted
            row = usage_row(meter, response.status_code, started)
            await run_in_threadpool(app.state.accounts.record_usage, [row])
            if not billed(response.status_code):
                app.state.quotas.refund(meter.principal.tenant_id)
        return response

    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RefuseNul)
    app.add_middleware(RedactQuerySecrets)  # outermost of ours: before anything reads or logs the URL

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> PlainTextResponse:
        if not app.state.ready:
            return PlainTextResponse("starting", status_code=503)
        with app.state.db.connect() as connection:
            connection.execute(text("SELECT 1"))
        return PlainTextResponse("ready")

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> PlainTextResponse:
        """Prometheus metrics; with ``metrics_token`` set, only for ``Authorization: Bearer <token>``."""
        if settings.metrics_token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {settings.metrics_token}".encode()):
                raise Unauthorized("/metrics needs the metrics token (Authorization: Bearer <token>)")
        return PlainTextResponse(
            generate_latest(app.state.metrics.registry).decode(), media_type="text/plain; version=0.0.4"
        )

    return app
