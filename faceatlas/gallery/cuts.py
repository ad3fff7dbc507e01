"""A search's cut from its options, the similarity it stands for on a collection, and the
calibration of a collection's embedding space (its pack, runtime and flip)."""

from __future__ import annotations

from faceatlas.engine import (
    DEFAULT_FPIR,
    RUNTIMES,
    Calibration,
    Calibrations,
    Cut,
    NotCalibrated,
    get_pack,
    load_calibration,
)
from faceatlas.errors import InvalidArgument, RuntimeUnavailable, UnknownPack
from faceatlas.gallery.models import Collection
from faceatlas.gallery.rules import check_k
from faceatlas.gallery.types import AGGREGATES, Aggregate, CollectionInfo
from faceatlas.settings import EngineSettings


def calibration_for(collection: Collection | CollectionInfo, settings: EngineSettings,
                    calibrations: Calibrations | None = None) -> Calibration | None:
    """The calibration of the collection's embedding space, None when it has none; ``calibrations``:
    the files already parsed (the service's, so that a search by embedding does not read its JSON)."""
    # the collection's space names its runtime (float or int8) and whether flip TTA made it
    for runtime, flip in ((r, f) for r in RUNTIMES for f in (False, True)):
        try:
            pack = get_pack(collection.pack_name, settings, runtime=runtime, flip=flip)
        except UnknownPack:  # a pack this version no longer ships
            return None
        except RuntimeUnavailable:
            continue
        if pack.recognizer_id == collection.recognizer_id:
            return load_calibration(pack, settings, calibrations)
    return None


def search_cut(*, k: int = 5, threshold: float | None = None, fpir: float = DEFAULT_FPIR, far: float | None = None,
                rank_only: bool = False, aggregate: Aggregate = "best", calibration: Calibration | None = None) -> Cut:
    """The cut of :meth:`Gallery.search`'s options, once they are checked (``k``: :func:`check_k`;
    ``aggregate``; ``rank_only`` with a cut); ``calibration`` is taken, unused, so that a search's
    options can be checked whole before any face is analysed (:meth:`Gallery.search_image`)."""
    check_k(k)
    if aggregate not in AGGREGATES:
        raise InvalidArgument(f"aggregate is one of {', '.join(AGGREGATES)}, not {aggregate!r}")
    if rank_only and (threshold is not None or far is not None):  # the cut was applied, rank_only ignored
        named = "threshold" if threshold is not None else "far"
        raise InvalidArgument(f"rank_only ranks without the {named} cut: give one of them")
    return Cut(threshold=threshold, far=far, fpir=None if rank_only else fpir)


def resolve_threshold(collection: Collection, cut: Cut, calibration: Calibration | None, *,
                       gallery_size: int, templates: bool = False) -> float | None:
    """The similarity a match must reach under ``cut`` (None: rank without deciding)."""
    if cut.threshold is not None:
        return cut.threshold
    if cut.far is None and cut.fpir is None:
        return None
    if calibration is None or calibration.recognizer_id != collection.recognizer_id:
        rate = f"FAR {cut.far}" if cut.far is not None else f"FPIR {cut.fpir}"
        raise NotCalibrated(f"pack '{collection.pack_name}' has no calibration for {rate}; "
                            "pass a raw similarity threshold instead (or rank without deciding)")
    return cut.similarity(calibration, gallery_size, templates=templates)
