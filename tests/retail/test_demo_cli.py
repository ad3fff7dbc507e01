"""`faceatlas demo retail` end to end on a tiny day."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from faceatlas.cli.main import app


def test_demo_retail_writes_analytics(shared: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACEATLAS_SHARED", str(shared))
    result = CliRunner().invoke(app, ["demo", "retail", "--members", "3", "--visits", "6", "--seed", "1",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Store analytics" in result.output and "Staff alerts" in result.output
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert truth["visits"] == 6 and truth["new_members"] == 3
    assert (tmp_path / "retail_analytics.csv").is_file() and (tmp_path / "retail_visits_per_hour.png").is_file()


def test_demo_uses_the_settings_pack_unless_one_is_named(tmp_path: Path, monkeypatch) -> None:
    """The demo named scrfd-mbf (non-commercial) when FACEATLAS_PACK was unset, while every other
    command takes the settings' default (yunet-frfeature, commercially usable)."""
    import faceatlas.cli.demo as demo
    from faceatlas.errors import ModelMissing
    from faceatlas.settings import DEFAULT_PACK

    asked: list[str] = []

    def analyzer(pack: str, **_: object) -> None:
        asked.append(pack)
        raise ModelMissing("stop here")

    monkeypatch.setattr(demo, "FaceAnalyzer", analyzer)
    for person in ("Ann", "Bob"):  # a day of one member takes two people of two photos (the arguments come first)
        (tmp_path / "lfw" / person).mkdir(parents=True)
        for photo in ("1.jpg", "2.jpg"):
            (tmp_path / "lfw" / person / photo).write_bytes(b"")
    command = ["demo", "retail", "--lfw", str(tmp_path / "lfw"), "--members", "1", "--out", str(tmp_path / "out")]
    for extra, env in (([], None), ([], "yunet-mbf"), (["--pack", "dlib"], "yunet-mbf")):
        if env:
            monkeypatch.setenv("FACEATLAS_PACK", env)
        assert CliRunner().invoke(app, command + extra).exit_code == 2
    assert asked == [DEFAULT_PACK, "yunet-mbf", "dlib"] and DEFAULT_PACK == "yunet-frfeature"


def test_a_day_of_no_visits_or_more_members_than_people_is_refused(shared: Path, tmp_path: Path, monkeypatch) -> None:
    """`--visits -1` ran one visit, and `--members 100000` worked for over a minute without a word
    (LFW has 1,680 people with two photos or more): both are refused before any enrolment; and
    before anything is made (`--members 0 --out d0` left d0/retail.db and drew an empty progress bar)."""
    monkeypatch.setenv("FACEATLAS_SHARED", str(shared))
    for option, value in (("--visits", "-1"), ("--members", "100000"), ("--members", "0")):
        out = tmp_path / f"d{value}"
        result = CliRunner().invoke(app, ["demo", "retail", option, value, "--out", str(out), "-p", "scrfd-mbf"])
        assert result.exit_code == 2 and "validation_error" in result.output, (option, value, result.output)
        assert result.stdout == "" and result.stderr.startswith("error (validation_error)"), result.stderr
        assert not out.exists(), (option, value)


def test_a_spoof_that_is_no_photo_and_a_missing_lfw_are_one_line_on_stderr(shared: Path, tmp_path: Path,
                                                                              monkeypatch) -> None:
    """`--spoof /nonexistent.jpg` was dropped (exit 0), `--spoof pairs.txt` failed at the 19th of 20
    events, and every error went to stdout after an empty progress bar."""
    monkeypatch.setenv("FACEATLAS_SHARED", str(shared))
    notes = tmp_path / "pairs.txt"
    notes.write_text("not a photo")
    for option, value in (("--spoof", str(tmp_path / "nonexistent.jpg")), ("--spoof", str(notes)),
                          ("--lfw", str(tmp_path / "nowhere"))):
        result = CliRunner().invoke(app, ["demo", "retail", option, value, "--out",
                                                          str(tmp_path / "out"), "-p", "scrfd-mbf"])
        assert result.exit_code == 2 and result.stdout == "", (option, result.stdout)
        assert len([line for line in result.stderr.splitlines() if line.startswith("error")]) == 1, result.stderr


def test_a_day_with_more_members_than_the_photos_allow_writes_nothing(shared: Path, tmp_path: Path,
                                                                      monkeypatch) -> None:
    """`--members 300` (LFW has 285 people the engine casts as members) failed after 70 s with a
    traceback (RuntimeError), exit 1, and left retail.db in --out. How many can be cast is known
    only once the photos are analysed: here an LFW folder of real photos in which each person's
    second photo is someone else's (no member can be cast); one line, exit 2, --out as it was."""
    monkeypatch.setenv("FACEATLAS_SHARED", str(shared))
    people = ["George_W_Bush", "Tony_Blair", "Colin_Powell", "Donald_Rumsfeld"]
    lfw = tmp_path / "lfw"
    for n, person in enumerate(people):
        other = people[(n + 1) % len(people)]
        (lfw / person).mkdir(parents=True)
        for name, source in (("a.jpg", person), ("b.jpg", other)):  # the second photo: another person
            photo = sorted((shared / "data" / "lfw" / "images" / source).glob("*.jpg"))[n]
            (lfw / person / name).write_bytes(photo.read_bytes())
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    for out in (tmp_path / "new" / "out", kept):
        result = CliRunner().invoke(app, ["demo", "retail", "--lfw", str(lfw), "--members", "2", "--visits", "3",
                                          "--out", str(out), "-p", "scrfd-mbf"])
        assert result.exit_code == 2 and result.stdout == "", result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
        assert errors == [line for line in result.stderr.splitlines() if line.strip() and "simulated" not in line]
        assert errors[0].startswith("error (validation_error): only 0 of the 4 LFW people can be members"), errors
    assert not (tmp_path / "new").exists() and sorted(p.name for p in kept.iterdir()) == ["notes.txt"]


def test_an_out_that_is_a_file_is_a_validation_error(shared: Path, tmp_path: Path, monkeypatch) -> None:
    """`touch afile; demo retail --out afile` said `error (error): afile: file exists`: a generic code."""
    monkeypatch.setenv("FACEATLAS_SHARED", str(shared))
    afile = tmp_path / "afile"
    afile.write_text("")
    for out, where in ((afile, "is a file"), (afile / "sub", f"is under {afile}, a file")):
        result = CliRunner().invoke(app, ["demo", "retail", "--members", "2", "--visits", "3", "--out", str(out),
                                          "-p", "scrfd-mbf"])
        assert result.exit_code == 2 and result.stdout == "", result.output
        assert result.stderr.strip() == (f"error (validation_error): --out {out} {where}, not a folder: give a "
                                         "folder (made if missing)"), result.stderr
    assert afile.read_text() == ""
