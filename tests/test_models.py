"""Model files: lookup order, sha256 checks, the download path over a real loopback HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import zipfile
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from faceatlas.engine import ModelMissing, UnknownPack, get_pack
from faceatlas.engine.models import ModelFile, fetch, resolve
from faceatlas.engine.packs import DET_500M
from faceatlas.errors import ModelIntegrityError


@pytest.fixture()
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACEATLAS_MODEL_DIR", str(tmp_path / "models"))
    return tmp_path


@pytest.fixture()
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_missing_model_offline_names_the_file_and_where_to_put_it(isolated, monkeypatch):
    monkeypatch.setenv("FACEATLAS_OFFLINE", "1")
    with pytest.raises(ModelMissing) as info:
        resolve(DET_500M)
    message = str(info.value)
    assert "det_500m.onnx" in message and "FACEATLAS_MODEL_DIR" in message and DET_500M.sha256 in message


def test_model_dir_is_searched_and_checksums_are_enforced(isolated, shared):
    folder = isolated / "models"
    folder.mkdir()
    (folder / "det_500m.onnx").symlink_to(shared / "models" / "insightface" / "det_500m.onnx")
    assert resolve(DET_500M, download=False).name == "det_500m.onnx"
    (folder / "det_500m.onnx").unlink()
    (folder / "det_500m.onnx").write_bytes(b"not the model")
    with pytest.raises(ModelIntegrityError, match="does not match"):
        resolve(DET_500M, download=False)


def test_download_checks_sha256_and_renames_atomically(isolated, http_root):
    root, base = http_root
    payload = b"model bytes " * 1000
    (root / "m.onnx").write_bytes(payload)
    good = ModelFile("test/m.onnx", hashlib.sha256(payload).hexdigest(), f"{base}/m.onnx", "test")
    path = resolve(good)
    assert path == isolated / "cache" / "models" / "test" / "m.onnx" and path.read_bytes() == payload
    bad = ModelFile("test/bad.onnx", "0" * 64, f"{base}/m.onnx", "test")
    with pytest.raises(ModelIntegrityError):
        fetch(bad)
    assert not list((isolated / "cache" / "models" / "test").glob("*bad*"))  # no partial file left


def test_download_extracts_a_member_of_a_release_archive(isolated, http_root):
    root, base = http_root
    payload = b"weights" * 100
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pack/w.onnx", payload)
    (root / "pack.zip").write_bytes(buffer.getvalue())
    spec = ModelFile(
        "test/w.onnx", hashlib.sha256(payload).hexdigest(), f"{base}/pack.zip", "test", archive_member="pack/w.onnx"
    )
    assert Path(fetch(spec)).read_bytes() == payload


def test_unreachable_source_is_a_clear_model_missing_error(isolated):
    spec = ModelFile("test/x.onnx", "0" * 64, "http://127.0.0.1:9/x.onnx", "test")
    with pytest.raises(ModelMissing, match="Download failed"):
        resolve(spec)


def test_unknown_pack_lists_the_known_ones():
    with pytest.raises(UnknownPack, match="scrfd-mbf"):
        get_pack("nope")


def test_dlib_pack_needs_no_download(isolated, monkeypatch):
    monkeypatch.setenv("FACEATLAS_OFFLINE", "1")
    pack = get_pack("dlib")
    assert pack.is_available()
    assert all(resolve(f).is_file() for f in pack.core_files)


def test_only_the_default_pack_is_described_as_the_default():
    """`models list` called dlib the "offline default" after yunet-frfeature became the default."""
    from faceatlas.engine.packs import PACKS
    from faceatlas.settings import DEFAULT_PACK

    called_default = sorted(name for name, pack in PACKS.items() if "default" in pack.description.lower())
    assert called_default in ([], [DEFAULT_PACK])
    assert "offline" in get_pack("dlib").description and "install" in get_pack("dlib").description


def test_offline_fetch_refuses_without_touching_the_network(isolated, http_root, monkeypatch):
    root, base = http_root
    payload = b"model bytes " * 100
    (root / "m.onnx").write_bytes(payload)
    spec = ModelFile("test/m.onnx", hashlib.sha256(payload).hexdigest(), f"{base}/m.onnx", "test")
    monkeypatch.setenv("FACEATLAS_OFFLINE", "1")
    with pytest.raises(ModelMissing, match="offline"):
        fetch(spec)
    assert not (isolated / "cache" / "models" / "test" / "m.onnx").exists()


def test_download_extracts_a_member_of_an_npm_package(isolated, http_root, shared):
    """fr_feature ships in an npm .tgz: the pack's member path is extracted and its pinned sha256 holds."""
    import dataclasses
    import tarfile

    from faceatlas.engine.packs import FR_FEATURE

    root, base = http_root
    with tarfile.open(root / "faceplugin.tgz", "w:gz") as archive:
        archive.add(shared / "models" / FR_FEATURE.name, arcname=FR_FEATURE.archive_member)
        archive.add(shared / "models" / "faceplugin" / "fr_liveness.onnx", arcname="package/model/fr_liveness.onnx")
    assert FR_FEATURE.url is not None and FR_FEATURE.url.endswith(".tgz")
    spec = dataclasses.replace(FR_FEATURE, url=f"{base}/faceplugin.tgz")
    fetched = fetch(spec)
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == FR_FEATURE.sha256
    wrong = dataclasses.replace(spec, name="faceplugin/other.onnx", archive_member="package/model/fr_liveness.onnx")
    with pytest.raises(ModelIntegrityError):
        fetch(wrong)


# -- a file that is there but does not load (an unpinned pack's file: no sha256 to catch it first) ----------
BROKEN = {
    "garbage": bytes(range(256)) * 12,
    "truncated": None,  # the first MB of a real recogniser
    "empty": b"",
    "html": b"<!doctype html><html><body>Please log in to the proxy</body></html>\n",
}


def _broken(kind: str, shared: Path) -> bytes:
    data = BROKEN[kind]
    return (shared / "models" / "recognition" / "mobilefacenet_128d.onnx").read_bytes()[:1_000_000] \
        if data is None else data


@pytest.fixture()
def bad_copy_first(monkeypatch, tmp_path, shared):
    """A model folder searched before the shared models, for broken copies of unpinned files."""
    bad = tmp_path / "bad"
    (bad / "insightface").mkdir(parents=True)
    monkeypatch.setenv("FACEATLAS_MODEL_DIR", f"{bad}{os.pathsep}{shared / 'models'}")
    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACEATLAS_OFFLINE", "1")
    return bad / "insightface"


@pytest.mark.parametrize("kind", list(BROKEN))
@pytest.mark.parametrize("runtime", ["float", "int8"])
def test_an_unpinned_file_that_does_not_load_is_a_model_integrity_error(bad_copy_first, shared, kind, runtime):
    from faceatlas.engine import FaceAnalyzer

    broken = bad_copy_first / "w600k_mbf.onnx"
    broken.write_bytes(_broken(kind, shared))
    with pytest.raises(ModelIntegrityError) as info:
        FaceAnalyzer(get_pack("buffalo_s", runtime=runtime), announce_license=False)
    message = str(info.value)
    assert message.startswith(f"{broken}: cannot be loaded")
    assert "Delete it and fetch it again: faceatlas models fetch buffalo_s" in message


def test_a_detector_that_does_not_load_is_one_json_error_from_the_cli(bad_copy_first, shared):
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    (bad_copy_first / "det_10g.onnx").write_bytes(_broken("garbage", shared))  # buffalo_l's SCRFD-10G
    photo = shared / "data" / "lfw" / "images" / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg"
    result = CliRunner().invoke(app, ["detect", str(photo), "-p", "buffalo_l", "--json"])
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)
    assert error["error"] == "model_integrity" and str(bad_copy_first / "det_10g.onnx") in error["message"]
    assert "faceatlas models fetch buffalo_l" in error["message"]
    (bad_copy_first / "w600k_mbf.onnx").write_bytes(_broken("truncated", shared))
    plain = CliRunner().invoke(app, ["detect", str(photo), "-p", "buffalo_s"])
    assert plain.exit_code == 2 and "Traceback" not in plain.output
    lines = [line for line in plain.output.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "w600k_mbf.onnx" in lines[0] and "faceatlas models fetch buffalo_s" in lines[0]


def test_a_download_that_is_not_the_archive_is_an_integrity_error_naming_the_url(isolated, shared):
    """A proxy's HTML page (or a cut-off or wrong archive) where the release archive should be was a
    tarfile.ReadError / zipfile.BadZipFile / KeyError traceback."""
    import dataclasses
    import tarfile

    from faceatlas.engine.packs import FR_FEATURE, PACKS

    www = isolated / "www"
    www.mkdir()
    (www / "page.html").write_bytes(b"<!doctype html><html><body>Please log in to the proxy</body></html>\n")
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("README.md", "not the model")
    (www / "other.zip").write_bytes(other.getvalue())
    with tarfile.open(www / "other.tgz", "w:gz") as tarred:
        tarred.add(shared / "models" / "faceplugin" / "fr_liveness.onnx", arcname="package/model/fr_liveness.onnx")
    with tarfile.open(www / "full.tgz", "w:gz") as tarred:
        tarred.add(shared / "models" / FR_FEATURE.name, arcname=FR_FEATURE.archive_member)
    (www / "cut.tgz").write_bytes((www / "full.tgz").read_bytes()[:1_000_000])
    buffalo = PACKS["buffalo_s"].recognizer.file  # a member of InsightFace's buffalo_s.zip, unpinned
    for spec, served in [(FR_FEATURE, "page.html"), (buffalo, "page.html"), (buffalo, "other.zip"),
                         (FR_FEATURE, "other.tgz"), (FR_FEATURE, "cut.tgz"), (buffalo, "other.tgz")]:
        url = (www / served).as_uri()
        with pytest.raises(ModelIntegrityError) as info:
            fetch(dataclasses.replace(spec, url=url))
        message = str(info.value)
        assert message.startswith(f"{url}: the download is not the archive"), message
        assert "try again later" in message.lower() and "by hand" in message
        folder = isolated / "cache" / "models" / spec.name.split("/")[0]
        assert list(folder.iterdir()) == []  # no partial file, no model
    plain = ModelFile("test/m.onnx", FR_FEATURE.sha256, (www / "page.html").as_uri(), "test")
    with pytest.raises(ModelIntegrityError, match=r"page\.html: the download's sha256 .* does not match"):
        fetch(plain)
    assert list((isolated / "cache" / "models" / "test").iterdir()) == []


def test_a_missing_model_offline_names_the_command_that_fetches_it(isolated, monkeypatch):
    from typer.testing import CliRunner

    from faceatlas.cli.main import app
    from faceatlas.engine import FaceAnalyzer

    monkeypatch.setenv("FACEATLAS_OFFLINE", "1")
    with pytest.raises(ModelMissing) as info:
        FaceAnalyzer("buffalo_s", announce_license=False)  # its SCRFD-500M is scrfd-mbf's too: named by the pack used
    assert "det_500m.onnx" in str(info.value)
    assert "Unset FACEATLAS_OFFLINE and fetch it: faceatlas models fetch buffalo_s" in str(info.value)
    with pytest.raises(ModelMissing, match="faceatlas models fetch scrfd-mbf"):
        resolve(DET_500M)  # no pack given: the first that holds the file
    result = CliRunner().invoke(app, ["models", "fetch", "yunet-mbf"])
    assert result.exit_code == 2 and "faceatlas models fetch yunet-mbf" in result.output, result.output


def _certificate(folder: Path, hosts: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate for ``hosts`` (its own CA): the PEM files of the certificate and key."""
    from cryptography import x509  # a test dependency (pyproject's test extra)
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def _stalling_proxy(cert: Path, key: Path, sent: threading.Event, release: threading.Event) -> socket.socket:
    """An HTTPS proxy on loopback that answers every download with its headers (1 MB promised) and
    64 KB of it, then stalls until ``release``: a download cut in the middle."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(client: socket.socket) -> None:
        with client:
            reader = client.makefile("rb")
            while reader.readline() not in (b"\r\n", b""):  # CONNECT host:443 and its headers
                pass
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with context.wrap_socket(client, server_side=True) as tls:
                tls.recv(65536)  # the GET
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"\0" * 65536)
                sent.set()
                release.wait(60)

    def accept() -> None:
        with suppress(OSError):
            while True:
                threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener


def test_sigterm_during_a_download_removes_its_part_file(tmp_path):
    """`kill` (SIGTERM) of `faceatlas models fetch` in the middle of a download left the
    `.det_500m.onnx.*.part` file in the cache (SIGTERM's default action ends the process on the
    spot); it now stops as Ctrl-C does: the download's ``finally`` removes it, status 130."""
    hosts = ["raw.githubusercontent.com", "github.com", "media.githubusercontent.com", "registry.npmjs.org"]
    cert, key = _certificate(tmp_path, hosts)
    sent, release = threading.Event(), threading.Event()
    proxy = _stalling_proxy(cert, key, sent, release)
    env = {name: value for name, value in os.environ.items()
           if not name.upper().startswith("FACEATLAS_") and name.lower() not in ("no_proxy", "all_proxy")}
    env.update(https_proxy=f"http://127.0.0.1:{proxy.getsockname()[1]}", SSL_CERT_FILE=str(cert),
               FACEATLAS_CACHE=str(tmp_path / "cache"), FACEATLAS_MODEL_DIR=str(tmp_path / "models"),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    try:
        child = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", "models", "fetch", "scrfd-mbf"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert sent.wait(60), "the download never started"
            deadline = time.monotonic() + 10
            while not list((tmp_path / "cache").rglob("*.part")) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert list((tmp_path / "cache").rglob("*.part")), "no download in progress"
            child.send_signal(signal.SIGTERM)
            _, stderr = child.communicate(timeout=30)
        finally:
            child.kill()
    finally:
        release.set()
        proxy.close()
    assert not [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # no .part, no model
    assert child.returncode == 130, stderr


def _pack_with_liveness_from(url: str):
    """scrfd-mbf (its detector and recogniser on the shared folder) whose liveness models are files
    found nowhere, downloaded from ``url``."""
    from dataclasses import replace

    pack = get_pack("scrfd-mbf")
    absent = [replace(spec, file=ModelFile(f"test/absent_liveness_{i}.onnx", "0" * 64, url, "test"))
              for i, spec in enumerate(pack.liveness)]
    return replace(pack, liveness=tuple(absent))


def test_a_failed_download_is_not_tried_again_on_every_load(tmp_path, shared, failing_source):
    """Issue: a server without internet whose liveness model was missing tried its download on every
    request that needed it (each blocked up to the minute of the download's timeout). The analyzer
    now answers the same model_missing at once, saying when it tries again; `models fetch` (fetch
    itself) always tries."""
    from faceatlas.engine import FaceAnalyzer
    from faceatlas.settings import EngineSettings

    settings = EngineSettings(model_dir=str(shared / "models"), cache=tmp_path / "cache")
    analyzer = FaceAnalyzer(_pack_with_liveness_from(failing_source.url), settings=settings, announce_license=False)
    with pytest.raises(ModelMissing, match="Download failed") as first:
        _ = analyzer.liveness_model
    assert failing_source.requests == 1
    with pytest.raises(ModelMissing, match="Download failed") as again:
        _ = analyzer.liveness_model
    assert failing_source.requests == 1  # answered from the failure, no second download
    assert settings.download_retry_seconds == 300  # the default
    assert 299 <= (first.value.retry_after or 0) <= 300 and "does not try the download again before" in str(first.value)
    assert 0 < (again.value.retry_after or 0) <= 300
    assert "absent_liveness_0.onnx" in str(again.value) and "FACEATLAS_DOWNLOAD_RETRY_SECONDS" in str(again.value)
    with pytest.raises(ModelMissing, match="Download failed"):  # what `faceatlas models fetch` calls: it tries
        fetch(analyzer.pack.liveness[0].file, settings, pack="scrfd-mbf")
    assert failing_source.requests == 2


def test_a_failed_download_is_tried_again_after_the_back_off(tmp_path, shared, failing_source, monkeypatch):
    from faceatlas.engine import FaceAnalyzer
    from faceatlas.settings import EngineSettings

    monkeypatch.setenv("FACEATLAS_DOWNLOAD_RETRY_SECONDS", "1")
    settings = EngineSettings(model_dir=str(shared / "models"), cache=tmp_path / "cache")
    analyzer = FaceAnalyzer(_pack_with_liveness_from(failing_source.url), settings=settings, announce_license=False)
    for _ in range(2):
        with pytest.raises(ModelMissing):
            _ = analyzer.liveness_model
    assert failing_source.requests == 1
    time.sleep(1.2)
    with pytest.raises(ModelMissing, match="Download failed"):
        _ = analyzer.liveness_model
    assert failing_source.requests == 2
    off = FaceAnalyzer(analyzer.pack, settings=settings.model_copy(update={"download_retry_seconds": 0}),
                       announce_license=False)
    for _ in range(2):  # 0: no back-off, every load tries
        with pytest.raises(ModelMissing) as info:
            _ = off.liveness_model
        assert info.value.retry_after is None
    assert failing_source.requests == 4


def test_a_failed_fetch_does_not_send_the_user_back_to_the_fetch_that_failed(isolated):
    """`faceatlas models fetch yunet-sface` without a network ended "Fetch it: faceatlas models fetch
    yunet-sface Download failed: ...": the command that had just failed. It says the download's
    reason and that the fetch tries again once the host can be reached."""
    spec = ModelFile("test/x.onnx", "0" * 64, "http://127.0.0.1:9/x.onnx", "test")
    with pytest.raises(ModelMissing) as failed:
        fetch(spec, pack="test-pack")
    message = str(failed.value)
    assert "Fetch it" not in message, message
    assert message.splitlines()[-1].startswith("Download failed: "), message
    assert message.endswith("; once 127.0.0.1 can be reached, `faceatlas models fetch test-pack` tries again"), message
