"""CardiacLandmarks: cardiac MR landmarks with confidence flags and live correction in 3D Slicer.

The module follows Slicer's scripted-module template: ``CardiacLandmarks`` (metadata),
``CardiacLandmarksParameterNode`` (``@parameterNodeWrapper``), ``CardiacLandmarksWidget``
(GUI <-> parameter node), ``CardiacLandmarksLogic`` (GUI-free, usable from the Python console
as ``slicer.util.getModuleLogic("CardiacLandmarks")``) and ``CardiacLandmarksTest``.

All numerical work is done by the pure-Python library ``CardiacLandmarksLib`` (the same code
as the ``cardiac-landmarks`` command line): the logic only converts MRML nodes to library
types and back (``CardiacLandmarksModuleLib.nodes``).
"""

import json
import logging
import os
import sys
import unittest
from typing import Union

import qt
import slicer
import vtk
from slicer import (
    vtkMRMLScalarVolumeNode,
    vtkMRMLSequenceNode,
    vtkMRMLTableNode,
    vtkMRMLTextNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


def _ensureLibraryOnPath() -> None:
    """Make ``CardiacLandmarksLib`` importable.

    Installed extension: the library sits next to this file (``qt-scripted-modules``), which
    Slicer already has on ``sys.path``. Source checkout (``--additional-module-paths``): the
    library is in the repository root, one folder up.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.dirname(here)):
        if os.path.isdir(os.path.join(folder, "CardiacLandmarksLib")):
            if folder not in sys.path:
                sys.path.insert(0, folder)
            return


_ensureLibraryOnPath()

#: views offered in the panel: (value passed to the library, label)
VIEW_CHOICES = (
    ("auto", "Auto (from the image)"),
    ("sax", "Short axis (SAX)"),
    ("2ch", "Long axis, 2-chamber (2CH)"),
    ("3ch", "Long axis, 3-chamber (3CH)"),
    ("4ch", "Long axis, 4-chamber (4CH)"),
)
LAX_VIEWS = ("2ch", "3ch", "4ch")
#: sequences offered in the panel: (value of ``CMRSeries.sequence``, label); it picks the SAX model
SEQUENCE_CHOICES = (
    ("auto", "Auto (DICOM tags or node name)"),
    ("cine", "Cine"),
    ("lge", "LGE"),
    ("perfusion", "First-pass perfusion"),
    ("t1", "T1 map"),
)
#: devices offered in the panel: (value passed to the library, label)
DEVICE_CHOICES = (
    ("auto", "Auto (GPU if available)"),
    ("cpu", "CPU"),
    ("cuda", "GPU (CUDA)"),
)
DEVICE_SETTINGS_KEY = "CardiacLandmarks/Device"
OUTPUT_DIRECTORY_SETTINGS_KEY = "CardiacLandmarks/OutputDirectory"

#: attributes and references of the result node (a vtkMRMLTextNode holding the model's detection)
from CardiacLandmarksModuleLib.names import (  # noqa: E402
    BROWSER_REFERENCE,
    GEOMETRY_ATTRIBUTE,
    IMAGE_SEQUENCE_REFERENCE,
    INPUT_REFERENCE,
    MARKUPS_SEQUENCE_REFERENCE,
    POINT_LIST_REFERENCE,
    RESULT_ATTRIBUTE,
    RESULT_FOLDER_ATTRIBUTE,
    TABLE_REFERENCE,
)

#
# CardiacLandmarks
#


class CardiacLandmarks(ScriptedLoadableModule):
    """Module metadata. Uses ScriptedLoadableModule base class, see
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Cardiac Landmarks")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Cardiac")]
        self.parent.dependencies = []
        self.parent.contributors = ["CardiacLandmarks developers"]
        self.parent.helpText = _(
            "Detects the right-ventricular insertion points (A-RVI, I-RVI) and the LV centre (C-LV) on every "
            "slice and phase of a short-axis cardiac MR image or cine, with a confidence for each point, and "
            "measures the RVI angles.<br><br>"
            "Select the image (a volume or a cine loaded as a sequence), press <b>Detect</b>, then review: "
            "points the model is unsure about are drawn in orange with their confidence in the label; points it "
            "did not find have no position and can be placed. <b>Review next flagged point</b> jumps to them. "
            "Moving or placing a point marks it as corrected and updates the measurements table at once; "
            "<b>Confirm point</b> keeps the point shown by the review where it is and trusts it (confirmed). "
            "Export writes the point lists (.mrk.json, LPS), landmarks.json and the measurements (CSV).<br><br>"
            "<b>Long-axis views</b> (2CH, 3CH, 4CH; chosen in <i>View</i> or recognised from the image): the two "
            "mitral-valve points and the APEX are detected and tracked through the cine. An <i>LV length</i> "
            "line joins the apex and the mitral midpoint on the phase shown, the table and the plot <i>LV length "
            "over the cardiac cycle</i> give the length on every phase, and the panel shows LV length at ED "
            "(longest) and ES (shortest) and the longitudinal shortening. Moving a point on one phase re-tracks "
            "that landmark from there through the other phases and updates the line, table, plot and shortening; "
            "moving it back undoes the correction. Only a 4CH model is bundled, trained on two subjects: expect "
            "to correct points (see the model card).<br><br>"
            "The same detection runs from the Python console "
            "(<code>slicer.util.getModuleLogic('CardiacLandmarks').detect(volumeNode)</code>) and from the "
            "<code>cardiac-landmarks</code> command line. Research use only: not for clinical decisions."
        )
        self.parent.acknowledgementText = _(
            "Method after Xue H. et al., Landmark detection in cardiac MRI by using a convolutional neural "
            "network, Radiology: Artificial Intelligence 2021. The bundled model was trained on public research "
            "data (ACDC, Bernard et al., IEEE TMI 2018; see the model card in Resources/Models). "
            "The module structure follows the 3D Slicer scripted-module template."
        )


#
# CardiacLandmarksParameterNode
#


@parameterNodeWrapper
class CardiacLandmarksParameterNode:
    """Parameters of the module, saved with the scene.

    inputVolume - image to process: a scalar volume (the proxy volume of a cine counts as the whole
        cine) or a sequence of scalar volumes.
    view - "auto" (from the image description) or "sax".
    sequence - "auto" (from the DICOM tags or node name) or the MR sequence; it picks the SAX model.
    result - text node of the latest detection (holds the model's output; references the point
        lists, sequences and table made from it).
    measurementsTable - table of the measurements of that result.
    """

    # None must be a member: Slicer's wrapper gives a Union field the default None, and a Union without
    # None cannot store it (TypeError when the parameter node is made, so the panel would not open)
    inputVolume: Union[vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode, None]  # noqa: UP007 (Slicer's wrapper needs typing.Union)
    view: str = "auto"
    sequence: str = "auto"
    result: vtkMRMLTextNode
    measurementsTable: vtkMRMLTableNode


#
# CardiacLandmarksWidget
#


class CardiacLandmarksWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Module panel. Uses ScriptedLoadableModuleWidget base class, see
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedTable = None
        self._running = False
        self._cancelRequested = False
        self._reviewCursor = None
        self._reviewPoint = None

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CardiacLandmarks.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = CardiacLandmarksLogic()

        self.ui.viewComboBox.clear()
        for value, label in VIEW_CHOICES:
            self.ui.viewComboBox.addItem(_(label), value)
        self.ui.sequenceComboBox.clear()
        for value, label in SEQUENCE_CHOICES:
            self.ui.sequenceComboBox.addItem(_(label), value)
        self.ui.deviceComboBox.clear()
        for value, label in DEVICE_CHOICES:
            self.ui.deviceComboBox.addItem(_(label), value)
        settings = qt.QSettings()
        self._selectComboData(self.ui.deviceComboBox, settings.value(DEVICE_SETTINGS_KEY, "auto"))
        outputDirectory = settings.value(OUTPUT_DIRECTORY_SETTINGS_KEY, "")
        if outputDirectory:
            self.ui.outputDirectoryButton.directory = outputDirectory
        self.ui.progressBar.hide()
        self.ui.cancelButton.hide()
        self.ui.laxSummaryLabel.hide()
        self.ui.measurementsTableView.horizontalHeader().setStretchLastSection(True)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.viewComboBox.currentIndexChanged.connect(self.onViewChanged)
        self.ui.sequenceComboBox.currentIndexChanged.connect(self.onSequenceChanged)
        self.ui.deviceComboBox.currentIndexChanged.connect(self.onDeviceChanged)
        self.ui.detectButton.clicked.connect(self.onDetectButton)
        self.ui.openResultButton.clicked.connect(self.onOpenResultButton)
        self.ui.loadDicomFolderButton.clicked.connect(self.onLoadDicomFolderButton)
        self.ui.cancelButton.clicked.connect(self.onCancelButton)
        self.ui.reviewButton.clicked.connect(self.onReviewButton)
        self.ui.confirmButton.clicked.connect(self.onConfirmButton)
        self.ui.exportMarkupsButton.clicked.connect(lambda: self.onExport(markups=True))
        self.ui.exportLandmarksButton.clicked.connect(lambda: self.onExport(landmarksJson=True))
        self.ui.exportCsvButton.clicked.connect(lambda: self.onExport(csv=True))
        self.ui.outputDirectoryButton.directoryChanged.connect(self.onOutputDirectoryChanged)

        # "Perfusion report (AHA 16 segments)": its own .ui and a thin section class
        from CardiacLandmarksModuleLib.perfusion_panel import PerfusionSection

        self.perfusionSection = PerfusionSection(self.layout, self.resourcePath("UI/CardiacLandmarksPerfusion.ui"),
                                                 lambda: self.logic.perfusion)
        # "LV/RV function": volumes, EF and LV mass from the SAX cine (or ED + ES volumes)
        from CardiacLandmarksModuleLib.function_panel import FunctionSection

        self.functionSection = FunctionSection(self.layout, self.resourcePath("UI/CardiacLandmarksFunction.ui"),
                                               lambda: self.logic.function)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self.setParameterNode(None)
        self.perfusionSection.reset()
        self.functionSection.reset()

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Ensure the parameter node exists and is observed."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        """Set and observe the parameter node (GUI follows its changes)."""
        if self._parameterNode and self._parameterNodeGuiTag is not None:  # still connected (exit() disconnects)
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNodeGuiTag = None
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._checkCanApply()

    @staticmethod
    def _selectComboData(comboBox, value) -> None:
        index = comboBox.findData(value)
        if index >= 0:
            comboBox.currentIndex = index

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Enable the buttons that can work on the current selection and show the result."""
        node = self._parameterNode.inputVolume if self._parameterNode else None
        canDetect, reason = self.logic.canDetect(node)
        self.ui.detectButton.enabled = canDetect and not self._running
        self.ui.detectButton.toolTip = _("Detect the landmarks on every slice and phase") if canDetect else reason
        if self._parameterNode:
            self.ui.viewComboBox.blockSignals(True)
            self._selectComboData(self.ui.viewComboBox, self._parameterNode.view)
            self.ui.viewComboBox.blockSignals(False)
            self.ui.sequenceComboBox.blockSignals(True)
            self._selectComboData(self.ui.sequenceComboBox, self._parameterNode.sequence)
            self.ui.sequenceComboBox.blockSignals(False)
        result = self._parameterNode.result if self._parameterNode else None
        if result is not None:
            self.logic.attachResult(result)
        table = self._parameterNode.measurementsTable if self._parameterNode else None
        if table is not self._observedTable:
            if self._observedTable is not None:
                self.removeObserver(self._observedTable, vtk.vtkCommand.ModifiedEvent, self._updateResultSummary)
            self._observedTable = table
            if table is not None:
                self.addObserver(table, vtk.vtkCommand.ModifiedEvent, self._updateResultSummary)
            self.ui.measurementsTableView.setMRMLTableNode(table)
        for button in (self.ui.reviewButton, self.ui.exportMarkupsButton, self.ui.exportLandmarksButton,
                       self.ui.exportCsvButton):
            button.enabled = result is not None and not self._running
        self.ui.confirmButton.enabled = (result is not None and not self._running and self._reviewPoint is not None
                                         and self._reviewPoint.flag == "low")
        self._updateResultSummary()

    def _updateResultSummary(self, caller=None, event=None) -> None:
        result = self._parameterNode.result if self._parameterNode else None
        if result is None:
            self.ui.flagSummaryLabel.text = _("No landmarks yet: select an image and press Detect.")
            return
        counts = self.logic.flagCounts(result)
        doubts = self.logic.doubtfulAbsences(result)
        if doubts:  # the points not found that the network nearly found or a rule left out: worth a look
            from CardiacLandmarksLib.sax.presence import doubt_kinds

            self.ui.flagSummaryLabel.text = _(
                "{total} points: {high} confident, {low} low confidence, {absent} not found ({doubtful} of them to "
                "check: {kinds}), {corrected} corrected, {confirmed} confirmed"
            ).format(**counts, doubtful=len(doubts), kinds=doubt_kinds(doubts))
        else:
            self.ui.flagSummaryLabel.text = _(
                "{total} points: {high} confident, {low} low confidence, {absent} not found, {corrected} corrected, "
                "{confirmed} confirmed"
            ).format(**counts)
        lax = self.logic.isLaxResult(result)
        self.ui.laxSummaryLabel.visible = lax
        if lax:
            self.ui.laxSummaryLabel.text = self.laxSummaryText(self.logic.laxSummary(result))

    @staticmethod
    def laxSummaryText(summary: dict) -> str:
        """One line for the panel: LV length at ED and ES and the longitudinal shortening, each with its status
        (a value that is not ``ok`` is never shown as a plain number); the shortening's caveat when not ok."""
        if not summary or summary.get("shortening_pct") is None:
            return _("LV length: place APEX and both mitral-valve points to measure it.")
        text = _("LV length ED {ed:.1f} mm [{edStatus}] (phase {edPhase}), ES {es:.1f} mm [{esStatus}] "
                 "(phase {esPhase}); longitudinal shortening {shortening:.1f}% [{status}]").format(
            ed=summary["length_ed_mm"], edPhase=summary["ed_phase"], es=summary["length_es_mm"],
            esPhase=summary["es_phase"], shortening=summary["shortening_pct"],
            edStatus=summary.get("length_ed_status", "review"), esStatus=summary.get("length_es_status", "review"),
            status=summary.get("shortening_status", "review"))
        if summary.get("shortening_caveat"):
            text += " " + _("Shortening: {caveat}").format(caveat=summary["shortening_caveat"])
        return text

    def onViewChanged(self, index) -> None:
        if self._parameterNode:
            self._parameterNode.view = self.ui.viewComboBox.itemData(index) or "auto"

    def onSequenceChanged(self, index) -> None:
        if self._parameterNode:
            self._parameterNode.sequence = self.ui.sequenceComboBox.itemData(index) or "auto"

    def onDeviceChanged(self, index) -> None:
        qt.QSettings().setValue(DEVICE_SETTINGS_KEY, self.ui.deviceComboBox.itemData(index) or "auto")

    def onOutputDirectoryChanged(self, directory) -> None:
        qt.QSettings().setValue(OUTPUT_DIRECTORY_SETTINGS_KEY, directory)

    def _setRunning(self, running: bool) -> None:
        self._running = running
        self._cancelRequested = False
        self.ui.progressBar.visible = running
        self.ui.cancelButton.visible = running
        self.ui.cancelButton.enabled = running
        self.ui.inputSelector.enabled = not running
        self.ui.viewComboBox.enabled = not running
        self.ui.sequenceComboBox.enabled = not running
        self.ui.deviceComboBox.enabled = not running
        if running:
            self.ui.progressBar.value = 0
        self._checkCanApply()

    def _onProgress(self, done: int, total: int) -> None:
        self.ui.progressBar.maximum = max(int(total), 1)
        self.ui.progressBar.value = int(done)
        slicer.app.processEvents()  # keeps the panel (and Cancel) responsive between batches

    def onCancelButton(self) -> None:
        self._cancelRequested = True
        self.ui.cancelButton.enabled = False
        self.ui.statusLabel.text = _("Cancelling after the current batch...")

    def onDetectButton(self) -> None:
        """Run detection when the user clicks Detect."""
        if self._running or not self._parameterNode:
            return
        from CardiacLandmarksModuleLib.gui import errorsShown, installedOrExplained

        if not installedOrExplained(self.ui.statusLabel, _("Detection")):
            return
        from CardiacLandmarksLib.core.errors import ModelIntegrityError
        from CardiacLandmarksLib.sax.pipeline import Cancelled

        self._setRunning(True)
        self.ui.statusLabel.text = _("Detecting landmarks (the first run also loads the model)...")
        slicer.app.processEvents()
        try:
            with errorsShown(_("Landmark detection failed.")) as outcome:
                try:
                    result = self.logic.detect(
                        self._parameterNode.inputVolume,
                        view=self._parameterNode.view,
                        sequence=self._parameterNode.sequence,
                        device=self.ui.deviceComboBox.currentData or "auto",
                        progress=self._onProgress,
                        cancel=lambda: self._cancelRequested,
                    )
                except Cancelled:
                    self.ui.statusLabel.text = _("Detection cancelled.")
                    return
                except ModelIntegrityError as exc:
                    if self._parameterNode.view not in LAX_VIEWS:
                        raise
                    logging.warning("CardiacLandmarks: %s", exc)  # missing or corrupt model: say which
                    # no model for this long-axis view: an empty result where the user places the points
                    result = self.logic.seedLaxFromPoints(self._parameterNode.inputVolume, self._parameterNode.view,
                                                          0, {})
                    self._parameterNode.result = result
                    self._parameterNode.measurementsTable = self.logic.resultTable(result)
                    self.logic.showResultInSliceViews(result)
                    self.showLvLengthPlot(result)
                    self.ui.statusLabel.text = _(
                        "No {view} model is available: place APEX and the two mitral-valve points on one phase "
                        "(Review next flagged point); each is tracked through the cine.").format(
                        view=self._parameterNode.view.upper())
                    return
                text = _("Done. Review the flagged points.") + self._showResult(result)
                self.ui.statusLabel.text = text
            if outcome.failed:
                self.ui.statusLabel.text = _("Detection failed (see the error message).")
        finally:
            self._setRunning(False)

    def _showResult(self, result) -> str:
        """Make ``result`` the panel's result (table, a fresh review, slice views, LV-length plot); returns the
        series warnings as a sentence for the status line (e.g. the RV on the patient's wrong side: the RVI angles
        are review, this says why), empty without any."""
        self._parameterNode.result = result
        self._parameterNode.measurementsTable = self.logic.resultTable(result)
        self._reviewCursor = None
        self._reviewPoint = None
        self.logic.showResultInSliceViews(result)
        if self.logic.isLaxResult(result):
            self.showLvLengthPlot(result)
        warnings = self.logic.resultWarnings(result)
        for warning in warnings:
            logging.warning("CardiacLandmarks: %s", warning)
        return (" " + _("Warning: {warnings}").format(warnings=" | ".join(warnings))) if warnings else ""

    def onOpenResultButton(self) -> None:
        """Choose a result folder and open it for review (``logic.openResult``); Export then goes into it."""
        if self._running or not self._parameterNode:
            return
        folder = qt.QFileDialog.getExistingDirectory(
            self.parent, _("Open a result folder (landmarks.json)"), self.ui.outputDirectoryButton.directory)
        if folder:
            self.openResultFolder(folder)

    def onLoadDicomFolderButton(self) -> None:
        """Choose a DICOM folder and make it the input, read by the library (``logic.loadDicomFolder``)."""
        if self._running or not self._parameterNode:
            return
        folder = qt.QFileDialog.getExistingDirectory(
            self.parent, _("Load a DICOM folder (a series, a short-axis stack stored one series per slice, or a study)"),
            self.ui.outputDirectoryButton.directory)
        if folder:
            self.loadDicomFolder(folder)

    def loadDicomFolder(self, folder: str) -> None:
        """Read ``folder`` with the library's DICOM reader and routing, add a series to the scene and make it the
        input; a folder of several image series (a study as a PACS exports it) asks which, the study's short-axis
        reference stack preselected."""
        from CardiacLandmarksModuleLib.gui import chooseItem, errorsShown, installedOrExplained

        if not installedOrExplained(self.ui.statusLabel, _("Loading a DICOM folder")):
            return
        with errorsShown(_("Could not load the DICOM folder."), waitCursor=True) as outcome:
            entries, notes = self.logic.dicomFolderSeries(folder)
            entry = entries[0]
            if len(entries) > 1:
                choices = [self.logic.seriesChoiceText(e) for e in entries]
                current = next((i for i, e in enumerate(entries) if e.is_sax_reference), 0)
                chosen = chooseItem(self.parent, _("Load which series?"),
                                    _("{folder} holds {n} image series. Load which one?").format(
                                        folder=folder, n=len(entries)), choices, current)
                if chosen is None:
                    self.ui.statusLabel.text = _("Nothing loaded from {folder}.").format(folder=folder)
                    return
                entry = entries[chosen]
            node, series, own = self.logic.loadRoutedSeries(entry)
            notes = notes + own
            self._parameterNode.inputVolume = node
            self.ui.statusLabel.text = _("Loaded {name}: {slices} slices x {phases} phases. Detect landmarks when "
                                         "ready.").format(name=node.GetName(), slices=series.n_slices,
                                                          phases=series.n_phases) + (
                " " + _("Note: {notes}").format(notes=" | ".join(notes)) if notes else "")
        if outcome.failed:
            self.ui.statusLabel.text = _("Could not load {folder} (see the error message).").format(folder=folder)

    def openResultFolder(self, folder: str) -> None:
        """Open ``folder`` for review and point the Export section at it (the review is written back there)."""
        from CardiacLandmarksModuleLib.gui import errorsShown, installedOrExplained

        if not installedOrExplained(self.ui.statusLabel, _("Opening a result")):
            return
        with errorsShown(_("Could not open the result folder.")) as outcome:
            result = self.logic.openResult(folder)
            warnings = self._showResult(result)
            self.ui.outputDirectoryButton.directory = folder
            counts = self.logic.flagCounts(result)
            self.ui.statusLabel.text = _(
                "Opened {folder}: {flagged} points to review. Export writes the review back into this folder "
                "(the replaced files are kept as backups).").format(
                folder=folder, flagged=counts["low"] + counts["absent"]) + warnings
        if outcome.failed:
            self.ui.statusLabel.text = _("Could not open {folder} (see the error message).").format(folder=folder)

    def showLvLengthPlot(self, hub) -> None:
        """Switch to a layout with a plot view and show the LV-length chart there (needs the Slicer GUI)."""
        layoutManager = slicer.app.layoutManager()
        chart = self.logic.lvLengthChart(hub)
        if layoutManager is None or chart is None:
            return
        plots = getattr(slicer.modules, "plots", None)
        if plots is not None and hasattr(plots.logic(), "ShowChartInLayout"):
            plots.logic().ShowChartInLayout(chart)  # picks a layout with a plot view when needed
            return
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotView)
        for plotViewNode in slicer.util.getNodesByClass("vtkMRMLPlotViewNode"):
            plotViewNode.SetPlotChartNodeID(chart.GetID())

    def onReviewButton(self) -> None:
        """Jump the slice views to the next low-confidence or missing point."""
        result = self._parameterNode.result if self._parameterNode else None
        if result is None:
            return
        from CardiacLandmarksModuleLib.gui import errorsShown

        with errorsShown(_("Failed to show the next flagged point.")):
            point = self.logic.nextFlaggedPoint(result, after=self._reviewCursor)
            if point is None:
                self._reviewPoint = None
                self.ui.confirmButton.enabled = False
                self.ui.statusLabel.text = _("No flagged point left.")
                return
            self._reviewCursor = point.key
            self._reviewPoint = point
            self.ui.confirmButton.enabled = point.flag == "low"
            self.logic.showPoint(result, point)
            if point.flag == "absent" and point.doubt:  # a point the network nearly found
                text = _("{name} on slice {slice}, phase {phase}: absent, {doubt}. Click in the view to place it "
                         "if it is there.")
            elif point.flag == "absent":
                text = _("{name} on slice {slice}, phase {phase}: not found. Click in the view to place it.")
            elif point.doubt:
                text = _("{name} on slice {slice}, phase {phase}: low confidence {confidence} — {doubt}. "
                         "Drag it if wrong, or press Confirm point if right.")
            else:
                text = _("{name} on slice {slice}, phase {phase}: low confidence {confidence}. Drag it if wrong, "
                         "or press Confirm point if right.")
            self.ui.statusLabel.text = text.format(name=point.name, slice=point.slice, phase=point.phase,
                                                   confidence=f"{point.confidence:.2f}", doubt=point.doubt)

    def onConfirmButton(self) -> None:
        """Confirm the flagged point shown last (Review next flagged point) where it is."""
        result = self._parameterNode.result if self._parameterNode else None
        point = self._reviewPoint
        if result is None or point is None:
            return
        from CardiacLandmarksModuleLib.gui import errorsShown

        with errorsShown(_("Failed to confirm the point.")):
            self.logic.confirmPoint(result, point.name, point.slice, point.phase)
            self._reviewPoint = None
            self.ui.confirmButton.enabled = False
            self.ui.statusLabel.text = _("{name} on slice {slice}, phase {phase} confirmed.").format(
                name=point.name, slice=point.slice, phase=point.phase)
            self._updateResultSummary()

    def onExport(self, markups: bool = False, landmarksJson: bool = False, csv: bool = False) -> None:
        """Export the current (corrected) landmarks and measurements to the output folder."""
        from CardiacLandmarksModuleLib.gui import errorsShown, requireDirectory

        result = self._parameterNode.result if self._parameterNode else None
        if result is None:
            return
        directory = requireDirectory(self.ui.outputDirectoryButton, self.ui.statusLabel, _("(Export section)"))
        if directory is None:
            return
        with errorsShown(_("Export failed."), waitCursor=True) as outcome:
            written = self.logic.exportResult(result, directory, markups=markups, landmarksJson=landmarksJson,
                                              csv=csv)
        if outcome.failed:
            self.ui.statusLabel.text = _("Export failed (see the error message).")
            return
        self.ui.statusLabel.text = _("Wrote {count} file(s) to {folder} (existing files kept as .bak).").format(
            count=len(written), folder=directory)


#
# CardiacLandmarksLogic
#


class CardiacLandmarksLogic(ScriptedLoadableModuleLogic, VTKObservationMixin):
    """GUI-free logic: MRML nodes <-> CardiacLandmarksLib, detection, correction bookkeeping, export.

    Usable from the Python console::

        logic = slicer.util.getModuleLogic("CardiacLandmarks")   # or CardiacLandmarksLogic()
        result = logic.detect(slicer.util.getNode("5: SA CINE"))  # volume, cine proxy volume or sequence
        lmset = logic.landmarkSetFromResult(result)                 # CardiacLandmarksLib LandmarkSet
        logic.exportResult(result, "/tmp/out")

    Uses ScriptedLoadableModuleLogic base class, see
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        VTKObservationMixin.__init__(self)
        self._states = {}
        self._reconciling = False
        self._perfusion = None
        self._function = None
        if slicer.mrmlScene is not None:
            self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self._onSceneStartClose)
            self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAboutToBeRemovedEvent, self._onNodeAboutToBeRemoved)

    def _onSceneStartClose(self, caller, event) -> None:
        """Forget every result: node IDs are reused by the next scene."""
        for hubID in list(self._states):
            hub = slicer.mrmlScene.GetNodeByID(hubID)
            if hub is not None:
                self.detachResult(hub)
        self._states.clear()

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _onNodeAboutToBeRemoved(self, caller, event, node) -> None:
        if node is not None and node.GetID() in self._states:
            self.detachResult(node)

    def getParameterNode(self):
        return CardiacLandmarksParameterNode(super().getParameterNode())

    @property
    def perfusion(self):
        """The perfusion report logic (``CardiacLandmarksModuleLib.perfusion.PerfusionLogic``, made on first
        use; its model loads on its first run): AHA 16-segment table, bull's-eye, sector segmentations and
        editable RV insertion points that recompute when moved (Xue et al., Radiology: AI 2020)::

            hub = logic.perfusion.run([getNode("1424200_stress_mid"), getNode("1424200_rest_mid")])
        """
        if self._perfusion is None:
            from CardiacLandmarksModuleLib.perfusion import PerfusionLogic

            self._perfusion = PerfusionLogic()
        return self._perfusion

    @property
    def function(self):
        """The LV/RV function logic (``CardiacLandmarksModuleLib.function.FunctionLogic``): segmentation with
        standard terminology, Metric/Value/Unit/Status table, volume curve, recompute after editing::

            hub = logic.function.run(getNode("patient101_ED"), getNode("patient101_ES"))
        """
        if self._function is None:
            from CardiacLandmarksModuleLib.function import FunctionLogic

            self._function = FunctionLogic()
        return self._function

    # ---------------------------------------------------------------- input

    @staticmethod
    def _sequencesLogic():
        return slicer.modules.sequences.logic()

    def resolveInput(self, inputNode):
        """``(imageNode, sequenceNode, browserNode)`` of an input: a plain volume has no sequence/browser;
        the proxy volume of a browser stands for its whole sequence; a sequence gets its browser (if any)."""
        if inputNode is None:
            return None, None, None
        if inputNode.IsA("vtkMRMLSequenceNode"):
            browser = self._sequencesLogic().GetFirstBrowserNodeForSequenceNode(inputNode)
            proxy = browser.GetProxyNode(inputNode) if browser is not None else None
            return proxy, inputNode, browser
        browser = self._sequencesLogic().GetFirstBrowserNodeForProxyNode(inputNode)
        if browser is not None:
            sequence = browser.GetSequenceNode(inputNode)
            if sequence is not None and sequence.GetNumberOfDataNodes() > 1:
                return inputNode, sequence, browser
        return inputNode, None, None

    def canDetect(self, inputNode):
        """``(ok, reason)``: whether ``inputNode`` can be processed, and why not (user text)."""
        if inputNode is None:
            return False, _("Select an input image (volume or cine sequence).")
        if inputNode.IsA("vtkMRMLSequenceNode"):
            if inputNode.GetNumberOfDataNodes() == 0:
                return False, _("The selected sequence is empty.")
            item = inputNode.GetNthDataNode(0)
            if item is None or not item.IsA("vtkMRMLScalarVolumeNode"):
                return False, _("The selected sequence does not hold image volumes.")
        elif inputNode.IsA("vtkMRMLScalarVolumeNode") and inputNode.GetImageData() is None:
            return False, _("The selected volume has no image data.")
        return True, ""

    def seriesFromNode(self, inputNode):
        """The ``CMRSeries`` of an input node (a cine proxy volume gives the whole cine)."""
        from CardiacLandmarksModuleLib import nodes

        ok, reason = self.canDetect(inputNode)
        if not ok:
            from CardiacLandmarksLib.core.errors import InvalidImageError

            raise InvalidImageError(reason)
        imageNode, sequence, _browser = self.resolveInput(inputNode)
        if sequence is not None:
            transform = imageNode.GetParentTransformNode() if imageNode is not None else None
            description = imageNode.GetName() if imageNode is not None else sequence.GetName()
            return nodes.seriesFromSequenceNode(sequence, transform, description=description)
        return nodes.seriesFromVolumeNode(imageNode)

    # ---------------------------------------------------------------- detection

    def detect(self, inputNode, view: str = "auto", device: str = "auto", progress=None, cancel=None,
               batchSize: int = 8, sequence: str = "auto"):
        """Detect the landmarks on every slice and phase of ``inputNode`` and show them.

        Args:
            inputNode: scalar volume, cine proxy volume, or sequence of scalar volumes.
            view: ``"auto"`` (the view recognised from the image description / orientation by
                ``CardiacLandmarksLib.io.view.detect_view``; SAX when unknown), ``"sax"``, or a
                long-axis view ``"2ch"``, ``"3ch"``, ``"4ch"`` (``CardiacLandmarksLib.analysis.analyse_landmarks``:
                valve points and APEX, tracked through the cine, LV length line, table and plot;
                see ``CardiacLandmarksModuleLib.lax``).
            device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
            progress: ``progress(done, total)`` after each batch of images.
            cancel: ``cancel() -> bool`` polled between batches (True raises
                ``CardiacLandmarksLib.sax.pipeline.Cancelled``).
            batchSize: images per forward pass (small = more frequent progress calls).
            sequence: ``"auto"`` (``CMRSeries.sequence`` from the DICOM tags or the node name) or ``"cine"``,
                ``"lge"``, ``"perfusion"``, ``"t1"``: picks the SAX model (``sax_unet_lge`` for LGE and perfusion,
                as ``cardiac-landmarks detect --sequence``).

        Returns:
            The result node (``vtkMRMLTextNode``) referencing the point lists and the table.

        Raises:
            CardiacLandmarksLib errors (bad input, wrong view, missing model), ``Cancelled``.
        """
        from CardiacLandmarksLib.analysis import analyse_landmarks
        from CardiacLandmarksLib.sax.pipeline import SaxOptions

        series = self.seriesFromNode(inputNode)
        if progress is not None:
            progress(0, series.n_phases * series.n_slices)
        result = analyse_landmarks(series, view, SaxOptions(device=device, batch_size=batchSize), progress=progress,
                                   cancel=cancel, sequence=sequence,
                                   allow_incomplete=True)  # a series the reader found incomplete: every value review
        lmset = result.landmarks
        return self.createResultNodes(inputNode, series, lmset)

    def dicomFolderSeries(self, folder):
        """The image series of a DICOM folder as ``cardiac-landmarks study`` routes them
        (``CardiacLandmarksLib.study.routing.route_study``; only the headers are read, or without a short-axis stack
        each series once, to tell its view).

        A short-axis cine stored one series per slice (common on Siemens) is one entry: the stack (a slice acquired
        twice keeps its later series; a slice with a few phases less keeps the first phases all have). Image files
        in the folder (a NIfTI export beside the DICOM) are entries too, and so are the series ``study`` lists
        without analysing them (an earlier acquisition of a stack, a derived copy, a view without a model: their
        reason is in :meth:`seriesChoiceText`). Damaged series, objects that are not MR images, localisers and slices
        left out of a stack are not listed.

        Args:
            folder: a DICOM folder (a series, a stack, or a whole study as a PACS exports it).

        Returns:
            ``(entries, notes)``: the ``RoutedSeries`` that can be loaded, in the routing table's order (each with
            ``key`` as ``routing.txt`` names it, ``label``, ``n_slices``, ``n_phases``, ``view``, ``sequence``,
            ``is_sax_reference``), and the folder's own notes (damaged files of no series, files that are not
            DICOM).

        Raises:
            CardiacLandmarksError: the routing's or the reader's named errors (the folder missing, no DICOM in it, no
                series that can be loaded ...).
        """
        from CardiacLandmarksLib.study.routing import route_study

        routing = route_study(folder)  # image files beside the DICOM (NIfTI exports) are offered too
        entries = [e for e in routing.series if e.loadable and e.sequence not in ("localiser", "label", "curve")]
        own = [n for n in routing.notes if not any(n.startswith(e.label + ":") for e in routing.series)]
        notes = own + [f"not read: {u}" for u in routing.unread]
        if not entries:  # the reader's own error names why (no MR image, every series damaged ...)
            from CardiacLandmarksLib.core.errors import NoDicomError
            from CardiacLandmarksLib.io.load import load_series

            load_series(folder)
            raise NoDicomError(f"no image series to load in {folder}" + (f" ({'; '.join(notes)})" if notes else ""))
        return entries, notes

    def loadRoutedSeries(self, entry):
        """Load one entry of :meth:`dicomFolderSeries` and add it to the scene: a cine as a volume sequence with its
        browser, one phase as a volume, named after the series' label.

        Returns:
            ``(node, series, notes)``: the proxy volume of the cine (or the volume), the ``CMRSeries`` read, and the
            reader's notes on it (a slice acquired twice, a slice with fewer phases, an incomplete grid ...).

        Raises:
            CardiacLandmarksError: the loader's named errors (damaged files, missing geometry ...).
        """
        import logging as _logging

        from CardiacLandmarksModuleLib import nodes

        notes: list[str] = list(entry.notes)

        class _Notes(_logging.Handler):
            def emit(self, record):
                text = record.getMessage().removeprefix("note: ")
                if text not in notes:
                    notes.append(text)

        handler = _Notes(level=_logging.INFO)
        progressLogger = _logging.getLogger("CardiacLandmarksLib.progress")  # where the reader says its notes
        level = progressLogger.level
        progressLogger.addHandler(handler)
        progressLogger.setLevel(min(level or _logging.INFO, _logging.INFO))
        try:
            series = entry.load()
        finally:
            progressLogger.removeHandler(handler)
            progressLogger.setLevel(level)
        name = slicer.mrmlScene.GenerateUniqueName(series.description or entry.label.strip("#'"))
        if series.n_phases > 1:
            sequence, _browser, node = nodes.addSequenceFromSeries(slicer.mrmlScene, series, name,
                                                                   self._sequencesLogic())
            nodes.setReaderFacts(sequence, series)  # a cine is rebuilt from its sequence (Detect, function, LAX)
        else:
            node = nodes.addVolumeFromSeries(slicer.mrmlScene, series, name)
            nodes.setReaderFacts(node, series)
        return node, series, notes

    def loadDicomFolder(self, folder, series=None):
        """Read a DICOM folder with the library's reader and routing (:meth:`dicomFolderSeries`, as
        ``cardiac-landmarks study`` reads a study) and add one series to the scene (:meth:`loadRoutedSeries`).

        What Slicer's DICOM module does not: a short-axis cine stored as one series per slice (common on Siemens)
        becomes one stack (a slice acquired twice keeps its later series; a slice with a few phases less keeps the
        first phases all have), and compressed pixel data are decoded with the reader's checks.

        Args:
            folder: the DICOM folder (one series, one per-slice stack, or a whole study).
            series: which series when the folder holds several: its key as ``routing.txt`` names it (``"s1000"``),
                its SeriesInstanceUID, or an entry of :meth:`dicomFolderSeries`. None: the only one.

        Returns:
            ``(node, series, notes)``: the proxy volume of the cine (or the volume), the ``CMRSeries`` read, and the
            reader's notes (a slice acquired twice, a slice with fewer phases, files not read ...).

        Raises:
            MixedSeriesError: several series and none chosen (the message lists them with their keys);
            NoDicomError: ``series`` names none of them; others: the reader's named errors (no DICOM, damaged
            files, missing geometry ...).
        """
        from CardiacLandmarksLib.core.errors import MixedSeriesError, NoDicomError

        if series is not None and not isinstance(series, str):
            return self.loadRoutedSeries(series)
        entries, notes = self.dicomFolderSeries(folder)
        listing = "\n  ".join(self.seriesChoiceText(e) for e in entries)
        if series is not None:
            entry = next((e for e in entries if series in (e.key, e.source)), None)
            if entry is None:
                raise NoDicomError(f"no image series {series} in {folder}; series:\n  {listing}")
        elif len(entries) == 1:
            entry = entries[0]
        else:
            raise MixedSeriesError(f"{len(entries)} image series in {folder}; choose one with series='KEY' "
                                   f"(or its SeriesInstanceUID):\n  {listing}")
        node, loaded, own = self.loadRoutedSeries(entry)
        return node, loaded, notes + own

    @staticmethod
    def seriesChoiceText(entry) -> str:
        """One line naming a series of :meth:`dicomFolderSeries` for a chooser: key, label, size, view, sequence
        (``s1000  #1000-1011 'CINE_sax_1'  12 slices x 20 phases, SAX cine (the study's reference stack)``); for a
        series ``study`` lists without analysing it, why (``s1000  #1000-1011 'cine_sax'  12 slices x 20 phases:
        an earlier acquisition of the stack: #2000-2011 'cine_sax', acquired later, is used in the stack ...``)."""
        size = (f"{entry.n_slices} slice{'s' if entry.n_slices != 1 else ''} x {entry.n_phases} phase"
                f"{'s' if entry.n_phases != 1 else ''}" if entry.n_slices else "size unknown")
        if entry.sequence == "-":  # an earlier acquisition of a per-slice stack: neither view nor sequence decided
            return f"{entry.key}  {entry.label}  {size}: {entry.reason}"
        view = entry.view.upper() if entry.view not in ("unknown", "-") else "view unknown"
        ref = " (the study's reference stack)" if entry.is_sax_reference else ""
        why = f" ({entry.reason})" if not entry.analyses and entry.reason else ""
        return f"{entry.key}  {entry.label}  {size}, {view} {entry.sequence}{ref}{why}"

    def openResult(self, folder):
        """Open a result folder for review: its image and its landmarks as this module's result.

        A folder that ``cardiac-landmarks detect``, ``study`` or ``batch`` wrote (``landmarks.json``; point lists
        saved after it, e.g. edited in Slicer, count: ``CardiacLandmarksLib.results.read_result``). The image is
        the one the landmarks were detected on (``CardiacLandmarksLib.results.load_source``: ``source``, both files
        of an ED/ES pair, a DICOM series by its UIDs) and is added as a volume, or as a volume sequence with its
        browser for a cine. The landmarks then behave as after Detect: point lists with their flags, the
        measurements table, review, Confirm point; earlier corrections and confirmations stay marked. Export into
        the same folder writes the review back (the replaced files kept as ``.bak-<time>``), which
        ``cardiac-landmarks apply-review`` carries into a study report and a cohort table.

        Returns:
            The result node; its ``CardiacLandmarks.ResultFolder`` attribute holds the folder.

        Raises:
            CardiacLandmarksError: no ``landmarks.json``, an unreadable file, the image missing or not the one the
                landmarks name (``SeriesMismatchError``).
        """
        from pathlib import Path

        from CardiacLandmarksModuleLib import nodes

        from CardiacLandmarksLib.results import load_source, read_result

        folder = Path(folder)
        lmset = read_result(folder, point_lists="ignore")
        series = load_source(lmset, folder)
        lmset = read_result(folder, series)
        name = slicer.mrmlScene.GenerateUniqueName(folder.name)
        if series.n_phases > 1:
            _sequence, _browser, node = nodes.addSequenceFromSeries(slicer.mrmlScene, series, name,
                                                                    self._sequencesLogic())
        else:
            node = nodes.addVolumeFromSeries(slicer.mrmlScene, series, name)
        hub = self.createResultNodes(node, series, lmset)
        hub.SetAttribute(RESULT_FOLDER_ATTRIBUTE, str(folder))
        return hub

    def createResultNodes(self, inputNode, series, lmset):
        """Show a ``LandmarkSet`` of ``series`` (made from ``inputNode``) as point lists and a table.

        Also usable for a ``landmarks.json`` written by the command line on the same image
        (``LandmarkSet.from_dict``). For a cine, each slice gets a markups sequence synchronised
        with the image sequence in its browser (the point list shown is its proxy node).

        Returns:
            The result node (``vtkMRMLTextNode`` holding ``lmset`` as detected).
        """
        import numpy as np
        from CardiacLandmarksModuleLib import nodes

        from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW, Landmark

        scene = slicer.mrmlScene
        imageNode, imageSequence, browser = self.resolveInput(inputNode)
        baseName = (imageNode or inputNode).GetName()
        names = LANDMARKS_BY_VIEW[lmset.view]
        lax = lmset.view in LAX_VIEWS
        byKey = {(lm.name, lm.slice, lm.phase): lm for lm in lmset.landmarks}

        def landmarksOf(k, t):
            return [byKey.get((n, k, t)) or Landmark(n, k, t, False, np.full(3, np.nan), np.full(3, np.nan), 0.0,
                                                     "absent") for n in names]
        if imageSequence is not None and browser is None:
            browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{baseName} browser")
            browser.SetAndObserveMasterSequenceNodeID(imageSequence.GetID())
            self._sequencesLogic().UpdateProxyNodesFromSequences(browser)
        cine = imageSequence is not None and series.n_phases > 1

        hub = scene.AddNewNodeByClass("vtkMRMLTextNode", scene.GenerateUniqueName(f"{baseName} landmarks"))
        hub.SetText(json.dumps(lmset.to_dict(), indent=1))
        geometry = {
            "spacing": [float(s) for s in series.spacing],
            "direction": series.direction.tolist(),
            "slice_origins": series.slice_origins.tolist(),
            "orientation_known": bool(series.orientation_known),
            "n_slices": series.n_slices,
            "n_phases": series.n_phases,
            "shape_ji": list(series.shape_ji),
            "names": list(names),
        }
        hub.SetAttribute(GEOMETRY_ATTRIBUTE, json.dumps(geometry))
        hub.SetAttribute(RESULT_ATTRIBUTE, "1")
        hub.SetNodeReferenceID(INPUT_REFERENCE, inputNode.GetID())
        if lax:
            from CardiacLandmarksModuleLib import lax as laxNodes

            laxNodes.createNodes(self, hub, inputNode, series, lmset, imageSequence if cine else None, browser,
                                 baseName)
            self.attachResult(hub)
            return hub

        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{baseName} RVI measurements"))
        hub.SetNodeReferenceID(TABLE_REFERENCE, table.GetID())

        for k in range(series.n_slices):
            nodes.addSlicePointList(hub, scene.GenerateUniqueName(f"{baseName} slice {k}"), names,
                                    lambda t, k=k: landmarksOf(k, t), series.n_phases,
                                    imageSequence if cine else None, browser)
        if cine:
            hub.SetNodeReferenceID(IMAGE_SEQUENCE_REFERENCE, imageSequence.GetID())
            hub.SetNodeReferenceID(BROWSER_REFERENCE, browser.GetID())
            self._sequencesLogic().UpdateProxyNodesFromSequences(browser)
        self.attachResult(hub)
        self.updateMeasurements(hub, pairs=())  # attachResult measured everything
        return hub

    # ---------------------------------------------------------------- result bookkeeping

    @staticmethod
    def isResultNode(node) -> bool:
        return node is not None and node.IsA("vtkMRMLTextNode") and node.GetAttribute(RESULT_ATTRIBUTE) == "1"

    def resultTable(self, hub):
        """The measurements table (RVI angles; for a long-axis result the LV length of slice 0)."""
        return hub.GetNodeReference(TABLE_REFERENCE)

    @staticmethod
    def resultWarnings(hub) -> list:
        """The warnings of a result as detected (``LandmarkSet.warnings``: a loader's note on the file, the
        RV on the patient's wrong side, a forced view ...); empty when there are none."""
        try:
            return [str(w) for w in json.loads(hub.GetText() or "{}").get("warnings", [])]
        except (ValueError, AttributeError):
            return []

    @staticmethod
    def isLaxResult(hub) -> bool:
        """True for a long-axis (2CH/3CH/4CH) result."""
        from CardiacLandmarksModuleLib import lax

        return lax.isLaxResult(hub)

    def lvLengthLine(self, hub, k: int = 0):
        """The ``vtkMRMLMarkupsLineNode`` from APEX to the mitral midpoint of the phase shown (LAX result)."""
        from CardiacLandmarksModuleLib import lax

        return hub.GetNthNodeReference(lax.LINE_REFERENCE, k)

    def lvLengthChart(self, hub):
        """The ``vtkMRMLPlotChartNode`` "LV length over the cardiac cycle" (LAX result)."""
        from CardiacLandmarksModuleLib import lax

        return hub.GetNodeReference(lax.CHART_REFERENCE)

    def lvLengthPlotSeries(self, hub, k: int = 0):
        """The ``vtkMRMLPlotSeriesNode`` of slice ``k``'s LV length (LAX result)."""
        from CardiacLandmarksModuleLib import lax

        return hub.GetNthNodeReference(lax.PLOT_SERIES_REFERENCE, k)

    def lvLengthTable(self, hub, k: int = 0):
        """The LV-length table of slice ``k`` (columns Phase, Time (ms), LV length (mm), Status)."""
        return hub.GetNthNodeReference(TABLE_REFERENCE, k)

    def laxSummary(self, hub, k: int = 0) -> dict:
        """LV length at ED/ES and longitudinal shortening of a LAX result's slice ``k`` (current points).

        Returns:
            ``{"view", "slice", "ed_phase", "es_phase", "length_ed_mm", "length_es_mm",
            "shortening_pct", "ed_rule", "es_rule", "low_phases", "notes"}`` (None where not
            computable); ED = longest, ES = shortest LV (``lax_measurements.lv_length_curve``).
        """
        from CardiacLandmarksModuleLib import lax

        return lax.laxSummary(self, hub, k)

    def lvLengthCurve(self, hub, k: int = 0):
        """The library's ``LVLengthCurve`` of slice ``k`` for the current (corrected) points."""
        return self._state(hub).curves.get(k)

    def correctLaxLandmark(self, hub, name: str, phase: int, positionLPS, k: int = 0) -> bool:
        """Correct one long-axis landmark on one phase, as moving it in a view does.

        The point becomes a corrected anchor, the landmark is re-tracked through the other
        phases (``tracking.correct_landmark``; other corrected phases stay anchors), and the
        point lists, LV-length line, table, plot and shortening are updated. A position back on
        the model's detection (within 1e-3 mm) removes the correction (undo).

        Args:
            name: e.g. ``"APEX"``. phase: phase index. positionLPS: ``(3,)`` LPS mm, or None
                (mark absent). k: slice.

        Returns:
            True when the landmarks changed.

        Raises:
            ValueError: unknown landmark, slice or phase; InvalidImageError: position outside the image.
        """
        from CardiacLandmarksModuleLib import lax

        return lax.setCorrection(self, hub, name, int(k), int(phase), positionLPS)

    def seedLaxFromPoints(self, inputNode, view: str, phase: int, pointsLPS: dict, k: int = 0):
        """A LAX result from points placed by the user on one phase (no model, or the model found nothing).

        The points (``{name: (3,) LPS mm}``, e.g. the three of ``view``) are tracked through
        the cine (``tracking.seed_from_points`` + ``track_landmarks``); landmarks not given are
        absent and can be placed later (each placement is tracked in turn).

        Returns:
            The result node.
        """
        import numpy as np

        from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW, Landmark
        from CardiacLandmarksLib.lax import tracking
        from CardiacLandmarksLib.lax.measurements import lv_length_measurements

        if view not in LAX_VIEWS:
            raise ValueError(f"view must be one of {LAX_VIEWS}, not {view!r}")
        series = self.seriesFromNode(inputNode)
        lmset = tracking.seed_from_points(series, pointsLPS, phase, view, k=k, corrected=True)
        if pointsLPS and series.n_phases > 1:
            lmset = tracking.track_landmarks(series, lmset, k=k)
        have = {(lm.name, lm.slice, lm.phase) for lm in lmset.landmarks}
        for t in range(series.n_phases):
            for name in LANDMARKS_BY_VIEW[view]:
                if (name, k, t) not in have:
                    lmset.landmarks.append(Landmark(name, k, t, False, np.full(3, np.nan), np.full(3, np.nan), 0.0,
                                                    "absent"))
        lmset.model = dict(lmset.model, name="placed by user")
        lmset.measurements = lv_length_measurements(lmset, view)
        return self.createResultNodes(inputNode, series, lmset)

    def pointListNodes(self, hub) -> list:
        """Point list of each slice (index = slice); for a cine these are the proxy nodes."""
        return [hub.GetNthNodeReference(POINT_LIST_REFERENCE, k)
                for k in range(hub.GetNumberOfNodeReferences(POINT_LIST_REFERENCE))]

    def markupsSequences(self, hub) -> list:
        return [hub.GetNthNodeReference(MARKUPS_SEQUENCE_REFERENCE, k)
                for k in range(hub.GetNumberOfNodeReferences(MARKUPS_SEQUENCE_REFERENCE))]

    def currentPhase(self, hub) -> int:
        """Phase shown now by the point lists (0 for a single-phase result)."""
        browser = hub.GetNodeReference(BROWSER_REFERENCE)
        imageSequence = hub.GetNodeReference(IMAGE_SEQUENCE_REFERENCE)
        if browser is None or imageSequence is None:
            return 0
        master = browser.GetMasterSequenceNode()
        item = browser.GetSelectedItemNumber()
        if master is None or item < 0:
            return 0
        if master is imageSequence:
            return item
        phase = imageSequence.GetItemNumberFromIndexValue(master.GetNthIndexValue(item))
        return max(phase, 0)

    def _state(self, hub):
        state = self._states.get(hub.GetID())
        if state is None:
            self.attachResult(hub)
            state = self._states[hub.GetID()]
        return state

    def attachResult(self, hub) -> None:
        """(Re)build the in-memory state of a result node and observe its point lists.

        Called after detection, and for results found in a loaded scene. Idempotent.
        """
        from CardiacLandmarksModuleLib import nodes

        from CardiacLandmarksLib.core.landmarks import LandmarkSet

        if hub.GetID() in self._states:
            return
        if self.isLaxResult(hub):
            from CardiacLandmarksModuleLib import lax

            lax.attach(self, hub)
            return
        lmset = LandmarkSet.from_dict(json.loads(hub.GetText() or "{}"))
        state = nodes.ResultState(hub, lmset, json.loads(hub.GetAttribute(GEOMETRY_ATTRIBUTE)))
        self._states[hub.GetID()] = state
        self.observePointLists(hub, state)
        self._readAllPoints(hub, state)
        self._measure(state)

    def observePointLists(self, hub, state) -> None:
        """Observe a result's point lists (moved, placed, unset points) and map each to its slice."""
        for k, pointList in enumerate(self.pointListNodes(hub)):
            if pointList is None:
                continue
            state.pointListSlice[pointList.GetID()] = k
            for event in (slicer.vtkMRMLMarkupsNode.PointModifiedEvent,
                          slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                          slicer.vtkMRMLMarkupsNode.PointPositionUndefinedEvent,
                          vtk.vtkCommand.ModifiedEvent):
                self.addObserver(pointList, event, self._onPointListModified)

    def detachResult(self, hub) -> None:
        """Stop observing a result's point lists (e.g. before deleting it)."""
        state = self._states.pop(hub.GetID(), None)
        if state is None:
            return
        if getattr(state, "kind", "") == "lax":
            from CardiacLandmarksModuleLib import lax

            lax.detach(self, hub)
        pointLists = [node for node in self.pointListNodes(hub) if node is not None]
        for obj, event, method, _group, _tag, _priority in list(self.Observations):
            if method == self._onPointListModified and any(obj is node for node in pointLists):
                self.removeObserver(obj, event, method)

    def _landmarkFromPoint(self, state, point, k: int, t: int):
        """Landmark shown by a control point, with the library's correction rule
        (``CardiacLandmarksLib.core.review.corrected_landmark``)."""
        from CardiacLandmarksLib.core import geometry
        from CardiacLandmarksLib.core.review import corrected_landmark
        from CardiacLandmarksLib.io.markups import CONFIRMED_DESCRIPTION

        ijk = (geometry.lps_to_ijk(point.position, state.direction, state.spacing[:2], state.sliceOrigins)
               if point.defined else None)
        return corrected_landmark(state.detected.get((point.name, k, t)), point.name, k, t, bool(point.defined),
                                  point.position, ijk, shown_confidence=point.confidence, selected=point.selected,
                                  user_marked=point.description.startswith(("placed by user",
                                                                            "marked absent by user",
                                                                            CONFIRMED_DESCRIPTION)),
                                  confirmed=point.description.startswith(CONFIRMED_DESCRIPTION))

    def _readAllPoints(self, hub, state) -> None:
        from CardiacLandmarksModuleLib import nodes

        state.current = {}
        sequences = self.markupsSequences(hub)
        for k, pointList in enumerate(self.pointListNodes(hub)):
            for t in range(state.nPhases):
                if sequences:
                    node = sequences[k].GetNthDataNode(t)
                else:
                    node = pointList
                if node is None:
                    continue
                for point in nodes.readPointList(node, state.names):
                    state.current[(point.name, k, t)] = self._landmarkFromPoint(state, point, k, t)

    def _onPointListModified(self, caller, event) -> None:
        if self._reconciling:
            return
        for hubID, state in self._states.items():
            k = state.pointListSlice.get(caller.GetID())
            if k is None:
                continue
            hub = slicer.mrmlScene.GetNodeByID(hubID)
            if hub is not None:
                self.reconcilePointList(hub, k)
            return

    def _onLaxBrowserModified(self, caller, event) -> None:
        """The phase shown changed: move the LV-length lines of the LAX results of this browser."""
        from CardiacLandmarksModuleLib import lax

        for hubID, state in list(self._states.items()):
            hub = slicer.mrmlScene.GetNodeByID(hubID)
            if hub is not None and getattr(state, "kind", "") == "lax" and hub.GetNodeReference(
                    BROWSER_REFERENCE) is caller:
                lax.updateLines(self, hub, state)

    def reconcilePointList(self, hub, k: int) -> bool:
        """Bring the state of slice ``k`` (current phase) in line with its point list.

        A point that differs from the model's detection (moved, placed, or removed) becomes
        "corrected" (confidence 1); one moved back (e.g. by undo) is the model's again. Labels,
        colours and stored values are refreshed, and the measurements recomputed when anything
        changed. Returns True when something changed.
        """
        import numpy as np
        from CardiacLandmarksModuleLib import nodes

        if self.isLaxResult(hub):
            from CardiacLandmarksModuleLib import lax

            return lax.reconcile(self, hub, k)
        from CardiacLandmarksLib.core.review import position_problem

        state = self._state(hub)
        pointList = self.pointListNodes(hub)[k]
        t = self.currentPhase(hub)
        changed = False
        self._reconciling = True
        try:
            for i, point in enumerate(nodes.readPointList(pointList, state.names)):
                landmark = self._landmarkFromPoint(state, point, k, t)
                old = state.current.get((point.name, k, t))
                problem = (position_problem(k, landmark.ijk, state.geometry["shape_ji"])
                           if landmark.found and landmark.corrected and old is not None else None)
                if problem:  # dragged past the image's edge, or off its slice in a 3D view: the point goes back
                    logging.warning("CardiacLandmarks: %s of slice %d, phase %d %s: put back where it was",
                                    point.name, k, t, problem)
                    landmark = old
                same = (old is not None and old.found == landmark.found and old.corrected == landmark.corrected
                        and (not landmark.found or np.allclose(old.position, landmark.position, atol=1e-9)))
                if not same:
                    state.current[(point.name, k, t)] = landmark
                    changed = True
                nodes.writePoint(pointList, i, landmark)
        finally:
            self._reconciling = False
        if changed:
            self.updateMeasurements(hub, pairs=[(k, t)])
        return changed

    def landmarkSetFromResult(self, hub, readNodes: bool = True):
        """The current landmarks (corrections included) and their measurements, as a ``LandmarkSet``.

        Args:
            readNodes: re-read every point list / markups sequence item and recompute every
                measurement first (True, as for export); False uses the state kept up to date
                by the observers.
        """
        from CardiacLandmarksLib.core.landmarks import LandmarkSet, add_input_sources

        state = self._state(hub)
        if getattr(state, "kind", "") == "lax":
            from CardiacLandmarksLib.lax.measurements import lv_length_measurements

            if readNodes:
                for k in range(state.nSlices):
                    self.reconcilePointList(hub, k)
            current = state.lmset
            lmset = LandmarkSet(source=state.source, view=state.view, model=dict(current.model),
                                landmarks=list(current.landmarks)).with_source_of(current)
            lmset.measurements = add_input_sources(lv_length_measurements(lmset, state.view), state.inputSources)
            return lmset
        if readNodes:
            self._readAllPoints(hub, state)
            self._measure(state)
        order = {name: n for n, name in enumerate(state.names)}
        landmarks = sorted(state.current.values(), key=lambda lm: (lm.phase, lm.slice, order[lm.name]))
        lmset = LandmarkSet(source=state.source, view=state.view, model=dict(state.model),
                            landmarks=landmarks).with_source_of(state.sourceRecord)
        lmset.measurements = [m for key in sorted(state.measurements, key=lambda kt: (kt[1], kt[0]))
                              for m in state.measurements[key]]
        return lmset

    def _measure(self, state, pairs=None) -> None:
        """Recompute the measurements of the (slice, phase) ``pairs`` (default: all) with the library.

        Measurements of one slice and phase depend on its own landmarks only, so a correction
        recomputes just its pair (``measurements.rvi_measurements`` on that pair's landmarks, in
        the slice frame of the series, as the detection pipeline does).
        """
        from CardiacLandmarksLib.core.landmarks import LandmarkSet, add_input_sources
        from CardiacLandmarksLib.sax import measurements

        if pairs is None:
            state.measurements = {}
            pairs = {(k, t) for (_name, k, t) in state.current}
        for k, t in pairs:
            landmarks = [state.current[(name, k, t)] for name in state.names if (name, k, t) in state.current]
            subset = LandmarkSet(source=state.source, view=state.view, model={}, landmarks=landmarks)
            state.measurements[(k, t)] = add_input_sources(measurements.rvi_measurements(
                subset, direction=state.direction, orientation_known=state.orientationKnown), state.inputSources)

    def updateMeasurements(self, hub, pairs=None):
        """Recompute measurements (of ``pairs`` of (slice, phase), default all) into the result's table.

        Returns:
            The ``vtkMRMLTableNode``.
        """
        from CardiacLandmarksModuleLib import nodes

        state = self._state(hub)
        if getattr(state, "kind", "") == "lax":
            from CardiacLandmarksModuleLib import lax

            lax.refresh(self, hub, state)
            return self.resultTable(hub)
        self._measure(state, pairs)
        lmset = self.landmarkSetFromResult(hub, readNodes=False)
        statuses = [nodes.measurementStatusText(m) for m in lmset.measurements]
        table = self.resultTable(hub)
        nodes.fillMeasurementsTable(table, lmset.measurements, statuses)
        return table

    def flagCounts(self, hub) -> dict:
        """Numbers of points by state: ``total``, ``high``, ``low``, ``absent``, ``corrected``, ``confirmed``."""
        from CardiacLandmarksLib.core.review import flag_counts

        return flag_counts(self._state(hub).current.values())

    def doubtfulAbsences(self, hub) -> list:
        """The doubts of the points not found that are worth a look (nearly found, or left out by a presence rule;
        ``CardiacLandmarksLib.core.review.doubtful_absences``), one per point not yet placed or confirmed."""
        from CardiacLandmarksLib.core.review import doubtful_absences

        return doubtful_absences(self._state(hub).current.values())

    def flaggedPoints(self, hub) -> list:
        """Points to review (low confidence or not found, not corrected), in phase, slice, landmark order
        (``CardiacLandmarksLib.core.review.flagged_points``)."""
        from CardiacLandmarksLib.core.review import flagged_points

        state = self._state(hub)
        return flagged_points(state.current.values(), state.names)

    def nextFlaggedPoint(self, hub, after=None):
        """The flagged point after ``after`` (a ``FlaggedPoint.key``), wrapping around; None when none is left."""
        from CardiacLandmarksLib.core.review import next_flagged

        return next_flagged(self.flaggedPoints(hub), after)

    # ---------------------------------------------------------------- views

    def _sliceCenterRas(self, hub, k: int):
        import numpy as np

        from CardiacLandmarksLib.core import geometry

        state = self._state(hub)
        rows, columns = state.geometry["shape_ji"]
        lps = geometry.ijk_to_lps(np.array([(columns - 1) / 2.0, (rows - 1) / 2.0, float(k)]), state.direction,
                                  state.spacing[:2], state.sliceOrigins)
        return geometry.lps_to_ras(lps)

    def selectPhase(self, hub, t: int) -> None:
        """Show phase ``t`` of a result (its sequence browser's item); nothing for a single-phase result."""
        browser = hub.GetNodeReference(BROWSER_REFERENCE)
        imageSequence = hub.GetNodeReference(IMAGE_SEQUENCE_REFERENCE)
        if browser is not None and imageSequence is not None:
            master = browser.GetMasterSequenceNode()
            item = t if master is imageSequence else master.GetItemNumberFromIndexValue(
                imageSequence.GetNthIndexValue(t))
            browser.SetSelectedItemNumber(item)

    def confirmPoint(self, hub, name: str, k: int, t: int) -> bool:
        """The reader says point ``name`` of slice ``k``, phase ``t`` is right: keep it where it is and trust it.

        The library's rule (``CardiacLandmarksLib.core.review.corrected_landmark`` with ``confirmed``, as
        ``CardiacLandmarksLib.results.confirm_landmark`` applies it for the review app): the point becomes corrected and
        confirmed (confidence 1, selected, description ``"confirmed by user"``, which travels with it through
        Slicer's own save and load), leaves the review queue, and its measurements are recomputed; on a
        long-axis cine it is an anchor and the landmark is re-tracked, as after a move. The phase is shown
        first. Dragging the point later makes it a plain correction.

        Returns:
            True when something changed (False for a point already confirmed or corrected).

        Raises:
            ValueError: unknown landmark, slice or phase, or a point the model did not find (nothing to
                confirm: place it instead).
        """
        from CardiacLandmarksLib.io.markups import CONFIRMED_DESCRIPTION

        state = self._state(hub)
        if name not in state.names or not (0 <= int(k) < state.nSlices) or not (0 <= int(t) < state.nPhases):
            raise ValueError(_("No point {name} on slice {k}, phase {t}.").format(name=name, k=k, t=t))
        current = state.current.get((name, int(k), int(t)))
        if current is None or not current.found:
            raise ValueError(_("{name} on slice {k}, phase {t} was not found: place it instead of confirming it.")
                             .format(name=name, k=k, t=t))
        if current.corrected:
            return False
        if self.currentPhase(hub) != int(t):
            self.selectPhase(hub, int(t))
        if self.isLaxResult(hub):
            from CardiacLandmarksModuleLib import lax

            return lax.setCorrection(self, hub, name, int(k), int(t), current.position, confirm=True)
        pointList = self.pointListNodes(hub)[int(k)]
        pointList.SetNthControlPointDescription(state.names.index(name), CONFIRMED_DESCRIPTION)
        self.reconcilePointList(hub, int(k))
        return bool(state.current[(name, int(k), int(t))].confirmed)

    def showPoint(self, hub, point, placeIfAbsent: bool = True) -> None:
        """Show a flagged point: select its phase, jump the slice views to it (centred).

        For a point the model did not find, the views jump to the centre of its slice and, with
        ``placeIfAbsent``, the next click in a view places exactly that point.
        """
        self.selectPhase(hub, point.phase)
        pointList = self.pointListNodes(hub)[point.slice]
        markupsLogic = slicer.modules.markups.logic()
        if pointList.GetNthControlPointPositionStatus(point.index) == pointList.PositionDefined:
            markupsLogic.JumpSlicesToNthPointInMarkup(pointList.GetID(), point.index, True)
            return
        markupsLogic.JumpSlicesToLocation(*[float(x) for x in self._sliceCenterRas(hub, point.slice)], True)
        if placeIfAbsent:
            pointList.SetControlPointPlacementStartIndex(point.index)
            selectionNode = slicer.mrmlScene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
            interactionNode = slicer.mrmlScene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
            if selectionNode is not None and interactionNode is not None:
                selectionNode.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsFiducialNode")
                selectionNode.SetActivePlaceNodeID(pointList.GetID())
                interactionNode.SetCurrentInteractionMode(interactionNode.Place)

    def displayAxesRas(self, hub):
        """Screen axes of the standard short-axis display of a result's image, in RAS.

        Returns ``(right, up, normal)`` unit vectors: with a known patient orientation the
        anterior wall is up and the patient's left is screen right (RV on the viewer's left), as
        in the library's measurements (``geometry.display_axes_ras``); without it, the
        image as stored (rows downwards).
        """
        from CardiacLandmarksLib.core import geometry

        state = self._state(hub)
        return geometry.display_axes_ras(state.direction, state.orientationKnown)

    def showResultInSliceViews(self, hub, layoutName: str = "Red") -> None:
        """Show the input in the ``layoutName`` slice view, in the image plane (standard short-axis display)."""
        from CardiacLandmarksModuleLib import nodes

        imageNode, _sequence, _browser = self.resolveInput(hub.GetNodeReference(INPUT_REFERENCE))
        center = self._sliceCenterRas(hub, self._state(hub).nSlices // 2)
        right, up, normal = self.displayAxesRas(hub)
        nodes.showInSliceView(layoutName, right, up, normal, center, imageNode)

    # ---------------------------------------------------------------- export

    def exportResult(self, hub, outputDirectory, markups: bool = True, landmarksJson: bool = True,
                     csv: bool = True) -> list:
        """Write the current landmarks with the library writers (the command line's formats).

        ``<folder>/*.mrk.json`` (one point list per slice, LPS, confidence as control point
        values), ``landmarks.json`` and ``measurements.csv``. Existing files are never lost:
        the library keeps them as ``<name>.bak-<time>``. The folder (and the study it is an analysis of) is held
        while writing, as a run holds it: a run of another program writing into it makes the export fail by name.

        Returns:
            The paths written.

        Raises:
            FolderHeldError: another program (a ``study`` run, the review app's save) is writing into the folder.
        """
        from pathlib import Path

        from CardiacLandmarksLib.io import markups as markupsIO
        from CardiacLandmarksLib.io.outputs import edit_held
        from CardiacLandmarksLib.sax import report

        lmset = self.landmarkSetFromResult(hub, readNodes=True)
        folder = Path(outputDirectory)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        with edit_held(folder, "Slicer landmark export"):
            if markups:
                written += [Path(p) for p in markupsIO.write_markups(lmset, folder)]
            if landmarksJson:
                written.append(Path(report.write_landmarks_json(lmset, folder / "landmarks.json",
                                                                backup_existing=True)))
            if csv:
                written.append(Path(report.write_measurements_csv(lmset.measurements, folder / "measurements.csv",
                                                                  backup_existing=True)))
        return written


#
# CardiacLandmarksTest
#


class CardiacLandmarksTest(ScriptedLoadableModuleTest):
    """Module tests, run by Slicer's self-test and by ``Testing/test_slicer_module.py`` (pytest).

    Uses ScriptedLoadableModuleTest base class, see
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        """Reset the state: a scene clear is enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run the tests of this module. A test whose real data or bundled model is missing is skipped
        with the reason (logged), except in CI (``CI=true``), where it fails."""
        for test in (self.test_GeometryRoundTrip, self.test_CorrectionUpdatesMeasurements, self.test_DetectOnRealData,
                     self.test_LaxCorrectionOnRealData, self.test_PerfusionReportOnRealData):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as exc:
                logging.warning("CardiacLandmarksTest.%s skipped: %s", test.__name__, exc)
                self.delayDisplay(f"{test.__name__} skipped: {exc}")

    # helpers -----------------------------------------------------------------

    def requireFiles(self, *paths) -> None:
        """Skip the calling test (``unittest.SkipTest``) when a file it needs is missing; in CI (``CI=true``)
        fail instead, as the project's pytest tests do."""
        missing = [str(p) for p in paths if not os.path.exists(p)]
        if not missing:
            return
        message = f"needs {', '.join(missing)} (real data: CARDIAC_LANDMARKS_DATA; bundled models)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            self.fail(message)
        raise unittest.SkipTest(message)

    @staticmethod
    def _syntheticSeries(direction=None, orientationKnown=False, nPhases=1):
        """A 3-slice, 64x64 test stack with a given direction (known geometry, no anatomy)."""
        import numpy as np

        from CardiacLandmarksLib.core.series import CMRSeries

        d = np.eye(3) if direction is None else np.asarray(direction, float)
        spacing = (1.5, 1.5, 8.0)
        origin = np.array([-40.0, 25.0, 110.0])
        origins = origin + np.arange(3)[:, None] * spacing[2] * d[:, 2]
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 1000, size=(nPhases, 3, 64, 64)).astype(np.float32)
        return CMRSeries(pixels=pixels, spacing=spacing, direction=d, slice_origins=origins,
                         orientation_known=orientationKnown, source="synthetic", description="synthetic SAX")

    @staticmethod
    def _knownLandmarkSet(series):
        """C-LV at column 32, row 32; A-RVI up-left (+45 deg), I-RVI down-left (opening 90 deg) on slice 1;
        slice 0: A-RVI low confidence; slice 2: I-RVI absent."""
        import numpy as np

        from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet

        lmset = LandmarkSet(source="synthetic", view="sax", model={"name": "test", "version": "0", "sha256": ""})
        for k in range(series.n_slices):
            for name, (i, j), conf, flag in (("A-RVI", (22.0, 22.0), 0.9, "high"),
                                             ("I-RVI", (22.0, 42.0), 0.8, "high"),
                                             ("C-LV", (32.0, 32.0), 0.95, "high")):
                if k == 0 and name == "A-RVI":
                    conf, flag = 0.42, "low"
                if k == 2 and name == "I-RVI":
                    lmset.landmarks.append(Landmark(name, k, 0, False, np.full(3, np.nan), np.full(3, np.nan), 0.0,
                                                    "absent"))
                    continue
                ijk = np.array([i, j, float(k)])
                lmset.landmarks.append(Landmark(name, k, 0, True, series.ijk_to_lps(ijk), ijk, conf, flag))
        return lmset

    @staticmethod
    def _tableValue(table, name, k, t=0):
        import numpy as np
        from CardiacLandmarksModuleLib import nodes

        for m in nodes.readMeasurementsTable(table):
            if m.name == name and m.slice == k and m.phase == t:
                return m.value
        return np.nan

    # tests -------------------------------------------------------------------

    def test_GeometryRoundTrip(self):
        """A series shown as a volume node converts back to the same geometry, and each voxel lands
        where the library says (checked against the node's own IJK-to-RAS matrix)."""
        import numpy as np
        from CardiacLandmarksModuleLib import nodes

        from CardiacLandmarksLib.core import geometry

        self.delayDisplay("Geometry round trip")
        angle = np.radians(30.0)
        rotation = np.array([[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0],
                             [-np.sin(angle), 0.0, np.cos(angle)]])
        series = self._syntheticSeries(direction=rotation, orientationKnown=True)
        volume = nodes.addVolumeFromSeries(slicer.mrmlScene, series, "synthetic")
        back = CardiacLandmarksLogic().seriesFromNode(volume)
        np.testing.assert_allclose(back.pixels, series.pixels)
        np.testing.assert_allclose(back.direction, series.direction, atol=1e-9)
        np.testing.assert_allclose(back.spacing, series.spacing)
        np.testing.assert_allclose(back.slice_origins, series.slice_origins, atol=1e-9)
        self.assertTrue(back.orientation_known)
        matrix = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        for ijk in ([0, 0, 0], [63, 0, 2], [10.5, 40.25, 1]):
            ras = matrix.MultiplyPoint([*ijk, 1.0])[:3]
            np.testing.assert_allclose(geometry.lps_to_ras(series.ijk_to_lps(np.array(ijk, float))), ras, atol=1e-9)
        self.delayDisplay("Geometry round trip passed")

    def test_CorrectionUpdatesMeasurements(self):
        """Moving a point marks it corrected (confidence 1) and recomputes the RVI angle at once; the
        confidence survives Slicer's .mrk.json storage; undoing the move restores the model's point."""
        import tempfile

        import numpy as np
        from CardiacLandmarksModuleLib import nodes

        from CardiacLandmarksLib.core import geometry

        self.delayDisplay("Correction and live measurements")
        series = self._syntheticSeries()
        volume = nodes.addVolumeFromSeries(slicer.mrmlScene, series, "synthetic")
        logic = CardiacLandmarksLogic()
        hub = logic.createResultNodes(volume, series, self._knownLandmarkSet(series))
        table = logic.resultTable(hub)
        pointLists = logic.pointListNodes(hub)
        self.assertEqual(len(pointLists), 3)
        # anterior = image up, positive towards image left: A-RVI up-left of C-LV is +45 deg
        self.assertAlmostEqual(self._tableValue(table, "RVI angle", 1), 45.0, places=6)
        self.assertAlmostEqual(self._tableValue(table, "RVI opening angle", 1), 90.0, places=6)
        # flags as markups properties
        self.assertFalse(pointLists[0].GetNthControlPointSelected(0))  # low confidence
        self.assertEqual(pointLists[0].GetNthControlPointLabel(0), "A-RVI s0 p0")
        self.assertTrue(pointLists[0].GetNthControlPointDescription(0).startswith("low confidence 0.42"))
        self.assertEqual(pointLists[2].GetNthControlPointPositionStatus(1), pointLists[2].PositionUndefined)
        self.assertEqual(logic.flagCounts(hub),
                         {"total": 9, "high": 7, "low": 1, "absent": 1, "corrected": 0, "confirmed": 0})

        # drag A-RVI of slice 1 to straight left of C-LV: +90 deg, opening 45 deg
        slicer.mrmlScene.SetUndoOn()
        pointLists[1].SetUndoEnabled(True)
        slicer.mrmlScene.SaveStateForUndo()
        target = geometry.lps_to_ras(series.ijk_to_lps(np.array([22.0, 32.0, 1.0])))
        pointLists[1].SetNthControlPointPosition(0, *target)
        self.assertAlmostEqual(self._tableValue(table, "RVI angle", 1), 90.0, places=6)
        self.assertAlmostEqual(self._tableValue(table, "RVI opening angle", 1), 45.0, places=6)
        lmset = logic.landmarkSetFromResult(hub)
        moved = lmset.get("A-RVI", 1, 0)
        self.assertTrue(moved.corrected)
        self.assertEqual(moved.confidence, 1.0)
        np.testing.assert_allclose(moved.ijk, [22.0, 32.0, 1.0], atol=1e-9)
        self.assertEqual(logic.flagCounts(hub)["corrected"], 1)

        # Slicer's own storage keeps confidence and the corrected state; the library reads the file back
        from CardiacLandmarksLib.io import markups

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "slice1.mrk.json")
            storage = pointLists[1].CreateDefaultStorageNode()
            storage.SetFileName(path)
            self.assertTrue(storage.WriteData(pointLists[1]))
            reloaded = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "reloaded")
            reader = slicer.vtkMRMLMarkupsJsonStorageNode()
            reader.SetFileName(path)
            self.assertTrue(reader.ReadData(reloaded))
            states = nodes.readPointList(reloaded, ("A-RVI", "I-RVI", "C-LV"))
            self.assertEqual([round(p.confidence, 6) for p in states], [1.0, 0.8, 0.95])
            self.assertEqual(states[0].description, "placed by user")
            np.testing.assert_allclose(states[0].position, series.ijk_to_lps(np.array([22.0, 32.0, 1.0])), atol=1e-6)
            fromFile = markups.read_markups(path, series)
            byName = {lm.name: lm for lm in fromFile.landmarks}
            self.assertTrue(byName["A-RVI"].corrected)
            self.assertFalse(byName["I-RVI"].corrected)
            self.assertAlmostEqual(byName["I-RVI"].confidence, 0.8)
            self.assertEqual((byName["C-LV"].slice, byName["C-LV"].phase), (1, 0))

        # undo restores the model's point: no longer corrected, angle back to 45 deg
        slicer.mrmlScene.Undo()
        self.assertAlmostEqual(self._tableValue(table, "RVI angle", 1), 45.0, places=6)
        self.assertEqual(logic.flagCounts(hub)["corrected"], 0)

        # Confirm point on the low A-RVI of slice 0: trusted where it is; Slicer's storage keeps "confirmed"
        before = np.array(pointLists[0].GetNthControlPointPosition(0))
        self.assertTrue(logic.confirmPoint(hub, "A-RVI", 0, 0))
        np.testing.assert_allclose(pointLists[0].GetNthControlPointPosition(0), before, atol=1e-9)
        self.assertTrue(pointLists[0].GetNthControlPointSelected(0))
        self.assertEqual(logic.flagCounts(hub),
                         {"total": 9, "high": 7, "low": 0, "absent": 1, "corrected": 0, "confirmed": 1})
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "slice0.mrk.json")
            storage = pointLists[0].CreateDefaultStorageNode()
            storage.SetFileName(path)
            self.assertTrue(storage.WriteData(pointLists[0]))
            fromFile = markups.read_markups(path, series).get("A-RVI", 0, 0)
            self.assertTrue(fromFile.confirmed and fromFile.corrected)
            np.testing.assert_allclose(geometry.lps_to_ras(fromFile.position), before, atol=1e-6)
        self.delayDisplay("Correction test passed")

    def test_DetectOnRealData(self):
        """Detection on a real ACDC short-axis stack (only when the data and the bundled model are there)."""
        from CardiacLandmarksLib.core.config import data_root, models_root

        path = data_root() / "acdc" / "patient001_ED.nii.gz"
        self.requireFiles(path, models_root() / "sax_unet.json")
        self.delayDisplay("Detecting on real data")
        volume = slicer.util.loadVolume(str(path))
        logic = CardiacLandmarksLogic()
        hub = logic.detect(volume, device="cpu")
        pointLists = logic.pointListNodes(hub)
        self.assertEqual(len(pointLists), volume.GetImageData().GetDimensions()[2])
        for pointList in pointLists:
            self.assertEqual(pointList.GetNumberOfControlPoints(), 3)
        self.assertGreater(logic.resultTable(hub).GetNumberOfRows(), 0)
        self.delayDisplay("Detection test passed")

    def test_LaxCorrectionOnRealData(self):
        """4CH cine (M&Ms-2 001): LV length curve, then moving the APEX on one phase changes its length
        as the geometry says and re-tracks; moving it back restores (only with the data and the 4CH model)."""
        import numpy as np

        from CardiacLandmarksLib.core.config import data_root, models_root

        path = data_root() / "mnms2" / "001" / "001_LA_CINE.nii.gz"
        self.requireFiles(path, models_root() / "lax4ch_unet.json")
        self.delayDisplay("Detecting long-axis landmarks on a 4CH cine")
        storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
        storage.SetFileName(str(path))
        sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "001_LA_CINE")
        self.assertTrue(storage.ReadData(sequence))
        browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "001_LA_CINE browser")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
        logic = CardiacLandmarksLogic()
        hub = logic.detect(browser.GetProxyNode(sequence), view="4ch", device="cpu")
        table = logic.lvLengthTable(hub)
        self.assertEqual(table.GetNumberOfRows(), sequence.GetNumberOfDataNodes())
        before = [table.GetTable().GetValue(r, 2).ToDouble() for r in range(table.GetNumberOfRows())]
        shortening = logic.laxSummary(hub)["shortening_pct"]
        self.assertTrue(5.0 < shortening < 35.0)
        pointList = logic.pointListNodes(hub)[0]
        t = logic.currentPhase(hub)
        apex = np.array(pointList.GetNthControlPointPosition(2))
        mid = (np.array(pointList.GetNthControlPointPosition(0)) + np.array(pointList.GetNthControlPointPosition(1))) / 2
        direction = (apex - mid) / np.linalg.norm(apex - mid)
        pointList.SetNthControlPointPosition(2, *(apex + 5.0 * direction))  # 5 mm further from the valve
        self.assertAlmostEqual(table.GetTable().GetValue(t, 2).ToDouble(), before[t] + 5.0, places=4)
        self.assertNotAlmostEqual(logic.laxSummary(hub)["shortening_pct"], shortening, places=3)
        pointList.SetNthControlPointPosition(2, *apex)
        self.assertAlmostEqual(logic.laxSummary(hub)["shortening_pct"], shortening, places=6)
        self.delayDisplay("LAX test passed")

    def test_PerfusionReportOnRealData(self):
        """Perfusion report on one mlperf series: 16 segments + global in the table, the mid-level AHA
        sectors as a segmentation; turning A-RVI by one sector (60 degrees) about C-LV changes the
        per-segment values and keeps the global one; turning it back restores (only with the data)."""
        import numpy as np

        from CardiacLandmarksLib.core.config import data_root

        path = data_root() / "perfusion" / "mlperf" / "1424200_stress_mid.nii.gz"
        self.requireFiles(path)
        self.delayDisplay("Perfusion report on a first-pass series")
        volume = slicer.util.loadVolume(str(path))
        logic = CardiacLandmarksLogic()
        hub = logic.perfusion.run([volume])
        table = logic.perfusion.tableNode(hub)
        self.assertEqual(table.GetNumberOfRows(), 17)
        sectors = logic.perfusion.sectorNodes(hub)[0].GetSegmentation()
        names = sorted(sectors.GetNthSegment(i).GetName() for i in range(sectors.GetNumberOfSegments()))
        self.assertEqual([name.split()[0] for name in names], ["10", "11", "12", "7", "8", "9"])

        def values():
            report = logic.perfusion.report(hub)
            return ([row["stress"]["upslope_index"]["mean"] for row in report["segments"][6:12]],
                    report["global"]["stress"]["upslope_index"]["mean"])

        before, globalBefore = values()
        rvi = logic.perfusion.rviNodes(hub)[0]
        aRvi, center = np.array(rvi.GetNthControlPointPosition(0)), np.array(rvi.GetNthControlPointPosition(2))
        _right, _up, normal = logic.perfusion.displayAxesRas(hub, 0)
        v, n, angle = aRvi - center, np.asarray(normal, float), np.radians(60.0)
        turned = center + v * np.cos(angle) + np.cross(n, v) * np.sin(angle) + n * (n @ v) * (1 - np.cos(angle))
        rvi.SetNthControlPointPosition(0, *turned)
        after, globalAfter = values()
        self.assertAlmostEqual(globalAfter, globalBefore, places=9)  # same pixels, other sectors
        # counter-clockwise (seen from the apex) by one sector: the pixels of segment 8 become segment 7's,
        # 9's become 8's, ..., 7's become 12's (up to the few pixels on the sector borders)
        np.testing.assert_allclose(after, np.roll(before, -1), atol=0.02)
        self.assertTrue(max(abs(a - b) for a, b in zip(after, before)) > 0.02)
        rvi.SetNthControlPointPosition(0, *aRvi)
        restored, _ = values()
        np.testing.assert_allclose(restored, before, rtol=1e-9)
        self.delayDisplay("Perfusion test passed")
