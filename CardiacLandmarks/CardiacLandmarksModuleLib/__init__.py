"""Slicer-side helpers of the CardiacLandmarks module.

* :mod:`.nodes` converts MRML nodes (volumes, volume sequences, markups point lists, tables)
  to and from the types of the pure-Python library ``CardiacLandmarksLib`` (``CMRSeries``,
  ``LandmarkSet``). It is the only place that knows about RAS; the library works in LPS.
* :mod:`.names`: attribute and reference names of a result node.
* :mod:`.lax` shows long-axis results: valve points and APEX per phase, the LV-length line, table
  and plot, and re-tracking when a point is corrected.
* :mod:`.perfusion` (logic) and :mod:`.perfusion_panel` (the panel section) show the AHA
  16-segment perfusion report: table, bull's-eye, sector segmentations, editable RV insertion.
* :mod:`.dependencies` checks and installs the Python packages the library needs, on request
  (never at import).

Nothing numerical lives here: detection and measurements are done by the library.
"""
