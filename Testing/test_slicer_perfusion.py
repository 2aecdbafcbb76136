"""Perfusion report in Slicer (``CardiacLandmarksModuleLib.perfusion``) on Slicer's real MRML and real data.

One mlperf series (patient 1424200, stress, mid slice) is read by Slicer's own image reader
(``slicer.util.loadVolume``: a 3-D volume whose first axis is time) and analysed by the panel
logic. Everything is checked against an independent path: the command line
(``cardiac-landmarks perfusion``) on the same file, its ``report.json`` and its label maps
(``_aha_segments.nii.gz``, ``_segmentation.nii.gz``) read back with nibabel, and nibabel's RAS
affine for the point positions. Moving A-RVI is checked against the AHA rule (a 60 degree turn
shifts every pixel by exactly one sector) and against the command line run with the moved
points saved by Slicer's own markups storage (``--rvi``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import slicer_stubs  # noqa: E402
from conftest import require_data  # noqa: E402

slicer_stubs.install()

import slicer  # noqa: E402
from CardiacLandmarksModuleLib import nodes  # noqa: E402
from CardiacLandmarksModuleLib import perfusion as panel  # noqa: E402

from CardiacLandmarksLib.core.errors import PerfusionInputError
from CardiacLandmarksLib.perfusion import aha

SERIES = "1424200_stress_mid"
#: mid-level AHA segments, counter-clockwise from A-RVI (Cerqueira 2002): 8, 9, 10, 11, 12, 7
MID_CCW = (8, 9, 10, 11, 12, 7)


def run_cli(image: Path, out: Path, rvi: Path | None = None) -> dict:
    from CardiacLandmarksLib.cli import main

    argv = ["perfusion", str(image), "-o", str(out)]
    if rvi is not None:
        argv += ["--rvi", str(rvi)]
    assert main(argv) == 0
    return json.loads((out / "report.json").read_text())


def nib_frames(path: Path) -> np.ndarray:
    """``(t, rows, columns)`` array of an mlperf-layout NIfTI, read by nibabel (not by our loader)."""
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Panel run on the Slicer-read volume and the CLI run on the same file."""
    import torch

    torch.set_num_threads(1)
    image = require_data("perfusion", "mlperf", f"{SERIES}.nii.gz")
    slicer_stubs.newScene()
    volume = slicer.util.loadVolume(str(image))
    logic = panel.PerfusionLogic()
    calls = []
    hub = logic.run([volume], progress=lambda done, total: calls.append((done, total)))
    out = tmp_path_factory.mktemp("perfusion_cli")
    cli = run_cli(image, out)
    return {"image": image, "volume": volume, "logic": logic, "hub": hub, "cli": cli, "cli_dir": out,
            "progress": calls, "tmp": tmp_path_factory.mktemp("perfusion_edit")}


def table_dict(tableNode) -> dict:
    """``{segment: {column: value}}`` of the AHA table, plus ``"titles"``."""
    table = tableNode.GetTable()
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    rows = {}
    for r in range(table.GetNumberOfRows()):
        row = {n: table.GetColumnByName(n).GetValue(r) for n in names}
        rows[row["Segment"]] = row
    rows["titles"] = {n: tableNode.GetColumnTitle(n) for n in names}
    return rows


def assert_table_matches_report(tableNode, report: dict) -> int:
    """Every value of the report (segments + global, per condition/metric/reserve) is in the table."""
    rows = table_dict(tableNode)
    checked = 0
    entries = [(str(r["segment"]), r) for r in report["segments"]] + [("global", report["global"])]
    for key, entry in entries:
        row = rows[key]
        for cond in report["conditions"]:
            for metric in report["units"]:
                st = entry.get(cond, {}).get(metric)
                if st is None:
                    assert np.isnan(row[f"{cond} {metric} mean"]), (key, cond, metric)
                    continue
                assert row[f"{cond} {metric} mean"] == pytest.approx(st["mean"], rel=1e-9, abs=1e-12)
                if st["sd"] is not None:
                    assert row[f"{cond} {metric} sd"] == pytest.approx(st["sd"], rel=1e-9, abs=1e-12)
                assert row[f"{cond} {metric} n"] == st["n_pixels"]
                checked += 1
    return checked


def exported_labels(segNode, reference) -> np.ndarray:
    """``[j, i]`` label map of a segmentation in the reference volume's grid, label = segment number from its name."""
    out = None
    segmentation = segNode.GetSegmentation()
    for n in range(segmentation.GetNumberOfSegments()):
        segId = segmentation.GetNthSegmentID(n)
        labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        ids = __import__("vtk").vtkStringArray()
        ids.InsertNextValue(segId)
        assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segNode, ids, labelmap, reference)
        arr = slicer.util.arrayFromVolume(labelmap)[0] > 0
        slicer.mrmlScene.RemoveNode(labelmap)
        if out is None:
            out = np.zeros(arr.shape, np.int16)
        assert not np.any(out[arr]), "segments overlap"
        out[arr] = n + 1
    return out, [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]


def reference_volume(logic, hub):
    """Proxy volume of the frame sequence (the slice plane) at its current item."""
    sequence = logic.framesSequences(hub)[0]
    browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(sequence)
    return browser.GetProxyNode(sequence)


def ccw_rotated(center_ij, point_ij, degrees: float) -> np.ndarray:
    """``point`` turned about ``center`` counter-clockwise on the screen (row index j points down)."""
    d = np.asarray(point_ij, float) - np.asarray(center_ij, float)
    th = np.radians(degrees)
    x, y = d[0], -d[1]
    xr, yr = np.cos(th) * x - np.sin(th) * y, np.sin(th) * x + np.cos(th) * y
    return np.asarray(center_ij, float) + np.array([xr, -yr])


# ---------------------------------------------------------------------------------------------


def test_slicer_volume_gives_the_library_series(study):
    """Slicer's reader reverses an axis of this left-handed NIfTI; the panel restores the file's order,
    so it sees the command line's frames and geometry (the display side of an image without
    orientation depends on it)."""
    from CardiacLandmarksLib.io.load import load_series

    mine = panel.seriesFromTimeVolume(study["volume"])
    ref = load_series(study["image"])
    assert mine.pixels.shape == ref.pixels.shape == (73, 1, 192, 192)
    np.testing.assert_array_equal(mine.pixels[:, 0], nib_frames(study["image"]).astype(np.float32))
    np.testing.assert_allclose(mine.direction, ref.direction, atol=1e-6)
    np.testing.assert_allclose(mine.slice_origins, ref.slice_origins, atol=1e-3)
    np.testing.assert_allclose(mine.spacing, ref.spacing, rtol=1e-6)
    assert mine.orientation_known is ref.orientation_known is False


def test_sequence_input_gives_the_same_series(study):
    """A volume sequence of the frames (Slicer's form of a DICOM perfusion series) converts to the same series."""
    an = study["logic"].analyses(study["hub"])[0]
    sequence = study["logic"].framesSequences(study["hub"])[0]
    series, volume, seq, browser = study["logic"].seriesFromNode(sequence)
    assert seq is sequence and browser is not None and volume is not None
    np.testing.assert_array_equal(series.pixels, an.series.pixels)
    np.testing.assert_allclose(series.direction, an.series.direction, atol=1e-6)
    np.testing.assert_allclose(series.slice_origins, an.series.slice_origins, atol=1e-3)
    again, *_ = study["logic"].seriesFromNode(volume)  # the proxy volume stands for the whole sequence
    assert again.n_phases == 73


def test_table_matches_cli_report(study):
    """16 segment rows + global, every value equal to the CLI's report.json; units in the titles."""
    logic, hub, cli = study["logic"], study["hub"], study["cli"]
    assert study["progress"] == [(1, 1)]
    table = logic.tableNode(hub)
    assert table.GetTable().GetNumberOfRows() == 17
    rows = table_dict(table)
    assert [rows[str(s)]["Name"] for s in range(1, 17)] == [aha.SEGMENT_NAMES[s] for s in range(1, 17)]
    assert rows["3"]["Territory"] == "RCA" and rows["7"]["Territory"] == "LAD" and rows["12"]["Territory"] == "LCx"
    assert rows["titles"]["stress upslope_index mean"].endswith("[ratio]")
    assert cli["conditions"] == ["stress"]
    assert cli["inputs"][0]["level"] == "mid" and cli["inputs"][0]["condition"] == "stress"
    checked = assert_table_matches_report(table, cli)
    assert checked >= 7 * 4  # 6 mid segments + global, 4 metrics
    for s in (7, 8, 9, 10, 11, 12):
        assert rows[str(s)]["stress upslope_index n"] > 0
    for s in (1, 6, 13, 16):
        assert np.isnan(rows[str(s)]["stress upslope_index mean"])
    # the hub holds the same report (inputs, RVI, warnings) as the CLI's report.json
    rep = logic.report(hub)
    # the same point: the scene's volume and the CLI's file give the same geometry up to float rounding (1e-14 px)
    np.testing.assert_allclose(rep["inputs"][0]["A-RVI_ij"], cli["inputs"][0]["A-RVI_ij"], rtol=0, atol=1e-6)
    assert rep["inputs"][0]["reference_frame"] == cli["inputs"][0]["reference_frame"]


def test_bullseye_image_node(study):
    """The bull's-eye is an RGB vector volume holding the rendered PNG (not blank)."""
    node = study["logic"].bullseyeNode(study["hub"])
    assert node.IsA("vtkMRMLVectorVolumeNode")
    arr = slicer.util.arrayFromVolume(node)
    assert arr.ndim == 4 and arr.shape[0] == 1 and arr.shape[3] == 3 and arr.dtype == np.uint8
    assert arr.shape[1] > 300 and arr.shape[2] > 300
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 50  # colours, text, colour bars
    m = nodes.matrixToArray(_ijk_to_ras(node))
    np.testing.assert_allclose(np.sign(np.diag(m)[:3]), [-1, -1, 1])  # upright in an axial slice view


def test_show_bullseye_fills_the_yellow_view_upright(study):
    """The bull's-eye alone in the Yellow view: axial, centred on the image, the whole image in view."""
    logic, hub = study["logic"], study["hub"]
    node = logic.bullseyeNode(hub)
    logic.showBullseye(hub, "Yellow")
    composite = slicer.mrmlScene.GetSingletonNode("Yellow", "vtkMRMLSliceCompositeNode")
    assert composite.GetBackgroundVolumeID() == node.GetID()
    assert composite.GetForegroundVolumeID() is None and composite.GetLabelVolumeID() is None
    yellow = slicer.mrmlScene.GetSingletonNode("Yellow", "vtkMRMLSliceNode")
    m = nodes.matrixToArray(yellow.GetSliceToRAS())
    np.testing.assert_allclose(np.abs(m[:3, :3]), np.eye(3), atol=1e-9)  # axial
    rows, columns = slicer.util.arrayFromVolume(node).shape[1:3]
    # IJK-to-RAS is diag(-1, -1, 1) at the origin: the image spans x in [-(columns-1), 0], y in [-(rows-1), 0]
    np.testing.assert_allclose(m[:2, 3], [-(columns - 1) / 2.0, -(rows - 1) / 2.0], atol=1.0)
    fov = yellow.GetFieldOfView()
    assert fov[0] >= columns - 1 and fov[1] >= rows - 1
    assert min(fov[0] / columns, fov[1] / rows) < 1.05  # fitted, not just huge
    # the Red view (the series) is untouched by it
    assert slicer.mrmlScene.GetSingletonNode("Red", "vtkMRMLSliceCompositeNode").GetBackgroundVolumeID() != node.GetID()


def test_export_writes_the_cli_files_with_the_same_content(study, tmp_path):
    """exportReport writes what ``cardiac-landmarks perfusion`` writes for the same input, same values."""
    import nibabel as nib

    logic, hub, cli, cliDir = study["logic"], study["hub"], study["cli"], study["cli_dir"]
    written = logic.exportReport(hub, tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(p.name for p in cliDir.iterdir() if p.is_file())
    exported = json.loads((tmp_path / "report.json").read_text())
    assert exported["segments"] == cli["segments"] and exported["global"] == cli["global"]
    for name in (f"{SERIES}_aha_segments.nii.gz", f"{SERIES}_segmentation.nii.gz"):
        # the CLI keeps the file's (time, row, column) layout; a Slicer volume has no file layout, so the
        # export is the slice's own 4-D (column, row, 1, time) image: same labels at the same places
        ours, theirs = nib.load(str(tmp_path / name)), nib.load(str(cliDir / name))
        a, b = np.asarray(ours.dataobj), np.asarray(theirs.dataobj)
        assert a.shape == (b.shape[2], b.shape[1], 1, b.shape[0])
        np.testing.assert_array_equal(a[:, :, 0, :].transpose(2, 1, 0), b)
        assert len(np.unique(b)) > 2
        for i, j in ((0, 0), (100, 20), (37, 150)):
            np.testing.assert_allclose(nib.affines.apply_affine(ours.affine, [i, j, 0]),
                                       nib.affines.apply_affine(theirs.affine, [0, j, i]), atol=1e-3)
    assert (tmp_path / "report.csv").read_text() == (cliDir / "report.csv").read_text()


def test_panel_status_text_states_the_global_values(study):
    """The section's status line carries the report's global value (stress upslope index here) and warnings."""
    from CardiacLandmarksModuleLib.perfusion_panel import summaryText

    report = study["logic"].report(study["hub"])
    text = summaryText(report)
    stats = study["cli"]["global"]["stress"]["upslope_index"]
    # the value with the CLI report's status, and its check when not ok
    suffix = f" [{stats['status']}: {stats['check']}]" if stats["status"] != "ok" else " [ok]"
    assert f"stress: upslope index {stats['mean']:.2f} ± {stats['sd']:.2f} ratio{suffix}" in text
    assert ("warning" in text) == bool(report["warnings"])
    both = {"conditions": ["stress", "rest"], "units": {"mbf": "ml/min/g"},
            "global": {"stress": {"mbf": {"mean": 3.0, "sd": 0.5, "status": "ok"}},
                       "rest": {"mbf": {"mean": 1.0, "sd": 0.25, "status": "review", "check": "check A-RVI (low 0.25)"}},
                       "reserve": {"mpr": 3.0},
                       "reserve_trust": {"mpr": {"status": "review", "check": "check A-RVI (low 0.25)"}}}}
    assert summaryText(both).splitlines() == ["stress: MBF 3.00 ± 0.50 ml/min/g [ok]",
                                              "rest: MBF 1.00 ± 0.25 ml/min/g [review: check A-RVI (low 0.25)]",
                                              "MPR 3.00 [review: check A-RVI (low 0.25)]"]
    # series that name neither stress nor rest: said in words, as the study's key value says it (it read
    # 'perfusion: upslope index ...')
    unstated = {"conditions": ["perfusion"], "units": {"upslope_index": "ratio"},
                "global": {"perfusion": {"upslope_index": {"mean": 0.371, "sd": 0.102, "status": "ok"}}}}
    assert summaryText(unstated) == "(stress/rest?): upslope index 0.37 ± 0.10 ratio [ok]"
    # a value without a status (not written by the report) is not passed as a plain number
    bare = {"conditions": ["stress"], "units": {}, "global": {"stress": {"mbf": {"mean": 3.0}}}}
    assert summaryText(bare) == "stress: MBF 3.00 [review]"
    assert summaryText({}) == ""


def _ijk_to_ras(node):
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return m


def test_sector_segmentation_matches_cli_label_map(study):
    """Segments = the six mid AHA segments, named; pixel for pixel equal to the CLI's _aha_segments at
    the reference frame (read with nibabel), and the LV segmentation equal to its _segmentation."""
    logic, hub, cli = study["logic"], study["hub"], study["cli"]
    ref = cli["inputs"][0]["reference_frame"]
    browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(logic.framesSequences(hub)[0])
    assert browser.GetSelectedItemNumber() == ref
    reference = reference_volume(logic, hub)
    labels, names = exported_labels(logic.sectorNodes(hub)[0], reference)
    numbers = [int(n.split(" ")[0]) for n in names]
    assert sorted(numbers) == [7, 8, 9, 10, 11, 12]
    assert all(n == f"{s} {aha.SEGMENT_NAMES[s]}" for n, s in zip(names, numbers))
    mine = np.zeros(labels.shape, np.int16)
    for n, s in enumerate(numbers, start=1):
        mine[labels == n] = s
    theirs = nib_frames(study["cli_dir"] / f"{SERIES}_aha_segments.nii.gz")[ref]
    assert theirs.shape == mine.shape and (theirs > 0).sum() > 200
    np.testing.assert_array_equal(mine, theirs)
    seg, segNames = exported_labels(logic.segmentationNodes(hub)[0], reference)
    assert segNames == ["LV myocardium", "LV blood pool"]
    np.testing.assert_array_equal(seg, nib_frames(study["cli_dir"] / f"{SERIES}_segmentation.nii.gz")[ref])


def test_rvi_point_list_in_place_and_editable(study):
    """A-RVI / I-RVI / C-LV at the CLI's pixels, in RAS as nibabel's affine maps them; A/I editable, C-LV locked."""
    import nibabel as nib

    logic, hub, cli = study["logic"], study["hub"], study["cli"]
    rvi = logic.rviNodes(hub)[0]
    assert rvi.GetNumberOfControlPoints() == 3
    affine = nib.load(str(study["image"])).affine  # voxel (t, row, column) -> RAS
    for n, name in enumerate(panel.RVI_POINTS):
        assert rvi.GetNthControlPointLabel(n).startswith(name + " ")
        i, j = cli["inputs"][0][f"{name}_ij"]
        expected = (affine @ [0.0, j, i, 1.0])[:3]  # the slice plane of frame 0 in the file geometry
        np.testing.assert_allclose(rvi.GetNthControlPointPosition(n), expected, atol=1e-3)
    assert not rvi.GetNthControlPointLocked(0) and not rvi.GetNthControlPointLocked(1)
    assert rvi.GetNthControlPointLocked(2)


def test_moving_arvi_rotates_sectors_and_updates_report(study):
    """Dragging A-RVI 60 deg counter-clockwise about C-LV shifts every myocardial pixel by one AHA sector
    (8 -> 7, 9 -> 8, ...); 30 deg changes about half the pixels; table, bull's-eye and JSON follow,
    and equal the CLI run with the moved points saved by Slicer's markups storage (--rvi)."""
    logic, hub = study["logic"], study["hub"]
    an = logic.analyses(hub)[0]
    rvi = logic.rviNodes(hub)[0]
    reference = reference_volume(logic, hub)
    c, a0, i0 = an.center_ij.copy(), an.a_rvi_ij.copy(), an.i_rvi_ij.copy()
    before_labels, before_names = exported_labels(logic.sectorNodes(hub)[0], reference)
    before = np.zeros(before_labels.shape, np.int16)
    for n, name in enumerate(before_names, start=1):
        before[before_labels == n] = int(name.split(" ")[0])
    bullseye_before = slicer.util.arrayFromVolume(logic.bullseyeNode(hub)).copy()
    table_before = table_dict(logic.tableNode(hub))

    def move_a(ij):
        lps = an.series.ijk_to_lps(np.array([ij[0], ij[1], 0.0]))
        rvi.SetNthControlPointPosition(0, *(np.diag([-1.0, -1.0, 1.0]) @ lps))  # RAS

    def sectors_now():
        lab, names = exported_labels(logic.sectorNodes(hub)[0], reference)
        out = np.zeros(lab.shape, np.int16)
        for n, name in enumerate(names, start=1):
            out[lab == n] = int(name.split(" ")[0])
        return out

    move_a(ccw_rotated(c, a0, 60.0))
    assert an.rvi_source == "user"
    after = sectors_now()
    myo = before > 0
    np.testing.assert_array_equal(after > 0, myo)
    shifted = {MID_CCW[k]: MID_CCW[k - 1] for k in range(6)}  # one sector back: 8 -> 7, 9 -> 8, 7 -> 12
    same_rule = np.array([shifted[b] == a for b, a in zip(before[myo], after[myo])])
    assert same_rule.mean() > 0.98, same_rule.mean()
    assert not np.array_equal(slicer.util.arrayFromVolume(logic.bullseyeNode(hub)), bullseye_before)
    table_after = table_dict(logic.tableNode(hub))
    assert table_after["8"]["stress upslope_index mean"] != table_before["8"]["stress upslope_index mean"]
    assert table_after["global"]["stress upslope_index mean"] == pytest.approx(
        table_before["global"]["stress upslope_index mean"], rel=1e-12)  # same pixels, other sectors
    assert rvi.GetNthControlPointDescription(0) == "placed by user"
    assert logic.report(hub)["inputs"][0]["rvi_source"] == "user"

    # the moved points, saved by Slicer, give the same report through the command line
    path = study["tmp"] / "moved_rvi.mrk.json"
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsJsonStorageNode")
    storage.SetFileName(str(path))
    assert storage.WriteData(rvi)
    cli = run_cli(study["image"], study["tmp"] / "cli_moved", rvi=path)
    assert assert_table_matches_report(logic.tableNode(hub), cli) >= 28
    ref = cli["inputs"][0]["reference_frame"]
    np.testing.assert_array_equal(after, nib_frames(study["tmp"] / "cli_moved" / f"{SERIES}_aha_segments.nii.gz")[ref])

    move_a(ccw_rotated(c, a0, 30.0))
    changed = (sectors_now() != before)[myo].mean()
    assert 0.35 < changed < 0.65, changed

    # explicit API: back to the original points (LPS); the point list follows, in RAS
    logic.setRvi(hub, 0, an.series.ijk_to_lps(np.array([*a0, 0.0])), an.series.ijk_to_lps(np.array([*i0, 0.0])))
    np.testing.assert_array_equal(sectors_now(), before)
    ras = np.diag([-1.0, -1.0, 1.0]) @ an.series.ijk_to_lps(np.array([*a0, 0.0]))
    np.testing.assert_allclose(rvi.GetNthControlPointPosition(0), ras, atol=1e-6)
    assert_table_matches_report(logic.tableNode(hub), study["cli"])


def test_moving_off_plane_only_is_ignored_and_unknown_hub_raises(study):
    """A move along the slice normal keeps the sectors; a hub not computed in this session cannot be edited."""
    from CardiacLandmarksLib.core.errors import PerfusionInputError

    logic, hub = study["logic"], study["hub"]
    an = logic.analyses(hub)[0]
    rvi = logic.rviNodes(hub)[0]
    segments = an.segments.copy()
    normal_ras = np.diag([-1.0, -1.0, 1.0]) @ an.series.direction[:, 2]
    p = np.array(rvi.GetNthControlPointPosition(0))
    rvi.SetNthControlPointPosition(0, *(p + 5.0 * normal_ras))
    np.testing.assert_array_equal(an.segments, segments)
    other = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTextNode")
    with pytest.raises(PerfusionInputError):
        logic.setRvi(other, 0, [0.0, 0.0, 0.0])
    with pytest.raises(PerfusionInputError):
        logic.setRvi(hub, 3, [0.0, 0.0, 0.0])


def test_drag_defers_the_bullseye_to_the_end(study):
    """While a point is dragged (start/end interaction events) the table follows every move and the
    bull's-eye is rendered once, when the drag ends."""
    logic, hub = study["logic"], study["hub"]
    an = logic.analyses(hub)[0]
    rvi = logic.rviNodes(hub)[0]
    table_before = table_dict(logic.tableNode(hub))["8"]["stress upslope_index mean"]
    image_before = slicer.util.arrayFromVolume(logic.bullseyeNode(hub)).copy()
    rvi.InvokeEvent(slicer.vtkMRMLMarkupsNode.PointStartInteractionEvent)
    target = ccw_rotated(an.center_ij, an.a_rvi_ij, 45.0)
    rvi.SetNthControlPointPosition(0, *(np.diag([-1.0, -1.0, 1.0]) @ an.series.ijk_to_lps(np.array([*target, 0.0]))))
    np.testing.assert_allclose(an.a_rvi_ij, target, atol=1e-6)
    assert table_dict(logic.tableNode(hub))["8"]["stress upslope_index mean"] != table_before
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(logic.bullseyeNode(hub)), image_before)
    rvi.InvokeEvent(slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent)
    assert not np.array_equal(slicer.util.arrayFromVolume(logic.bullseyeNode(hub)), image_before)


def test_show_in_slice_view_matches_the_stored_display(study):
    """The Red view shows the frames in the slice plane as stored (no orientation): screen right = column i,
    screen down = row j, centred on C-LV, so sectors run as in the CLI's _sectors.png."""
    logic, hub = study["logic"], study["hub"]
    an = logic.analyses(hub)[0]
    logic.showInSliceView(hub, 0, "Red")
    red = slicer.mrmlScene.GetSingletonNode("Red", "vtkMRMLSliceNode")
    m = nodes.matrixToArray(red.GetSliceToRAS())
    ras = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(m[:3, 0], ras @ an.series.direction[:, 0], atol=1e-6)
    np.testing.assert_allclose(m[:3, 1], -(ras @ an.series.direction[:, 1]), atol=1e-6)
    np.testing.assert_allclose(m[:3, 3], ras @ an.series.ijk_to_lps(np.array([*an.center_ij, 0.0])), atol=1e-6)
    # A-RVI on screen: same angle about C-LV as in the stored pixel grid (not mirrored)
    rvi = logic.rviNodes(hub)[0]
    xy = np.linalg.inv(m) @ np.array([*rvi.GetNthControlPointPosition(0), 1.0])
    d = an.a_rvi_ij - an.center_ij
    assert np.degrees(np.arctan2(xy[1], xy[0])) == pytest.approx(
        np.degrees(np.arctan2(-d[1] * an.series.spacing[1], d[0] * an.series.spacing[0])), abs=1e-3)
    composite = slicer.mrmlScene.GetSingletonNode("Red", "vtkMRMLSliceCompositeNode")
    assert composite.GetBackgroundVolumeID() == reference_volume(logic, hub).GetID()


def test_dicom_volume_sequence_matches_cli(tmp_path):
    """The GE DICOM perfusion series (real scanner geometry) as Slicer holds it: one volume per frame read by
    Slicer's reader, in a sequence indexed by trigger time (ms) with a browser. The panel's table and
    sector map equal the command line's on the DICOM folder; the points lie on the image plane."""
    import pydicom

    folder = require_data("perfusion", "ge_dicom")
    slicer_stubs.newScene()
    frames = []
    for path in sorted(p for p in folder.iterdir() if p.name.startswith("I")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        frames.append((float(ds.TriggerTime), path))
    frames.sort()
    sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "perfusion frames")
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("ms")
    sequence.SetIndexType(sequence.NumericIndex)
    for n, (trigger, path) in enumerate(frames):
        storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        storage.SetFileName(str(path))
        storage.SetSingleFile(True)
        volume = slicer.vtkMRMLScalarVolumeNode()
        volume.SetName(f"frame {n}")
        assert storage.ReadData(volume)
        slicer.mrmlScene.RemoveNode(storage)
        sequence.SetDataNodeAtValue(volume, f"{trigger:g}")
    browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "perfusion browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    proxy.SetName("7: First Pass New")

    logic = panel.PerfusionLogic()
    hub = logic.run([proxy], levels="mid")
    cli = run_cli(folder, tmp_path / "cli")
    an = logic.analyses(hub)[0]
    assert an.series.orientation_known and an.series.n_phases == len(frames) == cli["inputs"][0]["frames"]
    assert logic.framesSequences(hub)[0] is sequence  # no copy of the frames for a sequence input
    assert cli["inputs"][0]["reference_frame"] == an.seg.reference_frame
    assert assert_table_matches_report(logic.tableNode(hub), cli) >= 7 * 4
    ref = an.seg.reference_frame
    cli_map = nib_frames_4d(tmp_path / "cli" / f"{cli['inputs'][0]['series']}_aha_segments.nii.gz")[ref]
    labels, names = exported_labels(logic.sectorNodes(hub)[0], proxy)
    mine = np.zeros(labels.shape, np.int16)
    for n, name in enumerate(names, start=1):
        mine[labels == n] = int(name.split(" ")[0])
    np.testing.assert_array_equal(mine, cli_map)
    # points on the image plane (distance to the plane through the proxy volume's origin, along its normal)
    ijkToRas = nodes.ijkToRasArray(proxy)
    normal = np.cross(ijkToRas[:3, 0], ijkToRas[:3, 1])
    normal /= np.linalg.norm(normal)
    rvi = logic.rviNodes(hub)[0]
    for n in range(3):
        assert abs((np.array(rvi.GetNthControlPointPosition(n)) - ijkToRas[:3, 3]) @ normal) < 1e-3


def nib_frames_4d(path: Path) -> np.ndarray:
    """``(t, rows, columns)`` of a CLI label map written as 4-D ``(i, j, 1, t)`` NIfTI, read by nibabel."""
    import nibabel as nib

    arr = np.asarray(nib.load(str(path)).dataobj)  # (i, j, 1, t)
    return np.transpose(arr[:, :, 0, :], (2, 1, 0))


def test_aif_curve_from_table_node_and_file(tmp_path):
    """An AIF given as a table node (first numeric column) or as a text file reads as the same curve."""
    import vtk

    slicer_stubs.newScene()
    values = [0.0, 0.1, 2.5, 4.0, 3.1, 1.2, 0.8]
    tableNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "AIF")
    table = vtk.vtkTable()
    label, column = vtk.vtkStringArray(), vtk.vtkDoubleArray()
    label.SetName("frame")
    column.SetName("aif")
    for n, v in enumerate(values):
        label.InsertNextValue(str(n))
        column.InsertNextValue(v)
    table.AddColumn(label)
    table.AddColumn(column)
    tableNode.SetAndObserveTable(table)
    np.testing.assert_array_equal(panel.curveFromNode(tableNode), values)
    (tmp_path / "aif.txt").write_text(" ".join(str(v) for v in values))
    np.testing.assert_array_equal(panel.curveFromNode(str(tmp_path / "aif.txt")), values)
    assert panel.curveFromNode(None) is None


def test_scene_close_forgets_results(study):
    """Closing the scene detaches the logic: the point lists are no longer observed, the hub cannot be edited."""
    from CardiacLandmarksLib.core.errors import PerfusionInputError

    logic, hub = study["logic"], study["hub"]
    scene = hub.GetScene()
    scene.InvokeEvent(scene.StartCloseEvent)
    with pytest.raises(PerfusionInputError):
        logic.analyses(hub)
    assert logic._observations == []


def test_a_slice_stack_is_refused_as_by_the_cli(tmp_path):
    """A short-axis stack (ACDC, 10 slices) is not a perfusion series: the panel says so, as the CLI does."""
    from CardiacLandmarksLib.cli import main
    from CardiacLandmarksLib.core.errors import PerfusionInputError

    image = require_data("acdc", "patient001_ED.nii.gz")
    slicer_stubs.newScene()
    volume = slicer.util.loadVolume(str(image))
    with pytest.raises(PerfusionInputError, match=r"patient001_ED.*one slice over time.*stack of 10 slices"):
        panel.PerfusionLogic().run([volume])
    assert main(["perfusion", str(image), "-o", str(tmp_path / "out")]) == 1  # the CLI refuses the same file
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_failing_series_is_named_in_the_hub_and_the_exported_report(tmp_path):
    """One good series and one constant copy of it: the panel reports the good one and names the other as not
    analysed, in the hub's report and in the exported report.json (as the CLI's report.json does). The constant
    copy given first: the good series' analysis keeps its own input node (it was paired with the failed one's)."""
    import torch

    torch.set_num_threads(1)
    image = require_data("perfusion", "mlperf", f"{SERIES}.nii.gz")
    slicer_stubs.newScene()
    good = slicer.util.loadVolume(str(image))
    flat = slicer.util.loadVolume(str(image))
    flat.SetName("flat_copy")
    arr = slicer.util.arrayFromVolume(flat)
    arr[:] = 100
    slicer.util.arrayFromVolumeModified(flat)
    logic = panel.PerfusionLogic()
    # the failing one first: the analyses were paired with the inputs in order; it is given as rest
    hub = logic.run([flat, good], conditions=["rest", None])
    rep = logic.report(hub)
    # a failed rest series is no doubt on the stress value (the good series' name says stress), also after the
    # panel summarised the report again from its own state
    stress = rep["global"]["stress"]["upslope_index"]
    assert not any(x["id"] == "flat_copy" for x in stress["sources"]), stress["sources"]
    assert [a.name for a in logic.analyses(hub)] == [good.GetName()]
    assert [n.GetID() for n in logic._refs(hub, panel.INPUT_REFERENCE)] == [good.GetID()]  # was flat's
    assert [f["series"] for f in rep["failed"]] == ["flat_copy"]
    assert any(w.startswith("flat_copy: not analysed") for w in rep["warnings"])
    written = logic.exportReport(hub, tmp_path / "out")
    exported = json.loads((tmp_path / "out" / "report.json").read_text())
    assert any(Path(p).name == "report.json" for p in written)
    assert exported["failed"] == rep["failed"]


def test_a_multi_slice_perfusion_sequence_is_analysed_slice_by_slice(tmp_path, data_root):
    """Base, mid and apex in one DICOM series reach the panel as one sequence of three-slice volumes: it said 'a
    perfusion input must be one slice over time'. Each slice is now analysed (``<name>_slice<k>``, its level from
    its position), each with its own frames sequence, as the command line and `study` do."""
    import study_material as sm

    from CardiacLandmarksLib.io.load import load_series

    series = load_series(sm.multi_slice_perfusion(data_root, tmp_path / "perf"))
    assert (series.n_slices, series.n_phases) == (3, 79)
    slicer_stubs.newScene()
    sequence, _browser, proxy = nodes.addSequenceFromSeries(slicer.mrmlScene, series, "first pass",
                                                           slicer.modules.sequences.logic())
    logic = panel.PerfusionLogic(useSaxModel=False)
    hub = logic.run([proxy])
    analyses = logic.analyses(hub)
    assert [a.name for a in analyses] == ["first_pass_slice0", "first_pass_slice1", "first_pass_slice2"]
    assert sorted(a.level for a in analyses) == ["apex", "base", "mid"]
    frames = logic.framesSequences(hub)
    assert len({f.GetID() for f in frames}) == 3 and sequence not in frames
    assert all(f.GetNumberOfDataNodes() == 79 for f in frames)
    with pytest.raises(PerfusionInputError, match="holds 3 slices: a level names one slice; leave it out for this input"):
        logic.run([proxy], levels="mid")
