"""Batch jobs on object storage: a real S3 server (moto's, on loopback, checking request signatures
against an IAM user's key) holds real LFW photos; sources, outputs, resuming and the typed errors of
a missing bucket or refused credentials go through pyarrow's S3 client as they would against MinIO."""

from __future__ import annotations

import csv
import io
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import boto3
import httpx
import numpy as np
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from moto.server import ThreadedMotoServer
from PIL import Image
from typer.testing import CliRunner

from faceatlas.batch import (
    BatchOptions,
    analyze_batch,
    dedupe,
    enrol,
    face_table,
    image_table,
    ray_session,
    resolve_source,
    search,
)
from faceatlas.batch.output import prepare, write_part
from faceatlas.cli.main import app
from faceatlas.engine import cosine_similarity
from faceatlas.errors import StorageUnavailable
from faceatlas.gallery import Gallery

PACK = "scrfd-mbf"
BUCKET = "faceatlas-photos"
REGION = "us-east-1"


@dataclass
class S3:
    endpoint: str
    key: str
    secret: str
    photos: dict[str, Path]  # object path (bucket/people/<person>/<file>) -> the LFW file uploaded there

    def filesystem(self) -> pafs.FileSystem:
        return pafs.S3FileSystem(endpoint_override=self.endpoint, access_key=self.key, secret_key=self.secret,
                                 region=REGION)


def _people(shared: Path, count: int = 3, photos: int = 4) -> list[Path]:
    found = [f for f in sorted((shared / "data" / "lfw" / "images").iterdir()) if len(list(f.glob("*.jpg"))) >= photos]
    return found[:count]


@pytest.fixture(scope="module")
def s3(shared: Path) -> Iterator[S3]:
    """moto's S3 server on a free loopback port with an IAM user allowed ``s3:*``; from then on it
    checks every request's signature. The AWS_* variables point pyarrow (and Ray's processes, which
    inherit them) at it, as a user would for MinIO. 3 people x 4 LFW photos in s3://BUCKET/people/."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="setup",
                           aws_secret_access_key="setup")
        iam.create_user(UserName="faceatlas")
        policy = iam.create_policy(PolicyName="s3-all", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        iam.attach_user_policy(UserName="faceatlas", PolicyArn=policy["Policy"]["Arn"])
        key = iam.create_access_key(UserName="faceatlas")["AccessKey"]
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()  # signatures checked now

        client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key["AccessKeyId"],
                              aws_secret_access_key=key["SecretAccessKey"])
        client.create_bucket(Bucket=BUCKET)
        photos: dict[str, Path] = {}
        for person in _people(shared):
            for photo in sorted(person.glob("*.jpg"))[:4]:
                name = f"people/{person.name}/{photo.name}"
                client.put_object(Bucket=BUCKET, Key=name, Body=photo.read_bytes())
                photos[f"{BUCKET}/{name}"] = photo
        with pytest.MonkeyPatch.context() as patch:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION"):
                patch.delenv(name, raising=False)
            patch.setenv("AWS_ENDPOINT_URL", endpoint)
            patch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
            patch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
            patch.setenv("AWS_REGION", REGION)
            patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
            yield S3(endpoint, key["AccessKeyId"], key["SecretAccessKey"], photos)
    finally:
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"inf")
        server.stop()


def test_s3_folders_and_manifest_list_the_photos_with_their_subjects(s3):
    source = resolve_source(f"s3://{BUCKET}/people")
    assert source.paths == sorted(s3.photos)
    assert source.subjects == {path: PurePosixPath(path).parent.name for path in s3.photos}
    with source.filesystem.open_input_stream(source.paths[0]) as stream:
        assert stream.read() == s3.photos[source.paths[0]].read_bytes()

    chosen = sorted(s3.photos)[::3]
    relative = [PurePosixPath(p).relative_to(f"{BUCKET}/people") for p in chosen]  # to the manifest's folder
    lines = ["path,subject"] + [f"{path},who{n}" for n, path in enumerate(relative)]
    with s3.filesystem().open_output_stream(f"{BUCKET}/people/manifest.csv") as stream:
        stream.write(("\n".join(lines) + "\n").encode())
    manifest = resolve_source(f"s3://{BUCKET}/people/manifest.csv")
    assert manifest.paths == chosen and manifest.subjects == {p: f"who{n}" for n, p in enumerate(chosen)}


def test_output_parts_on_s3_are_tidied_and_resumed_without_ray(s3, fast_analyzer):
    """The output layer alone (what each Ray actor and the driver do to OUT), on S3: a part is
    readable back, a faces part left without its manifest part by a kill and a temporary file are
    removed by the next run, which skips the images that are done."""
    out = f"s3://{BUCKET}/tidy/faces.parquet"
    fs, root = pafs.FileSystem.from_uri(out)
    assert prepare(out) == set()
    paths = sorted(s3.photos)[:3]
    data = [s3.photos[p].read_bytes() for p in paths]
    faces, images = analyze_batch(paths[:2], data[:2], fast_analyzer, BatchOptions().settings)
    write_part(fs, root, faces, images)
    orphan, _ = analyze_batch(paths[2:], data[2:], fast_analyzer, BatchOptions().settings)
    pq.write_table(orphan, f"{root}/part-{'0' * 32}.parquet", filesystem=fs)  # a kill between the two parts
    with fs.open_output_stream(f"{root}/.part-{'1' * 32}.parquet.{'2' * 8}.tmp") as stream:
        stream.write(b"half written")

    assert prepare(out) == set(paths[:2])
    left = sorted(PurePosixPath(i.path).name for i in fs.get_file_info(pafs.FileSelector(root)))
    assert left == ["_images", next(n for n in left if n.startswith("part-"))]
    table = face_table(out)
    assert set(table.column("image_id").to_pylist()) == set(paths[:2])
    assert image_table(out).num_rows == 2


def test_missing_bucket_and_refused_credentials_are_typed_errors(s3, tmp_path, monkeypatch):
    with pytest.raises(StorageUnavailable, match="bucket 'no-such-bucket' not found"):
        resolve_source("s3://no-such-bucket/people")

    runner = CliRunner()
    missing_out = runner.invoke(app, ["batch", "embed", f"s3://{BUCKET}/people", "--out",
                                      "s3://no-such-bucket/out/faces.parquet", "--json"])
    assert missing_out.exit_code == 2, missing_out.output
    answer = json.loads(missing_out.stdout)
    assert answer["error"] == "storage_unavailable" and "bucket 'no-such-bucket' not found" in answer["message"]

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    refused = runner.invoke(app, ["batch", "embed", f"s3://{BUCKET}/people", "--out", str(tmp_path / "out")])
    assert refused.exit_code == 2 and isinstance(refused.exception, SystemExit), refused.output  # exit 2, no traceback
    assert "error (storage_unavailable)" in refused.output and "ACCESS_DENIED" in refused.output
    assert "AWS_SECRET_ACCESS_KEY" in refused.output  # says what to check

    with socket.socket() as free:  # a loopback port nothing listens on: the server is down
        free.bind(("127.0.0.1", 0))
        closed = free.getsockname()[1]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    with pytest.raises(StorageUnavailable, match="NETWORK_CONNECTION"):  # after the S3 client's retries (~6 s)
        resolve_source(f"s3://{BUCKET}/people")


@pytest.fixture(scope="module")
def ray_cluster(s3):
    """One local Ray for the module's jobs, started after the AWS_* variables are set (its
    processes inherit them, as the processes of a job started in a configured shell do)."""
    with ray_session(1, None):
        yield


@pytest.mark.slow  # ~60 s here: Ray's start and five jobs (embed, the resumed embed, enrol, search, dedupe)
def test_embed_s3_to_s3_resumes_then_enrols_searches_and_dedupes(s3, ray_cluster, fast_analyzer, tmp_path):
    out = f"s3://{BUCKET}/out/faces.parquet"
    command = ["batch", "embed", f"s3://{BUCKET}/people", "--out", out, "--workers", "1", "--batch-size", "4",
               "--pack", PACK, "--json"]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert (report["images"], report["processed"], report["skipped"], report["errors"]) == (12, 12, 0, 0)

    # the Parquet dataset as any reader finds it on S3 (pyarrow skips _images/ and _errors.csv)
    faces = pads.dataset(out, format="parquet").to_table()
    assert faces.num_rows == report["faces"]
    assert set(faces.column("image_id").to_pylist()) == set(s3.photos)  # every photo has its face rows
    first_face = faces.filter(pads.field("face") == 0).sort_by("image_id").slice(0, 1).to_pylist()[0]
    direct = fast_analyzer.analyze(str(s3.photos[first_face["image_id"]]))[0]
    assert cosine_similarity(np.asarray(first_face["embedding"]), direct.embedding) > 0.999

    again = json.loads(CliRunner().invoke(app, command).stdout)  # everything done: nothing is read again
    assert (again["processed"], again["skipped"], again["faces"]) == (0, 12, report["faces"])

    with Gallery.open(f"sqlite:///{tmp_path / 'g.db'}") as gallery:
        enrolled = enrol(f"s3://{BUCKET}/people", "staff", gallery, BatchOptions(workers=1, pack=PACK, batch_size=4))
        assert enrolled.details["enrolled"] == 12 and enrolled.details["subjects"] == 3
        subjects = {PurePosixPath(p).parent.name for p in s3.photos}
        assert {s.external_id for s in gallery.list_subjects("staff").items} == subjects

        # search: each enrolled photo is its own subject's; matches.parquet is written to S3
        search(f"s3://{BUCKET}/people", "staff", gallery, f"s3://{BUCKET}/search",
               BatchOptions(workers=1, batch_size=4))
    matches = pq.read_table(f"s3://{BUCKET}/search/matches.parquet").to_pylist()
    assert {r["image_id"]: r["subject"] for r in matches if r["face"] == 0} == {
        p: PurePosixPath(p).parent.name for p in s3.photos}

    # dedupe: a resized, re-encoded copy put beside its original is found; the CSV is written to S3
    original, other = sorted(s3.photos)[1], sorted(s3.photos)[5]
    copy = io.BytesIO()
    Image.open(s3.photos[original]).resize((180, 180)).save(copy, format="JPEG", quality=60)
    fs = s3.filesystem()
    for name, data in ((f"{BUCKET}/dupes/original.jpg", s3.photos[original].read_bytes()),
                       (f"{BUCKET}/dupes/copy.jpg", copy.getvalue()),
                       (f"{BUCKET}/dupes/other.jpg", s3.photos[other].read_bytes())):
        with fs.open_output_stream(name) as stream:
            stream.write(data)
    found = dedupe(f"s3://{BUCKET}/dupes", f"s3://{BUCKET}/dedupe", BatchOptions(workers=1, batch_size=4))
    assert found.details["groups"] == 1
    with fs.open_input_stream(f"{BUCKET}/dedupe/duplicates.csv") as stream:
        rows = list(csv.DictReader(io.StringIO(stream.read().decode())))
    assert sorted(r["image_id"] for r in rows) == [f"{BUCKET}/dupes/copy.jpg", f"{BUCKET}/dupes/original.jpg"]
