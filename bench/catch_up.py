"""The first search of process A after process B enrolled one face in a collection A has loaded
(two galleries on one SQLite file and one index folder), at several collection sizes: the catch-up
that reads the faces stamped since A's revision (now) against the full diff of every face id
(before; timed here by setting the collection's ``removed_revision`` ahead, the path a removal
since A's revision still takes). Same run, same database.

    python bench/catch_up.py --sizes 30k 300k

Columns: milliseconds of A's search (median of ``--repeats``, each after one enrolment by B), of a
search with nothing to catch up, and of the catch-up alone (``IndexCache._catch_up``). The index is
the exact one (``--ann-min-faces`` above the sizes): the catch-up's cost is the database's, the same
for the template index.

    python bench/catch_up.py --sizes 300k --concurrent 20 [--url postgresql+psycopg://...]

One gallery instead, for ``--concurrent`` seconds: a thread enrolling one face at a time and one
searching. Counts the searches whose collection row was read before the enrolling thread moved the
index in memory on (ahead: used as it is; before, every face id was read and diffed) and the
catch-ups by path, with their median milliseconds. ``--url``: an empty database (its collection "c"
is deleted at the end); a temporary SQLite file by default.

    python bench/catch_up.py --sizes 50k --concurrent 20 --backend milvus

The same with the vectors in Milvus Lite (a temporary file; ``FACEATLAS_VECTOR_BACKEND=milvus``),
whose catch-up is always the diff of every face id, read from Milvus and from the database.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.orm import Session

from faceatlas.engine import Embedding, get_pack, l2_normalize
from faceatlas.gallery import Gallery
from faceatlas.gallery.index import IndexState, VectorIndex
from faceatlas.gallery.milvus_sync import MilvusIndexCache
from faceatlas.gallery.models import Collection
from faceatlas.gallery.sync import IndexCache
from faceatlas.settings import StorageSettings

_PER_SUBJECT = 1000  # faces per subject (one transaction each) while the collection is filled


def parse_size(text_size: str) -> int:
    multiplier = {"k": 1_000, "m": 1_000_000}.get(text_size[-1].lower(), 1)
    return int(float(text_size.rstrip("kKmM")) * multiplier)


def _timed_search(gallery: Gallery, query: Embedding) -> float:
    start = time.perf_counter()
    gallery.search("c", query, k=5, rank_only=True)
    return (time.perf_counter() - start) * 1000


def run(size: int, args: argparse.Namespace) -> tuple[float, float, float, float, float]:
    """Median ms at ``size`` faces: search now, search before, search with nothing to catch up, and
    the catch-up alone now and before."""
    pack = get_pack("scrfd-mbf")
    rid = pack.recognizer_id
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'g.db'}"
        options = {"index_dir": Path(folder) / "indexes", "ann_min_faces": args.ann_min_faces}
        with Gallery.open(url, **options) as a, Gallery.open(url, **options) as b:
            _fill(b, size, rng)
            query = Embedding(l2_normalize(rng.standard_normal((1, 128)).astype(np.float32))[0], rid)
            a.search("c", query, k=5, rank_only=True)  # A loads the collection (built from the database)
            idle = statistics.median(_timed_search(a, query) for _ in range(args.repeats))
            catch_ups: list[float] = []
            real_catch_up = a._indexes._catch_up  # type: ignore[union-attr]

            def timed_catch_up(*call: object) -> object:
                start = time.perf_counter()
                done = real_catch_up(*call)  # type: ignore[arg-type]
                catch_ups.append((time.perf_counter() - start) * 1000)
                return done

            a._indexes._catch_up = timed_catch_up  # type: ignore[union-attr,method-assign]

            def after_one_enrolment() -> float:
                b.add_embeddings("c", "late", l2_normalize(rng.standard_normal((1, 128)).astype(np.float32)),
                                 recognizer_id=rid)
                return _timed_search(a, query)

            new = statistics.median(after_one_enrolment() for _ in range(args.repeats))
            new_catch_up, catch_ups[:] = statistics.median(catch_ups), []
            with b.engine.begin() as connection:  # a removal "since" every revision: the full diff
                connection.execute(text("UPDATE collections SET removed_revision = 1000000000"))
            old = statistics.median(after_one_enrolment() for _ in range(args.repeats))
            old_catch_up = statistics.median(catch_ups)
            with b.engine.begin() as connection:
                connection.execute(text("UPDATE collections SET removed_revision = 0"))
    return new, old, idle, new_catch_up, old_catch_up


def _fill(gallery: Gallery, size: int, rng: np.random.Generator) -> None:
    rid = get_pack("scrfd-mbf").recognizer_id
    gallery.create_collection("c", get_pack("scrfd-mbf"))
    for start in range(0, size, _PER_SUBJECT):
        count = min(_PER_SUBJECT, size - start)
        gallery.add_embeddings("c", f"s{start // _PER_SUBJECT}",
                               l2_normalize(rng.standard_normal((count, 128)).astype(np.float32)), recognizer_id=rid)


def _counted(cache: IndexCache, paths: dict[str, list[float]]) -> None:
    """Instrument ``cache`` (this run's): each get() whose row is behind the copy in memory counts as
    ahead; each catch-up is timed under its path."""
    real_get, real_catch_up = cache.get, cache._catch_up

    def get(session: Session, collection: Collection) -> VectorIndex:
        state = cache._states.get(collection.id)
        if state is not None and state.revision > collection.revision:
            paths["ahead (get)"].append(0.0)
        return real_get(session, collection)

    def catch_up(session: Session, collection: Collection, state: IndexState | None) -> tuple[IndexState, bool]:
        fast = state is not None and collection.removed_revision <= state.revision <= collection.revision
        start = time.perf_counter()
        done = real_catch_up(session, collection, state)
        paths["catch-up: faces since" if fast else "catch-up: every face id"].append(
            (time.perf_counter() - start) * 1000)
        return done

    cache.get, cache._catch_up = get, catch_up  # type: ignore[method-assign]


def _counted_milvus(cache: MilvusIndexCache, paths: dict[str, list[float]]) -> None:
    """:func:`_counted` for the Milvus backend's cache: its catch-up is always every face id."""
    real_get, real_catch_up = cache.get, cache._catch_up

    def get(session: Session, collection: Collection) -> VectorIndex:
        with cache._lock:  # read as get() reads it: not halfway through the enrolling thread's applied()
            state = cache._states.get(collection.id)
            if state is not None and state.revision > collection.revision:
                paths["ahead (get)"].append(0.0)
            return real_get(session, collection)

    def catch_up(session: Session, collection: Collection, index: object) -> object:
        start = time.perf_counter()
        done = real_catch_up(session, collection, index)  # type: ignore[arg-type]
        # the enrolling thread's applied() catches up a copy it left out (one put back at an older revision)
        where = "" if threading.current_thread().name == "search" else " (enrolling thread)"
        paths[f"catch-up: every face id{where}"].append((time.perf_counter() - start) * 1000)
        return done

    cache.get, cache._catch_up = get, catch_up  # type: ignore[method-assign,assignment]


def concurrent(size: int, args: argparse.Namespace, console: Console) -> None:
    """One gallery: a thread enrolling, one searching, for ``args.concurrent`` seconds."""
    rid = get_pack("scrfd-mbf").recognizer_id
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        url = args.url or f"sqlite:///{Path(folder) / 'g.db'}"
        storage = StorageSettings(database_url=url, vector_backend=args.backend,
                                  milvus_uri=str(Path(folder) / "milvus.db"))
        with Gallery.open(url, index_dir=Path(folder) / "indexes", ann_min_faces=args.ann_min_faces,
                          storage_settings=storage) as gallery:
            _fill(gallery, size, rng)
            query = Embedding(l2_normalize(rng.standard_normal((1, 128)).astype(np.float32))[0], rid)
            gallery.search("c", query, k=5, rank_only=True)
            paths: dict[str, list[float]] = defaultdict(list)
            if isinstance(gallery._indexes, MilvusIndexCache):
                _counted_milvus(gallery._indexes, paths)
            else:
                assert isinstance(gallery._indexes, IndexCache), "the FAISS backend's cache"
                _counted(gallery._indexes, paths)
            stop = threading.Event()
            searches: list[float] = []
            enrolments = [0]

            def enrol() -> None:
                while not stop.is_set():
                    gallery.add_embeddings("c", f"w{enrolments[0] % 50}",
                                           l2_normalize(rng.standard_normal((1, 128)).astype(np.float32)),
                                           recognizer_id=rid)
                    enrolments[0] += 1

            def search() -> None:
                while not stop.is_set():
                    searches.append(_timed_search(gallery, query))

            threads = [threading.Thread(target=work, name=work.__name__) for work in (enrol, search)]
            for thread in threads:
                thread.start()
            time.sleep(args.concurrent)
            stop.set()
            for thread in threads:
                thread.join()
            if args.url:
                gallery.delete_collection("c")
    console.print(f"{args.backend}, {size:,} faces, {args.concurrent:g} s: {enrolments[0]} enrolments, "
                  f"{len(searches)} searches "
                  f"(median {statistics.median(searches):.1f} ms, p95 {np.percentile(searches, 95):.1f} ms)")
    table = Table(title="gets of the searching thread, catch-ups")
    for column in ("path", "count", "median ms", "total ms"):
        table.add_column(column, justify="right")
    for name in ("ahead (get)", "catch-up: faces since", "catch-up: every face id",
                 "catch-up: every face id (enrolling thread)"):
        times = paths.get(name, [])
        table.add_row(name, str(len(times)), f"{statistics.median(times):.1f}" if times else "-",
                      f"{sum(times):.0f}" if times and name != "ahead (get)" else "-")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["30k", "300k"], help="collection sizes, e.g. 30k 300k")
    parser.add_argument("--repeats", type=int, default=7, help="enrolments by B (and searches by A) per way")
    parser.add_argument("--ann-min-faces", type=int, default=10**9)
    parser.add_argument("--concurrent", type=float, default=0,
                        help="seconds of one gallery enrolling and searching in two threads (the catch-ups counted)")
    parser.add_argument("--backend", choices=["faiss", "milvus"], default="faiss",
                        help="with --concurrent: where the vectors are searched (milvus: Milvus Lite, a temp file)")
    parser.add_argument("--url", help="with --concurrent: the database (an empty one); a temporary SQLite file else")
    args = parser.parse_args()
    console = Console(width=150)
    if args.concurrent:
        for size in (parse_size(s) for s in args.sizes):
            concurrent(size, args, console)
        return
    table = Table(title="A's first search after B enrolled 1 face (SQLite, median ms)")
    for column in ("faces", "search: full id diff (before)", "search: faces since (now)", "search: nothing new",
                   "catch-up before", "catch-up now"):
        table.add_column(column, justify="right")
    for size in (parse_size(s) for s in args.sizes):
        new, old, idle, new_catch_up, old_catch_up = run(size, args)
        table.add_row(f"{size:,}", f"{old:.1f}", f"{new:.1f}", f"{idle:.1f}", f"{old_catch_up:.1f}",
                      f"{new_catch_up:.2f}")
        console.log(f"done {size:,}")
    console.print(table)


if __name__ == "__main__":
    main()
