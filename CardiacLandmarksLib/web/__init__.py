"""Browser app to review and correct flagged landmarks (``cardiac-landmarks review PATH``).

Built on trame-slicer: Slicer's own slice view and markups widgets, rendered on the server and
streamed to the browser. Needs the optional ``web`` extra (``pip install "cardiac-landmarks[web]"``);
the rest of the library never imports this package. All numerical work (reading results,
corrections, measurements, saving) is done by :mod:`CardiacLandmarksLib.results` and :mod:`CardiacLandmarksLib.core.review`.

Modules: :mod:`.security` (access token, loopback check, paths kept inside the reviewed
folder; no trame import) and :mod:`.app` (the trame application).
"""
