"""The FastAPI application: wiring of settings, database, engine pool, metering and routes."""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from faceatlas.apps.albums import migrate as migrate_albums
from faceatlas.apps.kyc import KycConfig, KycService
from faceatlas.apps.kyc import migrate as migrate_kyc
from faceatlas.apps.retail import ChartCache, purge_anonymous_visitors
from faceatlas.apps.retail import migrate as migrate_retail
from faceatlas.db import create_database_engine, lock_schema, utcnow
from faceatlas.engine import Calibrations, FaceAnalyzer, get_pack, load_calibration, resolve
from faceatlas.errors import DatabaseUnavailable, FaceAtlasError, InvalidArgument, StateUnavailable, Unauthorized
from faceatlas.gallery import Gallery, check_index_dir, database_identity, index_dir_for
from faceatlas.gallery import migrate as gallery_migrate
from faceatlas.service.accounts import Accounts, FollowUps, KeyCeilings, UsageWriter, billed
from faceatlas.service.console import ConsoleSessions
from faceatlas.service.console import install as install_console
from faceatlas.service.db import database_identity_at, migrate
from faceatlas.service.deps import (
    API_PREFIX,
    UNPARSED_JSON,
    Meter,
    route_contracts,
    route_error_answers,
    route_operation,
    usage_row,
)
from faceatlas.service.errors import DatabaseOutage, error_response, install_error_handlers
from faceatlas.service.headers import SecurityHeaders
from faceatlas.service.idempotency import conclude as conclude_idempotency
from faceatlas.service.inference import InferencePool
from faceatlas.service.lease import ServerLease
from faceatlas.service.limits import RefuseEncodedSlash, RefuseNul, UploadLimit
from faceatlas.service.logs import RequestLog
from faceatlas.service.metrics import ServiceMetrics
from faceatlas.service.redact import RedactQuerySecrets, loggable_path
from faceatlas.service.retention import RetentionSweep
from faceatlas.service.routes import account, albums, ar, events, faces, galleries, kyc, retail
from faceatlas.service.schemas import ErrorOut
from faceatlas.service.shared_state import CountCalls, MemoryState, SharedState
from faceatlas.service.tenants import subject_gone
from faceatlas.settings import EngineSettings, ServiceSettings, StorageSettings
from faceatlas.video import VideoBase, adopt_space_rows, purge_events

_log = logging.getLogger(__name__)


def open_shared_state(settings: ServiceSettings, count_calls: CountCalls, database: Callable[[], str]) -> SharedState:
    """Redis when ``settings.redis_url`` is set (many processes; the state of the database whose
    id ``database`` gives, see ``gallery.database_identity``), else this process's memory."""
    if settings.redis_url is None:
        return MemoryState(count_calls, settings)
    from faceatlas.service.redis_state import RedisState  # the redis client: an optional extra

    return RedisState(settings, count_calls, database())


PROCESSES_PER_CORE = 4  # server processes a machine runs at most per core (each loads the models: ~0.5 GB)


def check_processes(processes: int) -> int:
    """``processes`` when this machine can run that many server processes, else :class:`InvalidArgument`
    (`serve --processes 500` started 500 model-loading processes and the kernel killed what it could)."""
    most = PROCESSES_PER_CORE * (os.cpu_count() or 1)
    if not 1 <= processes <= most:
        raise InvalidArgument(f"--processes is 1 to {most} on this machine ({PROCESSES_PER_CORE} per core: each "
                              f"process loads the models), not {processes}; scale further with more machines")
    return processes


def check_address(host: str, port: int) -> None:
    """:class:`InvalidArgument` when a server could not listen on ``host``:``port`` (the port in use,
    the host no address of this machine), said before the models load (uvicorn says it after,
    with exit 3). A probe socket binds and closes; the server binds again a moment later."""
    if not 0 <= port <= 65535:  # getaddrinfo took 70000 (bind then overflowed) and blamed --host for -1
        raise InvalidArgument(f"--port is 0 to 65535 (0: any free port), not {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidArgument(f"--host {host!r} is no address this machine can listen on ({exc})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port in TIME_WAIT is free
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InvalidArgument(f"port {port} on {host} is in use (another server?); choose another "
                                      "with --port") from None
            raise InvalidArgument(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def watch_parent(period: float = 1.0) -> None:
    """Stop this process (SIGTERM: a graceful shutdown) once its parent is gone: a worker of
    ``serve --processes N`` whose supervisor was killed leaves no orphan serving the port."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        _log.warning("the supervising process %d is gone; this worker stops", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="faceatlas-parent-watch", daemon=True).start()


def create_worker_app() -> FastAPI:
    """The app of one worker of ``serve --processes N`` (uvicorn's factory): :func:`create_app`
    from the environment, stopping itself when its supervisor is gone. An app that cannot be built
    exits with uvicorn's status for a failed start, which stops the supervisor (any other error
    was taken for a crash: the worker was started again, and failed again, for ever)."""
    from uvicorn.config import STARTUP_FAILURE

    try:
        app = create_app()
    except FaceAtlasError as exc:
        _log.error("error (%s): %s", exc.code, exc)
        sys.exit(STARTUP_FAILURE)
    except Exception:  # noqa: BLE001 - a bug: said with its traceback, and the start fails
        _log.exception("the app of this server process cannot be built")
        sys.exit(STARTUP_FAILURE)
    watch_parent()
    return app


REDIS_RETRY_SECONDS = 1.0  # how often a server waiting for its Redis at start tries again


class OneLineStartupFailure(logging.Filter):
    """uvicorn logs a failed app start as Starlette's whole traceback; one of FaceAtlas's own
    errors (a Milvus that does not answer, a database that changed since the checks before the
    start) is said in one line, ``error (code): message``, as every command says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno >= logging.ERROR and message.startswith("Traceback"):
            name, _, text = message.rstrip().splitlines()[-1].partition(": ")
            error = _error_class(name)
            if error is not None:
                record.msg, record.args, record.exc_info = f"error ({error.code}): {text}", (), None
        return True


def _error_class(qualified_name: str) -> type[FaceAtlasError] | None:
    """The class of FaceAtlas's error tree a traceback's last line names (``module.Class``)."""
    classes: list[type[FaceAtlasError]] = [FaceAtlasError]
    while classes:
        error = classes.pop()
        if f"{error.__module__}.{error.__qualname__}" == qualified_name:
            return error
        classes.extend(error.__subclasses__())
    return None


def _say_startup_failures_in_one_line() -> None:
    """Install :class:`OneLineStartupFailure` on uvicorn's log once per process."""
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, OneLineStartupFailure) for f in log.filters):
        log.addFilter(OneLineStartupFailure())


def migrate_all(engine: Engine) -> None:
    """Every table the server reads and writes, at its newest revision: each layer's own history
    (gallery, service, retail, albums, KYC) and the video events tables `faceatlas watch` writes."""
    gallery_migrate(engine)
    migrate(engine)
    with engine.begin() as connection:
        lock_schema(connection)
        VideoBase.metadata.create_all(connection)
        adopt_space_rows(connection)  # an older watch's events of a service tenant: listed and erased with its own
    migrate_retail(engine)  # the retail tables whose analytics the console reads
    migrate_albums(engine)
    migrate_kyc(engine)


def preflight(settings: ServiceSettings, engine_settings: EngineSettings) -> ServerLease:
    """What would stop a server's start, found before it binds its port, as one error: the pack's
    model files, every one (the liveness and attribute models too: a missing one was found by the
    first liveness or KYC call; fetched when allowed) and calibration (``FACEATLAS_CALIBRATION``), the database's
    tables (migrated here, once: a database of a newer FaceAtlas is refused), the shared
    state's credentials, another server that may not run beside this one. Returns this server's
    hold on its database (see :mod:`faceatlas.service.lease`), for the serving process
    (``faceatlas serve``) to keep.

    A Redis that cannot be reached is waited for, tried again every ``REDIS_RETRY_SECONDS`` (said
    once in the log): the hold names the Redis its servers count in, which only Redis can say, so
    the server binds its port once Redis answers (its processes then start as ever)."""
    pack = get_pack(settings.pack, engine_settings)
    for model in pack.files:
        resolve(model, settings=engine_settings, pack=pack.name)
    load_calibration(pack, engine_settings)  # a name no calibration has: said now, not by each process's start
    check_index_dir(index_dir_for(settings.database_url, settings.index_dir), make=True)
    engine = create_database_engine(settings.database_url, connect_timeout=settings.db_connect_timeout)
    try:  # a database of a newer FaceAtlas: said once here, not by each process's startup
        migrate_all(engine)
    finally:
        engine.dispose()
    if settings.redis_url is None:
        return ServerLease.take(settings.database_url)
    from faceatlas.service import redis_state  # the redis client: an optional extra

    where = redis_state.address(settings.redis_url)
    client = redis_state.connect(settings.redis_url)
    waiting = False
    try:
        while True:
            try:
                redis_state.check(client, where)
                # the deployment id of this database's state in Redis (its keys are scoped by the database's
                # id: databases sharing one Redis each have their own), asked once the lease holds the database
                lease = ServerLease.take(settings.database_url, redis_identity=lambda alone: redis_state.deployment(
                    client, database_identity_at(settings.database_url), alone))
            except StateUnavailable as exc:
                if not waiting:
                    _log.warning("%s; the server waits for it (trying again every %g s) and starts once it answers",
                                 exc, REDIS_RETRY_SECONDS)
                waiting = True
                time.sleep(REDIS_RETRY_SECONDS)
                continue
            if waiting:
                _log.warning("the shared state (Redis at %s) answers: the server starts", where)
            return lease
    finally:
        client.close()


def create_app(settings: ServiceSettings | None = None, analyzer: FaceAnalyzer | None = None,
               engine_settings: EngineSettings | None = None,
               storage_settings: StorageSettings | None = None) -> FastAPI:
    """The service app. Models load and migrations run at startup (``/readyz`` says when done);
    a setting out of its rules fails here, before the server starts (:class:`InvalidSetting`).
    Each settings section not given is the environment's; the database and index folder are
    ``settings``' (``serve --db``; without ``settings``, ``storage_settings``'), the vector
    backend ``storage_settings``'."""
    if settings is None:
        settings = ServiceSettings.from_env(**({} if storage_settings is None else {
            "database_url": storage_settings.database_url, "index_dir": storage_settings.index_dir}))
    engine_settings = engine_settings or EngineSettings()
    _say_startup_failures_in_one_line()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        state.db = create_database_engine(settings.database_url, connect_timeout=settings.db_connect_timeout)
        migrate_all(state.db)
        state.database_outage = DatabaseOutage(settings.database_url)  # logged once as it starts and ends
        state.database_outage.watch(state.db)
        # the bookkeeping (audit records, erasures of ids from the audit trail) of changes committed
        # already, kept while the database drops and done once it is back: the change is answered
        state.follow_ups = FollowUps()
        state.accounts = Accounts(
            state.db, KeyCeilings(settings.max_keys_per_tenant, settings.max_key_rate_per_tenant, tenant_rates=True),
            keys_changed=lambda: state.shared.forget_keys(),  # every process's cached key lookups
            follow_ups=state.follow_ups,
        )
        state.usage = UsageWriter(state.accounts)  # the bill's rows; those kept while the database failed
        state.shared = open_shared_state(settings, state.accounts.calls_this_month,
                                         partial(database_identity, state.db))  # runs the gallery's migrations
        state.shared.check()
        state.console_sessions = ConsoleSessions(state.db, state.accounts, settings.console_session_minutes)
        state.gallery = Gallery.open(settings.database_url, index_dir=settings.index_dir, settings=engine_settings,
                                     storage_settings=storage_settings or StorageSettings(
                                         db_connect_timeout=settings.db_connect_timeout))
        state.tenant_galleries = {}
        # the calibration files parsed, re-read when changed: a search by embedding has no analyzer's
        state.calibrations = Calibrations()
        state.store_charts = ChartCache()  # the store dashboards' charts, drawn again only when their figures change
        if not settings.audit_keeps_subject_ids:  # an audit record written late names no subject erased meanwhile
            state.accounts.subject_gone = subject_gone(state.gallery)
        state.analyzer = analyzer or FaceAnalyzer(settings.pack, settings=engine_settings)
        state.gallery.serving = state.analyzer.pack  # one server, one pack: a mismatch names it and the cure
        state.pool = InferencePool(
            state.analyzer,
            state.metrics,
            workers=settings.workers,
            queue_size=settings.queue_size,
            per_tenant=settings.queue_per_tenant,
            batching=settings.batching,
            max_batch=settings.max_batch,
            max_wait=settings.max_wait_ms / 1000.0,
        )
        # Reference images are kept per tenant (svc_tenants.kyc_retention_days, default 0: none).
        state.kyc = KycService(state.db, state.analyzer, KycConfig(  # migrates the verification tables
            session_s=settings.kyc_session_seconds, retention_days=0))
        # what expired is deleted now and every period, not only as a side effect of more KYC calls
        # the index folder swept (what deletes through other machines' folders left in it) at the start
        # and every period, so a machine that keeps running drops erased vectors too
        events_kept = settings.event_retention_days
        state.retention = RetentionSweep({"KYC reference images": state.kyc.purge,
                                          **({} if events_kept is None else {
                                              "video events and their snapshots": lambda: purge_events(
                                                  state.db, utcnow() - timedelta(days=events_kept))}),
                                          "anonymous store visitors": partial(purge_anonymous_visitors, state.db),
                                          # a live collection's file is rebuilt from the database at its next use
                                          "index files of deleted collections, holding erased faces or of an "
                                          "older format":
                                              state.gallery.sweep_indexes},
                                         settings.retention_sweep_seconds)
        state.retention.start()
        route_contracts(app)  # the OpenAPI document, built before the first call rather than during it
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            state.retention.close()
            state.pool.close()
            state.shared.close()
            state.gallery.close()
            state.follow_ups.close()  # the audit records and erasures kept while the database failed
            state.usage.close()  # the usage rows kept while the database failed are written now
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
    app.state.ready = False
    install_error_handlers(app)
    app.include_router(faces.router, prefix=API_PREFIX)
    app.include_router(galleries.router, prefix=API_PREFIX)
    app.include_router(events.router, prefix=API_PREFIX)
    app.include_router(retail.router, prefix=API_PREFIX)
    app.include_router(albums.router, prefix=API_PREFIX)
    app.include_router(ar.router, prefix=API_PREFIX)
    app.include_router(kyc.router, prefix=API_PREFIX)
    app.include_router(account.router, prefix=API_PREFIX)
    install_console(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    @app.middleware("http")
    async def meter_calls(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # the answer of an Idempotency-Key is stored only now, after the call's usage row (cancelled:
        # the route abandoned its claim, as a dead process's)
        try:
            sent = await metered_call(request, call_next)
        except Exception:
            await conclude_idempotency(request, None)
            raise
        await conclude_idempotency(request, sent)
        return sent

    async def metered_call(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        async def unmeter(meter: Meter) -> None:
            """No call was served: the call's metering dropped, neither recorded nor counted."""
            request.state.meter = None
            with suppress(StateUnavailable):
                await run_in_threadpool(app.state.shared.settle, meter.principal.tenant_id, False, meter.month)

        started = time.perf_counter()
        try:
            response = await call_next(request)
        except ClientDisconnect:  # the body was cut off: over the upload limit (UploadLimit answered 413), or
            meter = getattr(request.state, "meter", None)  # the client left; no call was served: none recorded
            if meter is not None:
                await unmeter(meter)
            return error_response("bad_request", "the request body was cut off before its end", 400)
        except Exception:  # noqa: BLE001 - a bug: the documented 500, recorded (neither billed nor counted)
            _log.exception("unhandled error answering %s %s", request.method, loggable_path(request.scope))
            response = error_response("internal", "internal server error", 500)
        meter = getattr(request.state, "meter", None)
        operation = meter.operation if meter else route_operation(request.scope.get("route")) or "other"
        app.state.metrics.requests.labels(operation, str(response.status_code)).inc()
        app.state.metrics.latency.labels(operation).observe(time.perf_counter() - started)
        if meter is not None and response.status_code == 413:
            # refused for its size (an image over the server's pixel limit, or costing more than the key's
            # burst, an image by URL over the upload limit): no call was served, and whichever check
            # fired first, the same answer; neither recorded nor counted (an 81 MP image was billed,
            # a 20 MP one over the burst not)
            await unmeter(meter)
            meter = None
        if meter is not None:
            # The bill's row is committed before the answer leaves: a call answered is a call recorded,
            # even if the process is killed next; a 5xx is recorded but neither billed nor counted.
            # The row's insert is tried again briefly (UsageWriter.record). If it still fails, what the
            # answer may say depends on what the call did:
            # - it changed state and succeeded (an API write route, all of them Idempotency-Key routes,
            #   or a console form, answered below 400): its effect happened, and its answer is kept for
            #   the key's retries, so "not served" would be a lie (a retry without a key acts twice; one
            #   with the key replays the kept answer, which no row billed). The real answer goes, billed:
            #   the row waits in this process (app.state.usage) until the next row written or the
            #   shutdown, and the quota count stays spent;
            # - else nothing was done (a read, a refusal, a failure: an error answer is not kept for a
            #   key, whose retry runs again): 503 database_unavailable, neither billed nor counted, so
            #   nothing is ever served unbilled.
            row = usage_row(meter, response.status_code, started)
            settle = app.state.shared.settle
            if getattr(request.state, "database_failed", False):
                # the call failed on the database (503 database_unavailable, nothing done, not billed):
                # not recorded either, as when the database is down, rather than waiting on it again
                # (a locked SQLite file held the answer its busy timeout more a try: 49 s in all)
                with suppress(StateUnavailable):
                    await run_in_threadpool(settle, meter.principal.tenant_id, False, meter.month)
                return response
            try:
                await run_in_threadpool(app.state.usage.record, row)
            except SQLAlchemyError:
                if meter.changes_state and response.status_code < 400:
                    app.state.usage.keep(row)
                    with suppress(StateUnavailable):
                        await run_in_threadpool(settle, meter.principal.tenant_id, True, meter.month)
                    return response
                with suppress(StateUnavailable):
                    await run_in_threadpool(settle, meter.principal.tenant_id, False, meter.month)
                failure = DatabaseUnavailable("the database is unavailable; the call was not served", retry_after=1.0)
                return error_response(failure.code, str(failure), failure.status, failure.retry_after)
            with suppress(StateUnavailable):  # the answer stands (billed); reconciliation mends the counter
                await run_in_threadpool(settle, meter.principal.tenant_id, billed(response.status_code), meter.month)
        return response

    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RefuseNul)
    app.add_middleware(RefuseEncodedSlash, prefix=API_PREFIX)
    app.add_middleware(RedactQuerySecrets)  # before anything reads the URL (RequestLog logs it after the call)
    app.add_middleware(SecurityHeaders, prefix=API_PREFIX)  # on every answer, the refusals above included
    # outermost: every answer carries its X-Request-ID; the access line once the call is done (its path redacted)
    app.add_middleware(RequestLog)

    def dependencies() -> str | None:
        """What keeps this process from serving: the database or the shared state not answering."""
        try:
            with app.state.db.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return "the database cannot be reached"
        if not app.state.shared.reachable():  # every metered call would answer 503
            return "the shared state (Redis) cannot be reached"
        return None

    readiness = Readiness(dependencies)

    # HEAD too: load balancers and uptime monitors probe with it (it was 405 Method Not Allowed).
    # Both answer on the event loop: a liveness probe never waits for the threadpool, which calls on a
    # database that does not answer had filled (a healthy process was restarted for it).
    @app.api_route("/healthz", methods=["GET", "HEAD"], include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.api_route("/readyz", methods=["GET", "HEAD"], include_in_schema=False)
    async def readyz() -> PlainTextResponse:
        if not app.state.ready:
            return PlainTextResponse("starting", status_code=503)
        problem = await readiness.problem()
        if problem is not None:
            return PlainTextResponse(problem, status_code=503)
        return PlainTextResponse("ready")

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> PlainTextResponse:
        """Prometheus metrics; with ``metrics_token`` set, only for ``Authorization: Bearer <token>``."""
        if settings.metrics_token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {settings.metrics_token}".encode()):
                raise Unauthorized("/metrics needs the metrics token (Authorization: Bearer <token>)")
        return PlainTextResponse(
            app.state.metrics.latest().decode(), media_type="text/plain; version=0.0.4"
        )

    return app


READY_TIMEOUT_SECONDS = 2.0  # /readyz answers 503 when its check of the database and Redis takes longer


class Readiness:
    """``/readyz``'s check of what the process depends on (``check``: the problem, None when there
    is none), at most one running at a time in the threadpool, each probe waiting for it at most
    ``timeout_s`` (then: not ready). Probes arriving while a check runs wait for that one: a database
    that did not answer held one thread per probe for minutes, and the probes filled the threadpool."""

    def __init__(self, check: Callable[[], str | None], timeout_s: float = READY_TIMEOUT_SECONDS) -> None:
        self._check = check
        self._timeout = timeout_s
        self._running: asyncio.Future[str | None] | None = None

    async def problem(self) -> str | None:
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(run_in_threadpool(self._check))
        try:
            return await asyncio.wait_for(asyncio.shield(self._running), self._timeout)
        except TimeoutError:
            return f"the database or the shared state (Redis) did not answer within {self._timeout:g} s"


VALIDATION_ERROR = "validation_error: a parameter or field breaks its rule"
NUL_IN_URL = "bad_request: the URL holds a NUL character"


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI document with the error answers the API gives: its 422 is documented as
    FastAPI's ``HTTPValidationError`` (``{"detail": [...]}``), which the API never answers, so a
    generated client could not read an error. Every operation's 422 and ``default`` answers are
    :class:`ErrorOut` (``{"error": {"code", "message"}}``), and so is every other error answer a
    route declares without content (a snapshot's or a face crop's 404 was declared bodiless, and
    answered that JSON). Every operation declares its 400 (``bad_request`` and its kinds, answered
    by every call to a URL holding a NUL character), with the reasons a route adds (the image and
    file calls': :func:`~faceatlas.service.deps.error_answers`); a route's own 422 reasons
    (``unknown_effect``) are added to the ``validation_error`` one."""
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                           description=app.description, routes=app.routes,
                           separate_input_output_schemas=app.separate_input_output_schemas)
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        error = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(error.pop("$defs", {}))
        schemas["ErrorOut"] = error
        answer = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
        # the errors each route's dependencies can answer (a route's own reasons kept first); an included
        # router's routes are seen through their context (their path holds the prefix, their dependencies
        # the router's)
        for route in iter_route_contexts(app.routes):
            if isinstance(route.original_route, APIRoute) and route.include_in_schema and route.path_format:
                for method in route.methods or ():
                    operation = spec.get("paths", {}).get(route.path_format, {}).get(method.lower())
                    if operation is not None:
                        responses = operation.setdefault("responses", {})
                        for status, why in route_error_answers(route).items():
                            own = responses.get(status, {}).get("description")
                            responses[status] = {**responses.get(status, {}), "description": "; ".join(
                                dict.fromkeys(filter(None, (own, why))))}
        for operations in spec.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if "application/json" in operation.get("requestBody", {}).get("content", {}):
                    responses.setdefault("422", {})  # its body that does not parse (every route's the same)
                if "422" in responses:
                    own = responses["422"].get("description")
                    reasons = [VALIDATION_ERROR] + ([own] if own and own != "Validation Error" else [])
                    if "application/json" in operation.get("requestBody", {}).get("content", {}):
                        reasons.append(UNPARSED_JSON)
                    responses["422"] = {"description": "; ".join(reasons), **answer}
                bad = responses.setdefault("400", {})
                bad["description"] = "; ".join(filter(None, (bad.get("description"), NUL_IN_URL)))
                for status, declared in responses.items():
                    if status.isdigit() and int(status) >= 400 and "content" not in declared:
                        declared.update(answer)
                responses["default"] = {"description": "an error (4xx, 5xx)", **answer}
                operation["responses"] = dict(sorted(responses.items(), key=lambda item: (item[0] == "default",
                                                                                          item[0])))
        app.openapi_schema = spec
    return app.openapi_schema
