"""Batch jobs on Ray Data: embed, enrol, search and dedupe folders, globs, manifests or object
storage of images, with one ``FaceAnalyzer`` per Ray actor, resumable Parquet output and failed
images reported with their error codes. Needs the optional extra ``faceatlas[batch]``."""

from faceatlas.batch.gallery_jobs import DEFAULT_MAX_DISTANCE, GalleryOpener, dedupe, duplicate_groups, enrol, search
from faceatlas.batch.jobs import (
    DEFAULT_BATCH_SIZE,
    BatchOptions,
    BatchReport,
    Progress,
    check_cluster,
    embed,
    embed_source,
    face_table,
    image_table,
    ray_session,
)
from faceatlas.batch.source import Source, resolve_source
from faceatlas.batch.worker import FaceWorker, analyze_batch, phash

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_DISTANCE",
    "BatchOptions",
    "BatchReport",
    "FaceWorker",
    "GalleryOpener",
    "Progress",
    "Source",
    "analyze_batch",
    "check_cluster",
    "dedupe",
    "duplicate_groups",
    "embed",
    "embed_source",
    "enrol",
    "face_table",
    "image_table",
    "phash",
    "ray_session",
    "resolve_source",
    "search",
]
