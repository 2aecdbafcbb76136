"""Validation of long-axis tracking against mask-derived labels (``mnms2/001``).

:func:`validate_tracking` tracks the landmarks derived from the ED mask through the 4CH cine
and compares the tracked ES points with the landmarks derived from the ES mask (mm), and
reports LV length on every phase and the longitudinal shortening. The ED and ES frames are
located in the cine by matching the separately stored ED/ES images (in ``mnms2/001`` they
are cine phases 23 and 8 of 25).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.lax.labels import derive_from_series
from CardiacLandmarksLib.lax.measurements import LVLengthCurve, lv_length_curve
from CardiacLandmarksLib.lax.tracking import TrackingConfig, track_landmarks

logger = logging.getLogger(__name__)


@dataclass
class TrackingValidation:
    """Result of :func:`validate_tracking`.

    Attributes:
        ed_phase, es_phase: cine phases of the labelled ED and ES frames.
        es_error_mm: ``{name: tracked ES - derived ES}`` distance in mm.
        es_confidence: tracking confidence per landmark on the ES phase.
        curve: LV-length curve of the tracked landmarks (ED = max length, ES = min length).
        curve_labelled: the same curve with ED/ES = the labelled phases.
        shortening_labelled_phases_pct: shortening with ED/ES = the labelled phases.
        shortening_derived_pct: shortening from the two mask-derived label sets alone.
        tracked: the tracked :class:`LandmarkSet`; series: the cine.
        reference: ``{phase: {name: (i, j)}}`` derived labels (for figures).
    """

    ed_phase: int
    es_phase: int
    es_error_mm: dict[str, float]
    es_confidence: dict[str, float]
    curve: LVLengthCurve
    curve_labelled: LVLengthCurve
    shortening_labelled_phases_pct: float
    shortening_derived_pct: float
    tracked: LandmarkSet
    series: object = field(repr=False)
    reference: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {"ed_phase": self.ed_phase, "es_phase": self.es_phase,
                "es_error_mm": self.es_error_mm, "mean_es_error_mm": float(np.mean(list(self.es_error_mm.values()))),
                "es_confidence": self.es_confidence, "curve": self.curve.to_dict(),
                "shortening_labelled_phases_pct": self.shortening_labelled_phases_pct,
                "shortening_derived_pct": self.shortening_derived_pct}


def validate_tracking(cine_path: Path, ed_image: Path, ed_mask: Path, es_image: Path, es_mask: Path,
                      view: str = "4ch", cfg: TrackingConfig | None = None, labels: dict | None = None,
                      progress=None) -> TrackingValidation:
    """Track from the ED labels and compare with the ES labels (see module docstring).

    Raises:
        InputNotFoundError (missing files) and the loaders' errors.
    """
    cine = load_series(cine_path)
    frames = cine.pixels[:, 0]
    derived, phases = {}, {}
    for key, img_p, mask_p in (("ED", ed_image, ed_mask), ("ES", es_image, es_mask)):
        img = load_series(img_p)
        derived[key] = derive_from_series(img, load_series(mask_p), view, labels=labels).points
        phases[key] = int(np.argmin([np.abs(f - img.pixels[0, 0]).mean() for f in frames]))
    ed, es = phases["ED"], phases["ES"]
    seed = LandmarkSet(str(cine.source), view, {"name": "mask-derived ED labels"})
    for name, ij in derived["ED"].items():
        ijk = np.r_[ij, 0.0]
        seed.landmarks.append(Landmark(name, 0, ed, True, cine.ijk_to_lps(ijk), ijk, 1.0, "high", corrected=True))
    tracked = track_landmarks(cine, seed, k=0, cfg=cfg or TrackingConfig(), progress=progress)
    err, conf = {}, {}
    for name, ij in derived["ES"].items():
        lm = tracked.get(name, 0, es)
        err[name] = float(np.linalg.norm(lm.position - cine.ijk_to_lps(np.r_[ij, 0.0])))
        conf[name] = float(lm.confidence)
    curve = lv_length_curve(tracked, view, 0, n_phases=cine.n_phases)
    given = lv_length_curve(tracked, view, 0, ed=ed, es=es, n_phases=cine.n_phases)

    def length(pts: dict) -> float:
        names = list(pts)
        a, b = [n for n in names if n != "APEX"]
        mid = (cine.ijk_to_lps(np.r_[pts[a], 0.0]) + cine.ijk_to_lps(np.r_[pts[b], 0.0])) / 2
        return float(np.linalg.norm(cine.ijk_to_lps(np.r_[pts["APEX"], 0.0]) - mid))

    l_ed, l_es = length(derived["ED"]), length(derived["ES"])
    return TrackingValidation(ed, es, err, conf, curve, given, float(given.shortening_pct), 100.0 * (l_ed - l_es) / l_ed,
                              tracked, cine, {ed: derived["ED"], es: derived["ES"]})


def validate_mnms2(root: Path, cfg: TrackingConfig | None = None, progress=None) -> TrackingValidation:
    """:func:`validate_tracking` on ``<root>/mnms2/001`` (4CH, M&Ms-2 labels 1/2/3)."""
    d = Path(root) / "mnms2" / "001"
    return validate_tracking(d / "001_LA_CINE.nii.gz", d / "001_LA_ED.nii.gz", d / "001_LA_ED_gt.nii.gz",
                             d / "001_LA_ES.nii.gz", d / "001_LA_ES_gt.nii.gz", "4ch", cfg, progress=progress)


def evaluate_lax_folder(folder: Path, view: str, labels: dict | None = None, device: str = "auto"):
    """The installed long-axis landmark model of ``view`` on a site's labelled long-axis images (``evaluate --view``).

    Every ``NAME`` + ``NAME_gt`` pair of ``folder`` (:func:`CardiacLandmarksLib.datasets.sax.paired_cases`; masks in
    ``labels``, default M&Ms-2's LV 1, myocardium 2, RV 3, checked first) goes through the shipped long-axis pipeline
    and is scored on every frame whose mask gives the view's landmarks, in LPS mm
    (:func:`CardiacLandmarksLib.evaluation.suite.lax_row`; Xue et al., Radiology: AI 2021, landmark L2).

    Returns:
        ``(model, row)``: the :class:`~CardiacLandmarksLib.models.loader.LoadedModel` and the
        :class:`~CardiacLandmarksLib.evaluation.suite.SuiteRow`.

    Raises:
        InputNotFoundError: the folder does not exist or holds no labelled pair.
        LabelConventionError: masks that do not follow ``labels`` (before any model runs).
        ModelIntegrityError: no installed model for ``view``.
    """
    from CardiacLandmarksLib.core.errors import InputNotFoundError
    from CardiacLandmarksLib.datasets.sax import paired_cases
    from CardiacLandmarksLib.evaluation.suite import lax_row
    from CardiacLandmarksLib.lax.labels import MNMS2_LAX_LABELS, lax_label_error, lax_mask_problem
    from CardiacLandmarksLib.models.loader import load_model

    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFoundError.at(folder, "evaluation data folder")
    labels = dict(labels or MNMS2_LAX_LABELS)
    cases = paired_cases(folder, labels)
    if not cases:
        raise InputNotFoundError(f"no labelled long-axis image in {folder} (NAME.nii.gz, .nii or .nrrd with its "
                                 "mask NAME_gt beside it)")
    problems = [f"{c.mask.name}: {text}" for c in cases  # another label convention: named before any model runs
                if (text := lax_mask_problem(load_series(c.mask).pixels, labels))]
    if problems:
        raise lax_label_error(problems, len(cases), labels)
    model = load_model(view, device)
    row = lax_row(f"{folder.name} {view.upper()}", [(c.image, c.mask, labels, c.patient) for c in cases], model,
                  seen_by=f"{model.name} {model.version}: see its card for the data it was trained on",
                  notes=[f"{len(cases)} image(s) of {len({c.patient for c in cases})} patient(s)"], view=view)
    return model, row
