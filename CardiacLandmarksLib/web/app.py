"""The review app: Slicer's slice view and markups widgets in a browser (trame-slicer).

One server reviews one folder: a result folder of ``cardiac-landmarks detect`` or a cohort
folder of them. The page shows

* the source image of the current case in a Slicer slice view, in the plane of its slices,
  with every landmark of the current slice and phase as a Slicer point (high confidence
  green, low confidence orange, corrected or confirmed blue; absent points are not drawn until placed);
* the review queue: the low and absent points of the whole cohort, lowest confidence first
  (:func:`CardiacLandmarksLib.core.review.flagged_points` and ``merge_queues``, as in the Slicer
  panel), and a "Next flagged" button;
* the measurements of the current case (RVI angle and opening angle, or LV length and
  shortening), recomputed by the library at every correction, each with its status and caveat;
* the current case's series-level warnings (``LandmarkSet.warnings``: e.g. the RV on the patient's
  left-posterior, a forced view, an incomplete series) as a banner, and "(warning)" after the case's
  name in the case list;
* Save: the command line's files written back into the case folder by
  :func:`CardiacLandmarksLib.results.save_result` (the command line's writer and backup rule, one save
  at a time). Until then every change is also kept in the case folder
  (:func:`CardiacLandmarksLib.results.keep_unsaved`, a hidden file): an app stopped before Save (Ctrl+C, a closed
  terminal, a crash) restores those corrections at its next start, says so, and marks the case unsaved. A Save
  into a folder written again since the app read it (a re-run, another reader's save) is refused once, naming it;
  Save again to write over it.

Drag a point to move it; for an absent point press "Place" and click in the view. A moved or
placed point becomes *corrected* (confidence 1) and leaves the queue; a low point that is right is kept
where it is with "Confirm" (*confirmed*, :func:`CardiacLandmarksLib.results.confirm_landmark`), and
leaves the queue too. On a long-axis cine the corrected
landmark is then re-tracked through the phases from its anchors, as in the Slicer module
(:func:`CardiacLandmarksLib.lax.tracking.retrack_landmark`): the neighbouring phases follow the correction.

Start it with ``cardiac-landmarks review PATH`` (see :mod:`CardiacLandmarksLib.cli.review`).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.errors import CardiacLandmarksError
from CardiacLandmarksLib.core.geometry import ijk_to_ras_matrix
from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW, LandmarkSet
from CardiacLandmarksLib.core.review import FlaggedPoint, flagged_points, merge_queues
from CardiacLandmarksLib.lax.measurements import LAX_VIEWS
from CardiacLandmarksLib.lax.tracking import MIN_TRACKED_PHASES, retrack_landmark
from CardiacLandmarksLib.results import (
    ResultChangedError,
    confirm_landmark,
    correct_landmark,
    discard_unsaved,
    find_results,
    keep_unsaved,
    load_source,
    newer_point_lists,
    read_result,
    read_unsaved,
    recompute_measurements,
    result_sha256,
    save_result,
)
from CardiacLandmarksLib.web import security

logger = logging.getLogger(__name__)

#: the page's re-tracking starts this long after the event that asked for it, so its message is sent first (s)
RETRACK_DELAY_S = 0.1

#: point colours (RGB 0-1) by review state; high/low match the Slicer panel and the overlay PNG
COLORS = {"high": (0.2, 0.8, 0.2), "low": (1.0, 0.55, 0.0), "corrected": (0.25, 0.55, 1.0)}
#: a drag shorter than this (mm) is not a correction
MOVED_TOL_MM = 0.05


@dataclass
class Case:
    """One result folder of the cohort: its landmarks in memory and whether they changed."""

    name: str  # folder relative to the root ("." for a single result folder)
    folder: Path
    lmset: LandmarkSet
    dirty: bool = False
    series: object | None = None  # CMRSeries, loaded when the case is first shown
    notes: list[str] = field(default_factory=list)
    #: corrections and confirmations made so far (a Save marks the case saved only if none came during it)
    changes: int = 0
    #: SHA-256 of the landmarks.json the case was read from (or last saved, or the reader was told of): a Save over
    #: another one (the folder written again meanwhile) is refused once (results.ResultChangedError)
    read_sha256: str | None = None


def view_axes_ras(series, view: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Screen right, screen up and normal (RAS unit vectors) of the slice view showing ``series``' slices
    (:func:`CardiacLandmarksLib.core.geometry.display_axes_ras`, the rule the Slicer module uses): with a known patient
    orientation the anatomical display of the library's canvases (head up for short-axis stacks, anterior up for
    long-axis views; the RV on the viewer's left); without one (ACDC) the displayed volume's axes
    (:func:`display_ijk_to_ras`: an LPS-identity direction), columns to the right and rows down, as stored and as in
    the overlay PNG."""
    from CardiacLandmarksLib.core.geometry import display_axes_ras

    known = bool(series.orientation_known)
    return display_axes_ras(series.direction if known else np.eye(3), known,
                            "anterior" if view in LAX_VIEWS else "superior")


def display_ijk_to_ras(series) -> np.ndarray:
    """4x4 IJK -> RAS matrix of the volume shown in the browser.

    With a known patient orientation it is the series' own geometry (LPS -> RAS). When the file
    has none (``orientation_known`` False, e.g. the ACDC NIfTI copies), the library's stored
    display convention stands in: columns (i) to the screen's right, rows (j) down, as in the
    command line's overlay PNG; Slicer's axial view shows exactly that for an LPS-identity
    direction. Slice spacing = mean distance between the slice origins.
    """
    if series.orientation_known:
        return ijk_to_ras_matrix(series.direction, series.spacing, series.slice_origins, series.source)
    origins = np.asarray(series.slice_origins, float)
    if len(origins) > 1:
        sk = float(np.linalg.norm(origins[-1] - origins[0]) / (len(origins) - 1)) or float(series.spacing[2])
    else:
        sk = float(series.spacing[2]) or 1.0
    display_origins = origins[0] + np.arange(len(origins))[:, None] * np.array([0.0, 0.0, sk])
    return ijk_to_ras_matrix(np.eye(3), (series.spacing[0], series.spacing[1], sk), display_origins)


class ReviewApp:
    """trame-slicer application reviewing the results under ``root``.

    Args:
        root: result folder or cohort folder.
        server: a trame server (default: a new one).
        token: access token that every request must carry, or None for none (loopback only).
    """

    def __init__(self, root: str | Path, server=None, token: str | None = None) -> None:
        from trame.app import get_server

        self.root = Path(root).expanduser().resolve()
        folders = find_results(self.root)
        self.cases: dict[str, Case] = {}
        #: cases whose unsaved corrections of an earlier session were restored (results.read_unsaved)
        self.restored: list[str] = []
        for f in folders:
            name = f.relative_to(self.root).as_posix() if f != self.root else "."
            try:
                self.cases[name] = Case(name, f, read_result(f), read_sha256=result_sha256(f))
            except CardiacLandmarksError as exc:
                logger.warning("skipping %s: %s", f, exc)
                continue
            unsaved = read_unsaved(f)
            if unsaved is not None:  # the app was stopped before Save: nothing the reader did is lost
                self.cases[name].lmset, self.cases[name].dirty = unsaved[0], True
                self.restored.append(name)
        if not self.cases:
            raise CardiacLandmarksError(f"no readable result under {self.root}")
        self.token = token
        self.server = server or get_server(None, client_type="vue3")
        self.state, self.ctrl = self.server.state, self.server.controller
        if token:
            self.ctrl.on_server_bind.add(self._protect)
        else:
            self.ctrl.on_server_bind.add(self._same_origin_only)

        self.case: Case | None = None
        self.slice_k = 0
        self.phase_t = 0
        self._nodes: dict[str, object] = {}  # landmark name -> markups node (current slice and phase)
        self._observers: list[tuple[object, int]] = []
        self._volume = None
        self._placing: str | None = None
        self._cursor: tuple | None = None  # queue order of the last point shown by "Next flagged"
        self._save_tasks: dict[str, asyncio.Future] = {}
        #: (case, landmark, slice) -> (number of the latest re-tracking asked for, its task) (:meth:`_retrack_later`)
        self._retracks: dict[tuple, tuple[int, asyncio.Task | None]] = {}
        self._build_scene()
        self._build_ui()
        for name in self.cases:  # the first case whose image loads
            self.show_case(name)
            if self.case is not None:
                break
        else:
            raise CardiacLandmarksError(f"none of the source images of the results under {self.root} could be "
                                        "loaded (see the warnings); 'source' in landmarks.json names them")
        if self.restored:
            self._message(f"Restored the unsaved corrections of {', '.join(self._title(n) for n in self.restored)} "
                          "from when the app was last stopped: Save to write them.", "warning")

    # ------------------------------------------------------------------ server safety
    def _protect(self, wslink_server) -> None:
        wslink_server.app.middlewares.append(security.same_origin_middleware())
        wslink_server.app.middlewares.append(security.token_middleware(self.token))

    def _same_origin_only(self, wslink_server) -> None:
        wslink_server.app.middlewares.append(security.same_origin_middleware())

    # ------------------------------------------------------------------ scene
    def _build_scene(self) -> None:
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories
        from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

        self.slicer_app = SlicerApp()
        register_rca_factories(self.slicer_app.view_manager, self.server, slice_view_ui_f=lambda *a: None)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout("review", Layout(LayoutDirection.Vertical,
                                                             [ViewLayoutDefinition.axial_view()]))
        self.layout_manager.set_layout("review")
        self.view = self.slicer_app.view_manager.get_slice_views()[0]
        self.slice_node = self.view.get_view_node()

    def _set_volume(self, series, t: int) -> None:
        """Show phase ``t`` of ``series`` as the background volume (geometry from the library's CMRSeries)."""
        from vtkmodules.util.numpy_support import numpy_to_vtk
        from vtkmodules.vtkCommonDataModel import vtkImageData
        from vtkmodules.vtkCommonMath import vtkMatrix4x4

        scene = self.slicer_app.scene
        arr = np.ascontiguousarray(np.asarray(series.pixels[t], dtype=np.float32))  # [k, j, i]
        img = vtkImageData()
        img.SetDimensions(arr.shape[2], arr.shape[1], arr.shape[0])
        img.GetPointData().SetScalars(numpy_to_vtk(arr.ravel(), deep=True))
        m4 = display_ijk_to_ras(series)
        self._ijk_to_ras = m4
        self._ras_to_ijk_m = np.linalg.inv(m4)
        mat = vtkMatrix4x4()
        for r in range(4):
            for c in range(4):
                mat.SetElement(r, c, float(m4[r, c]))
        first = self._volume is None
        if first:
            self._volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "image")
        self._volume.SetAndObserveImageData(img)
        self._volume.SetIJKToRASMatrix(mat)
        if self._volume.GetDisplayNode() is None:
            self._volume.CreateDefaultDisplayNodes()
        finite = arr[np.isfinite(arr)]
        lo, hi = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
        disp = self._volume.GetDisplayNode()
        disp.AutoWindowLevelOff()
        disp.SetWindowLevelMinMax(float(lo), float(max(hi, lo + 1)))
        self.view.set_background_volume_id(self._volume.GetID())

    def _fit(self) -> None:
        """Slice plane = the series' slices; view centred on the case's landmarks, 45 mm around them.

        The plane is set from the displayed volume's own axes (:func:`view_axes_ras`), not by Slicer's
        RotateToVolumePlane, which keeps the volume axis closest to the view's current normal as the new normal:
        on an oblique short-axis stack (real scanner geometry, e.g. the Sunnybrook DICOM or MS-CMRSeg LGE) that is
        an in-plane axis, and the view cut across the slices, an unreadable reformat of the stack with no point
        on it."""
        right, up, normal = view_axes_ras(self.case.series, self.case.lmset.view)
        m = self.slice_node.GetSliceToRAS()
        for r in range(3):
            m.SetElement(r, 0, float(right[r]))
            m.SetElement(r, 1, float(up[r]))
            m.SetElement(r, 2, float(normal[r]))
        self.slice_node.UpdateMatrices()
        self.view.fit_view_to_content()
        pts = np.array([np.asarray(lm.position, float) for lm in self.case.lmset.landmarks
                        if lm.found and np.all(np.isfinite(np.asarray(lm.position, float)))])
        if len(pts):
            series = self.case.series
            ij = np.asarray(series.lps_to_ijk(pts), float)[:, :2]
            si, sj = float(series.spacing[0]), float(series.spacing[1])
            half = max(np.ptp(ij[:, 0]) * si, np.ptp(ij[:, 1]) * sj) / 2.0 + 45.0
            w, h, _ = self.slice_node.GetDimensions()
            fov = list(self.slice_node.GetFieldOfView())
            aspect = w / float(h) if h else 1.0
            fx, fy = (2 * half * aspect, 2 * half) if aspect >= 1 else (2 * half, 2 * half / aspect)
            self.slice_node.SetFieldOfView(fx, fy, fov[2])
            centre = self._lps_to_ras(pts.mean(axis=0))
            self.slice_node.JumpSliceByCentering(*[float(v) for v in centre])
        self._jump_to_slice(self.slice_k)

    def _jump_to_slice(self, k: int) -> None:
        series = self.case.series
        c_ij = np.array([series.shape_ji[1] / 2.0, series.shape_ji[0] / 2.0, float(k), 1.0])
        ras = (self._ijk_to_ras @ c_ij)[:3]
        self.slice_node.JumpSliceByOffsetting(*[float(v) for v in ras])

    def _lps_to_ras(self, lps) -> np.ndarray:
        """Library LPS position -> RAS in the displayed volume (through the series' ijk)."""
        ijk = np.asarray(self.case.series.lps_to_ijk(np.asarray(lps, float)), float)
        return (self._ijk_to_ras @ np.append(ijk, 1.0))[:3]

    def _ras_to_ijk(self, ras) -> np.ndarray:
        return (self._ras_to_ijk_m @ np.append(np.asarray(ras, float), 1.0))[:3]

    # ------------------------------------------------------------------ markups
    def _clear_points(self) -> None:
        scene = self.slicer_app.scene
        for obj, tag in self._observers:
            obj.RemoveObserver(tag)
        self._observers.clear()
        for node in self._nodes.values():
            scene.RemoveNode(node)
        self._nodes.clear()

    def _show_points(self) -> None:
        """One markups point list per landmark of the current slice and phase (own colour each)."""
        import slicer

        self._clear_points()
        case, k, t = self.case, self.slice_k, self.phase_t
        names = list(LANDMARKS_BY_VIEW.get(case.lmset.view, ()))
        for lm in case.lmset.landmarks:
            if lm.slice == k and lm.phase == t and lm.name not in names:
                names.append(lm.name)
        scene = self.slicer_app.scene
        for name in names:
            lm = case.lmset.get(name, k, t)
            node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{name} s{k} p{t}")
            node.SetMaximumNumberOfControlPoints(1)
            node.SetMarkupLabelFormat(name)
            node.CreateDefaultDisplayNodes()
            disp = node.GetDisplayNode()
            disp.SetGlyphScale(2.5)
            disp.SetTextScale(3.0)
            disp.SetPointLabelsVisibility(True)
            if lm is not None and lm.found:
                ras = [float(v) for v in self._lps_to_ras(lm.position)]
                node.AddControlPoint(ras, self._label(lm))
            self._color(node, lm)
            for event in (slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent,
                          slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent):
                tag = node.AddObserver(event, lambda caller, ev, n=name: self._on_point_changed(n))
                self._observers.append((node, tag))
            self._nodes[name] = node

    @staticmethod
    def _label(lm) -> str:
        if lm.confirmed:
            return f"{lm.name} confirmed"
        if lm.corrected:
            return f"{lm.name} corrected"
        if lm.flag == "low":
            return f"{lm.name} low {lm.confidence:.2f}"
        return lm.name

    def _color(self, node, lm) -> None:
        if lm is not None and lm.corrected:
            c = COLORS["corrected"]
        elif lm is not None and lm.flag == "low":
            c = COLORS["low"]
        else:
            c = COLORS["high"]
        disp = node.GetDisplayNode()
        disp.SetSelectedColor(*c)
        disp.SetColor(*c)
        disp.SetActiveColor(*[min(1.0, v + 0.25) for v in c])

    def _on_point_changed(self, name: str) -> None:
        """A point was dragged or placed in the view: correct it through the library."""
        node = self._nodes.get(name)
        case = self.case
        if node is None or case is None or node.GetNumberOfControlPoints() < 1:
            return
        if node.GetNthControlPointPositionStatus(0) != node.PositionDefined:
            return
        ras = np.array(node.GetNthControlPointPosition(0), float)
        k, t = self.slice_k, self.phase_t
        # keep the point on its slice: project the position onto the slice plane of k
        ijk = self._ras_to_ijk(ras)
        ijk[2] = float(k)
        lps = np.asarray(case.series.ijk_to_lps(ijk), float)
        old = case.lmset.get(name, k, t)
        if old is not None and old.found and np.linalg.norm(np.asarray(old.position, float) - lps) <= MOVED_TOL_MM:
            return
        verb = "moved to" if old is not None and old.found else "placed at"
        try:
            lm = correct_landmark(case.lmset, name, k, t, lps, case.series)
            retracked = self._after_change(case, lm)
        except CardiacLandmarksError as exc:
            self._message(f"Not corrected: {exc}", "error")
            return
        self._placing = None
        node.SetNthControlPointLabel(0, self._label(lm))
        self._color(node, lm)
        self._message(f"{self._title(case.name)}: {name} on slice {k} {verb} LPS "
                      f"{lps[0]:.1f} {lps[1]:.1f} {lps[2]:.1f} mm (corrected).{retracked} Save to write it.", "info")
        self._refresh()

    def _after_change(self, case: Case, lm) -> str:
        """After a reader's correction or confirmation ``lm``: re-track a long-axis cine from it (the neighbouring
        phases follow, as in the Slicer module), recompute the measurements, mark the case unsaved. Returns the
        re-tracking sentence for the message (empty when not re-tracked).

        In the served page (an event loop running) the re-tracking, a few seconds on a 50-phase cine, runs in a
        worker thread (:meth:`_retrack_later`), so the page shows the correction and "Re-tracking ..." at once and
        stays live instead of freezing without a word; without a loop (scripts, tests) it runs here."""
        retracked = ""
        if lm.corrected and case.lmset.view in LAX_VIEWS and case.series.n_phases >= MIN_TRACKED_PHASES:
            if self._retrack_later(case, lm.name, lm.slice):
                retracked = f" Re-tracking {lm.name} through the {case.series.n_phases} phases..."
            else:
                new = retrack_landmark(case.series, case.lmset, lm.name, lm.slice)
                if new is not case.lmset:
                    case.lmset.landmarks, case.lmset.model = new.landmarks, new.model
                    retracked = f" Re-tracked through the {case.series.n_phases} phases."
        recompute_measurements(case.lmset, case.series)
        self._changed(case)
        return retracked

    def _changed(self, case: Case) -> None:
        case.dirty = True
        case.changes += 1
        keep_unsaved(case.folder, case.lmset)  # until Save: a stopped app loses nothing

    def _retrack_later(self, case: Case, name: str, k: int) -> bool:
        """Re-track ``name`` on slice ``k`` of ``case`` in a worker thread, so the page shows the correction and
        "Re-tracking ..." at once and stays live (:meth:`_apply_retrack` brings the result in); False when no event
        loop runs (the caller then re-tracks at once)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        key = (case.name, name, int(k))
        seq = self._retracks.get(key, (0, None))[0] + 1
        snapshot = copy.deepcopy(case.lmset)  # the points as the reader left them now

        async def run() -> None:
            await asyncio.sleep(RETRACK_DELAY_S)  # the page's message goes out first
            try:
                new = await loop.run_in_executor(None, retrack_landmark, case.series, snapshot, name, int(k))
            except CardiacLandmarksError as exc:
                with self.state:
                    self._message(f"{self._title(case.name)}: {name} could not be re-tracked: {exc}", "error")
                return
            if self._retracks.get(key, (0, None))[0] == seq:  # else a later correction of it re-tracks again
                self._apply_retrack(case, name, int(k), new)

        self._retracks[key] = (seq, loop.create_task(run()))
        return True

    def _apply_retrack(self, case: Case, name: str, k: int, new) -> None:
        """Bring a re-tracking's result into the case: the points of ``name`` on slice ``k`` and its anchors (the
        reader's other changes since it started are kept), then the measurements, the view and the message."""
        fresh = {lm.phase: lm for lm in new.landmarks if lm.name == name and lm.slice == k}
        lms = case.lmset.landmarks
        for i, lm in enumerate(lms):
            if lm.name == name and lm.slice == k and lm.phase in fresh:
                lms[i] = fresh.pop(lm.phase)
        lms.extend(fresh.values())
        tracking = dict(new.model.get("tracking", {}))
        anchors = dict(case.lmset.model.get("tracking", {}).get("anchors", {}))
        anchors[name] = list(tracking.get("anchors", {}).get(name, anchors.get(name, [])))
        case.lmset.model["tracking"] = {**tracking, "anchors": anchors}
        with self.state:
            recompute_measurements(case.lmset, case.series)
            self._changed(case)
            if self.case is case:
                self._show_points()
            self._message(f"{self._title(case.name)}: {name} re-tracked through the {case.series.n_phases} phases. "
                          "Save to write it.", "info")
            self._refresh()

    def confirm_current(self) -> None:
        """The reader says the current low point is right: confirm it where it is
        (:func:`CardiacLandmarksLib.results.confirm_landmark`); it leaves the queue and its measurements are
        recomputed (on a long-axis cine it becomes an anchor, and the landmark is re-tracked). When the reader has
        since moved to another case, slice or phase, the point is shown again instead, with a message, and nothing
        is confirmed (before, nothing happened and nothing was said)."""
        key = self.state.current_key
        case = self.case
        if not key or case is None:
            self._message("No point to confirm: go to a flagged point first (Next).", "info")
            return
        case_name, name, k, t = key.split("|")
        k, t = int(k), int(t)
        if (case_name, k, t) != (case.name, self.slice_k, self.phase_t):
            # the reader moved to another case, slice or phase since: never confirm a point that is not in view
            self.go_to(key)
            if self.state.current_key == key:
                self._message(f"{self._title(case_name)}: {name} on slice {k}, phase {t} is shown again: press "
                              "Confirm if it is right where it is, or drag it.", "warning")
            return
        try:
            lm = confirm_landmark(case.lmset, name, k, t)
            retracked = self._after_change(case, lm)
        except CardiacLandmarksError as exc:
            self._message(f"Not confirmed: {exc}", "error")
            self._refresh()
            return
        if self.slice_k == k and self.phase_t == t:
            self._show_points()
        self._message(f"{self._title(case.name)}: {name} on slice {k} confirmed where it is.{retracked} "
                      "Save to write it.", "success")
        self._refresh()

    # ------------------------------------------------------------------ navigation
    def show_case(self, name: str, k: int | None = None, t: int | None = None) -> None:
        """Show case ``name`` (a key of :attr:`cases`), on slice ``k`` and phase ``t`` when given."""
        case = self.cases[name]
        if case.series is None:
            try:
                case.series = load_source(case.lmset, case.folder, self.root)
            except CardiacLandmarksError as exc:
                logger.warning("%s: cannot load the source image %s: %s", case.folder, case.lmset.source, exc)
                self._message(f"{self._title(name)}: cannot load the source image {case.lmset.source}: {exc}", "error")
                return
            if not case.dirty and newer_point_lists(case.folder):
                # point lists saved after landmarks.json (e.g. in Slicer): read again with the series (ijk, frame)
                try:
                    case.lmset = read_result(case.folder, case.series)
                except CardiacLandmarksError as exc:
                    logger.warning("%s: %s", case.folder, exc)
        new_case = case is not self.case
        self.case = case
        flagged = self._case_queue(case)
        if k is None:
            k = flagged[0].slice if flagged else (case.lmset.landmarks[0].slice if case.lmset.landmarks else 0)
        if t is None:
            t = flagged[0].phase if flagged else 0
        self.slice_k, self.phase_t = int(k), int(t)
        if new_case or self._shown_phase != self.phase_t:
            self._set_volume(case.series, self.phase_t)
            self._shown_phase = self.phase_t
            self._fit()
        else:
            self._jump_to_slice(self.slice_k)
        self._show_points()
        self._refresh()

    _shown_phase = -1

    def select_case(self, name: str) -> bool:
        """Show the case the browser asked for. ``name`` comes from the page: it must resolve inside the
        reviewed folder (:func:`.security.resolve_inside`) and be one of its result folders; anything else
        is refused (message, current case kept). Returns True when shown."""
        try:
            folder = security.resolve_inside(self.root, name)
        except security.OutsideRootError as exc:
            logger.warning("refused case %r: %s", name, exc)
            self._message(f"Refused: {exc}", "error")
            self._refresh()
            return False
        case = next((c for c in self.cases.values() if c.folder == folder), None)
        if case is None:
            self._message(f"Refused: {name!r} is not a result folder of {self.root.name}", "error")
            self._refresh()
            return False
        self.show_case(case.name)
        return self.case is case

    def next_flagged(self) -> None:
        """Go to the next point of the review queue after the current one (wraps around at the end)."""
        queue = self._queue(with_order=True)
        if not queue:
            self._message("No flagged point left in the folder.", "success")
            self._refresh()
            return
        after = self._cursor
        nxt = next((q for q in queue if after is not None and q["_order"] > after), queue[0])
        self.go_to(nxt["key"])

    def go_to(self, key: str) -> None:
        """Show the flagged point ``key`` (``"<case>|<name>|<slice>|<phase>"``) of the queue."""
        item = next((q for q in self._queue(with_order=True) if q["key"] == key), None)
        if item is None:
            self._message("That point is no longer flagged.", "info")
            return
        self.show_case(item["case"], item["slice"], item["phase"])
        if self.cases[item["case"]].series is None:  # its image could not be loaded: show_case said why
            self._refresh()
            return
        self.state.current_key = key
        self._cursor = item["_order"]
        if item["flag"] == "absent" and item.get("doubt"):  # nearly found, or left out by a presence rule
            text = (f"{self._title(item['case'])}: {item['name']} on slice {item['slice']}: absent, {item['doubt']}. "
                    "Press Place, then click in the view if it is there.")
        elif item["flag"] == "absent":
            text = f"{self._title(item['case'])}: {item['name']} on slice {item['slice']}: not found. Press Place, then click in the view."
        else:
            why = f" — {item['doubt']}" if item.get("doubt") else ""
            text = (f"{self._title(item['case'])}: {item['name']} on slice {item['slice']}: low confidence "
                    f"{item['confidence']:.2f}{why}. Drag it if it is wrong, or press Confirm if it is right.")
        self._message(text, "warning")
        self._refresh()

    def place_current(self) -> None:
        """Enter place mode for the current flagged point when it is absent."""
        key = self.state.current_key
        if not key:
            return
        _case, name, _k, _t = key.split("|")
        node = self._nodes.get(name)
        if node is None:
            return
        node.RemoveAllControlPoints()
        self._placing = name
        self.slicer_app.markups_logic.place_node(node, persistent=False)
        self._message(f"Click in the view to place {name}.", "info")

    def set_slice(self, k) -> None:
        if self.case is None:
            return
        k = int(k)
        if k != self.slice_k and 0 <= k < self.case.series.n_slices:
            self.slice_k = k
            self._jump_to_slice(k)
            self._show_points()
            self._refresh()

    def set_phase(self, t) -> None:
        if self.case is None:
            return
        t = int(t)
        if t != self.phase_t and 0 <= t < self.case.series.n_phases:
            self.phase_t = t
            self._set_volume(self.case.series, t)
            self._shown_phase = t
            self._jump_to_slice(self.slice_k)
            self._show_points()
            self._refresh()

    # ------------------------------------------------------------------ save
    async def save(self) -> None:
        """Save the current case in a worker thread (one save per case at a time; see ``save_result``)."""
        case = self.case
        if case is None:
            return
        running = self._save_tasks.get(case.name)
        if running is not None and not running.done():
            self._message(f"{self._title(case.name)}: a save is already running.", "warning")
            return
        lmset, series, changes = copy.deepcopy(case.lmset), case.series, case.changes
        expected = case.read_sha256
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, lambda: save_result(case.folder, lmset, series, expected_sha256=expected))
        self._save_tasks[case.name] = fut
        with self.state:
            self.state.saving = True
        try:
            written = await fut
        except ResultChangedError as exc:  # written again since read: say so; a second Save writes over it knowingly
            case.read_sha256 = exc.current_sha256
            with self.state:
                self._message(f"{self._title(case.name)}: {exc}. Save again to write your corrections over it anyway "
                              "(its point lists are kept as .bak-<time>), or restart the review on the folder to see "
                              "the new result (these corrections are then not restored).", "error")
                self.state.saving = False
            return
        except (CardiacLandmarksError, OSError) as exc:
            with self.state:
                self._message(f"{self._title(case.name)}: save failed: {exc}", "error")
                self.state.saving = False
            return
        case.read_sha256 = result_sha256(case.folder)
        later = case.changes != changes  # the reader went on correcting during the save: those are not saved yet
        if not later:
            case.dirty = False
            discard_unsaved(case.folder)
        study = case.folder.parent if (case.folder.parent / "study.json").exists() else None
        hint = (f" This is an analysis of the study in {study.name}: run 'cardiac-landmarks apply-review {study}' "
                "(or on the batch folder) to carry the review into its study.json and the cohort table."
                if study is not None else "")
        with self.state:
            self.state.saving = False
            self._message(f"{self._title(case.name)}: saved {len(written)} files ({', '.join(p.name for p in written)}); "
                          f"the replaced point lists are kept as .bak-<time>."
                          + (" Changes made during the save are not saved yet: Save again." if later else hint),
                          "warning" if later else "success")
            self._refresh()

    # ------------------------------------------------------------------ state for the page
    def _case_queue(self, case: Case) -> list[FlaggedPoint]:
        names = LANDMARKS_BY_VIEW.get(case.lmset.view, ())
        return flagged_points(case.lmset.landmarks, names, case=case.name, by_confidence=True)

    def _queue(self, with_order: bool = False) -> list[dict]:
        """The review queue of the whole folder: every case's flagged points merged by rising confidence
        (:func:`CardiacLandmarksLib.core.review.merge_queues`); absent points left out when unticked, except those
        with a doubt (nearly found, or left out by a presence rule: core.review.is_doubtful_absence)."""
        with_absent = bool(self.state.include_absent)
        points = merge_queues(self._case_queue(c) for c in self.cases.values())
        items = []
        for p in points:
            if p.flag == "absent" and not with_absent and not p.doubt:  # a doubtful absence stays in the queue
                continue
            item = {
                "key": f"{p.case}|{p.name}|{p.slice}|{p.phase}",
                "case": p.case, "name": p.name, "slice": p.slice, "phase": p.phase,
                "flag": p.flag, "confidence": round(p.confidence, 2), "doubt": p.doubt,
                "title": f"{self._title(p.case)} · {p.name} s{p.slice} p{p.phase}",
                "subtitle": ("absent" if p.flag == "absent" else f"low confidence {p.confidence:.2f}")
                            + (f": {p.doubt}" if p.doubt else ""),
            }
            if with_order:
                item["_order"] = p.order  # merge_queues order (FlaggedPoint.order)
            items.append(item)
        return items

    def _title(self, name: str) -> str:
        return self.root.name if name == "." else name

    def _measure_rows(self) -> list[dict]:
        rows = []
        for m in self.case.lmset.measurements:
            v = float(m.value)
            rows.append({"name": m.name, "slice": "" if m.slice is None else int(m.slice),
                         "phase": "" if m.phase is None else int(m.phase),
                         "value": f"{v:.1f}" if np.isfinite(v) else "", "unit": m.unit,
                         "status": m.status or "", "caveat": m.caveat() if hasattr(m, "caveat") else "",
                         "current": m.slice == self.slice_k and (m.phase in (None, self.phase_t))})
        return rows

    def _probe(self) -> dict:
        """Where the current slice's points are drawn, as fractions of the view (x right, y down), and
        the view's field of view in mm: lets a test (or a script) find a point on the page."""
        xy_to_ras = self.slice_node.GetXYToRAS()
        from vtkmodules.vtkCommonMath import vtkMatrix4x4

        inv = vtkMatrix4x4()
        vtkMatrix4x4.Invert(xy_to_ras, inv)
        w, h, _ = self.slice_node.GetDimensions()
        fov = self.slice_node.GetFieldOfView()
        pts = {}
        for name, node in self._nodes.items():
            if node.GetNumberOfControlPoints() and node.GetNthControlPointPositionStatus(0) == node.PositionDefined:
                r = list(node.GetNthControlPointPosition(0)) + [1.0]
                x, y, _z, _w = inv.MultiplyPoint(r)
                pts[name] = {"fx": x / max(w, 1), "fy": 1.0 - y / max(h, 1)}
        return {"case": self.case.name, "slice": self.slice_k, "phase": self.phase_t, "points": pts,
                "view_px": [int(w), int(h)], "fov_mm": [float(fov[0]), float(fov[1])]}

    def _refresh(self) -> None:
        case = self.case
        s = self.state
        s.cases = [{"title": self._title(n) + (" (warning)" if c.lmset.warnings else "")
                    + (" (unsaved)" if c.dirty else ""), "value": n}
                   for n, c in self.cases.items()]
        s.case_name = case.name
        s.case_warnings = list(case.lmset.warnings)
        s.queue = self._queue()
        s.n_flagged = len(s.queue)
        s.slice_k = self.slice_k
        s.phase_t = self.phase_t
        s.n_slices = case.series.n_slices if case.series is not None else 1
        s.n_phases = case.series.n_phases if case.series is not None else 1
        s.measurements = self._measure_rows()
        s.current_measurements = [m for m in s.measurements if m["current"]]
        s.dirty = case.dirty
        s.current_absent = bool(s.current_key) and any(
            q["key"] == s.current_key and q["flag"] == "absent" for q in s.queue)
        s.current_low = bool(s.current_key) and any(
            q["key"] == s.current_key and q["flag"] == "low" for q in s.queue)
        try:
            s.probe = self._probe()
        except Exception as exc:  # the view is not laid out yet
            logger.debug("probe not ready: %s", exc)

    def _message(self, text: str, kind: str = "info") -> None:
        logger.info("%s", text)
        self.state.message = text
        self.state.message_kind = kind

    # ------------------------------------------------------------------ page
    def _build_ui(self) -> None:
        from trame.widgets import html
        from trame.widgets import vuetify3 as v3
        from trame_vuetify.ui.vuetify3 import SinglePageWithDrawerLayout

        s = self.state
        s.trame__title = "CardiacLandmarks review"
        s.current_key = ""
        s.message = "Press 'Next flagged' to review the low-confidence and absent points."
        s.message_kind = "info"
        s.saving = False
        s.probe = {}
        s.queue, s.cases, s.measurements, s.current_measurements = [], [], [], []
        s.case_warnings = []
        s.n_flagged = 0
        s.slice_k = s.phase_t = 0
        s.n_slices = s.n_phases = 1
        s.case_name = ""
        s.dirty = False
        s.current_absent = False
        s.current_low = False
        s.include_absent = True

        @s.change("include_absent")
        def _on_include_absent(**_):
            if self.case is not None:
                self._refresh()

        @s.change("case_name")
        def _on_case(case_name, **_):
            if case_name and self.case is not None and case_name != self.case.name:
                self.select_case(case_name)

        @s.change("slice_k")
        def _on_slice(slice_k, **_):
            self.set_slice(slice_k)

        @s.change("phase_t")
        def _on_phase(phase_t, **_):
            self.set_phase(phase_t)

        with SinglePageWithDrawerLayout(self.server, width=420) as layout:
            self.ui = layout
            layout.title.set_text("CardiacLandmarks review")
            layout.footer.hide()
            with layout.toolbar:
                v3.VSpacer()
                html.Span("{{ n_flagged }} flagged", classes="mr-4 text-body-2", id="cl-n-flagged")
                v3.VBtn("Next flagged", id="cl-next", click=self.next_flagged, prepend_icon="mdi-skip-next",
                        variant="tonal", classes="mr-2")
                v3.VBtn("Confirm", id="cl-confirm", click=self.confirm_current, prepend_icon="mdi-check",
                        variant="tonal", classes="mr-2", disabled=("!current_low",))
                v3.VBtn("Place", id="cl-place", click=self.place_current, prepend_icon="mdi-map-marker-plus",
                        variant="tonal", classes="mr-2", disabled=("!current_absent",))
                v3.VBtn("Save", id="cl-save", click=self.save, prepend_icon="mdi-content-save",
                        color=("dirty ? 'primary' : undefined",), variant="flat", loading=("saving",),
                        classes="mr-2")
            with layout.drawer:
                with v3.VContainer(classes="pa-2"):
                    v3.VSelect(v_model=("case_name",), items=("cases",), label="Case", density="compact",
                               hide_details=True, id="cl-case")
                    v3.VAlert(text=("message",), type=("message_kind",), density="compact", variant="tonal",
                              classes="my-2", id="cl-message")
                    with html.Div(id="cl-warnings", classes=("case_warnings.length ? 'mb-7' : ''",)):
                        v3.VAlert(v_for="(w, i) in case_warnings", key="i", text=("w",), type="warning",
                                  title="Warning for this series", density="compact", variant="outlined",
                                  classes="mb-2 text-body-2")
                    v3.VSlider(v_model=("slice_k",), min=0, max=("n_slices - 1",), step=1, label="Slice",
                               thumb_label="always", density="compact", hide_details=True, classes="mt-4")
                    v3.VSlider(v_if=("n_phases > 1",), v_model=("phase_t",), min=0, max=("n_phases - 1",), step=1,
                               label="Phase", thumb_label="always", density="compact", hide_details=True)
                    html.Div("Slice {{ slice_k }}" + "{{ n_phases > 1 ? ', phase ' + phase_t : '' }}",
                             classes="text-subtitle-2 mt-3")
                    with html.Div(id="cl-current-measurements", classes="text-body-2"):
                        html.Div("{{ m.name }}: {{ m.value }} {{ m.unit }} ({{ m.status }}{{ m.caveat ? ': ' + m.caveat : '' }})",
                                 v_for="(m, i) in current_measurements", key="i",
                                 classes=("m.status === 'ok' ? 'font-weight-bold' : 'font-weight-bold text-orange-darken-3'",))
                        html.Div("no measurement here (a point is missing)", v_if=("!current_measurements.length",),
                                 classes="text-medium-emphasis")
                    html.Div("All measurements of the case", classes="text-subtitle-2 mt-3")
                    with v3.VTable(density="compact", id="cl-measurements", height="220px", fixed_header=True):
                        with html.Thead():
                            with html.Tr():
                                html.Th("measurement", classes="text-caption")
                                html.Th("slice", classes="text-caption")
                                html.Th("phase", classes="text-caption", v_if=("n_phases > 1",))
                                html.Th("value", classes="text-caption")
                                html.Th("status", classes="text-caption")
                        with html.Tbody():
                            with html.Tr(v_for="(m, i) in measurements", key="i",
                                         classes=("m.current ? 'bg-blue-lighten-5' : ''",)):
                                html.Td("{{ m.name }}", classes="text-caption")
                                html.Td("{{ m.slice }}", classes="text-caption")
                                html.Td("{{ m.phase }}", classes="text-caption", v_if=("n_phases > 1",))
                                html.Td("{{ m.value }} {{ m.unit }}", classes="text-caption text-no-wrap")
                                html.Td("{{ m.status }}", title=("m.caveat",),
                                        classes=("m.status === 'ok' ? 'text-caption' : 'text-caption text-orange-darken-3'",))
                    html.Div("Review queue (whole folder, lowest confidence first)", classes="text-subtitle-2 mt-3")
                    v3.VCheckbox(v_model=("include_absent",), label="include absent points", density="compact",
                                 hide_details=True, id="cl-include-absent")
                    with v3.VList(density="compact", id="cl-queue", max_height="340px", style="overflow-y: auto"):
                        v3.VListItem(v_for="q in queue", key="q.key", title=("q.title",), subtitle=("q.subtitle",),
                                     active=("q.key === current_key",),
                                     click=(self.go_to, "[q.key]"))
                    html.Pre("{{ JSON.stringify(probe) }}", id="cl-probe", style="display: none")
            with layout.content:
                with html.Div(style="position: relative; width: 100%; height: calc(100vh - 64px);", id="cl-view"):
                    self.layout_manager.initialize_layout_grid(layout)


def build_app(root: str | Path, token: str | None = None, server=None) -> ReviewApp:
    """The :class:`ReviewApp` for ``root`` (result or cohort folder), ready for ``app.server.start``."""
    return ReviewApp(root, server=server, token=token)


def serve(app: ReviewApp, host: str = "127.0.0.1", port: int = 8080, **kwargs) -> None:
    """Run the app's server until it is stopped (blocks). ``kwargs`` go to trame's ``server.start``."""
    app.server.start(host=host, port=int(port), open_browser=False, show_connection_info=False, **kwargs)
