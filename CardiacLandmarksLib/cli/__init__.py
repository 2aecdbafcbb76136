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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
