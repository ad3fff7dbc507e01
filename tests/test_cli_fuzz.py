"""What a careless user gives every command: a path that does not exist, a file that is not an
image or a video, an empty folder, an unknown collection, album, camera, tenant or pack, a broken
YAML or CSV, a zero or negative count. Each run exits non-zero with one line on stderr starting
with "error" (the last line, unwrapped), lets no exception out of the CLI (no traceback) and
leaves no output file behind. `serve` and `remote` need a server and are left out; the batch
cases fail before Ray starts."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceatlas.cli.main import app

runner = CliRunner()


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error")]


def _collection(tmp: Path) -> list[str]:
    return ["gallery", "create", "people", "-p", "scrfd-mbf", "--db", f"sqlite:///{tmp / 'g.db'}"]


def _album(tmp: Path, bad: Path) -> list[str]:
    return ["album", "scan", str(bad / "one"), "-a", "trip", "-p", "scrfd-mbf", "--db", f"sqlite:///{tmp / 'g.db'}"]


def _tenant(tmp: Path) -> list[str]:
    return ["admin", "tenant", "create", "acme", "--db", f"sqlite:///{tmp / 'g.db'}"]


def _counts(tmp: Path) -> None:
    """An events database where camera 'gate' stored one minute of counts."""
    from faceatlas.video.events import Event
    from faceatlas.video.sinks import DatabaseSink

    sink = DatabaseSink(f"sqlite:///{tmp / 'events.db'}")
    sink.emit(Event("counts", "gate", 1, 1.0, data={"minute": "2026-12-04T10:00", "frame_size": [8, 8],
                                                     "classes": {"car": {"seen": 1}}}))
    sink.close()


SETUPS: dict[str, Callable[[Path, Path], list[str] | None]] = {
    "collection": lambda tmp, bad: _collection(tmp),
    "album": _album,
    "tenant": lambda tmp, bad: _tenant(tmp),
    "counts": lambda tmp, bad: _counts(tmp),
}

DB = "--db sqlite:///{tmp}/g.db"
KYC = "kyc verify -p scrfd-mbf " + DB
FAST = "-p scrfd-mbf"

# (id, command line, a word the error line says, files it must not leave, setup)
CASES: list[tuple[str, str, str, tuple[str, ...], str | None]] = [
    # detect, compare, liveness
    ("detect-missing-file", f"detect {{tmp}}/nosuch.jpg {FAST}", "nosuch.jpg", (), None),
    ("detect-text-bytes", f"detect {{bad}}/notes.jpg {FAST}", "invalid_image", (), None),
    ("detect-truncated-jpeg", f"detect {{bad}}/truncated.jpg {FAST}", "truncated_image", (), None),
    ("detect-empty-folder", f"detect {{bad}}/empty {FAST}", "no images", (), None),
    ("detect-unknown-pack", "detect {obama} -p nosuch", "unknown_pack", (), None),
    ("detect-draw-unknown-suffix", f"detect {{obama}} {FAST} --draw {{tmp}}/drawn.txt", "drawn.txt",
     ("drawn.txt",), None),
    ("detect-draw-with-a-folder", f"detect {{bad}}/two {FAST} --draw {{tmp}}/drawn.jpg", "--draw",
     ("drawn.jpg",), None),
    ("compare-missing-file", f"compare {{tmp}}/nosuch.jpg {{obama}} {FAST}", "nosuch.jpg", (), None),
    ("compare-text-bytes", f"compare {{obama}} {{bad}}/notes.jpg {FAST}", "notes.jpg", (), None),
    ("compare-far-zero", f"compare {{obama}} {{obama2}} {FAST} --far 0", "far", (), None),
    ("liveness-missing-file", f"liveness {{tmp}}/nosuch.jpg {FAST}", "nosuch.jpg", (), None),
    ("liveness-text-bytes", f"liveness {{bad}}/notes.jpg {FAST}", "notes.jpg", (), None),
    ("liveness-empty-folder", f"liveness {{bad}}/empty {FAST}", "no images", (), None),
    # watch, counts
    ("watch-missing-file", f"watch {{tmp}}/nosuch.mp4 {FAST} --no-persons --events {{tmp}}/ev.jsonl", "nosuch.mp4",
     ("ev.jsonl",), None),
    ("watch-text-bytes", f"watch {{bad}}/notes.mp4 {FAST} --no-persons --events {{tmp}}/ev.jsonl "
     "--output {tmp}/out.mp4", "notes.mp4", ("ev.jsonl", "out.mp4"), None),
    ("watch-output-not-a-video", f"watch {{video}} {FAST} --no-persons --output {{tmp}}/out.txt", "out.txt",
     ("out.txt",), None),
    ("watch-text-named-jpg", f"watch {{bad}}/notes.jpg {FAST} --no-persons", "is a photo", (), None),
    ("watch-stride-zero", f"watch {{video}} {FAST} --no-persons --stride 0 --events {{tmp}}/ev.jsonl", "stride",
     ("ev.jsonl",), None),
    ("watch-line-of-three", f"watch {{video}} {FAST} --no-persons --line 1,2,3", "1,2,3", (), None),
    ("watch-config-missing", "watch --config {tmp}/cams.yaml", "cams.yaml", (), None),
    ("watch-config-broken-yaml", "watch --config {bad}/broken.yaml", "broken.yaml", (), None),
    ("watch-config-not-a-mapping", "watch --config {bad}/notes.jpg", "notes.jpg", (), None),
    ("watch-no-source", "watch", "SOURCE", (), None),
    ("counts-missing-database", "counts gate --database sqlite:///{tmp}/events.db", "events.db", ("events.db",),
     None),
    ("counts-not-a-database", "counts gate --database sqlite:///{bad}/notes.jpg", "database", (), None),
    ("counts-unknown-camera", "counts door --db sqlite:///{tmp}/events.db --plot {tmp}/counts.png", "door",
     ("counts.png",), "counts"),
    ("counts-plot-not-a-figure", "counts gate --db sqlite:///{tmp}/events.db --plot {tmp}/counts.txt",
     "counts.txt", ("counts.txt",), "counts"),
    ("counts-backwards", "counts gate --db sqlite:///{tmp}/events.db --from 2026-12-06 --to 2026-12-01", "'from'",
     (), "counts"),
    ("counts-bad-time", "counts gate --database sqlite:///{tmp}/events.db --from yesterday", "yesterday", (),
     "counts"),
    # drive, ar
    ("drive-missing-file", "drive {tmp}/nosuch.mp4 --events {tmp}/ev.jsonl", "nosuch.mp4", ("ev.jsonl",), None),
    ("drive-text-bytes", "drive {bad}/notes.mp4 --events {tmp}/ev.jsonl --output {tmp}/out.mp4", "notes.mp4",
     ("ev.jsonl", "out.mp4"), None),
    ("drive-output-not-a-video", "drive {cabin} --max-frames 2 --output {tmp}/out.txt", "out.txt", ("out.txt",),
     None),
    ("drive-text-named-jpg", "drive {bad}/notes.jpg", "could be decoded", (), None),
    ("drive-max-frames-zero", "drive {cabin} --max-frames 0 --events {tmp}/ev.jsonl", "max_frames", ("ev.jsonl",),
     None),
    ("drive-region-not-numbers", "drive {cabin} --region a,b,c,d", "x1,y1,x2,y2", (), None),
    ("drive-unknown-seat", "drive {cabin} --seat middle", "left, right", (), None),
    ("ar-missing-file", "ar {tmp}/nosuch.mp4 -e glasses -o {tmp}/out.mp4", "nosuch.mp4", ("out.mp4",), None),
    ("ar-text-bytes", "ar {bad}/notes.mp4 -e glasses -o {tmp}/out.mp4", "notes.mp4", ("out.mp4",), None),
    ("ar-output-not-a-video", "ar {cabin} -e glasses --max-frames 2 -o {tmp}/out.txt", "out.txt", ("out.txt",),
     None),
    ("ar-text-named-jpg", "ar {bad}/notes.jpg -e glasses", "could be decoded", (), None),
    ("ar-unknown-effect", "ar {cabin} -e sparkles -o {tmp}/out.mp4", "sparkles", ("out.mp4",), None),
    ("ar-sticker-not-an-image", "ar {cabin} --sticker {bad}/notes.png", "notes.png", (), None),
    ("ar-sticker-on-without-sticker", "ar {cabin} -e hat --sticker-on temples", "--sticker", (), None),
    ("ar-max-frames-zero", "ar {cabin} -e glasses --max-frames 0", "--max-frames", (), None),
    # eval
    ("eval-lfw-missing-pairs", "eval lfw --pairs {tmp}/pairs.txt --images {bad}/empty", "pairs.txt", (), None),
    ("eval-lfw-pairs-not-pairs", f"eval lfw --pairs {{bad}}/notes.jpg --images {{lfw}}/images {FAST}", "notes.jpg",
     (), None),
    ("eval-lfw-empty-images", f"eval lfw --pairs {{lfw}}/pairs.txt --images {{bad}}/empty {FAST} --limit-folds 1",
     "missing", (), None),
    ("eval-lfw-zero-folds", "eval lfw --pairs {lfw}/pairs.txt --images {lfw}/images --limit-folds 0",
     "--limit-folds", (), None),
    ("eval-folder-missing", f"eval folder {{tmp}}/people {FAST} --plot {{tmp}}/roc.png", "people", ("roc.png",),
     None),
    ("eval-lfw-plot-not-a-figure", f"eval lfw --pairs {{lfw}}/pairs.txt --images {{lfw}}/images {FAST} "
     "--limit-folds 1 --plot {tmp}/roc.txt", "roc.txt", ("roc.txt",), None),
    ("eval-folder-plot-not-a-figure", f"eval folder {{bad}}/two {FAST} --plot {{tmp}}/roc.txt", "roc.txt",
     ("roc.txt",), None),
    ("eval-folder-empty", f"eval folder {{bad}}/empty {FAST}", "empty", (), None),
    ("eval-folder-broken-csv", f"eval folder {{bad}}/pairs.csv {FAST}", "pairs.csv", (), None),
    # gallery
    ("gallery-create-unknown-pack", f"gallery create people -p nosuch {DB}", "unknown_pack", (), None),
    ("gallery-enrol-unknown-collection", f"gallery enrol nosuch {{obama}} -s x {DB}", "nosuch", (), "collection"),
    ("gallery-enrol-missing-file", f"gallery enrol people {{tmp}}/nosuch.jpg -s x {DB}", "nosuch.jpg", (),
     "collection"),
    ("gallery-enrol-text-bytes", f"gallery enrol people {{bad}}/notes.jpg -s x {DB}", "invalid_image", (),
     "collection"),
    ("gallery-enrol-empty-folder", f"gallery enrol people {{bad}}/empty -s x {DB}", "empty", (), "collection"),
    ("gallery-enrol-flat-folder", f"gallery enrol people {{bad}}/one {DB}", "--subject", (), "collection"),
    ("gallery-enrol-quality-above-one", f"gallery enrol people {{bad}}/one -s x --min-quality 2 {DB}",
     "min_quality", (), "collection"),
    ("gallery-search-truncated-jpeg", f"gallery search people {{bad}}/truncated.jpg {DB}", "truncated_image", (),
     "collection"),
    ("gallery-search-k-zero", f"gallery search people {{obama}} -k 0 {DB}", "k is", (), "collection"),
    ("gallery-search-fpir-zero", f"gallery search people {{obama}} --fpir 0 {DB}", "fpir", (), "collection"),
    ("gallery-search-unknown-aggregate", f"gallery search people {{obama}} --aggregate median {DB}", "median", (),
     "collection"),
    ("gallery-search-threshold-above-one", f"gallery search people {{obama}} --threshold 5 {DB}", "threshold",
     (), "collection"),
    ("gallery-list-negative-limit", f"gallery list people --limit -1 {DB}", "limit", (), "collection"),
    ("gallery-list-not-a-database", "gallery list --db {bad}/notes.jpg", "database", (), None),
    ("gallery-list-missing-database", f"gallery list {DB}", "no gallery database", ("g.db",), None),
    ("album-people-missing-database", f"album people -a trip {DB}", "no album database", ("g.db",), None),
    ("admin-tenant-list-missing-database", f"admin tenant list {DB}", "no service database", ("g.db",), None),
    ("admin-usage-missing-database", f"admin usage {DB}", "no service database", ("g.db",), None),
    ("gallery-rename-unknown-subject", f"gallery rename people nobody somebody {DB}", "nobody", (), "collection"),
    ("gallery-merge-unknown-collection", f"gallery merge nosuch a b {DB}", "nosuch", (), "collection"),
    ("gallery-delete-unknown-collection", f"gallery delete nosuch -y {DB}", "nosuch", (), "collection"),
    ("gallery-export-unknown-collection", f"gallery export nosuch {{tmp}}/out.parquet {DB}", "nosuch",
     ("out.parquet",), "collection"),
    ("gallery-import-not-parquet", f"gallery import {{bad}}/notes.jpg {DB}", "notes.jpg", (), None),
    ("gallery-reembed-unknown-pack", f"gallery reembed people -p nosuch {DB}", "unknown_pack", (), "collection"),
    # album
    ("album-scan-missing-folder", f"album scan {{tmp}}/photos -a trip {FAST} {DB}", "photos", ("g.db",), None),
    ("album-scan-empty-folder", f"album scan {{bad}}/empty -a trip {FAST} {DB}", "no photos", (), None),
    ("album-people-unknown-album", f"album people -a nosuch {DB}", "nosuch", (), "collection"),
    ("album-people-zero-faces", f"album people -a trip --min-faces 0 {DB}", "min_faces", (), "album"),
    ("album-show-unknown-person", f"album show nobody -a trip --sheet {{tmp}}/sheet.png {DB}", "nobody",
     ("sheet.png",), "album"),
    ("album-show-sheet-not-an-image", f"album show unsorted -a trip --sheet {{tmp}}/sheet.txt {DB}", "sheet.txt",
     ("sheet.txt",), "album"),
    ("album-name-unknown-album", f"album name p1 Bob -a nosuch {DB}", "nosuch", (), "collection"),
    ("album-merge-unknown-person", f"album merge p1 nobody -a trip {DB}", "nobody", (), "album"),
    ("album-move-unknown-face", f"album move 99 p1 -a trip {DB}", "99", (), "album"),
    ("album-split-unknown-faces", f"album split 98 99 -a trip {DB}", "not in album", (), "album"),
    ("album-reject-unknown-album", f"album reject 1 -a nosuch {DB}", "nosuch", (), "collection"),
    ("album-recluster-unknown-album", f"album recluster -a nosuch {DB}", "nosuch", (), "collection"),
    ("album-timeline-unknown-person", f"album timeline nobody -a trip {DB}", "nobody", (), "album"),
    ("album-together-unknown-album", f"album together p1 p2 -a nosuch {DB}", "nosuch", (), "collection"),
    ("album-erase-unknown-person", f"album erase nobody -a trip {DB}", "nobody", (), "album"),
    ("album-promote-unknown-album", f"album promote p1 people x -a nosuch {DB}", "nosuch", (), "collection"),
    # retail, kyc
    ("retail-missing-file", "retail run {tmp}/store.yaml --database sqlite:///{tmp}/r.db", "store.yaml", (), None),
    ("retail-broken-yaml", "retail run {bad}/broken.yaml --database sqlite:///{tmp}/r.db", "broken.yaml", (), None),
    ("retail-invalid-store", "retail run {bad}/nocameras.yaml --db sqlite:///{tmp}/r.db", "no camera",
     (), None),
    ("kyc-missing-document", f"{KYC} -d {{tmp}}/id.jpg -s {{cabin}} -c blink", "id.jpg", (), None),
    ("kyc-document-text-bytes", f"{KYC} -d {{bad}}/notes.jpg -s {{cabin}} -c blink", "invalid_image", (), None),
    ("kyc-selfie-text-bytes", f"{KYC} -d {{obama}} -s {{bad}}/notes.mp4 -c blink", "selfie", (), None),
    ("kyc-unknown-action", f"{KYC} -d {{obama}} -s {{cabin}} -c dance", "dance", (), None),
    # batch (all refused before Ray starts)
    ("batch-embed-missing-folder", "batch embed {tmp}/photos -o {tmp}/out", "photos", ("out",), None),
    ("batch-embed-empty-folder", "batch embed {bad}/empty -o {tmp}/out", "no images", ("out",), None),
    ("batch-embed-broken-manifest", f"batch embed {{bad}}/manifest.csv -o {{tmp}}/out {FAST}", "manifest.csv",
     ("out",), None),
    ("batch-embed-unknown-pack", "batch embed {bad}/one -o {tmp}/out -p nosuch", "unknown_pack", ("out",), None),
    ("batch-embed-batch-size-zero", f"batch embed {{bad}}/one -o {{tmp}}/out {FAST} --batch-size 0", "batch size",
     ("out",), None),
    ("batch-embed-out-holds-files", f"batch embed {{bad}}/one -o {{bad}}/two {FAST}", "no batch job wrote", (),
     None),
    ("batch-search-fpir-above-one", f"batch search {{bad}}/one people -o {{tmp}}/out --fpir 5 {DB}", "fpir",
     ("out",), "collection"),
    ("batch-enrol-flat-folder", f"batch enrol {{bad}}/one people {FAST} {DB}", "subject", (), "collection"),
    ("batch-enrol-quality-above-one", f"batch enrol {{bad}} people {FAST} --min-quality 2 {DB}", "min_quality", (),
     "collection"),
    ("batch-search-unknown-collection", f"batch search {{bad}}/one nosuch -o {{tmp}}/out {DB}", "nosuch", ("out",),
     "collection"),
    ("batch-dedupe-negative-distance", "batch dedupe {bad}/one -o {tmp}/out --max-distance -1", "max_distance",
     ("out",), None),
    # models, admin
    ("models-info-unknown-pack", "models info nosuch", "unknown_pack", (), None),
    ("models-fetch-unknown-pack", "models fetch nosuch", "unknown_pack", (), None),
    ("admin-tenant-list-not-a-database", "admin tenant list --db sqlite:///{bad}/notes.jpg", "database", (), None),
    ("admin-tenant-create-negative-quota", f"admin tenant create acme --quota -5 {DB}", "quota", (), None),
    ("admin-tenant-create-huge-quota", f"admin tenant create acme --quota 99999999999999999999999 {DB}", "quota",
     (), None),
    ("admin-tenant-update-quota-and-unlimited", f"admin tenant update acme --quota 5 --unlimited {DB}", "not both",
     (), "tenant"),
    ("admin-tenant-update-unknown", f"admin tenant update nosuch --name x {DB}", "nosuch", (), "tenant"),
    ("admin-tenant-delete-unknown", f"admin tenant delete nosuch --yes {DB}", "nosuch", (), "tenant"),
    ("admin-key-create-zero-rate", f"admin key create acme --scope read --rate 0 {DB}", "rate", (), "tenant"),
    ("admin-key-create-zero-burst", f"admin key create acme --scope read --burst 0 {DB}", "burst", (), "tenant"),
    ("admin-key-create-infinite-rate", f"admin key create acme --scope read --rate 1e400 {DB}", "rate", (), "tenant"),
    ("admin-key-create-huge-burst", f"admin key create acme --scope read --burst 99999999999 {DB}", "burst", (),
     "tenant"),
    ("admin-key-create-unknown-scope", f"admin key create acme --scope everything {DB}", "everything", (), "tenant"),
    ("admin-key-list-unknown-tenant", f"admin key list nosuch {DB}", "nosuch", (), "tenant"),
    ("admin-key-revoke-unknown", f"admin key revoke 0123456789ab {DB}", "0123456789ab", (), "tenant"),
    ("admin-key-rotate-unknown", f"admin key rotate 0123456789ab {DB}", "0123456789ab", (), "tenant"),
    ("admin-usage-bad-date", f"admin usage --from yesterday {DB}", "yesterday", (), None),
]


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, examples: Path) -> Path:
    """One folder of bad inputs (and the few good photos some commands need beside them)."""
    folder = tmp_path_factory.mktemp("bad")
    photos = examples / "tests/test_images"
    for name in ("notes.jpg", "notes.png", "notes.mp4"):
        (folder / name).write_text("not an image, nor a video: a note\n")
    (folder / "truncated.jpg").write_bytes((photos / "obama.jpg").read_bytes()[:300])
    (folder / "empty").mkdir()
    for sub, names in (("one", ["obama.jpg"]), ("two", ["obama.jpg", "biden.jpg"])):
        (folder / sub).mkdir()
        for name in names:
            (folder / sub / name).write_bytes((photos / name).read_bytes())
    (folder / "broken.yaml").write_text("cameras: [\n  - source: door.mp4\n    stride: }\n")
    (folder / "nocameras.yaml").write_text("id: shop\ncameras: []\n")
    (folder / "pairs.csv").write_text("image_a,image_b,same\na.jpg,b.jpg,maybe\n")
    (folder / "manifest.csv").write_text('path,subject\n"unterminated.jpg,alice\n')
    return folder


@pytest.mark.parametrize(("command", "says", "leaves", "setup"), [pytest.param(*case[1:], id=case[0])
                                                                  for case in CASES])
def test_bad_input_is_one_error_line(command: str, says: str, leaves: tuple[str, ...], setup: str | None,
                                     bad: Path, shared: Path, examples: Path, tmp_path: Path) -> None:
    places = {"tmp": tmp_path, "bad": bad, "obama": examples / "tests/test_images/obama.jpg",
              "obama2": examples / "tests/test_images/obama2.jpg", "lfw": shared / "data/lfw",
              "video": shared / "data/videos/one-by-one-person-detection.mp4",
              "cabin": shared / "data/videos/driver_night_cabin.mp4"}
    if setup is not None:
        prepared = SETUPS[setup](tmp_path, bad)
        if prepared is not None:
            done = runner.invoke(app, prepared)
            assert done.exit_code == 0, done.output
    result = runner.invoke(app, shlex.split(command.format(**places)))

    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = _error_lines(result.stderr)
    assert len(lines) == 1, result.output
    assert [line for line in result.stderr.splitlines() if line.strip()][-1] == lines[0], result.stderr  # unwrapped
    assert says in lines[0], lines[0]
    assert not [name for name in leaves if (tmp_path / name).exists()], sorted(p.name for p in tmp_path.iterdir())
