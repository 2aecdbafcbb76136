"""Slicer markups point lists (``.mrk.json``) written and read without Slicer.

Layout (what a Slicer user gets when dropping the files into Slicer):

* one ``vtkMRMLMarkupsFiducialNode`` point list **per cardiac phase**, holding the landmarks
  of every slice of that phase: ``<stem>_phase00.mrk.json``, ``<stem>_phase01.mrk.json``
  ... (a single-phase series gives just ``<stem>.mrk.json``); the point list is named
  ``<stem> phase <t>`` in Slicer;
* control point labels ``"<name> s<slice> p<phase>"``, e.g. ``"A-RVI s3 p0"``, ordered by
  slice, then landmark (A-RVI, I-RVI, C-LV);
* positions in **LPS** mm (``coordinateSystem: "LPS"``; Slicer converts to RAS on load);
* found points: ``positionStatus: "defined"``; points the model says are absent:
  ``"undefined"`` with no position, so the user can place them in Slicer
  ("place"/"unset" keep the label);
* ``selected`` is True for high-confidence points and False for low-confidence and absent
  ones, so Slicer draws them in the point list's selected colour (green) and unselected
  colour (orange); no point is locked;
* each point's ``description`` says what the model found, e.g.
  ``"high confidence 0.93; model position LPS -12.34 45.67 78.90 mm"`` or ``"absent"``; a low point whose
  detector gave a reason ends with ``"; why low: <reason>"`` (:attr:`Landmark.doubt`, read back too), an absent one
  the network nearly found ``"absent; why check: <reason>"``;
  it moves with the point when the user edits, reorders or deletes points, so
  :func:`read_markups` can tell user-moved points (``corrected``) from model ones; a point the
  reader confirmed where the model put it reads ``"confirmed by user"`` (``corrected`` and ``confirmed``);
* the markup's ``measurements`` hold ``"confidence"`` with ``controlPointValues`` (one value
  per control point, 0 for absent points), which Slicer keeps through save/load;
* a top-level ``"cardiacLandmarks"`` object keeps source, view and model (Slicer drops it
  when it re-saves the file; the landmarks themselves survive).

Files follow Slicer's markups schema v1.0.3 (vendored in ``Resources/Schema`` for the tests).
Writing never replaces an existing file silently: by default the old file is kept as
``<name>.bak-YYYYmmdd-HHMMSS`` (see :mod:`.fileio`).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core import geometry
from CardiacLandmarksLib.core.errors import InputNotFoundError, InvalidMarkupsError, MixedRunError
from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW, Landmark, LandmarkSet
from CardiacLandmarksLib.core.review import corrected_landmark
from CardiacLandmarksLib.io.atomic import atomic_write_text
from CardiacLandmarksLib.io.outputs import run_files

logger = logging.getLogger(__name__)

SCHEMA_URL = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
SCHEMA_PATTERN = re.compile(r"markups-schema-v1\.[0-9]+\.[0-9]+\.json")
SUFFIX = ".mrk.json"

#: Slicer colours: selected points = high confidence, unselected = low confidence
HIGH_COLOR = (0.2, 0.8, 0.2)
LOW_COLOR = (1.0, 0.55, 0.0)

#: control point description of a point the reader confirmed where the model put it (:attr:`Landmark.confirmed`)
CONFIRMED_DESCRIPTION = "confirmed by user"

#: a user move smaller than this (mm) is taken as no move (positions in descriptions have 2 decimals)
MOVED_TOL_MM = 0.05

_LABEL_RE = re.compile(r"^\s*(?P<name>[A-Za-z][A-Za-z-]*)\s+s(?P<slice>\d+)\s+p(?P<phase>\d+)\s*$")
_WHY_RE = re.compile(r"; why low: (?P<why>.*)$")
_CONF_RE = re.compile(r"\b(?P<flag>high|low) confidence (?P<conf>[0-9]*\.?[0-9]+)")
_MODELPOS_RE = re.compile(r"model position LPS (?P<x>\S+) (?P<y>\S+) (?P<z>\S+) mm")


def control_point_label(name: str, slice: int, phase: int) -> str:
    """Label of a landmark's control point: ``"A-RVI s3 p0"``."""
    return f"{name} s{int(slice)} p{int(phase)}"


def parse_control_point_label(label: str) -> tuple[str, int, int] | None:
    """Inverse of :func:`control_point_label`; None when the label has another form."""
    m = _LABEL_RE.match(label or "")
    if not m:
        return None
    return m.group("name"), int(m.group("slice")), int(m.group("phase"))


def control_point_description(lm: Landmark) -> str:
    """The Slicer control point's description for a landmark: what a reader's hand did (``"placed by user"``,
    ``"marked absent by user"``, confirmed), ``"absent"``, or the model's flag, confidence and position (LPS mm), then
    why a low point is low.
    """
    if lm.confirmed and lm.found:
        return CONFIRMED_DESCRIPTION
    if lm.corrected:
        return "placed by user" if lm.found else "marked absent by user"
    if not lm.found:  # a doubtful absence (a point the network nearly found) says so
        return "absent" + (f"; why check: {lm.doubt}" if lm.doubt else "")
    x, y, z = (float(v) for v in np.asarray(lm.position, float))
    text = f"{lm.flag} confidence {float(lm.confidence):.2f}; model position LPS {x:.2f} {y:.2f} {z:.2f} mm"
    return text + (f"; why low: {lm.doubt}" if lm.doubt and lm.flag == "low" else "")


def _landmark_order(lmset: LandmarkSet) -> dict[str, int]:
    names = list(LANDMARKS_BY_VIEW.get(lmset.view, ()))
    for lm in lmset.landmarks:
        if lm.name not in names:
            names.append(lm.name)
    return {n: i for i, n in enumerate(names)}


def markups_dict(lmset: LandmarkSet, landmarks: list[Landmark] | None = None, name: str = "landmarks") -> dict:
    """The ``.mrk.json`` content (a dict ready for ``json.dumps``) for one point list.

    Args:
        lmset: the landmark set (source, view and model go into ``"cardiacLandmarks"``).
        landmarks: the points to include (default all of ``lmset``), written in the given order.
        name: point list name shown in Slicer.
    """
    lms = list(lmset.landmarks if landmarks is None else landmarks)
    points = []
    for idx, lm in enumerate(lms):
        cp: dict = {
            "id": str(idx + 1),
            "label": control_point_label(lm.name, lm.slice, lm.phase),
            "description": control_point_description(lm),
            "associatedNodeID": "",
        }
        pos = np.asarray(lm.position, float)
        found = bool(lm.found) and pos.shape == (3,) and bool(np.all(np.isfinite(pos)))
        if found:
            cp["position"] = [float(v) for v in pos]
        cp.update({
            "selected": bool(found and lm.flag == "high"),
            "locked": False,
            "visibility": True,
            "positionStatus": "defined" if found else "undefined",
        })
        points.append(cp)
    confidences = [float(lm.confidence) if lm.found else 0.0 for lm in lms]
    return {
        "@schema": SCHEMA_URL,
        "cardiacLandmarks": {"source": lmset.source, "view": lmset.view, "model": dict(lmset.model)},
        "markups": [{
            "type": "Fiducial",
            "name": name,
            "coordinateSystem": "LPS",
            "coordinateUnits": "mm",
            "locked": False,
            "fixedNumberOfControlPoints": False,
            "labelFormat": "%N-%d",
            "controlPoints": points,
            "measurements": [{
                "name": "confidence",
                "enabled": False,
                "units": "",
                "description": "landmark detection confidence in [0, 1] per control point (0 = absent); "
                               "high-confidence points are selected",
                "printFormat": "%.2f",
                "controlPointValues": confidences,
            }],
            "display": {
                "visibility": True,
                "opacity": 1.0,
                "color": list(LOW_COLOR),
                "selectedColor": list(HIGH_COLOR),
                "pointLabelsVisibility": True,
                "textScale": 2.5,
                "glyphType": "Sphere3D",
                "glyphScale": 2.0,
                "useGlyphScale": True,
            },
        }],
    }


def write_markups(
    lmset: LandmarkSet,
    outdir_or_path: str | Path,
    *,
    stem: str = "landmarks",
    if_exists: str = "backup",
) -> list[Path]:
    """Write the landmarks as Slicer markups point lists (see the module docstring for the layout).

    Args:
        lmset: the landmarks (LPS mm).
        outdir_or_path: a folder (one file per phase, created if missing) or a file path ending
            in ``.mrk.json`` (all phases in one point list).
        stem: file and point-list name stem in folder mode.
        if_exists: ``"backup"`` (default: keep the old file as ``<name>.bak-<timestamp>``),
            ``"overwrite"`` or ``"error"`` (:class:`~.errors.OutputExistsError`).

    Returns:
        The paths written (phase order); empty when ``lmset`` has no landmarks in folder mode.

    Raises:
        OutputExistsError: ``if_exists="error"`` and a target exists (nothing is written
            for that file; files for earlier phases may already have been written).
        OSError: the target is not writable.
    """
    target = Path(outdir_or_path)
    order = _landmark_order(lmset)

    def key(lm: Landmark) -> tuple:
        return (lm.phase, lm.slice, order.get(lm.name, 99), lm.name)

    if target.name.endswith(SUFFIX):
        lms = sorted(lmset.landmarks, key=key)
        name = target.name[: -len(SUFFIX)]
        text = json.dumps(markups_dict(lmset, lms, name=name), indent=2, allow_nan=False)
        return [atomic_write_text(target, text + "\n", if_exists=if_exists)]

    phases = sorted({lm.phase for lm in lmset.landmarks})
    written: list[Path] = []
    for t in phases:
        lms = sorted((lm for lm in lmset.landmarks if lm.phase == t), key=key)
        if len(phases) == 1:
            fname, name = f"{stem}{SUFFIX}", stem
        else:
            fname, name = f"{stem}_phase{t:02d}{SUFFIX}", f"{stem} phase {t}"
        text = json.dumps(markups_dict(lmset, lms, name=name), indent=2, allow_nan=False)
        written.append(atomic_write_text(target / fname, text + "\n", if_exists=if_exists))
    logger.info("wrote %d markups file(s) to %s", len(written), target)
    return written


def _load_json(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputNotFoundError(f"markups file not found: {path}") from exc
    if not raw.strip():
        raise InvalidMarkupsError(f"{path} is empty")
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMarkupsError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("markups"), list):
        raise InvalidMarkupsError(f"{path} is not a Slicer markups file (no 'markups' list)")
    schema = str(doc.get("@schema", ""))
    if schema and not SCHEMA_PATTERN.search(schema):
        logger.warning("%s declares schema %r; reading it as markups v1", path, schema)
    return doc


def _to_lps(pos, coordinate_system: str, units) -> np.ndarray | None:
    """Position list -> LPS mm array, or None when missing (Slicer writes "" for unset points)."""
    if not isinstance(pos, (list, tuple)) or len(pos) != 3:
        return None
    try:
        p = np.array([float(v) for v in pos])
    except (TypeError, ValueError):
        return None
    if not np.all(np.isfinite(p)):
        return None
    if coordinate_system.upper() == "RAS":
        p = geometry.ras_to_lps(p)
    unit = units[0] if isinstance(units, list) and units else units
    if unit == "um":
        p = p / 1000.0
    return p


def _infer_view(names: set[str]) -> str:
    named = names - {"APEX"}
    for view, lms in LANDMARKS_BY_VIEW.items():
        if named and named <= set(lms):
            return view
    return "unknown"


def _model_said(name: str, k: int, t: int, desc: str, conf_values, idx: int, pos) -> Landmark | None:
    """What the model said about a control point, from its description (written by :func:`markups_dict`, it
    travels with the point through Slicer): found or absent, confidence, flag and the model's position.
    None when the description is not ours (placed or cleared by a user, or a point we did not write)."""
    if desc.startswith("absent"):
        why = desc.partition("; why check: ")[2].strip()
        return Landmark(name, k, t, False, np.full(3, np.nan), np.full(3, np.nan), 0.0, "absent", doubt=why)
    m_conf = _CONF_RE.search(desc)
    if not m_conf:
        return None
    conf = float(m_conf.group("conf"))
    if conf_values is not None and idx < len(conf_values):
        try:
            v = float(conf_values[idx])
            if abs(v - conf) <= 0.0051:  # same point: take the unrounded value
                conf = v
        except (TypeError, ValueError):
            pass
    model_pos = None
    m_pos = _MODELPOS_RE.search(desc)
    if m_pos:
        try:
            model_pos = np.array([float(m_pos.group(a)) for a in "xyz"])
        except ValueError:
            model_pos = None
    if model_pos is None:  # no recorded position: a found point counts as the model's own
        model_pos = np.asarray(pos, float) if pos is not None else np.full(3, np.nan)
    m_why = _WHY_RE.search(desc)
    return Landmark(name, k, t, True, model_pos, np.full(3, np.nan), conf, m_conf.group("flag"),
                    doubt=m_why.group("why").strip() if m_why else "")


def _bare_name_place(path: Path, label: str, pos, series, phase: int | None = None) -> tuple[str, int, int] | None:
    """``(name, slice, phase)`` of a control point labelled with a landmark's name alone (``"AL-P"``, as a reader
    names a point placed in Slicer): the slice its position lies in, phase 0 of an image of one phase or ``phase``
    (the one the reader placed the points on, given by them: ``lax-track --phase``); None (with a warning saying
    what to write) for a label that is no landmark name, a cine without ``phase`` (no phase to tell), an undefined
    point or a point off the image's slices."""
    from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW

    name = label.strip()
    if name not in {n for names in LANDMARKS_BY_VIEW.values() for n in names}:
        logger.warning("%s: control point %r has no '<name> s<slice> p<phase>' label; skipped", path, label)
        return None
    if series is None or pos is None:
        return None
    if series.n_phases != 1 and phase is None:
        logger.warning("%s: control point %r names no phase of this %d-phase cine; skipped (label it '%s s<slice> "
                       "p<phase>', e.g. '%s s0 p0', or give the phase the points were placed on: lax-track --phase N)",
                       path, label, series.n_phases, name, name)
        return None
    k = int(round(float(series.lps_to_ijk(pos)[2])))
    if not 0 <= k < series.n_slices:
        logger.warning("%s: control point %r lies off the image's slices; skipped", path, label)
        return None
    return name, k, 0 if series.n_phases == 1 else int(phase)


def _read_one(path: Path, series, moved_tol_mm: float, bare_names: bool = False,
              bare_phase: int | None = None) -> tuple[dict, list[Landmark]]:
    doc = _load_json(path)
    meta = doc.get("cardiacLandmarks") if isinstance(doc.get("cardiacLandmarks"), dict) else {}
    out: list[Landmark] = []
    for mk in doc["markups"]:
        if not isinstance(mk, dict) or mk.get("type", "Fiducial") != "Fiducial":
            logger.warning("%s: skipping a %r markup (only point lists hold landmarks)", path,
                           mk.get("type") if isinstance(mk, dict) else mk)
            continue
        cps = mk.get("controlPoints") or []
        if not isinstance(cps, list):
            raise InvalidMarkupsError(f"{path}: 'controlPoints' is not a list")
        csys = str(mk.get("coordinateSystem", "LPS"))
        units = mk.get("coordinateUnits", "mm")
        conf_values = None
        for m in mk.get("measurements") or []:
            if isinstance(m, dict) and m.get("name") == "confidence" and isinstance(m.get("controlPointValues"), list):
                conf_values = m["controlPointValues"]
        for idx, cp in enumerate(cps):
            if not isinstance(cp, dict):
                continue
            parsed = parse_control_point_label(str(cp.get("label", "")))
            status = str(cp.get("positionStatus", "defined"))
            pos = _to_lps(cp.get("position"), csys, units) if status == "defined" else None
            if parsed is None and bare_names:
                parsed = _bare_name_place(path, str(cp.get("label", "")), pos, series, bare_phase)
                if parsed is None:
                    continue
            elif parsed is None:
                logger.warning("%s: control point %r has no '<name> s<slice> p<phase>' label; skipped",
                               path, cp.get("label"))
                continue
            name, k, t = parsed
            found = pos is not None
            desc = str(cp.get("description", ""))

            detected = _model_said(name, k, t, desc, conf_values, idx, pos)
            ijk = series.lps_to_ijk(pos) if (found and series is not None) else np.full(3, np.nan)
            out.append(corrected_landmark(detected, name, k, t, found, pos, ijk, user_marked=detected is None,
                                          tolerance_mm=moved_tol_mm,
                                          confirmed=desc.startswith(CONFIRMED_DESCRIPTION)))
    return meta, out


def read_markups(path: str | Path, series=None, *, moved_tol_mm: float = MOVED_TOL_MM,
                 bare_names: bool = False, bare_phase: int | None = None) -> LandmarkSet:
    """Read landmarks back from ``.mrk.json`` point lists (ours, or as re-saved by Slicer).

    Args:
        path: a ``.mrk.json`` file, or a folder: every ``*.mrk.json`` in it (sorted; backups
            ``*.bak-*`` are ignored) is read and merged.
        series: optional :class:`~.series.CMRSeries` of the landmarks; gives each found
            point its ``ijk`` (otherwise ``ijk`` is NaN).
        moved_tol_mm: a defined point farther than this from the model position recorded in
            its description counts as moved by the user.
        bare_names: also read a point labelled with a landmark's name alone (``"AL-P"``, as a reader names
            points placed by hand in Slicer), at the slice of its position and phase 0, on a ``series`` of one
            phase (training folders: :func:`CardiacLandmarksLib.training.train_lax.folder_samples`), or of a cine
            at ``bare_phase`` (the phase the reader placed them on: ``lax-track --phase``); on a cine without it
            such a point is skipped with a warning naming the label to write.
        bare_phase: see ``bare_names``.

    Returns:
        :class:`LandmarkSet` with positions in LPS mm (RAS files are converted). Per point:
        ``found`` = position defined; ``corrected`` = the user moved it, placed a point the
        model called absent, unset a point the model found, added a point with our label
        form, or confirmed it (description ``"confirmed by user"``: also ``confirmed``);
        corrected points get confidence 1 and flag ``"high"`` (or 0 / ``"absent"``
        when unset), the others keep the model's confidence and flag. Control points whose
        label is not ``"<name> s<slice> p<phase>"`` are skipped with a warning. ``source``,
        ``view`` and ``model`` come from the file's ``"cardiacLandmarks"`` object when
        present, else ``source`` = path, view inferred from the names, model ``{}``.
        ``measurements`` is empty (recompute with :func:`.measurements.rvi_measurements`).

    Raises:
        InputNotFoundError: ``path`` does not exist, or a folder without ``.mrk.json`` files.
        InvalidMarkupsError: empty file, invalid JSON, or not a markups document.
        MixedRunError: a folder whose ``run.json`` does not list every ``.mrk.json`` in it, or (no
            ``run.json``) whose markups name different sources or models: files of several runs.
    """
    path = Path(path)
    listed = None
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith(SUFFIX) and p.is_file())
        if not files:
            raise InputNotFoundError(f"no {SUFFIX} file in {path}")
        listed = run_files(path)
        if listed is not None:
            stray = [f.name for f in files if f.name not in listed]
            if stray:
                raise MixedRunError(
                    f"{path} mixes runs: {len(stray)} markups file(s) not written by the run in its run.json "
                    f"({', '.join(stray[:4])}{' ...' if len(stray) > 4 else ''}); move them away or read one file")
    elif path.exists():
        files = [path]
    else:
        raise InputNotFoundError(f"markups file not found: {path}")

    meta: dict = {}
    landmarks: list[Landmark] = []
    seen: set[tuple[str, int, int]] = set()
    origins: dict[tuple, list[str]] = {}
    for f in files:
        m, lms = _read_one(f, series, moved_tol_mm, bare_names, bare_phase)
        if m:
            key = (str(m.get("source") or ""), str((m.get("model") or {}).get("sha256") or ""))
            origins.setdefault(key, []).append(f.name)
        if len(origins) > 1 and listed is None:
            desc = "; ".join(f"{src or '?'}: {', '.join(names[:3])}" for (src, _), names in origins.items())
            raise MixedRunError(f"{path} mixes markups of different sources or models ({desc}); "
                                "read one run's files")
        meta = meta or m
        for lm in lms:
            key = (lm.name, lm.slice, lm.phase)
            if key in seen:
                logger.warning("%s: duplicate control point %s; keeping the first one", f,
                               control_point_label(*key))
                continue
            seen.add(key)
            landmarks.append(lm)
    view = meta.get("view") or _infer_view({lm.name for lm in landmarks})
    return LandmarkSet(source=str(meta.get("source") or path), view=view,
                       model=dict(meta.get("model") or {}), landmarks=landmarks)


def load_landmarks(path: str | Path, series=None, bare_names: bool = False, bare_phase: int | None = None):
    """A :class:`~.landmarks.LandmarkSet` from ``landmarks.json`` or ``.mrk.json`` file(s) (``bare_names`` and
    ``bare_phase``: :func:`read_markups`).

    Raises:
        InputNotFoundError: the path does not exist. InvalidMarkupsError: unreadable file.
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"landmarks not found: {p}")
    if p.is_file() and p.name.endswith(".json") and not p.name.endswith(SUFFIX):
        try:
            lmset = LandmarkSet.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidMarkupsError(f"{p} is not a landmarks.json file: {exc}") from exc
        if series is not None:
            for lm in lmset.landmarks:
                if lm.found:
                    lm.ijk = series.lps_to_ijk(lm.position)
        return lmset
    return read_markups(p, series, bare_names=bare_names, bare_phase=bare_phase)
