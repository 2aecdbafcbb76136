"""Every option of every ``cardiac-landmarks`` command says what it does in ``--help``."""

from __future__ import annotations


def test_every_option_has_a_help_text():
    from CardiacLandmarksLib.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    bare = [f"{name} {a.option_strings[-1]}" for name, sp in sub.choices.items() for a in sp._actions
            if a.option_strings and a.dest != "help" and not (a.help or "").strip()]
    assert bare == [], bare  # e.g. 'benchmark --repeats', 'study --device' had none
