"""The same inputs through the CLI and through the API give the same answers (detect, compare,
liveness, search): each door only formats what one layer decided. The fields both doors must
give are named below and compared exactly (present on both sides, same value; floats to 1e-3)."""

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

# what both doors answer, field by field
FACE = ("bbox", "det_score", "keypoints", "quality", "pose")  # a detected face
FACE_ON_REQUEST = ("liveness", "attributes")  # detect --liveness --attributes / ?liveness&attributes
COMPARE = ("similarity", "match", "threshold", "far", "match_at_far", "pack", "faces_in_image_a", "faces_in_image_b")
LIVENESS = ("real", "score", "probabilities", "face", "faces_in_image")
SEARCH_RESULT = ("face", "matches", "unknown")  # one query face of a search
# a match; not best_face_id: each door numbers the faces of its own database
MATCH = ("external_id", "name", "similarity", "best_similarity", "mean_similarity", "far_level",
         "matched_faces", "metadata")


def _cli(*args: Any, last_line: bool = True) -> Any:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    text = result.stdout.strip()
    return json.loads(text.splitlines()[-1] if last_line else text)


def _same(cli: Any, api: Any, path: str = "") -> None:
    """Equal structures, the same keys on both sides at every level; floats equal to 1e-3 (the
    server runs its recogniser on another thread count)."""
    if isinstance(cli, dict):
        assert isinstance(api, dict) and set(cli) == set(api), f"{path}: {sorted(cli)} vs {sorted(api)}"
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


def _fields(cli: dict, api: dict, names: tuple[str, ...], path: str = "") -> None:
    """Each named field is in both answers (a field missing on either side fails) with the same value."""
    for name in names:
        assert name in cli, f"{path}.{name}: missing from the CLI's answer {sorted(cli)}"
        assert name in api, f"{path}.{name}: missing from the API's answer {sorted(api)}"
        _same(cli[name], api[name], f"{path}.{name}")


def test_detect_compare_and_liveness_agree(server, examples: Path, shared: Path) -> None:
    group = examples / "examples" / "two_people.jpg"
    images = examples / "tests" / "test_images"
    spoofs = sorted((shared / "data" / "antispoof_samples").glob("*.jpg"))
    with server.client("acme_detect") as http:
        cli = _cli("detect", group, *PACK, "--liveness", "--attributes", "--json")
        api = http.post("/v1/detect", files={"image": group.read_bytes()},
                        params={"liveness": True, "attributes": True}).json()
        assert cli["pack"] == api["pack"] == "scrfd-mbf"
        cli_faces = cli["results"][0]["faces"]
        assert len(cli_faces) == len(api["faces"]) == 2
        assert all(face["attributes"]["gender"] == "male" for face in cli_faces)
        for i, (a, b) in enumerate(zip(cli_faces, api["faces"])):
            _fields(a, b, FACE + FACE_ON_REQUEST, f"faces[{i}]")
            _same(a, b, f"faces[{i}]")  # and nothing more on either side

        for other in ("obama2.jpg", "biden.jpg"):
            cli = _cli("compare", images / "obama.jpg", images / other, *PACK, "--far", "1e-4", "--json")
            files = {"image_a": (images / "obama.jpg").read_bytes(), "image_b": (images / other).read_bytes()}
            answer = http.post("/v1/compare", files=files, params={"far": 1e-4}).json()
            _fields(cli, answer, COMPARE, other)
            _same(cli, answer, other)
            assert cli["match"] is (other == "obama2.jpg")

        cli_rows = _cli("liveness", *spoofs, images / "obama.jpg", group, *PACK, "--json")["results"]
        assert [row["faces_in_image"] for row in cli_rows[-2:]] == [1, 2]  # the largest of the group's 2
        for path, row in zip([*spoofs, images / "obama.jpg", group], cli_rows, strict=True):
            assert row["image"] == str(path)  # the CLI names the image of each row; the API answers one
            answer = http.post("/v1/liveness", files={"image": path.read_bytes()}).json()
            row = {k: v for k, v in row.items() if k != "image"}
            _fields(row, answer, LIVENESS, path.name)
            _fields(row["face"], answer["face"], FACE, f"{path.name}.face")
            _same(row, answer, path.name)
        assert [row["real"] for row in cli_rows[:3]] == [False, False, True]  # image_F1, image_F2, image_T1


def _same_search(cli: dict, api: dict, cut: dict[str, float], path: str) -> None:
    """One search answer, both doors: ``{"results": [...], <the cut>}`` with the same results."""
    assert set(cli) == set(api) == {"results", "faces_in_image", *cut}, (path, sorted(cli), sorted(api))
    assert cli["faces_in_image"] == api["faces_in_image"] == 1, path
    _same({k: cli[k] for k in cut}, cut, f"{path}.cut")
    _same({k: api[k] for k in cut}, cut, f"{path}.cut")
    assert len(cli["results"]) == len(api["results"]) == 1, path
    a, b = cli["results"][0], api["results"][0]
    assert set(SEARCH_RESULT) <= set(a) & set(b), (path, sorted(a), sorted(b))
    # the matches field by field below: not best_face_id, which depends on what the server's database held before
    _fields(a, b, tuple(name for name in SEARCH_RESULT if name != "matches"), path)
    _fields(a["face"], b["face"], FACE, f"{path}.face")
    assert len(a["matches"]) == len(b["matches"]), (path, a["matches"], b["matches"])
    for i, (x, y) in enumerate(zip(a["matches"], b["matches"])):
        _fields(x, y, MATCH, f"{path}.matches[{i}]")
    assert set(a["matches"][0] if a["matches"] else {}) <= {*MATCH, "best_face_id"}, path


def test_search_agrees(server, examples: Path, shared: Path, tmp_path: Path) -> None:
    train = examples / "examples" / "knn_examples" / "train"
    enrolled = examples / "examples" / "knn_examples" / "test" / "obama1.jpg"  # obama: enrolled
    stranger = shared / "data" / "lfw" / "images" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"  # not enrolled
    assert stranger.parent.name.lower() not in {p.name for p in train.iterdir()}
    name = f"parity_{uuid.uuid4().hex[:6]}"
    db = ["--db", f"sqlite:///{tmp_path / 'cli.db'}"]
    _cli("gallery", "create", name, *PACK, *db, "--json", last_line=False)
    _cli("gallery", "enrol", name, train, *db, "--json", last_line=False)
    searches = {  # what each case asks, as the CLI's options and the API's query
        "far": (enrolled, ["-k", "3", "--far", "1e-3"], {"k": 3, "far": 1e-3}, {"far": 1e-3}),
        "default-enrolled": (enrolled, [], {}, {"fpir": 1e-3}),
        "default-stranger": (stranger, [], {}, {"fpir": 1e-3}),
        "rank-only-stranger": (stranger, ["-k", "2", "--rank-only"], {"k": 2, "rank_only": True}, {}),
    }
    # ranking goes with no cut: a FAR beside it is refused by both doors (it decided silently, an FPIR was refused)
    both = runner.invoke(app, ["gallery", "search", name, str(enrolled), "--rank-only", "--far", "1e-3", *db, "--json"])
    assert both.exit_code == 2 and "rank_only ranks without the far cut" in both.output, both.output
    cli = {case: _cli("gallery", "search", name, image, *options, *db, "--json", last_line=False)
           for case, (image, options, _, _) in searches.items()}
    with server.client("acme_write") as http:
        assert http.post("/v1/collections", json={"name": name}).status_code == 201
        try:
            for person in sorted(p for p in train.iterdir() if p.is_dir()):
                for photo in sorted(person.iterdir()):
                    url = f"/v1/collections/{name}/subjects/{person.name}/faces"
                    assert http.post(url, files={"image": photo.read_bytes()}).status_code == 201
            api = {}
            for case, (image, _, params, _) in searches.items():
                answer = http.post(f"/v1/collections/{name}/search", files={"image": image.read_bytes()},
                                   params=params)
                assert answer.status_code == 200, answer.text
                api[case] = answer.json()
            both_api = http.post(f"/v1/collections/{name}/search", files={"image": enrolled.read_bytes()},
                                 params={"k": 3, "rank_only": True, "far": 1e-3})
            assert both_api.status_code == 422 and "rank_only ranks without the far cut" in both_api.text, both_api.text
        finally:
            http.delete(f"/v1/collections/{name}")
    for case, (_, _, _, cut) in searches.items():
        _same_search(cli[case], api[case], cut, case)

    def who(answer: dict) -> tuple[list[str], bool | None]:
        result = answer["results"][0]
        return [m["external_id"] for m in result["matches"]], result["unknown"]

    # someone enrolled is named at the default cut (FPIR 1e-3), the same subject by both doors
    assert who(cli["far"])[0][0] == who(api["far"])[0][0] == "obama"
    assert who(cli["default-enrolled"]) == who(api["default-enrolled"]) == (["obama"], False)
    # a stranger is nobody at the default cut on both sides
    assert who(cli["default-stranger"]) == who(api["default-stranger"]) == ([], True)
    # ranked without a decision: nearest subjects, no verdict
    ranked_cli, ranked_api = who(cli["rank-only-stranger"]), who(api["rank-only-stranger"])
    assert ranked_cli == ranked_api and len(ranked_cli[0]) == 2 and ranked_cli[1] is None


def test_remote_errors_carry_the_servers_code(server, examples: Path) -> None:
    """`faceatlas remote` printed `error: 401 unauthorized: ...` where every other command prints
    `error (code): ...`: the server's code is the line's code, exit 2; an answer is JSON on stdout."""
    photo = examples / "tests/test_images/obama.jpg"
    remote = ["remote", "detect", str(photo), "--server", server.url]
    refused = runner.invoke(app, [*remote, "--key", "fa_not_a_key"])
    assert refused.exit_code == 2, refused.output
    assert refused.output.startswith("error (unauthorized): the server answered 401: "), refused.output
    missing = runner.invoke(app, ["remote", "search", "nosuch", str(photo), "--server", server.url,
                                  "--key", server.keys["acme_read"]])
    assert missing.exit_code == 2 and missing.output.startswith("error (not_found): the server answered 404: ")
    answered = runner.invoke(app, [*remote, "--key", server.keys["acme_detect"]])
    assert answered.exit_code == 0 and len(json.loads(answered.stdout)["faces"]) == 1, answered.output
