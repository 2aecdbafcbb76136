"""Perfusion report in Slicer: AHA 16-segment table, bull's-eye image, sector segmentations, editable RVI.

GUI-free logic (:class:`PerfusionLogic`) that the module's main logic delegates to. All numbers
come from ``CardiacLandmarksLib.perfusion.pipeline`` (the same code the ``cardiac-landmarks
perfusion`` command runs); this file only converts between MRML nodes and the library.

Inputs (one per perfusion slice, 2D+T), as Slicer holds them:

* a volume sequence (Slicer's DICOM import of a perfusion series), its browser, or the
  browser's proxy volume: one single-slice volume per frame (:func:`nodes.seriesFromSequenceNode`);
* a scalar volume whose third axis is time (a ``(time, y, x)`` NIfTI such as the ML-perfusion
  files, read by Slicer as a 3-D volume): the first file axis (Slicer's ``i``) is time when the
  library's rule says so (``timeAxis="auto"``, see ``CardiacLandmarksLib.io.image``), or as
  given (``"first"`` = ``i`` is time, ``"last"`` = ``k`` is time). Such an input also gets a
  volume sequence ``"<name> frames"`` (with a browser) holding the frames in the slice plane,
  so that the outputs can be shown over the image.

Outputs (all in the slice plane of each series, i.e. its reference frame's pixel grid;
RAS only here, the library works in LPS):

* hub: a ``vtkMRMLTextNode`` ``"<study> perfusion report"`` holding ``report.json`` (the CLI's
  :func:`perfusion_report.report_dict`), with references to everything below
  (:data:`TABLE_REFERENCE` ... :data:`FRAMES_REFERENCE`, the per-series ones indexed by series);
* ``"<study> AHA segments"``: ``vtkMRMLTableNode``, one row per AHA segment 1-16 plus a
  ``global`` row; per condition and metric the mean, sd (unit in the column title and column
  unit) and pixel count, then the stress/rest reserve (``MPRI``, ``MPR``) when both exist;
* ``"<study> bull's-eye"``: ``vtkMRMLVectorVolumeNode`` (RGB) of the report's bull's-eye PNG
  (:func:`perfusion_report.render_report_bullseye`), oriented so that an axial slice view shows
  it upright (IJK-to-RAS = diag(-1, -1, 1): column to the viewer's right, row downwards);
* per series ``"<series> AHA sectors"``: ``vtkMRMLSegmentationNode`` with one segment per AHA
  segment present on that slice (name ``"<n> <AHA name>"``, e.g. ``"8 mid anteroseptal"``,
  colours of the library's sector overlay PNG), imported from the library's sector map
  (``SliceAnalysis.segments``) in the series' plane; ``"<series> LV segmentation"``: segments
  ``LV myocardium`` and ``LV blood pool``. Both are those of the reference frame (the browser is
  set to it); on other frames the heart may sit a few pixels away (the library tracks that
  motion: the CLI's per-frame label maps);
* per series ``"<series> RVI"``: markups point list ``A-RVI``, ``I-RVI`` (editable) and ``C-LV``
  (locked), labels and descriptions as the library's ``.mrk.json`` (:mod:`.nodes`).

Recompute: moving ``A-RVI`` or ``I-RVI`` (observed point lists) or :meth:`PerfusionLogic.setRvi`
runs ``perfusion_pipeline.set_rvi`` for that series and rebuilds its sector segmentation, the
table, the bull's-eye and the hub's JSON; nothing else is re-run. The analyses live in memory:
a hub from a saved scene shows its results but must be run again before it can recompute.

Usable from the Python console::

    from CardiacLandmarksModuleLib.perfusion import PerfusionLogic
    logic = PerfusionLogic()
    hub = logic.run([getNode("1424200_stress_mid"), getNode("1424200_rest_mid")])
    logic.setRvi(hub, 0, aRviLps=[...])     # or drag A-RVI in a slice view
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer
import vtk

from CardiacLandmarksLib.core.errors import InvalidImageError, PerfusionInputError

from . import nodes

logger = logging.getLogger(__name__)

#: attribute marking a perfusion hub node
HUB_ATTRIBUTE = "CardiacLandmarks.PerfusionReport"
INPUT_REFERENCE = "perfusionInput"
TABLE_REFERENCE = "perfusionTable"
BULLSEYE_REFERENCE = "perfusionBullseye"
SECTORS_REFERENCE = "perfusionSectors"
MASK_REFERENCE = "perfusionSegmentation"
RVI_REFERENCE = "perfusionRvi"
FRAMES_REFERENCE = "perfusionFrames"  # display sequence of a time-as-axis volume input (or the input's own)
BROWSER_REFERENCE = "perfusionBrowser"

#: control points of an RVI point list, in order (C-LV is locked: it is the blood-pool centroid)
RVI_POINTS = ("A-RVI", "I-RVI", "C-LV")
MASK_SEGMENTS = {1: ("LV myocardium", (0.95, 0.8, 0.1)), 2: ("LV blood pool", (0.9, 0.25, 0.25))}
_LPS_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class _SeriesState:
    analysis: object  # perfusion_pipeline.SliceAnalysis
    inputID: str
    rviID: str = ""
    sectorsID: str = ""
    maskID: str = ""


@dataclass
class _HubState:
    series: list[_SeriesState]
    modelCard: dict = field(default_factory=dict)
    modelSha: str = ""
    summary: dict = field(default_factory=dict)
    bullseyeStale: bool = False
    #: ``(series name, error)`` of the inputs not analysed (named in the report, as the CLI's report.json)
    failed: list = field(default_factory=list)
    #: the condition of each of them that had one (``PerfusionResult.failed_conditions``)
    failedConditions: dict = field(default_factory=dict)


def _sequencesLogic():
    return slicer.modules.sequences.logic()


def resolveInput(node):
    """``(volumeNode, sequenceNode, browserNode)`` of an input node.

    A sequence, a browser or the proxy volume of a browser stands for the whole sequence; a plain
    scalar volume has neither sequence nor browser.

    Raises:
        InvalidImageError: None, an empty sequence, or another kind of node.
    """
    if node is None:
        raise InvalidImageError("no input node given")
    if node.IsA("vtkMRMLSequenceBrowserNode"):
        sequence = node.GetMasterSequenceNode()
        if sequence is None:
            raise InvalidImageError(f"sequence browser {node.GetName()!r} has no sequence")
        return node.GetProxyNode(sequence), sequence, node
    if node.IsA("vtkMRMLSequenceNode"):
        if node.GetNumberOfDataNodes() == 0:
            raise InvalidImageError(f"sequence {node.GetName()!r} is empty")
        browser = _sequencesLogic().GetFirstBrowserNodeForSequenceNode(node)
        return (browser.GetProxyNode(node) if browser is not None else None), node, browser
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InvalidImageError(f"{node.GetName()!r} ({node.GetClassName()}) is not an image volume or sequence")
    browser = _sequencesLogic().GetFirstBrowserNodeForProxyNode(node)
    if browser is not None:
        sequence = browser.GetSequenceNode(node)
        if sequence is not None and sequence.GetNumberOfDataNodes() > 1:
            return node, sequence, browser
    return node, None, None


def fileAxisOrder(volumeNode, arr: np.ndarray, direction: np.ndarray, origin: np.ndarray,
                  spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxels and LPS geometry of a volume in the axis order of the file it was read from.

    Slicer's image reader reverses an axis of a file whose direction matrix is left-handed (e.g.
    the ML-perfusion NIfTI files), keeping the physical geometry. For images without a real
    patient orientation the library defines the display side by the file's own array order, so
    that order is restored here (from the file header of the node's storage node) to see the
    same image as the command line. Nothing changes when there is no readable file, or the file
    has another size or non-parallel axes.

    Args:
        arr: ``[k, j, i]`` voxels of the node; direction ``(3, 3)`` LPS columns; origin LPS of
            voxel (0, 0, 0); spacing ``(si, sj, sk)``.

    Returns:
        ``(arr, direction, origin)``, axes reversed where the file's direction is opposite.
    """
    storage = volumeNode.GetStorageNode() if hasattr(volumeNode, "GetStorageNode") else None
    fileName = storage.GetFileName() if storage is not None else None
    if not fileName or not Path(fileName).is_file():
        return arr, direction, origin
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(fileName))
        reader.ReadImageInformation()
    except RuntimeError:
        return arr, direction, origin
    if reader.GetDimension() != 3 or tuple(reader.GetSize()) != (arr.shape[2], arr.shape[1], arr.shape[0]):
        return arr, direction, origin
    fileDirection = np.asarray(reader.GetDirection(), float).reshape(3, 3)
    dots = np.sum(fileDirection * direction, axis=0)
    if not np.all(np.abs(np.abs(dots) - 1.0) < 1e-3):
        return arr, direction, origin
    arr, direction, origin = arr, direction.copy(), origin.copy()
    for axis in range(3):
        if dots[axis] < 0:
            n = arr.shape[2 - axis]
            origin = origin + direction[:, axis] * spacing[axis] * (n - 1)
            direction[:, axis] = -direction[:, axis]
            arr = np.flip(arr, axis=2 - axis)
    return np.ascontiguousarray(arr), direction, origin


def seriesFromTimeVolume(volumeNode, timeAxis: str = "auto"):
    """2D+T :class:`CMRSeries` (``pixels [t, 1, j, i]``) from a scalar volume with time on one axis.

    Same layouts and geometry as the library's file loader (``io_image.load_image``):
    ``"first"``: Slicer's ``i`` axis (the first file axis) is time, the frame's columns are the
    ``k`` axis and its rows the ``j`` axis (a ``(time, rows, columns)`` array written by nibabel);
    ``"last"``: ``k`` is time; ``"auto"``: ``"first"`` when that axis is the shortest and much
    coarser than the others (the library's rule), else a single frame; a stack of several slices
    is refused, as by the command line.

    Raises:
        PerfusionInputError: a multi-slice stack under ``"auto"``.
        InvalidImageError, MissingGeometryError (see :func:`nodes.seriesFromVolumeNode`).
    """
    from CardiacLandmarksLib.core.series import CMRSeries
    from CardiacLandmarksLib.io import image as io_image
    from CardiacLandmarksLib.io.common import finalize_series

    vol = nodes.seriesFromVolumeNode(volumeNode)  # [1, k, j, i], LPS geometry of the 3-D grid
    sp3 = tuple(float(s) for s in vol.spacing)
    arr, d3, o3 = fileAxisOrder(volumeNode, vol.pixels[0], np.asarray(vol.direction, float),
                                np.asarray(vol.slice_origins[0], float), sp3)
    size3 = (arr.shape[2], arr.shape[1], arr.shape[0])
    if timeAxis not in ("auto", "first", "last"):
        raise ValueError(f"timeAxis must be 'auto', 'first' or 'last', not {timeAxis!r}")
    mode = timeAxis
    if mode == "auto":
        mode = io_image.resolve_time_axis("auto", size3, sp3)  # same rule as the file loader
        if mode == "none":
            if arr.shape[0] > 1:  # as the command line: a stack of slices is not one slice over time
                raise PerfusionInputError(
                    f"{volumeNode.GetName()}: a perfusion input must be one slice over time; this volume reads as "
                    f"a stack of {arr.shape[0]} slices. Give each slice as its own series, load a 2D+T file as a "
                    f"sequence, or, if its third axis is time, pass timeAxis='last' (Python console).")
            mode = "single"
    if mode == "single":
        return nodes.seriesFromVolumeNode(volumeNode)
    if mode == "first":
        pixels = np.transpose(arr, (2, 1, 0))[:, None]  # [k, j, i=t] -> [t, 1, j, k]
        col, row = d3[:, 2], d3[:, 1]
        direction = np.column_stack([col, row, np.cross(col, row)])
        spacing = (sp3[2], sp3[1], sp3[0])
    else:
        pixels = arr[:, None]
        direction = np.column_stack([d3[:, 0], d3[:, 1], np.cross(d3[:, 0], d3[:, 1])])
        spacing = sp3
    known, _reason = io_image.orientation_known(d3, o3, sp3, size3)
    if volumeNode.GetAttribute("DICOM.instanceUIDs"):
        known = True
    series = CMRSeries(pixels=np.ascontiguousarray(pixels), spacing=spacing, direction=direction,
                       slice_origins=o3[None, :], orientation_known=bool(known), source=volumeNode.GetName(),
                       description=volumeNode.GetName(),
                       metadata={"mrmlNodeID": volumeNode.GetID(), "layout": f"time-{mode}"})
    return finalize_series(series)


def curveFromNode(value) -> np.ndarray | None:
    """An AIF curve from a numpy array / list, a file path, or a ``vtkMRMLTableNode`` (its first
    numeric column); None stays None.

    Raises:
        PerfusionInputError: a table without a numeric column.
    """
    if value is None:
        return None
    if isinstance(value, str | Path):
        from CardiacLandmarksLib.io.curves import read_curve

        return read_curve(value)
    if hasattr(value, "IsA") and value.IsA("vtkMRMLTableNode"):
        table = value.GetTable()
        for c in range(table.GetNumberOfColumns()):
            column = table.GetColumn(c)
            if column.IsNumeric():
                return np.array([column.GetTuple1(r) for r in range(table.GetNumberOfRows())], float)
        raise PerfusionInputError(f"table {value.GetName()!r} has no numeric column for the AIF")
    return np.asarray(value, float).ravel()


def _sectorColour(segment: int) -> tuple[float, float, float]:
    from CardiacLandmarksLib.perfusion import bullseye

    return tuple(float(c) for c in bullseye._sector_colour(segment))


class PerfusionLogic:
    """Perfusion analysis of MRML inputs and its report nodes; recomputes when an RVI point moves.

    Args:
        model: a loaded ``perfusion_seg.PerfusionModel`` (default: the bundled one, loaded on first use).
        device: ``"cpu"`` or ``"cuda"`` for the segmentation model.
        useSaxModel: try the SAX landmark model for the RV insertion points (as the CLI does).
    """

    def __init__(self, model=None, device: str = "cpu", useSaxModel: bool = True) -> None:
        self._model = model
        self.device = device
        self.useSaxModel = useSaxModel
        self._states: dict[str, _HubState] = {}
        self._observations: list[tuple[object, int]] = []
        self._updating = False
        self._dragging: set[str] = set()  # point lists being dragged in a view
        self._sceneTag = None
        if getattr(slicer, "mrmlScene", None) is not None:
            # node IDs are reused by the next scene: forget everything when the scene closes
            self._sceneTag = slicer.mrmlScene.AddObserver(slicer.mrmlScene.StartCloseEvent,
                                                          lambda caller, event: self.detach())

    # ------------------------------------------------------------------ input

    @property
    def model(self):
        if self._model is None:
            from CardiacLandmarksLib.perfusion import segmentation as perfusion_seg

            self._model = perfusion_seg.load_model(device=self.device)
        return self._model

    def seriesFromNode(self, node, timeAxis: str = "auto"):
        """``(series, volumeNode, sequenceNode, browserNode)`` of an input (see module docstring)."""
        volume, sequence, browser = resolveInput(node)
        if sequence is not None:
            transform = volume.GetParentTransformNode() if volume is not None else None
            name = volume.GetName() if volume is not None else sequence.GetName()
            return nodes.seriesFromSequenceNode(sequence, transform, description=name), volume, sequence, browser
        return seriesFromTimeVolume(volume, timeAxis), volume, None, None

    # ------------------------------------------------------------------ run

    def run(self, inputNodes: Sequence, conditions=None, levels=None, aifs=None, concentration: bool = False,
            dtS: float | None = None, mbfMaps=None, timeAxis: str = "auto", name: str | None = None,
            progress: Callable[[int, int], None] | None = None):
        """Analyse perfusion series and show the report (see module docstring).

        Args:
            inputNodes: one node per slice (volume sequence / browser / proxy volume, or a volume
                with time on one axis); a sequence of several slices is analysed slice by slice
                (``<name>_slice<k>``, each with its own frames sequence; ``pp.slice_series``).
            conditions: ``"stress"`` / ``"rest"`` / None per input or once for all (None: from the
                node name, as the CLI does from the file name).
            levels: ``"base"`` / ``"mid"`` / ``"apex"`` / None per input or once (None: from the
                name, else the slice position).
            aifs: AIF per input (numpy array, file path, table node) for Fermi MBF, or None.
            concentration: the inputs hold contrast concentration (mmol/L) (needed for Fermi MBF).
            dtS: frame interval in s (default: from the trigger times).
            mbfMaps: precomputed MBF map per input (numpy ``[j, i]`` or a one-slice volume node), or None.
            timeAxis: which axis of a volume input is time (:func:`seriesFromTimeVolume`).
            name: study name for the node names (default: common prefix of the series names).
            progress: ``progress(done, total)`` after each series.

        Returns:
            The hub ``vtkMRMLTextNode``.

        Raises:
            CardiacLandmarksLib errors (bad input, no LV, bad AIF), as the CLI.
        """
        from CardiacLandmarksLib.perfusion import pipeline as pp
        from CardiacLandmarksLib.perfusion import report as pr

        inputNodes = list(inputNodes)
        if not inputNodes:
            raise PerfusionInputError("no perfusion series given")
        n = len(inputNodes)
        conds, lvls = pp.per_input(conditions, n, "a condition"), pp.per_input(levels, n, "a level")
        aifList, mbfList = pp.per_input(aifs, n, "an AIF"), pp.per_input(mbfMaps, n, "an MBF map")
        scene = slicer.mrmlScene
        prepared, used = [], set()
        for k, node in enumerate(inputNodes):
            series, volume, sequence, browser = self.seriesFromNode(node, timeAxis)
            seriesName = pp.unique_name((volume or sequence).GetName(), used)
            parts = pp.slice_series(series, seriesName)  # several slices over time: one input per slice, as the CLI
            pp.refuse_one_slice_options(seriesName, len(parts), [what for what, v in (
                ("a level", lvls[k]), ("an MBF map", mbfList[k])) if v is not None])
            mbf = mbfList[k]
            if mbf is not None and hasattr(mbf, "IsA"):
                mbf = nodes.seriesFromVolumeNode(mbf).pixels[0, 0]
            for partName, part in parts:
                inp = pp.SeriesInput(series=part, name=partName, condition=conds[k], level=lvls[k],
                                     aif=curveFromNode(aifList[k]), concentration=concentration, dt_s=dtS, mbf_map=mbf)
                whole = len(parts) == 1  # a slice of a multi-slice sequence gets its own frames sequence
                prepared.append((inp, node, sequence if whole else None, browser if whole else None))
        result = pp.analyse_perfusion([inp for inp, *_ in prepared], self.model, use_sax_model=self.useSaxModel,
                                      progress=progress)
        analyses = result.analyses
        for failedName, message in result.failed:  # the other series are shown; this one is named
            logging.error("CardiacLandmarks perfusion: %s not analysed: %s", failedName, message)

        study = name or pr.study_label([a.name for a in analyses]) or "perfusion"
        hub = scene.AddNewNodeByClass("vtkMRMLTextNode", scene.GenerateUniqueName(f"{study} perfusion report"))
        hub.SetAttribute(HUB_ATTRIBUTE, "1")
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{study} AHA segments"))
        hub.SetNodeReferenceID(TABLE_REFERENCE, table.GetID())
        bullseyeNode = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode",
                                               scene.GenerateUniqueName(f"{study} bull's-eye"))
        bullseyeNode.SetIJKToRASDirections(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
        hub.SetNodeReferenceID(BULLSEYE_REFERENCE, bullseyeNode.GetID())
        model = self.model
        state = _HubState(series=[], modelCard=dict(getattr(model, "card", {}) or {}),
                          modelSha=str(getattr(model, "sha256", "")), failed=list(result.failed),
                          failedConditions=dict(result.failed_conditions))
        byName = {inp.name: (node, sequence, browser) for inp, node, sequence, browser in prepared}
        for an in analyses:  # each analysis with its own input (a series that failed has none)
            node, sequence, browser = byName[an.name]
            hub.AddNodeReferenceID(INPUT_REFERENCE, node.GetID())
            if sequence is None:
                sequence, browser = self._framesSequence(an)
            elif browser is None:  # a sequence without a browser: give it one, to show the frames
                browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{sequence.GetName()} browser")
                browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
                _sequencesLogic().UpdateProxyNodesFromSequences(browser)
            browser.SetSelectedItemNumber(int(an.seg.reference_frame))
            hub.AddNodeReferenceID(FRAMES_REFERENCE, sequence.GetID())
            hub.AddNodeReferenceID(BROWSER_REFERENCE, browser.GetID())
            ss = _SeriesState(an, node.GetID())
            mask = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(f"{an.name} LV segmentation"))
            mask.CreateDefaultDisplayNodes()
            self._fillSegmentation(mask, an, np.asarray(an.seg.reference_mask), MASK_SEGMENTS)
            sectors = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(f"{an.name} AHA sectors"))
            sectors.CreateDefaultDisplayNodes()
            rvi = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", scene.GenerateUniqueName(f"{an.name} RVI"))
            rvi.CreateDefaultDisplayNodes()
            nodes.styleDisplayNode(rvi.GetDisplayNode())
            ss.maskID, ss.sectorsID, ss.rviID = mask.GetID(), sectors.GetID(), rvi.GetID()
            hub.AddNodeReferenceID(MASK_REFERENCE, mask.GetID())
            hub.AddNodeReferenceID(SECTORS_REFERENCE, sectors.GetID())
            hub.AddNodeReferenceID(RVI_REFERENCE, rvi.GetID())
            state.series.append(ss)
        self._states[hub.GetID()] = state
        for k in range(len(state.series)):
            self._showSeries(hub, k)
        self._updateReport(hub)
        for ss in state.series:
            self._observe(scene.GetNodeByID(ss.rviID))
        return hub

    def _framesSequence(self, an):
        """A volume sequence + browser of the frames in the slice plane (for a volume input)."""
        scene = slicer.mrmlScene
        sequence, browser, _proxy = nodes.addSequenceFromSeries(scene, an.series,
                                                                scene.GenerateUniqueName(f"{an.name} frames"),
                                                                _sequencesLogic())
        return sequence, browser

    # ------------------------------------------------------------------ accessors

    @staticmethod
    def isHub(node) -> bool:
        return node is not None and node.IsA("vtkMRMLTextNode") and node.GetAttribute(HUB_ATTRIBUTE) == "1"

    def analyses(self, hub) -> list:
        """The ``SliceAnalysis`` of each series (in input order).

        Raises:
            PerfusionInputError: the hub was not computed in this session (run again).
        """
        return [ss.analysis for ss in self._state(hub).series]

    def summary(self, hub) -> dict:
        """``perfusion_pipeline.summarise`` of the current analyses."""
        return self._state(hub).summary

    def report(self, hub) -> dict:
        """The report dictionary held by the hub (``report.json`` of the CLI)."""
        return json.loads(hub.GetText() or "{}")

    @staticmethod
    def _refs(hub, role: str) -> list:
        return [hub.GetNthNodeReference(role, k) for k in range(hub.GetNumberOfNodeReferences(role))]

    def tableNode(self, hub):
        return hub.GetNodeReference(TABLE_REFERENCE)

    def bullseyeNode(self, hub):
        return hub.GetNodeReference(BULLSEYE_REFERENCE)

    def sectorNodes(self, hub) -> list:
        return self._refs(hub, SECTORS_REFERENCE)

    def segmentationNodes(self, hub) -> list:
        return self._refs(hub, MASK_REFERENCE)

    def rviNodes(self, hub) -> list:
        return self._refs(hub, RVI_REFERENCE)

    def framesSequences(self, hub) -> list:
        """Per series: the volume sequence of its frames (the input's own, or made for a volume input)."""
        return self._refs(hub, FRAMES_REFERENCE)

    def browserNodes(self, hub) -> list:
        """Per series: the sequence browser of its frames (set to the reference frame by :meth:`run`)."""
        return self._refs(hub, BROWSER_REFERENCE)

    def _state(self, hub) -> _HubState:
        state = self._states.get(hub.GetID()) if hub is not None else None
        if state is None:
            raise PerfusionInputError("this perfusion report was not computed in this session; run it again to edit it")
        return state

    # ------------------------------------------------------------------ display

    def displayAxesRas(self, hub, seriesIndex: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Screen axes ``(right, up, normal)`` (RAS unit vectors) of the standard display of a series.

        Same rule as the landmark results of the main module: with a known patient orientation
        anterior is up and the patient's left is screen right (RV on the viewer's left); without
        it the frames as stored (column ``i`` to the right, row ``j`` downwards), which is what the
        command line's ``_sectors.png`` shows. Slicer's own sagittal/axial views of an image
        without orientation may show it mirrored; use :meth:`showInSliceView`.
        """
        from CardiacLandmarksLib.core import geometry

        series = self.analyses(hub)[seriesIndex].series
        return geometry.display_axes_ras(series.direction, series.orientation_known)

    def showInSliceView(self, hub, seriesIndex: int = 0, layoutName: str = "Red", fieldOfViewMm: float = 130.0) -> None:
        """Show series ``seriesIndex`` in a slice view: its frames as background, in its own plane with
        the standard display axes (:meth:`displayAxesRas`), centred on C-LV, at the reference frame."""
        from CardiacLandmarksLib.core import geometry

        an = self.analyses(hub)[seriesIndex]
        center = geometry.lps_to_ras(an.series.ijk_to_lps(np.array([*an.center_ij, 0.0])))
        right, up, normal = self.displayAxesRas(hub, seriesIndex)
        sequence = self.framesSequences(hub)[seriesIndex]
        browser = _sequencesLogic().GetFirstBrowserNodeForSequenceNode(sequence) if sequence is not None else None
        proxy = browser.GetProxyNode(sequence) if browser is not None else None
        if browser is not None:
            browser.SetSelectedItemNumber(int(an.seg.reference_frame))
        nodes.showInSliceView(layoutName, right, up, normal, center, proxy, fieldOfViewMm)

    def showBullseye(self, hub, layoutName: str = "Yellow") -> None:
        """Show the report's bull's-eye image alone in the slice view ``layoutName``, axial (upright), fitted."""
        node = self.bullseyeNode(hub)
        if node is None or node.GetImageData() is None:
            return
        bounds = [0.0] * 6
        node.GetRASBounds(bounds)
        width, height = bounds[1] - bounds[0], bounds[3] - bounds[2]
        for composite in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode"):
            if composite.GetLayoutName() == layoutName:
                composite.SetBackgroundVolumeID(node.GetID())
                composite.SetForegroundVolumeID(None)
                composite.SetLabelVolumeID(None)
        for sliceNode in slicer.util.getNodesByClass("vtkMRMLSliceNode"):
            if sliceNode.GetLayoutName() != layoutName:
                continue
            sliceNode.SetOrientationToAxial()
            sliceNode.JumpSliceByCentering(0.5 * (bounds[0] + bounds[1]), 0.5 * (bounds[2] + bounds[3]),
                                           0.5 * (bounds[4] + bounds[5]))
            dims = sliceNode.GetDimensions()
            aspect = dims[1] / dims[0] if dims[0] else 1.0
            fovX = max(width, height / aspect if aspect else height)
            sliceNode.SetFieldOfView(fovX, fovX * aspect, sliceNode.GetFieldOfView()[2])

    def exportReport(self, hub, outputDirectory) -> list:
        """Write the command line's report files for the current analyses (RVI corrections included):
        ``report.json``, ``report.csv``, ``bullseye.png`` and, per series, the segmentation and AHA
        label maps (input geometry) and the RVI ``.mrk.json``, then ``run.json`` (as the command line:
        ``CardiacLandmarksLib.io.outputs``; files of an earlier export that change are kept in
        ``backup-<time>/``).

        Returns:
            The paths written (``pathlib.Path``), ``run.json`` last.

        Raises:
            PerfusionInputError: the hub was not computed in this session. OutputPathError: the folder
            cannot be created or written, or another program's run is writing into it.
        """
        from CardiacLandmarksLib.io.outputs import finish_run, prepare_output_dir, release_folder
        from CardiacLandmarksLib.perfusion import report as pr

        state = self._state(hub)
        analyses = self.analyses(hub)
        sources = [a.series.source for a in analyses if a.series.source]
        # held against another program's run into the folder (e.g. a command-line study) until run.json is written
        outdir = prepare_output_dir(outputDirectory, inputs=sources, hold="Slicer perfusion export")
        try:
            outdir.begin()
            written = pr.write_report(analyses, state.summary, outdir.path, state.modelCard, state.modelSha,
                                      failed=state.failed)
        except BaseException:
            release_folder(outdir.path)  # Slicer lives on: a failed export must not keep the folder from others
            raise
        record = finish_run(outdir, sources, {"front_end": "Slicer perfusion panel"}, written,
                            models=[{"name": (state.modelCard or {}).get("name", ""),
                                     "version": (state.modelCard or {}).get("version", ""), "sha256": state.modelSha}],
                            warnings=[f"{a.name}: {w}" for a in analyses for w in a.warnings], command="perfusion")
        for message in record.messages:
            logging.info("CardiacLandmarks perfusion export: %s", message)
        return [*written, record.path]

    # ------------------------------------------------------------------ RVI editing

    def setRvi(self, hub, seriesIndex: int, aRviLps, iRviLps=None, renderBullseye: bool = True) -> None:
        """Move the RV insertion points of one series and recompute its sectors, the table and the bull's-eye.

        Args:
            hub: the report node returned by :meth:`run`.
            seriesIndex: index of the series (input order).
            aRviLps: A-RVI in LPS mm ``(3,)``; projected onto the slice plane.
            iRviLps: I-RVI in LPS mm, or None (no I-RVI; the sectors only need A-RVI).
            renderBullseye: False skips re-rendering the bull's-eye (~0.3 s; done while a point
                is dragged, and caught up when the drag ends).

        Raises:
            PerfusionInputError (unknown hub / index), DegenerateGeometryError (A-RVI on C-LV).
        """
        from CardiacLandmarksLib.perfusion import pipeline as pp

        state = self._state(hub)
        if not 0 <= seriesIndex < len(state.series):
            raise PerfusionInputError(f"series index {seriesIndex} out of range (0-{len(state.series) - 1})")
        an = state.series[seriesIndex].analysis
        s = an.series
        aIj = s.lps_to_ijk(np.asarray(aRviLps, float))[:2]
        iIj = None if iRviLps is None else s.lps_to_ijk(np.asarray(iRviLps, float))[:2]
        pp.set_rvi(an, aIj, iIj, source="user", frame=an.seg.reference_frame)
        self._showSeries(hub, seriesIndex)
        self._updateReport(hub, renderBullseye)

    def _observe(self, pointList) -> None:
        for event in (slicer.vtkMRMLMarkupsNode.PointModifiedEvent, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                      slicer.vtkMRMLMarkupsNode.PointPositionUndefinedEvent):
            tag = pointList.AddObserver(event, self._onPointListModified)
            self._observations.append((pointList, tag))
        for event, method in ((slicer.vtkMRMLMarkupsNode.PointStartInteractionEvent, self._onDragStart),
                              (slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent, self._onDragEnd)):
            tag = pointList.AddObserver(event, method)
            self._observations.append((pointList, tag))

    def _onDragStart(self, caller, event) -> None:
        self._dragging.add(caller.GetID())

    def _onDragEnd(self, caller, event) -> None:
        """The bull's-eye is re-rendered once when a drag ends, not on every mouse move."""
        self._dragging.discard(caller.GetID())
        for hubID, state in self._states.items():
            if state.bullseyeStale and any(ss.rviID == caller.GetID() for ss in state.series):
                hub = caller.GetScene().GetNodeByID(hubID)
                if hub is not None:
                    self._updateReport(hub)

    def detach(self, hub=None) -> None:
        """Stop observing the point lists (of one hub, or all) and forget their analyses."""
        ids = set(self._states) if hub is None else {hub.GetID()}
        rviIDs = {ss.rviID for h in ids if h in self._states for ss in self._states[h].series}
        keep = []
        for obj, tag in self._observations:
            if obj.GetID() in rviIDs:
                obj.RemoveObserver(tag)
            else:
                keep.append((obj, tag))
        self._observations = keep
        for h in ids:
            self._states.pop(h, None)

    def _onPointListModified(self, caller, event) -> None:
        if self._updating:
            return
        for hubID, state in self._states.items():
            for k, ss in enumerate(state.series):
                if ss.rviID != caller.GetID():
                    continue
                hub = caller.GetScene().GetNodeByID(hubID)
                if hub is None:
                    return
                points = {p.name: p for p in nodes.readPointList(caller, RVI_POINTS)}
                a, i = points["A-RVI"], points["I-RVI"]
                if not a.defined:
                    return  # nothing to anchor on until A-RVI is placed again
                an = ss.analysis
                new = (a.position, i.position if i.defined else None)
                if self._samePoints(an, *new):
                    return
                try:
                    self.setRvi(hub, k, *new, renderBullseye=caller.GetID() not in self._dragging)
                except Exception as exc:  # keep Slicer responsive; the point list shows the old state
                    logger.error("perfusion: could not recompute %s after the RVI moved: %s", an.name, exc)
                return

    @staticmethod
    def _samePoints(an, aLps, iLps) -> bool:
        s = an.series

        def ij(p):
            return None if p is None else s.lps_to_ijk(np.asarray(p, float))[:2]

        a, i = ij(aLps), ij(iLps)
        if an.a_rvi_ij is None or not np.allclose(a, an.a_rvi_ij, atol=1e-6):
            return False
        if (i is None) != (an.i_rvi_ij is None):
            return False
        return i is None or bool(np.allclose(i, an.i_rvi_ij, atol=1e-6))

    # ------------------------------------------------------------------ node content

    def _showSeries(self, hub, k: int) -> None:
        """Point list and sector segmentation of series ``k`` from its analysis."""
        from CardiacLandmarksLib.perfusion import aha
        from CardiacLandmarksLib.perfusion import report as pr

        ss = self._state(hub).series[k]
        an = ss.analysis
        scene = hub.GetScene()
        rvi = scene.GetNodeByID(ss.rviID)
        self._updating = True
        try:
            if rvi is not None:
                byName = {lm.name: lm for lm in pr.rvi_landmarks(an).landmarks}
                nodes.writePointList(rvi, RVI_POINTS, [byName[n] for n in RVI_POINTS])
                rvi.SetNthControlPointLocked(RVI_POINTS.index("C-LV"), True)
            sectors = scene.GetNodeByID(ss.sectorsID)
            if sectors is not None:
                seg = np.zeros(an.seg.reference_mask.shape, np.uint8) if an.segments is None else an.segments
                present = sorted(int(v) for v in np.unique(seg) if v > 0)
                self._fillSegmentation(sectors, an, np.asarray(seg, np.uint8),
                                       {s: (f"{s} {aha.SEGMENT_NAMES[s]}", _sectorColour(s)) for s in present})
        finally:
            self._updating = False

    @staticmethod
    def _fillSegmentation(segNode, an, labels: np.ndarray, names: dict) -> None:
        """Replace the segments of ``segNode`` by the labels ``[j, i]`` in the series' slice plane."""
        scene = segNode.GetScene() or slicer.mrmlScene
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__perfusion_labels__")
        try:
            labelmap.SetIJKToRASMatrix(nodes.arrayToMatrix(nodes.ijkToRasFromSeries(an.series)))
            slicer.util.updateVolumeFromArray(labelmap, np.ascontiguousarray(labels[None].astype(np.uint8)))
            wasModifying = segNode.StartModify()
            segNode.GetSegmentation().RemoveAllSegments()
            segNode.SetReferenceImageGeometryParameterFromVolumeNode(labelmap)
            if np.any(labels > 0) and not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
                    labelmap, segNode, ""):
                raise InvalidImageError(f"could not import the labels of {an.name} into {segNode.GetName()!r}")
            segmentation = segNode.GetSegmentation()
            for n in range(segmentation.GetNumberOfSegments()):
                segment = segmentation.GetNthSegment(n)
                value = int(segment.GetLabelValue())
                if value in names:
                    segment.SetName(names[value][0])
                    segment.SetColor(*names[value][1])
            segNode.EndModify(wasModifying)
        finally:
            scene.RemoveNode(labelmap)

    def _updateReport(self, hub, renderBullseye: bool = True) -> None:
        """Summary, hub JSON, table and (unless told not to) bull's-eye from the current analyses."""
        from CardiacLandmarksLib.perfusion import pipeline as pp
        from CardiacLandmarksLib.perfusion import report as pr

        state = self._state(hub)
        analyses = [ss.analysis for ss in state.series]
        state.summary = pp.summarise(analyses, state.failed, state.failedConditions)  # as the analysis did
        report = pr.report_dict(analyses, state.summary, state.modelCard, state.modelSha, state.failed)
        hub.SetText(json.dumps(report, indent=1, allow_nan=False))
        table = self.tableNode(hub)
        if table is not None:
            fillSegmentTable(table, report)
        image = self.bullseyeNode(hub)
        state.bullseyeStale = not renderBullseye
        if image is not None and renderBullseye:
            with tempfile.TemporaryDirectory() as tmp:
                png = pr.render_report_bullseye(state.summary, Path(tmp) / "bullseye.png",
                                                pr.study_label([a.name for a in analyses]), analyses)
                setRgbImage(image, png)


# ---------------------------------------------------------------------- helpers (also used by tests)


def tableColumns(report: dict) -> list[tuple[str, str, str, str]]:
    """``(key, title, unit, kind)`` of the AHA table columns for a report (kind: ``int``/``str``/``float``).

    Keys: ``Segment``, ``Name``, ``Territory``, ``Level``, then per condition and metric
    ``"<condition> <metric> mean|sd|n"``, then ``"reserve <mpri|mpr>"``, then ``Status`` (ok | review |
    n/a with what to check).
    """
    cols = [("Segment", "Segment", "", "str"), ("Name", "Name", "", "str"), ("Territory", "Territory", "", "str"),
            ("Level", "Level", "", "str")]
    units = report.get("units", {})
    labels = report.get("metric_labels", {})
    for c in report.get("conditions", []):
        for m in units:
            u = units[m]
            cols.append((f"{c} {m} mean", f"{c} {labels.get(m, m)} mean [{u}]", u, "float"))
            cols.append((f"{c} {m} sd", f"{c} {labels.get(m, m)} sd [{u}]", u, "float"))
            cols.append((f"{c} {m} n", f"{c} {m} pixels", "", "int"))
    reserves = sorted({k for r in report.get("segments", []) for k in r.get("reserve", {})}
                      | set(report.get("global", {}).get("reserve", {})))
    for key in reserves:
        title = {"mpri": "MPRI (stress/rest upslope index)", "mpr": "MPR (stress/rest MBF)"}.get(key, key)
        cols.append((f"reserve {key}", f"{title} [ratio]", "ratio", "float"))
    cols.append(("Status", "Status", "", "str"))
    return cols


def fillSegmentTable(tableNode, report: dict) -> None:
    """One row per AHA segment 1-16 and a ``global`` row (columns :func:`tableColumns`); missing = NaN / -1."""
    cols = tableColumns(report)
    table = vtk.vtkTable()
    arrays = {}
    for key, _title, _unit, kind in cols:
        array = {"str": vtk.vtkStringArray, "int": vtk.vtkIntArray, "float": vtk.vtkDoubleArray}[kind]()
        array.SetName(key)
        table.AddColumn(array)
        arrays[key] = array
    rows = [(str(r["segment"]), r["name"], r["territory"], r["level"], r) for r in report["segments"]]
    rows.append(("global", "global", "", "", report["global"]))
    for seg, name, territory, level, entry in rows:
        for key, value in (("Segment", seg), ("Name", name), ("Territory", territory), ("Level", level)):
            arrays[key].InsertNextValue(value)
        for key, _title, _unit, kind in cols[4:]:
            parts = key.split(" ")
            if key == "Status":  # the report row's worst status and its caveats (perfusion_report.row_status)
                status = entry.get("status", "")
                arrays[key].InsertNextValue(status + (f": {entry['check']}" if entry.get("check") else ""))
                continue
            if parts[0] == "reserve":
                v = entry.get("reserve", {}).get(parts[1])
            else:
                st = entry.get(parts[0], {}).get(parts[1], {})
                v = st.get({"mean": "mean", "sd": "sd", "n": "n_pixels"}[parts[2]])
            if kind == "int":
                arrays[key].InsertNextValue(-1 if v is None else int(v))
            else:
                arrays[key].InsertNextValue(float("nan") if v is None else float(v))
    wasModifying = tableNode.StartModify()
    tableNode.SetAndObserveTable(table)
    for key, title, unit, _kind in cols:
        tableNode.SetColumnTitle(key, title)
        if unit:
            tableNode.SetColumnUnitLabel(key, unit)
    tableNode.SetUseColumnTitleAsColumnHeader(True)
    tableNode.SetLocked(True)
    tableNode.Modified()
    tableNode.EndModify(wasModifying)


def setRgbImage(volumeNode, pngPath: str | Path) -> None:
    """Put a PNG (row 0 = top) into a ``vtkMRMLVectorVolumeNode`` as uint8 RGB ``[1, rows, columns, 3]``."""
    import matplotlib.image as mpimg

    rgba = mpimg.imread(str(pngPath))
    if rgba.dtype != np.uint8:
        rgba = np.clip(np.rint(rgba * 255.0), 0, 255).astype(np.uint8)
    rgb = np.ascontiguousarray(rgba[..., :3][None])
    slicer.util.updateVolumeFromArray(volumeNode, rgb)
    if volumeNode.GetDisplayNode() is None and volumeNode.GetScene() is not None:
        volumeNode.CreateDefaultDisplayNodes()
