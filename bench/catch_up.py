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
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from faceatlas.engine import Embedding, get_pack, l2_normalize
from faceatlas.gallery import Gallery

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
            a.create_collection("c", pack)
            for start in range(0, size, _PER_SUBJECT):
                count = min(_PER_SUBJECT, size - start)
                b.add_embeddings("c", f"s{start // _PER_SUBJECT}",
                                 l2_normalize(rng.standard_normal((count, 128)).astype(np.float32)), recognizer_id=rid)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["30k", "300k"], help="collection sizes, e.g. 30k 300k")
    parser.add_argument("--repeats", type=int, default=7, help="enrolments by B (and searches by A) per way")
    parser.add_argument("--ann-min-faces", type=int, default=10**9)
    args = parser.parse_args()
    console = Console(width=150)
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
