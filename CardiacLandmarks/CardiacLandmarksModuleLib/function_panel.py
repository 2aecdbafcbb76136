"""The module panel's "LV/RV function" section (issue 17).

A thin GUI over :class:`CardiacLandmarksModuleLib.function.FunctionLogic` (the MRML work, usable from the
Python console). Widgets come from ``Resources/UI/CardiacLandmarksFunction.ui``:

* choose a SAX cine (volume sequence or its proxy volume), or an ED volume and an ES volume; optionally
  height and weight for body-surface-area indexing (filled from the DICOM header, PatientSize and PatientWeight,
  for a series loaded through the DICOM module when both boxes are empty);
* "Compute function" segments RV cavity, LV myocardium and LV cavity with the SAX network's segmentation
  head and fills the Metric/Value/Unit/Status table (and, for a cine, the cavity-volume plot);
* edit the segmentation in Segment Editor, then "Recompute" (every number from the library's functions);
* "Export function" writes the command line's files into the chosen folder.

Volumes by slice summation and mass = 1.05 g/ml x myocardial volume (MESA atlas pipeline; SCMR 2020
post-processing recommendations).
"""

from __future__ import annotations

import logging

import slicer
from slicer.i18n import tr as _

from CardiacLandmarksModuleLib.gui import errorsShown, exportToChosenFolder, installedOrExplained, loadSection

OUTPUT_DIRECTORY_SETTINGS_KEY = "CardiacLandmarks/functionOutputDirectory"

logger = logging.getLogger(__name__)


class FunctionSection:
    """Builds the function section into ``parentLayout`` and drives :class:`FunctionLogic`.

    Args:
        parentLayout: the module panel's layout.
        uiPath: path of ``CardiacLandmarksFunction.ui``.
        logicFactory: returns the ``FunctionLogic`` to use (the module logic's ``function`` property).
    """

    def __init__(self, parentLayout, uiPath: str, logicFactory) -> None:
        self._logicFactory = logicFactory
        self.hub = None
        self.ui = loadSection(parentLayout, uiPath, "functionOutputDirectoryButton", OUTPUT_DIRECTORY_SETTINGS_KEY)
        self.ui.functionInputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self.ui.functionInputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        self.ui.functionRunButton.clicked.connect(self.onRun)
        self.ui.functionRecomputeButton.clicked.connect(self.onRecompute)
        self.ui.functionExportButton.clicked.connect(self.onExport)
        self.updateButtons()

    @property
    def logic(self):
        return self._logicFactory()

    def updateButtons(self, *_args) -> None:
        hasInput = self.ui.functionInputSelector.currentNode() is not None
        self.ui.functionRunButton.enabled = hasInput
        self.ui.functionRunButton.toolTip = (
            _("Segment and compute EDV, ESV, SV, EF and LV mass") if hasInput
            else _("Choose a short-axis cine, or an ED volume and an ES volume."))
        self.ui.functionRecomputeButton.enabled = self.hub is not None
        self.ui.functionExportButton.enabled = self.hub is not None

    def onInputChanged(self, node=None) -> None:
        """A series from the DICOM database whose header holds the patient's height and weight fills the two boxes
        (when both are empty: a value the user typed is kept), and the status line says where they came from."""
        if node is None or self.ui.functionHeightSpinBox.value or self.ui.functionWeightSpinBox.value:
            return
        subject, notes = self.logic.subjectFromDicom(node)
        if subject.get("height_cm") and subject.get("weight_kg"):
            self.ui.functionHeightSpinBox.value = subject["height_cm"]
            self.ui.functionWeightSpinBox.value = subject["weight_kg"]
        if notes:
            self.ui.functionStatusLabel.text = notes[0]

    def reset(self) -> None:
        """Forget the shown result (the scene is closing)."""
        self.hub = None
        self.ui.functionTableView.setMRMLTableNode(None)
        self.ui.functionStatusLabel.text = ""
        self.updateButtons()

    def options(self):
        from CardiacLandmarksLib.function import FunctionOptions
        from CardiacLandmarksLib.function.measurements import indexing_pair

        # one of the two alone: not indexed (the library's rule, as for a cohort row)
        height, weight, _note = indexing_pair(float(self.ui.functionHeightSpinBox.value) or None,
                                              float(self.ui.functionWeightSpinBox.value) or None)
        return FunctionOptions(height_cm=height, weight_kg=weight)

    def _onProgress(self, done: int, total: int) -> None:
        self.ui.functionStatusLabel.text = _("Segmented {done} of {total} images...").format(done=done, total=total)
        slicer.app.processEvents()

    def onRun(self) -> None:
        inputNode = self.ui.functionInputSelector.currentNode()
        if inputNode is None:
            return
        if not installedOrExplained(self.ui.functionStatusLabel, _("The function analysis")):
            return
        self.ui.functionStatusLabel.text = _("Segmenting (the first run also loads the model)...")
        slicer.app.processEvents()
        with errorsShown(_("Function analysis failed."), waitCursor=True) as outcome:
            hub = self.logic.run(inputNode, self.ui.functionEsSelector.currentNode(), self.options(),
                                 progress=self._onProgress)
        if outcome.failed:
            self.ui.functionStatusLabel.text = _("Function analysis failed: see the error message.")
            return
        self.setHub(hub)

    def setHub(self, hub) -> None:
        """Show a result (made by :meth:`FunctionLogic.run`) in the section."""
        self.hub = hub
        self.ui.functionTableView.setMRMLTableNode(hub.tableNode)
        self.ui.functionStatusLabel.text = summaryText(self.logic.tableRows(hub))
        self.updateButtons()

    def onRecompute(self) -> None:
        if self.hub is None:
            return
        with errorsShown(_("Recompute failed."), waitCursor=True) as outcome:
            self.logic.recompute(self.hub)
        if not outcome.failed:
            self.ui.functionStatusLabel.text = summaryText(self.logic.tableRows(self.hub))

    def onExport(self) -> None:
        if self.hub is not None:
            exportToChosenFolder(self.ui.functionOutputDirectoryButton, self.ui.functionStatusLabel, _("of the function report"),
                                 lambda folder: self.logic.export(self.hub, folder))


def summaryText(rows: dict) -> str:
    """One line with LV EF, EDV and ESV and their status, from ``FunctionLogic.tableRows`` (``{metric: (value,
    unit, status)}``); a value that is not ``ok`` shows its status instead of passing as a plain number."""
    parts = []
    for metric in ("LV EF", "LV EDV", "LV ESV", "LV mass", "RV EF"):
        if metric not in rows:
            continue
        value, unit, status = rows[metric]
        text = f"{metric} {value:.1f} {unit}" if value == value else f"{metric} n/a"
        if status != "ok":
            text += f" ({status})"
        parts.append(text)
    return ", ".join(parts)
