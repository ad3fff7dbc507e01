"""Screenshots of each web console page into docs/console/*.png, taken in headless Chromium
(Debian's ``chromium`` driven by Playwright, as the console tests do) against a real
``faceatlas serve`` over a scratch SQLite database.

    python scripts/console_screenshots.py [--out docs/console] [--chromium /usr/bin/chromium]

The gallery is seeded with public-domain example photos from the shared assets, in a collection
that keeps no crops: no face is shown outside the Try it page.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx
from PIL import Image
from playwright.sync_api import Page, sync_playwright

from faceatlas.db import create_database_engine
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.settings import EngineSettings
from faceatlas.video import DatabaseSink, Event

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = "data/face_recognition_examples/tests/test_images"


def _serve(database_url: str, shared: Path, folder: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "FACEATLAS_DATABASE_URL": database_url, "FACEATLAS_PACK": "scrfd-mbf",
           "FACEATLAS_MODEL_DIR": str(shared / "models"), "FACEATLAS_INDEX_DIR": str(folder / "indexes")}
    process = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", "serve", "--port", str(port)], env=env,
                               stdout=(folder / "server.log").open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise SystemExit(f"the server did not start: {(folder / 'server.log').read_text()[-2000:]}")


def _seed_store(database_url: str, shared: Path, folder: Path) -> None:
    """A day of the demo grocery for acme, today (10 LFW members, 40 visits, one spoof)."""
    from faceatlas.apps.retail import RetailStore, demo_store, simulate_day
    from faceatlas.engine import FaceAnalyzer

    config = demo_store("grocery").model_copy(update={"tenant": "acme"})
    with RetailStore.open(config, FaceAnalyzer("scrfd-mbf"), database_url, index_dir=folder / "indexes") as store:
        simulate_day(store, shared / "data" / "lfw" / "images", shared / "data" / "antispoof_samples" / "image_F2.jpg",
                     day=date.today())


def _seed_kyc(database_url: str) -> None:
    """Three sessions of acme as the API leaves them: one pending, one accepted, one refused (the
    decisions written as a submission writes them; the page shows what is stored)."""
    from sqlalchemy import update

    from faceatlas.apps.kyc import KycService
    from faceatlas.apps.kyc.db import KycSession
    from faceatlas.db import utcnow
    from faceatlas.engine import FaceAnalyzer

    engine = create_database_engine(database_url)
    kyc = KycService(engine, FaceAnalyzer("scrfd-mbf"))
    decided = {kyc.create("svc:acme", ["blink", "turn_left"]).id: ("accepted", []),
               kyc.create("svc:acme", ["open_mouth", "turn_right"]).id: ("rejected", ["challenge_failed"]),
               kyc.create("svc:acme", ["look_up", "blink"]).id: ("rejected", ["face_mismatch", "liveness_failed"])}
    kyc.create("svc:acme", ["turn_right", "blink"])
    with engine.begin() as connection:
        for session_id, (status, reasons) in decided.items():
            connection.execute(update(KycSession).where(KycSession.id == session_id).values(
                status=status, reasons=reasons, decided_at=utcnow()))
    engine.dispose()


def _seed_events(database_url: str) -> None:
    sink = DatabaseSink(database_url, tenant="acme", batch=1)
    for i, (camera, kind) in enumerate([("entrance", "track_started"), ("entrance", "identified"),
                                        ("till-2", "unknown_person"), ("entrance", "track_ended")]):
        data = {"subject": "obama", "similarity": 0.71} if kind == "identified" else {}
        sink.emit(Event(kind, camera, frame=25 * i, video_time=float(i), track_id=3 + i % 2, kind="face", data=data))
    sink.close()


def _shoot(page: Page, out: Path, name: str, full_page: bool = True) -> None:
    page.wait_for_load_state("networkidle")
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    with Image.open(path) as shot:  # 256 colours: a tenth of the bytes, the same page
        small = shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)
    print(f"{path}  {path.stat().st_size // 1024} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    shared = EngineSettings().shared or ROOT.parent / "shared"
    photos = shared / PHOTOS
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        database_url = f"sqlite:///{folder / 'faceatlas.db'}"
        engine = create_database_engine(database_url)
        migrate(engine)
        accounts = Accounts(engine)
        accounts.create_tenant("acme", "Acme Retail", monthly_quota=10_000)
        key = accounts.create_key("acme", ["admin"], name="console").token
        accounts.create_key("acme", ["read"], name="store dashboard")
        _seed_events(database_url)
        _seed_store(database_url, shared, folder)
        _seed_kyc(database_url)
        process, url = _serve(database_url, shared, folder)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                page = browser.new_page(base_url=url, viewport={"width": 1000, "height": 700})
                page.on("dialog", lambda dialog: dialog.accept())
                page.goto("/console/login")
                _shoot(page, args.out, "login")
                page.get_by_label("API key").fill(key)
                page.get_by_role("button", name="Log in", exact=True).click()
                page.wait_for_url("**/console/galleries")
                page.get_by_label("Name").fill("staff")
                page.get_by_role("button", name="Create", exact=True).click()
                page.wait_for_url("**/console/galleries/staff")
                people = (("obama", "Barack Obama", "obama.jpg"), ("biden", "Joe Biden", "biden.jpg"))
                for subject, name, photo in people:
                    page.get_by_label("Subject id").fill(subject)
                    page.get_by_label("Display name (optional)").fill(name)
                    page.locator("#photos").set_input_files(str(photos / photo))
                    page.get_by_role("button", name="Enrol", exact=True).click()
                    page.locator("#enrol-result .outcomes", has_text=photo).wait_for()
                page.reload()
                page.locator("#search-photo").set_input_files(str(photos / "obama2.jpg"))
                page.get_by_role("button", name="Search", exact=True).click()
                page.locator("#search-answer").wait_for()
                _shoot(page, args.out, "collection")
                page.goto("/console/galleries")
                _shoot(page, args.out, "galleries")
                page.goto("/console/try")
                page.get_by_label("Photo", exact=True).set_input_files(str(photos / "obama.jpg"))
                page.get_by_role("button", name="Run", exact=True).click()
                page.locator("#try-answer img").wait_for()
                page.set_viewport_size({"width": 820, "height": 900})
                page.locator("#try-answer").scroll_into_view_if_needed()
                page.evaluate("window.scrollBy(0, 330)")
                _shoot(page, args.out, "try", full_page=False)
                page.set_viewport_size({"width": 1000, "height": 700})
                page.goto("/console/usage")
                _shoot(page, args.out, "usage")
                page.goto("/console/events")
                _shoot(page, args.out, "events")
                page.goto("/console/albums")
                page.get_by_label("Album (new or existing)").fill("family")
                page.locator("#album-photos").set_input_files(
                    [str(photos / name) for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")])
                page.locator("#album-crops").check()
                page.get_by_role("button", name="Add photos", exact=True).click()
                page.locator("#people").wait_for()
                _shoot(page, args.out, "album")
                page.goto("/console/store/grocery")
                _shoot(page, args.out, "store")
                page.goto("/console/store/grocery/members")
                _shoot(page, args.out, "members")
                page.goto("/console/store/grocery/products")
                _shoot(page, args.out, "products")
                page.goto("/console/kyc")
                _shoot(page, args.out, "kyc")
                phone = browser.new_page(base_url=url, viewport={"width": 390, "height": 760}, is_mobile=True)
                phone.context.add_cookies(page.context.cookies())
                phone.goto("/console/galleries/staff")
                _shoot(phone, args.out, "phone")
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=15)
            engine.dispose()


if __name__ == "__main__":
    main()
