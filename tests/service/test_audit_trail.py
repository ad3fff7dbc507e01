"""The audit trail and the tenants it belongs to (SQLite and PostgreSQL): a deleted tenant's id is
never given again, its audit trail goes with it, erasures reach the ids in the trail, the longest
targets fit, and a call that changed nothing writes no record."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from faceatlas.cli.main import app as cli
from faceatlas.errors import AlreadyExists, NotFound
from faceatlas.gallery import ID_MAX_LENGTH, Gallery
from faceatlas.service.tenants import delete_tenant

PERSON_REF = 400  # the longest reference to an album person a path takes (its id or its name)


def _photo(shared: Path) -> bytes:
    return sorted((shared / "data" / "lfw" / "images" / "Aaron_Eckhart").glob("*.jpg"))[0].read_bytes()


def _new_tenant(api, prefix: str, quota: int | None = None) -> tuple[str, str]:
    """A tenant of its own and its admin key (the api fixture lives for the session)."""
    tenant = f"{prefix}-{uuid.uuid4().hex[:6]}"
    api.accounts.create_tenant(tenant, monthly_quota=quota)
    return tenant, api.accounts.create_key(tenant, ["admin"], rate_per_second=500, burst=500).token


def _person(http, album: str) -> str:
    """The id of the person of a one-face album (the face made one when the scan left it unsorted)."""
    unsorted = http.get(f"/v1/albums/{album}/people/unsorted/faces").json()["faces"]
    if unsorted:
        return http.post(f"/v1/albums/{album}/split", json={"faces": [unsorted[0]["id"]]}).json()["id"]
    return http.get(f"/v1/albums/{album}/people").json()["people"][0]["id"]


def _trail(http) -> list[dict]:
    return http.get("/v1/audit", params={"limit": 1000}).json()["events"]


def test_a_deleted_tenant_s_id_is_not_given_again(api) -> None:
    """`tenant delete acme` then `tenant create acme --quota 20`: the new acme listed the old one's
    subjects in its audit trail, and the old calls counted against its quota (its bill stays under the
    id), so a deleted tenant's id is refused, and the deleted tenant stays NotFound everywhere."""
    tenant, key = _new_tenant(api, "reborn", quota=20)
    with api.client(key) as http:
        assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201
        assert http.post("/v1/collections/staff/subjects", json={"id": "alice"}).status_code == 201
    billed = api.accounts.usage_report(tenant)
    assert billed
    delete_tenant(api.accounts, api.app.state.gallery, tenant)

    with pytest.raises(AlreadyExists) as refused:
        api.accounts.create_tenant(tenant, monthly_quota=20)
    assert "bill stays under that id" in str(refused.value) and "choose another id" in str(refused.value)
    again = CliRunner().invoke(cli, ["admin", "tenant", "create", tenant, "--quota", "20", "--db", api.database_url])
    assert again.exit_code == 2 and "choose another id" in again.output, again.output
    for lookup in (lambda: api.accounts.get_tenant(tenant), lambda: api.accounts.update_tenant(tenant, name="x"),
                   lambda: api.accounts.create_key(tenant, ["read"]), lambda: api.accounts.list_keys(tenant),
                   lambda: api.accounts.delete_tenant(tenant)):
        with pytest.raises(NotFound):
            lookup()
    assert tenant not in {t.id for t in api.accounts.list_tenants()}
    assert api.accounts.usage_report(tenant) == billed  # the bill stays
    assert api.accounts.calls_this_month(tenant) == sum(row["calls"] for row in billed)


def test_deleting_a_tenant_erases_its_audit_trail_but_the_record_of_the_deletion(api) -> None:
    """README: 'its bill and the audit record of the deletion stay'; every other record of the
    tenant (naming its subjects) stayed too."""
    tenant, key = _new_tenant(api, "leaving")
    with api.client(key) as http:
        assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201
        assert http.post("/v1/collections/staff/subjects", json={"id": "carol_doe"}).status_code == 201
        assert "carol_doe" in json.dumps(_trail(http))
    delete_tenant(api.accounts, api.app.state.gallery, tenant)
    trail = api.accounts.audit_log(tenant, limit=1000)
    assert [(r.action, r.target) for r in trail] == [("tenant.delete", tenant)]


def test_deleting_a_collection_erases_its_subjects_ids_from_the_audit_trail(api) -> None:
    """DELETE /v1/collections/{c} erased the subjects but kept subject.create c/bob, face.enrol c/bob
    (and a merge's `into`) in the audit trail, as a subject's own deletion does not."""
    name = f"temp_{uuid.uuid4().hex[:6]}"
    with api.client("acme_write") as http:
        for collection in (name, f"{name}2"):
            assert http.post("/v1/collections", json={"name": collection}).status_code == 201
        for subject in ("bob_jones", "alias_of_bob"):
            assert http.post(f"/v1/collections/{name}/subjects", json={"id": subject}).status_code == 201
        assert http.patch(f"/v1/collections/{name}/subjects/bob_jones", json={"name": "Bob"}).status_code == 200
        merged = http.post(f"/v1/collections/{name}/subjects/alias_of_bob/merge", json={"into": "bob_jones"})
        assert merged.status_code == 200, merged.text
        assert http.post(f"/v1/collections/{name}2/subjects", json={"id": "bystander"}).status_code == 201
        assert http.delete(f"/v1/collections/{name}").status_code == 204
    with api.client("acme_admin") as admin:
        events = [e for e in _trail(admin) if e["target"].split("/")[0] in (name, f"{name}2")]
    shown = json.dumps(events)
    assert "bob_jones" not in shown and "alias_of_bob" not in shown
    assert {(e["action"], e["target"]) for e in events} >= {
        ("collection.create", name), ("collection.delete", name), ("subject.create", f"{name}/[erased]"),
        ("subject.update", f"{name}/[erased]"), ("subject.merge", f"{name}/[erased]"),
        ("subject.create", f"{name}2/bystander")}  # another collection's subjects stay as they were


def test_an_erasure_keeps_the_records_of_a_collection_named_the_same_but_for_case(api) -> None:
    """Collections `vip` and `VIP` are two: deleting `VIP` erased the audit records of `vip`'s live
    subjects (SQLite's LIKE ignores case), and deleting `vip/keep_me` erased `VIP/x`, merged into
    `VIP/keep_me`."""
    lower = f"case_{uuid.uuid4().hex[:6]}"
    upper = lower.upper()
    with api.client("acme_write") as http:
        for collection in (lower, upper):
            assert http.post("/v1/collections", json={"name": collection}).status_code == 201
            for subject in ("keep_me", "x"):
                assert http.post(f"/v1/collections/{collection}/subjects", json={"id": subject}).status_code == 201
        merged = http.post(f"/v1/collections/{upper}/subjects/x/merge", json={"into": "keep_me"})
        assert merged.status_code == 200, merged.text
        assert http.delete(f"/v1/collections/{lower}/subjects/keep_me").status_code == 204
        with api.client("acme_admin") as admin:
            targets = {e["target"] for e in _trail(admin)}
        assert {f"{upper}/x", f"{upper}/keep_me", f"{lower}/x"} <= targets and f"{lower}/keep_me" not in targets
        assert http.delete(f"/v1/collections/{upper}").status_code == 204
    with api.client("acme_admin") as admin:
        targets = {e["target"] for e in _trail(admin)}
    assert f"{lower}/x" in targets and f"{upper}/x" not in targets


def test_erasing_an_album_person_by_name_erases_the_name_from_the_audit_trail(api, shared: Path) -> None:
    """DELETE /v1/albums/fam/people/Aaron Eckhart kept `album.erase fam/Aaron Eckhart` (and the
    calls that named the person) in the audit trail."""
    album = f"fam_{uuid.uuid4().hex[:6]}"
    with api.client("acme_write") as http:
        scanned = http.post(f"/v1/albums/{album}/photos", files={"image": _photo(shared)})
        assert scanned.status_code == 200, scanned.text
        person = _person(http, album)
        assert http.patch(f"/v1/albums/{album}/people/{person}", json={"name": "Aaron Eckhart"}).status_code == 200
        again = http.patch(f"/v1/albums/{album}/people/Aaron Eckhart", json={"name": "Aaron Eckhart"})
        assert again.status_code == 200, again.text
        erased = http.delete(f"/v1/albums/{album}/people/Aaron Eckhart")
        assert erased.status_code == 200, erased.text
    with api.client("acme_admin") as admin:
        events = [e for e in _trail(admin) if e["target"].split("/")[0] == album]
    assert "Aaron" not in json.dumps(events) and f"{album}/{person}" not in {e["target"] for e in events}
    assert {(e["action"], e["target"]) for e in events} >= {
        ("album.scan", album), ("album.name", f"{album}/[erased]"), ("album.erase", f"{album}/[erased]")}


def test_an_enrolment_that_creates_its_subject_audits_the_creation(api, shared: Path) -> None:
    """`POST .../subjects/{id}/faces` creates a subject when new (as its OpenAPI says): the trail held
    only face.enrol, where `POST .../subjects` writes subject.create."""
    tenant, key = _new_tenant(api, "implicit")
    with api.client(key) as http:
        assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201
        for _ in range(2):
            enrolled = http.post("/v1/collections/staff/subjects/al/faces", files={"image": _photo(shared)})
            assert enrolled.status_code == 201, enrolled.text
        trail = [(e["action"], e["target"]) for e in reversed(_trail(http))]
    assert [entry for entry in trail if entry[1] == "staff/al"] == [
        ("subject.create", "staff/al"), ("face.enrol", "staff/al"), ("face.enrol", "staff/al")]


def test_the_longest_targets_a_route_builds_are_audited(api, shared: Path) -> None:
    """On PostgreSQL a subject of 200 characters in a collection of 200 answered 500 after it was
    created (svc_audit.target was varchar(300)): unbilled and unaudited, and enrolments stored faces
    past the quota. An album person's reference (400) made the longest target; the record names the
    person by id now (an erasure finds it however the call named them), and the column still holds it."""
    tenant, key = _new_tenant(api, "long")
    collection, subject = "c" * ID_MAX_LENGTH, "s" * ID_MAX_LENGTH
    album = "a" * (ID_MAX_LENGTH - len(f"app:albums:svc:{tenant}:"))  # the longest its gallery space allows
    with api.client(key) as http:
        assert http.post("/v1/collections", json={"name": collection}).status_code == 201
        created = http.post(f"/v1/collections/{collection}/subjects", json={"id": subject})
        assert created.status_code == 201, created.text
        enrolled = http.post(f"/v1/collections/{collection}/subjects/{subject}/faces", files={"image": _photo(shared)})
        assert enrolled.status_code == 201, enrolled.text
        assert http.post(f"/v1/albums/{album}/photos", files={"image": _photo(shared)}).status_code == 200
        person = _person(http, album)
        padded = "p" + person[1:].rjust(PERSON_REF - 1, "0")  # p000…12 is p12
        named = http.patch(f"/v1/albums/{album}/people/{padded}", json={"name": "Ann"})
        assert named.status_code == 200, named.text
        trail = {(e["action"], e["target"]) for e in _trail(http)}
        usage = {row["operation"]: row["calls"] for row in http.get("/v1/usage").json()["rows"]}
    assert {("subject.create", f"{collection}/{subject}"), ("face.enrol", f"{collection}/{subject}"),
            ("album.name", f"{album}/{person}")} <= trail
    from faceatlas.service.db import AUDIT_TARGET_MAX_LENGTH, PERSON_REF_MAX_LENGTH

    assert PERSON_REF_MAX_LENGTH == PERSON_REF and AUDIT_TARGET_MAX_LENGTH == ID_MAX_LENGTH + 1 + PERSON_REF
    assert 2 * ID_MAX_LENGTH + 1 < len(f"{album}/{padded}") <= AUDIT_TARGET_MAX_LENGTH
    assert usage["subjects.create"] == 1 and usage["enrol"] == 1  # billed


def test_a_call_that_changes_nothing_is_not_audited(api) -> None:
    """A second DELETE /v1/keys/{prefix} of a revoked key wrote a second key.revoke; PATCH
    /v1/settings {} (or the value it has) a tenant.update that changed nothing."""
    tenant, key = _new_tenant(api, "quiet")
    prefix = api.accounts.create_key(tenant, ["read"]).prefix
    with api.client(key) as http:
        assert [http.delete(f"/v1/keys/{prefix}").status_code for _ in range(2)] == [204, 204]
        assert http.patch("/v1/settings", json={}).status_code == 200
        for _ in range(2):
            assert http.patch("/v1/settings", json={"kyc_retention_days": 3}).json()["kyc_retention_days"] == 3
        trail = [(e["action"], e["target"]) for e in _trail(http)]
    assert trail.count(("key.revoke", f"key:{prefix}")) == 1
    assert trail.count(("tenant.update", tenant)) == 1
    assert api.accounts.revoke_key(prefix) is False  # the CLI's revoke of a revoked key: nothing new either
    api.accounts.update_tenant(tenant, name=tenant)  # its name already
    assert [r.action for r in api.accounts.audit_log(tenant)].count("key.revoke") == 1
    assert [r.action for r in api.accounts.audit_log(tenant)].count("tenant.update") == 1


def test_a_subject_patch_that_changes_nothing_is_not_audited(api) -> None:
    """PATCH /v1/collections/{c}/subjects/{s} with {} or the name it has wrote a subject.update each
    time, though a call that changes nothing writes no audit record (README); a change is audited once."""
    _, key = _new_tenant(api, "same")
    with api.client(key) as http:
        assert http.post("/v1/collections", json={"name": "gz"}).status_code == 201
        assert http.post("/v1/collections/gz/subjects", json={"id": "s1", "name": "Ann",
                                                              "metadata": {"desk": 2}}).status_code == 201
        unchanged = [http.patch("/v1/collections/gz/subjects/s1", json=body)
                     for body in ({}, {"name": "Ann"}, {"metadata": {"desk": 2}}, {"name": "Ann", "metadata": {}})]
        assert [(a.status_code, a.json()["name"], a.json()["metadata"]) for a in unchanged] == [
            (200, "Ann", {"desk": 2})] * 4
        assert [e["action"] for e in _trail(http)].count("subject.update") == 0
        renamed = [http.patch("/v1/collections/gz/subjects/s1", json={"name": "Anne"}) for _ in range(2)]
        assert [a.json()["name"] for a in renamed] == ["Anne", "Anne"]
        trail = [(e["action"], e["target"]) for e in _trail(http)]
    assert trail.count(("subject.update", "gz/s1")) == 1


def test_a_tenant_name_longer_than_its_column_is_refused_before_the_database(api) -> None:
    """`tenant create x --name <201 characters>` (or one with a NUL) reached the database: on
    PostgreSQL a DataError, a traceback in the CLI, not a validation error."""
    from faceatlas.errors import InvalidArgument

    tenant, _ = _new_tenant(api, "named")
    for name in ("n" * 201, "a\x00b"):
        with pytest.raises(InvalidArgument, match="at most 200 characters"):
            api.accounts.create_tenant(f"{tenant}-2", name=name)
        with pytest.raises(InvalidArgument, match="at most 200 characters"):
            api.accounts.update_tenant(tenant, name=name)
    assert api.accounts.update_tenant(tenant, name="n" * 200).name == "n" * 200


def test_the_cli_s_delete_erases_the_ids_from_the_audit_trail_as_the_api_s_does(api, monkeypatch) -> None:
    """Issue: `faceatlas gallery delete staff -s alice --tenant svc:acme` on the service's database
    (one FACEATLAS_DATABASE_URL, the normal setup) deleted the subject but kept `subject.create
    staff/alice` in acme's audit trail, which the API's DELETE erases; so did deleting the whole
    collection. The CLI now runs the API's use case (ids kept only with FACEATLAS_AUDIT_KEEPS_SUBJECT_IDS)."""
    tenant, key = _new_tenant(api, "cli")
    name, other = f"staff_{uuid.uuid4().hex[:6]}", f"temps_{uuid.uuid4().hex[:6]}"
    with api.client(key) as http:
        for collection, subjects in ((name, ("alice_smith", "bob_kept")), (other, ("carol_temp",))):
            assert http.post("/v1/collections", json={"name": collection}).status_code == 201
            for subject in subjects:
                assert http.post(f"/v1/collections/{collection}/subjects", json={"id": subject}).status_code == 201
        assert http.patch(f"/v1/collections/{name}/subjects/alice_smith", json={"name": "Alice"}).status_code == 200

    def delete(*args: str) -> None:
        done = CliRunner().invoke(cli, ["gallery", "delete", *args, "--tenant", f"svc:{tenant}", "--db",
                                        api.database_url, "--yes", "--json"])
        assert done.exit_code == 0, done.output

    def trail() -> set[tuple[str, str]]:
        return {(r.action, r.target) for r in api.accounts.audit_log(tenant, limit=1000)}

    assert ("subject.update", f"{name}/alice_smith") in trail()
    monkeypatch.setenv("FACEATLAS_AUDIT_KEEPS_SUBJECT_IDS", "1")
    delete(name, "-s", "bob_kept")
    assert ("subject.create", f"{name}/bob_kept") in trail()  # the server keeps ids: so does the CLI
    monkeypatch.delenv("FACEATLAS_AUDIT_KEEPS_SUBJECT_IDS")
    delete(name, "-s", "alice_smith")
    assert "alice_smith" not in json.dumps(sorted(trail()))
    assert {("subject.create", f"{name}/[erased]"), ("subject.update", f"{name}/[erased]"),
            ("subject.create", f"{name}/bob_kept"), ("subject.create", f"{other}/carol_temp")} <= trail()
    delete(other)
    assert "carol_temp" not in json.dumps(sorted(trail()))
    assert {("collection.create", other), ("subject.create", f"{other}/[erased]")} <= trail()
    assert ("subject.create", f"{name}/bob_kept") in trail()  # another collection's records stay as they were


def test_the_cli_deletes_a_service_space_of_a_database_never_served(tmp_path) -> None:
    """A gallery database without the service's tables (no audit trail to erase from) still deletes."""
    database_url = f"sqlite:///{tmp_path / 'gallery.db'}"

    def run(*args: str) -> dict:
        done = CliRunner().invoke(cli, ["gallery", *args, "--tenant", "svc:acme", "--db", database_url, "--json"])
        assert done.exit_code == 0, done.output
        return json.loads(done.output)

    with Gallery.open(database_url, tenant="svc:acme") as gallery:
        gallery.create_collection("staff", "scrfd-mbf")
        gallery.add_subject("staff", "alice")
    assert run("delete", "staff", "-s", "alice", "--yes")["faces"] == 0
    assert run("delete", "staff", "--yes")["deleted"] == "collection 'staff'"
    with Gallery.open(database_url, tenant="svc:acme") as gallery:
        assert gallery.list_collections() == []
    engine = create_engine(database_url)
    assert not inspect(engine).has_table("svc_audit")  # the delete made no service table either
    engine.dispose()


def test_an_audit_trail_erased_leaves_no_copy_in_the_sqlite_files(tmp_path) -> None:
    """The audit trail is erased by rewriting its records (``[erased]``), not deleting them: the
    journal held the rewrite and the database file kept the records as written (``staff/<id>``)
    until a later delete or the server's stop. The rewrite truncates the journal as a delete does."""
    from faceatlas.db import create_database_engine
    from faceatlas.service.accounts import Accounts
    from faceatlas.service.db import migrate

    database = tmp_path / "svc.db"
    engine = create_database_engine(f"sqlite:///{database}")
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    for action in ("subject.create", "face.enrol"):
        accounts.audit(action, "staff/zorro_9913", "acme", None, {"faces": 1})
    accounts.audit("subject.create", "vip/zorro_9914", "acme", None)
    accounts.audit("album.name", "album1/p9915", "acme", None)
    with engine.connect() as held:  # the server's state: the database open, its pool holding connections
        held.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # the records in the database file itself
        accounts.erase_subject("acme", "staff/zorro_9913", keep_ids=False)
        accounts.erase_collection("acme", "vip", keep_ids=False)
        accounts.erase_album_person("acme", "album1", ["p9915"], keep_ids=False)
        files = {path.name: path.read_bytes() for path in tmp_path.glob("svc.db*") if path.is_file()}
        assert "svc.db" in files
        assert not [(name, needle) for name, blob in files.items()
                    for needle in (b"zorro_9913", b"zorro_9914", b"p9915") if needle in blob]
    engine.dispose()


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_the_audit_log_refuses_a_limit_outside_a_page(tmp_path, limit) -> None:
    """``audit_log(tenant, -1)`` was the whole trail (SQLite reads a negative LIMIT as none), past
    the API's ``le=1000``: the layer refuses a page outside 1 to PAGE_MAX itself."""
    from faceatlas.db import create_database_engine
    from faceatlas.errors import InvalidArgument
    from faceatlas.service.accounts import Accounts
    from faceatlas.service.db import migrate

    engine = create_database_engine(f"sqlite:///{tmp_path / 'svc.db'}")
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    for n in range(3):
        accounts.audit("subject.create", f"staff/s{n}", "acme", None)
    try:
        with pytest.raises(InvalidArgument, match="limit"):
            accounts.audit_log("acme", limit)
        assert len(accounts.audit_log("acme", 2)) == 2
    finally:
        engine.dispose()


@pytest.mark.parametrize("bad", ["Evil\x1b[2J\x1b[31mRED", "Zo\u00eb\nline2", "a\x85b", "a\u2028b", "x\u202egnp.exe"])
def test_a_tenants_name_is_one_line_without_control_characters(tmp_path, bad: str) -> None:
    """A tenant's display name took a newline and ESC (only NUL was refused), and ``admin tenant
    list`` printed them raw: the row split, or the terminal was cleared. The gallery's rule for a
    name applies, at create and at rename, and nothing is changed."""
    from faceatlas.db import create_database_engine
    from faceatlas.errors import InvalidArgument
    from faceatlas.service.accounts import Accounts
    from faceatlas.service.db import migrate

    engine = create_database_engine(f"sqlite:///{tmp_path / 'svc.db'}")
    migrate(engine)
    accounts = Accounts(engine)
    with pytest.raises(InvalidArgument, match="tenant's name .*without control characters"):
        accounts.create_tenant("t2", name=bad)
    accounts.create_tenant("acme", name="Acme Zoe\u0308")
    with pytest.raises(InvalidArgument, match="tenant's name .*without control characters"):
        accounts.update_tenant("acme", name=bad)
    assert [(t.id, t.name) for t in accounts.list_tenants()] == [("acme", "Acme Zo\u00eb")]  # kept composed
    engine.dispose()
