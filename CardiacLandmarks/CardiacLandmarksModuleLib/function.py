"""Function section of the CardiacLandmarks module: LV/RV volumes, EF and LV mass in MRML.

MRML only (no Qt). :class:`FunctionLogic` calls the library's one analysis API
(``CardiacLandmarksLib.function.analyse_function``) and moves its results into the scene:

* the segmentation (RV cavity, LV myocardium, LV cavity) as ``vtkMRMLSegmentationNode`` with
  standard terminology (the ``TerminologyEntry`` tag, SNOMED CT codes of the 3D Slicer General
  Anatomy list: the same entries as the ``.seg.nrrd`` files of the command line,
  ``CardiacLandmarksLib.function.report.SEGMENTS``), names and colours. For a cine: a sequence of
  segmentations synchronised with the cine's sequence browser (its proxy follows the phase shown;
  changes made in Segment Editor are saved back into the sequence item); for two volumes: one
  segmentation node per volume;
* a ``vtkMRMLTableNode`` "Metric, Value, Unit, Status, Check" (``report.function_table``);
* for a cine, a ``vtkMRMLTableNode`` of the LV / RV cavity volume per phase and a
  ``vtkMRMLPlotChartNode`` "Cavity volumes over the cycle" with two plot series.

:meth:`FunctionLogic.recompute` reads the (edited) segmentation back into label arrays and calls
``CardiacLandmarksLib.function.recompute``: all numbers stay the library's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import slicer
import vtk

from CardiacLandmarksLib.core.errors import CardiacLandmarksError
from CardiacLandmarksLib.function import FunctionOptions, analyse_function
from CardiacLandmarksLib.function import recompute as recompute_result
from CardiacLandmarksLib.function.report import _CATEGORY, _CONTEXT, SEGMENTS, function_table

from . import nodes

logger = logging.getLogger(__name__)

#: segment IDs in the segmentation nodes, by label value
SEGMENT_IDS = {v: name.replace(" ", "_") for v, (name, _, _) in SEGMENTS.items()}
TABLE_COLUMNS = (("Metric", "vtkStringArray"), ("Value", "vtkDoubleArray"), ("Unit", "vtkStringArray"),
                 ("Status", "vtkStringArray"), ("Check", "vtkStringArray"))


class FunctionInputNodeError(CardiacLandmarksError):
    """The input nodes cannot be analysed (not a volume, sequence or sequence browser; ED given without ES)."""


def terminologyString(value: int) -> str:
    """Slicer ``TerminologyEntry`` tag text of label ``value`` (1 RV cavity, 2 LV myocardium, 3 LV cavity)."""
    _, code, _ = SEGMENTS[value]
    return (f"{_CONTEXT}~{'^'.join(_CATEGORY)}~{'^'.join(code)}~^^"
            f"~Anatomic codes - DICOM master list~^^~^^")


@dataclass
class FunctionHub:
    """Nodes and library result of one function analysis.

    Attributes:
        result: the library's ``FunctionResult``.
        segmentationNodes: ED/ES mode: one per input volume; cine: ``[proxy]`` of the segmentation sequence.
        referenceVolumes: volume node per input (cine: the image sequence's proxy).
        segmentationSequence / browser: cine only.
        tableNode, curveTableNode, chartNode: results (the last two for a cine only).
    """

    result: object
    segmentationNodes: list
    referenceVolumes: list
    tableNode: object
    segmentationSequence: object | None = None
    browser: object | None = None
    imageSequence: object | None = None
    curveTableNode: object | None = None
    chartNode: object | None = None
    plotSeries: list = field(default_factory=list)


def _fillSegmentation(segNode, labels_kji: np.ndarray, referenceVolume) -> None:
    segNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
    segmentation = segNode.GetSegmentation()
    for value, (name, _, colour) in SEGMENTS.items():
        sid = SEGMENT_IDS[value]
        if segmentation.GetSegment(sid) is None:
            segmentation.AddEmptySegment(sid, name, list(colour))
            segment = segmentation.GetSegment(sid)
            segment.SetTag("TerminologyEntry", terminologyString(value))
        slicer.util.updateSegmentBinaryLabelmapFromArray((labels_kji == value).astype(np.uint8), segNode, sid,
                                                         referenceVolume)


def labelsFromSegmentation(segNode, referenceVolume) -> np.ndarray:
    """Label array ``[k, j, i]`` (uint8, 1-3) of a segmentation node on the reference volume's grid.

    Where segments overlap after editing, the higher label wins (LV cavity over myocardium over RV)."""
    shape = slicer.util.arrayFromVolume(referenceVolume).shape
    out = np.zeros(shape, np.uint8)
    segmentation = segNode.GetSegmentation()
    for value in sorted(SEGMENTS):
        sid = SEGMENT_IDS[value]
        if segmentation.GetSegment(sid) is None:
            continue
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segNode, sid, referenceVolume)
        if mask is not None:
            out[np.asarray(mask) > 0] = value
    return out


class FunctionLogic:
    """Run the function analysis on MRML nodes and keep the results in the scene."""

    def __init__(self, scene=None) -> None:
        self.scene = scene or slicer.mrmlScene

    # -- inputs ---------------------------------------------------------------------------------------
    def _cineOf(self, node):
        """``(browser, imageSequence)`` when ``node`` is a cine (browser, sequence or proxy volume), else None."""
        if node.IsA("vtkMRMLSequenceBrowserNode"):
            return node, node.GetMasterSequenceNode()
        browsers = [b for b in self.scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")]
        for b in browsers:
            if node.IsA("vtkMRMLSequenceNode") and b.IsSynchronizedSequenceNode(node.GetID(), True):
                return b, node
            if node.IsA("vtkMRMLScalarVolumeNode"):
                seq = b.GetSequenceNode(node)
                if seq is not None and seq.GetNumberOfDataNodes() > 1:
                    return b, seq
        if node.IsA("vtkMRMLSequenceNode"):
            return None, node
        return None

    def subjectFromDicom(self, inputNode) -> tuple[dict, list[str]]:
        """Height and weight from the DICOM header of a series loaded through Slicer's DICOM module, as the command
        line reads them (``CardiacLandmarksLib.function.measurements.subject_from_header``: ``PatientSize`` in m,
        ``PatientWeight`` in kg; 0, absent or a pair no person has gives nothing).

        The series' instance UIDs are where the DICOM plugins put them: the subject hierarchy item of the loaded
        node (UID ``DICOMInstanceUID``, ``DICOMPlugin.addSeriesInSubjectHierarchy``) or the volume's
        ``DICOM.instanceUIDs`` attribute; for a cine the browser's or proxy's sequence is looked at too. The file
        of the first instance comes from ``slicer.dicomDatabase``.

        Returns:
            ``({"height_cm", "weight_kg", "source"}, [note])``, or ``({}, [])`` when the node did not come from the
            DICOM database or its header has no usable height and weight.
        """
        from types import SimpleNamespace

        from CardiacLandmarksLib.function.measurements import subject_from_header

        database = getattr(slicer, "dicomDatabase", None)
        if inputNode is None or database is None or not database.isOpen:
            return {}, []
        candidates = [inputNode]
        cine = self._cineOf(inputNode)
        if cine is not None:
            candidates += [n for n in cine if n is not None]
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        uidName = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMInstanceUIDName()
        for node in candidates:
            item = shNode.GetItemByDataNode(node) if shNode is not None else 0
            uids = (shNode.GetItemUID(item, uidName) if item else "") or (node.GetAttribute("DICOM.instanceUIDs") or "")
            path = next((database.fileForInstance(u) for u in uids.split() if u != "Unknown"), "")
            if not path:
                continue
            values = []
            for tag in ("0010,1020", "0010,1030"):  # PatientSize (m), PatientWeight (kg)
                try:
                    values.append(float(database.fileValue(path, tag).strip() or 0.0))
                except ValueError:
                    values.append(0.0)
            subject, notes = {}, []
            header = SimpleNamespace(metadata={"patient_size_m": values[0], "patient_weight_kg": values[1]})
            subject_from_header(subject, header, inputNode.GetName(), notes)
            return subject, notes
        return {}, []

    def run(self, inputNode, esNode=None, options: FunctionOptions | None = None, progress=None,
            model=None) -> FunctionHub:
        """Analyse a cine (sequence browser, volume sequence or its proxy volume) or two volumes
        (``inputNode`` at ED, ``esNode`` at ES).

        Raises:
            FunctionInputNodeError: unusable node types.
            CardiacLandmarksError: any library error (bad geometry, wrong view, ...).
        """
        if inputNode is None:
            raise FunctionInputNodeError("no input node")
        # a cine the module's reader found incomplete (nodes.applyReaderFacts): measured, every value review, as study
        opts = replace(options or FunctionOptions(), allow_incomplete=True)
        if esNode is not None:
            for n in (inputNode, esNode):
                if not n.IsA("vtkMRMLScalarVolumeNode"):
                    raise FunctionInputNodeError(f"{n.GetName()} is not a scalar volume")
            series = [nodes.seriesFromVolumeNode(inputNode), nodes.seriesFromVolumeNode(esNode)]
            result = analyse_function(tuple(series), opts, progress=progress, model=model)
            base = inputNode.GetName()
            segs = []
            for vol, lab, tag in ((inputNode, result.labels[0][0], "ED"), (esNode, result.labels[1][0], "ES")):
                seg = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                   self.scene.GenerateUniqueName(f"{vol.GetName()} function {tag}"))
                seg.CreateDefaultDisplayNodes()
                _fillSegmentation(seg, lab, vol)
                segs.append(seg)
            hub = FunctionHub(result, segs, [inputNode, esNode], self._newTable(f"{base} function"))
        else:
            cine = self._cineOf(inputNode)
            if cine is None:
                raise FunctionInputNodeError(f"{inputNode.GetName()} is a single volume, not a cine: give the ES volume "
                                             f"too, or a volume sequence")
            browser, imageSequence = cine
            series = nodes.seriesFromSequenceNode(imageSequence)
            result = analyse_function(series, opts, progress=progress, model=model)
            hub = self._cineNodes(result, browser, imageSequence)
        self.updateTables(hub)
        return hub

    def _newTable(self, name: str):
        table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", self.scene.GenerateUniqueName(name))
        for col, cls in TABLE_COLUMNS:
            table.AddColumn(getattr(vtk, cls)()).SetName(col)
        return table

    def _cineNodes(self, result, browser, imageSequence) -> FunctionHub:
        base = imageSequence.GetName()
        segSeq = self.scene.AddNewNodeByClass("vtkMRMLSequenceNode", self.scene.GenerateUniqueName(f"{base} function segmentation"))
        segSeq.SetIndexName(imageSequence.GetIndexName())
        segSeq.SetIndexUnit(imageSequence.GetIndexUnit())
        segSeq.SetIndexType(imageSequence.GetIndexType())
        for t in range(imageSequence.GetNumberOfDataNodes()):
            ref = imageSequence.GetNthDataNode(t)
            item = slicer.vtkMRMLSegmentationNode()
            self.scene.AddNode(item)  # the labelmap update needs a scene; removed again once copied
            _fillSegmentation(item, result.labels[0][t], ref)
            segSeq.SetDataNodeAtValue(item, imageSequence.GetNthIndexValue(t))
            self.scene.RemoveNode(item)
        hub = FunctionHub(result, [], [], self._newTable(f"{base} function"), segSeq, browser, imageSequence)
        if browser is None:
            browser = self.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{base} browser")
            browser.SetAndObserveMasterSequenceNodeID(imageSequence.GetID())
            hub.browser = browser
        browser.AddSynchronizedSequenceNodeID(segSeq.GetID())
        browser.SetSaveChanges(segSeq, True)
        slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
        proxy = browser.GetProxyNode(segSeq)
        proxy.SetName(f"{base} function segmentation")
        proxy.CreateDefaultDisplayNodes()
        hub.segmentationNodes = [proxy]
        hub.referenceVolumes = [browser.GetProxyNode(imageSequence)]
        # volume curve: table + plot chart
        curve = self.scene.AddNewNodeByClass("vtkMRMLTableNode", self.scene.GenerateUniqueName(f"{base} cavity volumes"))
        for col, cls in (("Phase", vtk.vtkIntArray), ("Time (ms)", vtk.vtkDoubleArray),
                         ("LV cavity (ml)", vtk.vtkDoubleArray), ("RV cavity (ml)", vtk.vtkDoubleArray)):
            curve.AddColumn(cls()).SetName(col)
        chart = self.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", self.scene.GenerateUniqueName(f"{base} cavity volumes chart"))
        chart.SetTitle("Cavity volumes over the cycle")
        chart.SetXAxisTitle("phase" if result.series[0].trigger_times is None else "trigger time (ms)")
        chart.SetYAxisTitle("volume (ml)")
        for column, value in (("LV cavity (ml)", 3), ("RV cavity (ml)", 1)):
            ps = self.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", self.scene.GenerateUniqueName(f"{base} {column}"))
            ps.SetAndObserveTableNodeID(curve.GetID())
            ps.SetXColumnName("Phase" if result.series[0].trigger_times is None else "Time (ms)")
            ps.SetYColumnName(column)
            ps.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
            ps.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
            ps.SetColor(*SEGMENTS[value][2])
            chart.AddAndObservePlotSeriesNodeID(ps.GetID())
            hub.plotSeries.append(ps)
        hub.curveTableNode, hub.chartNode = curve, chart
        return hub

    # -- outputs --------------------------------------------------------------------------------------
    def updateTables(self, hub: FunctionHub) -> None:
        """Refill the Metric/Value/Unit/Status/Check table (and the volume-curve table) from ``hub.result``."""
        rows = function_table(hub.result)
        table = hub.tableNode
        t = table.GetTable()
        t.SetNumberOfRows(0)
        cols = [t.GetColumnByName(c) for c, _ in TABLE_COLUMNS]
        for metric, value, unit, status, check in rows:
            cols[0].InsertNextValue(metric)
            cols[1].InsertNextValue(float("nan") if value is None else float(value))
            cols[2].InsertNextValue(unit)
            cols[3].InsertNextValue(status)
            cols[4].InsertNextValue(check)
        t.SetNumberOfRows(len(rows))
        t.Modified()
        table.Modified()
        r = hub.result
        if hub.curveTableNode is not None and r.curve is not None:
            ct = hub.curveTableNode.GetTable()
            ct.SetNumberOfRows(0)
            tt = r.series[0].trigger_times
            c = [ct.GetColumnByName(n) for n in ("Phase", "Time (ms)", "LV cavity (ml)", "RV cavity (ml)")]
            for p in range(len(r.curve["LV cavity"])):
                c[0].InsertNextValue(p)
                c[1].InsertNextValue(float(tt[p]) if tt is not None else float("nan"))
                c[2].InsertNextValue(float(r.curve["LV cavity"][p]))
                c[3].InsertNextValue(float(r.curve["RV cavity"][p]))
            ct.SetNumberOfRows(len(r.curve["LV cavity"]))
            ct.Modified()
            hub.curveTableNode.Modified()

    def tableRows(self, hub: FunctionHub) -> dict[str, tuple[float, str, str]]:
        """``{metric: (value, unit, status)}`` read back from the table node."""
        t = hub.tableNode.GetTable()
        out = {}
        for r in range(t.GetNumberOfRows()):
            out[t.GetColumnByName("Metric").GetValue(r)] = (t.GetColumnByName("Value").GetValue(r),
                                                           t.GetColumnByName("Unit").GetValue(r),
                                                           t.GetColumnByName("Status").GetValue(r))
        return out

    def currentLabels(self, hub: FunctionHub) -> list[np.ndarray]:
        """The segmentation in the scene as label arrays shaped like ``hub.result.labels``."""
        r = hub.result
        if hub.segmentationSequence is None:
            return [labelsFromSegmentation(seg, vol)[None] for seg, vol in zip(hub.segmentationNodes, hub.referenceVolumes)]
        seq, browser = hub.segmentationSequence, hub.browser
        shown = browser.GetSelectedItemNumber()
        phases = []
        for t in range(seq.GetNumberOfDataNodes()):
            ref = hub.imageSequence.GetNthDataNode(t)
            if t == shown:  # the proxy holds the latest edits of the phase on screen
                phases.append(labelsFromSegmentation(hub.segmentationNodes[0], hub.referenceVolumes[0]))
                continue
            item = seq.GetNthDataNode(t)
            phases.append(labelsFromSegmentation(item, ref))
        return [np.stack(phases).astype(np.uint8).reshape(r.labels[0].shape)]

    def export(self, hub: FunctionHub, outdir, if_exists: str = "backup") -> list:
        """Recompute from the segmentation in the scene, then write the command line's files
        (``function.json``, ``function.csv``, segmentations, PNGs) into ``outdir``; returns the paths.

        The folder (and the study it is an analysis of) is held while writing, as a run holds it.

        Raises:
            FolderHeldError: another program (a ``study`` or ``function`` run) is writing into the folder.
        """
        from pathlib import Path

        from CardiacLandmarksLib.io.outputs import edit_held

        self.recompute(hub)
        folder = Path(outdir)
        folder.mkdir(parents=True, exist_ok=True)
        with edit_held(folder, "Slicer function export"):
            return hub.result.write(folder, if_exists=if_exists)

    def recompute(self, hub: FunctionHub) -> FunctionHub:
        """Recompute every number from the segmentation as it is in the scene (after Segment Editor
        edits) with the library's functions, and refresh the tables and the plot."""
        recompute_result(hub.result, self.currentLabels(hub))
        self.updateTables(hub)
        return hub
