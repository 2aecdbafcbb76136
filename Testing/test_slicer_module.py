"""The Slicer module's logic and self-test on Slicer's real MRML (``slicer-core`` wheel) and real data.

Only what needs the running application comes from ``Testing/slicer_stubs``; scenes, volumes,
markups, sequences, tables, their logics and ``.mrk.json`` storage are Slicer's own. Images are
read by Slicer's own readers (``vtkMRMLVolumeArchetypeStorageNode``): the ACDC NIfTI directly,
the Sunnybrook DICOM cine one phase at a time (files of a phase sorted along the slice normal,
as Slicer's DICOM import does), then assembled into a volume sequence with a browser.

Tests that run detection need the bundled model (``Resources/Models/sax_unet.*``).
"""

from __future__ import annotations

import collections
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]  # sys.path: see conftest.py

import slicer_stubs  # noqa: E402

slicer_stubs.install()

import slicer  # noqa: E402
from CardiacLandmarksModuleLib import dependencies, nodes  # noqa: E402

import CardiacLandmarks as module  # noqa: E402
from CardiacLandmarksLib.core import geometry  # noqa: E402
from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet  # noqa: E402
from CardiacLandmarksLib.io import markups  # noqa: E402
from CardiacLandmarksLib.sax import measurements  # noqa: E402

ACDC_CASE = "patient001_ED.nii.gz"
N_CINE_PHASES = 3  # phases of the Sunnybrook cine used here (keeps detection fast on CPU)


@pytest.fixture
def scene():
    """A fresh MRML scene as ``slicer.mrmlScene`` (with application and module logics)."""
    return slicer_stubs.newScene()


@pytest.fixture(scope="session")
def sunnybrook_phases(sunnybrook_dicom):
    """Sunnybrook cine files per phase, each phase's files sorted along the slice normal.

    Returns ``(phases, trigger_ms, positions_lps, iop)``: ``phases[t]`` = list of K paths;
    ``trigger_ms[t]`` mean trigger time of phase t; ``positions_lps`` ``(K, 3)`` sorted
    ImagePositionPatient; ``iop`` the 6 ImageOrientationPatient values.
    """
    import pydicom

    by_position = collections.defaultdict(list)
    iop = None
    for path in sorted(sunnybrook_dicom.glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        iop = [float(x) for x in ds.ImageOrientationPatient]
        by_position[tuple(float(x) for x in ds.ImagePositionPatient)].append((float(ds.TriggerTime), path))
    normal = np.cross(iop[:3], iop[3:])
    positions = sorted(by_position, key=lambda p: np.dot(p, normal))
    n_phases = min(len(v) for v in by_position.values())
    phases, trigger = [], []
    for t in range(n_phases):
        items = [sorted(by_position[p])[t] for p in positions]
        phases.append([path for _tt, path in items])
        trigger.append(float(np.mean([tt for tt, _path in items])))
    return phases, np.array(trigger), np.array(positions), np.array(iop)


def load_dicom_phase(files, name):
    """One phase read by Slicer's archetype reader from an explicit, position-sorted file list."""
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(files[0]))
    storage.ResetFileNameList()
    for f in files:
        storage.AddFileName(str(f))
    volume = slicer.vtkMRMLScalarVolumeNode()
    volume.SetName(name)
    assert storage.ReadData(volume)
    slicer.mrmlScene.RemoveNode(storage)
    return volume


def load_cine_as_sequence(sunnybrook_phases, n_phases=N_CINE_PHASES):
    """The cine as a volume sequence (index: time in ms, as this module's own DICOM loading indexes it), a browser and
    its proxy volume. Slicer's DICOM module indexes by frame number: :func:`load_as_slicer_dicom_module_does`."""
    phases, trigger, _positions, _iop = sunnybrook_phases
    sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "SA cine")
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("ms")
    sequence.SetIndexType(sequence.NumericIndex)
    for t in range(n_phases):
        sequence.SetDataNodeAtValue(load_dicom_phase(phases[t], f"phase {t}"), f"{trigger[t]:.3f}")
    browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "SA cine browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    proxy.SetName("5: SA cine")
    return sequence, browser, proxy


def load_as_slicer_dicom_module_does(frames: list[list[Path]], trigger_ms: list[float], name: str):
    """A cine loaded as Slicer's DICOM module loads it (MultiVolumeImporter's plugin, ``loadAsVolumeSequence``,
    fedorov/MultiVolumeImporter MultiVolumeImporterPlugin.load): one volume per frame read by Slicer's reader, the
    sequence indexed by frame number ("0", "1" ..., index name and unit empty), its attributes those of the
    multivolume: ``MultiVolume.FrameFileList`` (every frame's files in frame order, comma-separated),
    ``MultiVolume.FrameLabels`` (the frames' TriggerTime, as ``str(float)``), ``...FrameIdentifyingDICOMTagName``
    ``TriggerTime``, ``...FrameIdentifyingDICOMTagUnits`` ``ms``, ``MultiVolume.NumberOfFrames``; then a browser."""
    sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("")
    sequence.SetIndexUnit("")
    for key, value in (("MultiVolume.FrameLabels", ",".join(str(float(t)) for t in trigger_ms)),
                       ("MultiVolume.FrameIdentifyingDICOMTagName", "TriggerTime"),
                       ("MultiVolume.NumberOfFrames", str(len(frames))),
                       ("MultiVolume.FrameIdentifyingDICOMTagUnits", "ms"),
                       ("MultiVolume.FrameFileList", ",".join(str(f) for files in frames for f in files))):
        sequence.SetAttribute(key, value)
    for t, files in enumerate(frames):
        sequence.SetDataNodeAtValue(load_dicom_phase(files, f"{name} {t}"), str(t))
    browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
    return sequence


def table_rows(table):
    return {(m.name, m.slice, m.phase): m.value for m in nodes.readMeasurementsTable(table)}


def table_statuses(table) -> dict:
    """``{(name, slice, phase): Status cell}`` of a result's measurements table."""
    t = table.GetTable()
    cols = [t.GetColumnByName(c) for c in ("Measurement", "Slice", "Phase", "Status")]
    return {(cols[0].GetValue(r), int(cols[1].GetValue(r)), int(cols[2].GetValue(r))): cols[3].GetValue(r)
            for r in range(t.GetNumberOfRows())}


# ---------------------------------------------------------------------------------------------
# packaging
# ---------------------------------------------------------------------------------------------


def test_runtime_requirements_match_pyproject():
    """What the module installs inside Slicer is what the package declares (torch comes from SlicerPyTorch)."""
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.S | re.M).group(1)  # [project] dependencies
    declared = {d.replace(" ", "") for d in re.findall(r'"([^"]+)"', block) if not d.lower().startswith("torch")}
    cli_only = {d for d in declared if d.lower().startswith(dependencies.CLI_ONLY)}
    assert cli_only, "the CLI-only packages are still declared for the command line"
    assert set(dependencies.REQUIREMENTS) == declared - cli_only
    for requirement, module_name in dependencies.REQUIREMENTS.items():
        assert requirement.lower().removeprefix("python-").startswith(module_name.lower()), requirement


def test_cmake_lists_every_module_file_and_the_library():
    """The module's CMakeLists names every Python file of the module and installs the library and models."""
    cmake_text = (REPO / "CardiacLandmarks" / "CMakeLists.txt").read_text()
    cmake = cmake_text.replace("${MODULE_NAME}", "CardiacLandmarks")
    for path in sorted((REPO / "CardiacLandmarks").rglob("*.py")):
        rel = path.relative_to(REPO / "CardiacLandmarks").as_posix()
        assert rel in cmake or rel.removesuffix(".py") in cmake, f"{rel} missing from CardiacLandmarks/CMakeLists.txt"
    for resource in ("Resources/UI/${MODULE_NAME}.ui", "Resources/Icons/${MODULE_NAME}.png"):
        assert resource in cmake_text
    assert "WITH_GENERIC_TESTS" in cmake
    assert "CardiacLandmarksLib/*.py" in cmake and "Resources/Models/*" in cmake
    top = (REPO / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_DEPENDS", "add_subdirectory(CardiacLandmarks)"):
        assert key in top
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in top and 'set(EXTENSION_CATEGORY "Cardiac")' in top


def test_module_metadata_filled():
    """Slicer's generic module test fails on empty metadata: check it is filled and the icon exists."""
    parent = type("Parent", (), {})()
    parent.path = str(REPO / "CardiacLandmarks" / "CardiacLandmarks.py")
    m = module.CardiacLandmarks(parent)
    assert parent.title == "Cardiac Landmarks"
    assert parent.categories == ["Cardiac"]
    assert parent.contributors and all(parent.contributors)
    assert len(parent.helpText) > 200 and len(parent.acknowledgementText) > 50
    assert Path(m.resourcePath("Icons/CardiacLandmarks.png")).is_file()
    assert Path(m.resourcePath("UI/CardiacLandmarks.ui")).is_file()


# ---------------------------------------------------------------------------------------------
# images: MRML -> CMRSeries
# ---------------------------------------------------------------------------------------------


def test_acdc_volume_from_slicer_reader_matches_simpleitk(scene, acdc_dir):
    """A NIfTI volume read by Slicer converts to the same pixels and LPS geometry SimpleITK reads."""
    import SimpleITK as sitk

    path = acdc_dir / ACDC_CASE
    volume = slicer.util.loadVolume(str(path))
    series = module.CardiacLandmarksLogic().seriesFromNode(volume)
    image = sitk.ReadImage(str(path))
    assert series.pixels.shape == (1, *sitk.GetArrayFromImage(image).shape)
    np.testing.assert_array_equal(series.pixels[0], sitk.GetArrayFromImage(image).astype(np.float32))
    np.testing.assert_allclose(series.spacing, image.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(series.direction, np.array(image.GetDirection()).reshape(3, 3), atol=1e-6)
    for k in (0, series.n_slices - 1):
        np.testing.assert_allclose(series.slice_origins[k], image.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-4)
    assert series.orientation_known is False  # identity NIfTI affine = no patient orientation


def test_acdc_volume_matches_library_loader(scene, acdc_dir):
    """Panel and command line see the same series: node conversion equals the library's own loader."""
    from CardiacLandmarksLib.io.load import load_series

    path = acdc_dir / ACDC_CASE
    from_node = module.CardiacLandmarksLogic().seriesFromNode(slicer.util.loadVolume(str(path)))
    from_file = load_series(path)
    np.testing.assert_array_equal(from_node.pixels, from_file.pixels)
    np.testing.assert_allclose(from_node.direction, from_file.direction, atol=1e-6)
    np.testing.assert_allclose(from_node.slice_origins, from_file.slice_origins, atol=1e-4)
    np.testing.assert_allclose(from_node.spacing, from_file.spacing, rtol=1e-6)
    assert from_node.orientation_known == from_file.orientation_known


def test_cine_sequence_from_slicer_reader_matches_dicom_headers(scene, sunnybrook_phases):
    """A volume sequence (cine) converts to [t, k, j, i] pixels equal to the DICOM pixel data, slice
    origins equal to ImagePositionPatient, in-plane axes equal to ImageOrientationPatient, and the
    trigger times of the sequence index; selecting the proxy volume means the whole cine."""
    import pydicom

    phases, trigger, positions, iop = sunnybrook_phases
    sequence, _browser, proxy = load_cine_as_sequence(sunnybrook_phases)
    logic = module.CardiacLandmarksLogic()
    for node in (proxy, sequence):
        series = logic.seriesFromNode(node)
        assert series.pixels.shape == (N_CINE_PHASES, len(positions), 256, 256)
        np.testing.assert_allclose(series.slice_origins, positions, atol=1e-3)
        np.testing.assert_allclose(series.direction[:, 0], iop[:3], atol=1e-5)
        np.testing.assert_allclose(series.direction[:, 1], iop[3:], atol=1e-5)
        np.testing.assert_allclose(series.trigger_times, trigger[:N_CINE_PHASES], atol=1e-3)
        assert series.orientation_known and series.view == "sax"
    for t, k in ((0, 0), (2, 7)):
        np.testing.assert_array_equal(series.pixels[t, k], pydicom.dcmread(phases[t][k]).pixel_array)


def test_a_cine_from_slicers_dicom_module_keeps_its_timing_and_completeness(scene, sunnybrook_dicom, tmp_path):
    """A cine loaded by Slicer's DICOM module (a single-slice cine, as a long-axis cine or one SAX slice, which
    MultiVolumeImporter groups by TriggerTime) carries neither trigger times in its index (frame numbers) nor this
    module's reader facts: its phases had no timing, and a cine with phases lost in a transfer gave plain values where
    the command line says review. Both now come from what the DICOM module keeps on the sequence (the frames'
    TriggerTime; the files, whose headers give the completeness). Files no longer where the module read them (a moved
    DICOM database) leave the series as it was, without an error."""
    import shutil

    import pydicom

    heads = [(float(pydicom.dcmread(f, stop_before_pixels=True).TriggerTime), f)
             for f in sorted(sunnybrook_dicom.glob("*.dcm"))
             if round(float(pydicom.dcmread(f, stop_before_pixels=True).SliceLocation), 1) == -43.5]
    heads.sort()
    assert len(heads) == 20
    logic = module.CardiacLandmarksLogic()
    whole = load_as_slicer_dicom_module_does([[f] for _, f in heads], [t for t, _ in heads], "whole")
    series = logic.seriesFromNode(whole)
    np.testing.assert_allclose(series.trigger_times, [t for t, _ in heads])  # frame numbers before: None
    assert series.metadata["completeness"]["problems"] == []
    lost = [h for k, h in enumerate(heads) if k not in (8, 9)]  # two phases lost in a transfer
    gap = load_as_slicer_dicom_module_does([[f] for _, f in lost], [t for t, _ in lost], "gap")
    series = logic.seriesFromNode(gap)
    assert series.n_phases == 18 and any(p.startswith("phase(s) missing between trigger times")
                                         for p in series.metadata["completeness"]["problems"])
    hub = logic.detect(gap)  # analysed, every value review for its input, as on the command line
    measured = logic.landmarkSetFromResult(hub).measurements
    assert measured and all(m.status != "ok" for m in measured)
    assert all(any(src.kind == "input" and "incomplete series" in src.note for src in m.sources) for m in measured)
    moved = tmp_path / "moved"
    moved.mkdir()
    for _, f in lost:
        shutil.copy(f, moved / f.name)
    away = load_as_slicer_dicom_module_does([[moved / f.name] for _, f in lost], [t for t, _ in lost], "away")
    shutil.rmtree(moved)
    series = logic.seriesFromNode(away)
    assert series.n_phases == 18 and "completeness" not in series.metadata


def test_series_to_sequence_round_trip(scene, sunnybrook_phases):
    """A library series shown as a sequence (console helper) converts back unchanged."""
    _sequence, _browser, proxy = load_cine_as_sequence(sunnybrook_phases, n_phases=2)
    series = module.CardiacLandmarksLogic().seriesFromNode(proxy)
    sequence2, browser2, proxy2 = nodes.addSequenceFromSeries(slicer.mrmlScene, series, "copy",
                                                             slicer.modules.sequences.logic())
    back = module.CardiacLandmarksLogic().seriesFromNode(proxy2)
    np.testing.assert_array_equal(back.pixels, series.pixels)
    np.testing.assert_allclose(back.slice_origins, series.slice_origins, atol=1e-6)
    np.testing.assert_allclose(back.direction, series.direction, atol=1e-9)
    np.testing.assert_allclose(back.trigger_times, series.trigger_times, atol=1e-3)


def test_bad_inputs_raise_named_errors(scene):
    from CardiacLandmarksLib.core.errors import CardiacLandmarksError, InvalidImageError

    logic = module.CardiacLandmarksLogic()
    assert logic.canDetect(None)[0] is False
    empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    ok, reason = logic.canDetect(empty)
    assert not ok and "no image data" in reason
    with pytest.raises(InvalidImageError):
        logic.seriesFromNode(empty)
    vector = slicer.util.addVolumeFromArray(np.zeros((2, 4, 4, 3), np.float32), nodeClassName="vtkMRMLVectorVolumeNode")
    with pytest.raises(CardiacLandmarksError):
        logic.seriesFromNode(vector)
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    volume = slicer.util.addVolumeFromArray(np.zeros((2, 4, 4), np.float32))
    volume.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(CardiacLandmarksError, match="non-linear"):
        logic.seriesFromNode(volume)


# ---------------------------------------------------------------------------------------------
# markups: LandmarkSet -> point lists, corrections, measurements, review
# ---------------------------------------------------------------------------------------------


def _cine_landmarks(series):
    """Known landmarks on every slice/phase: C-LV at the image centre, A-RVI 10 px up-left, I-RVI
    10 px down-left; on phase 1 slice 4 A-RVI is low confidence, I-RVI absent."""
    lmset = LandmarkSet(source="test", view="sax", model={"name": "test", "version": "0", "sha256": ""})
    c = np.array([128.0, 128.0])
    for t in range(series.n_phases):
        for k in range(series.n_slices):
            for name, off, conf in (("A-RVI", (-10, -10), 0.9), ("I-RVI", (-10, 10), 0.85), ("C-LV", (0, 0), 0.97)):
                flag = "high"
                if (t, k) == (1, 4) and name == "A-RVI":
                    conf, flag = 0.3, "low"
                if (t, k) == (1, 4) and name == "I-RVI":
                    lmset.landmarks.append(Landmark(name, k, t, False, np.full(3, np.nan), np.full(3, np.nan), 0.0,
                                                    "absent"))
                    continue
                ijk = np.array([c[0] + off[0] + t, c[1] + off[1], k], float)  # moves 1 px per phase
                lmset.landmarks.append(Landmark(name, k, t, True, series.ijk_to_lps(ijk), ijk, conf, flag))
    return lmset


def test_cine_markups_follow_the_browser_and_corrections_update_the_table(scene, sunnybrook_phases):
    """Cine result: one markups sequence per slice synchronised with the image sequence; the point list
    shows the selected phase; dragging a point in phase 1 corrects only phase 1 and the table's RVI
    angle for that slice/phase changes to what the library computes for the new position."""
    sequence, browser, proxy = load_cine_as_sequence(sunnybrook_phases)
    logic = module.CardiacLandmarksLogic()
    series = logic.seriesFromNode(proxy)
    lmset = _cine_landmarks(series)
    hub = logic.createResultNodes(proxy, series, lmset)

    point_lists = logic.pointListNodes(hub)
    assert len(point_lists) == series.n_slices
    assert len(logic.markupsSequences(hub)) == series.n_slices
    for seq in logic.markupsSequences(hub):
        assert seq.GetNumberOfDataNodes() == N_CINE_PHASES
        assert browser.IsSynchronizedSequenceNode(seq.GetID())
    table = logic.resultTable(hub)
    rows = table_rows(table)
    expected = {(m.name, m.slice, m.phase): m.value
                for m in measurements.rvi_measurements(lmset, series=series)}
    assert rows.keys() == expected.keys()
    np.testing.assert_allclose([rows[k] for k in expected], list(expected.values()), atol=1e-9)

    k = 4
    for t in range(N_CINE_PHASES):
        browser.SetSelectedItemNumber(t)
        assert logic.currentPhase(hub) == t
        shown = point_lists[k]
        for i, name in enumerate(("A-RVI", "I-RVI", "C-LV")):
            lm = lmset.get(name, k, t)
            assert shown.GetNthControlPointLabel(i) == f"{name} s{k} p{t}"
            if lm.found:
                np.testing.assert_allclose(shown.GetNthControlPointPosition(i), geometry.lps_to_ras(lm.position),
                                           atol=1e-6)
            else:
                assert shown.GetNthControlPointPositionStatus(i) == shown.PositionUndefined
    browser.SetSelectedItemNumber(1)
    assert not point_lists[k].GetNthControlPointSelected(0)  # low confidence -> unselected (orange)
    assert logic.flagCounts(hub)["corrected"] == 0

    # drag C-LV of slice 2, phase 1 by 5 px along i
    browser.SetSelectedItemNumber(1)
    before = table_rows(table)
    new_ijk = np.array([128.0 + 1 + 5, 128.0, 2.0])
    point_lists[2].SetNthControlPointPosition(2, *geometry.lps_to_ras(series.ijk_to_lps(new_ijk)))
    after = table_rows(table)
    current = logic.landmarkSetFromResult(hub)
    moved = current.get("C-LV", 2, 1)
    assert moved.corrected and moved.confidence == 1.0
    np.testing.assert_allclose(moved.ijk, new_ijk, atol=1e-3)  # the DICOM grid is sheared by ~1e-5
    assert not current.get("C-LV", 2, 0).corrected and not current.get("C-LV", 2, 2).corrected
    changed = {key for key in after if abs(after[key] - before[key]) > 1e-9}
    assert changed == {("RVI angle", 2, 1), ("RVI opening angle", 2, 1)}
    independent = {(m.name, m.slice, m.phase): m.value for m in measurements.rvi_measurements(current, series=series)}
    assert after[("RVI angle", 2, 1)] == pytest.approx(independent[("RVI angle", 2, 1)], abs=1e-9)
    # the correction is stored in the phase-1 item of the markups sequence, not in the others
    seq = logic.markupsSequences(hub)[2]
    np.testing.assert_allclose(seq.GetNthDataNode(1).GetNthControlPointPosition(2),
                               geometry.lps_to_ras(series.ijk_to_lps(new_ijk)), atol=1e-6)
    assert seq.GetNthDataNode(0).GetNthControlPointDescription(2).startswith("high confidence")
    assert seq.GetNthDataNode(1).GetNthControlPointDescription(2) == "placed by user"
    # browsing away and back keeps the correction
    browser.SetSelectedItemNumber(0)
    browser.SetSelectedItemNumber(1)
    assert logic.landmarkSetFromResult(hub).get("C-LV", 2, 1).corrected


def test_a_point_dragged_outside_the_image_goes_back(scene, sunnybrook_phases, caplog):
    """A point dragged past the image's edge in a slice view (or off its slice in a 3D view) was taken as a
    correction, with an RVI angle computed from it, and only `apply-review` refused the exported file. The panel
    now puts it back where it was, says why in the log, and its measurements stay; a drag inside still counts."""
    _sequence, browser, proxy = load_cine_as_sequence(sunnybrook_phases)
    logic = module.CardiacLandmarksLogic()
    series = logic.seriesFromNode(proxy)
    hub = logic.createResultNodes(proxy, series, _cine_landmarks(series))
    browser.SetSelectedItemNumber(1)
    point_list = logic.pointListNodes(hub)[2]
    before_rows = table_rows(logic.resultTable(hub))
    before = logic.landmarkSetFromResult(hub).get("A-RVI", 2, 1)
    rows, cols = series.shape_ji
    for ijk, why in (([cols + 30.0, rows / 2, 2.0], "lies outside the image"),
                     ([cols / 2, -40.0, 2.0], "lies outside the image"),
                     ([cols / 2, rows / 2, 4.0], "lies on slice 4.00, not on slice 2")):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            point_list.SetNthControlPointPosition(0, *geometry.lps_to_ras(series.ijk_to_lps(np.array(ijk))))
        assert any(why in r.getMessage() and "A-RVI of slice 2, phase 1" in r.getMessage() for r in caplog.records)
        np.testing.assert_allclose(point_list.GetNthControlPointPosition(0), geometry.lps_to_ras(before.position),
                                   atol=1e-6)
        now = logic.landmarkSetFromResult(hub).get("A-RVI", 2, 1)
        assert not now.corrected and np.allclose(now.position, before.position)
        assert table_rows(logic.resultTable(hub)) == before_rows
    inside = np.array(before.ijk, float) + [3.0, 0.0, 0.0]
    point_list.SetNthControlPointPosition(0, *geometry.lps_to_ras(series.ijk_to_lps(inside)))
    assert logic.landmarkSetFromResult(hub).get("A-RVI", 2, 1).corrected


def test_review_jumps_to_flagged_points_and_placing_an_absent_point(scene, sunnybrook_phases):
    """Review visits low-confidence and absent points in order; the Red slice view is rotated to the
    image plane and jumps to the point; an absent point is armed for placement, and placing it makes
    it a corrected point with its measurements."""
    _sequence, browser, proxy = load_cine_as_sequence(sunnybrook_phases)
    logic = module.CardiacLandmarksLogic()
    series = logic.seriesFromNode(proxy)
    lmset = _cine_landmarks(series)
    hub = logic.createResultNodes(proxy, series, lmset)
    logic.showResultInSliceViews(hub)
    red = slicer.util.getNode("Red")
    axes = np.array([[red.GetSliceToRAS().GetElement(r, c) for c in range(3)] for r in range(3)])
    stack_normal_ras = geometry.lps_to_ras(series.direction[:, 2])
    assert abs(abs(axes[:, 2] @ stack_normal_ras) - 1.0) < 1e-6  # the view shows the image plane
    np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-9)
    assert np.linalg.det(axes) > 0
    anterior_ras = geometry.lps_to_ras(geometry.ANTERIOR_LPS)
    left_ras = geometry.lps_to_ras(geometry.LEFT_LPS)
    assert axes[:, 1] @ anterior_ras > 0.5  # anterior wall up
    assert axes[:, 0] @ left_ras > 0.3  # patient's left on screen right: RV on the viewer's left

    flagged = logic.flaggedPoints(hub)
    assert [(p.name, p.slice, p.phase, p.flag) for p in flagged] == [("A-RVI", 4, 1, "low"), ("I-RVI", 4, 1, "absent")]
    first = logic.nextFlaggedPoint(hub)
    assert first.name == "A-RVI"
    assert logic.nextFlaggedPoint(hub, after=first.key).name == "I-RVI"
    assert logic.nextFlaggedPoint(hub, after=flagged[-1].key).name == "A-RVI"  # wraps around

    browser.SetSelectedItemNumber(0)
    logic.showPoint(hub, first)
    assert logic.currentPhase(hub) == 1
    centre = np.array([red.GetSliceToRAS().GetElement(r, 3) for r in range(3)])
    np.testing.assert_allclose(centre, geometry.lps_to_ras(lmset.get("A-RVI", 4, 1).position), atol=1e-3)

    absent = logic.nextFlaggedPoint(hub, after=first.key)
    logic.showPoint(hub, absent)
    point_list = logic.pointListNodes(hub)[4]
    selection = slicer.mrmlScene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    interaction = slicer.mrmlScene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    assert selection.GetActivePlaceNodeID() == point_list.GetID()
    assert interaction.GetCurrentInteractionMode() == interaction.Place
    assert point_list.GetControlPointPlacementStartIndex() == 1
    # the user clicks: Slicer sets the position of that control point
    assert ("RVI opening angle", 4, 1) not in table_rows(logic.resultTable(hub))
    placed = series.ijk_to_lps(np.array([119.0, 138.0, 4.0]))
    point_list.SetNthControlPointPosition(1, *geometry.lps_to_ras(placed))
    rows = table_rows(logic.resultTable(hub))
    assert ("RVI opening angle", 4, 1) in rows
    assert [p.name for p in logic.flaggedPoints(hub)] == ["A-RVI"]
    assert logic.landmarkSetFromResult(hub).get("I-RVI", 4, 1).corrected


def test_confirming_a_low_point_trusts_it_where_it_is(scene, sunnybrook_phases):
    """Confirm point on the low A-RVI of slice 4, phase 1 (shown on phase 0): the phase is selected, the point
    keeps its position, becomes selected with confidence 1 and "confirmed by user" in the phase-1 item of its
    markups sequence, leaves the queue, and its RVI angle turns 'ok (confirmed)' with the same value; a later
    drag makes it a plain correction; an absent point cannot be confirmed."""
    _sequence, browser, proxy = load_cine_as_sequence(sunnybrook_phases)
    logic = module.CardiacLandmarksLogic()
    series = logic.seriesFromNode(proxy)
    lmset = _cine_landmarks(series)
    hub = logic.createResultNodes(proxy, series, lmset)
    browser.SetSelectedItemNumber(0)
    key = ("RVI angle", 4, 1)
    before = logic.landmarkSetFromResult(hub)
    angle = next(m for m in before.measurements if (m.name, m.slice, m.phase) == key)
    assert angle.status == "review"
    assert logic.confirmPoint(hub, "A-RVI", 4, 1)
    assert logic.currentPhase(hub) == 1
    current = logic.landmarkSetFromResult(hub)
    a = current.get("A-RVI", 4, 1)
    assert (a.corrected, a.confirmed, a.flag, a.confidence) == (True, True, "high", 1.0)
    np.testing.assert_allclose(a.position, lmset.get("A-RVI", 4, 1).position, atol=1e-6)
    item = logic.markupsSequences(hub)[4].GetNthDataNode(1)
    assert item.GetNthControlPointDescription(0) == "confirmed by user" and item.GetNthControlPointSelected(0)
    assert logic.markupsSequences(hub)[4].GetNthDataNode(0).GetNthControlPointDescription(0).startswith("high")
    assert [p.name for p in logic.flaggedPoints(hub)] == ["I-RVI"]
    assert logic.flagCounts(hub)["confirmed"] == 1 and logic.flagCounts(hub)["low"] == 0
    after = next(m for m in current.measurements if (m.name, m.slice, m.phase) == key)
    assert after.status == "ok" and after.value == pytest.approx(angle.value, abs=1e-9)
    assert table_statuses(logic.resultTable(hub))[key] == "ok (confirmed)"
    assert not logic.confirmPoint(hub, "A-RVI", 4, 1)  # already confirmed: nothing changes
    with pytest.raises(ValueError, match="place it"):
        logic.confirmPoint(hub, "I-RVI", 4, 1)
    # browsing away and back keeps it; a drag then makes it a correction
    browser.SetSelectedItemNumber(0)
    browser.SetSelectedItemNumber(1)
    assert logic.landmarkSetFromResult(hub).get("A-RVI", 4, 1).confirmed
    moved = series.ijk_to_lps(np.array(a.ijk, float) + [4.0, 0.0, 0.0])
    logic.pointListNodes(hub)[4].SetNthControlPointPosition(0, *geometry.lps_to_ras(moved))
    dragged = logic.landmarkSetFromResult(hub).get("A-RVI", 4, 1)
    assert dragged.corrected and not dragged.confirmed
    assert item.GetNthControlPointDescription(0) == "placed by user"


@pytest.mark.data
def test_open_a_study_result_folder_review_it_and_export_it_back(scene, data_root, tmp_path):
    """Open result folder: the SAX ED/ES pair and the 4CH cine that `study` wrote for M&Ms-2 001 open with their
    images (the pair as a 2-phase sequence); a point confirmed earlier (in the browser app) stays confirmed;
    the reader confirms another here and exports into the same folder (backups kept); apply-review counts both."""
    from CardiacLandmarksLib.cli import main as cli_main
    from CardiacLandmarksLib.results import confirm_landmark, read_result, recompute_measurements, save_result
    from CardiacLandmarksLib.results import load_source as library_load_source
    from CardiacLandmarksLib.study.review import apply_review

    out = tmp_path / "study"
    assert cli_main(["study", str(data_root / "mnms2" / "001"), "-o", str(out)]) == 0
    sax_folder = out / "001_SA_sax"
    earlier = read_result(sax_folder)
    series = library_load_source(earlier, sax_folder)
    lows = [lm for lm in earlier.landmarks if lm.flag == "low" and lm.phase == 1]
    assert len(lows) >= 2, "the SAX model flags ES points of M&Ms-2 001 low"
    confirm_landmark(earlier, lows[0].name, lows[0].slice, 1)
    recompute_measurements(earlier, series)
    save_result(sax_folder, earlier, series)

    logic = module.CardiacLandmarksLogic()
    hub = logic.openResult(sax_folder)
    assert hub.GetAttribute(module.RESULT_FOLDER_ATTRIBUTE) == str(sax_folder)
    assert len(logic.markupsSequences(hub)) == series.n_slices
    assert logic.markupsSequences(hub)[0].GetNumberOfDataNodes() == 2
    current = logic.landmarkSetFromResult(hub)
    kept = current.get(lows[0].name, lows[0].slice, 1)
    assert kept.confirmed and kept.corrected
    expected = {(lm.name, lm.slice, lm.phase): lm.flag for lm in read_result(sax_folder).landmarks if not lm.corrected}
    assert {(lm.name, lm.slice, lm.phase): lm.flag for lm in current.landmarks if not lm.corrected} == expected
    assert logic.flagCounts(hub)["confirmed"] == 1
    # the reader confirms another low ES point here and exports into the folder it came from
    assert logic.confirmPoint(hub, lows[1].name, lows[1].slice, 1)
    written = logic.exportResult(hub, sax_folder)
    assert {p.name for p in written} >= {"landmarks.json", "measurements.csv"}
    assert list(sax_folder.glob("landmarks.json.bak-*"))
    back = read_result(sax_folder)
    assert all(back.get(lm.name, lm.slice, 1).confirmed for lm in lows[:2])
    upd = apply_review(out)
    assert [(a.series, a.confirmed) for a in upd.analyses if a.task == "sax"] == [("001_SA", 2)]
    # the long-axis result opens as a long-axis result, with its LV lengths
    lax = logic.openResult(out / "001_LA_CINE_lax")
    assert logic.isLaxResult(lax)
    saved = {m.phase: m.value for m in read_result(out / "001_LA_CINE_lax").measurements if m.name == "LV length"}
    shown = {m.phase: m.value for m in logic.landmarkSetFromResult(lax).measurements if m.name == "LV length"}
    assert saved and shown.keys() == saved.keys()
    np.testing.assert_allclose([shown[t] for t in saved], [saved[t] for t in saved], atol=1e-6)
    with pytest.raises(Exception, match="landmarks.json"):
        logic.openResult(tmp_path)


def test_self_test_of_the_module(scene):
    """The module's own ScriptedLoadableModuleTest (what Slicer's self-test runs) passes here."""
    test = module.CardiacLandmarksTest()
    test.runTest()


# ---------------------------------------------------------------------------------------------
# detection (needs the bundled model) and export
# ---------------------------------------------------------------------------------------------


def test_detect_on_acdc_equals_the_command_line_pipeline(scene, acdc_dir):
    """The panel's detection on a Slicer-loaded volume gives the same landmarks as the library pipeline
    on the file (one pipeline for panel, console and CLI)."""
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.sax.pipeline import detect_landmarks

    path = acdc_dir / ACDC_CASE
    logic = module.CardiacLandmarksLogic()
    hub = logic.detect(slicer.util.loadVolume(str(path)), device="cpu")
    panel = logic.landmarkSetFromResult(hub)
    # the panel's chunks of 8 images (logic.detect's batchSize): the same chunks compute the same floats; the CLI's
    # 50 round the confidences differently in the 6th decimal on some thread counts (run_batches)
    cli = detect_landmarks(load_series(path), device="cpu", batch_size=8)
    assert len(panel.landmarks) == len(cli.landmarks) > 0
    for a in cli.landmarks:
        b = panel.get(a.name, a.slice, a.phase)
        assert b is not None and b.found == a.found and b.flag == a.flag and not b.corrected
        assert b.confidence == pytest.approx(a.confidence, abs=1e-6)
        if a.found:
            np.testing.assert_allclose(b.position, a.position, atol=1e-4)
    assert [(m.name, m.slice, m.phase) for m in panel.measurements] == [(m.name, m.slice, m.phase)
                                                                       for m in cli.measurements]
    # positions agree to 1e-4 mm after the MRML round trip, which moves angles by up to ~1e-5 deg
    np.testing.assert_allclose([m.value for m in panel.measurements], [m.value for m in cli.measurements], atol=1e-3)


def test_detect_cine_reports_progress_and_can_be_cancelled(scene, sunnybrook_phases):
    """Detection on a cine reports progress per batch, honours Cancel (no result nodes made), and
    fills one markups sequence per slice with the pipeline's landmarks."""
    from CardiacLandmarksLib.sax.pipeline import Cancelled, detect_landmarks

    _sequence, browser, proxy = load_cine_as_sequence(sunnybrook_phases, n_phases=2)
    logic = module.CardiacLandmarksLogic()
    calls = []
    with pytest.raises(Cancelled):
        logic.detect(proxy, device="cpu", progress=lambda d, n: calls.append((d, n)), cancel=lambda: len(calls) > 1,
                     batchSize=8)
    assert slicer.mrmlScene.GetNodesByClass("vtkMRMLTextNode").GetNumberOfItems() == 0
    calls.clear()
    hub = logic.detect(proxy, device="cpu", progress=lambda d, n: calls.append((d, n)), batchSize=8)
    total = 2 * len(sunnybrook_phases[0][0])
    assert calls[0] == (0, total) and calls[-1] == (total, total) and len(calls) >= total // 8
    series = logic.seriesFromNode(proxy)
    reference = detect_landmarks(series, device="cpu")
    sequences = logic.markupsSequences(hub)
    for lm in reference.landmarks:
        item = sequences[lm.slice].GetNthDataNode(lm.phase)
        index = ("A-RVI", "I-RVI", "C-LV").index(lm.name)
        if lm.found:
            np.testing.assert_allclose(item.GetNthControlPointPosition(index), geometry.lps_to_ras(lm.position),
                                       atol=1e-4)
        else:
            assert item.GetNthControlPointPositionStatus(index) == item.PositionUndefined


def test_export_writes_library_formats_and_keeps_backups(scene, tmp_path, sunnybrook_phases):
    """Export writes the command line's .mrk.json / landmarks.json / CSV with the corrections; a second
    export keeps the first files as backups; the markups read back with their confidence."""
    _sequence, browser, proxy = load_cine_as_sequence(sunnybrook_phases, n_phases=2)
    logic = module.CardiacLandmarksLogic()
    series = logic.seriesFromNode(proxy)
    lmset = _cine_landmarks(series)
    hub = logic.createResultNodes(proxy, series, lmset)
    browser.SetSelectedItemNumber(0)
    new_ijk = np.array([110.0, 120.0, 3.0])
    logic.pointListNodes(hub)[3].SetNthControlPointPosition(0, *geometry.lps_to_ras(series.ijk_to_lps(new_ijk)))

    written = logic.exportResult(hub, tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["landmarks.json", "landmarks_phase00.mrk.json", "landmarks_phase01.mrk.json", "measurements.csv"]
    back = markups.read_markups(tmp_path, series)
    a = back.get("A-RVI", 3, 0)
    assert a.corrected and np.allclose(a.ijk, new_ijk, atol=1e-3)
    assert back.get("C-LV", 5, 1).confidence == pytest.approx(0.97)
    low = back.get("A-RVI", 4, 1)
    assert low.flag == "low" and low.confidence == pytest.approx(0.3)
    assert not back.get("I-RVI", 4, 1).found
    doc = json.loads((tmp_path / "landmarks.json").read_text())
    assert sum(1 for lm in doc["landmarks"] if lm["corrected"]) == 1
    csv_lines = (tmp_path / "measurements.csv").read_text().splitlines()
    assert csv_lines[0] == "name,slice,phase,value,unit,status,sources,check"
    assert len(csv_lines) == 1 + len(doc["measurements"])

    logic.exportResult(hub, tmp_path)
    backups = sorted(p.name for p in tmp_path.iterdir() if ".bak-" in p.name)
    assert len(backups) == 4, backups

    # another program writing into the folder (a study run, the review app's save): the export says so and writes
    # nothing (it held nothing before, and wrote into a folder the run was rewriting)
    from conftest import held_by_another_process

    from CardiacLandmarksLib.core.errors import FolderHeldError

    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.startswith(".")}
    with held_by_another_process(tmp_path, "study") as holder:
        with pytest.raises(FolderHeldError, match=rf"another run is writing into .* \(study: process {holder.pid} "):
            logic.exportResult(hub, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.startswith(".")} == before


def test_parameter_node_wrapper_fields(scene):
    """The parameter node stores the input, view and results as Slicer would (node references)."""
    logic = module.CardiacLandmarksLogic()
    params = logic.getParameterNode()
    assert params.view == "auto" and params.inputVolume is None
    volume = slicer.util.addVolumeFromArray(np.zeros((2, 8, 8), np.float32))
    params.inputVolume = volume
    # stored in the MRML node (Slicer's wrapper keeps a Union member under "inputVolume.<member>"):
    # a new wrapper on the same node reads it back
    assert module.CardiacLandmarksParameterNode(params.parameterNode).inputVolume is volume
    refs = [params.parameterNode.GetNthNodeReferenceRole(i)
            for i in range(params.parameterNode.GetNumberOfNodeReferenceRoles())]
    assert any(r.startswith("inputVolume") and params.parameterNode.GetNodeReference(r) is volume for r in refs)
    params.inputVolume = None  # None is a member of the Union (Slicer's wrapper default)
    assert params.inputVolume is None
    params.inputVolume = volume
    with pytest.raises(TypeError):
        params.inputVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLModelNode")
    assert logic.getParameterNode().parameterNode is params.parameterNode  # singleton


def test_removing_a_result_or_closing_the_scene_forgets_it(scene):
    """Node IDs are reused after a scene close: the logic must not keep a stale result."""
    series = module.CardiacLandmarksTest._syntheticSeries()
    volume = nodes.addVolumeFromSeries(slicer.mrmlScene, series, "synthetic")
    logic = module.CardiacLandmarksLogic()
    hub = logic.createResultNodes(volume, series, module.CardiacLandmarksTest._knownLandmarkSet(series))
    point_list = logic.pointListNodes(hub)[1]
    assert hub.GetID() in logic._states
    slicer.mrmlScene.RemoveNode(hub)
    assert not logic._states
    point_list.SetNthControlPointPosition(0, 1.0, 2.0, 3.0)  # no longer observed: nothing to update, no error
    hub2 = logic.createResultNodes(volume, series, module.CardiacLandmarksTest._knownLandmarkSet(series))
    assert hub2.GetID() in logic._states
    slicer.mrmlScene.Clear()
    assert not logic._states


def test_a_doubtful_absence_keeps_its_reason_in_the_scene(scene, sunnybrook_phases, tmp_path):
    """An RV insertion called absent although the network nearly found it carries its doubt through the scene
    (point lists, their sequences) into the review queue and into the exported point lists, as a low point's does;
    a clear absence carries none."""
    from CardiacLandmarksLib.io.markups import read_markups

    _sequence, _browser, proxy = load_cine_as_sequence(sunnybrook_phases)
    logic = module.CardiacLandmarksLogic()
    series = logic.seriesFromNode(proxy)
    lmset = _cine_landmarks(series)
    why = ("nearly found: the network's evidence for the RV insertions (0.55) is close to the presence threshold "
           "(0.68); check whether this slice has them")
    lmset.get("I-RVI", 4, 1).doubt = why
    hub = logic.createResultNodes(proxy, series, lmset)
    flagged = logic.flaggedPoints(hub)
    assert [(p.name, p.slice, p.phase, p.flag, p.doubt) for p in flagged] == [
        ("A-RVI", 4, 1, "low", ""), ("I-RVI", 4, 1, "absent", why)]
    logic.exportResult(hub, str(tmp_path))
    back = read_markups(tmp_path)
    assert back.get("I-RVI", 4, 1).doubt == why and back.get("I-RVI", 4, 1).flag == "absent"
    assert back.get("A-RVI", 4, 0).doubt == ""
