"""Open-set 1:N identification on LFW: FNIR at a stated FPIR, against the old 1:1 FAR cut.

Galleries enrol one image of each of N identities (among the 1,559 with two images or more);
mated searches are their other images, non-mated searches every image of an identity not
enrolled. The cut at FPIR p for a gallery of n faces comes from the pack calibration
(``Calibration.fpir_threshold``, the impostor tail measured by ``faceatlas eval lfw``); the
table sets the FPIR really reached beside the stated one, and the 1:1 FAR 1e-4 cut (what a
search used before) beside both. 100k: the 1,559 LFW identities plus synthetic distractors drawn
from a Gaussian fitted to the same embeddings.

    python bench/lfw_identification.py --pack scrfd-mbf --cache /tmp/lfw-scrfd-mbf.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from faceatlas.engine import FaceAnalyzer, far_key
from faceatlas.engine.evaluation import all_vs_all, impostor_tail, load_or_embed, read_pairs
from faceatlas.engine.identification import distractor_faces, identification_report, run_searches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw"))
    parser.add_argument("--pack", default="scrfd-mbf")
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache (.npz), as eval lfw --cache")
    parser.add_argument("--sizes", default="100,1559,100000", help="gallery sizes (identities; beyond 1,559 "
                                                                    "the rest are synthetic distractors)")
    parser.add_argument("--draws", type=int, default=5, help="random galleries pooled per size below 1,559")
    args = parser.parse_args()
    console = Console()
    analyzer = FaceAnalyzer(args.pack)
    pairs = read_pairs(args.lfw / "pairs.txt")
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    embedded = load_or_embed(analyzer, args.lfw / "images", keys, args.cache)
    vectors, identities = embedded.embeddings, embedded.identities
    calibration = analyzer.calibration
    if calibration is None or not calibration.tail:  # an old calibration: measure the tail here (in-sample)
        _, impostor = all_vs_all(vectors, identities)
        from faceatlas.engine import Calibration

        calibration = Calibration(args.pack, analyzer.pack.recognizer_id, {}, tail=impostor_tail(impostor))
        console.print("[yellow]the pack calibration has no impostor tail: measured on these embeddings[/yellow]")
    eligible = int((np.bincount(identities) >= 2).sum())
    table = Table(title=f"LFW open-set 1:N, pack {args.pack}: {len(keys):,} images, {eligible:,} identities "
                        "with >= 2 images")
    for column in ("gallery", "distractors", "mated / non-mated searches", "rank-1", "cut", "threshold",
                   "FPIR reached", "FNIR"):
        table.add_column(column, justify="right")
    for size in (int(s) for s in args.sizes.split(",")):
        enrolled = min(size, eligible)
        distractors = distractor_faces(vectors, identities, size - enrolled) if size > enrolled else None
        draws = args.draws if size < eligible else 1
        report = identification_report(vectors, identities, calibration, enrolled, distractors=distractors,
                                       draws=draws)
        label = f"{report.mated:,} / {report.non_mated:,}"
        for p in report.points:
            reached = f"{p.achieved_fpir:.4f}" + ("" if p.supported else " (few)")
            table.add_row(f"{size:,}", f"{report.distractors:,}", label, f"{report.rank1:.4f}",
                          f"FPIR {far_key(p.fpir)}", f"{p.threshold:.3f}", reached, f"{p.fnir:.4f}")
        old = np.float32(analyzer.threshold(1e-4)) if analyzer.calibration else None
        if old is not None:
            runs = [run_searches(vectors, identities, enrolled, distractors=distractors, seed=d) for d in range(draws)]
            mated = np.concatenate([r.mated for r in runs])
            non_mated = np.concatenate([r.non_mated for r in runs])
            table.add_row(f"{size:,}", f"{report.distractors:,}", label, f"{report.rank1:.4f}", "FAR 1e-4 (1:1)",
                          f"{old:.3f}", f"{(non_mated >= old).mean():.4f}", f"{(mated < old).mean():.4f}")
    console.print(table)


if __name__ == "__main__":
    main()
