"""The module panel as a user drives it, on Slicer 5.10.0's own Python layer (issue 14).

``slicer.util``, ``slicer.parameterNodeWrapper`` and ``slicer.ScriptedLoadableModule`` are
Slicer's own files (``shared/slicer-python/v5.10.0``), the MRML is the ``slicer-core`` wheel's,
and the panel is built by ``slicer.util.loadUI`` from the module's ``.ui`` files on real Qt widgets
(Qt.py / PySide6) with the application stand-ins of ``Testing/slicer_stubs``. Dialogs are not
skipped (``slicer.app.testingEnabled()`` is false, as for a user): each test answers those it
expects, and an unexpected dialog fails the test.

Flows: open the module, load an image, Detect, Review next flagged, move a point (the table
updates), Export (needs a chosen folder; a second export keeps backups), for an ACDC short-axis
stack, an M&Ms-2 4CH cine and an mlperf perfusion study. Also: Slicer's own parameter node wrapper
test on this harness (is the harness faithful?), the parameter node crash of the old annotation,
and the dependency-install dialogs of Detect and of the perfusion section.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import typing
import unittest
from pathlib import Path

import numpy as np
import pytest
import slicer_stubs

slicer_stubs.install()

import ctk  # noqa: E402
import qt  # noqa: E402
import slicer  # noqa: E402
from CardiacLandmarksModuleLib import dependencies  # noqa: E402

import CardiacLandmarks as module  # noqa: E402
from CardiacLandmarksLib.core import geometry  # noqa: E402

PANEL_PNG = Path(os.environ.get("CARDIAC_LANDMARKS_PANEL_PNG", Path(os.environ.get("TMPDIR", "/tmp"))
                                / "cardiac_landmarks_panel_slicer.png"))


@pytest.fixture
def dialogs():
    """The dialog answers of this test; fails the test on a dialog it did not expect."""
    ctk.dialogs.reset()
    yield ctk.dialogs
    assert not ctk.dialogs.unexpected, f"unexpected dialogs: {ctk.dialogs.unexpected}"
    assert not ctk.dialogs.answers, f"expected dialogs that never came: {ctk.dialogs.answers}"


@pytest.fixture
def panel(dialogs, monkeypatch, tmp_path):
    """The module opened in a fresh scene (``slicer.modules.cardiaclandmarks``): its widget, after setup and enter."""
    monkeypatch.chdir(tmp_path)  # Slicer's working directory: nothing may be written here by default
    slicer_stubs.newScene()
    qt.QSettings().clear()
    mod = slicer_stubs.loadModule("CardiacLandmarks")
    widget = mod.widgetRepresentation()
    mod.enter()
    yield widget
    mod.exit()
    widget.cleanup()
    mod.panel.deleteLater()
    assert not [p for p in tmp_path.iterdir()], "the panel wrote into the working directory"


def click(button) -> None:
    """Click as the user does; fail if an exception leaves the Qt slot (Qt would only print it)."""
    assert button.enabled, f"{button.objectName} is disabled"
    escaped = []
    hook, sys.excepthook = sys.excepthook, lambda *exc: escaped.append(exc)
    try:
        button.click()
        slicer.app.processEvents()
    finally:
        sys.excepthook = hook
    assert not escaped, f"exception left the Qt slot of {button.objectName}: {escaped[0][1]!r}"


# ---------------------------------------------------------------------------------------------
# the harness is Slicer's, and the parameter node of the module works with it
# ---------------------------------------------------------------------------------------------


@pytest.mark.no_torch
def test_harness_uses_slicer_5_10_python_layer():
    root = slicer_stubs.slicerPythonRoot()
    for name in ("util", "parameterNodeWrapper", "ScriptedLoadableModule", "i18n"):
        assert Path(getattr(slicer, name).__file__).resolve().is_relative_to(root), name
    assert slicer.app.testingEnabled() is False
    assert (root / "COMMIT").read_text().strip() == "a2b6d082be04274a849884fbb1e85634a9df90fb"


@pytest.mark.no_torch
def test_missing_slicer_python_layer_fails_in_ci_and_skips_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setenv(slicer_stubs.SLICER_PYTHON_ENV, str(tmp_path))
    assert slicer_stubs.slicerPythonRoot() == tmp_path.resolve()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Slicer's Python layer not found"):
        slicer_stubs.requireSlicerPython()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="CARDIAC_LANDMARKS_SLICER_PYTHON"):
        slicer_stubs.requireSlicerPython()


@pytest.mark.no_torch
def test_slicer_own_parameter_node_wrapper_tests_pass_on_the_harness():
    """Slicer's test file for its wrapper (``test_slicer_parameter_node_wrapper.py``), run unchanged."""
    slicer_stubs.newScene()
    path = slicer_stubs.slicerPythonRoot() / "test_slicer_parameter_node_wrapper.py"
    spec = importlib.util.spec_from_file_location("test_slicer_parameter_node_wrapper", path)
    tests = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tests  # the wrapper's Any serializer imports stored types by module name
    spec.loader.exec_module(tests)
    suite = unittest.defaultTestLoader.loadTestsFromModule(tests)
    result = unittest.TextTestRunner(verbosity=0, stream=open(os.devnull, "w")).run(suite)
    problems = [f"{test}: {trace.splitlines()[-1]}" for test, trace in result.failures + result.errors]
    assert result.testsRun >= 30 and not problems, problems


@pytest.mark.no_torch
def test_parameter_node_union_without_none_fails_with_slicer_wrapper():
    """The annotation the module had (a Union of node types without None) cannot be created by
    Slicer 5.10's wrapper: its default is None, which no member stores. The module's annotation can."""
    slicer_stubs.newScene()
    from slicer.parameterNodeWrapper import parameterNodeWrapper

    @parameterNodeWrapper
    class OldParameters:
        inputVolume: typing.Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLSequenceNode]  # noqa: UP007

    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    with pytest.raises(TypeError):
        OldParameters(node)
    params = module.CardiacLandmarksLogic().getParameterNode()  # the module's, with the real wrapper
    assert params.inputVolume is None and params.view == "auto" and params.result is None
    sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode")
    params.inputVolume = sequence
    assert module.CardiacLandmarksParameterNode(params.parameterNode).inputVolume is sequence


@pytest.mark.no_torch
@pytest.mark.filterwarnings("error::UserWarning")  # e.g. Slicer's "does not have observer" on re-enter
def test_panel_opens_and_binds_the_input_selector(panel):
    """setup() + enter() with the real wrapper; the .ui's node selector is bound to inputVolume."""
    ui = panel.ui
    assert type(ui.inputSelector) is slicer.qMRMLNodeComboBox
    assert ui.inputSelector.nodeTypes == ["vtkMRMLScalarVolumeNode", "vtkMRMLSequenceNode"]
    assert not ui.detectButton.enabled and ui.outputDirectoryButton.directory == "."
    volume = slicer.util.addVolumeFromArray(np.zeros((2, 8, 8), np.float32), name="tiny")
    label = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    assert label.GetID() not in ui.inputSelector._ids  # exact classes (showChildNodeTypes false), as in Slicer
    ui.inputSelector.setCurrentNode(volume)
    assert panel._parameterNode.inputVolume is volume and ui.detectButton.enabled
    panel._parameterNode.inputVolume = None  # GUI follows the parameter node
    assert ui.inputSelector.currentNode() is None and not ui.detectButton.enabled
    # what Slicer's generic module tests do: leave and re-enter the module, close the scene while entered
    mod = slicer.modules.cardiaclandmarks
    mod.exit()
    panel._parameterNode.inputVolume = volume  # not connected to the GUI while the module is not shown
    assert ui.inputSelector.currentNode() is None
    mod.enter()
    assert ui.inputSelector.currentNode() is volume and ui.detectButton.enabled
    slicer.mrmlScene.Clear()
    assert panel._parameterNode is not None and panel._parameterNode.inputVolume is None
    assert ui.inputSelector.currentNode() is None and not ui.detectButton.enabled


# ---------------------------------------------------------------------------------------------
# dependencies, errors and the export folder
# ---------------------------------------------------------------------------------------------


@pytest.mark.no_torch
def test_tqdm_is_not_installed_into_slicer():
    assert "tqdm" not in " ".join(dependencies.REQUIREMENTS) and "tqdm" in dependencies.CLI_ONLY
    root = Path(module.__file__).resolve().parents[1] / "CardiacLandmarksLib"
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if "tqdm" in p.read_text())
    # only the command line, the training recipes and the cohort runner (never run inside Slicer) use it
    assert users and all(u.startswith(("cli/", "training/", "batch/")) for u in users), users


def test_detect_offers_to_install_missing_packages_and_cancel_stops(panel, dialogs, monkeypatch):
    volume = slicer.util.addVolumeFromArray(np.zeros((2, 8, 8), np.float32), name="tiny")
    panel.ui.inputSelector.setCurrentNode(volume)
    monkeypatch.setattr(dependencies, "missingRequirements", lambda: ["matplotlib>=3.7"])
    dialogs.answer(qt.QMessageBox.Cancel)
    click(panel.ui.detectButton)
    assert "matplotlib" in dialogs.shown[0] and "Install them now" in dialogs.shown[0]
    assert panel.ui.statusLabel.text == "Missing Python packages: matplotlib>=3.7"
    assert panel._parameterNode.result is None


def test_perfusion_run_offers_the_install_and_a_missing_pytorch_extension_is_an_error_dialog(panel, dialogs,
                                                                                             monkeypatch):
    """The perfusion section asks before installing (as Detect does); torch without the PyTorch extension
    gives Slicer's error dialog and a status text, and the exception does not leave the Qt slot."""
    section = panel.perfusionSection
    volume = slicer.util.addVolumeFromArray(np.zeros((4, 8, 8), np.float32), name="1_stress_mid")
    section.ui.perfusionInputsComboBox.setCheckState(volume, qt.Qt.Checked)
    ran = []
    monkeypatch.setattr(type(panel.logic.perfusion), "run", lambda self, *a, **k: ran.append(1))
    monkeypatch.setattr(dependencies, "missingRequirements", lambda: ["matplotlib>=3.7"])
    dialogs.answer(qt.QMessageBox.Cancel)
    click(section.ui.perfusionRunButton)
    assert "matplotlib" in dialogs.shown[-1] and not ran
    assert section.ui.perfusionStatusLabel.text == "Missing Python packages: matplotlib>=3.7"

    monkeypatch.setattr(dependencies, "torchInstalled", lambda: False)
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # the PyTorch extension is not installed
    dialogs.answer(qt.QMessageBox.Ok)  # the error dialog
    click(section.ui.perfusionRunButton)
    assert "Failed to install the required Python packages" in dialogs.shown[-1]
    assert "PyTorch" in dialogs.shown[-1] and not ran
    assert "could not be installed" in section.ui.perfusionStatusLabel.text


def test_detection_error_shows_slicer_error_dialog_and_the_slot_returns(panel, dialogs, monkeypatch):
    from CardiacLandmarksLib.core.errors import InvalidImageError

    volume = slicer.util.addVolumeFromArray(np.zeros((2, 8, 8), np.float32), name="tiny")
    panel.ui.inputSelector.setCurrentNode(volume)

    def fail(*args, **kwargs):
        raise InvalidImageError("the image is too small")

    monkeypatch.setattr(panel.logic, "detect", fail)
    dialogs.answer(qt.QMessageBox.Ok)
    click(panel.ui.detectButton)  # an exception leaving the slot would fail here
    assert dialogs.shown == ["Landmark detection failed.\n\nthe image is too small"]
    assert panel.ui.statusLabel.text == "Detection failed (see the error message)."
    assert panel.ui.detectButton.enabled and not panel.ui.cancelButton.visible
    assert slicer.app.overrideCursorDepth == 0


# ---------------------------------------------------------------------------------------------
# full flows on real data
# ---------------------------------------------------------------------------------------------


def _table_values(view) -> dict:
    """(name, slice, phase) -> value shown in a qMRMLTableView (the panel's measurement table)."""
    model = view.model()
    headers = [model.headerData(c, qt.Qt.Horizontal) for c in range(model.columnCount())]
    rows = {}
    for r in range(model.rowCount()):
        cells = dict(zip(headers, (model.item(r, c).text() for c in range(model.columnCount()))))
        key = (cells.get("name") or cells.get("Measurement"), cells.get("slice"), cells.get("phase"))
        rows[key] = cells
    return rows


def _detect_on_cpu(panel, dialogs, path: Path):
    """Load ``path`` into the panel's input, Detect on the CPU (no dialog may open); the loaded volume."""
    ui = panel.ui
    volume = slicer.util.loadVolume(str(path))
    ui.inputSelector.setCurrentNode(volume)
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findData("cpu")
    click(ui.detectButton)
    assert not dialogs.shown, dialogs.shown
    return volume


def test_summary_says_how_many_points_not_found_to_check(panel, dialogs, acdc_dir):
    """ACDC patient069 ES (a calibration patient): the network nearly found the RV insertions of slice 6 (two
    doubtful absences, as the command line says: '2 absent point(s) to check: nearly found') beside two clear
    absences. The panel's summary said only '4 not found'; it now says how many of them are worth a look."""
    ui = panel.ui
    _detect_on_cpu(panel, dialogs, acdc_dir / "patient069_ES.nii.gz")
    hub = panel._parameterNode.result
    counts, doubts = panel.logic.flagCounts(hub), panel.logic.doubtfulAbsences(hub)
    assert len(doubts) == 2 and all(d.startswith("nearly found: ") for d in doubts)
    assert counts["absent"] == 4  # the two clear absences are not counted among those to check
    assert (f"{counts['absent']} not found (2 of them to check: nearly found), 0 corrected, 0 confirmed"
            in ui.flagSummaryLabel.text)


def test_sax_flow_on_acdc(panel, dialogs, acdc_dir, tmp_path_factory):
    """Load, Detect, Review next flagged, move a point (table updates), Export without and with a folder."""
    ui = panel.ui
    volume = _detect_on_cpu(panel, dialogs, acdc_dir / "patient001_ED.nii.gz")
    assert ui.statusLabel.text == "Done. Review the flagged points."
    hub = panel._parameterNode.result
    assert hub is not None and panel._parameterNode.measurementsTable is not None
    assert ui.flagSummaryLabel.text.startswith(f"{3 * volume.GetImageData().GetDimensions()[2]} points")
    for button in (ui.reviewButton, ui.exportMarkupsButton, ui.exportLandmarksButton, ui.exportCsvButton):
        assert button.enabled
    logic = panel.logic
    shown = ui.measurementsTableView.model().rowCount()
    assert shown == panel._parameterNode.measurementsTable.GetNumberOfRows() > 0

    # review: the views jump to the first flagged point (if the model flagged any)
    flagged = logic.flaggedPoints(hub)
    click(ui.reviewButton)
    if flagged:
        first = flagged[0]
        assert ui.statusLabel.text.startswith(f"{first.name} on slice {first.slice}")
    else:
        assert ui.statusLabel.text == "No flagged point left."

    # Confirm point: off until the review shows a low point; then that point is trusted where it is
    assert not ui.confirmButton.enabled or (flagged and flagged[0].flag == "low")
    low = [p for p in flagged if p.flag == "low"]
    assert low, "patient001 ED has low points with the bundled model"
    while not ui.confirmButton.enabled:
        click(ui.reviewButton)
    reviewed = panel._reviewPoint
    assert reviewed.flag == "low" and ui.statusLabel.text.endswith("or press Confirm point if right.")
    click(ui.confirmButton)
    assert not dialogs.shown, dialogs.shown
    assert ui.statusLabel.text == f"{reviewed.name} on slice {reviewed.slice}, phase {reviewed.phase} confirmed."
    assert not ui.confirmButton.enabled and ui.flagSummaryLabel.text.endswith("0 corrected, 1 confirmed")
    confirmed = logic.landmarkSetFromResult(hub).get(reviewed.name, reviewed.slice, reviewed.phase)
    assert confirmed.confirmed and confirmed.flag == "high"
    assert (reviewed.name, reviewed.slice, reviewed.phase) not in {
        (p.name, p.slice, p.phase) for p in logic.flaggedPoints(hub)}

    # move A-RVI of the middle slice 10 mm: its RVI angle changes in the table the panel shows
    k = logic._state(hub).nSlices // 2
    pointList = logic.pointListNodes(hub)[k]
    before = {m.name: m.value for m in logic.landmarkSetFromResult(hub).measurements if m.slice == k}
    position = np.array(pointList.GetNthControlPointPosition(0))
    series = logic.seriesFromNode(volume)
    pointList.SetNthControlPointPosition(0, *(position + 10.0 * geometry.lps_to_ras(series.direction[:, 1])))
    slicer.app.processEvents()
    after = {m.name: m.value for m in logic.landmarkSetFromResult(hub).measurements if m.slice == k}
    assert after["RVI angle"] != pytest.approx(before["RVI angle"], abs=0.5)
    texts = [ui.measurementsTableView.model().item(r, 3).text() for r in range(shown)]
    assert any(t.startswith(f"{after['RVI angle']:.3f}"[:5]) for t in texts), (after, texts[:6])
    # the drag corrects a point; the confirmed one stays confirmed unless it was that very point
    left = 0 if (reviewed.name, reviewed.slice, reviewed.phase) == ("A-RVI", k, 0) else 1
    assert f"1 corrected, {left} confirmed" in ui.flagSummaryLabel.text

    # Export without a folder: a warning, nothing written (the working directory is checked by the fixture)
    dialogs.answer(qt.QMessageBox.Ok)
    click(ui.exportCsvButton)
    assert "Choose the output folder" in dialogs.shown[-1]
    assert ui.statusLabel.text == "Choose an output folder first."
    out = tmp_path_factory.mktemp("sax_out")
    ui.outputDirectoryButton.chooseDirectory(str(out))
    assert qt.QSettings().value(module.OUTPUT_DIRECTORY_SETTINGS_KEY) == str(out)
    for button in (ui.exportMarkupsButton, ui.exportLandmarksButton, ui.exportCsvButton):
        click(button)
    names = sorted(p.name for p in out.iterdir())
    assert "landmarks.json" in names and "measurements.csv" in names and any(n.endswith(".mrk.json") for n in names)
    click(ui.exportCsvButton)
    assert any(".bak-" in p.name for p in out.iterdir()), "second export keeps the first file as a backup"
    assert ui.statusLabel.text.startswith("Wrote 1 file(s) to ")
    _save_screenshot(panel)


def test_detect_shows_the_rv_side_warning_and_review_rvi_angles(panel, dialogs, data_root, caplog):
    """M&Ms-2 001's SAX header has x and y negated (the RV on the patient's left-posterior): after Detect the
    status line says why, the warning is logged, and the table's RVI angles are review with 'orientation'
    named, while the opening angles keep their own status."""
    from conftest import require_data

    ui = panel.ui
    volume = slicer.util.loadVolume(str(require_data("mnms2", "001", "001_SA_ED.nii.gz")))
    ui.inputSelector.setCurrentNode(volume)
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findData("cpu")
    with caplog.at_level(logging.WARNING):
        click(ui.detectButton)
    assert not dialogs.shown, dialogs.shown
    text = ui.statusLabel.text
    assert text.startswith("Done. Review the flagged points. Warning: on ") and "patient's left" in text, text
    assert any("behind the LV" in r.getMessage() for r in caplog.records)
    rows = _table_values(ui.measurementsTableView).values()
    angle = [r for r in rows if (r.get("name") or r.get("Measurement")) == "RVI angle"]
    assert angle and all(r["Status"].startswith("review") and "orientation" in r["Status"] for r in angle), angle[:2]
    opening = [r for r in rows if (r.get("name") or r.get("Measurement")) == "RVI opening angle"]
    assert opening and not any("orientation" in r["Status"] for r in opening)


def test_sequence_choice_picks_the_sax_model(panel, dialogs, acdc_dir):
    """The Sequence combo is saved in the parameter node and picks the model as `detect --sequence` does: an ACDC
    cine stack (NIfTI, no sequence in its name) gets sax_unet on Auto and the LGE model when the reader says LGE."""
    ui = panel.ui
    volume = slicer.util.loadVolume(str(acdc_dir / "patient001_ES.nii.gz"))
    ui.inputSelector.setCurrentNode(volume)
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findData("cpu")
    assert [ui.sequenceComboBox.itemData(i) for i in range(ui.sequenceComboBox.count)] == [
        v for v, _ in module.SEQUENCE_CHOICES]
    models = []
    for seq in ("auto", "lge"):
        ui.sequenceComboBox.currentIndex = ui.sequenceComboBox.findData(seq)
        assert panel._parameterNode.sequence == seq
        click(ui.detectButton)
        assert not dialogs.shown, dialogs.shown
        models.append(panel.logic.landmarkSetFromResult(panel._parameterNode.result).model["name"])
    assert models == ["sax_unet", "sax_unet_lge"]
    ui.sequenceComboBox.currentIndex = ui.sequenceComboBox.findData("auto")


def _save_screenshot(panel) -> None:
    """The panel after a detection, for the README / Extensions Index (never written into the repository)."""
    host = slicer.modules.cardiaclandmarks.panel
    host.resize(460, 900)
    host.show()
    slicer.app.processEvents()
    image = qt.QWidget.grab(host).toImage()
    assert image.save(str(PANEL_PNG))


def test_open_result_folder_button(panel, dialogs, acdc_dir, tmp_path_factory, monkeypatch):
    """Open result folder...: the chosen folder (a `detect` result of ACDC patient001) opens with its image and
    points, the panel's counts and status say what is left to review, and Export points at the same folder;
    a folder without landmarks.json gets Slicer's error dialog and a status line, no traceback."""
    from CardiacLandmarksLib.cli import main as cli_main
    from CardiacLandmarksLib.results import read_result

    out = tmp_path_factory.mktemp("open") / "patient001_ED"
    assert cli_main(["detect", str(acdc_dir / "patient001_ED.nii.gz"), "-o", str(out), "--no-progress"]) == 0
    ui = panel.ui
    monkeypatch.setattr(qt.QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(out)))
    click(ui.openResultButton)
    assert not dialogs.shown, dialogs.shown
    hub = panel._parameterNode.result
    saved = read_result(out)
    flagged = sum(lm.flag in ("low", "absent") for lm in saved.landmarks)
    assert ui.statusLabel.text.startswith(f"Opened {out}: {flagged} points to review.")
    assert ui.flagSummaryLabel.text.startswith(f"{len(saved.landmarks)} points")
    assert ui.outputDirectoryButton.directory == str(out)
    assert ui.reviewButton.enabled and ui.exportLandmarksButton.enabled
    assert panel._parameterNode.measurementsTable.GetNumberOfRows() == len(saved.measurements)
    assert panel.logic.flagCounts(hub)["low"] == sum(lm.flag == "low" for lm in saved.landmarks)
    empty = tmp_path_factory.mktemp("empty")
    monkeypatch.setattr(qt.QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(empty)))
    dialogs.answer(qt.QMessageBox.Ok)
    click(ui.openResultButton)
    assert "landmarks.json" in dialogs.shown[-1]
    assert ui.statusLabel.text == f"Could not open {empty} (see the error message)."



def test_load_dicom_folder_as_one_stack(panel, dialogs, data_root, tmp_path_factory, monkeypatch):
    """A short-axis cine stored one series per slice (as Siemens store it) reached the panel only as twelve one-slice
    sequences from Slicer's DICOM module: Detect saw one slice. 'Load DICOM folder...' reads the folder
    as the command line does (the per-slice stack assembled, its notes said) and makes it the input. A folder of
    several series (a study as a PACS exports it) said 'choose one with series_uid=UID' in an error dialog; it now
    asks which series, the short-axis stack preselected. A folder without DICOM gets the error dialog, no traceback."""
    import shutil

    import pydicom
    import study_material as sm
    from conftest import require_data

    from CardiacLandmarksLib.core.errors import MixedSeriesError
    from CardiacLandmarksLib.io.load import load_series

    require_data("sunnybrook", "SCD0000101", "dicom")
    root = tmp_path_factory.mktemp("dicom")
    split = sm.split_per_slice(data_root, root / "split")
    short = root / "short"  # slice 6 with 18 of its 20 phases: the stack keeps 18, and says so
    shutil.copytree(split, short)
    sixth = sorted((float(pydicom.dcmread(f, stop_before_pixels=True).TriggerTime), f) for f in short.glob("*.dcm")
                   if pydicom.dcmread(f, stop_before_pixels=True).SeriesNumber == 1005)
    for _, f in sixth[18:]:
        f.unlink()
    ui = panel.ui
    monkeypatch.setattr(qt.QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(short)))
    click(ui.loadDicomFolderButton)
    assert not dialogs.shown, dialogs.shown
    node = panel._parameterNode.inputVolume
    series = panel.logic.seriesFromNode(node)
    assert (series.n_slices, series.n_phases) == (12, 18)
    np.testing.assert_allclose(series.pixels, load_series(short).pixels)
    assert ui.statusLabel.text.startswith(f"Loaded {node.GetName()}: 12 slices x 18 phases.")
    assert "slice 6 of 12 has 18 phases, the others 20" in ui.statusLabel.text
    assert ui.detectButton.enabled
    mixed = root / "mixed"  # a study as a PACS exports it: the per-slice cine beside a perfusion series
    shutil.copytree(split, mixed / "cine")
    sm._link_tree(data_root / "perfusion" / "ge_dicom", mixed / "perfusion")
    stack_item = "s1000  #1000-1011 'cine_sax'  12 slices x 20 phases, SAX cine (the study's reference stack)"
    perfusion_item = "s6  #6 'First Pass New'  1 slice x 79 phases, SAX perfusion"
    monkeypatch.setattr(qt.QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(mixed)))
    dialogs.answer(qt.QMessageBox.Cancel)  # it asks which series, the short-axis stack preselected; cancelled
    click(ui.loadDicomFolderButton)
    assert dialogs.choices[-1] == ([stack_item, perfusion_item], stack_item)
    assert dialogs.shown[-1] == f"{mixed} holds 2 image series. Load which one?"
    assert ui.statusLabel.text == f"Nothing loaded from {mixed}."
    assert panel._parameterNode.inputVolume is node
    dialogs.answer(perfusion_item)
    click(ui.loadDicomFolderButton)
    perfusion = panel.logic.seriesFromNode(panel._parameterNode.inputVolume)
    assert (perfusion.n_slices, perfusion.n_phases, perfusion.sequence) == (1, 79, "perfusion")
    dialogs.answer(stack_item)
    click(ui.loadDicomFolderButton)
    stack = panel.logic.seriesFromNode(panel._parameterNode.inputVolume)
    np.testing.assert_allclose(stack.pixels, load_series(split).pixels)
    assert ui.statusLabel.text.startswith(f"Loaded {panel._parameterNode.inputVolume.GetName()}: 12 slices x 20 phases.")
    assert "Note: 1 non-DICOM file(s) ignored in mixed" in ui.statusLabel.text  # the folder's own notes too
    with pytest.raises(MixedSeriesError, match="series='KEY'"):  # the console names the keys to choose by
        panel.logic.loadDicomFolder(str(mixed))
    _node, chosen, _notes = panel.logic.loadDicomFolder(str(mixed), "s6")
    assert chosen.n_phases == 79
    packed = root / "packed"  # the perfusion series still zipped beside the cine: read in place, chosen, loaded
    shutil.copytree(split, packed / "cine")
    shutil.make_archive(str(packed / "perfusion"), "zip", data_root / "perfusion" / "ge_dicom")
    monkeypatch.setattr(qt.QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(packed)))
    dialogs.answer(perfusion_item)
    click(ui.loadDicomFolderButton)
    assert dialogs.choices[-1] == ([stack_item, perfusion_item], stack_item)
    perfusion = panel.logic.seriesFromNode(panel._parameterNode.inputVolume)
    assert (perfusion.n_slices, perfusion.n_phases, perfusion.sequence) == (1, 79, "perfusion")
    assert "1 archive(s) unpacked to read them in place (perfusion.zip" in ui.statusLabel.text
    one = root / "one"  # one series whose slice 6 lost its last two phases: read with 18, and doubted as the CLI does
    shutil.copytree(data_root / "sunnybrook" / "SCD0000101" / "dicom", one)
    heads = [(f, pydicom.dcmread(f, stop_before_pixels=True)) for f in one.glob("*.dcm")]
    heights = sorted({round(float(h.SliceLocation), 2) for _, h in heads})
    for _, f in sorted((float(h.TriggerTime), f) for f, h in heads
                       if round(float(h.SliceLocation), 2) == heights[5])[18:]:
        f.unlink()
    monkeypatch.setattr(qt.QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(one)))
    click(ui.loadDicomFolderButton)
    node = panel._parameterNode.inputVolume
    rebuilt = panel.logic.seriesFromNode(node)  # as Detect, function and long axis rebuild it from the node
    assert rebuilt.n_phases == 18 and "has 18 phases, the others 20" in " ".join(
        rebuilt.metadata["completeness"]["problems"])  # the reader's facts kept on the node (they were lost)
    hub = panel.logic.detect(node)  # analysed, not refused (the panel has no --allow-incomplete), every value review
    measured = panel.logic.landmarkSetFromResult(hub).measurements
    assert measured and all(m.status != "ok" for m in measured)
    assert all(any(src.kind == "input" and "incomplete series" in src.note for src in m.sources) for m in measured)
    notes = root / "notes"  # no DICOM at all: Slicer's error dialog, no traceback
    notes.mkdir()
    (notes / "readme.txt").write_text("report", encoding="utf-8")
    monkeypatch.setattr(qt.QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(notes)))
    dialogs.answer(qt.QMessageBox.Ok)
    click(ui.loadDicomFolderButton)
    assert "DICOM" in dialogs.shown[-1]
    assert ui.statusLabel.text == f"Could not load {notes} (see the error message)."


def test_load_dicom_folder_offers_the_earlier_acquisition_of_a_stack(panel, dialogs, data_root, tmp_path_factory,
                                                                     monkeypatch):
    """A per-slice stack acquired twice (the protocol run again, re-planned 3 mm): `study` analyses the later one
    and lists the earlier one, which the chooser of 'Load DICOM folder...' did not offer (it could not be loaded
    at all), so a reader who preferred the first acquisition had to leave the panel for Slicer's DICOM module. It is
    now offered, after the later stack (preselected), with why `study` leaves it out; chosen, it loads whole, and
    the later one still loads as before."""
    import shutil

    import study_material as sm
    from conftest import require_data

    from CardiacLandmarksLib.io.load import load_series

    require_data("sunnybrook", "SCD0000101", "dicom")
    root = tmp_path_factory.mktemp("again")
    split = sm.split_per_slice(data_root, root / "split")
    study = root / "study"
    shutil.copytree(split, study)
    sm.acquire_stack_again(split, study, 3.0)
    later = "s2000  #2000-2011 'cine_sax'  12 slices x 20 phases, SAX cine (the study's reference stack)"
    earlier = ("s1000  #1000-1011 'cine_sax'  12 slices x 20 phases: an earlier acquisition of the stack: "
               "#2000-2011 'cine_sax', acquired later, is used in the stack #2000-2011 'cine_sax'")
    monkeypatch.setattr(qt.QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(study)))
    dialogs.answer(earlier)
    click(panel.ui.loadDicomFolderButton)
    assert dialogs.choices[-1] == ([later, earlier], later)
    first = panel.logic.seriesFromNode(panel._parameterNode.inputVolume)
    plain = load_series(split)
    np.testing.assert_allclose(first.pixels, plain.pixels)
    np.testing.assert_allclose(first.slice_origins, plain.slice_origins, atol=1e-2)  # the node's matrix: regular steps
    assert panel.ui.statusLabel.text.startswith(f"Loaded {panel._parameterNode.inputVolume.GetName()}: 12 slices x "
                                                "20 phases.")
    dialogs.answer(later)
    click(panel.ui.loadDicomFolderButton)
    again = panel.logic.seriesFromNode(panel._parameterNode.inputVolume)
    np.testing.assert_allclose(again.pixels, plain.pixels // 2)


def test_lax_flow_on_mnms2_4ch_cine(panel, dialogs, data_root, tmp_path_factory):
    """4CH cine: Detect (view 4CH) shows the LV-length plot in a plot view, moving the APEX changes the
    length summary, Export writes the files."""
    from CardiacLandmarksLib.core.config import models_root

    path = data_root / "mnms2" / "001" / "001_LA_CINE.nii.gz"
    if not path.exists() or not (models_root() / "lax4ch_unet.json").exists():
        from conftest import require_data

        require_data("mnms2", "001", "001_LA_CINE.nii.gz")
        pytest.skip("bundled 4CH model missing")
    ui = panel.ui
    sequence = slicer.util.loadNodeFromFile(str(path), "SequenceFile")
    browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(sequence)
    ui.inputSelector.setCurrentNode(browser.GetProxyNode(sequence))
    ui.viewComboBox.currentIndex = ui.viewComboBox.findData("4ch")
    assert panel._parameterNode.view == "4ch"
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findData("cpu")
    click(ui.detectButton)
    assert ui.statusLabel.text == "Done. Review the flagged points.", ui.statusLabel.text
    hub = panel._parameterNode.result
    assert ui.laxSummaryLabel.visible and ui.laxSummaryLabel.text.startswith("LV length ED")
    chart = panel.logic.lvLengthChart(hub)
    plotViews = slicer.util.getNodesByClass("vtkMRMLPlotViewNode")
    assert plotViews and plotViews[0].GetPlotChartNodeID() == chart.GetID()  # layout switched to one with a plot
    summary = ui.laxSummaryLabel.text
    pointList = panel.logic.pointListNodes(hub)[0]
    apex = np.array(pointList.GetNthControlPointPosition(2))
    mid = (np.array(pointList.GetNthControlPointPosition(0)) + np.array(pointList.GetNthControlPointPosition(1))) / 2
    pointList.SetNthControlPointPosition(2, *(apex + 8.0 * (apex - mid) / np.linalg.norm(apex - mid)))
    slicer.app.processEvents()
    assert ui.laxSummaryLabel.text != summary
    click(ui.reviewButton)
    assert ui.statusLabel.text
    out = tmp_path_factory.mktemp("lax_out")
    ui.outputDirectoryButton.chooseDirectory(str(out))
    click(ui.exportLandmarksButton)
    click(ui.exportCsvButton)
    assert {"landmarks.json", "measurements.csv"} <= {p.name for p in out.iterdir()}


def test_perfusion_flow_on_mlperf(panel, dialogs, data_root, tmp_path_factory):
    """Check stress and rest series, Run: table of 16 segments + global, series list, bull's-eye;
    Export needs a folder, then writes the report files."""
    folder = data_root / "perfusion" / "mlperf"
    if not (folder / "1424200_stress_mid.nii.gz").exists():
        from conftest import require_data

        require_data("perfusion", "mlperf", "1424200_stress_mid.nii.gz")
    section = panel.perfusionSection
    for name in ("1424200_stress_mid", "1424200_rest_mid"):
        volume = slicer.util.loadVolume(str(folder / f"{name}.nii.gz"))
        section.ui.perfusionInputsComboBox.setCheckState(volume, qt.Qt.Checked)
    assert section.ui.perfusionRunButton.enabled
    click(section.ui.perfusionRunButton)
    assert not dialogs.shown, dialogs.shown
    assert section.hub is not None
    assert section.ui.perfusionTableView.model().rowCount() == 17
    assert section.ui.perfusionSeriesComboBox.count == 2 and section.ui.perfusionSeriesComboBox.enabled
    assert "stress:" in section.ui.perfusionStatusLabel.text and "rest:" in section.ui.perfusionStatusLabel.text
    section.ui.perfusionSeriesComboBox.currentIndex = 1  # shows the rest series, hides the stress nodes
    display = section.logic.rviNodes(section.hub)[0].GetDisplayNode()
    assert display is not None and not display.GetVisibility()
    dialogs.answer(qt.QMessageBox.Ok)
    click(section.ui.perfusionExportButton)
    assert "Choose the output folder" in dialogs.shown[-1]
    out = tmp_path_factory.mktemp("perfusion_out")
    section.ui.perfusionOutputDirectoryButton.chooseDirectory(str(out))
    click(section.ui.perfusionExportButton)
    names = {p.name for p in out.iterdir()}
    assert {"report.json", "report.csv", "bullseye.png"} <= names, names
    assert section.ui.perfusionStatusLabel.text.startswith("Wrote ")


def test_module_self_test_fails_in_ci_when_data_is_missing(monkeypatch, tmp_path, caplog):
    """Slicer's self-test of the module: a test whose data is missing fails in CI, is skipped (with the
    reason logged) elsewhere; the tests without data still run."""
    slicer_stubs.newScene()
    monkeypatch.setenv("CARDIAC_LANDMARKS_DATA", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(AssertionError, match="needs .*patient001_ED"):
        module.CardiacLandmarksTest().runTest()
    monkeypatch.setenv("CI", "false")
    slicer_stubs.newScene()
    with caplog.at_level("WARNING"):
        module.CardiacLandmarksTest().runTest()
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 3 and all("needs " in m for m in skipped), skipped


# ---------------------------------------------------------------------------------------------
# packaging for the Extensions Index
# ---------------------------------------------------------------------------------------------

#: the Extensions Index catalogue entry schema v1.0.2 (Slicer/ExtensionsIndex schemas/): required keys and
#: every allowed key (additionalProperties is false)
CATALOG_REQUIRED = {"$schema", "category", "scm_url"}
CATALOG_ALLOWED = CATALOG_REQUIRED | {"scm_revision", "scm_type", "build_dependencies", "dicom_support_rule",
                                      "build_subdirectory", "enabled", "tier"}


@pytest.mark.no_torch
def test_extensions_index_entry_matches_the_cmake_description():
    import json
    import re

    repo = Path(module.__file__).resolve().parents[1]
    entry = json.loads((repo / "Packaging" / "CardiacLandmarks.json").read_text())
    assert CATALOG_REQUIRED <= set(entry) <= CATALOG_ALLOWED
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    cmake = (repo / "CMakeLists.txt").read_text()

    def cmake_value(key):
        return re.search(rf'set\({key} "([^"]*)"\)', cmake).group(1)

    # PyTorch is built first (as for SlicerTotalSegmentator): the module installs torch through it
    assert entry["build_dependencies"] == ["PyTorch"] == cmake_value("EXTENSION_DEPENDS").split()
    assert entry["category"] == cmake_value("EXTENSION_CATEGORY")
    assert entry["scm_url"] == cmake_value("CardiacLandmarks_REPOSITORY_URL")
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5
    # URLs are the repository's (a placeholder until it is public, marked TODO(release) in CMakeLists.txt)
    assert "TODO(release)" in cmake
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL"):
        assert cmake_value(key).startswith("${CardiacLandmarks_REPOSITORY_URL}")
    assert cmake_value("EXTENSION_ICONURL").endswith("CardiacLandmarks/Resources/Icons/CardiacLandmarks.png")
    assert (repo / "CardiacLandmarks" / "Resources" / "Icons" / "CardiacLandmarks.png").is_file()


def test_function_flow_on_acdc_ed_es(panel, dialogs, acdc_dir, tmp_path_factory):
    """Function section: choose ED and ES volumes, Compute (table of LV/RV values with status), edit the
    segmentation (remove the LV cavity on one slice) and Recompute (LV EDV falls), Export needs a folder."""
    import json

    section = panel.functionSection
    ui = section.ui
    assert not ui.functionRunButton.enabled and not ui.functionExportButton.enabled
    ed = slicer.util.loadVolume(str(acdc_dir / "patient101_ED.nii.gz"))
    es = slicer.util.loadVolume(str(acdc_dir / "patient101_ES.nii.gz"))
    ui.functionInputSelector.setCurrentNode(ed)
    ui.functionEsSelector.setCurrentNode(es)
    ui.functionHeightSpinBox.value = 170
    ui.functionWeightSpinBox.value = 70
    assert ui.functionRunButton.enabled
    click(ui.functionRunButton)
    assert not dialogs.shown, dialogs.shown
    hub = section.hub
    assert hub is not None and ui.functionTableView.model().rowCount() == hub.tableNode.GetNumberOfRows()
    rows = section.logic.tableRows(hub)
    edv, unit, status = rows["LV EDV"]
    assert unit == "ml" and 40 < edv < 400 and status in ("ok", "review")
    assert "LV EDV index" in rows  # height and weight given: indexed by body-surface area
    assert ui.functionStatusLabel.text.startswith("LV EF ")

    # edit: clear the LV cavity on the slice where it is largest, then Recompute
    from CardiacLandmarksModuleLib import function as flogic

    labels = flogic.labelsFromSegmentation(hub.segmentationNodes[0], hub.referenceVolumes[0])
    k = int(np.argmax((labels == 3).sum(axis=(1, 2))))
    labels[k][labels[k] == 3] = 0
    flogic._fillSegmentation(hub.segmentationNodes[0], labels, hub.referenceVolumes[0])
    click(ui.functionRecomputeButton)
    assert section.logic.tableRows(hub)["LV EDV"][0] < edv - 1.0

    dialogs.answer(qt.QMessageBox.Ok)
    click(ui.functionExportButton)
    assert "Choose the output folder" in dialogs.shown[-1]
    out = tmp_path_factory.mktemp("function_out")
    ui.functionOutputDirectoryButton.chooseDirectory(str(out))
    click(ui.functionExportButton)
    report = json.loads((out / "function.json").read_text())
    assert report["LV"]["EDV_ml"] == pytest.approx(section.logic.tableRows(hub)["LV EDV"][0], abs=0.01)
    assert any(p.name.endswith(".seg.nrrd") for p in out.iterdir())
    assert ui.functionStatusLabel.text.startswith("Wrote ")


@pytest.mark.data
def test_function_height_and_weight_from_the_dicom_header(panel, data_root, tmp_path_factory, monkeypatch):
    """A cine loaded through Slicer's DICOM module (its instance UIDs on the subject hierarchy item, as
    DICOMPlugin.addSeriesInSubjectHierarchy puts them; the files in the DICOM database) whose header holds
    PatientSize 1.75 m and PatientWeight 80 kg: choosing it fills the empty height and weight boxes and says so,
    as the command line reads them; a height the user typed is kept; a node not from the DICOM database leaves
    the boxes alone. Before, the boxes stayed empty and the values went unindexed."""
    import study_material
    from CardiacLandmarksModuleLib import nodes

    from CardiacLandmarksLib.io.load import load_series

    work = tmp_path_factory.mktemp("dicom_header")
    folder = study_material.with_patient_size(data_root, work / "cine", "1.75", "80")
    series = load_series(folder)
    seq, browser, proxy = nodes.addSequenceFromSeries(slicer.mrmlScene, series, "SA cine",
                                                      slicer.modules.sequences.logic())
    database = slicer_stubs.DICOMDatabase()
    files = sorted(folder.glob("*.dcm"))
    database.insertFiles(files)
    monkeypatch.setattr(slicer, "dicomDatabase", database)
    import pydicom

    uids = " ".join(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    item = sh.CreateItem(sh.GetSceneItemID(), seq)
    sh.SetItemUID(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMInstanceUIDName(), uids)

    ui = panel.functionSection.ui
    ui.functionHeightSpinBox.value = 0
    ui.functionWeightSpinBox.value = 0
    ui.functionInputSelector.setCurrentNode(proxy)
    assert (ui.functionHeightSpinBox.value, ui.functionWeightSpinBox.value) == (175, 80)
    assert "from the DICOM header" in ui.functionStatusLabel.text and "PatientSize" in ui.functionStatusLabel.text
    opts = panel.functionSection.options()
    assert (opts.height_cm, opts.weight_kg) == (175, 80)

    # a height the user typed is kept; a volume that is not from the DICOM database changes nothing
    ui.functionInputSelector.setCurrentNode(None)
    ui.functionHeightSpinBox.value = 160
    ui.functionWeightSpinBox.value = 0
    ui.functionInputSelector.setCurrentNode(proxy)
    assert (ui.functionHeightSpinBox.value, ui.functionWeightSpinBox.value) == (160, 0)
    other = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "not from DICOM")
    assert panel.functionSection.logic.subjectFromDicom(other) == ({}, [])
    # the attribute DICOMScalarVolumePlugin sets on a volume, with a size no person has: named, not used
    bad = study_material.with_patient_size(data_root, work / "bad", "175", "80")
    database.insertFiles(sorted(bad.glob("*.dcm")))
    other.SetAttribute("DICOM.instanceUIDs", str(pydicom.dcmread(next(bad.glob("*.dcm")),
                                                                 stop_before_pixels=True).SOPInstanceUID))
    subject, notes = panel.functionSection.logic.subjectFromDicom(other)
    assert subject == {} and "not used" in notes[0]
