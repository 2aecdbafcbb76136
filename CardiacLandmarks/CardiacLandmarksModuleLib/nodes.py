"""MRML nodes <-> ``CardiacLandmarksLib`` types: the Slicer boundary of the extension.

Images
    A ``vtkMRMLScalarVolumeNode`` (one phase) or a ``vtkMRMLSequenceNode`` of scalar volumes
    (a cine: one volume per phase, as Slicer's DICOM "volume sequence" import makes it)
    becomes a :class:`CardiacLandmarksLib.core.series.CMRSeries`. The voxels come from
    ``slicer.util.arrayFromVolume`` (numpy ``[k, j, i]``, VTK-owned memory, copied here) and
    the geometry from the node's IJK-to-RAS matrix (a linear parent transform included):
    spacing = column norms, direction = normalised columns, origin = translation, all
    converted from Slicer's RAS to the library's LPS (x and y negated).

Landmarks
    One markups point list per slice (and, for a cine, per phase: the items of a markups
    sequence) holds the landmarks of the view (SAX: ``A-RVI``, ``I-RVI``, ``C-LV``) as a fixed
    number of control points, in that order. Each control point follows the conventions of
    ``CardiacLandmarksLib.io.markups`` (the command line's ``.mrk.json``), so a point list saved
    by Slicer reads back with ``markups.read_markups``:

    * label ``"<name> s<slice> p<phase>"`` (``markups.control_point_label``);
    * found / absent: ``positionStatus`` defined / undefined (an absent point can be placed);
    * selected = found and (high confidence or corrected); low-confidence points are
      unselected and drawn in the display node's "unselected" colour (orange);
    * description = the library's text (``"low confidence 0.42; model position LPS ..."``,
      ``"absent"``, ``"placed by user"``), which tells a moved point from the model's;
    * confidence in [0, 1] as the control point values of the static measurement
      :data:`CONFIDENCE` (1 for corrected points, 0 for absent ones), which survives Slicer's
      own ``.mrk.json`` storage.

Tables
    Measurements (:class:`CardiacLandmarksLib.core.landmarks.Measurement`) fill a
    ``vtkMRMLTableNode`` with the columns of :data:`TABLE_COLUMNS`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import slicer
import vtk
from slicer.i18n import tr as _

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, InvalidImageError, MissingGeometryError
from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet, Measurement, input_sources
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.io.common import finalize_series

logger = logging.getLogger(__name__)

#: name of the control-point measurement holding the confidence in [0, 1]
CONFIDENCE = "confidence"
#: columns of the measurements table: (name, VTK array class)
TABLE_COLUMNS = (
    ("Measurement", "vtkStringArray"),
    ("Slice", "vtkIntArray"),
    ("Phase", "vtkIntArray"),
    ("Value", "vtkDoubleArray"),
    ("Unit", "vtkStringArray"),
    ("Status", "vtkStringArray"),
)
#: colours of the point lists: selected = high confidence or corrected, unselected = low confidence
HIGH_CONFIDENCE_COLOR = (0.15, 0.85, 0.25)
LOW_CONFIDENCE_COLOR = (1.0, 0.55, 0.0)

_LPS_RAS = np.diag([-1.0, -1.0, 1.0])  # the same matrix maps RAS -> LPS and LPS -> RAS


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------


def matrixToArray(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    """``vtkMatrix4x4`` -> numpy ``(4, 4)`` float (a copy)."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def arrayToMatrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    """numpy ``(4, 4)`` -> new ``vtkMatrix4x4``."""
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(array[r, c]))
    return m


def ijkToRasArray(volumeNode, transformNode=None) -> np.ndarray:
    """IJK-to-world (RAS) matrix ``(4, 4)`` of a volume node, its linear parent transform applied.

    Args:
        volumeNode: any ``vtkMRMLVolumeNode``.
        transformNode: the transform to apply instead of the node's own parent transform (used
            for the volumes inside a sequence, whose proxy node carries the transform).

    Raises:
        MissingGeometryError: the volume is under a non-linear transform (harden it first).
    """
    m = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(m)
    ijkToRas = matrixToArray(m)
    parent = transformNode if transformNode is not None else volumeNode.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise MissingGeometryError(
                f"volume {volumeNode.GetName()!r} is under a non-linear transform; harden the transform first")
        toWorld = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(toWorld)
        ijkToRas = matrixToArray(toWorld) @ ijkToRas
    return ijkToRas


def geometryFromIjkToRas(ijkToRas: np.ndarray, nSlices: int) -> tuple[tuple[float, float, float], np.ndarray, np.ndarray]:
    """Library geometry (LPS) of a regular voxel grid given by its IJK-to-RAS matrix.

    Args:
        ijkToRas: ``(4, 4)`` IJK -> RAS mm.
        nSlices: number of slices K.

    Returns:
        ``(spacing, direction, slice_origins)``: spacing ``(si, sj, sk)`` mm; direction ``(3, 3)``
        LPS unit columns of the i, j, k axes; slice_origins ``(K, 3)`` LPS mm of voxel (0, 0, k).

    Raises:
        MissingGeometryError: a zero-length or non-finite axis.
    """
    lin = np.asarray(ijkToRas, dtype=float)[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise MissingGeometryError(f"IJK-to-RAS matrix has a degenerate axis (spacing {spacing.tolist()})")
    direction = _LPS_RAS @ (lin / spacing)
    origin = _LPS_RAS @ np.asarray(ijkToRas, dtype=float)[:3, 3]
    sliceOrigins = origin + np.arange(nSlices)[:, None] * (spacing[2] * direction[:, 2])
    return (float(spacing[0]), float(spacing[1]), float(spacing[2])), direction, sliceOrigins


def ijkToRasFromSeries(series: CMRSeries) -> np.ndarray:
    """IJK-to-RAS ``(4, 4)`` of a series, for showing it as a Slicer volume
    (``CardiacLandmarksLib.core.geometry.ijk_to_ras_matrix``).

    Raises:
        MissingGeometryError: the slices are not evenly spaced along a straight line (a Slicer
            volume is a regular grid; such a stack has to be resampled first).
    """
    from CardiacLandmarksLib.core.geometry import ijk_to_ras_matrix

    return ijk_to_ras_matrix(series.direction, series.spacing, series.slice_origins,
                             series.source or series.description)


def _voxelsOf(volumeNode) -> np.ndarray:
    if volumeNode is None or not volumeNode.IsA("vtkMRMLScalarVolumeNode"):
        cls = volumeNode.GetClassName() if volumeNode is not None else "nothing"
        raise InvalidImageError(f"expected a scalar volume, got {cls}")
    if volumeNode.GetImageData() is None:
        raise InvalidImageError(f"volume {volumeNode.GetName()!r} has no image data")
    voxels = slicer.util.arrayFromVolume(volumeNode)
    if voxels.ndim != 3:
        raise InvalidImageError(f"volume {volumeNode.GetName()!r} has {voxels.ndim - 3} extra components; "
                                "a single-component (grey-level) image is needed")
    return np.array(voxels, dtype=np.float32)  # copy: VTK owns the original memory


def _orientationKnown(node, series: CMRSeries) -> bool:
    """False for an image whose affine is a placeholder (no patient orientation, e.g. the ACDC NIfTI
    copies), by the same rule as the library's image loader; a volume loaded from DICOM
    (``DICOM.instanceUIDs`` attribute) always has a real orientation."""
    from CardiacLandmarksLib.io import image as io_image

    if node is not None and node.GetAttribute("DICOM.instanceUIDs"):
        return True
    rule = io_image.orientation_known
    size = (series.pixels.shape[3], series.pixels.shape[2], series.pixels.shape[1])
    known, _reason = rule(series.direction, series.slice_origins[0], tuple(series.spacing), size)
    return bool(known)


def seriesFromVolumeNode(volumeNode, description: str | None = None) -> CMRSeries:
    """One-phase :class:`CMRSeries` (``pixels`` ``[1, k, j, i]``) from a scalar volume node.

    View and sequence type are guessed from ``description`` (default: the node name, which
    for DICOM data is "<series number>: <series description>") by the library.

    Raises:
        InvalidImageError: not a single-component scalar volume, no image data, NaN voxels.
        MissingGeometryError: degenerate matrix or a non-linear parent transform.
    """
    voxels = _voxelsOf(volumeNode)
    spacing, direction, origins = geometryFromIjkToRas(ijkToRasArray(volumeNode), voxels.shape[0])
    series = CMRSeries(
        pixels=voxels[None],
        spacing=spacing,
        direction=direction,
        slice_origins=origins,
        source=volumeNode.GetName(),
        description=description if description is not None else volumeNode.GetName(),
        metadata={"mrmlNodeID": volumeNode.GetID()},
    )
    series.orientation_known = _orientationKnown(volumeNode, series)
    return applyReaderFacts(volumeNode, finalize_series(series))


#: attributes that Slicer's DICOM module (MultiVolumeImporter's plugin, which loads a cine as a volume sequence) sets on
#: the sequence node: the frames' files in frame order, comma-separated, and the frame-identifying tag's values
MULTIVOLUME_FILES = "MultiVolume.FrameFileList"
MULTIVOLUME_LABELS = "MultiVolume.FrameLabels"
MULTIVOLUME_TAG = "MultiVolume.FrameIdentifyingDICOMTagName"


def triggerTimesOf(sequenceNode) -> np.ndarray | None:
    """Index values of a sequence as trigger times in ms, or None when the index is not a time.

    A numeric index with unit ``ms`` (this module's own DICOM loading) or ``s`` counts as time. Slicer's DICOM module
    indexes a cine by frame number (index name and unit empty) and keeps the TriggerTime of each frame in
    ``MultiVolume.FrameLabels`` (``MultiVolume.FrameIdentifyingDICOMTagName`` ``TriggerTime``): those are used then.
    """
    labels = _multiVolumeTriggerTimes(sequenceNode)
    if labels is not None:
        return labels
    if sequenceNode.GetIndexType() != sequenceNode.NumericIndex:
        return None
    scale = {"ms": 1.0, "msec": 1.0, "s": 1000.0, "sec": 1000.0}.get((sequenceNode.GetIndexUnit() or "").strip().lower())
    if scale is None:
        return None
    try:
        values = [float(sequenceNode.GetNthIndexValue(n)) * scale for n in range(sequenceNode.GetNumberOfDataNodes())]
    except ValueError:
        return None
    return np.asarray(values, dtype=float)


def _multiVolumeTriggerTimes(sequenceNode) -> np.ndarray | None:
    """The frames' TriggerTime (ms) that Slicer's DICOM module kept on a cine it loaded (see :func:`triggerTimesOf`),
    or None (another frame tag, another loader, or not one number per frame)."""
    if (sequenceNode.GetAttribute(MULTIVOLUME_TAG) or "") != "TriggerTime":
        return None
    try:
        values = [float(v) for v in (sequenceNode.GetAttribute(MULTIVOLUME_LABELS) or "").split(",") if v.strip()]
    except ValueError:
        return None
    if len(values) != sequenceNode.GetNumberOfDataNodes():
        return None
    return np.asarray(values, dtype=float)


def seriesFromSequenceNode(sequenceNode, transformNode=None, description: str | None = None) -> CMRSeries:
    """Multi-phase :class:`CMRSeries` (``pixels`` ``[t, k, j, i]``) from a sequence of scalar volumes.

    Every phase must have the same voxel grid (shape and IJK-to-RAS); the index values become
    ``trigger_times`` when they are times (see :func:`triggerTimesOf`).

    Args:
        sequenceNode: ``vtkMRMLSequenceNode`` whose data nodes are scalar volumes.
        transformNode: parent transform of the sequence's proxy volume, if any.
        description: text for view/sequence guessing (default: the sequence node name).

    Raises:
        InvalidImageError: empty sequence, non-volume items, phases of different shape or
            geometry, NaN voxels.
        MissingGeometryError: degenerate matrix or non-linear transform.
    """
    n = sequenceNode.GetNumberOfDataNodes()
    if n == 0:
        raise InvalidImageError(f"sequence {sequenceNode.GetName()!r} is empty")
    phases, reference = [], None
    for t in range(n):
        item = sequenceNode.GetNthDataNode(t)
        voxels = _voxelsOf(item)
        ijkToRas = ijkToRasArray(item, transformNode)
        if reference is None:
            reference = (voxels.shape, ijkToRas, item)
        elif voxels.shape != reference[0] or not np.allclose(ijkToRas, reference[1], atol=1e-4):
            raise InvalidImageError(
                f"phase {t} of sequence {sequenceNode.GetName()!r} has another voxel grid than phase 0 "
                f"({voxels.shape} vs {reference[0]}); all phases of a cine must share one geometry")
        phases.append(voxels)
    spacing, direction, origins = geometryFromIjkToRas(reference[1], reference[0][0])
    series = CMRSeries(
        pixels=np.stack(phases),
        spacing=spacing,
        direction=direction,
        slice_origins=origins,
        trigger_times=triggerTimesOf(sequenceNode),
        source=sequenceNode.GetName(),
        description=description if description is not None else sequenceNode.GetName(),
        metadata={"mrmlNodeID": sequenceNode.GetID()},
    )
    series.orientation_known = _orientationKnown(reference[2], series)
    return applyReaderFacts(sequenceNode, finalize_series(series))


#: node attribute with what the library's reader knew of a series the module loaded (``logic.loadDicomFolder``) and
#: an image node does not hold: the sequence the study routing decided (an LGE stack told by its inversion time) and
#: the grid's completeness (slices or phases missing, phases cut), which make values ``review``
READER_FACTS_ATTRIBUTE = "CardiacLandmarks.ReaderFacts"


def setReaderFacts(node, series: CMRSeries) -> None:
    """Keep on ``node`` (JSON in :data:`READER_FACTS_ATTRIBUTE`) what :func:`applyReaderFacts` gives back to a
    series rebuilt from it: ``series.sequence`` and ``metadata["completeness"]``."""
    import json

    meta = series.metadata or {}
    facts = {"sequence": series.sequence, "completeness": meta.get("completeness")}
    node.SetAttribute(READER_FACTS_ATTRIBUTE, json.dumps(facts, default=lambda v: v.tolist()))


def applyReaderFacts(node, series: CMRSeries) -> CMRSeries:
    """``series`` (rebuilt from ``node``'s voxels) with the reader's facts that :func:`setReaderFacts` kept on the
    node: its sequence and its grid's completeness (so an incomplete series read by the module is doubted as the
    command line doubts it). A cine that Slicer's DICOM module loaded carries no such facts but its files
    (``MultiVolume.FrameFileList``): their headers give the completeness (:func:`dicomModuleFacts`). A node with
    neither (Add Data) gives ``series`` unchanged."""
    import json

    text = node.GetAttribute(READER_FACTS_ATTRIBUTE) if node is not None else None
    if not text:
        return dicomModuleFacts(node, series)
    facts = json.loads(text)
    if facts.get("sequence"):
        series.sequence = facts["sequence"]
    if facts.get("completeness"):
        series.metadata = dict(series.metadata or {}, completeness=facts["completeness"])
    return series


def dicomModuleFacts(node, series: CMRSeries) -> CMRSeries:
    """``series`` with ``metadata["completeness"]`` read from the headers of the files that Slicer's DICOM module
    loaded it from (``MultiVolume.FrameFileList`` on a cine's sequence node;
    :func:`CardiacLandmarksLib.io.dicom.completeness_of_files`): slice positions or phases missing make its values
    review, as on the command line. Unchanged when the node has no file list, or the files cannot be read any more
    (a moved DICOM database: said in the log, nothing is doubted that was not seen)."""
    text = node.GetAttribute(MULTIVOLUME_FILES) if node is not None else None
    if not text:
        return series
    from CardiacLandmarksLib.core.errors import CardiacLandmarksError
    from CardiacLandmarksLib.io.dicom import completeness_of_files

    files = [f for f in text.split(",") if f.strip()]
    try:
        completeness = completeness_of_files(files, node.GetName())
    except (CardiacLandmarksError, OSError) as exc:
        logging.getLogger(__name__).info("%s: the completeness of its DICOM files could not be read (%s)",
                                         node.GetName(), exc)
        return series
    series.metadata = dict(series.metadata or {}, completeness=completeness)
    return series


def newVolumeNodeFromSeries(series: CMRSeries, phase: int = 0):
    """A new ``vtkMRMLScalarVolumeNode`` (not added to any scene) holding one phase of ``series``."""
    volume = slicer.vtkMRMLScalarVolumeNode()
    volume.SetIJKToRASMatrix(arrayToMatrix(ijkToRasFromSeries(series)))
    slicer.util.updateVolumeFromArray(volume, np.ascontiguousarray(series.pixels[phase]))
    return volume


def addVolumeFromSeries(scene, series: CMRSeries, name: str, phase: int = 0):
    """Add one phase of ``series`` to ``scene`` as a scalar volume node (with display node)."""
    volume = newVolumeNodeFromSeries(series, phase)
    volume.SetName(name)
    scene.AddNode(volume)
    volume.CreateDefaultDisplayNodes()
    return volume


def addSequenceFromSeries(scene, series: CMRSeries, name: str, sequencesLogic):
    """Add a cine to ``scene`` as a volume sequence and its browser, as Slicer's DICOM import does, but indexed by
    the trigger time (``time``, ``ms``) when known, else the phase number (Slicer's DICOM module indexes by frame
    number and keeps the trigger times in ``MultiVolume.FrameLabels``).

    Returns:
        ``(sequenceNode, browserNode, proxyVolumeNode)``.
    """
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    if series.trigger_times is not None:
        sequence.SetIndexName("time")
        sequence.SetIndexUnit("ms")
        values = [f"{float(v):g}" for v in series.trigger_times]
    else:
        sequence.SetIndexName("phase")
        sequence.SetIndexUnit("")
        values = [str(t) for t in range(series.n_phases)]
    if len(set(values)) != len(values):
        values = [str(t) for t in range(series.n_phases)]
    sequence.SetIndexType(sequence.NumericIndex)
    for t, value in enumerate(values):
        sequence.SetDataNodeAtValue(newVolumeNodeFromSeries(series, t), value)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    sequencesLogic.UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    if proxy is not None:
        proxy.SetName(name)
        proxy.CreateDefaultDisplayNodes()
    return sequence, browser, proxy


# ---------------------------------------------------------------------------------------------
# landmarks <-> markups point lists
# ---------------------------------------------------------------------------------------------


@dataclass
class PointState:
    """What a point list holds about one landmark.

    Attributes:
        name: landmark name (given by the control point's index in the list, see
            :func:`readPointList`; labels may have been edited by the user).
        defined: True when the control point has a position (``positionStatus`` defined).
        position: LPS mm ``(3,)``; NaN when undefined.
        confidence: stored :data:`CONFIDENCE` value (NaN when the list has none).
        selected: control point selection state (unselected = low confidence).
        description: control point description.
    """

    name: str
    defined: bool
    position: np.ndarray
    confidence: float
    selected: bool
    description: str


def pointLabel(name: str, k: int, t: int) -> str:
    """Label of a landmark's control point (the library's ``"<name> s<slice> p<phase>"``)."""
    from CardiacLandmarksLib.io import markups

    return markups.control_point_label(name, k, t)


def pointDescription(lm: Landmark) -> str:
    """Description of a landmark's control point, in the library's wording (see ``markups``)."""
    from CardiacLandmarksLib.io import markups

    describe = markups.control_point_description
    return describe(lm)


def _measurementValues(pointList, name: str, count: int) -> vtk.vtkDoubleArray:
    """The control-point value array of the static measurement ``name``, created/resized as needed."""
    measurement = pointList.GetMeasurement(name)
    if measurement is None:
        measurement = slicer.vtkMRMLStaticMeasurement()
        measurement.SetName(name)
        measurement.SetUnits("")
        measurement.SetDescription("landmark detection confidence in [0, 1] per control point (0 = absent)")
        measurement.SetPrintFormat("%.2f")
        measurement.SetEnabled(True)
        pointList.AddMeasurement(measurement)
        measurement = pointList.GetMeasurement(name)
    values = measurement.GetControlPointValues()
    if values is None:
        values = vtk.vtkDoubleArray()
        values.SetName(name)
        measurement.SetControlPointValues(values)
        values = measurement.GetControlPointValues()
    while values.GetNumberOfTuples() < count:
        values.InsertNextValue(0.0)
    return values


def styleDisplayNode(displayNode) -> None:
    """Colours and sizes of a landmark point list (selected = confident/corrected, unselected = flagged)."""
    if displayNode is None:
        return
    displayNode.SetSelectedColor(*HIGH_CONFIDENCE_COLOR)
    displayNode.SetColor(*LOW_CONFIDENCE_COLOR)
    displayNode.SetActiveColor(0.3, 0.6, 1.0)
    displayNode.SetGlyphScale(2.5)
    displayNode.SetTextScale(2.5)
    displayNode.SetPointLabelsVisibility(True)
    displayNode.SetPropertiesLabelVisibility(False)


def preparePointList(pointList, names: Sequence[str]) -> None:
    """Give ``pointList`` exactly one control point per landmark name, in order, and lock the count."""
    pointList.SetFixedNumberOfControlPoints(False)
    while pointList.GetNumberOfControlPoints() > len(names):
        pointList.RemoveNthControlPoint(pointList.GetNumberOfControlPoints() - 1)
    while pointList.GetNumberOfControlPoints() < len(names):
        index = pointList.AddControlPoint(vtk.vtkVector3d(0.0, 0.0, 0.0), names[pointList.GetNumberOfControlPoints()])
        pointList.UnsetNthControlPointPosition(index)
    _measurementValues(pointList, CONFIDENCE, len(names))
    pointList.SetFixedNumberOfControlPoints(True)


def writePoint(pointList, index: int, lm: Landmark) -> bool:
    """Show landmark ``lm`` as control point ``index`` of ``pointList``; only changed properties are set.

    ``lm.found`` False makes the position undefined (the user can place it); selection, label,
    description and the :data:`CONFIDENCE` value follow the module docstring.

    Returns:
        True when anything changed.
    """
    changed = False
    found = bool(lm.found)
    if found:
        ras = _LPS_RAS @ np.asarray(lm.position, dtype=float)
        old = np.array(pointList.GetNthControlPointPosition(index))
        if (pointList.GetNthControlPointPositionStatus(index) != pointList.PositionDefined
                or not np.allclose(old, ras, atol=1e-6)):
            pointList.SetNthControlPointPosition(index, *ras)
            changed = True
    elif pointList.GetNthControlPointPositionStatus(index) != pointList.PositionUndefined:
        pointList.UnsetNthControlPointPosition(index)
        changed = True
    selected = bool(found and (lm.corrected or lm.flag == "high"))
    if bool(pointList.GetNthControlPointSelected(index)) != selected:
        pointList.SetNthControlPointSelected(index, selected)
        changed = True
    label = pointLabel(lm.name, lm.slice, lm.phase)
    if pointList.GetNthControlPointLabel(index) != label:
        pointList.SetNthControlPointLabel(index, label)
        changed = True
    description = pointDescription(lm)
    if pointList.GetNthControlPointDescription(index) != description:
        pointList.SetNthControlPointDescription(index, description)
        changed = True
    value = (1.0 if lm.corrected else float(lm.confidence)) if found else 0.0
    values = _measurementValues(pointList, CONFIDENCE, pointList.GetNumberOfControlPoints())
    if values.GetValue(index) != value:
        values.SetValue(index, value)
        values.Modified()
        changed = True
    return changed


def writePointList(pointList, names: Sequence[str], landmarks: Sequence[Landmark]) -> None:
    """Fill ``pointList`` with the landmarks of one slice and phase, in the order of ``names``."""
    preparePointList(pointList, names)
    for i, lm in enumerate(landmarks):
        writePoint(pointList, i, lm)


def readPointList(pointList, names: Sequence[str]) -> list[PointState]:
    """The landmark states held by ``pointList`` (control point ``i`` is landmark ``names[i]``).

    Raises:
        CardiacLandmarksError: the list does not have one control point per landmark.
    """
    n = pointList.GetNumberOfControlPoints()
    if n != len(names):
        raise CardiacLandmarksError(
            f"point list {pointList.GetName()!r} has {n} control points; expected {len(names)} ({', '.join(names)})")
    confidence = pointList.GetMeasurement(CONFIDENCE)
    values = confidence.GetControlPointValues() if confidence is not None else None
    states = []
    for i, name in enumerate(names):
        defined = pointList.GetNthControlPointPositionStatus(i) == pointList.PositionDefined
        position = (_LPS_RAS @ np.array(pointList.GetNthControlPointPosition(i))) if defined else np.full(3, np.nan)
        conf = values.GetValue(i) if values is not None and i < values.GetNumberOfTuples() else float("nan")
        states.append(PointState(name, bool(defined), position, float(conf),
                                 bool(pointList.GetNthControlPointSelected(i)),
                                 pointList.GetNthControlPointDescription(i) or ""))
    return states


# ---------------------------------------------------------------------------------------------
# measurements table
# ---------------------------------------------------------------------------------------------


def measurementStatusText(m: Measurement) -> str:
    """The ``Status`` cell of a measurement: its library status (``ok`` | ``review`` | ``n/a``), with
    ``(corrected)`` when a user placed one of its points (``(confirmed)`` when the user only confirmed some where
    the model put them), or the caveat (``review: check A-RVI (low 0.03)``)."""
    if m.status == "ok":
        if any(src.note == "corrected by user" for src in m.sources):
            return _("ok (corrected)")
        return _("ok (confirmed)") if any(src.note == "confirmed by user" for src in m.sources) else _("ok")
    return f"{m.status}: {m.caveat()}"


def fillMeasurementsTable(tableNode, measurements: Sequence[Measurement], statuses: Sequence[str] | None = None) -> None:
    """Replace the content of ``tableNode`` with one row per measurement (columns :data:`TABLE_COLUMNS`).

    Args:
        measurements: library measurements (value NaN allowed).
        statuses: text per row for the ``Status`` column (default empty).
    """
    table = vtk.vtkTable()
    arrays = []
    for name, cls in TABLE_COLUMNS:
        array = getattr(vtk, cls)()
        array.SetName(name)
        arrays.append(array)
        table.AddColumn(array)
    for row, m in enumerate(measurements):
        arrays[0].InsertNextValue(m.name)
        arrays[1].InsertNextValue(-1 if m.slice is None else int(m.slice))
        arrays[2].InsertNextValue(-1 if m.phase is None else int(m.phase))
        arrays[3].InsertNextValue(float(m.value))
        arrays[4].InsertNextValue(m.unit)
        arrays[5].InsertNextValue(statuses[row] if statuses is not None else "")
    wasModifying = tableNode.StartModify()
    tableNode.SetAndObserveTable(table)
    titles = {"Measurement": _("Measurement"), "Slice": _("Slice"), "Phase": _("Phase"), "Value": _("Value"),
              "Unit": _("Unit"), "Status": _("Status")}
    for name, _cls in TABLE_COLUMNS:
        tableNode.SetColumnTitle(name, titles[name])
    tableNode.SetColumnDescription("Value", _("measured value (see Unit); recomputed when a landmark is moved"))
    tableNode.SetColumnDescription("Status", _("ok | review | n/a, from the flags of the landmarks the measurement "
                                               "uses; review names the points to check"))
    tableNode.SetUseColumnTitleAsColumnHeader(True)
    tableNode.SetLocked(True)
    tableNode.Modified()
    tableNode.EndModify(wasModifying)


def readMeasurementsTable(tableNode) -> list[Measurement]:
    """The measurements held by a table filled by :func:`fillMeasurementsTable`."""
    table = tableNode.GetTable()
    columns = {name: table.GetColumnByName(name) for name, _cls in TABLE_COLUMNS}
    if any(c is None for c in columns.values()):
        raise CardiacLandmarksError(f"table {tableNode.GetName()!r} is not a CardiacLandmarks measurements table")
    out = []
    for row in range(table.GetNumberOfRows()):
        k = int(columns["Slice"].GetValue(row))
        t = int(columns["Phase"].GetValue(row))
        word = str(columns["Status"].GetValue(row)).split(":")[0].split(" ")[0]
        status = word if word in ("ok", "review", "n/a") else "review"  # trust unknown: review
        out.append(Measurement(columns["Measurement"].GetValue(row), None if k < 0 else k, None if t < 0 else t,
                               float(columns["Value"].GetValue(row)), columns["Unit"].GetValue(row), status))
    return out


class ResultState:
    """In-memory view of one landmark result (a "hub" node): the model's detection and the current
    (possibly corrected) points, with the series geometry stored on the hub.

    Args:
        hub: the result ``vtkMRMLTextNode``.
        lmset: the detection (``CardiacLandmarksLib.core.landmarks.LandmarkSet``).
        geometry: the hub's geometry attribute (spacing, direction, slice origins (LPS), sizes, names).
    """

    def __init__(self, hub, lmset, geometry: dict) -> None:
        self.hubID = hub.GetID()
        self.view = lmset.view
        self.model = dict(lmset.model)
        self.source = lmset.source
        #: where the image came from beyond ``source`` (an ED/ES pair's files, DICOM series UIDs), kept on export
        self.sourceRecord = LandmarkSet(lmset.source, lmset.view, {}).with_source_of(lmset)
        self.geometry = geometry
        self.direction = np.asarray(geometry["direction"], dtype=float)
        self.spacing = tuple(geometry["spacing"])
        self.sliceOrigins = np.asarray(geometry["slice_origins"], dtype=float)
        self.orientationKnown = bool(geometry["orientation_known"])
        self.nSlices = int(geometry["n_slices"])
        self.nPhases = int(geometry["n_phases"])
        self.names = tuple(geometry["names"])
        self.detected = {(lm.name, lm.slice, lm.phase): lm for lm in lmset.landmarks}
        #: the detection's warnings on the input itself (a forced view, a placeholder voxel size ...): every
        #: measurement recomputed after a correction keeps them (``add_input_sources``)
        self.inputSources = input_sources(lmset.measurements)
        self.current = {}  # (name, slice, phase) -> Landmark as shown now
        self.measurements = {}  # (slice, phase) -> list of Measurement
        self.pointListSlice = {}  # point list node ID -> slice index


def showInSliceView(layoutName: str, right, up, normal, center, backgroundNode=None,
                    fieldOfViewMm: float | None = None) -> None:
    """Point the slice view ``layoutName`` at a plane and show ``backgroundNode`` in it.

    Args:
        right, up, normal: RAS unit vectors of the view's screen right, screen up and normal.
        center: RAS point (mm) at the centre of the view.
        backgroundNode: volume to show as background (None: keep the current one).
        fieldOfViewMm: horizontal field of view (the vertical one follows the view's aspect);
            None keeps the current field of view.
    """
    for sliceNode in slicer.util.getNodesByClass("vtkMRMLSliceNode"):
        if sliceNode.GetLayoutName() != layoutName:
            continue
        sliceToRas = sliceNode.GetSliceToRAS()
        for r in range(3):
            for c, column in enumerate((right, up, normal, center)):
                sliceToRas.SetElement(r, c, float(column[r]))
        sliceNode.UpdateMatrices()
        if fieldOfViewMm is not None:
            dims = sliceNode.GetDimensions()
            aspect = dims[1] / dims[0] if dims[0] else 1.0
            sliceNode.SetFieldOfView(fieldOfViewMm, fieldOfViewMm * aspect, sliceNode.GetFieldOfView()[2])
    if backgroundNode is not None:
        for composite in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode"):
            if composite.GetLayoutName() == layoutName:
                composite.SetBackgroundVolumeID(backgroundNode.GetID())


def addSlicePointList(hub, pointListName: str, names, landmarksOf, nPhases: int, imageSequence=None,
                      browser=None):
    """Add the editable point list of one slice of a result to the scene and reference it from ``hub``.

    For a cine (``imageSequence`` and its ``browser`` given, ``nPhases`` > 1) the points of every
    phase go into a markups sequence synchronised with the image sequence, and the point list is
    its proxy node (edits are saved back to the sequence); otherwise the point list holds phase 0.

    Args:
        hub: the result node; gets ``names.POINT_LIST_REFERENCE`` (and ``MARKUPS_SEQUENCE_REFERENCE``).
        pointListName: unique node name.
        names: control-point names in order.
        landmarksOf: ``landmarksOf(t) -> list[Landmark]`` in ``names`` order, for phase ``t``.

    Returns:
        The point list node (fixed number of points, undo on, styled by confidence).
    """
    from . import names as refs

    scene = hub.GetScene()
    if imageSequence is not None and browser is not None and nPhases > 1:
        markupsSequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{pointListName} sequence")
        markupsSequence.CopySequenceIndex(imageSequence)
        for t in range(nPhases):
            item = slicer.vtkMRMLMarkupsFiducialNode()
            writePointList(item, names, landmarksOf(t))
            markupsSequence.SetDataNodeAtValue(item, imageSequence.GetNthIndexValue(t))
        pointList = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", pointListName)
        browser.AddSynchronizedSequenceNode(markupsSequence)
        browser.AddProxyNode(pointList, markupsSequence, False)
        browser.SetSaveChanges(markupsSequence, True)
        hub.AddNodeReferenceID(refs.MARKUPS_SEQUENCE_REFERENCE, markupsSequence.GetID())
    else:
        pointList = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", pointListName)
        writePointList(pointList, names, landmarksOf(0))
    pointList.CreateDefaultDisplayNodes()
    styleDisplayNode(pointList.GetDisplayNode())
    pointList.SetFixedNumberOfControlPoints(True)
    pointList.UndoEnabledOn()
    hub.AddNodeReferenceID(refs.POINT_LIST_REFERENCE, pointList.GetID())
    return pointList
