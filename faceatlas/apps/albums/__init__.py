"""Photo albums: a library's faces grouped into people, incrementally, under the user's corrections.

:class:`Album` (open, scan, people, faces, timeline, together, contact sheet, name, merge, move,
split, reject, erase, delete a face or a photo, promote, recluster; :func:`list_photos` is what a scan of a
folder adds, checked before an album is made; :func:`erase_album` erases one album
whole, :func:`erase_owner` every album of an owner);
the clustering itself is :mod:`.clustering` (batch :func:`cluster`, incremental :func:`assign`)
and its accuracy :func:`score`.
"""

from faceatlas.apps.albums.album import (
    ALBUM_FAR,
    CHUNK,
    PHOTO_ID_MAX,
    UNSORTED,
    album_pack,
    erase_album,
    erase_owner,
    gate,
    list_albums,
    person_number,
)
from faceatlas.apps.albums.clustering import Placement, assign, cluster
from faceatlas.apps.albums.corrections import Album
from faceatlas.apps.albums.db import migrate
from faceatlas.apps.albums.metrics import Scores, score
from faceatlas.apps.albums.photos import find_photos, list_photos, taken_at
from faceatlas.apps.albums.types import (
    AlbumFace,
    ContactSheet,
    Erasure,
    PersonInfo,
    PhotoInfo,
    PhotoListing,
    ReclusterReport,
    ScanReport,
)

__all__ = [
    "ALBUM_FAR",
    "CHUNK",
    "PHOTO_ID_MAX",
    "UNSORTED",
    "Album",
    "AlbumFace",
    "ContactSheet",
    "Erasure",
    "PersonInfo",
    "Placement",
    "PhotoInfo",
    "PhotoListing",
    "ReclusterReport",
    "ScanReport",
    "Scores",
    "album_pack",
    "assign",
    "cluster",
    "erase_album",
    "erase_owner",
    "find_photos",
    "gate",
    "list_albums",
    "list_photos",
    "migrate",
    "person_number",
    "score",
    "taken_at",
]
