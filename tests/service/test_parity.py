"""The same inputs through the CLI and through the API give the same answers (detect, compare,
liveness, search): each door only formats what one layer decided."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from faceatlas.cli.main import app

runner = CliRunner()
PACK = ["-p", "scrfd-mbf"]  # the test server's pack (FACEATLAS_PACK in conftest)


def _cli(*args: Any, last_line: bool = True) -> Any:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    text = result.stdout.strip()
    return json.loads(text.splitlines()[-1] if last_line else text)


def _same(cli: Any, api: Any, path: str = "") -> None:
    """Equal structures; floats equal to 1e-3 (the server runs its recogniser on another thread count)."""
    if isinstance(cli, dict):
        assert isinstance(api, dict) and set(cli) <= set(api), f"{path}: {sorted(cli)} vs {sorted(api)}"
        for key in cli:
            _same(cli[key], api[key], f"{path}.{key}")
    elif isinstance(cli, list):
        assert isinstance(api, list) and len(cli) == len(api), f"{path}: {cli} vs {api}"
        for i, (a, b) in enumerate(zip(cli, api)):
            _same(a, b, f"{path}[{i}]")
    elif isinstance(cli, float) and not isinstance(cli, bool):
        assert api == pytest.approx(cli, abs=1e-3), path
    else:
        assert cli == api, path


def test_detect_compare_and_liveness_agree(server, examples: Path, shared: Path) -> None:
    group = examples / "examples" / "two_people.jpg"
    images = examples / "tests" / "test_images"
    spoofs = sorted((shared / "data" / "antispoof_samples").glob("*.jpg"))
    with server.client("acme_detect") as http:
        cli_faces = _cli("detect", group, *PACK, "--liveness", "--attributes", "--json")["results"][0]["faces"]
        api = http.post("/v1/detect", files={"image": group.read_bytes()},
                        params={"liveness": True, "attributes": True}).json()
        assert len(cli_faces) == 2 and all(face["attributes"]["gender"] == "male" for face in cli_faces)
        _same(cli_faces, api["faces"])

        for other in ("obama2.jpg", "biden.jpg"):
            cli = _cli("compare", images / "obama.jpg", images / other, *PACK, "--far", "1e-4", "--json")
            files = {"image_a": (images / "obama.jpg").read_bytes(), "image_b": (images / other).read_bytes()}
            answer = http.post("/v1/compare", files=files, params={"far": 1e-4}).json()
            _same(cli, answer)
            assert cli["match"] is (other == "obama2.jpg")

        cli_rows = _cli("liveness", *spoofs, images / "obama.jpg", *PACK, "--json")["results"]
        for path, row in zip([*spoofs, images / "obama.jpg"], cli_rows):
            answer = http.post("/v1/liveness", files={"image": path.read_bytes()}).json()
            _same({k: v for k, v in row.items() if k != "image"}, answer)
        assert [row["real"] for row in cli_rows[:3]] == [False, False, True]  # image_F1, image_F2, image_T1


def test_search_agrees(server, examples: Path, tmp_path: Path) -> None:
    train = examples / "examples" / "knn_examples" / "train"
    probe = examples / "examples" / "knn_examples" / "test" / "obama1.jpg"
    name = f"parity_{uuid.uuid4().hex[:6]}"
    db = ["--db", f"sqlite:///{tmp_path / 'cli.db'}"]
    _cli("gallery", "create", name, *PACK, *db, "--json", last_line=False)
    _cli("gallery", "enrol", name, train, *db, "--json", last_line=False)
    cli = _cli("gallery", "search", name, probe, "-k", "3", "--far", "1e-3", *db, "--json", last_line=False)
    with server.client("acme_write") as http:
        assert http.post("/v1/collections", json={"name": name}).status_code == 201
        for person in sorted(p for p in train.iterdir() if p.is_dir()):
            for photo in sorted(person.iterdir()):
                url = f"/v1/collections/{name}/subjects/{person.name}/faces"
                assert http.post(url, files={"image": photo.read_bytes()}).status_code == 201
        api = http.post(f"/v1/collections/{name}/search", files={"image": probe.read_bytes()},
                        params={"k": 3, "far": 1e-3}).json()["results"]
        http.delete(f"/v1/collections/{name}")
    ids = ("external_id", "similarity", "best_similarity", "far_level", "matched_faces")
    _same([[{k: m[k] for k in ids} for m in r["matches"]] for r in cli],
          [[{k: m[k] for k in ids} for m in r["matches"]] for r in api])
    assert cli[0]["matches"][0]["external_id"] == "obama"
