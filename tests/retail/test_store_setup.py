"""What opening a store again may change, and what `retail run` checks before it makes anything.

A store is its tenant's for good (a config naming another tenant, or none, moved it and its
members); its face crops follow the privacy setting of now (a collection made with
keep_face_crops kept taking crops once the setting was off); its pack is the one its first run set
up; and a run refused for its config, its cameras or its index folder makes no store (a refused
run made the store and fixed its pack, so the corrected run failed on model_mismatch)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from faceatlas.apps.retail import Camera, ConsentRecord, Privacy, RetailStore, StoreConfig, run_store
from faceatlas.apps.retail.db import StoreRecord
from faceatlas.apps.retail.store import COLLECTION
from faceatlas.engine import get_pack
from faceatlas.errors import Conflict, InvalidInput, ModelMismatch
from faceatlas.gallery.models import FaceRecord


def test_a_store_never_moves_to_another_tenant(db_url: str, tmp_path: Path, config: StoreConfig,
                                               fast_analyzer) -> None:
    """`retail run` of acme's store with no `tenant:` (the default) or `tenant: other` moved it: acme's
    key got 404, the other tenant read acme's members."""
    owned = config.model_copy(update={"tenant": "acme"})
    with RetailStore.open(owned, fast_analyzer, db_url, index_dir=tmp_path / "idx"):
        pass
    for tenant in ("default", "other"):
        with pytest.raises(Conflict, match=f"store 'test-store' belongs to tenant 'acme', not '{tenant}'"):
            RetailStore.open(config.model_copy(update={"tenant": tenant, "name": "moved"}), fast_analyzer, db_url,
                             index_dir=tmp_path / "idx")
    with RetailStore.open(owned, fast_analyzer, db_url, index_dir=tmp_path / "idx") as store, \
            store.sessions() as session:
        record = session.get(StoreRecord, config.id)
        assert (record.tenant, record.name) == ("acme", "")


def _crops(store: RetailStore) -> list[bytes | None]:
    with store.sessions() as session:
        return list(session.scalars(select(FaceRecord.crop).order_by(FaceRecord.id)))


def test_face_crops_follow_the_setting_of_now(db_url: str, tmp_path: Path, config: StoreConfig, fast_analyzer,
                                              member_photos: list[Path]) -> None:
    """The members collection was made with keep_crops=true; with the setting turned off, an
    enrolment still stored a JPEG crop of the face. Turned off, the crops kept go and no new one is
    written; turned on again, new enrolments keep theirs."""
    keeping = config.model_copy(update={"privacy": Privacy(keep_face_crops=True)})
    consent = ConsentRecord(("visit_recognition",), granted_by="the member")
    index = tmp_path / "idx"
    with RetailStore.open(keeping, fast_analyzer, db_url, index_dir=index) as store:
        store.members.enrol("One", [member_photos[0]], consent)
        [crop] = _crops(store)
        assert crop is not None and crop[:2] == b"\xff\xd8"  # a JPEG of the face
    with RetailStore.open(config, fast_analyzer, db_url, index_dir=index) as store:  # keep_face_crops: false
        assert _crops(store) == [None]  # the crop kept before is deleted
        store.members.enrol("Two", [member_photos[1]], consent)
        assert _crops(store) == [None, None]
        assert store.gallery.get_collection(COLLECTION).keep_crops is False
        assert store.gallery.get_collection(COLLECTION).faces == 2  # the vectors stay
    with RetailStore.open(keeping, fast_analyzer, db_url, index_dir=index) as store:
        store.members.enrol("Three", [member_photos[2]], consent)
        assert [crop is not None for crop in _crops(store)] == [False, False, True]


def test_a_store_opened_with_another_pack_says_to_run_it_with_its_own(db_url: str, tmp_path: Path,
                                                                      config: StoreConfig, fast_analyzer) -> None:
    """The store's pack was found out at the first search, on a camera's thread, and the message
    said to run `faceatlas gallery reembed`, which does not apply to a store."""
    with RetailStore.open(config, fast_analyzer, db_url, index_dir=tmp_path / "idx"):
        pass
    other_pack = SimpleNamespace(pack=get_pack("yunet-frfeature"))  # its models are not even loaded
    with pytest.raises(ModelMismatch) as refused:
        RetailStore.open(config.model_copy(update={"name": "renamed"}), other_pack,  # type: ignore[arg-type]
                         db_url, index_dir=tmp_path / "idx")
    message = str(refused.value)
    assert "store 'test-store' was set up with pack 'scrfd-mbf'" in message and "--pack scrfd-mbf" in message
    assert "reembed" not in message
    with RetailStore.open(config, fast_analyzer, db_url, index_dir=tmp_path / "idx") as store, \
            store.sessions() as session:
        assert session.get(StoreRecord, config.id).name == ""  # the refused open changed nothing


def _store_file(folder: Path, camera: str) -> Path:
    path = folder / "store.yaml"
    path.write_text(f"id: s2\ncameras:\n  - {camera}\n")
    return path


def test_retail_run_checks_the_cameras_before_it_makes_the_store(shared: Path, tmp_path: Path) -> None:
    """`retail run bad.yaml --pack yunet-frfeature` with an unknown video setting made store s2 and its
    members collection with that pack, then failed; a line "0,1,2" said neither the file nor the camera."""
    from faceatlas.cli.main import app

    clip = shared / "data" / "videos" / "store-aisle-detection.gif"
    database = tmp_path / "store.db"
    for camera, says in ((f'{{id: till, role: checkout, source: "{clip}", video: {{trak_timeout: 3}}}}',
                          "cameras.0: Value error, camera 'till': video: unknown settings ['trak_timeout']"),
                         (f'{{id: door, role: door, source: "{clip}", line: "0,1,2"}}',
                          "cameras.0: Value error, camera 'door': line: a line is x1,y1,x2,y2, got '0,1,2'")):
        config = _store_file(tmp_path, camera)
        result = CliRunner().invoke(app, ["retail", "run", str(config), "--database", f"sqlite:///{database}",
                                          "--index-dir", str(tmp_path / "idx"), "--pack", "scrfd-mbf"])
        assert result.exit_code == 2, result.output
        said = " ".join(result.output.split())  # as one line, whatever the terminal's width
        assert f"{config}: not a valid store: {says}" in said, said
        assert not database.exists() and not (tmp_path / "idx").exists()


def test_retail_run_checks_its_sources_and_index_folder_before_it_makes_the_store(shared: Path,
                                                                                   tmp_path: Path) -> None:
    """`retail run till.yaml --index-dir /etc/hostname` failed late (`camera till failed: [Errno 17]
    File exists`), after the store was made; so did a camera whose file is not there."""
    clip = shared / "data" / "videos" / "store-aisle-detection.gif"
    a_file = tmp_path / "hostname"
    a_file.write_text("not a folder")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    aisle = Camera(id="aisle", role="zone", zone="mugs", source=str(clip), faces=False)
    config = StoreConfig(id="s2", cameras=[aisle])
    for index_dir in (a_file, a_file / "indexes"):
        with pytest.raises(InvalidInput, match=f"--index-dir {index_dir} .*not a folder"):
            run_store(config, url=url, index_dir=index_dir, pack="scrfd-mbf")
    missing = StoreConfig(id="s2", cameras=[aisle.model_copy(update={"source": str(tmp_path / "nowhere.mp4")})])
    with pytest.raises(InvalidInput, match="camera 'aisle': video source .* not found"):
        run_store(missing, url=url, index_dir=tmp_path / "idx", pack="scrfd-mbf")
    assert not (tmp_path / "store.db").exists() and not (tmp_path / "idx").exists()


def test_retail_run_refuses_a_source_file_that_is_no_video_before_it_makes_the_store(shared: Path,
                                                                                      tmp_path: Path) -> None:
    """`retail run` of a camera whose file is there but no video (a text file named garbage.mp4) made
    the store and fixed its pack, then failed "cannot read video source" with no summary; a second
    run with another --pack was refused model_mismatch. Each file source is opened and its first
    frame read before the store is opened; a real video beside it (the aisle's GIF) still runs."""
    from faceatlas.cli.main import app

    clip = shared / "data" / "videos" / "store-aisle-detection.gif"
    garbage = tmp_path / "garbage.mp4"
    garbage.write_text("not a video\n")
    database = tmp_path / "store.db"
    config = tmp_path / "store.yaml"
    config.write_text(f'id: s3\ncameras:\n  - {{id: aisle, role: zone, zone: mugs, source: "{clip}", faces: false}}\n'
                      f'  - {{id: shelf, role: zone, zone: cups, source: "{garbage}", faces: false}}\n')
    for pack in ("scrfd-mbf", "yunet-frfeature"):  # the second run is refused alike, not model_mismatch
        result = CliRunner().invoke(app, ["retail", "run", str(config), "--database", f"sqlite:///{database}",
                                          "--index-dir", str(tmp_path / "idx"), "--pack", pack])
        said = " ".join(result.output.split())
        assert not database.exists() and not (tmp_path / "idx").exists(), said
        assert result.exit_code == 2, result.output
        assert said.startswith("error (bad_request): camera 'shelf': cannot read video source") and \
            str(garbage) in said, said


def test_retail_run_refuses_an_events_file_that_is_its_own_config(shared: Path, tmp_path: Path) -> None:
    """A store file whose `events:` named the file itself: the run wrote its JSON events over the
    YAML (the next run failed to parse it). Refused as an events file that is a camera's source is,
    before the store is made; the YAML is left as it was."""
    from faceatlas.cli.main import app

    clip = shared / "data" / "videos" / "store-aisle-detection.gif"
    database = tmp_path / "store.db"
    config = tmp_path / "store.yaml"
    config.write_text(f'id: s8\ncameras:\n  - {{id: aisle, role: zone, zone: mugs, source: "{clip}", faces: false}}\n'
                      f'events: "{config}"\n')
    before = config.read_text()
    result = CliRunner().invoke(app, ["retail", "run", str(config), "--database", f"sqlite:///{database}",
                                      "--index-dir", str(tmp_path / "idx"), "--pack", "scrfd-mbf"])
    said = " ".join(result.output.split())
    assert config.read_text() == before and not database.exists() and not (tmp_path / "idx").exists(), said
    assert result.exit_code == 2, said
    assert said.startswith(f"error (validation_error): events {config} is the configuration file"), said


@pytest.mark.parametrize(("setting", "says"), [
    ("products: [{sku: mug, name: Mug, price_cents: 99999999999}]",
     "products.0.price_cents: Value error, price_cents must be an integer from 0 to 10000000"),
    ("products: [{sku: mug, name: Mug, price_cents: true}]", "products.0.price_cents: Value error, price_cents must"),
    ('products: [{sku: mug, name: Mug, price_cents: "1250"}]', "products.0.price_cents: Value error, price_cents must"),
    ("products: [{sku: mug, name: Mug, price_cents: 12.0}]", "products.0.price_cents: Value error, price_cents must"),
    ('currency: "dollars!!"', "currency: Value error, currency must be a code of 3 upper-case letters"),
    ("currency: eur", "currency: Value error, currency must be a code of 3 upper-case letters"),
])
def test_a_store_file_s_prices_and_currency_follow_the_catalogue_s_rule(shared: Path, tmp_path: Path, setting: str,
                                                                         says: str) -> None:
    """A store file's price_cents 99999999999, true, "1250" or 12.0 and a currency "dollars!!" were
    stored (a price `Catalogue.create` and the API refuse); refused in one line as the file is read."""
    from faceatlas.cli.main import app

    clip = shared / "data" / "videos" / "store-aisle-detection.gif"
    database = tmp_path / "store.db"
    config = tmp_path / "store.yaml"
    config.write_text(f'id: s5\ncameras:\n  - {{id: aisle, role: zone, zone: mugs, source: "{clip}", faces: false}}\n'
                      f"{setting}\n")
    result = CliRunner().invoke(app, ["retail", "run", str(config), "--database", f"sqlite:///{database}",
                                      "--index-dir", str(tmp_path / "idx"), "--pack", "scrfd-mbf"])
    said = " ".join(result.output.split())
    assert not database.exists(), said
    assert result.exit_code == 2 and said.startswith(f"error (bad_request): {config}: not a valid store: {says}"), said
    config.write_text(config.read_text().replace(setting, "currency: USD\nproducts: [{sku: mug, name: Mug, "
                                                          "price_cents: 1250}]"))
    loaded = StoreConfig.load(config)  # a code and a price in the rule still load
    assert (loaded.currency, loaded.products[0].price_cents) == ("USD", 1250)


def test_a_door_camera_with_a_source_needs_its_counting_line(shared: Path, tmp_path: Path) -> None:
    """A door, entrance or exit camera with a source and no `line` was accepted and counted nothing
    (0 entries, no word); refused in one line as the file is read. A camera with no source (its
    entries come from the API) needs none, nor a door whose line comes in `video: lines`."""
    from faceatlas.cli.main import app

    clip = shared / "data" / "videos" / "one-by-one-person-detection.mp4"
    database = tmp_path / "store.db"
    for role, article in (("door", "a"), ("entrance", "an"), ("exit", "an")):
        config = _store_file(tmp_path, f'{{id: gate, role: {role}, source: "{clip}"}}')
        result = CliRunner().invoke(app, ["retail", "run", str(config), "--database", f"sqlite:///{database}",
                                          "--index-dir", str(tmp_path / "idx"), "--pack", "scrfd-mbf"])
        said = " ".join(result.output.split())
        assert not database.exists(), said
        assert result.exit_code == 2 and said.startswith(
            f"error (bad_request): {config}: not a valid store: cameras.0: Value error, camera 'gate': {article} "
            f'{role} camera needs a counting line to count visits (line: "x1,y1,x2,y2", pixels)'), said
    _store_file(tmp_path, "{id: gate, role: door}")
    assert StoreConfig.load(tmp_path / "store.yaml").cameras[0].line is None
    _store_file(tmp_path, f'{{id: gate, role: door, source: "{clip}", video: {{lines: ["0,386,768,170"]}}}}')
    assert StoreConfig.load(tmp_path / "store.yaml").cameras[0].video["lines"] == ["0,386,768,170"]


def test_retail_run_refuses_a_stream_url_that_names_no_host_at_once(tmp_path: Path) -> None:
    """A store camera with `source: "rtsp://"` (no host) passed the store's checks, as a live source, and
    was retried for ever as a camera that is down; `watch` refused it at once. It is refused before the
    store is made (before the pack is even looked up: an unknown one is not what is said)."""
    door = Camera(id="door", role="door", source="rtsp://", line="0,100,200,100")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with pytest.raises(InvalidInput, match="camera 'door': video source 'rtsp://': .*host"):
        run_store(StoreConfig(id="s4", cameras=[door]), url=url, index_dir=tmp_path / "idx", pack="no-such-pack")
    assert not (tmp_path / "store.db").exists() and not (tmp_path / "idx").exists()
