"""One settings object: the documented FACEATLAS_* variables, read in one module only."""

from __future__ import annotations

import inspect
import re
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceatlas.cli.main import app
from faceatlas.errors import InvalidSetting
from faceatlas.service.inference import InferencePool
from faceatlas.settings import DEFAULT_QUEUE_SIZE, EngineSettings, ServiceSettings, Settings, StorageSettings

PACKAGE = Path(__file__).resolve().parents[1] / "faceatlas"


def test_settings_read_the_documented_variables(monkeypatch, tmp_path):
    env = {
        "FACEATLAS_PACK": "yunet-mbf",
        "FACEATLAS_MODEL_DIR": f"{tmp_path}/a:{tmp_path}/b",
        "FACEATLAS_CACHE": str(tmp_path / "cache"),
        "FACEATLAS_OFFLINE": "1",
        "FACEATLAS_THREADS": "3",
        "FACEATLAS_MAX_PIXELS": "1000",
        "FACEATLAS_DATABASE_URL": "sqlite:///x.db",
        "FACEATLAS_INDEX_DIR": str(tmp_path / "idx"),
        "FACEATLAS_QUEUE_SIZE": "7",
        "FACEATLAS_BATCHING": "no",
        "FACEATLAS_URL_ALLOWLIST": "a.example, b.example",
        "FACEATLAS_MAX_UPLOAD_BYTES": "123",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    assert settings.engine.pack == "yunet-mbf" and settings.engine.offline and settings.engine.threads == 3
    assert settings.engine.model_dirs == [tmp_path / "a", tmp_path / "b"]
    assert settings.engine.cache_dir == tmp_path / "cache" and settings.engine.max_pixels == 1000
    assert settings.storage.database_url == "sqlite:///x.db" and settings.storage.index_dir == tmp_path / "idx"
    service = settings.service
    assert (service.queue_size, service.batching, service.max_upload_bytes) == (7, False, 123)
    assert service.url_fetch_allowlist == ["a.example", "b.example"] and service.pack == "yunet-mbf"
    assert service.database_url == "sqlite:///x.db"
    assert ServiceSettings.from_env(queue_size=2).queue_size == 2  # overrides on top of the environment


def test_only_the_settings_module_reads_the_environment():
    readers = [
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if path.name != "settings.py" and re.search(r"os\.environ|getenv\(", path.read_text())
    ]
    assert readers == []


def test_the_queue_size_has_one_default():
    default = inspect.signature(InferencePool).parameters["queue_size"].default
    assert default == ServiceSettings().queue_size == DEFAULT_QUEUE_SIZE  # was 64 in the pool, 32 in the settings


def test_watch_and_demo_use_the_configured_pack(monkeypatch, tmp_path):
    """Both commands named their own pack and ignored FACEATLAS_PACK; now an unknown pack named
    there is refused before any video or photo is read."""
    monkeypatch.setenv("FACEATLAS_PACK", "no-such-pack")
    runner = CliRunner()
    watch = runner.invoke(app, ["watch", str(tmp_path / "missing.mp4")])
    demo = runner.invoke(app, ["demo", "retail", "--out", str(tmp_path / "demo"), "--members", "1", "--visits", "1"])
    for result in (watch, demo):
        assert result.exit_code != 0
        assert "no-such-pack" in (result.output + repr(result.exception))
    assert EngineSettings().pack_name() == "no-such-pack"


def test_an_empty_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", "")
    monkeypatch.setenv("FACEATLAS_THREADS", "")
    settings = Settings.from_env()
    assert settings.storage.database_url.startswith("sqlite:///") and settings.engine.threads is None


def test_an_empty_vector_store_variable_is_refused_not_taken_for_unset(monkeypatch, tmp_path):
    """FACEATLAS_MILVUS_URI= meant ~/.local/share/faceatlas/milvus.db (an empty variable counts as
    unset), FACEATLAS_VECTOR_BACKEND= meant faiss, FACEATLAS_MILVUS_PREFIX= the default prefix: the
    vectors went to (or were read from) another place without a word, where an empty --db is
    refused. Now each, set empty or blank, is refused naming it; unset, its default holds."""
    from faceatlas.errors import InvalidSetting

    for variable in ("FACEATLAS_MILVUS_URI", "FACEATLAS_VECTOR_BACKEND", "FACEATLAS_MILVUS_PREFIX"):
        for value in ("", "  "):
            monkeypatch.setenv(variable, value)
            try:
                StorageSettings()
                raise AssertionError(f"{variable}={value!r} must be refused")
            except InvalidSetting as exc:
                assert str(exc).startswith(f"{variable}={value!r}: ") and "empty" in str(exc), str(exc)
        field = variable.removeprefix("FACEATLAS_").lower()
        given = {"milvus_uri": "x.db", "vector_backend": "milvus", "milvus_prefix": "fa"}[field]
        assert getattr(StorageSettings(**{field: given}), field) == given  # a value given in code wins
        monkeypatch.delenv(variable)
    defaults = StorageSettings()
    assert (defaults.vector_backend, defaults.milvus_prefix) == ("faiss", None)
    assert defaults.milvus_uri.endswith("/.local/share/faceatlas/milvus.db")
    monkeypatch.setenv("FACEATLAS_MILVUS_URI", "")  # the CLI: one line, exit 2
    result = CliRunner().invoke(app, ["gallery", "create", "c", "--pack", "scrfd-mbf", "--db", str(tmp_path / "g.db")])
    assert result.exit_code == 2 and "error (invalid_setting): FACEATLAS_MILVUS_URI='': " in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_setting_out_of_its_rules_is_one_line_naming_the_variable(monkeypatch, examples):
    """A mistyped FACEATLAS_* value printed pydantic's 40-line traceback (exit 1), and `serve`
    started uvicorn before failing in its startup: one line, the variable and why, exit 2."""
    from faceatlas.errors import InvalidSetting
    from faceatlas.service import create_app

    photo = examples / "examples" / "two_people.jpg"
    for variable, value, why in (("FACEATLAS_DET_MAX_SIDE", "abc", "valid integer"),
                                 ("FACEATLAS_PROVIDER", "cuda", "'onnxruntime' or 'openvino'"),
                                 ("FACEATLAS_MIN_FACE", "0", "greater than or equal to 8")):
        monkeypatch.setenv(variable, value)
        result = CliRunner().invoke(app, ["detect", str(photo)])
        assert result.exit_code == 2, result.output
        assert f"error (invalid_setting): {variable}='{value}': " in result.output and why in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
        monkeypatch.delenv(variable)
    # a Redis URL without its scheme failed in the app's startup with a traceback; a URL is named, not echoed
    monkeypatch.setenv("FACEATLAS_REDIS_URL", "secret@localhost:6379")
    try:
        create_app(ServiceSettings(database_url="sqlite://"))
        raise AssertionError("a Redis URL without its scheme must stop the app before it starts")
    except InvalidSetting as exc:
        assert str(exc).startswith("FACEATLAS_REDIS_URL: ") and "redis://" in str(exc) and "secret" not in str(exc)
    monkeypatch.delenv("FACEATLAS_REDIS_URL")
    monkeypatch.setenv("FACEATLAS_MAX_PIXELS", "-1")
    try:
        create_app(ServiceSettings(database_url="sqlite://"))
        raise AssertionError("an engine setting out of its rules must stop the app before it starts")
    except InvalidSetting as exc:
        assert str(exc).startswith("FACEATLAS_MAX_PIXELS='-1': ")


def test_serve_refuses_service_sizes_out_of_their_rules(monkeypatch, tmp_path):
    """FACEATLAS_WORKERS=0 started a server whose every inference call (and its SIGTERM) hung; a
    queue of 0 or -1 was unbounded, never answering 503; MAX_BATCH=0, MAX_WAIT_MS=-5 and
    MAX_UPLOAD_BYTES=0 were taken as given. Each is refused before the server starts."""
    import uvicorn

    def started(*args, **kwargs):  # a test double of uvicorn.run
        raise AssertionError("the server started")

    monkeypatch.setattr(uvicorn, "run", started)
    for variable, value, why in (("FACEATLAS_WORKERS", "0", "greater than or equal to 1"),
                                 ("FACEATLAS_QUEUE_SIZE", "0", "greater than or equal to 1"),
                                 ("FACEATLAS_QUEUE_SIZE", "-1", "greater than or equal to 1"),
                                 ("FACEATLAS_MAX_BATCH", "0", "greater than or equal to 1"),
                                 ("FACEATLAS_MAX_WAIT_MS", "-5", "greater than or equal to 0"),
                                 ("FACEATLAS_MAX_WAIT_MS", "inf", "finite number"),
                                 ("FACEATLAS_MAX_UPLOAD_BYTES", "0", "greater than or equal to 1")):
        monkeypatch.setenv(variable, value)
        result = CliRunner().invoke(app, ["serve", "--db", f"sqlite:///{tmp_path / 'svc.db'}", "--port", "0"])
        assert result.exit_code == 2, (variable, value, result.output)
        assert f"error (invalid_setting): {variable}='{value}': " in result.output and why in result.output
        monkeypatch.delenv(variable)
    with socket.socket() as taken:  # the settings are said first, whatever holds the port (a server on 8000)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = CliRunner().invoke(app, ["serve", "--db", f"sqlite:///{tmp_path / 'svc.db'}", "--workers", "0",
                                          "--port", str(taken.getsockname()[1])])
    assert result.exit_code == 2 and "error (invalid_setting): FACEATLAS_WORKERS: " in result.output, result.output
    assert not (tmp_path / "svc.db").exists()


def test_a_kyc_session_time_past_thirty_days_is_refused_at_start(monkeypatch, tmp_path):
    """FACEATLAS_KYC_SESSION_SECONDS=1e12 started the server, then every POST /v1/kyc/sessions was
    a 500 (OverflowError: the expiry past year 9999). At most 30 days; more (or inf) is refused
    before the server starts, as 0 and nan are; the library's KycConfig says the same."""
    import uvicorn

    from faceatlas.apps.kyc import KycConfig
    from faceatlas.errors import InvalidArgument, InvalidSetting

    def started(*args, **kwargs):  # a test double of uvicorn.run
        raise AssertionError("the server started")

    monkeypatch.setattr(uvicorn, "run", started)
    for value in ("1e12", "inf", "2592001", "0", "nan"):
        monkeypatch.setenv("FACEATLAS_KYC_SESSION_SECONDS", value)
        result = CliRunner().invoke(app, ["serve", "--db", f"sqlite:///{tmp_path / 'svc.db'}", "--port", "0"])
        assert result.exit_code == 2, (value, result.output)
        assert f"error (invalid_setting): FACEATLAS_KYC_SESSION_SECONDS='{value}': " in result.output, result.output
    monkeypatch.setenv("FACEATLAS_KYC_SESSION_SECONDS", "2592000")  # 30 days: the longest
    assert ServiceSettings.from_env().kyc_session_seconds == 30 * 24 * 3600
    monkeypatch.setenv("FACEATLAS_KYC_SESSION_SECONDS", "1e12")
    try:
        ServiceSettings.from_env()
        raise AssertionError("1e12 seconds was taken")
    except InvalidSetting as exc:
        assert "less than or equal to 2592000" in str(exc)
    for bad in (1e12, float("inf"), float("nan"), 0.0, -1.0):
        try:
            KycConfig(session_s=bad)
            raise AssertionError(f"KycConfig took session_s={bad}")
        except InvalidArgument as exc:
            assert "at most 2592000 seconds (30 days)" in str(exc)
    assert KycConfig(session_s=1e-6).session_s == 1e-6



def test_an_event_retention_past_a_century_is_refused_at_load(monkeypatch, tmp_path):
    """FACEATLAS_EVENT_RETENTION_DAYS=1e6 (meant as "forever") was taken, then every retention sweep
    failed (OverflowError: now minus a million days is before year 1), logged with a traceback at the
    start and every 300 s. At most 36500 days (a century: 36500 set as "keep" before the bound still
    starts); more, and inf, is refused when the settings load, naming the variable, before the
    server starts."""
    from datetime import timedelta

    import uvicorn

    from faceatlas.db import utcnow

    def started(*args, **kwargs):  # a test double of uvicorn.run
        raise AssertionError("the server started")

    monkeypatch.setattr(uvicorn, "run", started)
    for value in ("1e6", "36500.5", "inf"):
        monkeypatch.setenv("FACEATLAS_EVENT_RETENTION_DAYS", value)
        with pytest.raises(InvalidSetting, match=f"FACEATLAS_EVENT_RETENTION_DAYS='{value}'"):
            ServiceSettings.from_env()
        result = CliRunner().invoke(app, ["serve", "--db", f"sqlite:///{tmp_path / 'svc.db'}", "--port", "0"])
        assert result.exit_code == 2, (value, result.output)
        assert f"error (invalid_setting): FACEATLAS_EVENT_RETENTION_DAYS='{value}': " in result.output, result.output
    monkeypatch.setenv("FACEATLAS_EVENT_RETENTION_DAYS", "1e6")
    with pytest.raises(InvalidSetting, match="less than or equal to 36500"):
        ServiceSettings.from_env()
    monkeypatch.setenv("FACEATLAS_EVENT_RETENTION_DAYS", "36500")  # a century: the longest, a cut-off that can be
    days = ServiceSettings.from_env().event_retention_days
    assert days == 36500 and (utcnow() - timedelta(days=days)).year > 1900

def test_a_url_allowlist_entry_out_of_its_rules_is_refused(monkeypatch):
    """FACEATLAS_URL_ALLOWLIST=ftp://x was checked only when the app was built (`serve`: a
    traceback, exit 1; `serve --processes 2`: its processes restarted for ever), and a bare
    ``host:8080`` was taken as a host name no URL has. Each is one line naming the entry."""
    for entry in ("ftp://files.example", "https://", "http://files.example:99999", "files.example:8080",
                  "http:/files.example", "files.example/images"):
        monkeypatch.setenv("FACEATLAS_URL_ALLOWLIST", f"a.example, {entry}")
        with pytest.raises(InvalidSetting, match=f"^FACEATLAS_URL_ALLOWLIST='a.example, {re.escape(entry)}': entry "
                                                 f"'{re.escape(entry)}'"):
            ServiceSettings()
    monkeypatch.setenv("FACEATLAS_URL_ALLOWLIST", "Files.Example, https://b.example:8443, http://[::1]:8080")
    assert ServiceSettings().url_fetch_allowlist == ["Files.Example", "https://b.example:8443", "http://[::1]:8080"]


def test_every_setting_is_listed_in_the_readme_and_the_settings_docstring() -> None:
    """Found by a probe: FACEATLAS_MAX_KEYS_PER_TENANT (how to raise the 50-key ceiling) and 15 more
    were in no list of settings: an operator reading the README's Settings could not find them."""
    import faceatlas.settings as settings_module

    names = set()
    for section in (EngineSettings, StorageSettings, ServiceSettings):
        for field_name, field in section.model_fields.items():
            alias = field.validation_alias
            choices = [c for c in getattr(alias, "choices", []) if isinstance(c, str) and c.startswith("FACEATLAS_")]
            names.add(choices[0] if choices else f"FACEATLAS_{field_name.upper()}")
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    listed = readme[readme.index("## Settings"):readme.index("All are read in one place")]
    docstring = settings_module.__doc__ or ""
    assert len(names) >= 45
    assert sorted(n for n in names if not re.search(rf"`{n}`", listed)) == []
    assert sorted(n for n in names if not re.search(rf"\b{n}\b", docstring)) == []


def test_a_validator_s_refusal_reads_as_the_others(monkeypatch) -> None:
    """FACEATLAS_URL_ALLOWLIST=ftp://x said ``FACEATLAS_URL_ALLOWLIST: Value error, entry ...``: no value
    (every variable with "URL" or "TOKEN" in its name was taken for a secret) and pydantic's prefix."""
    from faceatlas.errors import InvalidSetting

    monkeypatch.setenv("FACEATLAS_URL_ALLOWLIST", "images.example.org, ftp://x")
    with pytest.raises(InvalidSetting) as refused:
        ServiceSettings()
    assert str(refused.value).startswith("FACEATLAS_URL_ALLOWLIST='images.example.org, ftp://x': entry 'ftp://x' "
                                         "is neither scheme://host[:port]"), str(refused.value)
    assert "Value error" not in str(refused.value)
    monkeypatch.delenv("FACEATLAS_URL_ALLOWLIST")
    monkeypatch.setenv("FACEATLAS_PIXELS_PER_TOKEN", "many")  # "TOKEN" in its name, yet no secret
    with pytest.raises(InvalidSetting, match="^FACEATLAS_PIXELS_PER_TOKEN='many': "):
        ServiceSettings()


def test_an_unknown_variable_is_warned_about_with_the_closest_name() -> None:
    """A misspelt database URL variable was ignored without a word (``extra="ignore"``): `serve` served a
    new empty database in $HOME; each unknown FACEATLAS_* name is now a warning naming what it may have meant."""
    from faceatlas.settings import known_variables, unknown_variables

    typo, token, log, retired, other = ("FACEATLAS_" + name for name in ("DATABSE_URL", "METRICS_TOKN",
                                                                          "LOG_FORMATS", "KYC_RETENTION_DAYS",
                                                                          "QWERTY"))
    environ = [typo, token, log, retired, other, "faceatlas_pack", "FACEATLAS_DATABASE_URL", "FACEATLAS_SERVER",
               "FACEATLAS_TEST_PG_URL", "HOME", "PATH"]
    assert unknown_variables(environ) == [
        f"warning: {typo} is no FaceAtlas setting (did you mean FACEATLAS_DATABASE_URL?): ignored",
        f"warning: {retired} is no FaceAtlas setting any more (KYC reference images are kept "
        "per tenant: PATCH /v1/settings kyc_retention_days): ignored",
        f"warning: {log} is no FaceAtlas setting (did you mean FACEATLAS_LOG_FORMAT?): ignored",
        f"warning: {token} is no FaceAtlas setting (did you mean FACEATLAS_METRICS_TOKEN?): ignored",
        f"warning: {other} is no FaceAtlas setting: ignored"]
    assert {"FACEATLAS_URL_ALLOWLIST", "FACEATLAS_LOG_FORMAT", "FACEATLAS_EVENT_RETENTION_DAYS"} <= known_variables()


def test_every_variable_the_repository_reads_is_known() -> None:
    """The known names (the settings' and OTHER_VARIABLES) never drift from what the code, the tests,
    the benchmarks and scripts read: a name read somewhere and not known would be warned about."""
    from faceatlas.settings import RETIRED_VARIABLES, known_variables

    root = Path(__file__).resolve().parents[1]
    found: dict[str, str] = {}
    for folder in ("faceatlas", "bench", "scripts", "tests", ".ci"):
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and path.suffix in {".py", ".sh", ".md", ".toml", ".cfg", ".txt", ""}:
                for name in re.findall(r"FACEATLAS_[A-Z0-9_]+", path.read_text(errors="replace")):
                    found.setdefault(name, str(path.relative_to(root)))
    assert len(found) >= 55
    unknown = {name: where for name, where in found.items()
               if name not in known_variables() and name not in RETIRED_VARIABLES}
    assert unknown == {}
