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


def test_several_paths_to_a_one_input_command_name_the_command_that_takes_them(tmp_path, capsys):
    """`detect P_ED.nii.gz P_ES.nii.gz` (or `detect P_E*.nii.gz`, which the shell turns into both files) and
    `function P_ED P_ES` ended with argparse's `cardiac-landmarks: error: unrecognized arguments: ...` under the
    usage of the whole tool: nothing said that `study` takes several files of one study and `function` an ED/ES
    pair as --ed/--es. The error is now the command's own (its usage), and for paths it says what the command
    takes and what to run instead; other unknown arguments keep argparse's words."""
    import pytest

    from CardiacLandmarksLib.cli import main

    ed, es = tmp_path / "P1_ED.nii.gz", tmp_path / "P1_ES.nii.gz"
    for f in (ed, es):
        f.write_bytes(b"")  # only their existence is read before the run would start
    cases = [
        (["detect", str(ed), str(es), "-o", "x"],
         ["usage: cardiac-landmarks detect", f"detect: error: unrecognized arguments: {es}. detect takes one series",
          "and got 2 paths", "cardiac-landmarks study PATH PATH ... -o OUT",
          "cardiac-landmarks function --ed ED_FILE --es ES_FILE -o OUT"]),
        (["function", str(es), str(ed), "-o", "x"],  # the order given is not the order of the names
         ["usage: cardiac-landmarks function", f"Two 3-D volumes: cardiac-landmarks function --ed {ed} --es {es} -o OUT"]),
        (["function", str(ed), str(tmp_path), "-o", "x"],
         ["Two 3-D volumes: cardiac-landmarks function --ed ED_FILE --es ES_FILE -o OUT"]),
        (["review", str(tmp_path), str(tmp_path), str(tmp_path)],
         ["and got 3 paths", "Every study of a batch at once: cardiac-landmarks review OUT/studies"]),
        (["lv-length", str(ed), str(es)], ["lv-length takes one result", "and got 2 paths"]),
        (["lax-track", str(ed), str(es), "--points", str(ed), "-o", "x"],  # --points is no input path
         ["lax-track takes one long-axis cine", "and got 2 paths"]),
    ]
    for argv, texts in cases:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2, argv
        for text in texts:
            assert text in err, (argv, text, err)
    for argv, line in ((["detect", str(ed), "-o", "x", "--bogus"], "cardiac-landmarks detect: error: unrecognized "
                                                                      "arguments: --bogus\n"),
                       (["detect", str(ed), "not_here.nii.gz", "-o", "x"], "unrecognized arguments: not_here.nii.gz\n"),
                       (["--bogus"], "cardiac-landmarks: error: unrecognized arguments: --bogus\n")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2 and capsys.readouterr().err.endswith(line), argv
