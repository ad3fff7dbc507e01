"""Does projecting templates for the graph lose the right subject? Without any graph: for each query,
the rank of its exact top-1 face's template among all templates by *projected* cosine, for
several router widths. A rank below TEMPLATE_CANDIDATES is what the template index needs; what
the graph then misses is the graph's doing. Same synthetic faces as bench/gallery_search.py.
``--graphs`` also builds the router graph over the projected templates, float32 (FAISS
IndexHNSWFlat) against the gallery's 8-bit codes, and reports how often the true template is
among the TEMPLATE_CANDIDATES found, and the graph's own search time.

    python bench/router_projection.py --size 10M --dim 512 --router-dims 64 128
    python bench/router_projection.py --size 1M --dim 512 --router-dims 128 --graphs --ef-search 16 32 64 128
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import faiss
import numpy as np
from gallery_search import (
    FACES_PER_IDENTITY,
    BestFace,
    isotropic_model,
    parse_size,
    synthetic_faces,
    synthetic_queries,
    timed,
)
from rich.console import Console
from rich.table import Table

from faceatlas.engine import l2_normalize
from faceatlas.gallery.index import (
    HNSW_CONNECTIVITY,
    HNSW_EXPANSION_ADD,
    TEMPLATE_CANDIDATES,
    HNSWIndex,
    principal_axes,
)

_FIT_TEMPLATES = 200_000  # the bench's index fits its projection on its first add: one chunk's templates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1M")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--router-dims", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--graphs", action="store_true", help="also build the router graphs, float32 and 8-bit")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[16, 32, 64, 128])
    args = parser.parse_args()
    size, console = parse_size(args.size), Console(width=120)
    model = isotropic_model(args.dim)
    queries = synthetic_queries(size, model, args.queries)
    best = BestFace(len(queries))
    templates, offset, start = [], 0, time.perf_counter()
    for faces, _ in synthetic_faces(size, model):
        sims = queries @ faces.T
        top = sims.argmax(1)
        best.update(sims[np.arange(len(queries)), top], top + offset)
        templates.append(l2_normalize(faces.reshape(-1, FACES_PER_IDENTITY, args.dim).sum(1)))
        offset += len(faces)
    console.log(f"{size:,} faces generated and scanned in {time.perf_counter() - start:.0f}s")
    templates_all = np.concatenate(templates)
    own = best.face // FACES_PER_IDENTITY
    graphs: list[list[str]] = []
    table = Table(title=f"{size:,} x {args.dim}-d isotropic: rank of the true template, no graph")
    for column in ("router dims", "rank 0", f"< {TEMPLATE_CANDIDATES}", "< 64", "< 256"):
        table.add_column(column, justify="right")
    for width in [args.dim, *args.router_dims]:
        if width == args.dim:
            routed, asked = templates_all, queries
        else:
            axes = principal_axes(templates_all[:_FIT_TEMPLATES], width)
            routed, asked = l2_normalize(templates_all @ axes), l2_normalize(queries @ axes)
        rank = np.empty(len(asked), np.int64)
        for row in range(0, len(asked), 100):  # (100, templates) similarities at a time
            sims = asked[row: row + 100] @ routed.T
            rank[row: row + 100] = (sims > sims[np.arange(len(sims)), own[row: row + 100]][:, None]).sum(1)
        table.add_row(str(width), *(f"{(rank < cut).mean():.3f}" for cut in (1, TEMPLATE_CANDIDATES, 64, 256)))
        if args.graphs and width != args.dim:
            graphs.extend(graph_rows(routed, asked, own, width, args.ef_search))
    console.print(table)
    if graphs:
        graph_table = Table(title=f"router graph, M {HNSW_CONNECTIVITY}, efC {HNSW_EXPANSION_ADD}: true template "
                                  f"among the {TEMPLATE_CANDIDATES} found / p50 of the graph search")
        for column in ("router dims", "storage", "build s", *(f"ef {ef}" for ef in args.ef_search)):
            graph_table.add_column(column, justify="right")
        for row in graphs:
            graph_table.add_row(*row)
        console.print(graph_table)


def graph_rows(routed: np.ndarray, asked: np.ndarray, own: np.ndarray, width: int, efs: list[int]) -> list[list[str]]:
    """Build the router graph over ``routed`` with float32 and with 8-bit storage; one table row each."""
    rows = []
    flat = faiss.IndexHNSWFlat(width, HNSW_CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
    flat.hnsw.efConstruction = HNSW_EXPANSION_ADD
    for name, router in (("float32", HNSWIndex(width, graph=flat)), ("8-bit", HNSWIndex(width))):
        start = time.perf_counter()
        router.add(np.arange(len(routed)), routed)
        row = [str(width), name, f"{time.perf_counter() - start:.0f}"]
        for ef in efs:
            router.expansion_search = ef
            _, found = router.search(asked, TEMPLATE_CANDIDATES)
            wall, _ = timed(partial(router.search, k=TEMPLATE_CANDIDATES), asked[:500])
            row.append(f"{(found == own[:, None]).any(1).mean():.3f} / {np.median(wall):.2f} ms")
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
