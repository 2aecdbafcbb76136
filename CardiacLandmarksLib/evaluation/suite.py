"""One evaluation suite for every SAX / perfusion model (issue 16): one row per labelled data set.

Rows (each names the cases used and ``n``; a set missing under the data root gives a row with ``n = 0`` and a
note):

* ``ACDC test``: the fixed test split (:data:`CardiacLandmarksLib.datasets.splits.ACDC_TEST_PATIENTS`, 20
  patients, ED and ES), never used for training, calibration or model choice; and ``ACDC unseen-by-v1.3``, its
  15 challenge test patients (:data:`~CardiacLandmarksLib.datasets.splits.UNSEEN_BY_V1_3`), the part no
  bundled model has seen at all (the other 5 were validation patients of the models up to v1.3.1).
* ``MS-CMRSeg LGE``: 5 LGE stacks, labels 1 RV / 2 myocardium / 3 LV cavity (checked: label 3 is enclosed by 2),
  detected by the shipped LGE model (since sax_unet_lge v1.6.0 fine-tuned on all five: a row of seen data).
* ``MS-CMRSeg LGE (leave-one-out)``: the same stacks, each detected by the fold model fine-tuned with the same
  recipe on the other four (Xue et al. 2021 fine-tuned per sequence; the issue allows leave-one-out for these 5
  subjects): the estimate of the shipped LGE model on an unseen LGE centre. The fold models live in
  :func:`mscmr_folds_root` (evaluation only, not used by the tool).
* ``EMIDEC LGE``: the 20 LGE stacks of the fixed EMIDEC test split (:data:`~CardiacLandmarksLib.datasets.splits.EMIDEC_TEST_CASES`), without geometry (the export lost the spacing; 1 mm placeholders). The image is
  given a nominal in-plane pixel size of :data:`EMIDEC_NOMINAL_MM` (EMIDEC acquisitions are about 1.25-2 mm) so
  that the heart reaches the network at roughly its trained scale, and **errors are reported in pixels** (true mm
  = px x 1.25-2); gross errors are > 10 mm at the nominal size (6.7 px). No RV label: C-LV and LV / myocardium
  Dice only (myocardium = healthy + infarct + MVO); slice detection and RVI columns are n/a.
* ``M&Ms-2 001 SAX``: one subject, ED and ES (labels 1 LV / 2 myocardium / 3 RV: the order differs from ACDC). Its
  header has x and y negated (an LPS/RAS mix-up: in LPS the RV lies left of and behind the LV), a rotation about
  the head-foot axis that the superior-up SAX canvas and the head-based A/I naming do not feel.
* ``Sunnybrook``: one cine (20 phases); C-LV against the area centroid of every expert endocardial contour, LV
  cavity Dice against the filled contour, myocardium Dice where the epicardial contour exists too.
* ``perfusion val`` / ``perfusion train (seen)``: myocardium and blood-pool Dice of the perfusion U-Net on every
  labelled frame of the patients its card names as validation / training
  (:func:`CardiacLandmarksLib.training.train_perfusion.evaluate_cases`); the training row is marked as seen.
* ``perfusion GE (unseen)``: one GE 1.5 T first-pass series with expert RV / LV cavity / myocardium masks that no
  model has seen, through the whole perfusion analysis (:func:`perfusion_ge_row`): Dice, C-LV, and the RV
  insertions the pipeline anchors the AHA sectors at, with their flags.

Columns (:class:`SuiteRow`): slice detection (every landmark of the slice found and none extra, Xue et al.,
Radiology: AI 2021), L2 error per landmark (mean / median, mm in the input's LPS geometry), |RVI-angle difference|
(deg), Dice per structure of the SAX model's segmentation head (mean over stacks, 3D per stack, on the input
grid), and the PHD-Net flags as shipped (:mod:`CardiacLandmarksLib.confidence.phdnet`): share of gross errors
(> 10 mm) flagged low and mean error of high-confidence points vs all points. Landmark references are derived
from the expert masks (:mod:`CardiacLandmarksLib.sax.labels`); the detection is the shipped pipeline
(:func:`CardiacLandmarksLib.sax.pipeline.detect_landmarks`, mirror TTA and PHD-Net confidence on).

Under the table, the SAX rows with at least :data:`MIN_CI_PATIENTS` patients get 95% intervals of slice detection
and of each landmark's mean error, resampling patients
(:func:`~CardiacLandmarksLib.evaluation.sax.patient_bootstrap_ci`): with 20 test patients a figure a few points
from its target may or may not be a real miss, and the interval says which.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from CardiacLandmarksLib.core.errors import InputNotFoundError, InvalidImageError
from CardiacLandmarksLib.core.preprocessing import model_canvases
from CardiacLandmarksLib.datasets.sax import (
    EMIDEC_MYO_EXTRA,
    EMIDEC_NOMINAL_MM,
    SAX_NAMES,
    Case,
    acdc_cases,
    emidec_cases,
    mscmr_cases,
    test_cases,
)
from CardiacLandmarksLib.datasets.splits import ACDC_FROM_TRAINING, EMIDEC_TEST_CASES, UNSEEN_BY_V1_3
from CardiacLandmarksLib.evaluation.confidence import GROSS_MM
from CardiacLandmarksLib.evaluation.sax import (
    CI_RESAMPLES,
    MIN_CI_PATIENTS,
    CaseResult,
    evaluate_case,
    patient_bootstrap_ci,
    rvi_angle_difference,
    summarise,
)
from CardiacLandmarksLib.io.jsonsafe import dumps_strict, finite_json
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.sax.labels import MNMS2_LABELS

logger = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
STRUCTURES = ("RV", "myo", "LV")  # segmentation classes 1, 2, 3 of the SAX model
ROW_NAMES = ("ACDC test", "ACDC unseen-by-v1.3", "MS-CMRSeg LGE", "MS-CMRSeg LGE (leave-one-out)", "EMIDEC LGE",
             "M&Ms-2 001 SAX", "Sunnybrook", "perfusion val", "perfusion train (seen)", "perfusion GE (unseen)")
#: the rows of the bundled long-axis (4CH) model, a table of their own (landmarks AL-P, IS-P, APEX). Every labelled
#: long-axis frame in the shared data trained it, so both rows are of seen data; its held-out figures are the
#: leave-one-subject-out ones of its card
LAX_ROW_NAMES = ("M&Ms-2 001 4CH (seen)", "UK Biobank 4CH silver (seen)")
LAX_NAMES = ("AL-P", "IS-P", "APEX")


def mscmr_folds_root() -> Path:
    """Folder of the MS-CMRSeg leave-one-out fold models: ``<subject>/sax_unet.pt`` + ``sax_unet.json`` per left-out
    subject (``Resources/Evaluation/mscmr_loo``; ``CARDIAC_LANDMARKS_FOLDS`` overrides it)."""
    import os

    from CardiacLandmarksLib.core.config import REPO_ROOT

    env = os.environ.get("CARDIAC_LANDMARKS_FOLDS")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "Resources" / "Evaluation" / "mscmr_loo"

_NAN = float("nan")


@dataclass
class SuiteRow:
    """One data set's figures. NaN = not measurable on this set (no such label), never 0.

    Attributes:
        name: row name (one of :data:`ROW_NAMES`).
        cases: ids of the cases (stacks, series or images) used; patients: the patients / subjects they come from.
        n_cases: ``len(cases)``; n_slices: slice images compared (slice x phase).
        unit: unit of the L2 errors, ``"mm"`` or ``"px"`` (EMIDEC: no geometry).
        seen_by: which bundled models saw these cases, and for what.
        slice_detection: share of slices with exactly the reference's landmarks found.
        landmarks: per landmark ``{"n_present", "detection_rate", "false_positive_rate", "mean", "median"}``.
        rvi_angle_deg: mean |angle difference| of A-RVI about C-LV (deg).
        dice: mean Dice per structure (:data:`STRUCTURES`); dice_median the same as medians.
        n_points: found points compared; n_gross / gross_flagged_low: errors > gross_limit and the share flagged low.
        n_absent: the reference's slots (landmark x slice) without the landmark, of the row's landmarks;
        n_extra / extra_flagged_low: points found there and the share flagged low: a reader who checks only the low
            points keeps the others.
        absences: per landmark ``{"missed", "missed_doubt", "absent", "absent_doubt"}``: the reference's landmarks
            called absent and how many of them carry a doubt (a point the network nearly found: the
            reader is pointed to it), and the reference's absences called absent and how many of those carry one
            (a slice looked at for nothing).
        mean_error_all / mean_error_high: mean L2 of all compared points / of those flagged high; high_vs_all their
            ratio (target <= 0.8); fraction_high: share flagged high.
        ci95: 95% intervals of the row's figures over its patients
            (:func:`~CardiacLandmarksLib.evaluation.sax.patient_bootstrap_ci`): ``{"slice_detection": [lo, hi],
            "<landmark>": [lo, hi] (mean L2)}``; empty on rows with fewer than :data:`MIN_CI_PATIENTS` patients.
        notes: how the row was measured, and deviations.
    """

    name: str
    cases: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    n_cases: int = 0
    n_slices: int = 0
    unit: str = "mm"
    seen_by: str = ""
    slice_detection: float = _NAN
    landmarks: dict = field(default_factory=dict)
    rvi_angle_deg: float = _NAN
    dice: dict = field(default_factory=lambda: {s: _NAN for s in STRUCTURES})
    dice_median: dict = field(default_factory=lambda: {s: _NAN for s in STRUCTURES})
    n_points: int = 0
    gross_limit: float = GROSS_MM
    n_gross: int = 0
    gross_flagged_low: float = _NAN
    n_absent: int = 0
    n_extra: int = 0
    extra_flagged_low: float = _NAN
    absences: dict = field(default_factory=dict)
    mean_error_all: float = _NAN
    mean_error_high: float = _NAN
    high_vs_all: float = _NAN
    fraction_high: float = _NAN
    ci95: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN -> None)."""
        return finite_json(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> SuiteRow:
        """Inverse of :meth:`to_dict` (None -> NaN)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: _none_to_nan(v) for k, v in d.items() if k in known})

    @property
    def found(self) -> float:
        """Share of the reference's landmarks that were found, all landmarks of the row pooled."""
        n = sum(v["n_present"] for v in self.landmarks.values())
        return sum(v["detection_rate"] * v["n_present"] for v in self.landmarks.values()) / n if n else _NAN


@dataclass
class SuiteTable:
    """The suite: rows, the models evaluated (name -> version, SHA256), the data root and the run time (s)."""

    rows: list[SuiteRow]
    models: dict = field(default_factory=dict)
    data_root: str = ""
    seconds: float = 0.0
    #: the long-axis model's rows (:data:`LAX_ROW_NAMES`; their landmarks AL-P, IS-P, APEX): a table of their own
    lax_rows: list[SuiteRow] = field(default_factory=list)

    def row(self, name: str) -> SuiteRow:
        """The row called ``name`` (KeyError if absent)."""
        for r in [*self.rows, *self.lax_rows]:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"models": self.models, "data_root": self.data_root, "seconds": round(self.seconds, 1),
                "gross_error_mm": GROSS_MM, "rows": [r.to_dict() for r in self.rows],
                "lax_rows": [r.to_dict() for r in self.lax_rows]}

    def to_json(self) -> str:
        return dumps_strict(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> SuiteTable:
        """Inverse of :meth:`to_dict` (e.g. to re-render a saved ``--suite --json`` run)."""
        return cls([SuiteRow.from_dict(r) for r in d["rows"]], d.get("models", {}), d.get("data_root", ""),
                   float(d.get("seconds", 0.0)), [SuiteRow.from_dict(r) for r in d.get("lax_rows", [])])


def _none_to_nan(obj):
    if obj is None:
        return _NAN
    if isinstance(obj, dict):
        return {k: _none_to_nan(v) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------- segmentation head


def segmentation_on_input(model, series, phase: int = 0, slices: list[int] | None = None) -> np.ndarray:
    """Arg-max labels of the SAX model's segmentation head on the input grid, ``[K, j, i]`` uint8.

    Classes 0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity (``datasets.sax.SEG_CLASSES``). Each slice
    of ``phase`` is resampled onto the canvas as for detection, segmented (mirror TTA), and the class
    probabilities are interpolated back onto the input pixels (linear) before the arg-max; input pixels outside
    the canvas are background. ``slices``: which k (default all; the output then has only those, in order).
    """
    ks = list(range(series.n_slices)) if slices is None else list(slices)
    canv, grids = [], []
    for k in ks:
        img, grid = model_canvases(series, k, [phase], getattr(model, "in_channels", 1))
        canv.append(img[0])
        grids.append(grid)
    _, seg = model.predict_maps(np.stack(canv), tta=True, segmentation=True)
    if seg is None:
        raise ValueError(f"model {model.name} has no segmentation head")
    rows, cols = series.shape_ji
    jj, ii = np.mgrid[0:rows, 0:cols].astype(float)
    out = np.zeros((len(ks), rows, cols), np.uint8)
    for n, grid in enumerate(grids):
        xy = grid.ijk_to_canvas(np.stack([ii, jj], -1))
        coords = np.stack([xy[..., 1], xy[..., 0]])
        probs = np.stack([ndimage.map_coordinates(seg[n, c], coords, order=1, mode="constant", cval=float(c == 0))
                          for c in range(seg.shape[1])])
        out[n] = probs.argmax(0)
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; NaN when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = int(a.sum() + b.sum())
    return _NAN if s == 0 else float(2 * (a & b).sum() / s)


def expert_classes(mask: np.ndarray, labels: dict, myo_extra: tuple[int, ...] = ()) -> np.ndarray:
    """Expert mask ``[...]`` mapped to the segmentation classes (1 RV, 2 myocardium, 3 LV cavity, 0 other)."""
    m = np.rint(np.asarray(mask)).astype(np.int16)
    out = np.zeros(m.shape, np.uint8)
    out[m == labels["rv"]] = 1
    out[np.isin(m, (labels["myo"], *myo_extra))] = 2
    out[m == labels["lv"]] = 3
    return out


def stack_dice(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """3D Dice per structure of two class stacks; NaN where the reference has no such structure at all."""
    return {s: (dice(pred == c, ref == c) if (ref == c).any() else _NAN) for c, s in enumerate(STRUCTURES, start=1)}


# --------------------------------------------------------------------------- SAX rows


@dataclass
class _CaseRun:
    case: Case
    result: CaseResult
    dice: dict


def run_sax_cases(cases: list[Case], model, progress: ProgressFn | None = None, row: str = "",
                  nominal_mm: float | None = None, myo_extra: tuple[int, ...] = ()) -> list[_CaseRun]:
    """Detection (shipped pipeline) and segmentation of every case, compared with the expert mask.

    ``nominal_mm``: in-plane pixel size given to images without geometry (EMIDEC); errors are then in pixels.
    """
    from CardiacLandmarksLib.sax.pipeline import detect_landmarks

    runs = []
    for n, case in enumerate(cases):
        series = load_series(case.image)
        if nominal_mm is not None:
            series = replace(series, spacing=(nominal_mm, nominal_mm, float(series.spacing[2])))
        res = evaluate_case(case, lambda s: detect_landmarks(s, model=model), series=series)
        if nominal_mm is not None:
            res.errors = {k: [e / nominal_mm for e in v] for k, v in res.errors.items()}
        ref = expert_classes(load_series(case.mask).pixels[0], case.labels, myo_extra)
        runs.append(_CaseRun(case, res, stack_dice(segmentation_on_input(model, series), ref)))
        if progress is not None:
            progress(row, n + 1, len(cases))
    return runs


def flag_figures(errors: np.ndarray, flags: np.ndarray, gross: float) -> dict:
    """PHD-Net flag figures of compared points: errors ``[n]`` and their flags ``[n]`` ("high" / "low")."""
    errors, high = np.asarray(errors, float), np.asarray(flags) == "high"
    g = errors > gross
    return {
        "n_points": int(errors.size), "n_gross": int(g.sum()),
        "gross_flagged_low": float((g & ~high).sum() / g.sum()) if g.any() else _NAN,
        "mean_error_all": float(errors.mean()) if errors.size else _NAN,
        "mean_error_high": float(errors[high].mean()) if high.any() else _NAN,
        "high_vs_all": float(errors[high].mean() / errors.mean()) if high.any() and errors.mean() > 0 else _NAN,
        "fraction_high": float(high.mean()) if errors.size else _NAN,
    }


def sax_row(name: str, runs: list[_CaseRun], unit: str = "mm", gross: float = GROSS_MM, seen_by: str = "",
            notes: list[str] | None = None, landmarks: tuple[str, ...] = SAX_NAMES) -> SuiteRow:
    """A row from per-case runs; ``landmarks``: those the reference can hold (others n/a, and no slice detection)."""
    results = [r.result for r in runs]
    s = summarise(results)
    errs = np.concatenate([np.asarray(r.errors[n], float) for r in results for n in landmarks]) if results else np.zeros(0)
    flags = np.concatenate([np.asarray(r.flags[n], str) for r in results for n in landmarks]) if results else np.zeros(0, str)
    row = SuiteRow(name, [r.result.stem for r in runs], list(dict.fromkeys(r.case.patient for r in runs)), len(runs),
                   s["slices"]["n"], unit, seen_by, gross_limit=gross, notes=list(notes or []))
    if landmarks == SAX_NAMES:
        row.slice_detection = s["slices"]["detection_rate"] if s["slices"]["n"] else _NAN
        row.rvi_angle_deg = s["RVI angle"]["mean_abs_diff_deg"]
    for n in landmarks:
        row.landmarks[n] = {"n_present": s[n]["n_present"], "detection_rate": s[n]["detection_rate"],
                            "false_positive_rate": s[n]["false_positive_rate"],
                            "mean": s[n]["mean_error_mm"], "median": s[n]["median_error_mm"]}
    for k, v in flag_figures(errs, flags, gross).items():
        setattr(row, k, v)
    row.n_absent = sum(r.absent_ref[n] for r in results for n in landmarks)
    row.n_extra = sum(s[n]["n_extra"] for n in landmarks)
    row.extra_flagged_low = sum(s[n]["n_extra_low"] for n in landmarks) / row.n_extra if row.n_extra else _NAN
    row.absences = {n: {"missed": sum(r.missed[n] for r in results),
                        "missed_doubt": sum(r.missed_doubt[n] for r in results),
                        "absent": sum(r.absent_ref[n] - r.false_pos[n] for r in results),
                        "absent_doubt": sum(r.absent_doubt[n] for r in results)} for n in landmarks}
    row.ci95 = patient_bootstrap_ci(results, landmarks, slices=landmarks == SAX_NAMES)
    for st in STRUCTURES:
        vals = np.array([r.dice[st] for r in runs], float)
        vals = vals[np.isfinite(vals)]
        row.dice[st] = float(vals.mean()) if vals.size else _NAN
        row.dice_median[st] = float(np.median(vals)) if vals.size else _NAN
    return row


def acdc_test_cases(root: Path) -> list[Case]:
    """The ED and ES stacks of the fixed ACDC test split under ``root`` (the suite's only ACDC cases)."""
    return test_cases(acdc_cases(root)) if Path(root).exists() else []


def acdc_rows(root: Path, model, progress: ProgressFn | None = None, max_cases: int | None = None) -> list[SuiteRow]:
    """``ACDC test`` (20 patients) and ``ACDC unseen-by-v1.3`` (its 15 challenge test patients), one run."""
    cases = acdc_test_cases(root)
    cases = cases[:max_cases] if max_cases else cases
    runs = run_sax_cases(cases, model, progress, "ACDC test")
    note = "ED and ES stacks; A/I-RVI named by the display convention (ACDC has no orientation)"
    tr = model.card.get("training", {})
    if tr.get("calibration_patients"):  # v1.4 on: the U-Net itself neither trained, chose nor calibrated on the split
        start = (tr.get("config") or {}).get("init_weights")
        seen = ("sax_unet: not trained, chosen or calibrated on"
                + (" (but fine-tuned from v1.3.1, whose epoch was chosen on 5 of them)" if start else "")
                + "; sax_phdnet (weights unchanged since v1.0.0): 5 (" + ", ".join(ACDC_FROM_TRAINING)
                + ") were its validation patients; the other 15 never seen by either")
    else:
        seen = ("sax_unet / sax_phdnet: not trained on any; 5 (" + ", ".join(ACDC_FROM_TRAINING) + ") were their "
                "validation patients (epoch choice, threshold calibration); the other 15 never seen")
    test = sax_row("ACDC test", runs, notes=[note], seen_by=seen)
    unseen = sax_row("ACDC unseen-by-v1.3", [r for r in runs if r.case.patient in UNSEEN_BY_V1_3], notes=[note],
                     seen_by="never seen by any bundled model (ACDC challenge test patients)")
    return [test, unseen]


MSCMR_NOTE = "LGE; real geometry, A/I-RVI by anatomy (A-RVI the insertion nearer the head); labels 1 RV, 2 myocardium, 3 LV cavity"


def _trained_sets(model) -> tuple[set[str], set[str]]:
    """``(sets, left-out patients)`` of a SAX model's training config (its card)."""
    cfg = (model.card.get("training") or {}).get("config") or {}
    sets = {s.strip() for s in str(cfg.get("sets") or "").split(",") if s.strip()}
    left = {s.strip() for s in str(cfg.get("leave_out") or "").split(",") if s.strip()}
    return sets, left


def mscmr_row(root: Path, model, progress: ProgressFn | None = None, max_cases: int | None = None) -> SuiteRow:
    """``MS-CMRSeg LGE``: the five subjects (``subjectN_DE.nii.gz`` + ``_manual``, labels 1 RV, 2 myocardium, 3 LV)
    detected by ``model`` (the bundled LGE model), scored against landmarks derived from the expert masks
    (:mod:`CardiacLandmarksLib.labels`); the row says whether the model was trained on them (its card's
    ``training``), in which case the leave-one-out row (:func:`mscmr_loo_row`) is the one for unseen subjects.
    ``max_cases`` keeps the first N (tests); an absent folder gives an empty row.
    """
    cases = (mscmr_cases(root) if root.exists() else [])[:max_cases]
    sets, left = _trained_sets(model)
    if "mscmr" in sets:
        seen = (f"{model.name} v{model.version}: TRAINED ON "
                + ("all five" if not left else f"all but {', '.join(sorted(left))}")
                + " (fine-tuned on them); the leave-one-out row is the estimate for unseen subjects")
    else:
        seen = (f"{model.name} v{model.version}: not trained or calibrated on (reported on in earlier cards; the choice "
                "of the LGE model for LGE series was made after seeing this row)")
    return sax_row("MS-CMRSeg LGE", run_sax_cases(cases, model, progress, "MS-CMRSeg LGE"), seen_by=seen,
                   notes=[MSCMR_NOTE])


def mscmr_loo_row(root: Path, device: str, progress: ProgressFn | None = None, max_cases: int | None = None,
                  folds: Path | None = None) -> tuple[SuiteRow, dict[str, dict]]:
    """``MS-CMRSeg LGE (leave-one-out)``: each subject detected by the fold model that never saw it.

    Args:
        root: the MS-CMRSeg folder (``subjectN_DE.nii.gz`` + ``_manual``).
        device: ``"cpu"`` / ``"cuda"`` (resolved).
        folds: fold models, ``<subject>/sax_unet.{pt,json}`` (default :func:`mscmr_folds_root`).

    Returns:
        ``(row, {"mscmr_loo/<subject>": {"version", "sha256"}})``; a subject without a fold model is left out of the
        row and named in its notes.

    Raises:
        ModelIntegrityError: a fold model is corrupt, or its card says it trained on the subject it is asked to
            detect (its ``leave_out`` is another subject).
    """
    from CardiacLandmarksLib.core.errors import ModelIntegrityError
    from CardiacLandmarksLib.models.loader import load_model

    folds = Path(folds or mscmr_folds_root())
    cases = (mscmr_cases(root) if root.exists() else [])[:max_cases]
    runs, models, missing = [], {}, []
    for n, case in enumerate(cases):
        fold = folds / case.patient
        if not (fold / "sax_unet.pt").exists():
            missing.append(case.patient)
            continue
        model = load_model("sax", device, models_dir=fold)
        sets, left = _trained_sets(model)
        if left != {case.patient}:
            raise ModelIntegrityError(f"{fold}: the fold model for {case.patient} left out {sorted(left) or 'nothing'}")
        runs += run_sax_cases([case], model, None, "MS-CMRSeg LGE (leave-one-out)")
        models[f"mscmr_loo/{case.patient}"] = {"version": model.version, "sha256": model.sha256}
        if progress is not None:
            progress("MS-CMRSeg LGE (leave-one-out)", n + 1, len(cases))
    notes = [MSCMR_NOTE, "each subject detected by a fold model fine-tuned with the shipped LGE model's recipe on the "
             "other four (the sets the shipped model trained on, minus that subject); thresholds calibrated by each fold "
             "on ACDC / EMIDEC calibration patients, as the shipped model's"]
    if missing:
        notes.append(f"no fold model for {', '.join(missing)} under {folds}: left out of this row")
    row = sax_row("MS-CMRSeg LGE (leave-one-out)", runs, notes=notes,
                  seen_by="each subject: never seen by its fold model (trained on the other four, ACDC, EMIDEC and "
                          "perfusion frames); the shipped sax_unet_lge trained on all five")
    return row, models


def emidec_row(root: Path, model, progress: ProgressFn | None = None, max_cases: int | None = None) -> SuiteRow:
    """``EMIDEC LGE``: the 20 cases of the fixed test split (:data:`EMIDEC_TEST_CASES`), C-LV error and LV / myocardium
    Dice. The files carry no geometry, so they are run at a nominal :data:`EMIDEC_NOMINAL_MM` mm per pixel and errors
    are in pixels; there is no RV label, so RV insertions are not scored.
    """
    cases = [c for c in (emidec_cases(root) if root.exists() else []) if c.patient in EMIDEC_TEST_CASES][:max_cases]
    runs = run_sax_cases(cases, model, progress, "EMIDEC LGE", nominal_mm=EMIDEC_NOMINAL_MM,
                         myo_extra=EMIDEC_MYO_EXTRA)
    return sax_row("EMIDEC LGE", runs, unit="px", gross=GROSS_MM / EMIDEC_NOMINAL_MM, landmarks=("C-LV",),
                   seen_by=f"{model.name} v{model.version} on the fixed EMIDEC test split (20 cases): never trained, "
                           "chosen or calibrated on (SAX v1.4 weights trained on 72 and chose / calibrated on 8 other "
                           "EMIDEC cases; earlier models saw none; the LGE model for LGE series was chosen after seeing "
                           "this row)",
                   notes=[f"no geometry in the files: run at a nominal {EMIDEC_NOMINAL_MM} mm/px, errors in px "
                          "(x 1.25-2 for mm); gross = 10 mm at the nominal size",
                          "no RV label: C-LV and LV / myocardium Dice only (myocardium = healthy + infarct + MVO); "
                          "RV insertions the model finds are not scored"])


def mnms2_row(root: Path, model, progress: ProgressFn | None = None, max_cases: int | None = None) -> SuiteRow:
    """``M&Ms-2 001 SAX``: subject 001's ED and ES stacks (``001_SA_{ED,ES}.nii.gz`` + ``_gt``, labels 1 LV cavity,
    2 myocardium, 3 RV), detected by ``model`` and scored against landmarks derived from the masks (LPS mm, scanner
    geometry).
    """
    cases = [Case("mnms2-001", root / f"001_SA_{p}.nii.gz", root / f"001_SA_{p}_gt.nii.gz", dict(MNMS2_LABELS))
             for p in ("ED", "ES") if (root / f"001_SA_{p}_gt.nii.gz").exists()][:max_cases]
    return sax_row("M&Ms-2 001 SAX", run_sax_cases(cases, model, progress, "M&Ms-2 001 SAX"),
                   seen_by="not trained or calibrated on by the SAX models (reported on in earlier cards)",
                   notes=["one subject, ED and ES; scanner geometry, but x and y negated in the header (an LPS/RAS "
                          "mix-up: the RV lies left and behind the LV), which the superior-up SAX canvas and "
                          "head-based A/I naming do not feel; labels 1 LV cavity, 2 myocardium, 3 RV"])


def polygon_centroid(xy: np.ndarray) -> np.ndarray:
    """Area centroid ``(x, y)`` of a closed polygon ``[n, 2]`` (shoelace formula)."""
    x, y = np.asarray(xy, float).T
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    a = cross.sum() / 2.0
    if abs(a) < 1e-9:
        return np.array([x.mean(), y.mean()])
    return np.array([((x + x1) * cross).sum() / (6 * a), ((y + y1) * cross).sum() / (6 * a)])


def fill_polygon(xy: np.ndarray, shape_ji: tuple[int, int]) -> np.ndarray:
    """Boolean ``[j, i]`` mask of the pixel centres inside polygon ``xy`` (x = column, y = row)."""
    from matplotlib.path import Path as MplPath

    jj, ii = np.mgrid[0 : shape_ji[0], 0 : shape_ji[1]]
    return MplPath(xy).contains_points(np.stack([ii.ravel(), jj.ravel()], -1)).reshape(shape_ji)


def sunnybrook_row(folder: Path, model, progress: ProgressFn | None = None, max_cases: int | None = None) -> SuiteRow:
    """C-LV vs the area centroid of each expert endocardial contour; LV / myocardium Dice vs the filled contours."""
    from CardiacLandmarksLib.sax.pipeline import detect_landmarks

    row = SuiteRow("Sunnybrook", patients=[folder.name], seen_by="never seen", notes=[
        "C-LV vs the area centroid of the expert endocardial contour on every contoured image; Dice per image "
        "(LV cavity: filled endocardial contour; myocardium: epicardial minus endocardial where both exist)"])
    icont = sorted((folder / "contours" / "i-contours").glob("*-icontour-manual.txt")) if folder.exists() else []
    icont = icont[:max_cases] if max_cases else icont
    if not icont:
        row.notes.append(f"no data under {folder}")
        return row
    full = load_series(folder / "dicom")
    inst = np.asarray(full.metadata["instance_numbers"])  # [t][k]
    where = {f: tuple(map(int, np.argwhere(inst == int(f.name.split("-")[2]))[0])) for f in icont}
    phases = sorted({t for t, _ in where.values()})  # detect only on the contoured phases (same per-image result)
    series = replace(full, pixels=full.pixels[phases],
                     trigger_times=None if full.trigger_times is None else np.asarray(full.trigger_times)[phases])
    lmset = detect_landmarks(series, model=model)
    errs, flags, dl, dm, found = [], [], [], [], 0
    for n, f in enumerate(icont):
        number = int(f.name.split("-")[2])
        t, k = phases.index(where[f][0]), where[f][1]
        xy = np.loadtxt(f)
        c = polygon_centroid(xy)
        lm = lmset.get("C-LV", k, t)
        if lm is not None and lm.found:
            found += 1
            errs.append(float(np.linalg.norm(lm.position - series.ijk_to_lps(np.array([c[0], c[1], k], float)))))
            flags.append(lm.flag)
        lv = fill_polygon(xy, series.shape_ji)
        seg = segmentation_on_input(model, series, phase=t, slices=[k])[0]
        dl.append(dice(seg == 3, lv))
        ofile = folder / "contours" / "o-contours" / f.name.replace("icontour", "ocontour")
        if ofile.exists():
            dm.append(dice(seg == 2, fill_polygon(np.loadtxt(ofile), series.shape_ji) & ~lv))
        row.cases.append(f"IM-0001-{number:04d}")
        if progress is not None:
            progress("Sunnybrook", n + 1, len(icont))
    e = np.asarray(errs, float)
    row.n_cases = row.n_slices = len(icont)
    row.landmarks["C-LV"] = {"n_present": len(icont), "detection_rate": found / len(icont), "false_positive_rate": _NAN,
                             "mean": float(e.mean()) if e.size else _NAN,
                             "median": float(np.median(e)) if e.size else _NAN}
    for k, v in flag_figures(e, np.asarray(flags, str), GROSS_MM).items():
        setattr(row, k, v)
    for st, vals in (("LV", dl), ("myo", dm)):
        v = np.asarray(vals, float)
        v = v[np.isfinite(v)]
        row.dice[st] = float(v.mean()) if v.size else _NAN
        row.dice_median[st] = float(np.median(v)) if v.size else _NAN
    row.notes.append(f"{len(dm)} of the {len(icont)} contoured images have an epicardial contour")
    return row


# --------------------------------------------------------------------------- perfusion rows


def perfusion_rows(root: Path, device: str = "auto", progress: ProgressFn | None = None,
                   max_cases: int | None = None, model=None) -> list[SuiteRow]:
    """Myocardium / blood-pool Dice of the perfusion U-Net on its card's validation and training patients.

    ``model``: a loaded perfusion model (:func:`CardiacLandmarksLib.perfusion.segmentation.load_model`); the
    bundled one on ``device`` when None."""
    from CardiacLandmarksLib.perfusion.segmentation import load_model as load_perfusion
    from CardiacLandmarksLib.training.train_perfusion import evaluate_cases, mlperf_cases

    model = model if model is not None else load_perfusion(device=device)
    tr = model.card.get("training", {})
    cases = mlperf_cases(root) if root.exists() else []
    rows = []
    for name, key, seen in (("perfusion val", "val_patients", "perfusion_unet: validation patients (reported on, "
                                                                "not trained on; its recipe and mirror TTA were chosen "
                                                                "on them, see its card); never seen by the SAX models"),
                            ("perfusion train (seen)", "train_patients", "perfusion_unet: TRAINED ON these patients")):
        patients = set(tr.get(key, []))
        chosen = [c for c in cases if c.patient in patients][:max_cases]
        row = SuiteRow(name, [c.series for c in chosen], list(dict.fromkeys(c.patient for c in chosen)), len(chosen),
                       seen_by=seen, notes=[
            "Dice of the full perfusion segmentation (localiser, crop, segmenter; raw per-frame output) on every "
            "labelled frame; mean / median over frames; no landmark labels (RV insertions and C-LV not scored)"])
        if chosen:
            m = evaluate_cases(model, chosen)
            row.n_slices = m["n_frames"]
            row.dice["myo"], row.dice_median["myo"] = m["dice_myo"]["mean"], m["dice_myo"]["median"]
            row.dice["LV"], row.dice_median["LV"] = m["dice_bp"]["mean"], m["dice_bp"]["median"]
            row.notes.append("per series myocardium Dice: " + ", ".join(
                f"{s} {d:.3f}" for s, d in m["dice_myo_per_series"].items()))
        if progress is not None:
            progress(name, len(chosen), len(chosen))
        rows.append(row)
    return rows


def perfusion_ge_row(folder: Path, device: str = "auto", progress: ProgressFn | None = None, model=None) -> SuiteRow:
    """The perfusion analysis on a first-pass series from a scanner no bundled model has seen.

    ``folder``: ``<data>/perfusion/ge_dicom`` (GE 1.5 T, 79 DICOM frames, 1.41 mm pixels, full geometry) with
    ``GoldStandard.mat``: one expert mask per structure for the series (``MyoMask`` myocardium, ``SXmask`` LV
    cavity, ``DXmask`` RV; 256 x 256, ``[j, i]``; the frame they were drawn on is not recorded).

    The series runs through the perfusion pipeline as ``cardiac-landmarks perfusion`` does
    (:func:`CardiacLandmarksLib.perfusion.pipeline.analyse_series`: perfusion U-Net, motion tracking, RV
    insertions from the SAX landmark model on the frame of peak RV enhancement, else the RV-enhancement
    fallback). Compared with the expert masks, on the reference frame (the mask every sector value is
    measured in): Dice of myocardium and LV blood pool; C-LV (blood-pool centroid) and A-/I-RVI against the
    landmarks derived from the masks as for every other row (:func:`CardiacLandmarksLib.sax.labels.
    derive_sax_landmarks`, A-RVI the end nearer the head), L2 in mm; the RVI flags are the pipeline's.

    ``model``: a loaded perfusion model; the bundled one on ``device`` when None.

    Returns:
        one :class:`SuiteRow` (1 case, 1 image); no case and a "no data" note when the folder or the
        masks are missing.
    """
    from CardiacLandmarksLib.perfusion.pipeline import SeriesInput, analyse_series
    from CardiacLandmarksLib.perfusion.segmentation import load_model as load_perfusion
    from CardiacLandmarksLib.sax.labels import derive_sax_landmarks

    name = "perfusion GE (unseen)"
    row = SuiteRow(name, [], [], 0, seen_by="never seen by any bundled model (GE 1.5 T: another vendor and site "
                                            "than the mlperf, ACDC, EMIDEC and MS-CMRSeg data); one series")
    gold = folder / "GoldStandard.mat"
    if not gold.exists():
        row.notes.append(f"no data: {gold} not found")
        return row
    from scipy.io import loadmat

    g = loadmat(gold)
    series = load_series(folder)
    an = analyse_series(SeriesInput(series=series, name="ge_dicom"),
                        model if model is not None else load_perfusion(device=device))
    seg = an.seg
    ref = np.zeros(g["MyoMask"].shape, np.int16)  # derive_sax_landmarks' default labels: 1 RV, 2 myo, 3 LV
    ref[g["MyoMask"] > 0], ref[g["SXmask"] > 0], ref[g["DXmask"] > 0] = 2, 3, 1
    if ref.shape != seg.reference_mask.shape:
        raise InvalidImageError(f"{gold}: masks {ref.shape} do not match the series' images {seg.reference_mask.shape}")
    lm_ref = derive_sax_landmarks(ref, superior_dir=series.superior_in_plane())
    sp = np.array([series.spacing[0], series.spacing[1]], float)
    pred = {"A-RVI": an.a_rvi_ij, "I-RVI": an.i_rvi_ij, "C-LV": an.center_ij}
    errors, flags, ok = [], [], True
    for n in SAX_NAMES:
        r, p = lm_ref[n], pred[n]
        ok &= (r is None) == (p is None)
        if r is None or p is None:
            row.landmarks[n] = {"n_present": int(r is not None), "detection_rate": 0.0 if r is not None else _NAN,
                                "false_positive_rate": 1.0 if p is not None else _NAN, "mean": _NAN, "median": _NAN}
            continue
        e = float(np.linalg.norm((np.asarray(p, float) - r) * sp))
        row.landmarks[n] = {"n_present": 1, "detection_rate": 1.0, "false_positive_rate": _NAN, "mean": e, "median": e}
        if n in an.rvi_trust:  # the RV insertions carry the pipeline's flag; C-LV has none here
            errors.append(e)
            flags.append(an.rvi_trust[n][1])
    row.cases, row.patients, row.n_cases, row.n_slices = ["ge_dicom"], ["ge_dicom"], 1, 1
    row.slice_detection = float(ok)
    if lm_ref["A-RVI"] is not None and an.a_rvi_ij is not None:
        row.rvi_angle_deg = abs(rvi_angle_difference(an.a_rvi_ij, an.center_ij, lm_ref["A-RVI"], lm_ref["C-LV"], sp))
    for k, lab, key in (("myo", 1, "MyoMask"), ("LV", 2, "SXmask")):  # the expert masks as drawn (they overlap
        row.dice[k] = row.dice_median[k] = dice(seg.reference_mask == lab, g[key] > 0)  # the RV by 5 pixels)
    for k, v in flag_figures(np.array(errors), np.array(flags), GROSS_MM).items():
        setattr(row, k, v)
    moved = float(np.linalg.norm(seg.offsets_ij * sp, axis=1).max())
    row.notes += [
        "the perfusion pipeline as `cardiac-landmarks perfusion` runs it; expert masks of GoldStandard.mat "
        f"(frame not recorded) vs the reference-frame mask (frame {seg.reference_frame} of {len(seg.raw_labels)}) "
        f"that the sector values use; the tracked in-plane motion of the series is at most {moved:.1f} mm",
        f"RV insertions: {an.rvi_source or 'none'} (the SAX model for perfusion series is sax_unet_lge); high / "
        "all and gross flagged low judge their flags",
        "C-LV: blood-pool centroid of the reference mask vs the LV-cavity centroid of the expert mask"]
    if progress is not None:
        progress(name, 1, 1)
    return row


# --------------------------------------------------------------------------- the suite


def lax_row(name: str, cases: list[tuple[Path, Path, dict, str]], model, progress: ProgressFn | None = None,
            seen_by: str = "", notes: list[str] | None = None, view: str = "4ch") -> SuiteRow:
    """A long-axis row: each case ``(image, mask, labels, subject)`` is run through the shipped long-axis pipeline
    (:func:`CardiacLandmarksLib.lax.pipeline.detect_lax`: rotated/scaled copies set the flags; a cine is tracked from
    its best phase) and every phase whose mask gives the view's three landmarks
    (:func:`CardiacLandmarksLib.lax.labels.derive_from_series`) is compared in LPS mm."""
    from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW
    from CardiacLandmarksLib.lax.labels import derive_from_series
    from CardiacLandmarksLib.lax.pipeline import detect_lax

    names = LANDMARKS_BY_VIEW[view]
    errors: dict[str, list[float]] = {n: [] for n in names}
    present = dict.fromkeys(names, 0)
    all_err, all_flags, frames = [], [], 0
    for n, (image, mask, labels, _subject) in enumerate(cases):
        series, ms = load_series(image), load_series(mask)
        found = {(lm.name, lm.phase): lm for lm in detect_lax(series, view, model=model).landmarks
                 if lm.slice == 0}
        for t in range(min(series.n_phases, ms.n_phases)):
            ref = derive_from_series(series, ms, view, labels=labels, t=t).points
            if not all(k in ref for k in names):
                continue
            frames += 1
            for lname in names:
                present[lname] += 1
                lm = found.get((lname, t))
                if lm is None or not lm.found:
                    continue
                e = float(np.linalg.norm(np.asarray(lm.position) - series.ijk_to_lps(np.r_[ref[lname], 0])))
                errors[lname].append(e)
                all_err.append(e)
                all_flags.append(lm.flag)
        if progress:
            progress(name, n + 1, len(cases))
    row = SuiteRow(name, cases=[Path(c[0]).name for c in cases], patients=sorted({c[3] for c in cases}),
                   n_cases=len(cases), n_slices=frames, seen_by=seen_by, notes=list(notes or []))
    row.landmarks = {k: {"n_present": present[k], "detection_rate": len(errors[k]) / present[k] if present[k] else _NAN,
                         "false_positive_rate": _NAN,
                         "mean": float(np.mean(errors[k])) if errors[k] else _NAN,
                         "median": float(np.median(errors[k])) if errors[k] else _NAN} for k in names}
    for key, value in flag_figures(np.asarray(all_err), np.asarray(all_flags), GROSS_MM).items():
        setattr(row, key, value)
    return row


def lax_rows(root: Path, model, progress: ProgressFn | None = None, wanted: tuple[str, ...] = LAX_ROW_NAMES,
             max_cases: int | None = None) -> list[SuiteRow]:
    """The rows of :data:`LAX_ROW_NAMES`: M&Ms-2 001's 4CH ED and ES frames (manual masks) and the two UK Biobank
    demo 4CH cines (50 frames, silver masks from the ukbb_cardiac networks: another network's labels, not a
    person's)."""
    from CardiacLandmarksLib.lax.labels import MNMS2_LAX_LABELS, UKBB_LAX4CH_LABELS

    seen = ("trained lax4ch_unet (every labelled long-axis frame of the shared data did; its held-out figures are "
            "the card's leave-one-subject-out ones)")
    out = []
    if LAX_ROW_NAMES[0] in wanted:
        d = root / "mnms2" / "001"
        cases = [(d / f"001_LA_{p}.nii.gz", d / f"001_LA_{p}_gt.nii.gz", MNMS2_LAX_LABELS, "mnms2-001")
                 for p in ("ED", "ES") if (d / f"001_LA_{p}_gt.nii.gz").exists()][:max_cases]
        out.append(lax_row(LAX_ROW_NAMES[0], cases, model, progress, seen,
                           ["one subject, its ED and ES frames as two one-frame images (no tracking); landmarks "
                            "derived from the manual masks"]))
    if LAX_ROW_NAMES[1] in wanted:
        d = root / "lax" / "ukbb_demo"
        cases = [(d / s / "la_4ch.nii.gz", d / s / "seg4_la_4ch.nii.gz", UKBB_LAX4CH_LABELS, f"ukbb-{s}")
                 for s in ("1", "2") if (d / s / "seg4_la_4ch.nii.gz").exists()][:max_cases]
        out.append(lax_row(LAX_ROW_NAMES[1], cases, model, progress, seen,
                           ["two subjects' 50-frame cines, tracked as the tool tracks a cine; landmarks derived from "
                            "silver masks (another network's, not a person's)"]))
    return out


def run_suite(data_root: Path | None = None, device: str = "auto", progress: ProgressFn | None = None,
              rows: tuple[str, ...] | None = None, max_cases: int | None = None) -> SuiteTable:
    """Run the evaluation suite with the bundled models.

    Args:
        data_root: shared data folder (default :func:`CardiacLandmarksLib.core.config.data_root`).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: called as ``progress(row_name, done, total)``.
        rows: names of the rows to run (default all, :data:`ROW_NAMES`; the two ACDC rows come from one run).
        max_cases: at most this many cases per row (tests; the figures are then not the suite's).

    Returns:
        :class:`SuiteTable` with one row per requested data set, in :data:`ROW_NAMES` order.

    Raises:
        InputNotFoundError: the data root does not exist, or an unknown row name.
        ModelIntegrityError: a bundled model is missing or corrupt.
    """
    from CardiacLandmarksLib.confidence.phdnet import PhdNetConfidence
    from CardiacLandmarksLib.core.config import data_root as default_root
    from CardiacLandmarksLib.models.loader import load_model

    root = Path(data_root or default_root())
    if not root.exists():
        raise InputNotFoundError(f"data root {root} does not exist (set CARDIAC_LANDMARKS_DATA)")
    wanted = tuple(rows or (*ROW_NAMES, *LAX_ROW_NAMES))
    unknown = [r for r in wanted if r not in ROW_NAMES + LAX_ROW_NAMES]
    if unknown:
        raise InputNotFoundError(f"unknown suite rows {unknown}; choose from {list(ROW_NAMES + LAX_ROW_NAMES)}")
    t0 = time.time()
    model = load_model("sax", device)
    lge = load_model("sax", device, sequence="lge")  # the LGE rows' files are LGE by name: the model the tool picks
    phd = PhdNetConfidence.load(model.device)
    table = SuiteTable([], {m.name: {"version": m.version, "sha256": m.sha256} for m in (model, lge, phd)}, str(root))
    out: dict[str, SuiteRow] = {}
    if {"ACDC test", "ACDC unseen-by-v1.3"} & set(wanted):
        for r in acdc_rows(root / "acdc", model, progress, max_cases):
            out[r.name] = r
    builders = {"MS-CMRSeg LGE": lambda: mscmr_row(root / "lge" / "mscmr", lge, progress, max_cases),
                "EMIDEC LGE": lambda: emidec_row(root / "lge" / "emidec", lge, progress, max_cases),
                "M&Ms-2 001 SAX": lambda: mnms2_row(root / "mnms2" / "001", model, progress, max_cases),
                "Sunnybrook": lambda: sunnybrook_row(root / "sunnybrook" / "SCD0000101", model, progress, max_cases)}
    for name, build in builders.items():
        if name in wanted:
            out[name] = build()
    if "MS-CMRSeg LGE (leave-one-out)" in wanted:
        row, fold_models = mscmr_loo_row(root / "lge" / "mscmr", model.device, progress, max_cases)
        out[row.name] = row
        table.models.update(fold_models)
    if {"perfusion val", "perfusion train (seen)", "perfusion GE (unseen)"} & set(wanted):
        from CardiacLandmarksLib.perfusion.segmentation import load_model as load_perfusion

        pm = load_perfusion(device=model.device)  # once, for every perfusion row
        table.models[pm.name] = {"version": pm.version, "sha256": pm.sha256}
        if {"perfusion val", "perfusion train (seen)"} & set(wanted):
            for r in perfusion_rows(root / "perfusion" / "mlperf", model.device, progress, max_cases, model=pm):
                out[r.name] = r
        if "perfusion GE (unseen)" in wanted:
            out["perfusion GE (unseen)"] = perfusion_ge_row(root / "perfusion" / "ge_dicom", model.device, progress,
                                                           model=pm)
    if set(LAX_ROW_NAMES) & set(wanted):
        lax = load_model("4ch", model.device)
        table.models[lax.name] = {"version": lax.version, "sha256": lax.sha256}
        for r in lax_rows(root, lax, progress, wanted, max_cases):
            out[r.name] = r
    for name in wanted:
        r = out[name]
        if r.n_cases == 0 and not any(n.startswith("no data") for n in r.notes):
            r.notes.append("no data found under the data root")
        (table.lax_rows if name in LAX_ROW_NAMES else table.rows).append(r)
    table.seconds = time.time() - t0
    return table


# --------------------------------------------------------------------------- formatting


def _num(x: float, fmt: str = ".2f", pct: bool = False, pct_digits: int = 0) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{100 * x:.{pct_digits}f}%" if pct else format(x, fmt)


def _who(r: SuiteRow) -> str:
    pats = r.patients if len(r.patients) <= 24 else [*r.patients[:3], "...", r.patients[-1]]
    return f"{len(r.patients)} patients / subjects: {', '.join(pats)}; {r.n_cases} cases"


def _cells(r: SuiteRow) -> list[str]:
    unit = "" if r.unit == "mm" else f" {r.unit}"
    lm = []
    for n in SAX_NAMES:
        v = r.landmarks.get(n)
        lm.append(f"{_num(v['mean'])} / {_num(v['median'])}{unit}" if v else "n/a")
    # Dice to 3 decimals and detection to 0.1%: near a target (Dice 0.88, detection 95%) a rounded figure
    # would read as met (perfusion v1.2.0: 0.876)
    dice = " / ".join(_num(r.dice[s], ".3f") for s in STRUCTURES)
    gross = ("n/a" if not r.n_points else "no gross error" if not r.n_gross
             else f"{_num(r.gross_flagged_low, pct=True)} of {r.n_gross}")
    extra = (f"{_num(r.extra_flagged_low, pct=True)} of {r.n_extra}" if r.n_extra
             else "no extra point" if r.n_absent else "n/a")
    hva = (f"{_num(r.mean_error_high)} / {_num(r.mean_error_all)}{unit} ({_num(r.high_vs_all)})"
           if r.n_points else "n/a")
    return [r.name, f"{r.n_cases} ({r.n_slices})", _num(r.found, pct=True, pct_digits=1),
            _num(r.slice_detection, pct=True, pct_digits=1), *lm,
            _num(r.rvi_angle_deg, ".1f"), dice, gross, extra, hva]


HEADERS = ("data set", "n cases (slices)", "found", "slice det.", "A-RVI mean / median", "I-RVI mean / median",
           "C-LV mean / median", "RVI angle deg", "Dice RV / myo / LV", "gross flagged low",
           "extra flagged low", "high / all (ratio)")


def ci_text(r: SuiteRow) -> str:
    """The row's 95% intervals in words (``""`` when it has none): slice detection in %, mean errors in the row's unit."""
    if not r.ci95:
        return ""
    parts = []
    for key, label in (("slice_detection", "slice det."), *((n, n) for n in SAX_NAMES)):
        if key in r.ci95:
            lo, hi = r.ci95[key]
            parts.append(f"{label} {100 * lo:.1f}-{100 * hi:.1f}%" if key == "slice_detection"
                         else f"{label} {lo:.2f}-{hi:.2f} {r.unit}")
    return f"{r.name}: " + ", ".join(parts)


CI_HEAD = (f"95% intervals, resampling the patients of a row ({CI_RESAMPLES} draws, percentile; rows with at least "
           f"{MIN_CI_PATIENTS} patients, rough with as few as that): a target outside its interval is missed (or met) "
           "by more than the differences between patients explain")


def _ci_block(table: SuiteTable, bullet: str = "  ") -> list[str]:
    lines = [bullet + ci_text(r) for r in table.rows if r.ci95]
    return ["", CI_HEAD, *lines] if lines else []


MISSED_HEAD = ("Doubtful absences (a landmark called absent that the network nearly found, or a C-LV it found that "
               "the stack rule left out where its segmentation shows an LV cavity, is marked for the reader: "
               "sax.pipeline.doubt_absences): of the reference's landmarks called absent, those marked; of its "
               "absences called absent, those marked too (a slice looked at for nothing)")


def missed_text(r: SuiteRow) -> str:
    """The row's doubtful absences in words: RV-insertion pairs (counted as pairs) and C-LV (``""`` on a row
    without any absence called absent)."""
    parts = []
    for name, what in (("A-RVI", "RV-insertion pairs"), ("C-LV", "C-LV")):
        a = r.absences.get(name)
        if a and (a["missed"] or a["absent"]):
            parts.append(f"{what} {a['missed_doubt']} of {a['missed']} missed and {a['absent_doubt']} of "
                         f"{a['absent']} truly absent marked")
    return f"{r.name}: " + "; ".join(parts) if parts else ""


def _missed_block(table: SuiteTable, bullet: str = "  ") -> list[str]:
    lines = [bullet + t for r in table.rows if (t := missed_text(r))]
    return ["", MISSED_HEAD, *lines] if lines else []


LAX_HEADERS = ("long-axis data set", "n cases (frames)", "found", "AL-P mean / median", "IS-P mean / median",
               "APEX mean / median", "gross flagged low", "high / all (ratio)")


def _lax_cells(r: SuiteRow) -> list[str]:
    lm = []
    for n in list(r.landmarks) or LAX_NAMES:
        v = r.landmarks.get(n)
        lm.append(f"{_num(v['mean'])} / {_num(v['median'])}" if v else "n/a")
    gross = ("n/a" if not r.n_points else "no gross error" if not r.n_gross
             else f"{_num(r.gross_flagged_low, pct=True)} of {r.n_gross}")
    hva = f"{_num(r.mean_error_high)} / {_num(r.mean_error_all)} ({_num(r.high_vs_all)})" if r.n_points else "n/a"
    return [r.name, f"{r.n_cases} ({r.n_slices})", _num(r.found, pct=True, pct_digits=1), *lm, gross, hva]


LAX_HEAD = ("Long-axis model (lax4ch_unet; L2 in mm against landmarks derived from the masks, through the shipped "
            "long-axis pipeline; its flags come from the spread of its rotated and scaled copies, not PHD-Net; both "
            "rows are of frames it was trained on: its held-out figures are the leave-one-subject-out ones of its "
            "card)")


def _lax_block(table: SuiteTable, markdown: bool = False, head: str = LAX_HEAD) -> list[str]:
    return ["", head, "", *lax_table_lines(table.lax_rows, markdown)] if table.lax_rows else []


def lax_table_lines(rows: list[SuiteRow], markdown: bool = False) -> list[str]:
    """Long-axis rows (:func:`lax_row`, one view) as a plain-text or Markdown table: frames, found, each landmark's
    mean / median L2 (mm), gross errors flagged low, high / all."""
    names = list(rows[0].landmarks) if rows and rows[0].landmarks else list(LAX_NAMES)
    headers = [*LAX_HEADERS[:3], *(f"{n} mean / median" for n in names), *LAX_HEADERS[-2:]]
    cells = [headers] + [_lax_cells(r) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(c) + " |" for c in cells]
        lines.insert(1, "|" + "---|" * len(headers))
    else:
        widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
        lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(headers))) for c in cells]
        lines.insert(1, "-" * len(lines[0]))
    return lines


def format_suite(table: SuiteTable) -> str:
    """Plain-text table (one line per data set) and the notes of every row."""
    cells = [list(HEADERS)] + [_cells(r) for r in table.rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(HEADERS))) for c in cells]
    lines.insert(1, "-" * len(lines[0]))
    if not table.rows:  # only long-axis rows asked for
        lines = []
    lines += _ci_block(table)
    lines += _missed_block(table)
    lines += _lax_block(table)
    lines += ["", _LEGEND, ""]
    for r in [*table.rows, *table.lax_rows]:
        lines.append(f"{r.name}: seen by: {r.seen_by}. " + " ".join(f"{n}." for n in r.notes))
    lines.append("models: " + ", ".join(f"{k} v{v['version']} ({v['sha256'][:12]})" for k, v in table.models.items()))
    return "\n".join(lines)


def format_suite_markdown(table: SuiteTable) -> str:
    """The table as Markdown (for model cards and the README), with the legend and per-row notes."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)] if table.rows else []
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in table.rows]
    lines += _ci_block(table, bullet="- ")
    lines += _missed_block(table, bullet="- ")
    lines += _lax_block(table, markdown=True)
    lines += ["", _LEGEND, ""]
    lines += [f"- **{r.name}** ({_who(r)}): seen by: {r.seen_by}. " + " ".join(f"{n}." for n in r.notes)
              for r in [*table.rows, *table.lax_rows]]
    lines += ["", "Models: " + ", ".join(f"{k} v{v['version']} (SHA256 {v['sha256'][:12]}…)"
                                          for k, v in table.models.items()) + "."]
    return "\n".join(lines)


_LEGEND = ("n cases (slices): stacks / series / images used (slice images compared, or labelled frames). Found: share of "
           "the reference's landmarks that were found (all landmarks pooled). Slice det.: "
           "share of slices where every landmark of the reference is found and none extra (Xue et al. 2021). "
           "L2 in mm (px where marked) of found landmarks present in the reference, derived from expert masks. "
           "RVI angle: mean |difference| of the A-RVI direction about C-LV. Dice: SAX segmentation head (perfusion "
           "rows: the perfusion U-Net, LV = blood pool), mean over stacks (Sunnybrook, perfusion: over images). "
           "Gross flagged low: share of errors > 10 mm that the shipped PHD-Net flag marks low (target >= 70%), of n "
           "gross errors. Extra flagged low: share of the points found where the reference has none (a landmark on a "
           "slice without it) that the flag marks low, of n such points: the reader who checks only low points would "
           "keep the others. High / all: mean L2 of points flagged high / of all points (target ratio <= 0.8). n/a: "
           "not measurable on this set.")


def card_entry(table: SuiteTable, seen: str) -> dict:
    """The ``"suite"`` field of a model card: what the model has seen, the rows (JSON) and the Markdown table.

    ``seen``: which of the suite's sets the model was trained, validated or calibrated on (the card's own words).
    Rendered into the card's Markdown by :func:`CardiacLandmarksLib.training.model_card.render_markdown`.
    """
    return {"command": "cardiac-landmarks evaluate --suite", "seen": seen, "seconds": round(table.seconds, 1),
            "models": table.models, "rows": [r.to_dict() for r in table.rows],
            "markdown": format_suite_markdown(table)}


def card_section(entry: dict) -> str:
    """Markdown section body for a card's ``"suite"`` field (:func:`card_entry`)."""
    return (f"Produced by `{entry['command']}` ({entry['seconds'] / 60:.0f} min wall time on CPU). Sets this model "
            f"has seen: "
            f"{entry['seen']}\n\n{entry['markdown']}")
