"""Clustering accuracy against true identities: pairwise and BCubed precision, recall and F."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    """Pairwise and BCubed precision / recall / F1 of predicted labels against true ones."""

    pairwise_precision: float
    pairwise_recall: float
    pairwise_f: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f: float
    clusters: int
    identities: int


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def score(predicted: np.ndarray, truth: np.ndarray) -> Scores:
    """Compare ``predicted`` cluster labels with ``truth`` identity labels (one per face)."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    _, p = np.unique(predicted, return_inverse=True)
    _, t = np.unique(truth, return_inverse=True)
    joint = np.unique(np.stack([p, t], 1), axis=0, return_counts=True)
    (pj, tj), nij = joint[0].T, joint[1].astype(np.float64)
    cluster_size = np.bincount(p).astype(np.float64)
    class_size = np.bincount(t).astype(np.float64)
    same_both = float((nij * (nij - 1)).sum() / 2)
    same_pred = float((cluster_size * (cluster_size - 1)).sum() / 2)
    same_true = float((class_size * (class_size - 1)).sum() / 2)
    pp = same_both / same_pred if same_pred else 1.0
    pr = same_both / same_true if same_true else 1.0
    n = float(len(p))
    bp = float((nij * nij / cluster_size[pj]).sum() / n)
    br = float((nij * nij / class_size[tj]).sum() / n)
    return Scores(pp, pr, _f(pp, pr), bp, br, _f(bp, br), int(len(cluster_size)), int(len(class_size)))
