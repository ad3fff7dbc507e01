"""The CLI as a user runs it: human output by default, --json for machines, clean errors."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import cv2
from typer.testing import CliRunner

from faceatlas.cli.main import app
from faceatlas.settings import DEFAULT_PACK, EngineSettings

runner = CliRunner()


def test_detect_json_and_annotated_output(examples, tmp_path):
    out = tmp_path / "drawn.jpg"
    result = runner.invoke(
        app, ["detect", str(examples / "examples/two_people.jpg"), "-p", "scrfd-mbf", "--json", "--draw", str(out)]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["pack"] == "scrfd-mbf" and len(payload["results"][0]["faces"]) == 2
    assert cv2.imread(str(out)).shape == cv2.imread(str(examples / "examples/two_people.jpg")).shape


def test_detect_reports_bad_files_and_exits_non_zero(examples, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((examples / "tests/test_images/obama.jpg").read_bytes()[:2000])
    result = runner.invoke(app, ["detect", str(broken), "-p", "scrfd-mbf", "--json"])
    assert result.exit_code == 2
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["results"][0]["error"] == "truncated_image"


def test_compare_says_same_and_different(examples):
    images = examples / "tests/test_images"
    same = runner.invoke(
        app, ["compare", str(images / "obama.jpg"), str(images / "obama2.jpg"), "-p", "scrfd-mbf", "--json"]
    )
    different = runner.invoke(
        app, ["compare", str(images / "obama.jpg"), str(images / "biden.jpg"), "-p", "scrfd-mbf", "--json"]
    )
    assert same.exit_code == 0 and different.exit_code == 0, same.output + different.output
    same_sim = json.loads(same.stdout.strip().splitlines()[-1])["similarity"]
    different_sim = json.loads(different.stdout.strip().splitlines()[-1])["similarity"]
    assert same_sim > 0.5 > different_sim
    group = examples / "examples" / "two_people.jpg"  # its largest face was compared without a word
    told = runner.invoke(app, ["compare", str(images / "obama.jpg"), str(group), "-p", "scrfd-mbf"])
    assert told.exit_code == 0 and f"{group} holds 2 faces: its largest was compared" in told.stderr, told.output
    counted = runner.invoke(app, ["compare", str(group), str(images / "obama.jpg"), "-p", "scrfd-mbf", "--json"])
    answer = json.loads(counted.stdout)
    assert (answer["faces_in_image_a"], answer["faces_in_image_b"]) == (2, 1)


def test_models_list_and_info(shared):
    listed = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    by_name = {row["name"]: row for row in listed}
    assert by_name["dlib"]["available"] and by_name["scrfd-mbf"]["available"]
    info = json.loads(runner.invoke(app, ["models", "info", "scrfd-mbf", "--json"]).stdout)
    assert all(f["found"] for f in info["files"]) and info["recognizer_id"].startswith("mobilefacenet_128d.onnx:")


def test_liveness_command(shared):
    samples = shared / "data/antispoof_samples"
    result = runner.invoke(
        app, ["liveness", str(samples / "image_T1.jpg"), str(samples / "image_F2.jpg"), "-p", "scrfd-mbf", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])["results"]
    assert [r["real"] for r in rows] == [True, False]


def test_compare_says_no_match_at_the_far_asked_and_where_it_would_match(shared):
    """A genuine LFW pair between the FAR 1e-3 and 1e-4 thresholds: not "different people" beside "match"."""
    folder = shared / "data/lfw/images/Isaiah_Washington"
    result = runner.invoke(app, ["compare", str(folder / "Isaiah_Washington_0001.jpg"),
                                 str(folder / "Isaiah_Washington_0002.jpg"), "-p", "scrfd-mbf"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "no match at FAR 1e-04" in text and "the similarity would match at FAR 1e-03" in text, text
    assert "different people" not in text


def test_the_pack_is_one_line_and_licences_come_with_verbose(examples):
    photo = str(examples / "tests/test_images/obama.jpg")
    quiet = runner.invoke(app, ["detect", photo, "-p", "scrfd-mbf", "--json"])
    verbose = runner.invoke(app, ["detect", photo, "-p", "scrfd-mbf", "--json", "--verbose"])
    assert quiet.exit_code == 0 and verbose.exit_code == 0, quiet.output + verbose.output
    lines = quiet.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pack scrfd-mbf v1") and "non-commercial" in lines[0], lines
    assert sum(line.startswith("licence:") for line in verbose.stderr.splitlines()) >= 3


def test_watch_summary_fits_80_columns_without_raw_dicts(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'events.db'}")  # not the home folder's
    video = shared / "data/videos/store-aisle-detection.gif"
    result = runner.invoke(app, ["watch", str(video), "-p", "scrfd-mbf", "--line", "0,135,480,135",
                                 "--events", str(tmp_path / "events.jsonl")])
    assert result.exit_code == 0, result.output
    table = [line for line in result.output.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 80 for line in table), result.output
    text = "\n".join(table)
    assert "…" not in text and "{" not in text and "store-aisle-detection" in text
    assert "track_started" in text and not any(line.startswith("{") for line in result.output.splitlines())
    assert "line1 crossings" in text


def test_index_dir_setting_is_honoured_for_sqlite(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "my-indexes"))
    db = ["--db", f"sqlite:///{tmp_path / 'g.db'}"]
    photo = shared / "data/lfw/images/Aaron_Peirsol/Aaron_Peirsol_0001.jpg"
    assert runner.invoke(app, ["gallery", "create", "people", "-p", "scrfd-mbf", *db]).exit_code == 0
    assert runner.invoke(app, ["gallery", "enrol", "people", str(photo), "-s", "aaron", *db]).exit_code == 0
    searched = runner.invoke(app, ["gallery", "search", "people", str(photo), "--json", *db])
    assert searched.exit_code == 0, searched.output
    assert list((tmp_path / "my-indexes").iterdir()), "no index saved in FACEATLAS_INDEX_DIR"
    assert not (tmp_path / "g.db.indexes").exists()


def test_readme_step_one_draws_outside_the_repository(shared, monkeypatch):
    """The README's first command works as written (from the repository root) and writes its picture
    outside the repository."""
    repo = Path(__file__).resolve().parents[1]
    lines = (repo / "README.md").read_text().splitlines()
    step = next(line for line in lines[next(i for i, line in enumerate(lines) if line.startswith("# 1.")):]
                if not line.startswith("#"))
    command = shlex.split(step.split(" && ")[-1])
    while "=" in command[0]:  # VARIABLE=value before the command: set it as the shell would
        name, value = command.pop(0).split("=", 1)
        monkeypatch.setenv(name, str((repo / value).resolve()) if value.startswith("..") else value)
    assert command[0] == "faceatlas"
    drawn = Path(command[command.index("--draw") + 1])
    assert drawn.is_absolute() and repo not in drawn.parents, drawn
    drawn.unlink(missing_ok=True)
    monkeypatch.chdir(repo)
    before = set(repo.iterdir())
    result = runner.invoke(app, command[1:])
    assert result.exit_code == 0, result.output
    assert drawn.is_file() and set(repo.iterdir()) == before


def test_watch_recognises_with_the_collections_pack_by_default(examples, tmp_path, monkeypatch):
    """One default: a collection created with the default pack is watched with that pack, not another."""
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'events.db'}")  # not the home folder's
    db = f"sqlite:///{tmp_path / 'g.db'}"
    lin = examples / "examples/lin-manuel-miranda.png"
    assert runner.invoke(app, ["gallery", "create", "people", "--db", db]).exit_code == 0
    assert runner.invoke(app, ["gallery", "enrol", "people", str(lin), "-s", "lin", "--db", db]).exit_code == 0
    pack = json.loads(runner.invoke(app, ["gallery", "list", "--json", "--db", db]).stdout)[0]["pack_name"]
    clip = examples / "examples/short_hamilton_clip.mp4"
    result = runner.invoke(app, ["watch", str(clip), "--collection", "people", "--gallery", db, "--no-persons",
                                 "--stride", "3", "--events", str(tmp_path / "events.jsonl")])
    assert result.exit_code == 0, result.output
    identified = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()
                  if json.loads(line)["type"] == "identified"]
    assert pack == DEFAULT_PACK and identified and identified[0]["data"]["subject"] == "lin"


def test_gallery_enrol_name_rename_and_merge(examples, tmp_path):
    images = examples / "tests/test_images"
    db = ["--db", f"sqlite:///{tmp_path / 'g.db'}"]

    def run(*args: str) -> object:
        result = runner.invoke(app, ["gallery", *args, *db])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout) if "--json" in args else result

    run("create", "people", "-p", "scrfd-mbf")
    run("enrol", "people", str(images / "obama.jpg"), "-s", "barack", "--name", "Barack Obama")
    run("enrol", "people", str(images / "obama2.jpg"), "-s", "obama44")
    run("enrol", "people", str(images / "biden.jpg"), "-s", "joe")
    listed = run("list", "people", "--json")["items"]
    assert {s["external_id"]: s["name"] for s in listed}["barack"] == "Barack Obama"

    merged = run("merge", "people", "obama44", "barack", "--json")
    assert merged["external_id"] == "barack" and merged["faces"] == 2
    renamed = run("rename", "people", "barack", "obama", "--name", "B. Obama", "--json")
    assert (renamed["external_id"], renamed["name"], renamed["faces"]) == ("obama", "B. Obama", 2)
    assert {s["external_id"]: s["faces"] for s in run("list", "people", "--json")["items"]} == {"obama": 2, "joe": 1}
    searched = run("search", "people", str(images / "obama2.jpg"), "--json")
    assert set(searched) == {"results", "fpir", "faces_in_image"} and searched["fpir"] == 1e-3  # the API's shape
    assert searched["faces_in_image"] == 1
    found = searched["results"][0]["matches"][0]
    assert (found["external_id"], found["name"], found["matched_faces"]) == ("obama", "B. Obama", 2)

    missing = runner.invoke(app, ["gallery", "merge", "people", "nobody", "obama", *db])
    assert missing.exit_code != 0 and "not_found" in missing.output


def test_detect_on_a_folder_with_a_progress_bar(examples, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("obama.jpg", "biden.jpg"):
        (folder / name).write_bytes((examples / "tests/test_images" / name).read_bytes())
    (folder / "notes.txt").write_text("not an image")
    result = runner.invoke(app, ["detect", str(folder), "-p", "scrfd-mbf", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])["results"]
    assert [Path(r["image"]).name for r in rows] == ["biden.jpg", "obama.jpg"]
    assert all(len(r["faces"]) == 1 for r in rows)
    assert "detecting" in result.stderr and "2/2" in result.stderr
    # a folder with one unreadable photo exited 2, as if nothing had been read: 1, the others' faces stand
    (folder / "broken.jpg").write_bytes((examples / "tests/test_images/obama.jpg").read_bytes()[:2000])
    for command in ("detect", "liveness"):
        partly = runner.invoke(app, [command, str(folder), "-p", "scrfd-mbf", "--json"])
        rows = json.loads(partly.stdout.strip().splitlines()[-1])["results"]
        errors = [r.get("error") for r in rows]
        assert partly.exit_code == 1 and errors == [None, "truncated_image", None], partly.output


def test_a_command_imports_only_its_layers(examples):
    """`faceatlas detect` took ~4 s, 2.3 s of it importing the service, albums, KYC, video and batch
    layers it never uses: the other layers' commands are loaded when asked for, and still run."""
    import subprocess
    import sys

    photo = str(examples / "examples/two_people.jpg")
    probe = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from faceatlas.cli.main import app\n"
        f"result = CliRunner().invoke(app, ['detect', {photo!r}, '-p', 'scrfd-mbf', '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('faceatlas.', 'ray', 'supervision',"
        " 'fastapi', 'pyarrow', 'pandas', 'alembic')))))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                       check=True).stdout.strip().splitlines()[-1])
    assert "faceatlas.engine.analyzer" in loaded and "faceatlas.cli.main" in loaded
    unwanted = [m for m in loaded if m.startswith(("faceatlas.service", "faceatlas.apps", "faceatlas.video",
                                                   "faceatlas.batch", "faceatlas.gallery", "ray", "supervision",
                                                   "fastapi", "pyarrow", "pandas", "alembic"))]
    assert unwanted == []
    for command in (["kyc", "--help"], ["demo", "--help"], ["serve", "--help"]):  # groups stay groups
        shown = runner.invoke(app, command, terminal_width=100)
        assert shown.exit_code == 0, shown.output
    assert "verify" in runner.invoke(app, ["kyc", "--help"]).output
    assert "retail" in runner.invoke(app, ["demo", "--help"]).output


def test_help_lists_the_other_layers_commands_without_importing_them(monkeypatch):
    """`faceatlas --help` took 4.4 s importing every layer to read one line of each command's help: it
    lists them from the lines kept beside their module names, which stay their commands' own lines."""
    import subprocess
    import sys

    probe = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from faceatlas.cli.main import app\n"
        "result = CliRunner().invoke(app, ['--help'], terminal_width=100)\n"
        "assert result.exit_code == 0, result.output\n"
        "print(json.dumps([result.output, sorted(m for m in sys.modules if m.startswith('faceatlas.'))]))\n"
    )
    listed, loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                               check=True).stdout.strip().splitlines()[-1])
    assert [m for m in loaded if m.startswith(("faceatlas.cli.", "faceatlas.service", "faceatlas.apps"))
            and m not in ("faceatlas.cli.main", "faceatlas.cli.errors", "faceatlas.cli.files")] == []
    from typer.core import TyperGroup

    from faceatlas.cli import main

    assert "serve" in listed and "Batch jobs on Ray" in listed
    monkeypatch.setattr(main._Commands, "format_help", TyperGroup.format_help)  # the real commands, loaded
    assert runner.invoke(app, ["--help"], terminal_width=100).output == listed


def test_readme_gallery_steps_run_in_order(shared, monkeypatch, tmp_path):
    """Followed line by line, the README's Galleries block failed at `gallery merge` (it merged a
    subject nothing had enrolled): every line of it runs, in order, on a fresh database."""
    repo = Path(__file__).resolve().parents[1]
    text = (repo / "README.md").read_text()
    block = text[text.index("## Galleries"):].split("```bash\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'faceatlas.db'}")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))
    monkeypatch.chdir(tmp_path)  # `gallery export staff staff.parquet` writes here
    ran = []
    for line in block.splitlines():
        if not line.startswith("faceatlas "):
            continue  # the `export FACEATLAS_DATABASE_URL=...` line: set above
        command = [str((repo / word).resolve()) if word.startswith("../shared") else word
                   for word in shlex.split(line.split("  #", 1)[0])]
        result = runner.invoke(app, command[1:])
        assert result.exit_code == 0, f"{line}\n{result.output}"
        ran.append(command[2])
    assert ran[-2:] == ["merge", "export"] and (tmp_path / "staff.parquet").is_file()


def test_pack_names_are_matched_without_blanks_and_case(examples, monkeypatch):
    """`--pack " SCRFD-MBF"` and `FACEATLAS_PACK=Scrfd-Mbf` were "no model pack named"; both are scrfd-mbf."""
    photo = str(examples / "examples/two_people.jpg")
    option = runner.invoke(app, ["detect", photo, "--pack", " SCRFD-MBF", "--json"])
    monkeypatch.setenv("FACEATLAS_PACK", "Scrfd-Mbf ")
    variable = runner.invoke(app, ["detect", photo, "--json"])
    for result in (option, variable):
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout.strip().splitlines()[-1])["pack"] == "scrfd-mbf"
    monkeypatch.setenv("FACEATLAS_PACK", "  ")  # set to blanks: none set, as --pack '' (was "no pack named ''")
    assert EngineSettings().pack is None and EngineSettings().pack_name() == DEFAULT_PACK


def test_models_list_and_info_show_a_corrupt_file(shared, tmp_path, monkeypatch):
    """A model file with one byte flipped (its sha256 not the published one) was listed as on disk
    and its path shown as found, though loading it is refused; it is now "corrupt"."""
    for name in ("insightface/det_500m.onnx", "recognition/mobilefacenet_128d.onnx"):
        copy = tmp_path / "models" / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes((shared / "models" / name).read_bytes())
    flipped = bytearray((tmp_path / "models/insightface/det_500m.onnx").read_bytes())
    flipped[1000] ^= 0xFF
    (tmp_path / "models/insightface/det_500m.onnx").write_bytes(bytes(flipped))
    monkeypatch.setenv("FACEATLAS_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACEATLAS_OFFLINE", "1")
    listed = {row["name"]: row for row in json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)}
    assert listed["scrfd-mbf"]["available"] is False  # it was True
    assert listed["scrfd-mbf"]["state"] == "corrupt"
    assert listed["dlib"]["state"] == "ready" and listed["yunet-mbf"]["state"] == "missing"  # no YuNet copied
    assert "corrupt" in runner.invoke(app, ["models", "list"], terminal_width=200).stdout
    info = json.loads(runner.invoke(app, ["models", "info", "scrfd-mbf", "--json"]).stdout)
    files = {f["name"]: f for f in info["files"]}
    detector, recogniser = files["insightface/det_500m.onnx"], files["recognition/mobilefacenet_128d.onnx"]
    assert detector["state"] == "corrupt" and detector["sha256_found"] != detector["sha256"]
    assert recogniser["state"] == "ready" and files["antispoof/2.7_80x80_MiniFASNetV2.onnx"]["state"] == "missing"
    text = runner.invoke(app, ["models", "info", "scrfd-mbf"], terminal_width=200).stdout
    assert "det_500m.onnx: corrupt:" in text


def test_compare_names_the_image_without_a_face(examples, tmp_path):
    """`compare a.jpg noface.png` said "no face found in the image": which of the two?"""
    photo = examples / "examples/obama-720p.jpg"
    noface = tmp_path / "noface.png"
    cv2.imwrite(str(noface), cv2.imread(str(photo))[:160, :160])  # a corner of the photo: wall, no face
    for args in ([photo, noface], [noface, photo]):
        result = runner.invoke(app, ["compare", *map(str, args), "-p", "scrfd-mbf", "--json"])
        assert result.exit_code == 1, result.output  # an input without an answer: 1 (README's exit statuses)
        error = json.loads(result.stdout.strip().splitlines()[-1])
        assert error["error"] == "no_face" and str(noface) in error["message"], error
