"""CLI sub-command ``models``: list the bundled models of the catalogue, or refresh it after a retrain."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the bundled models (catalogue), or --refresh it after copying a retrained model")
    p.add_argument("--refresh", action="store_true",
                   help="rewrite version and SHA256 of every catalogue entry from its card and weights")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from CardiacLandmarksLib.models import catalogue

    before = set(catalogue.catalogue()) if args.refresh else set()
    entries = catalogue.refresh() if args.refresh else list(catalogue.catalogue().values())
    for name in sorted(before - {e.name for e in entries}):
        print(f"note: {name} is no longer listed in the catalogue (its weights and card were removed)", file=sys.stderr)
    width = max([8, *(len(e.version) for e in entries)])  # a site's version (1.7.0-site1) keeps the columns
    for e in entries:
        if not args.refresh:
            catalogue.checked_files(e.name)  # a mismatch is a named error, printed by main()
        timing = f"{e.cpu_ms:g} ms/image CPU" if e.cpu_ms else "timing not measured"
        # the default model of a task and view serves every sequence that no other model of them is chosen for
        others = [o for o in entries if o is not e and o.task == e.task and o.view == e.view and o.sequences]
        taken = [f"{', '.join(o.sequences)} ({o.name})" for o in others]
        serves = (f"sequences {', '.join(e.sequences)}" if e.sequences else
                  "every sequence" + (f" but {', '.join(taken)}" if taken else ""))
        print(f"{e.name:18s} {e.version:{width}s} {e.task:22s} view {e.view or '-':4s} {serves}; {e.input_px} px at "
              f"{e.input_mm} mm, {timing}, sha256 {e.sha256[:12]}, {e.licence}")
    for e in entries:  # a model whose own card says it missed its targets, copied in anyway: said, not refused
        verdict = catalogue.read_card(Path(e.card).stem).get("bundle_verdict") or {}
        if verdict.get("bundle") is False:
            reasons = "; ".join(verdict.get("reasons", []))[:300]
            print(f"warning: {e.name} {e.version}: its card says DO NOT BUNDLE ({reasons}); every run with it records "
                  "it, and detection may find nothing", file=sys.stderr)
    return 0
