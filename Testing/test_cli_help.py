"""Every option of every ``cardiac-landmarks`` command says what it does in ``--help``."""

from __future__ import annotations


def test_every_option_has_a_help_text():
    from CardiacLandmarksLib.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    bare = [f"{name} {a.option_strings[-1]}" for name, sp in sub.choices.items() for a in sp._actions
            if a.option_strings and a.dest != "help" and not (a.help or "").strip()]
    assert bare == [], bare  # e.g. 'benchmark --repeats', 'study --device' had none


# (argv, what the error must say): each ended in a Python traceback (train --epochs 0: after loading the data;
# benchmark --slices 0: ZeroDivisionError; review --port 99999: OverflowError) or was taken as given
# (lax-track --slice -1, perfusion --pixel-size 100)
REFUSED = [
    (["train", "--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["train", "--epochs", "-3"], "--epochs must be at least 1, got -3"),
    (["train", "--threads", "0"], "--threads must be at least 1, got 0"),
    (["train", "--lr", "-1"], "--lr must be a positive number, got '-1'"),
    (["train", "--ema-decay", "1"], "--ema-decay must be from 0 to below 1, got '1'"),
    (["train", "--seg-weight", "-2"], "--seg-weight must be 0 or more, got '-2'"),
    (["train", "--alpha", "2"], "--alpha must be from 0 to 1, got '2'"),
    (["benchmark", "--slices", "0"], "--slices must be at least 1, got 0"),
    (["benchmark", "--phases", "x"], "--phases must be a whole number, got 'x'"),
    (["benchmark", "--repeats", "0"], "--repeats must be at least 1, got 0"),
    (["lax-track", "a", "--points", "b", "-o", "c", "--slice", "-1"], "--slice must be at least 0, got -1"),
    (["perfusion", "x", "-o", "y", "--pixel-size", "100"], "argument --pixel-size: pixel size 100 mm is not a cardiac MR pixel"),
    (["review", "x", "--port", "99999"], "--port must be 0 to 65535, got 99999"),
]


def test_option_values_no_run_can_use_are_refused_by_name(capsys):
    import pytest

    from CardiacLandmarksLib.cli import main

    for argv, text in REFUSED:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
        assert text in capsys.readouterr().err, argv


def test_version_names_the_tool_and_every_bundled_model(capsys):
    """`cardiac-landmarks --version` was an 'unrecognized arguments' error: a reader or cohort analyst reporting
    figures had no way to name the version that made them short of opening a run.json. It now prints the installed
    tool's version and each bundled model's name and version (read here from the catalogue file), and exits 0."""
    import json
    from importlib.metadata import version
    from pathlib import Path

    import pytest

    from CardiacLandmarksLib.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"cardiac-landmarks {version('cardiac-landmarks')}"
    catalogue = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "catalogue.json"
    names = [(e["name"], e["version"]) for e in json.loads(catalogue.read_text())["models"]]
    assert len(lines) == 1 + len(names) >= 6
    for name, ver in names:
        assert any(line.strip().startswith(f"{name} {ver} (") for line in lines[1:]), name
