"""The batch jobs that end in the gallery or compare images: enrol (per-person folders or a
manifest's subjects), search (1:N for every face, the open-set cut) and dedupe (near-duplicate
photos by perceptual hash). Faces are embedded on the Ray workers (:func:`embed_source`); the
gallery is written and searched from the driver, the one process that holds its connection."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from faceatlas.batch.jobs import BatchOptions, BatchReport, Progress, _absolute, check_cluster, embed_source
from faceatlas.batch.output import LOCK, claim, hold, out_filesystem, read_faces, read_images
from faceatlas.batch.source import Source, resolve_source
from faceatlas.batch.storage import storage_errors
from faceatlas.engine import DEFAULT_FPIR, Cut, Embedding, get_pack
from faceatlas.errors import InvalidArgument, ModelMismatch, NotFound
from faceatlas.gallery import Gallery, check_id, check_k, enrolled_photos, photo_source

DEFAULT_MAX_DISTANCE = 4
"""Bits (of 64) two perceptual hashes may differ by for near-duplicates. Measured on LFW (same
framing, often the same person): a copy resized to 75 % and re-encoded as JPEG quality 60 differs
by 0-3 bits (300 photos, mean 0.5); the nearest other photo of 2,567 by 5 or more (1st percentile
9, median 15): at 4 none of them is grouped, at 6 two are, at 8 seventeen."""


def _vectors(faces: pa.Table) -> np.ndarray:
    column = faces.column("embedding").combine_chunks()
    if len(column) == 0:
        return np.zeros((0, 0), np.float32)
    flat = np.asarray(column.flatten().to_numpy(zero_copy_only=False), np.float32)
    return flat.reshape(len(column), -1)


WORK_PREFIX = "faceatlas-enrol-"
"""The temporary folders of `batch enrol` without ``--work`` (embeddings: biometric data)."""
STALE_SECONDS = 60.0


def remove_stale_work(folder: str | None = None) -> list[str]:
    """Remove the temporary folders of earlier `batch enrol` runs that no job holds any more (a
    job killed with SIGKILL runs no ``finally``: its folder of embeddings stayed for good) from
    ``folder`` (default: the temporary folder); the paths removed. Only this user's folders,
    older than a minute (a job holds its own from the moment it made it), whose ``_lock`` is free."""
    removed: list[str] = []
    for path in sorted(Path(folder or tempfile.gettempdir()).glob(f"{WORK_PREFIX}*")):
        try:
            info = path.lstat()
            if (not path.is_dir() or path.is_symlink() or info.st_uid != os.getuid()
                    or time.time() - info.st_mtime < STALE_SECONDS):
                continue
            descriptor = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a running job's
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
        except OSError:
            continue
        finally:
            os.close(descriptor)
    return removed


GalleryOpener = Callable[[], Gallery]
"""What opens the gallery of a job (``lambda: Gallery.open(db)``): called once everything the job
was given is valid, so a job refused makes no database."""


@contextmanager
def _opened(gallery: Gallery | GalleryOpener) -> Iterator[Gallery]:
    """``gallery``, or the one the opener opens, closed at the end."""
    if isinstance(gallery, Gallery):
        yield gallery
        return
    with gallery() as opened:
        yield opened


def _check_given(collection: str, options: BatchOptions) -> None:
    """What a job on ``collection`` can check before the gallery is opened: the name, and the pack
    of ``--pack`` (:class:`~faceatlas.engine.UnknownPack`)."""
    check_id(collection, "collection name")
    if options.pack:
        get_pack(options.pack, options.settings)


def _pack_for(gallery: Gallery, collection: str, options: BatchOptions, *, create: bool) -> str:
    """The pack of the job: the collection's (created with ``options.pack`` when ``create``); a
    ``--pack`` of another embedding space than the collection's is :class:`ModelMismatch`."""
    try:
        info = gallery.get_collection(collection)
    except NotFound:
        if not create:
            raise
        info = gallery.create_collection(collection, get_pack(options.pack, options.settings))
    if options.pack and get_pack(options.pack, options.settings).recognizer_id != info.recognizer_id:
        raise ModelMismatch(f"collection '{collection}' holds {info.recognizer_id} embeddings, "
                            f"pack {options.pack} makes others")
    return info.pack_name


def _enrolled_sources(gallery: Gallery, collection: str) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    after = None
    while True:
        page = gallery.list_faces(collection, limit=1000, after=after)
        for face in page.items:
            found |= {(face.subject, photo) for photo in enrolled_photos([face.source])}
        if page.next_cursor is None:
            return found
        after = page.next_cursor


def enrol(source: str, collection: str, gallery: Gallery | GalleryOpener, options: BatchOptions | None = None,
          on_progress: Progress | None = None, *, work: str | None = None, all_faces: bool = False,
          min_quality: float = 0.0, on_enrolled: Callable[[int], None] | None = None) -> BatchReport:
    """Enrol every image of ``source`` under its subject (its folder's name, or the manifest's
    ``subject``): the largest face of each image (or all), when its quality reaches
    ``min_quality``. The collection is created with the pack when missing. Faces are embedded on
    the workers into ``work`` (kept and resumable when given, else a temporary folder, removed at
    the end, however the job ends, and by the next job after a SIGKILL); an image
    already enrolled in its subject (same source) is not enrolled twice, so a restart adds only
    what is missing. ``gallery``: the gallery, or what opens it (:data:`GalleryOpener`), opened
    once every argument, the source and its subjects are checked: a job refused makes no database
    (``--min-quality 5`` made one, with its folders). ``on_enrolled``: called with the faces
    enrolled so far after each subject's are (the faces are enrolled on the driver once every image
    is embedded: a job stopped before has enrolled none, whatever its progress said)."""
    options = options or BatchOptions()
    if not 0.0 <= min_quality <= 1.0:  # also NaN
        raise InvalidArgument(f"min_quality is a face quality from 0 to 1, not {min_quality:g}")
    _check_given(collection, options)
    if work is not None:
        work = _absolute(work, "--work")  # an empty one was a temporary folder, removed at the end
    src = resolve_source(source)
    if not src.subjects:  # nothing could be enrolled: said before the collection is made or Ray started
        raise InvalidArgument(f"{source}: no image has a subject: give per-person folders (SOURCE/<subject>/*.jpg) "
                              "or a manifest with a 'subject' column")
    first_of: dict[str, str] = {}
    for path, named in sorted(src.subjects.items()):
        first_of.setdefault(named, path)
    for named, path in first_of.items():  # every id, before anyone is enrolled ('Ann Lee' stopped a job midway)
        check_id(named, f"subject id (of {path})")
    check_cluster(options)  # before the database and the collection are made
    with _opened(gallery) as opened:
        options.pack = _pack_for(opened, collection, options, create=True)
        if work is None:
            remove_stale_work()
        folder = work or tempfile.mkdtemp(prefix=WORK_PREFIX)
        try:
            with hold(_absolute(folder)):  # held until the faces are in the gallery, not only while embedded
                return _enrol(src, folder, collection, opened, options, on_progress, work=work,
                              all_faces=all_faces, min_quality=min_quality, on_enrolled=on_enrolled)
        finally:
            if work is None:
                shutil.rmtree(folder, ignore_errors=True)


def _enrol(src: Source, folder: str, collection: str, gallery: Gallery, options: BatchOptions,
           on_progress: Progress | None, *, work: str | None, all_faces: bool, min_quality: float,
           on_enrolled: Callable[[int], None] | None = None) -> BatchReport:
    """The faces of ``src`` embedded into ``folder`` (held), then enrolled in the gallery."""
    report = embed_source(src, folder, options, on_progress, kind="enrol")
    faces = read_faces(_absolute(folder))
    if min_quality > 0:
        faces = faces.filter(pc.greater_equal(faces.column("quality"), min_quality))
    if not all_faces:
        faces = faces.filter(pc.equal(faces.column("face"), 0))
    vectors = _vectors(faces)
    already = _enrolled_sources(gallery, collection)
    by_subject: dict[str, list[int]] = defaultdict(list)
    counts = {"enrolled": 0, "already_enrolled": 0, "no_subject": 0}
    for row, image_id in enumerate(faces.column("image_id").to_pylist()):
        subject = src.subjects.get(image_id)
        if subject is None:
            counts["no_subject"] += 1
        elif (subject, photo_source(image_id)) in already:  # by this door or by `gallery enrol`
            counts["already_enrolled"] += 1
        else:
            by_subject[subject].append(row)
    qualities = faces.column("quality").to_pylist()
    ids, recognizers = faces.column("image_id").to_pylist(), faces.column("recognizer_id").to_pylist()
    for subject, rows in sorted(by_subject.items()):
        enrolled = counts["enrolled"] + len(rows)
        try:
            gallery.add_embeddings(collection, subject, vectors[rows], recognizer_id=recognizers[rows[0]],
                                   qualities=[qualities[r] for r in rows],
                                   sources=[ids[r] for r in rows])  # the photo, as `gallery enrol` records it
            if on_enrolled:
                on_enrolled(enrolled)
        except BaseException:  # Ctrl-C, SIGTERM: it may land after the commit (the index's update, the return)
            if on_enrolled and _committed(gallery, collection, subject, ids[rows[0]]):
                on_enrolled(enrolled)  # the count told is what the gallery holds (it said 580 of 581)
            raise
        counts["enrolled"] = enrolled
    report.details = {**counts, "subjects": len(by_subject), "collection": collection, "pack": options.pack}
    if work is None:
        report.files = {}
    return report


def _committed(gallery: Gallery, collection: str, subject: str, photo: str) -> bool:
    """Whether ``photo`` is enrolled to ``subject`` (read back: an enrolment stopped by Ctrl-C may
    have committed its faces, which are one transaction: one photo tells); False when that cannot be read."""
    wanted = photo_source(photo)
    after = None
    try:
        while True:
            page = gallery.list_faces(collection, subject=subject, limit=1000, after=after)
            if any(wanted in enrolled_photos([face.source]) for face in page.items):
                return True
            if page.next_cursor is None:
                return False
            after = page.next_cursor
    except Exception:  # noqa: BLE001 - no subject (the enrolment made none), a database gone: not committed
        return False


def search(source: str, collection: str, gallery: Gallery | GalleryOpener, out: str,
           options: BatchOptions | None = None, on_progress: Progress | None = None, *, cut: Cut | None = None,
           k: int = 1) -> BatchReport:
    """1:N for every face of ``source`` against ``collection``: faces into ``out/faces``
    (resumable), then ``out/matches.parquet`` with one row per face and match (rank 1..k), or
    one row with no subject for a face nobody matches at the cut (default: the open-set
    threshold at :data:`DEFAULT_FPIR` for the collection's size). ``gallery``: the gallery, or
    what opens it (:data:`GalleryOpener`), opened once the arguments and the source are checked."""
    options = options or BatchOptions()
    check_k(k, "matches per face")  # refused before the images are embedded (it was after the whole job)
    out = _absolute(out)
    _check_given(collection, options)
    src = resolve_source(source)
    with _opened(gallery) as opened:
        options.pack = _pack_for(opened, collection, options, create=False)
        check_cluster(options)
        with storage_errors(out), hold(out, dataset=False):  # for the whole job: its faces, then its matches
            claim(out, "search", src.key or None)
            return _search(src, collection, opened, out, options, on_progress, cut=cut, k=k)


def _search(src: Source, collection: str, gallery: Gallery, out: str, options: BatchOptions,
            on_progress: Progress | None, *, cut: Cut | None, k: int) -> BatchReport:
    report = embed_source(src, f"{out}/faces", options, on_progress, kind="search")
    faces = read_faces(f"{out}/faces")
    vectors = _vectors(faces)
    chosen = cut or Cut(fpir=DEFAULT_FPIR)
    rows: dict[str, list] = {n: [] for n in ("image_id", "face", "box", "rank", "subject", "name", "similarity",
                                              "far_level")}
    known = 0
    for row, (image_id, face, box, recognizer) in enumerate(zip(
            faces.column("image_id").to_pylist(), faces.column("face").to_pylist(), faces.column("box").to_pylist(),
            faces.column("recognizer_id").to_pylist())):
        matches = gallery.search(collection, Embedding(vectors[row], recognizer), k=k, **chosen.search_options())
        known += bool(matches)
        for rank, match in enumerate(matches or [None], start=1):
            rows["image_id"].append(image_id)
            rows["face"].append(face)
            rows["box"].append(box)
            rows["rank"].append(rank if match else None)
            rows["subject"].append(match.external_id if match else None)
            rows["name"].append(match.name if match else None)
            rows["similarity"].append(match.similarity if match else None)
            rows["far_level"].append(match.far_level if match else None)
    fs, root = out_filesystem(out)
    with storage_errors(out):
        pq.write_table(pa.table(rows), f"{root}/matches.parquet", filesystem=fs)
    report.details = {"identified_faces": known, "unknown_faces": len(vectors) - known, "cut": chosen.describe()}
    report.files = {**report.files, "matches": f"{out}/matches.parquet"}
    return report


def duplicate_groups(hashes: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """Group 64-bit perceptual hashes (uint64) that differ by at most ``max_distance`` bits,
    transitively (FAISS binary range search, then connected components). Returns each hash's
    group label and its Hamming distance to the first member of its group."""
    count = len(hashes)
    if count == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int32)
    codes = np.ascontiguousarray(np.asarray(hashes, np.uint64).astype(">u8").view(np.uint8).reshape(count, 8))
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    limits, _, neighbours = index.range_search(codes, max_distance + 1)  # strictly below the radius
    bounds: np.ndarray = np.asarray(limits, np.int64)
    sources = np.repeat(np.arange(count), bounds[1:] - bounds[:-1])
    graph = coo_matrix((np.ones(len(neighbours)), (sources, neighbours)), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    first = {label: i for i, label in reversed(list(enumerate(labels)))}
    distance = np.asarray([(int(hashes[i]) ^ int(hashes[first[labels[i]]])).bit_count() for i in range(count)],
                          np.int32)
    return labels.astype(np.int64), distance


def dedupe(source: str, out: str, options: BatchOptions | None = None, on_progress: Progress | None = None, *,
           max_distance: int = DEFAULT_MAX_DISTANCE) -> BatchReport:
    """Near-duplicate photos of ``source``: every image is decoded and hashed on the workers (a
    64-bit DCT perceptual hash; no face analysis) into ``out/images`` (resumable), then groups of
    hashes within ``max_distance`` bits go to ``out/duplicates.csv`` (group, image_id, distance
    to the group's first image), groups of two or more only."""
    if not 0 <= max_distance <= 64:
        raise InvalidArgument(f"max_distance is 0 to 64 bits (of a 64-bit hash), not {max_distance}")
    out = _absolute(out)
    src = resolve_source(source)
    check_cluster(options or BatchOptions())
    with storage_errors(out), hold(out, dataset=False):  # for the whole job: its hashes, then its groups
        claim(out, "dedupe", src.key or None)
        return _dedupe(src, out, options, on_progress, max_distance=max_distance)


def _dedupe(src: Source, out: str, options: BatchOptions | None, on_progress: Progress | None, *,
            max_distance: int) -> BatchReport:
    report = embed_source(src, f"{out}/images", options, on_progress, faces=False, kind="dedupe")
    images = read_images(f"{out}/images").filter(pc.equal(pc.field("error"), ""))
    images = images.sort_by("image_id")
    labels, distance = duplicate_groups(images.column("phash").to_numpy(), max_distance)
    sizes = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    ids = images.column("image_id").to_pylist()
    members = sorted((int(labels[i]), ids[i], int(distance[i])) for i in range(len(ids)) if sizes[labels[i]] > 1)
    renumber = {label: n for n, label in enumerate(dict.fromkeys(m[0] for m in members))}
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["group", "image_id", "distance"])
    writer.writerows([renumber[g], i, d] for g, i, d in members)
    fs, root = out_filesystem(out)
    with storage_errors(out), fs.open_output_stream(f"{root}/duplicates.csv") as stream:
        stream.write(text.getvalue().encode())
    report.details = {"groups": len(renumber), "duplicate_images": len(members) - len(renumber),
                      "max_distance": max_distance, "hash": "pHash (OpenCV img_hash, 64-bit DCT)"}
    report.files = {"images": f"{out}/images", "errors": f"{out}/images/_errors.csv",
                    "duplicates": f"{out}/duplicates.csv"}
    return report

