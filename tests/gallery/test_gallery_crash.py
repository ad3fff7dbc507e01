"""A process killed (SIGKILL) mid-enrolment must neither lose a face nor leave a ghost in the index."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from faceatlas.gallery import Gallery
from faceatlas.gallery.index import load_index
from faceatlas.gallery.models import FaceRecord

ROUNDS = 4  # kills per database; each lands at a random point of the writer's loop

# Enrols batches of random embeddings forever, deleting a face now and then; the index is
# saved every 3 changes so kills land before, during and after index writes.
CHILD = """
import sys
import numpy as np
from faceatlas.gallery import Gallery

gallery = Gallery.open(sys.argv[1], tenant="crash", index_dir=sys.argv[2], autosave_every=3)
rid = gallery.get_collection("c").recognizer_id
rng = np.random.default_rng(int(sys.argv[3]))
print("ready", flush=True)
step = 0
while True:
    ids = gallery.add_embeddings("c", f"p{step % 7}", rng.normal(size=(4, 128)), recognizer_id=rid)
    if step % 5 == 4:
        gallery.delete_face("c", ids[0])
    step += 1
"""


def _db_and_index_ids(gallery: Gallery) -> tuple[set[int], set[int]]:
    with gallery._sessions() as session:
        collection = gallery._collection(session, "c")
        index_ids = set(gallery._indexes.get(session, collection).ids().tolist())
        db_ids = set(session.scalars(select(FaceRecord.id).where(FaceRecord.collection_id == collection.id)))
    return db_ids, index_ids


def test_sigkill_during_enrolment_keeps_db_and_index_equal(db_url: str, index_dir: Path) -> None:
    with Gallery.open(db_url, tenant="crash", index_dir=index_dir) as setup:
        setup.create_collection("c", "scrfd-mbf")
    rng = random.Random(7)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for round_number in range(ROUNDS):
        child = subprocess.Popen([sys.executable, "-c", CHILD, db_url, str(index_dir), str(round_number)],
                                 stdout=subprocess.PIPE, text=True, env=env)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait()

        with Gallery.open(db_url, tenant="crash", index_dir=index_dir) as reopened:
            db_ids, index_ids = _db_and_index_ids(reopened)
            assert db_ids == index_ids, f"round {round_number}: lost {db_ids - index_ids}, ghosts {index_ids - db_ids}"
        # the faces caught up are written when the gallery closes (a catch-up that only adds faces
        # saves with the autosave, not at once)
        collection_path = next(index_dir.glob("collection-*.npz"))
        on_disk = load_index(collection_path)
        assert on_disk is not None and set(on_disk.index.ids().tolist()) == db_ids
    assert len(db_ids) > 20
