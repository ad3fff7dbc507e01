"""Album fixtures: small libraries of real LFW photos copied into a temporary folder."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from faceatlas.apps.albums import Album

PEOPLE = ("George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")


@pytest.fixture(scope="session")
def lfw(shared: Path) -> Path:
    return shared / "data" / "lfw" / "images"


def copy_people(lfw: Path, folder: Path, people: tuple[str, ...], per_person: int, skip: int = 0) -> Path:
    for person in people:
        target = folder / person
        target.mkdir(parents=True, exist_ok=True)
        for photo in sorted((lfw / person).glob("*.jpg"))[skip:skip + per_person]:
            shutil.copy(photo, target / photo.name)
    return folder


def with_date(source: Path, target: Path, when: datetime) -> Path:
    """A copy of ``source`` with EXIF DateTimeOriginal ``when`` (a new file: a new content hash)."""
    with Image.open(source) as image:
        exif = Image.Exif()
        exif.get_ifd(0x8769)[36867] = when.strftime("%Y:%m:%d %H:%M:%S")
        image.save(target, exif=exif, quality=95)
    return target


@pytest.fixture
def library(lfw: Path, tmp_path: Path) -> Path:
    """Four people, four photos each (nested folders)."""
    return copy_people(lfw, tmp_path / "photos", PEOPLE, 4)


@pytest.fixture
def album(tmp_path: Path, fast_analyzer, new_database) -> Iterator[Album]:
    with new_database("sqlite", tmp_path) as url, Album.open("family", fast_analyzer, url,
                                                             index_dir=tmp_path / "indexes", create=True) as opened:
        yield opened


def main_person(album: Album, folder: str) -> str:
    """The person holding most faces of the photos from ``folder`` (LFW photos have bystanders)."""
    counts = Counter(f.person for p in album.people() for f in album.faces(p.id) if f"/{folder}/" in f.source)
    return counts.most_common(1)[0][0] or ""


def faces_of_folder(album: Album, person: str, folder: str) -> list[int]:
    return [f.id for f in album.faces(person) if f"/{folder}/" in f.source]
