"""HEIC/HEIF (iPhone photos): nothing here decodes them. One given explicitly or uploaded is refused
saying what it is and what to do, and so is each one in a folder given to a command that reports
its inputs one by one (detect skipped them without a word); `album scan` does not take them from a
library (it failed on each one as "not an image (unrecognised format)")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceatlas.cli.main import app
from faceatlas.engine import load_image
from faceatlas.errors import InvalidImage

# the ISO-BMFF file-type box an iPhone's HEIC starts with (major brand heic, compatible mif1, heic)
FTYP_HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"


def heic_like(photo: Path, target: Path) -> Path:
    """A file that opens as an iPhone HEIC does (its ftyp box), carrying a real photo's bytes."""
    target.write_bytes(FTYP_HEIC + b"\x00\x00\x00\x08free" + photo.read_bytes())
    return target


@pytest.fixture
def photo(shared: Path) -> Path:
    return sorted((shared / "data" / "lfw" / "images" / "Tony_Blair").glob("*.jpg"))[0]


def test_a_heic_given_or_uploaded_is_refused_saying_so(photo: Path, tmp_path: Path) -> None:
    heic = heic_like(photo, tmp_path / "IMG_0001.heic")
    result = CliRunner().invoke(app, ["detect", str(heic), "--pack", "scrfd-mbf"])
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert "HEIC/HEIF" in text and "convert it to JPEG" in text, text
    with pytest.raises(InvalidImage, match="HEIC/HEIF"):  # an upload: bytes without a name
        load_image(heic.read_bytes())
    renamed = shutil.copy(heic, tmp_path / "IMG_0001.bin")
    with pytest.raises(InvalidImage, match="HEIC/HEIF"):  # by its content, whatever its name
        load_image(renamed)


def test_album_scan_takes_no_heic_from_a_folder(photo: Path, tmp_path: Path, monkeypatch) -> None:
    import json

    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'album.db'}")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    library = tmp_path / "phone"
    library.mkdir()
    shutil.copy(photo, library / "IMG_0001.jpg")
    heic_like(photo, library / "IMG_0002.HEIC")
    result = CliRunner().invoke(app, ["album", "scan", str(library), "--pack", "scrfd-mbf", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["photos"] == 1 and report["failed"] == []


def test_a_folder_walk_takes_every_format_decoded_and_reports_each_heic(photo: Path, tmp_path: Path) -> None:
    """`detect FOLDER` skipped .avif, .gif and .jfif files, which decode when named, and skipped a
    .heic without a word while one named is refused saying to convert it."""
    import json

    from PIL import Image, features

    from faceatlas.engine import IMAGE_SUFFIXES

    folder = tmp_path / "fold"
    folder.mkdir()
    image = Image.open(photo).convert("RGB")
    formats = {"b.gif": "GIF", "c.jfif": "JPEG", "d.JPG": "JPEG"}
    if features.check_module("avif"):
        formats["a.avif"] = "AVIF"
    for name, kind in formats.items():
        image.save(folder / name, format=kind)
    heic_like(photo, folder / "e.heic")
    assert {".gif", ".jfif"} <= IMAGE_SUFFIXES
    result = CliRunner().invoke(app, ["detect", str(folder), "--pack", "scrfd-mbf", "--json"])
    assert result.exit_code == 1, result.output  # the HEIC failed, the others answered
    results = {Path(r["image"]).name: r for r in json.loads(result.stdout)["results"]}
    assert set(results) == {*formats, "e.heic"}
    assert all(len(results[name]["faces"]) == 1 for name in formats), results
    assert results["e.heic"]["error"] == "invalid_image" and "convert it to JPEG" in results["e.heic"]["message"]
