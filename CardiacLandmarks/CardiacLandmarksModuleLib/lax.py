"""Long-axis (2CH/3CH/4CH) results in MRML: point lists, the LV-length line, table and plot.

A LAX result is a "hub" ``vtkMRMLTextNode`` like the short-axis one (attribute
``CardiacLandmarks.Kind`` = ``"lax"``) that references, per slice:

* a markups point list with the view's three points (two mitral-valve points, ``APEX``;
  for a cine the proxy node of a markups sequence synchronised with the image sequence),
  coloured and labelled by confidence as the SAX result (:mod:`.nodes`);
* a ``vtkMRMLMarkupsLineNode`` "LV length" from ``APEX`` to the mitral midpoint of the
  phase shown (locked: the user moves the points, not the line);
* a ``vtkMRMLTableNode`` (Phase, Time (ms), LV length (mm), Status) and a
  ``vtkMRMLPlotSeriesNode`` of it in one ``vtkMRMLPlotChartNode`` "LV length over the
  cardiac cycle".

Corrections: the library result (``CardiacLandmarksLib.lax.pipeline.detect_lax``) is kept as
detected; every user correction is a ``(name, slice) -> {phase: position}`` entry. The
current landmarks are rebuilt from the detection and the corrections with
``tracking.correct_landmark`` / ``tracking.track_landmarks`` (corrected points are anchors,
the other phases are re-tracked), so moving a point back onto the detection undoes it.
LV length and shortening come from ``lax_measurements.lv_length_curve`` (Xue et al. 2021).

All numbers are the library's; this module only moves them in and out of MRML.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import slicer
import vtk
from slicer.i18n import tr as _

from . import names, nodes

logger = logging.getLogger(__name__)

KIND_ATTRIBUTE = "CardiacLandmarks.Kind"
SUMMARY_ATTRIBUTE = "CardiacLandmarks.LaxSummary"
LINE_REFERENCE = "lvLengthLine"
CHART_REFERENCE = "lvLengthChart"
PLOT_SERIES_REFERENCE = "lvLengthSeries"
#: columns of the LV-length table (name, vtk array class)
COLUMNS = (("Phase", "vtkIntArray"), ("Time (ms)", "vtkDoubleArray"), ("LV length (mm)", "vtkDoubleArray"),
           ("Status", "vtkStringArray"))
#: a control point closer than this (mm) to the shown landmark counts as unmoved
TOLERANCE_MM = 1e-3


def isLaxResult(hub) -> bool:
    return hub is not None and hub.GetAttribute(KIND_ATTRIBUTE) == "lax"


class LaxState(nodes.ResultState):
    """In-memory view of one LAX result: the SAX result's state plus the trigger times, the user's
    corrections, the re-tracked landmarks and their LV-length curves."""

    def __init__(self, hub, lmset, geometry: dict, times_ms) -> None:
        super().__init__(hub, lmset, geometry)
        self.kind = "lax"
        self.timesMs = None if times_ms is None else np.asarray(times_ms, float)
        self.detectedSet = lmset
        self.corrections: dict[tuple[str, int], dict[int, np.ndarray | None]] = {}
        self.lmset = lmset  # current landmarks (corrections applied, re-tracked)
        self.curves = {}  # slice -> LVLengthCurve
        self.series = None  # CMRSeries, loaded when a correction needs the images

    def setCurrent(self, lmset) -> None:
        from CardiacLandmarksLib.lax.measurements import lv_length_curve

        self.lmset = lmset
        self.current = {(lm.name, lm.slice, lm.phase): lm for lm in lmset.landmarks}
        self.curves = {}
        for k in range(self.nSlices):
            if any(lm.slice == k for lm in lmset.landmarks):
                self.curves[k] = lv_length_curve(lmset, self.view, k, n_phases=self.nPhases)

    def landmarksOf(self, k: int, t: int) -> list:
        from CardiacLandmarksLib.core.landmarks import Landmark

        return [self.current.get((n, k, t)) or Landmark(n, k, t, False, np.full(3, np.nan), np.full(3, np.nan), 0.0,
                                                         "absent") for n in self.names]


def summaryOf(curve) -> dict:
    """JSON-ready summary of an :class:`LVLengthCurve` (NaN -> None)."""
    def f(x):
        return None if x is None or not np.isfinite(x) else round(float(x), 4)

    ed, es = curve.ed_phase, curve.es_phase
    return {"view": curve.view, "slice": int(curve.slice), "ed_phase": ed, "es_phase": es,
            "length_ed_mm": f(curve.lengths_mm[ed]) if ed is not None else None,
            "length_es_mm": f(curve.lengths_mm[es]) if es is not None else None,
            "shortening_pct": f(curve.shortening_pct), "ed_rule": curve.ed_rule, "es_rule": curve.es_rule,
            "low_phases": list(curve.low_phases), "notes": list(curve.notes),
            "length_ed_status": curve.status_of_phase(ed) if ed is not None else "n/a",
            "length_es_status": curve.status_of_phase(es) if es is not None else "n/a",
            "shortening_status": curve.shortening_status,
            "shortening_caveat": curve.shortening.caveat() if curve.shortening is not None else ""}


# ------------------------------------------------------------------------------------------ creation


def createNodes(logic, hub, inputNode, series, lmset, imageSequence, browser, baseName: str) -> None:
    """Add the LAX nodes of ``lmset`` to ``hub`` (point lists/sequences as the SAX result, plus line,
    table, plot). ``hub`` already holds the geometry and the references to the input."""
    scene = slicer.mrmlScene
    hub.SetAttribute(KIND_ATTRIBUTE, "lax")
    cine = imageSequence is not None and series.n_phases > 1
    state = LaxState(hub, lmset, json.loads(hub.GetAttribute(names.GEOMETRY_ATTRIBUTE)), None)
    state.setCurrent(lmset)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(f"{baseName} LV length chart"))
    times = nodes.triggerTimesOf(imageSequence) if cine else None
    if times is not None and len(times) != series.n_phases:
        times = None
    chart.SetTitle(_("LV length over the cardiac cycle"))
    chart.SetXAxisTitle(_("Time (ms)") if times is not None else _("Phase"))
    chart.SetYAxisTitle(_("LV length (mm)"))
    chart.SetLegendVisibility(False)
    hub.SetNodeReferenceID(CHART_REFERENCE, chart.GetID())
    hub.SetAttribute("CardiacLandmarks.TimesMs", json.dumps(None if times is None else [float(x) for x in times]))
    for k in range(series.n_slices):
        nodes.addSlicePointList(hub, scene.GenerateUniqueName(f"{baseName} {lmset.view.upper()} slice {k}"),
                                state.names, lambda t, k=k: state.landmarksOf(k, t), series.n_phases,
                                imageSequence if cine else None, browser)

        line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", scene.GenerateUniqueName(f"{baseName} LV length"))
        line.CreateDefaultDisplayNodes()
        line.SetLocked(True)
        display = line.GetDisplayNode()
        if display is not None:
            display.SetSelectedColor(0.2, 0.8, 1.0)
            display.SetPropertiesLabelVisibility(True)
            display.SetPointLabelsVisibility(False)
        hub.AddNodeReferenceID(LINE_REFERENCE, line.GetID())

        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{baseName} LV length"))
        hub.AddNodeReferenceID(names.TABLE_REFERENCE, table.GetID())
        plotSeries = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode",
                                             scene.GenerateUniqueName(_("LV length slice {slice}").format(slice=k)))
        plotSeries.SetAndObserveTableNodeID(table.GetID())
        plotSeries.SetXColumnName("Time (ms)" if times is not None else "Phase")
        plotSeries.SetYColumnName("LV length (mm)")
        plotSeries.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        plotSeries.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleSolid)
        plotSeries.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
        chart.AddAndObservePlotSeriesNodeID(plotSeries.GetID())
        hub.AddNodeReferenceID(PLOT_SERIES_REFERENCE, plotSeries.GetID())
    if cine:
        hub.SetNodeReferenceID(names.IMAGE_SEQUENCE_REFERENCE, imageSequence.GetID())
        hub.SetNodeReferenceID(names.BROWSER_REFERENCE, browser.GetID())
        logic._sequencesLogic().UpdateProxyNodesFromSequences(browser)


# ------------------------------------------------------------------------------------------ state


def attach(logic, hub) -> LaxState:
    """Build the state of a LAX result (after detection, or from a loaded scene) and observe its nodes."""
    from CardiacLandmarksLib.core.landmarks import LandmarkSet

    lmset = LandmarkSet.from_dict(json.loads(hub.GetText() or "{}"))
    times = json.loads(hub.GetAttribute("CardiacLandmarks.TimesMs") or "null")
    state = LaxState(hub, lmset, json.loads(hub.GetAttribute(names.GEOMETRY_ATTRIBUTE)), times)
    saved = json.loads(hub.GetAttribute("CardiacLandmarks.Corrections") or "[]")
    for name, k, t, pos in saved:
        state.corrections.setdefault((name, int(k)), {})[int(t)] = None if pos is None else np.asarray(pos, float)
    logic._states[hub.GetID()] = state
    if state.corrections:
        _rebuild(logic, hub, state)
    else:
        state.setCurrent(lmset)
    logic.observePointLists(hub, state)
    browser = hub.GetNodeReference(names.BROWSER_REFERENCE)
    if browser is not None and not logic.hasObserver(browser, vtk.vtkCommand.ModifiedEvent,
                                                     logic._onLaxBrowserModified):
        logic.addObserver(browser, vtk.vtkCommand.ModifiedEvent, logic._onLaxBrowserModified)
    refresh(logic, hub, state, writePoints=bool(state.corrections))
    return state


def detach(logic, hub) -> None:
    """Stop observing the browser unless another LAX result still uses it."""
    browser = hub.GetNodeReference(names.BROWSER_REFERENCE)
    others = [h for h in (slicer.mrmlScene.GetNodeByID(i) for i in logic._states)
              if h is not None and h is not hub and isLaxResult(h) and h.GetNodeReference(names.BROWSER_REFERENCE) is browser]
    if browser is not None and not others:
        logic.removeObserver(browser, vtk.vtkCommand.ModifiedEvent, logic._onLaxBrowserModified)


def _series(logic, hub, state):
    if state.series is None:
        state.series = logic.seriesFromNode(hub.GetNodeReference(names.INPUT_REFERENCE))
    return state.series


def _rebuild(logic, hub, state) -> None:
    """Current landmarks = detection + corrections, re-tracked from every corrected phase."""
    from CardiacLandmarksLib.lax import tracking

    lmset = state.detectedSet
    if not state.corrections:
        state.setCurrent(lmset)
        return
    series = _series(logic, hub, state)
    for (name, k), corrected in sorted(state.corrections.items()):
        if not corrected:
            continue
        for t, pos in sorted(corrected.items()):
            lmset = tracking.correct_landmark(series, lmset, name, t, pos, k=k, retrack=False)
        lmset = tracking.retrack_landmark(series, lmset, name, k)  # none on a cine of few phases
    state.setCurrent(lmset)


# ------------------------------------------------------------------------------------------ corrections


def setCorrection(logic, hub, name: str, k: int, t: int, positionLPS, confirm: bool = False) -> bool:
    """Record (or, back on the detection, drop) the user's position of ``name`` on slice ``k``,
    phase ``t``; re-track and refresh every node. Returns True when the landmarks changed.

    ``confirm``: the user confirmed the point where it is (``logic.confirmPoint``): kept as a correction even on
    the detection (the library then marks it ``confirmed``, ``tracking.correct_landmark``)."""
    state = logic._state(hub)
    if name not in state.names:
        raise ValueError(f"{name!r} is not a {state.view.upper()} landmark ({', '.join(state.names)})")
    if not (0 <= int(t) < state.nPhases) or not (0 <= int(k) < state.nSlices):
        raise ValueError(f"slice {k} / phase {t} out of range")
    pos = None if positionLPS is None else np.asarray(positionLPS, float).reshape(3)
    det = state.detected.get((name, k, t))
    onDetection = not confirm and det is not None and (
        (pos is None and not det.found)
        or (pos is not None and det.found and np.linalg.norm(pos - np.asarray(det.position, float)) <= TOLERANCE_MM))
    corrected = state.corrections.setdefault((name, k), {})
    before = {p: (None if v is None else v.copy()) for p, v in corrected.items()}
    if onDetection:
        corrected.pop(int(t), None)
    else:
        corrected[int(t)] = pos
    if not corrected:
        del state.corrections[(name, k)]
    same = before.keys() == corrected.keys() and all(
        (a is None and b is None) or (a is not None and b is not None and np.allclose(a, b, atol=1e-9))
        for a, b in ((before[p], corrected.get(p)) for p in before))
    if same:
        return False
    _rebuild(logic, hub, state)
    hub.SetAttribute("CardiacLandmarks.Corrections", json.dumps(
        [[n, kk, tt, None if v is None else [float(x) for x in v]]
         for (n, kk), d in sorted(state.corrections.items()) for tt, v in sorted(d.items())]))
    refresh(logic, hub, state, writePoints=True)
    return True


def reconcile(logic, hub, k: int) -> bool:
    """The user moved/placed/removed points of slice ``k`` on the phase shown: apply them as corrections (a point
    outside the image is put back, ``CardiacLandmarksLib.core.review.position_problem``)."""
    from CardiacLandmarksLib.core.review import position_problem

    state = logic._state(hub)
    pointList = logic.pointListNodes(hub)[k]
    t = logic.currentPhase(hub)
    changes = []
    for point in nodes.readPointList(pointList, state.names):
        cur = state.current.get((point.name, k, t))
        curFound = cur is not None and cur.found
        if point.defined != curFound or (point.defined and np.linalg.norm(
                point.position - np.asarray(cur.position, float)) > TOLERANCE_MM):
            problem = None
            if point.defined:
                series = _series(logic, hub, state)
                problem = position_problem(k, series.lps_to_ijk(np.asarray(point.position, float)),
                                           series.shape_ji)
            if problem:  # dragged past the image's edge (or off the plane in a 3D view): not taken, shown back
                logging.warning("CardiacLandmarks: %s of phase %d %s: put back where it was", point.name, t, problem)
                continue
            changes.append((point.name, point.position if point.defined else None))
    changed = False
    for name, pos in changes:
        changed |= setCorrection(logic, hub, name, k, t, pos)
    if not changed:
        # labels / colours may have been edited: show the state again
        _writeProxy(logic, hub, state, k, t)
    return changed


# ------------------------------------------------------------------------------------------ output


def _writeProxy(logic, hub, state, k: int, t: int) -> None:
    pointList = logic.pointListNodes(hub)[k]
    logic._reconciling = True
    try:
        for i, lm in enumerate(state.landmarksOf(k, t)):
            nodes.writePoint(pointList, i, lm)
    finally:
        logic._reconciling = False


def refresh(logic, hub, state=None, writePoints: bool = False) -> None:
    """Write the current state into the point lists (all phases), lines, tables and plot."""
    state = state or logic._state(hub)
    sequences = logic.markupsSequences(hub)
    t = logic.currentPhase(hub)
    logic._reconciling = True
    try:
        for k in range(state.nSlices):
            if writePoints:
                if sequences:
                    for p in range(state.nPhases):
                        item = sequences[k].GetNthDataNode(p)
                        if item is not None:
                            for i, lm in enumerate(state.landmarksOf(k, p)):
                                nodes.writePoint(item, i, lm)
                pointList = logic.pointListNodes(hub)[k]
                for i, lm in enumerate(state.landmarksOf(k, t)):
                    nodes.writePoint(pointList, i, lm)
            _fillTable(hub, state, k)
    finally:
        logic._reconciling = False
    updateLines(logic, hub, state)
    curve = state.curves.get(0)
    hub.SetAttribute(SUMMARY_ATTRIBUTE, json.dumps(summaryOf(curve) if curve is not None else {}))


def _fillTable(hub, state, k: int) -> None:
    tableNode = hub.GetNthNodeReference(names.TABLE_REFERENCE, k)
    curve = state.curves.get(k)
    if tableNode is None or curve is None:
        return
    table = vtk.vtkTable()
    arrays = []
    for name, cls in COLUMNS:
        array = getattr(vtk, cls)()
        array.SetName(name)
        arrays.append(array)
        table.AddColumn(array)
    for t in range(state.nPhases):
        lms = [state.current.get((n, k, t)) for n in state.names]
        status = curve.status_of_phase(t)  # ok | review | n/a (library rule)
        if any(lm is not None and lm.corrected and not lm.confirmed for lm in lms):
            status += " " + _("(corrected)")
        elif any(lm is not None and lm.confirmed for lm in lms):
            status += " " + _("(confirmed)")
        elif t in curve.low_phases:
            status += " " + _("(low confidence)")
        if t == curve.ed_phase:
            status += " (ED)"
        elif t == curve.es_phase:
            status += " (ES)"
        arrays[0].InsertNextValue(t)
        arrays[1].InsertNextValue(float(state.timesMs[t]) if state.timesMs is not None else float("nan"))
        arrays[2].InsertNextValue(float(curve.lengths_mm[t]))
        arrays[3].InsertNextValue(status)
    wasModifying = tableNode.StartModify()
    tableNode.SetAndObserveTable(table)
    titles = {"Phase": _("Phase"), "Time (ms)": _("Time (ms)"), "LV length (mm)": _("LV length (mm)"),
              "Status": _("Status")}
    for name, _cls in COLUMNS:
        tableNode.SetColumnTitle(name, titles[name])
    tableNode.SetColumnUnitLabel("Time (ms)", "ms")
    tableNode.SetColumnUnitLabel("LV length (mm)", "mm")
    tableNode.SetColumnDescription("LV length (mm)", _("distance from APEX to the mitral-valve midpoint "
                                                      "(Xue et al. 2021); recomputed when a landmark is moved"))
    tableNode.SetUseColumnTitleAsColumnHeader(True)
    summary = summaryOf(curve)
    tableNode.SetAttribute(SUMMARY_ATTRIBUTE, json.dumps(summary))
    tableNode.SetLocked(True)
    tableNode.Modified()
    tableNode.EndModify(wasModifying)


def updateLines(logic, hub, state=None) -> None:
    """Put each slice's LV-length line on APEX and the mitral midpoint of the phase shown."""
    from CardiacLandmarksLib.core import geometry

    state = state or logic._state(hub)
    t = logic.currentPhase(hub)
    a, b, apexName = state.names
    for k in range(state.nSlices):
        line = hub.GetNthNodeReference(LINE_REFERENCE, k)
        if line is None:
            continue
        apex, pa, pb = (state.current.get((n, k, t)) for n in (apexName, a, b))
        wasModifying = line.StartModify()
        line.SetLocked(False)
        line.RemoveAllControlPoints()
        if all(lm is not None and lm.found for lm in (apex, pa, pb)):
            mid = (np.asarray(pa.position, float) + np.asarray(pb.position, float)) / 2.0
            for label, lps in (("APEX", apex.position), (_("mitral midpoint"), mid)):
                ras = geometry.lps_to_ras(np.asarray(lps, float))
                line.AddControlPoint(vtk.vtkVector3d(*[float(x) for x in ras]), label)
        line.SetLocked(True)
        line.EndModify(wasModifying)


def laxSummary(logic, hub, k: int = 0) -> dict:
    state = logic._state(hub)
    curve = state.curves.get(k)
    return summaryOf(curve) if curve is not None else {}
