"""Long-axis results of the Slicer module on Slicer's real MRML (``slicer-core`` wheel) and the real
M&Ms-2 4CH cine ``mnms2/001/001_LA_CINE.nii.gz``.

The cine is read by Slicer's own 4D reader (``vtkMRMLVolumeSequenceStorageNode``) into a volume
sequence with a browser, as "Add data" does. Detection runs once per module (a few seconds on one
CPU thread; a correction re-tracks one landmark in under a second).

Independent checks: the panel's lengths against the library's command-line path on the same file
(``series.load_series`` + ``lax_pipeline.detect_lax``), and every LV length against the distance
recomputed here from the control points stored in the markups sequence.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import slicer_stubs  # noqa: E402

slicer_stubs.install()

import slicer  # noqa: E402
from CardiacLandmarksModuleLib import lax as laxNodes  # noqa: E402

import CardiacLandmarks as module  # noqa: E402
from CardiacLandmarksLib.core.config import models_root

CINE = "mnms2/001/001_LA_CINE.nii.gz"
N_PHASES = 25
NAMES = ("AL-P", "IS-P", "APEX")
LPS_RAS = np.diag([-1.0, -1.0, 1.0])

needs_model = pytest.mark.skipif(not (models_root() / "lax4ch_unet.json").exists(),
                                 reason="bundled 4CH model not present")


def _threads():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture(scope="module")
def lax_result(data_root):
    """``(logic, hub, browser, proxy, libraryLandmarkSet, originalRows, originalPoints)`` for the 4CH cine."""
    from conftest import require_data

    path = require_data(CINE)
    _threads()
    slicer_stubs.newScene()
    scene = slicer.mrmlScene
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
    storage.SetFileName(str(path))
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "001_LA_CINE")
    assert storage.ReadData(sequence)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "001_LA_CINE browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    proxy.SetName("001_LA_CINE")  # Slicer names the loaded node after the file

    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.lax.pipeline import detect_lax

    library = detect_lax(load_series(path), "4ch", device="cpu")  # the CLI's path
    logic = module.CardiacLandmarksLogic()
    hub = logic.detect(proxy, view="auto", device="cpu")
    rows = table_lengths(logic.lvLengthTable(hub))
    return logic, hub, browser, proxy, library, rows, stored_points(logic, hub)


def table_lengths(table) -> np.ndarray:
    t = table.GetTable()
    assert [t.GetColumnName(c) for c in range(t.GetNumberOfColumns())] == [c for c, _ in laxNodes.COLUMNS]
    phases = [int(t.GetValue(r, 0).ToInt()) for r in range(t.GetNumberOfRows())]
    assert phases == list(range(t.GetNumberOfRows()))
    return np.array([t.GetValue(r, 2).ToDouble() for r in range(t.GetNumberOfRows())])


def stored_points(logic, hub) -> np.ndarray:
    """``[T, 3, 3]`` LPS positions of AL-P, IS-P, APEX in each markups sequence item."""
    sequence = logic.markupsSequences(hub)[0]
    out = np.full((sequence.GetNumberOfDataNodes(), 3, 3), np.nan)
    for t in range(sequence.GetNumberOfDataNodes()):
        item = sequence.GetNthDataNode(t)
        for i in range(3):
            if item.GetNthControlPointPositionStatus(i) == item.PositionDefined:
                out[t, i] = LPS_RAS @ np.array(item.GetNthControlPointPosition(i))
    return out


def lengths_from_points(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, 2] - (points[:, 0] + points[:, 1]) / 2.0, axis=1)


@needs_model
def test_detection_builds_lax_nodes(lax_result):
    logic, hub, browser, proxy, _library, rows, points = lax_result
    assert logic.isLaxResult(hub)
    pointLists = logic.pointListNodes(hub)
    assert len(pointLists) == 1 and pointLists[0].GetNumberOfControlPoints() == 3
    assert [pointLists[0].GetNthControlPointLabel(i).split()[0] for i in range(3)] == list(NAMES)
    sequence = logic.markupsSequences(hub)[0]
    assert sequence.GetNumberOfDataNodes() == N_PHASES
    assert browser.IsSynchronizedSequenceNodeID(sequence.GetID())
    assert np.isfinite(points).all()
    # confidence flags as in the SAX result: selected <=> high (or corrected), values stored per point
    state = logic._state(hub)
    for t in (0, 12, 24):
        item = sequence.GetNthDataNode(t)
        for i, name in enumerate(NAMES):
            lm = state.current[(name, 0, t)]
            assert bool(item.GetNthControlPointSelected(i)) == (lm.flag == "high")
    # table, plot series, chart
    table = logic.lvLengthTable(hub)
    assert table.GetNumberOfRows() == N_PHASES and logic.resultTable(hub) is table
    plotSeries = logic.lvLengthPlotSeries(hub)
    chart = logic.lvLengthChart(hub)
    assert plotSeries.IsA("vtkMRMLPlotSeriesNode") and chart.IsA("vtkMRMLPlotChartNode")
    assert plotSeries.GetTableNode() is table
    assert plotSeries.GetYColumnName() == "LV length (mm)"
    assert plotSeries.GetXColumnName() == "Phase"  # the NIfTI cine has no trigger times
    assert chart.GetNumberOfPlotSeriesNodes() == 1 and chart.GetNthPlotSeriesNode(0) is plotSeries
    assert "mm" in chart.GetYAxisTitle() and chart.GetTitle() == "LV length over the cardiac cycle"
    # LV length line on the phase shown
    line = logic.lvLengthLine(hub)
    assert line.IsA("vtkMRMLMarkupsLineNode") and line.GetNumberOfControlPoints() == 2 and line.GetLocked()
    t = logic.currentPhase(hub)
    assert line.GetLineLengthWorld() == pytest.approx(rows[t], abs=1e-6)
    # Status column: the library's per-phase status (ok | review | n/a), then why
    status = table.GetTable().GetColumnByName("Status")
    curve = logic.lvLengthCurve(hub)
    assert [status.GetValue(r).split()[0] for r in range(N_PHASES)] == [curve.status_of_phase(r) for r in range(N_PHASES)]


@needs_model
def test_lengths_match_library_and_points(lax_result):
    logic, hub, _browser, _proxy, library, rows, points = lax_result
    from CardiacLandmarksLib.lax.measurements import lv_length_curve

    lib = lv_length_curve(library, "4ch", 0, n_phases=N_PHASES)
    # same image through Slicer's reader vs the library's loader: same lengths within 0.5 mm
    assert np.abs(rows - lib.lengths_mm).max() < 0.5
    # the table holds the distance of the stored control points (recomputed here)
    assert np.allclose(rows, lengths_from_points(points), atol=1e-6)
    summary = logic.laxSummary(hub)
    assert summary["ed_phase"] == int(np.argmax(rows)) and summary["es_phase"] == int(np.argmin(rows))
    assert summary["length_ed_mm"] == pytest.approx(rows.max(), abs=1e-3)
    assert summary["shortening_pct"] == pytest.approx(100 * (rows.max() - rows.min()) / rows.max(), abs=1e-3)
    assert summary["shortening_pct"] == pytest.approx(lib.shortening_pct, abs=1.0)
    assert 10.0 <= summary["shortening_pct"] <= 25.0  # physiological (normal 10-25 %)
    assert 60.0 < rows.min() < rows.max() < 120.0  # adult LV length, mm
    # the panel line carries each value's status, the library's, and the shortening's caveat when not ok
    assert summary["shortening_status"] == lib.shortening_status
    assert summary["length_ed_status"] == lib.status_of_phase(lib.ed_phase)
    line = module.CardiacLandmarksWidget.laxSummaryText(summary)
    assert f"{summary['shortening_pct']:.1f}% [{lib.shortening_status}]" in line
    assert (lib.shortening.caveat() in line) == (lib.shortening_status != "ok")
    assert json.loads(logic.lvLengthTable(hub).GetAttribute(laxNodes.SUMMARY_ATTRIBUTE)) == summary


@needs_model
def test_line_follows_phase(lax_result):
    logic, hub, browser, _proxy, _library, rows, points = lax_result
    line = logic.lvLengthLine(hub)
    for t in (3, 17, 0):
        browser.SetSelectedItemNumber(t)
        assert logic.currentPhase(hub) == t
        assert line.GetLineLengthWorld() == pytest.approx(rows[t], abs=1e-6)
        apex = LPS_RAS @ np.array(line.GetNthControlPointPosition(0))
        assert np.allclose(apex, points[t, 2], atol=1e-6)


@needs_model
def test_moving_apex_retracks_and_undo_restores(lax_result):
    logic, hub, browser, proxy, _library, rows, points = lax_result
    t = 5
    browser.SetSelectedItemNumber(t)
    pointList = logic.pointListNodes(hub)[0]
    apexRas = np.array(pointList.GetNthControlPointPosition(2))
    # 6 mm along the image rows (in plane), from the volume's own geometry
    directions = np.zeros((3, 3))
    proxy.GetIJKToRASDirections(directions)
    offsetRas = 6.0 * directions[:, 1] / np.linalg.norm(directions[:, 1])
    newApexLps = LPS_RAS @ (apexRas + offsetRas)
    mid = (points[t, 0] + points[t, 1]) / 2.0
    expected = float(np.linalg.norm(newApexLps - mid))
    assert abs(expected - rows[t]) > 1.0  # the move matters for the length

    pointList.SetNthControlPointPosition(2, *(apexRas + offsetRas))  # as dragging it in a view does

    after = table_lengths(logic.lvLengthTable(hub))
    moved = stored_points(logic, hub)
    assert after[t] == pytest.approx(expected, abs=1e-6)
    assert logic.lvLengthLine(hub).GetLineLengthWorld() == pytest.approx(expected, abs=1e-6)
    assert np.allclose(moved[t, 2], newApexLps, atol=1e-6)
    # the corrected point is marked and kept; the valve points are untouched
    assert logic.flagCounts(hub)["corrected"] == 1
    assert "corrected" in pointList.GetNthControlPointDescription(2).lower() or \
        logic._state(hub).current[("APEX", 0, t)].corrected
    assert np.allclose(moved[:, :2], points[:, :2], atol=1e-9)
    # the APEX was re-tracked on the other phases (neighbours follow the correction)
    shift = np.linalg.norm(moved[:, 2] - points[:, 2], axis=1)
    assert shift[t - 1] > 0.5 and shift[t + 1] > 0.5
    assert (shift > 1e-6).sum() >= 5
    # table = stored points; plot reads the same table; shortening from the new curve
    assert np.allclose(after, lengths_from_points(moved), atol=1e-6)
    assert logic.lvLengthPlotSeries(hub).GetTableNode() is logic.lvLengthTable(hub)
    summary = logic.laxSummary(hub)
    assert summary["shortening_pct"] == pytest.approx(100 * (after.max() - after.min()) / after.max(), abs=1e-3)
    assert not np.allclose(after, rows)
    # the browser shows the re-tracked points on the other phases, and the line follows
    browser.SetSelectedItemNumber(t + 1)
    assert np.allclose(LPS_RAS @ np.array(pointList.GetNthControlPointPosition(2)), moved[t + 1, 2], atol=1e-6)
    assert logic.lvLengthLine(hub).GetLineLengthWorld() == pytest.approx(after[t + 1], abs=1e-6)
    assert logic.flagCounts(hub)["corrected"] == 1  # showing another phase corrects nothing
    browser.SetSelectedItemNumber(t)

    # undo: move it back onto the detection -> everything as detected
    pointList.SetNthControlPointPosition(2, *apexRas)
    assert np.allclose(table_lengths(logic.lvLengthTable(hub)), rows, atol=1e-9)
    assert np.allclose(stored_points(logic, hub), points, atol=1e-9)
    assert logic.flagCounts(hub)["corrected"] == 0
    assert logic.laxSummary(hub)["shortening_pct"] == pytest.approx(100 * (rows.max() - rows.min()) / rows.max(),
                                                                   abs=1e-3)


@needs_model
def test_an_apex_dragged_outside_the_image_goes_back(lax_result, caplog):
    """An APEX dragged past the image's edge was taken as a correction and re-tracked through the cine (every
    phase's LV length from it); now the point goes back, the log says why, and nothing is re-tracked."""
    logic, hub, browser, proxy, _library, rows, points = lax_result
    t = 4
    browser.SetSelectedItemNumber(t)
    pointList = logic.pointListNodes(hub)[0]
    before = stored_points(logic, hub).copy()
    lengths = table_lengths(logic.lvLengthTable(hub)).copy()
    series = logic._state(hub).series or logic.seriesFromNode(proxy)
    outside = series.ijk_to_lps(np.array([series.shape_ji[1] + 25.0, 10.0, 0.0]))
    with caplog.at_level(logging.WARNING):
        pointList.SetNthControlPointPosition(2, *(LPS_RAS @ outside))
    assert any("APEX of phase 4 lies outside the image" in r.getMessage() for r in caplog.records)
    assert np.allclose(LPS_RAS @ np.array(pointList.GetNthControlPointPosition(2)), before[t, 2], atol=1e-6)
    assert np.allclose(stored_points(logic, hub), before, atol=1e-9)
    assert np.allclose(table_lengths(logic.lvLengthTable(hub)), lengths, atol=1e-9)
    assert logic.flagCounts(hub)["corrected"] == 0


def test_console_correction_and_errors(lax_result):
    logic, hub, browser, _proxy, _library, rows, points = lax_result
    browser.SetSelectedItemNumber(0)
    t = 14  # not the phase shown: the markups sequence item and the table change, the proxy does not
    target = points[t, 0] + np.array([0.0, 0.0, 0.0])
    assert logic.correctLaxLandmark(hub, "AL-P", t, target) is False  # on the detection: nothing to do
    shifted = points[t, 0] + 4.0 * (points[t, 1] - points[t, 0]) / np.linalg.norm(points[t, 1] - points[t, 0])
    assert logic.correctLaxLandmark(hub, "AL-P", t, shifted) is True
    moved = stored_points(logic, hub)
    assert np.allclose(moved[t, 0], shifted, atol=1e-9)
    expected = np.linalg.norm(points[t, 2] - (shifted + points[t, 1]) / 2.0)
    assert table_lengths(logic.lvLengthTable(hub))[t] == pytest.approx(expected, abs=1e-6)
    assert np.allclose(moved[:, 2], points[:, 2], atol=1e-9)  # other landmarks untouched
    lmset = logic.landmarkSetFromResult(hub)
    assert lmset.get("AL-P", 0, t).corrected
    assert any(m.name == "Longitudinal shortening" for m in lmset.measurements)
    with pytest.raises(ValueError):
        logic.correctLaxLandmark(hub, "A-RVI", t, shifted)
    with pytest.raises(ValueError):
        logic.correctLaxLandmark(hub, "APEX", N_PHASES, shifted)
    assert logic.correctLaxLandmark(hub, "AL-P", t, points[t, 0]) is True  # back: undone
    assert np.allclose(stored_points(logic, hub), points, atol=1e-9)
    assert np.allclose(table_lengths(logic.lvLengthTable(hub)), rows, atol=1e-9)


@needs_model
def test_confirming_a_low_point_makes_it_an_anchor(lax_result):
    """Confirm point on a low mitral point of the M&Ms-2 cine: it stays where it is, becomes confirmed (stored as a
    correction at its own position, so it survives the rebuild), the landmark is re-tracked from it, and its
    phase's table row says confirmed; moving it back onto the detection (undo) restores the detection."""
    logic, hub, browser, _proxy, _library, rows, points = lax_result
    state = logic._state(hub)
    low = sorted((lm for lm in state.current.values() if lm.found and lm.flag == "low"), key=lambda lm: lm.phase)
    assert low, "the M&Ms-2 4CH cine has low mitral points with the bundled model"
    lm = low[0]
    i, t = state.names.index(lm.name), lm.phase
    browser.SetSelectedItemNumber((t + 3) % N_PHASES)  # another phase is shown: confirming shows t
    assert logic.confirmPoint(hub, lm.name, 0, t)
    assert logic.currentPhase(hub) == t
    now = logic._state(hub).current[(lm.name, 0, t)]
    assert (now.corrected, now.confirmed, now.flag, now.confidence) == (True, True, "high", 1.0)
    moved = stored_points(logic, hub)
    assert np.allclose(moved[t, i], points[t, i], atol=1e-9)  # the confirmed point did not move
    assert np.allclose(table_lengths(logic.lvLengthTable(hub))[t], rows[t], atol=1e-9)
    assert logic.flagCounts(hub)["confirmed"] == 1
    assert logic.markupsSequences(hub)[0].GetNthDataNode(t).GetNthControlPointDescription(i) == "confirmed by user"
    table = logic.lvLengthTable(hub).GetTable()
    assert "(confirmed)" in table.GetValue(t, 3).ToString()
    # the landmark is re-tracked from the new anchor: its other phases follow the library's re-tracking
    from CardiacLandmarksLib.lax import tracking

    expected = tracking.correct_landmark(logic._state(hub).series, logic._state(hub).detectedSet, lm.name, t,
                                         points[t, i], k=0)
    assert expected.get(lm.name, 0, t).confirmed
    for p in range(N_PHASES):
        np.testing.assert_allclose(moved[p, i], expected.get(lm.name, 0, p).position, atol=1e-6)
    assert not logic.confirmPoint(hub, lm.name, 0, t)  # twice: nothing
    # undo: the console correction back onto the detection drops it
    assert logic.correctLaxLandmark(hub, lm.name, t, points[t, i]) is True
    assert np.allclose(stored_points(logic, hub), points, atol=1e-9)
    assert logic.flagCounts(hub)["confirmed"] == 0


@needs_model
def test_seed_from_user_points_tracks(lax_result):
    logic, hub, browser, proxy, _library, rows, points = lax_result
    ed = int(np.argmax(rows))
    seeded = logic.seedLaxFromPoints(proxy, "4ch", ed, {n: points[ed, i] for i, n in enumerate(NAMES)})
    assert seeded is not hub and logic.isLaxResult(seeded)
    lengths = table_lengths(logic.lvLengthTable(seeded))
    assert lengths[ed] == pytest.approx(rows[ed], abs=1e-6)
    assert np.isfinite(lengths).all()
    # tracked from the same ED points as the detection's anchor neighbourhood: same curve shape
    summary = logic.laxSummary(seeded)
    assert 10.0 <= summary["shortening_pct"] <= 25.0
    assert np.abs(lengths - rows).max() < 5.0
    assert logic.flagCounts(seeded)["corrected"] == 3

    # no model / nothing found: an empty result, the user places the points one by one in the view
    empty = logic.seedLaxFromPoints(proxy, "4ch", 0, {})
    assert logic.laxSummary(empty)["shortening_pct"] is None
    assert logic.flagCounts(empty)["absent"] == 3 * N_PHASES
    browser.SetSelectedItemNumber(ed)
    pointList = logic.pointListNodes(empty)[0]
    assert pointList.GetNthControlPointPositionStatus(2) == pointList.PositionUndefined
    for i in (2, 0):
        pointList.SetNthControlPointPosition(i, *(LPS_RAS @ points[ed, i]))  # placing a point
    assert logic.laxSummary(empty)["shortening_pct"] is None  # IS-P still to place
    pointList.SetNthControlPointPosition(1, *(LPS_RAS @ points[ed, 1]))
    # each placed point was tracked on its own from the same ED positions: the same curve as the seeding
    assert np.allclose(table_lengths(logic.lvLengthTable(empty)), lengths, atol=1e-6)
    assert logic.flagCounts(empty)["corrected"] == 3


@needs_model
def test_export_writes_library_formats(lax_result, tmp_path):
    logic, hub, _browser, _proxy, _library, rows, _points = lax_result
    written = logic.exportResult(hub, tmp_path)
    names = {p.name for p in written}
    assert {"landmarks.json", "measurements.csv"} <= names and any(n.endswith(".mrk.json") for n in names)
    data = json.loads((tmp_path / "landmarks.json").read_text())
    assert data["view"] == "4ch" and len(data["landmarks"]) == 3 * N_PHASES
    csv = (tmp_path / "measurements.csv").read_text()
    assert csv.count("LV length,") >= N_PHASES and "Longitudinal shortening" in csv


@needs_model
def test_time_axis_from_trigger_times(lax_result, data_root):
    """A cine whose sequence index is time in ms (Slicer's DICOM import) is plotted against time."""
    logic, _hub, _browser, _proxy, library, _rows, _points = lax_result
    scene = slicer.mrmlScene
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
    storage.SetFileName(str(data_root / CINE))
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "4CH cine timed")
    assert storage.ReadData(sequence)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("ms")
    for t in reversed(range(1, sequence.GetNumberOfDataNodes())):  # frame t -> 40 t ms, largest first
        sequence.UpdateIndexValue(sequence.GetNthIndexValue(t), f"{40.0 * t:.1f}")
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "timed browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    hub = logic.createResultNodes(proxy, logic.seriesFromNode(proxy), library)  # e.g. a CLI landmarks.json
    table = logic.lvLengthTable(hub).GetTable()
    assert [table.GetValue(r, 1).ToDouble() for r in range(3)] == [0.0, 40.0, 80.0]
    assert logic.lvLengthPlotSeries(hub).GetXColumnName() == "Time (ms)"
    assert logic.lvLengthChart(hub).GetXAxisTitle() == "Time (ms)"


def test_summary_text_without_values():
    text = module.CardiacLandmarksWidget.laxSummaryText({})
    assert "place" in text
    text = module.CardiacLandmarksWidget.laxSummaryText(
        {"length_ed_mm": 91.0, "length_es_mm": 74.62, "ed_phase": 23, "es_phase": 8, "shortening_pct": 18.0,
         "length_ed_status": "ok", "length_es_status": "ok", "shortening_status": "ok", "shortening_caveat": ""})
    assert "91.0 mm [ok]" in text and "74.6 mm [ok]" in text and "18.0% [ok]" in text
    assert "Shortening:" not in text
    # a summary without statuses (never written by laxSummary) reads review, not as a plain number
    assert "18.0% [review]" in module.CardiacLandmarksWidget.laxSummaryText(
        {"length_ed_mm": 91.0, "length_es_mm": 74.62, "ed_phase": 23, "es_phase": 8, "shortening_pct": 18.0})
