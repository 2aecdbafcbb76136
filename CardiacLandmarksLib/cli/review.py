"""``cardiac-landmarks review PATH``: review and correct flagged landmarks in a web browser.

Needs the optional ``web`` extra (trame-slicer): ``pip install "cardiac-landmarks[web]"``.
"""

from __future__ import annotations

import argparse
import logging

from CardiacLandmarksLib.cli.study import whole_number

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "review",
        help="review and correct flagged landmarks in a web browser (needs the 'web' extra)",
        description="Serve a result folder of 'detect' (or a folder of them, one per study) to a web browser: "
                    "Slicer's slice view with the landmarks coloured by flag, a review queue of low and absent "
                    "points, drag/place to correct, measurements updated live, Save writes the command line's files "
                    "(old ones kept as .bak-<time>); corrections not saved yet are kept in the folder and restored "
                    "at the next start. Listens on 127.0.0.1 unless --host says otherwise; any other "
                    "address needs the access token printed at start.")
    p.add_argument("path", help="result folder (landmarks.json, *.mrk.json, measurements.csv) or a folder of them")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; use an SSH tunnel to reach it "
                        "from elsewhere). Any non-loopback address requires the access token.")
    p.add_argument("--port", type=whole_number("--port", 0, 65535), default=8080, help="port (default 8080; 0 = any free port)")
    p.add_argument("--require-token", action="store_true",
                   help="require the access token on loopback too (always required beyond loopback)")
    p.set_defaults(func=cmd_review)


def cmd_review(args: argparse.Namespace) -> int:
    import importlib.util
    import socket

    from CardiacLandmarksLib.core.errors import CardiacLandmarksError

    missing = [m for m in ("trame", "trame_slicer", "slicer") if importlib.util.find_spec(m) is None]
    if missing:
        raise CardiacLandmarksError(
            f"the review app needs the 'web' extra ({', '.join(missing)} not installed): "
            "pip install 'cardiac-landmarks[web]' (in its own environment: it needs slicer-core 5.11)")
    from CardiacLandmarksLib.web import app as webapp
    from CardiacLandmarksLib.web import security

    if args.port == 0:  # any free port, known before the URL is printed
        with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as s:
            s.bind((args.host, 0))
            args.port = s.getsockname()[1]
    token = security.new_token() if security.token_required(args.host, args.require_token) else None
    app = webapp.build_app(args.path, token=token)
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    url = f"http://{shown_host}:{args.port}/" + (f"?token={token}" if token else "")
    n_cases = len(app.cases)
    n_flagged = len(app._queue())
    print(f"Reviewing {app.root}: {n_cases} result folder(s), {n_flagged} flagged point(s).")
    if app.restored:
        print(f"Restored the unsaved corrections of {len(app.restored)} result folder(s) from when the app was last "
              f"stopped ({', '.join(app.restored[:5])}{' ...' if len(app.restored) > 5 else ''}): Save to write them.")
    if token:
        print(f"Access token (every request must carry it): {token}")
    print(f"Open {url}")
    if security.is_loopback(args.host):
        print(f"From another machine: ssh -L {args.port}:127.0.0.1:{args.port} USER@THIS_HOST, then open the same URL.")
    print("Stop with Ctrl+C.", flush=True)
    webapp.serve(app, host=args.host, port=args.port)
    return 0
