"""``cardiac-landmarks`` command line: one sub-command per job.

Each feature module registers its own sub-commands through a ``register(subparsers)``
function, listed in :data:`COMMAND_MODULES`; this file only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, Interrupted

#: exit status of a run stopped by Ctrl-C (128 + SIGINT, as a shell reports it)
EXIT_INTERRUPTED = 130

#: modules (relative to this package) that define ``register(subparsers)``
COMMAND_MODULES = ("sax", "perfusion", "lax", "models", "review", "function", "study", "batch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardiac-landmarks",
        description="Cardiac MR landmarks (A-RVI, I-RVI, C-LV, mitral points, apex), RVI angle, "
        "LV length and shortening, LV/RV volumes, EF and LV mass, and AHA perfusion reports; one study or a cohort.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    parser.add_argument("--version", action=_VersionAction,
                        help="show the tool's version and its bundled models' (as run.json records them) and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


class _VersionAction(argparse.Action):
    """``--version``: print :func:`version_text` as it is (argparse's own action would reflow its lines) and exit."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def version_text() -> str:
    """``cardiac-landmarks 0.1.0`` and a line per bundled model (name, version, task), for reports and bug
    reports: the figures a run gives depend on both (each run's ``run.json`` records them too)."""
    from CardiacLandmarksLib.io.outputs import _tool_version

    lines = [f"cardiac-landmarks {_tool_version()}"]
    try:
        from CardiacLandmarksLib.models.catalogue import catalogue

        lines += [f"  {e.name} {e.version} ({e.task}{', ' + e.view.upper() if e.view else ''})"
                  for e in catalogue().values()]
    except CardiacLandmarksError as exc:  # a damaged model folder: the version still shows
        lines.append(f"  models: cannot read the catalogue ({exc})")
    return "\n".join(lines)


def written_lines(paths) -> list[str]:
    """The ``wrote ...`` lines of a command's output, one per file, except that a run of point lists numbered by
    phase (``landmarks_phase00.mrk.json`` ... ``landmarks_phase19.mrk.json``: one per phase of a cine,
    :func:`CardiacLandmarksLib.io.markups.write_markups`) is one line naming the first and the last, so that what
    the run measured is not pushed off the screen. Every file is still listed in ``run.json``.

    Args:
        paths: the files written, in the order they were written (str or Path).

    Returns:
        The lines, each starting ``"  wrote "``.
    """
    import re
    from pathlib import Path

    numbered = re.compile(r"(.+_phase)(\d+)\.mrk\.json")
    lines: list[str] = []
    group: list[Path] = []
    last: tuple | None = None  # (folder, stem, phase) of the group's last file

    def flush() -> None:
        if len(group) > 2:
            lines.append(f"  wrote {group[0]} ... {group[-1].name} ({len(group)} point lists, one per phase)")
        else:
            lines.extend(f"  wrote {g}" for g in group)
        group.clear()

    for p in map(Path, paths):
        m = numbered.fullmatch(p.name)
        here = (p.parent, m.group(1), int(m.group(2))) if m else None
        if not (here and last and here[:2] == last[:2] and here[2] == last[2] + 1):
            flush()
        if here:
            group.append(p)
        else:
            lines.append(f"  wrote {p}")
        last = here
    flush()
    return lines


#: what each command that takes one input path takes, for :func:`extra_arguments_text`
ONE_INPUT = {
    "detect": "one series: a DICOM folder or file, or one image file",
    "function": "one cine (a DICOM folder or file, or a 4-D image file), or two 3-D volumes as --ed and --es",
    "lax-track": "one long-axis cine (its points with --points)",
    "lv-length": "one result: landmarks.json, a .mrk.json file or a folder of them",
    "review": "one result folder, or one folder of them (a batch's studies/ folder)",
    "batch": "one manifest or one folder of studies",
    "apply-review": "one output folder of 'study' or 'batch'",
}

#: the next step for several paths given to a command of :data:`ONE_INPUT`
_SEVERAL_HINT = {
    "detect": "several files or series of one study (an ED/ES pair, a SAX stack beside long-axis cines): "
              "cardiac-landmarks study PATH PATH ... -o OUT; volumes and EF from an ED/ES pair: "
              "cardiac-landmarks function --ed ED_FILE --es ES_FILE -o OUT",
    "lax-track": "a cine at a time; or all the series of one study: cardiac-landmarks study PATH PATH ... -o OUT",
    "review": "every study of a batch at once: cardiac-landmarks review OUT/studies",
    "batch": "several studies: a folder holding one sub-folder (or archive) per study, or a CSV manifest with a row "
             "per study (README, 'A cohort')",
}


def extra_arguments_text(command: str | None, given: list[str], extra: list[str]) -> str:
    """The error for arguments a command does not take (argparse's ``unrecognized arguments: ...``), with the way
    to do what was meant when they are paths: ``detect ED.nii.gz ES.nii.gz`` (or an unquoted shell pattern such as
    ``patient003_E*.nii.gz``, which the shell turns into every file it matches) names ``study`` and ``function``;
    ``function ED ES`` names ``--ed``/``--es`` with the two files in the order their names tell (``_ED``, ``_ES``).

    Args:
        command: the sub-command (None: none was given).
        given: the input paths argparse took for the command (its positional arguments), in order.
        extra: the arguments it did not take, in order.

    Returns:
        One line for ``parser.error``.
    """
    from pathlib import Path

    text = f"unrecognized arguments: {' '.join(extra)}"
    paths = [e for e in extra if not e.startswith("-") and Path(e).expanduser().exists()]
    if command not in ONE_INPUT or not paths:
        return text
    n = len(given) + len(paths)
    text += f". {command} takes {ONE_INPUT[command]}" + (
        f", and got {n} paths (an unquoted pattern such as *_E?.nii.gz gives every file it matches)" if n > 1 else "")
    if command == "function" and n == 2:
        from CardiacLandmarksLib.study.routing import ed_es_of

        both = [*given, *paths]
        phase = [ed_es_of(Path(p).name.split(".")[0]) for p in both]
        if sorted(filter(None, phase)) == ["ED", "ES"]:
            ed, es = (both if phase[0] == "ED" else both[::-1])
            return text + f". Two 3-D volumes: cardiac-landmarks function --ed {ed} --es {es} -o OUT"
        return text + ". Two 3-D volumes: cardiac-landmarks function --ed ED_FILE --es ES_FILE -o OUT"
    hint = _SEVERAL_HINT.get(command)
    return text + (f". {hint[0].upper()}{hint[1:]}" if hint else "")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse's own error, with the way to do what was meant (several paths to a one-input command)
        command = getattr(args, "command", None)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        positional = {"lv-length": "points", "review": "path", "apply-review": "path"}.get(command, "input")
        given = [v] if isinstance(v := getattr(args, positional, None), str) else []
        (sub.choices.get(command) or parser).error(extra_arguments_text(command, given, extra))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    progress = logging.getLogger("CardiacLandmarksLib.progress")  # the library's lines for a person
    if not progress.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
        progress.propagate = False
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CardiacLandmarksError as exc:
        print("\n".join([f"cardiac-landmarks: error: {exc}", *_unfinished_lines()]), file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(interrupted_text(exc), file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:  # a run that ended without run.json (an error, or a run in-process, e.g. a test) holds no folder
        from CardiacLandmarksLib.io.outputs import release_held_folders

        release_held_folders()


def interrupted_text(exc: KeyboardInterrupt) -> str:
    """What a run stopped by Ctrl-C says instead of a traceback: what it left where, and how to go on.

    See :func:`_unfinished_lines`; a :class:`~CardiacLandmarksLib.core.errors.Interrupted` adds its own message.
    """
    head = "cardiac-landmarks: interrupted (Ctrl-C)" + (f": {exc}" if isinstance(exc, Interrupted) and str(exc) else "")
    return "\n".join([head, *_unfinished_lines()])


def _unfinished_lines() -> list[str]:
    """After a run that ended early (an error, Ctrl-C): remove the output folders it created and left empty, and
    name each folder it had begun writing (an incomplete run, no ``run.json``) with the backup of the earlier run."""
    from CardiacLandmarksLib.io.outputs import (
        discard_unused_outputs,
        release_held_folders,
        unfinished_outputs,
    )

    release_held_folders()  # first: the lock files would keep an empty folder from being removed
    discard_unused_outputs()  # a refused run leaves no empty result folder behind
    lines = []
    for out in unfinished_outputs():
        line = f"  {out.path} holds an incomplete run (no run.json): run the command again into it, or delete it"
        if out.backup_dir is not None:
            line += f"; the earlier run's files are in {out.backup_dir.name}/"
        lines.append(line)
    return lines


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
