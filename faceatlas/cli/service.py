"""`faceatlas serve` and `faceatlas admin ...`: run the API, bootstrap tenants and keys, bill usage."""

from __future__ import annotations

import logging
import logging.config
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from faceatlas.cli.errors import ANSWERS_IN_MEMORY, Output, WholeTable, emit_json, err, fail
from faceatlas.cli.options import database_option
from faceatlas.db import create_database_engine, day_range, require_database, url_without_password
from faceatlas.errors import AlreadyExists, CommandLineError, FaceAtlasError, InvalidSetting
from faceatlas.gallery import Gallery, index_dir_for
from faceatlas.service.accounts import Accounts, key_prefix, usage_csv, usage_through
from faceatlas.service.db import migrate
from faceatlas.service.logs import log_config
from faceatlas.service.metrics import multiprocess_folder, process_gone
from faceatlas.service.tenants import delete_tenant, operator_accounts
from faceatlas.settings import EngineSettings, ServiceSettings, Settings

if TYPE_CHECKING:
    import uvicorn

console = Output()
_log = logging.getLogger(__name__)
admin = typer.Typer(help="Tenants, API keys and usage (run on the server's database).", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants.", no_args_is_help=True)
key_app = typer.Typer(help="API keys (shown once, stored hashed).", no_args_is_help=True)
admin.add_typer(tenant_app, name="tenant")
admin.add_typer(key_app, name="key")

DbOption = Annotated[str | None, typer.Option("--db", callback=database_option,
                                              help="database URL (default FACEATLAS_DATABASE_URL)")]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable JSON")]


# a stop (SIGTERM, Ctrl-C, a worker's supervisor gone) waits this long for calls in flight, then
# closes what is left: a client trickling an upload byte by byte no longer holds a stopping server
GRACEFUL_SHUTDOWN_S = 30
# an idle keep-alive connection is closed after this long (uvicorn's default, said here: connections
# count against FACEATLAS_MAX_CONNECTIONS). uvicorn has no timeout on a request body read slowly:
# that one is the reverse proxy's (docs/deploy.md)
KEEP_ALIVE_S = 5


def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: any free one)")] = 8000,
    db: DbOption = None,
    pack: Annotated[str | None, typer.Option("--pack", "-p", help="model pack")] = None,
    workers: Annotated[int | None, typer.Option(help="inference worker threads")] = None,
    batching: Annotated[bool, typer.Option(help="micro-batch the recogniser across requests")] = True,
    processes: Annotated[int, typer.Option(min=1, help="server processes on this port (needs FACEATLAS_REDIS_URL "
                                           "when more than 1: rates and quotas are shared in Redis)")] = 1,
) -> None:
    """Run the REST API (OpenAPI schema at /openapi.json; Swagger UI at /docs with FACEATLAS_DOCS=1)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from faceatlas.service import check_address, check_processes, create_app, preflight

    check_processes(processes)
    overrides: dict[str, object] = {"batching": batching}
    for name, value in (("database_url", db), ("pack", pack), ("workers", workers)):
        if value is not None:
            overrides[name] = value
    sections = Settings(service=ServiceSettings.from_env(**overrides))  # every FACEATLAS_* variable checked here
    settings = sections.service
    if processes > 1 and settings.redis_url is None:  # one line on stderr, with its code, as every command's error
        fail(CommandLineError(f"--processes {processes} needs FACEATLAS_REDIS_URL: each process would otherwise "
                              "grant a key's full rate and a tenant's full quota on its own"))
    check_address(host, port)  # the arguments and settings first, then what this machine holds
    # a missing model or calibration, Redis refusing, another server on the database: one line, before the port;
    # the hold on the database lasts as long as this process
    lease = preflight(settings, sections.engine)  # a Redis not reachable yet: waited for here
    # the server starts: its log set up as uvicorn sets it again (a start that failed above is its one line, as ever),
    # and the first lines say what it serves
    log_config = _log_config(settings.log_format)
    try:
        logging.config.dictConfig(log_config)
        _log_what_serves(settings, sections.engine)
        if processes == 1:
            try:
                uvicorn.run(create_app(settings, engine_settings=sections.engine), host=host, port=port,
                            log_level="info", log_config=log_config,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                            limit_concurrency=settings.max_connections, timeout_keep_alive=KEEP_ALIVE_S)
            except SystemExit as exc:  # uvicorn's 3: the app's start failed (uvicorn logged why)
                if exc.code != STARTUP_FAILURE:
                    raise
                fail(FaceAtlasError(f"the server failed to start (why is logged above); nothing serves {host}:{port}"))
            return
        # uvicorn's own supervisor: each process imports the app factory and builds it from the
        # environment (the overrides travel there), loads the engine once, and is restarted if it dies.
        ServiceSettings.export(**overrides)
        config = uvicorn.Config("faceatlas.service.app:create_worker_app", factory=True, workers=processes,
                                host=host, port=port, log_level="info", log_config=log_config,
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                                # each process's own: a connection past them is answered 503 by uvicorn
                                limit_concurrency=settings.max_connections, timeout_keep_alive=KEEP_ALIVE_S)
        with multiprocess_folder() as metrics:  # /metrics sums every process's counters, whichever one answers
            failed = _supervise(config, metrics)
        if failed:  # the supervisor stops once a process fails to start (uvicorn.run then returned: exit 0)
            which = f"all {processes}" if failed == processes else f"{failed} of the {processes}"
            fail(FaceAtlasError(f"{which} server processes failed to start (why is logged above), the supervisor "
                                f"stopped the others: nothing serves {host}:{port}"))
    finally:
        lease.release()


def _log_config(log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging, the access lines, and FaceAtlas's own from INFO on (what the retention sweep
    deleted, Milvus caught up: INFO went nowhere under uvicorn), each line with its time and level, in
    ``log_format`` (FACEATLAS_LOG_FORMAT: text or json; docs/deploy.md "Logs")."""
    return log_config(log_format)


def _log_what_serves(settings: ServiceSettings, engine: EngineSettings) -> None:
    """One line each at the start: the database (no password), the index folder, Redis (no
    password), the pack; a misspelt setting served a new empty database, and no line said which."""
    index = index_dir_for(settings.database_url, settings.index_dir)
    _log.info("database: %s", url_without_password(settings.database_url))
    _log.info("index folder: %s", index if index is not None else "none (indexes in memory, built from the database)")
    if settings.redis_url is None:
        _log.info("Redis: no Redis (rates, quotas and idempotency keys in this process's memory)")
    else:
        from faceatlas.service import redis_state  # the redis client: an optional extra

        _log.info("Redis: %s", redis_state.address(settings.redis_url))
    _log.info("pack: %s", settings.pack or engine.pack_name())


def _supervise(config: uvicorn.Config, metrics: str) -> int:
    """Run ``config.workers`` server processes under uvicorn's supervisor (what ``uvicorn.run``
    does) until it stops; returns how many of them had failed to start. A process that exits
    (replaced by the supervisor) is marked gone in the ``metrics`` folder."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def keep_subprocess_alive(self) -> None:
            before = {process.pid for process in self.processes}
            try:
                super().keep_subprocess_alive()
            finally:
                self._gone(before)

        def restart_all(self) -> None:
            before = {process.pid for process in self.processes}
            try:
                super().restart_all()
            finally:
                self._gone(before)

        def _gone(self, before: set[int | None]) -> None:
            for pid in before - {process.pid for process in self.processes}:
                if pid is not None:
                    process_gone(pid, metrics)

    sock = config.bind_socket()
    try:
        supervisor = Supervisor(config, sockets=[sock])
        supervisor.run()
    finally:
        sock.close()
    return sum(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)


def _accounts(db: str | None, *, create: bool = False) -> Accounts:
    """The accounts of the service database; only creating a tenant makes the database."""
    try:
        settings: ServiceSettings | None = ServiceSettings.from_env()
    except InvalidSetting:
        if db is None:  # the database is the settings': their error is this command's
            raise
        settings = None  # --db given: a setting of the server's that is wrong stops no operator's command
    url = db or (settings.database_url if settings else "")
    if not create:
        require_database(url, "service database", "`faceatlas admin tenant create` makes one")
    engine = create_database_engine(url)
    migrate(engine)
    return operator_accounts(engine, settings.redis_url if settings else None)


def _guard(action, as_json: bool = False):  # noqa: ANN001, ANN202 - wraps an admin call: a FaceAtlasError is exit 2
    """``action()``; its :class:`FaceAtlasError` said as :func:`fail` says it, as JSON on stdout with
    ``as_json`` (a ``--json`` command's: `key create --json` said it as text on stderr)."""
    try:
        return action()
    except FaceAtlasError as exc:
        fail(exc, as_json)


def _quota(calls: int | None) -> str:
    """A monthly quota as shown: none is unlimited (a quota of 0 allows no call)."""
    return "unlimited" if calls is None else str(calls)


def _max_rate(rate: float | None) -> str:
    """A tenant's key rate ceiling as shown: none is the server's FACEATLAS_MAX_KEY_RATE_PER_TENANT."""
    return "the server's" if rate is None else f"{rate:g}/s"


def _tenant_json(tenant: Any) -> dict[str, Any]:
    """A tenant as every ``admin tenant ... --json`` says it (``tenant list``'s fields), under the
    names the API's ``/v1/settings`` gives them (``tenant``, ``kyc_retention_days``); its own quota
    and ceiling (null: the server's default, which the API answers in their place)."""
    return {"tenant": tenant.id, "name": tenant.name, "monthly_quota": tenant.monthly_quota,
            "max_key_rate": tenant.max_key_rate, "kyc_retention_days": tenant.kyc_retention_days}


MaxRateOption = Annotated[float | None, typer.Option(
    "--max-rate", help="most calls/s the tenant's active keys may allow summed (its admin sets each key's rate "
    "within it; default: the server's FACEATLAS_MAX_KEY_RATE_PER_TENANT)")]


@tenant_app.command("create")
def tenant_create(tenant_id: str, name: str = "", quota: Annotated[int | None, typer.Option(
        help="monthly call quota")] = None, max_rate: MaxRateOption = None,
        exist_ok: Annotated[bool, typer.Option("--exist-ok", help="a tenant of that id with the same name, quota "
                                                                  "and --max-rate is no error: said, exit 0")]
        = False, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Create a tenant."""
    accounts = _guard(lambda: _accounts(db, create=True), as_json)

    def create() -> tuple[Any, bool]:
        try:
            return accounts.create_tenant(tenant_id, name, quota, max_rate), False
        except AlreadyExists:
            if not exist_ok:
                raise
            return accounts.existing_tenant(tenant_id, name, quota, max_rate), True  # or AlreadyExists: it differs

    tenant, existed = _guard(create, as_json)
    if as_json:
        emit_json({**_tenant_json(tenant), **({"existed": existed} if exist_ok else {})})
        return
    console.print(f"tenant {tenant.id} {'exists' if existed else 'created'} (quota {_quota(tenant.monthly_quota)}, "
                  f"key rate ceiling {_max_rate(tenant.max_key_rate)})")


@tenant_app.command("update")
def tenant_update(tenant_id: str, name: Annotated[str | None, typer.Option(help="new display name")] = None,
                  quota: Annotated[int | None, typer.Option(help="new monthly call quota")] = None,
                  unlimited: Annotated[bool, typer.Option("--unlimited", help="remove the quota")] = False,
                  max_rate: MaxRateOption = None,
                  default_max_rate: Annotated[bool, typer.Option(
                      "--default-max-rate", help="the server's key rate ceiling again")] = False,
                  db: DbOption = None, as_json: JsonOption = False) -> None:
    """Rename a tenant, change its monthly quota or the ceiling on its keys' summed rate (a lower
    ceiling leaves its keys as they are: new keys and rotations are refused until they are within it)."""
    tenant = _guard(lambda: _accounts(db).update_tenant(tenant_id, name=name, monthly_quota=quota,
                                                        unlimited=unlimited, max_key_rate=max_rate,
                                                        default_max_key_rate=default_max_rate), as_json)
    if as_json:
        emit_json(_tenant_json(tenant))
        return
    console.print(f"tenant {tenant.id}: {escape(tenant.name)}, quota {_quota(tenant.monthly_quota)}, "
                  f"key rate ceiling {_max_rate(tenant.max_key_rate)}")


@tenant_app.command("delete")
def tenant_delete(tenant_id: str, yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
                  db: DbOption = None, as_json: JsonOption = False) -> None:
    """Delete a tenant with every collection, face, vector and key it owns, its verification sessions,
    albums, stores' members, video events and audit trail (its usage rows stay: the bill; its id is
    not given to a new tenant). The vectors leave this machine's index folder at once; other
    machines' folders drop them at their next start, or within FACEATLAS_RETENTION_SWEEP_SECONDS
    while their servers run."""
    settings = ServiceSettings.from_env()
    accounts = _guard(lambda: _accounts(db), as_json)  # a missing database or tenant: an error before the question
    _guard(lambda: accounts.get_tenant(tenant_id), as_json)
    if not yes and as_json:  # nothing to ask in: it deleted without a question
        fail(CommandLineError(f"--json cannot ask before deleting tenant {tenant_id}: give --yes"), as_json)
    if not yes:
        typer.confirm(f"delete tenant {tenant_id} and every face it owns?", abort=True, err=True)
    gallery = _guard(lambda: Gallery.open(db or settings.database_url, index_dir=settings.index_dir), as_json)
    try:
        deleted = _guard(lambda: delete_tenant(accounts, gallery, tenant_id, settings.redis_url), as_json)
    finally:
        gallery.close()
    if settings.redis_url is None:  # the answers servers keep for retries name its subjects: out of reach here
        err.print(ANSWERS_IN_MEMORY)
    if as_json:
        emit_json({"tenant": tenant_id, "deleted": True, "collections": deleted.collections, "albums": deleted.albums,
                   "kyc_sessions": deleted.kyc_sessions, "stores": deleted.stores, "events": deleted.events})
        return
    counted = [(deleted.collections, "collection"), (deleted.albums, "album"),
               (deleted.kyc_sessions, "verification session"), (deleted.stores, "store"),
               (deleted.events, "stored video event")]  # with their minute counts
    said = [f"{n} {what}{'' if n == 1 else 's'}" for n, what in counted]
    console.print(f"tenant {tenant_id} deleted with {', '.join(said[:-1])} and {said[-1]}")


@tenant_app.command("list")
def tenant_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List tenants."""
    tenants = _accounts(db).list_tenants()
    if as_json:
        emit_json([_tenant_json(t) for t in tenants])
        return
    for t in tenants:
        console.print(f"{escape(t.id)}\t{escape(t.name)}\tquota {_quota(t.monthly_quota)}\t"
                      f"key rate ceiling {_max_rate(t.max_key_rate)}")


def _issued_json(issued: Any) -> dict[str, Any]:
    """A key just issued as ``key create --json`` and ``key rotate --json`` say it (the API's fields, its tenant)."""
    return {"key": issued.token, "prefix": issued.prefix, "tenant": issued.tenant_id, "scopes": issued.scopes}


@key_app.command("create")
def key_create(
    tenant_id: str,
    scope: Annotated[list[str], typer.Option("--scope", help="admin, write, read or detect (repeatable)")],
    name: str = "",
    rate: Annotated[float, typer.Option(help="requests per second")] = 20.0,
    burst: Annotated[int, typer.Option(help="token-bucket burst")] = 40,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key; the key itself is printed once and never stored."""
    issued = _guard(lambda: _accounts(db).create_key(tenant_id, scope, name, rate, burst), as_json)
    if as_json:
        emit_json(_issued_json(issued))
    else:
        console.print(f"key for {escape(issued.tenant_id)} ({escape(', '.join(issued.scopes))}) — store it now, it is "
                      "not kept:")
        print(issued.token)


@key_app.command("list")
def key_list(tenant_id: Annotated[str | None, typer.Argument()] = None, db: DbOption = None,
             as_json: JsonOption = False) -> None:
    """List keys (prefixes only)."""
    keys = _accounts(db).list_keys(tenant_id)
    rows: list[dict[str, Any]] = [{"prefix": k.prefix, "tenant": k.tenant_id, "scopes": k.scopes, "name": k.name,
             "revoked": k.revoked_at is not None} for k in keys]
    if as_json:
        emit_json(rows)
        return
    table = WholeTable("prefix", "tenant", "scopes", "name", "revoked")
    for r in rows:
        table.add_row(escape(r["prefix"]), escape(r["tenant"]), escape(",".join(r["scopes"])), escape(r["name"]),
                      "yes" if r["revoked"] else "")
    console.print(table)


@key_app.command("revoke")
def key_revoke(prefix: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Revoke a key by its prefix (the whole key, pasted, is revoked by its prefix: a leaked key)."""
    prefix = key_prefix(prefix)  # a pasted secret is printed nowhere
    changed = _guard(lambda: _accounts(db).revoke_key(prefix), as_json)
    if as_json:  # revoked: as key list says it; already_revoked: this call changed nothing (revoked before)
        emit_json({"prefix": prefix, "revoked": True, "already_revoked": not changed})
        return
    console.print(f"key {escape(prefix)} revoked")


@key_app.command("rotate")
def key_rotate(prefix: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Revoke a key and print its replacement."""
    issued = _guard(lambda: _accounts(db).rotate_key(prefix), as_json)
    if as_json:  # the replacement as key create says a key, with the prefix of the key it replaced
        emit_json({**_issued_json(issued), "replaces": prefix})
        return
    print(issued.token)


@admin.command("usage")
def usage(
    tenant_id: Annotated[str | None, typer.Option("--tenant")] = None,
    start: Annotated[datetime | None, typer.Option("--from", formats=["%Y-%m-%d"])] = None,
    end: Annotated[datetime | None, typer.Option("--to", formats=["%Y-%m-%d"], help="inclusive")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="CSV for billing")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Calls, faces and errors per tenant, day and operation."""
    if csv and as_json:
        fail(CommandLineError("--csv and --json are two formats: give one"), as_json)
    accounts = _guard(lambda: _accounts(db), as_json)
    days = day_range(start.date() if start else None, end.date() if end else None)
    rows = _guard(lambda: accounts.usage_report(tenant_id, *days), as_json)
    if as_json:  # the API's GET /v1/usage answer: the tenant asked for (none: every tenant) and the rows
        emit_json({"tenant": tenant_id, "rows": rows})
        return
    if csv:
        print(usage_csv(rows), end="")
        return
    last = usage_through(end.date() if end else None)
    title = f"usage {start.date()} to {last} (UTC days)" if start else f"usage to {last} (UTC days)"
    table = WholeTable("tenant", "day", "operation", "calls", "faces", "errors", "failed", title=title)
    for r in rows:
        table.add_row(escape(r["tenant"]), str(r["day"]), escape(r["operation"]), str(r["calls"]), str(r["faces"]),
                      str(r["errors"]), str(r["failed"]))
    console.print(table)
