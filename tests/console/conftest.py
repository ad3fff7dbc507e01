"""The web console in a real headless Chromium (Debian's ``chromium``, driven by Playwright) against
a real ``faceatlas serve`` over a fresh SQLite database with two tenants."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from faceatlas.db import create_database_engine
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _service_conftest():
    name = "faceatlas_tests_service_conftest"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "service" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@dataclass
class Console:
    url: str
    keys: dict[str, str]
    accounts: Accounts
    database_url: str
    index_dir: Path | None = None  # the server's gallery index folder


@pytest.fixture(scope="module")
def console(new_database, shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    folder = tmp_path_factory.mktemp("console")
    service = _service_conftest()
    with new_database("sqlite", folder) as database_url:
        engine = create_database_engine(database_url)
        migrate(engine)
        accounts = Accounts(engine)
        accounts.create_tenant("acme", "Acme Retail")
        accounts.create_tenant("globex", "Globex")
        keys = {
            "acme_admin": accounts.create_key("acme", ["admin"], rate_per_second=500, burst=500).token,
            "acme_write": accounts.create_key("acme", ["write"], rate_per_second=500, burst=500).token,
            "acme_read": accounts.create_key("acme", ["read"], rate_per_second=500, burst=500).token,
            "globex_admin": accounts.create_key("globex", ["admin"], rate_per_second=500, burst=500).token,
        }
        process, url = service.start_server(database_url, shared, folder / "server.log")
        yield Console(url, keys, accounts, database_url, folder / "indexes")
        service.stop_server(process)
        engine.dispose()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def log_in(browser, console: Console):
    """``log_in(key)``: a new browser context (its own cookies) logged in with ``key``; returns its page."""
    return lambda key, **options: open_session(browser, console, key, **options)


def open_session(browser, console: Console, key: str, **context_options):
    context = browser.new_context(base_url=console.url, **context_options)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto("/console/login")
    page.get_by_label("API key").fill(console.keys.get(key, key))
    page.get_by_role("button", name="Log in", exact=True).click()
    page.wait_for_url("**/console/galleries")
    return page
