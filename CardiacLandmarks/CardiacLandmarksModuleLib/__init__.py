"""Slicer-side helpers of the CardiacLandmarks module.

* :mod:`.nodes` converts MRML nodes (volumes, volume sequences, markups point lists, tables)
  to and from the types of the pure-Python library ``CardiacLandmarksLib`` (``CMRSeries``,
  ``LandmarkSet``). It is the only place that knows about RAS; the library works in LPS.
* :mod:`.dependencies` checks and installs the Python packages the library needs, on request
  (never at import).

Nothing numerical lives here: detection and measurements are done by the library.
"""
