"""The module panel's "Perfusion report (AHA 16 segments)" section.

A thin GUI over :class:`CardiacLandmarksModuleLib.perfusion.PerfusionLogic` (which holds all
the MRML work and is usable from the Python console). Its widgets come from
``Resources/UI/CardiacLandmarksPerfusion.ui`` (a second ``.ui`` file, loaded under the landmark
sections of ``CardiacLandmarks.ui``):

* check the perfusion series (one per slice level, stress and/or rest; names such as
  ``1424200_stress_mid`` tell the condition and level, as for the command line), optionally
  pick an arterial input (table node) and tick "Gd concentration" for quantitative MBF;
* "Run perfusion report" creates the AHA segment table (shown in the section), the bull's-eye
  (yellow slice view), and per series the AHA sector and LV segmentations and the editable
  RV insertion points (red slice view, in the series' own plane);
* dragging A-RVI or I-RVI re-anchors that series' sectors and updates the table and bull's-eye;
* "Export report" writes the command line's files (``report.json``, ``report.csv``,
  ``bullseye.png``, label maps, RVI markups) into the chosen folder.

Xue et al., "Automated inline analysis of myocardial perfusion MRI with deep learning",
Radiology: AI 2020; AHA segments after Cerqueira et al., Circulation 2002.
"""

from __future__ import annotations

import logging

import slicer
from slicer.i18n import tr as _

from CardiacLandmarksModuleLib.gui import errorsShown, exportToChosenFolder, installedOrExplained, loadSection

OUTPUT_DIRECTORY_SETTINGS_KEY = "CardiacLandmarks/perfusionOutputDirectory"

logger = logging.getLogger(__name__)


class PerfusionSection:
    """Builds the perfusion section into ``parentLayout`` and drives :class:`PerfusionLogic`.

    Args:
        parentLayout: the module panel's layout (``ScriptedLoadableModuleWidget.layout``).
        uiPath: path of ``CardiacLandmarksPerfusion.ui``.
        logicFactory: returns the ``PerfusionLogic`` to use (called on first run; the module
            logic's ``perfusion`` property, so console and panel share one).
    """

    def __init__(self, parentLayout, uiPath: str, logicFactory) -> None:
        self._logicFactory = logicFactory
        self.hub = None
        self.ui = loadSection(parentLayout, uiPath, "perfusionOutputDirectoryButton", OUTPUT_DIRECTORY_SETTINGS_KEY)
        self.ui.perfusionInputsComboBox.connect("checkedNodesChanged()", self.updateButtons)
        self.ui.perfusionRunButton.clicked.connect(self.onRun)
        self.ui.perfusionSeriesComboBox.currentIndexChanged.connect(self.onSeriesChanged)
        self.ui.perfusionExportButton.clicked.connect(self.onExport)
        self.updateButtons()

    @property
    def logic(self):
        return self._logicFactory()

    def checkedInputs(self) -> list:
        return list(self.ui.perfusionInputsComboBox.checkedNodes())

    def updateButtons(self) -> None:
        n = len(self.checkedInputs())
        self.ui.perfusionRunButton.enabled = n > 0
        self.ui.perfusionRunButton.toolTip = (
            _("Analyse {n} series: myocardium segmentation, RV insertion, AHA segments, per-segment perfusion").format(n=n)
            if n else _("Check at least one perfusion series (one per slice level, stress and/or rest)."))
        self.ui.perfusionExportButton.enabled = self.hub is not None

    def reset(self) -> None:
        """Forget the shown report (the scene is closing: its nodes go away)."""
        self.hub = None
        self.ui.perfusionTableView.setMRMLTableNode(None)
        self.ui.perfusionSeriesComboBox.clear()
        self.ui.perfusionSeriesComboBox.enabled = False
        self.ui.perfusionStatusLabel.text = ""
        self.updateButtons()

    def _onProgress(self, done: int, total: int) -> None:
        self.ui.perfusionStatusLabel.text = _("Analysed {done} of {total} series...").format(done=done, total=total)
        slicer.app.processEvents()

    def onRun(self) -> None:
        inputs = self.checkedInputs()
        if not inputs:
            return
        # the myocardium model needs torch and the bull's-eye matplotlib: offer to install them first, as Detect does
        if not installedOrExplained(self.ui.perfusionStatusLabel, _("The perfusion report")):
            return
        self.ui.perfusionStatusLabel.text = _("Analysing {n} series (the first run also loads the model)...").format(n=len(inputs))
        slicer.app.processEvents()
        aif = self.ui.perfusionAifSelector.currentNode()
        with errorsShown(_("Perfusion analysis failed."), waitCursor=True) as outcome:
            hub = self.logic.run(inputs, aifs=aif, concentration=bool(self.ui.perfusionConcentrationCheckBox.checked),
                                 progress=self._onProgress)
        if outcome.failed:
            self.ui.perfusionStatusLabel.text = _("Perfusion analysis failed: see the error message.")
            return
        self.setHub(hub)

    def setHub(self, hub) -> None:
        """Show a report (made by :meth:`PerfusionLogic.run`) in the section and the slice views."""
        logic = self.logic
        self.hub = hub
        self.ui.perfusionTableView.setMRMLTableNode(logic.tableNode(hub))
        combo = self.ui.perfusionSeriesComboBox
        combo.blockSignals(True)
        combo.clear()
        for an in logic.analyses(hub):
            combo.addItem(f"{an.name} ({an.condition}, {an.level})")
        combo.blockSignals(False)
        combo.enabled = combo.count > 0
        self.ui.perfusionStatusLabel.text = summaryText(logic.report(hub))
        self.onSeriesChanged(0)
        logic.showBullseye(hub, "Yellow")
        self.updateButtons()

    def onSeriesChanged(self, index: int) -> None:
        """Show series ``index`` (red view) with its sectors and RVI points; hide the other series' nodes."""
        if self.hub is None or index < 0:
            return
        logic = self.logic
        for k, group in enumerate(zip(logic.sectorNodes(self.hub), logic.segmentationNodes(self.hub), logic.rviNodes(self.hub))):
            for node in group:
                display = node.GetDisplayNode() if node is not None else None
                if display is not None:
                    display.SetVisibility(k == index)
        with errorsShown(_("Could not show the series."), waitCursor=True):
            logic.showInSliceView(self.hub, index, "Red")

    def onExport(self) -> None:
        if self.hub is not None:
            exportToChosenFolder(self.ui.perfusionOutputDirectoryButton, self.ui.perfusionStatusLabel, _("of the perfusion report"),
                                 lambda folder: self.logic.exportReport(self.hub, folder))


def _status_suffix(entry: dict) -> str:
    """`` [ok]`` or `` [review: check ...]`` for a report value (``{"status", "check"}``); a value whose status is
    missing reads ``review``: no number from the report passes as a plain number."""
    status = entry.get("status") or "review"
    check = entry.get("check") or ""
    return f" [{status}: {check}]" if status != "ok" and check else f" [{status}]"


def summaryText(report: dict) -> str:
    """Status text of a report (``report.json`` layout): one line per condition with the global value
    of the primary metric (MBF when quantified, else the upslope index), e.g.
    ``"stress: MBF 3.24 ± 0.76 ml/min/g [ok]"`` (a value that is not ok: ``[review: check ...]``), the reserve
    with its status when stress and rest both exist, and the number of warnings (e.g. an RV insertion found by the
    fallback: check it). Empty report -> ``""``."""
    glob = report.get("global", {})
    units = report.get("units", {})
    lines = []
    for condition in report.get("conditions", []):
        values = glob.get(condition, {})
        metric = "mbf" if "mbf" in values else ("upslope_index" if "upslope_index" in values else None)
        if metric is None or values[metric].get("mean") is None:
            continue
        stats = values[metric]
        label = _("MBF") if metric == "mbf" else _("upslope index")
        # series whose names say neither stress nor rest are pooled as "perfusion": said as the study says it
        shown = _("(stress/rest?)") if condition == "perfusion" else condition
        text = f"{shown}: {label} {stats['mean']:.2f}"
        if stats.get("sd") is not None:
            text += f" ± {stats['sd']:.2f}"
        lines.append(f"{text} {units.get(metric, '')}".rstrip() + _status_suffix(stats))
    reserve, trust = glob.get("reserve", {}), glob.get("reserve_trust", {})
    for key, label in (("mpr", _("MPR")), ("mpri", _("MPRI"))):
        if reserve.get(key) is not None:
            lines.append(f"{label} {reserve[key]:.2f}" + _status_suffix(trust.get(key, {})))
    warnings = report.get("warnings", [])
    if warnings:
        lines.append(_("{n} warning(s): see the report (export) or the Python console log").format(n=len(warnings)))
        for warning in warnings:
            logger.warning("%s", warning)
    return "\n".join(lines)
