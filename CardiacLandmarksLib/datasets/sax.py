"""SAX landmark training/validation samples built from labelled stacks (ACDC by default).

Each sample is one slice of one phase resampled onto the canvas of
:mod:`CardiacLandmarksLib.core.preprocessing`, with the derived landmarks
(:func:`CardiacLandmarksLib.sax.labels.derive_sax_landmarks`) in canvas pixels. The split is
by patient, stratified by pathology group, never by slice.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.errors import CardiacLandmarksError
from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW
from CardiacLandmarksLib.core.preprocessing import (
    CanvasGrid,
    normalise_intensity,
    resample_labels_to_canvas,
    resample_to_canvas,
    to_canvas,
)
from CardiacLandmarksLib.datasets.splits import ACDC_CHALLENGE_TEST, is_acdc_test, is_test_case
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.sax.labels import ACDC_LABELS, MSCMR_LABELS, derive_sax_landmarks

logger = logging.getLogger(__name__)
SAX_NAMES = LANDMARKS_BY_VIEW["sax"]
#: canvas segmentation classes of the SAX model's segmentation head (index = class value)
SEG_CLASSES = ("background", "RV cavity", "LV myocardium", "LV cavity")


@dataclass
class Case:
    """One labelled stack: image file, mask file, label values, patient id and group."""

    patient: str
    image: Path
    mask: Path
    labels: dict = field(default_factory=lambda: dict(ACDC_LABELS))
    group: str = ""
    #: "cine", "lge" or "perfusion" (the sequence; :func:`build_samples` records it per sample)
    kind: str = "cine"
    #: in-plane pixel size (mm) given to files without geometry (EMIDEC); None = the file's own
    nominal_mm: float | None = None
    #: further file labels that count as LV myocardium (EMIDEC infarct 3 and MVO 4)
    myo_extra: tuple[int, ...] = ()
    #: perfusion series: the frames (time indices) to take; None = a stack (every slice of phase 0)
    frames: tuple[int, ...] | None = None
    #: the set it comes from: "acdc", "emidec", "mscmr", "perfusion" (mlperf), "user" (a --data folder of pairs)
    source: str = ""


@dataclass
class SampleSet:
    """Arrays of canvas samples.

    images ``[N, H, W]`` float32; points ``[N, L, 2]`` canvas (x, y) (NaN when absent);
    present ``[N, L]`` bool; meta: per sample ``(patient, file stem, k)``; grids: CanvasGrid per sample;
    masks ``[N, H, W]`` uint8 canvas labels in :data:`SEG_CLASSES` order (nearest-neighbour resampled
    expert mask). Stack context (:func:`build_samples` with ``context=True``): ``context [N, 2, H, W]`` float32,
    the slices below and above on the sample's own canvas grid (the slice itself where the stack ends or the
    series is a single slice), ``context_masks [N, 2, H, W]`` their labels. Partial labels: ``known [N, L]``
    (landmark labelled: present or truly absent), ``known_classes [N, 4]`` (segmentation class labelled);
    ``kinds``: the sequence of each sample.
    """

    images: np.ndarray
    points: np.ndarray
    present: np.ndarray
    meta: list[tuple[str, str, int]]
    grids: list[CanvasGrid]
    masks: np.ndarray | None = None
    context: np.ndarray | None = None
    context_masks: np.ndarray | None = None
    known: np.ndarray | None = None
    known_classes: np.ndarray | None = None
    kinds: list[str] | None = None

    def inputs(self) -> np.ndarray:
        """Network inputs: ``[N, 3, H, W]`` (slice, then its two neighbours) with context, else ``[N, H, W]``."""
        if self.context is None:
            return self.images
        return np.concatenate([self.images[:, None], self.context], 1)

    def subset(self, idx: np.ndarray) -> SampleSet:
        """The samples at ``idx`` (indices or a boolean mask)."""
        idx = np.flatnonzero(idx) if np.asarray(idx).dtype == bool else np.asarray(idx, int)

        def take(a):
            return None if a is None else a[idx]

        return SampleSet(self.images[idx], self.points[idx], self.present[idx], [self.meta[i] for i in idx],
                         [self.grids[i] for i in idx], take(self.masks), take(self.context), take(self.context_masks),
                         take(self.known), take(self.known_classes),
                         None if self.kinds is None else [self.kinds[i] for i in idx])

    def labelled(self) -> np.ndarray:
        """``known [N, L]``, all True when the samples carry no partial labels."""
        return np.ones(self.present.shape, bool) if self.known is None else self.known


def concat_samples(sets: list[SampleSet]) -> SampleSet:
    """One :class:`SampleSet` of several (all with or all without context)."""
    sets = [s for s in sets if len(s.images)]

    def cat(name):
        parts = [getattr(s, name) for s in sets]
        return None if any(p is None for p in parts) else np.concatenate(parts)

    known = [s.labelled() for s in sets]
    classes = [s.known_classes if s.known_classes is not None else np.ones((len(s.images), len(SEG_CLASSES)), bool)
               for s in sets]
    return SampleSet(cat("images"), cat("points"), cat("present"), [m for s in sets for m in s.meta],
                     [g for s in sets for g in s.grids], cat("masks"), cat("context"), cat("context_masks"),
                     np.concatenate(known), np.concatenate(classes),
                     [k for s in sets for k in (s.kinds or ["cine"] * len(s.images))])


def is_acdc_folder(folder: Path) -> bool:
    """``folder`` is laid out as ACDC (``acdc_info.csv`` or ``patientNNN_*_gt.nii.gz``), not as a site's own
    ``NAME`` + ``NAME_gt`` pairs (:func:`paired_cases`)."""
    folder = Path(folder)
    return (folder / "acdc_info.csv").exists() or any(folder.glob("patient*_gt.nii.gz"))


def acdc_cases(root: Path) -> list[Case]:
    """ACDC ED/ES stacks with masks under ``root`` (``patientNNN_{ED,ES}[_gt].nii.gz`` + ``acdc_info.csv``)."""
    root = Path(root)
    groups = {}
    info = root / "acdc_info.csv"
    if info.exists():
        with open(info, encoding="utf-8") as fh:
            groups = {row["patient"]: row["group"] for row in csv.DictReader(fh)}
    cases = []
    for gt in sorted(root.glob("patient*_E?_gt.nii.gz")):
        img = gt.with_name(gt.name.replace("_gt", ""))
        pid = gt.name.split("_")[0]
        if img.exists():
            cases.append(Case(pid, img, gt, dict(ACDC_LABELS), groups.get(pid, ""), source="acdc"))
    return cases


#: the phase tag at the end of a user's file name (``P1_ED``, ``P1-es``, ``P1_frame01``, ``P1_phase12``, ``P1_t5``):
#: what is left is the patient (:func:`patient_of_stem`)
_PHASE_TAG = re.compile(r"[_\-. ](ED|ES|frame\d+|phase\d+|t\d+)$", re.IGNORECASE)
#: an ED/ES word inside the name (``P7_ED_SA``, ``ES_P7``), as the routing reads one (``routing.ed_es_of``)
_INNER_EDES = re.compile(r"(?:(?<=[_\-. ])|^)(ED|ES)[_\-. ]", re.IGNORECASE)


def patient_of_stem(stem: str) -> str:
    """The patient of a user's labelled stack, from its file stem: the stem without a phase tag at its end
    (``case002_ED`` and ``case002_ES`` -> ``case002``; ``P1_frame12`` -> ``P1``) and without an ED/ES word inside it
    (``P7_ED_SA`` and ``P7_ES_SA`` -> ``P7_SA``), else the stem itself. Every stack of a patient then lands on one
    side of the training / choice / calibration split (:func:`split_by_patient`); with the stem as the patient, a
    patient's ED stack trained and its ES stack chose the model."""
    return _INNER_EDES.sub("", _PHASE_TAG.sub("", stem)) or stem


def paired_cases(folder: Path, labels: dict | None = None) -> list[Case]:
    """User data: every ``NAME.nii[.gz]|.nrrd`` with a mask ``NAME_gt.*`` beside it (labels default ACDC's); the
    patient is ``NAME`` without its phase tag (:func:`patient_of_stem`)."""
    folder = Path(folder)
    cases = []
    for gt in sorted(folder.iterdir()):
        stem = gt.name.split(".")[0]
        if not stem.endswith("_gt"):
            continue
        ext = gt.name[len(stem):]
        img = gt.with_name(stem[:-3] + ext)
        if img.exists():
            cases.append(Case(patient_of_stem(stem[:-3]), img, gt, dict(labels or ACDC_LABELS), source="user"))
    return cases


def check_case_labels(cases: list[Case], shown: int = 3) -> None:
    """The masks of a user's cases (``Case.source == "user"``) follow their label values
    (:func:`CardiacLandmarksLib.sax.labels.label_problem`); the bundled sets' are known and not read.

    Raises:
        LabelConventionError: one or more masks do not (the first ``shown`` named, with the values that fit).
    """
    from CardiacLandmarksLib.core.errors import LabelConventionError
    from CardiacLandmarksLib.sax.labels import label_problem

    problems = []
    for c in cases:
        if c.source != "user":
            continue
        text = label_problem(np.rint(np.asarray(load_series(c.mask).pixels)[0]).astype(int), c.labels)
        if text:
            problems.append(f"{c.mask.name}: {text}")
    if problems:
        values = ",".join(f"{k}={cases[0].labels[k]}" for k in ("rv", "myo", "lv"))
        raise LabelConventionError(
            f"{len(problems)} of {sum(c.source == 'user' for c in cases)} masks do not follow the label values "
            f"{values}: " + "; ".join(problems[:shown]) + (" ..." if len(problems) > shown else "")
            + ". Give the masks' values with --labels rv=N,myo=N,lv=N")


def split_by_patient(cases: list[Case], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[Case], list[Case]]:
    """Split cases by patient id, stratified by group; every case of a patient lands on one side."""
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[str]] = {}
    for c in cases:
        pats = by_group.setdefault(c.group, [])
        if c.patient not in pats:
            pats.append(c.patient)
    val_pat: set[str] = set()
    for g in sorted(by_group):
        pats = sorted(by_group[g])
        rng.shuffle(pats)
        n_val = max(1, round(len(pats) * val_fraction)) if len(pats) > 1 else 0
        val_pat.update(pats[:n_val])
    return [c for c in cases if c.patient not in val_pat], [c for c in cases if c.patient in val_pat]


def development_split(cases: list[Case], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[Case], list[Case]]:
    """Training and validation cases with the fixed ACDC test split left out (:mod:`.splits`).

    The patient split is drawn as for the models up to v1.3.1 (:func:`split_by_patient` over every case that is
    not an ACDC challenge test patient), then the test patients are removed from both sides (with seed 0 they all
    fall on the validation side, so the training side is the same as those models'). Cases of other sets (no ``patientNNN`` id of
    the test split) are split as before.
    """
    train, val = split_by_patient([c for c in cases if c.patient not in ACDC_CHALLENGE_TEST], val_fraction, seed)
    left_out = sorted({c.patient for c in train + val if is_acdc_test(c.patient)})
    if left_out:
        logger.info("left out the ACDC test split patients %s", ", ".join(left_out))
    train = [c for c in train if not is_acdc_test(c.patient)]
    val = [c for c in val if not is_acdc_test(c.patient)]
    if train and not val:
        raise CardiacLandmarksError("no validation patients left after leaving out the ACDC test split "
                                    "(datasets.splits); give more labelled patients")
    return train, val


def three_way_split(cases: list[Case], holdout_fraction: float = 0.25, seed: int = 0
                    ) -> tuple[list[Case], list[Case], list[Case]]:
    """Training, model-choice and calibration cases, by patient, stratified by group, test splits left out.

    ``holdout_fraction`` of the patients (not in a fixed test split, :func:`.splits.is_test_case`) are held out
    of training and halved into a *choice* set (epoch and segmentation-share selection) and a *calibration* set
    (presence and confidence thresholds), so the thresholds are fitted on patients the model was not chosen on
    (issue 16). Each set of cases (ACDC, EMIDEC, ...) should be split separately, then joined.

    Raises:
        CardiacLandmarksError: too few patients to fill all three sets.
    """
    dev = [c for c in cases if not is_test_case(c.patient)]
    train, held = split_by_patient(dev, holdout_fraction, seed)
    calib, choice = split_by_patient(held, 0.5, seed + 1)
    if not (train and choice and calib):
        raise CardiacLandmarksError(f"{len({c.patient for c in dev})} development patients are too few for a "
                                    "training / choice / calibration split")
    return train, choice, calib


def test_cases(cases: list[Case]) -> list[Case]:
    """The cases of the fixed ACDC test split (:data:`.splits.ACDC_TEST_PATIENTS`)."""
    return [c for c in cases if is_acdc_test(c.patient)]


def case_landmarks_ijk(case: Case, series=None, mask_series=None) -> dict[int, dict[str, np.ndarray | None]]:
    """Derived landmarks per slice k of a case: ``{k: {name: (i, j) | None}}``."""
    series = series or load_series(case.image)
    mask_series = mask_series or load_series(case.mask)
    mask = np.rint(mask_series.pixels[0]).astype(np.int16)
    sup = series.superior_in_plane()
    lab = case.labels
    return {k: derive_sax_landmarks(mask[k], rv=lab["rv"], myo=lab["myo"], lv=lab["lv"], superior_dir=sup)
            for k in range(mask.shape[0])}


def _load_case(case: Case):
    series = load_series(case.image)
    if case.nominal_mm:
        series = replace(series, spacing=(case.nominal_mm, case.nominal_mm, float(series.spacing[2])))
    mask_series = load_series(case.mask)
    return series, np.rint(mask_series.pixels).astype(np.int16)  # mask [t, k, j, i]


def _class_lut(case: Case, mask: np.ndarray) -> np.ndarray:
    """File label value -> :data:`SEG_CLASSES` index."""
    classes = np.zeros(max(int(mask.max()), 4) + 1, np.uint8)
    pairs = [(case.labels["rv"], 1), (case.labels["myo"], 2), (case.labels["lv"], 3)] + [(v, 2) for v in case.myo_extra]
    for value, key in pairs:
        if 0 < value < len(classes):
            classes[value] = key
    return classes


def build_samples(cases: list[Case], context: bool = False) -> SampleSet:
    """Resample every slice of every case onto the canvas with its derived landmarks.

    A stack case gives one sample per slice (phase 0 of its file: ACDC files hold one phase); a perfusion case
    (``frames``) one sample per listed frame of its single slice. ``context``: also resample each slice's two
    neighbours in the stack onto the slice's own canvas grid (:attr:`SampleSet.context`; the slice itself where
    there is no neighbour). Landmarks a case's labels cannot support (``labels["rv"] < 0``: no RV insertion
    points) are marked unknown (:attr:`SampleSet.known`), not absent, and so is the RV class.
    """
    images, points, present, meta, grids, masks, ctx, ctx_masks, known, kclass, kinds = ([] for _ in range(11))
    for case in cases:
        series, mask = _load_case(case)
        lut = _class_lut(case, mask)
        has_rv = case.labels["rv"] >= 0
        lab = case.labels
        sup = series.superior_in_plane()
        if case.frames is None:
            jobs = [(0, k) for k in range(series.n_slices)]
        else:
            jobs = [(int(t), 0) for t in case.frames]
        for t, k in jobs:
            m_t = mask[min(t, len(mask) - 1)]
            lm = derive_sax_landmarks(m_t[k], rv=lab["rv"], myo=lab["myo"], lv=lab["lv"], superior_dir=sup)
            canvas, grid = to_canvas(series, k, phases=[t])
            masks.append(lut[np.clip(resample_labels_to_canvas(m_t[k], grid), 0, len(lut) - 1)])
            pts = np.full((len(SAX_NAMES), 2), np.nan, np.float32)
            for n, name in enumerate(SAX_NAMES):
                if lm[name] is not None:
                    pts[n] = grid.ijk_to_canvas(np.asarray(lm[name], float))
            images.append(canvas[0])
            points.append(pts)
            present.append(np.isfinite(pts[:, 0]))
            meta.append((case.patient, case.image.name.split(".")[0] + (f"_t{t}" if case.frames else ""), k))
            grids.append(grid)
            known.append(np.array([has_rv, has_rv, True]))
            kclass.append(np.array([True, has_rv, True, True]))
            kinds.append(case.kind)
            if context:
                nb = [k - 1 if k > 0 else k, k + 1 if k + 1 < series.n_slices else k]
                c_img = [canvas[0] if kk == k else resample_to_canvas(normalise_intensity(series.pixels[t, kk])[None], grid)[0]
                         for kk in nb]
                c_msk = [masks[-1] if kk == k else lut[np.clip(resample_labels_to_canvas(m_t[kk], grid), 0, len(lut) - 1)]
                         for kk in nb]
                ctx.append(np.stack(c_img))
                ctx_masks.append(np.stack(c_msk))
    logger.info("built %d samples from %d cases", len(images), len(cases))
    return SampleSet(np.stack(images), np.stack(points), np.stack(present), meta, grids, np.stack(masks),
                     np.stack(ctx) if context else None, np.stack(ctx_masks) if context else None,
                     np.stack(known), np.stack(kclass), kinds)


#: EMIDEC labels: 1 LV cavity, 2 healthy myocardium, 3 infarct, 4 MVO; no RV (-1 = no such label)
EMIDEC_LABELS = {"rv": -1, "myo": 2, "lv": 1}
EMIDEC_MYO_EXTRA = (3, 4)
#: nominal in-plane pixel size (mm) given to the EMIDEC stacks, whose files carry none (EMIDEC: about 1.25-2 mm)
EMIDEC_NOMINAL_MM = 1.5
#: mlperf perfusion labels: 1 LV myocardium, 2 LV blood pool; no RV
MLPERF_LABELS = {"rv": -1, "myo": 1, "lv": 2}


def emidec_cases(root: Path) -> list[Case]:
    """EMIDEC LGE stacks (``Case_XXX_DE.nii.gz`` + ``_gt``) as partially labelled cases (no RV), at the nominal
    pixel size :data:`EMIDEC_NOMINAL_MM`; ``group`` = ``"N"`` (normal) or ``"P"`` (infarct)."""
    out = []
    for gt in sorted(Path(root).glob("Case_*_DE_gt.nii.gz")):
        img = gt.with_name(gt.name.replace("_gt", ""))
        if img.exists():
            pid = gt.name[: -len("_DE_gt.nii.gz")]
            out.append(Case(pid, img, gt, dict(EMIDEC_LABELS), pid[5:6], "lge", EMIDEC_NOMINAL_MM, EMIDEC_MYO_EXTRA,
                            source="emidec"))
    return out


def mscmr_cases(root: Path) -> list[Case]:
    """MS-CMRSeg LGE stacks (``subjectN_DE.nii.gz`` + ``subjectN_DE_manual.nii.gz``; labels 1 RV, 2 myocardium,
    3 LV cavity; real geometry, so A/I-RVI by anatomy) as fully labelled LGE cases (Zhuang, MICCAI 2019)."""
    out = []
    for f in sorted(Path(root).glob("subject*_DE.nii.gz")):
        gt = f.with_name(f.name.replace("_DE", "_DE_manual"))
        if gt.exists():
            out.append(Case(f.name.split("_")[0], f, gt, dict(MSCMR_LABELS), "", "lge", source="mscmr"))
    return out


def mlperf_sax_cases(root: Path, patients: list[str] | None = None, frames_per_series: int = 4) -> list[Case]:
    """mlperf first-pass perfusion series as partially labelled single-slice cases (no RV): per series, up to
    ``frames_per_series`` of its labelled frames (peak contrast), evenly spread. ``patients``: keep only these."""
    out = []
    for gt in sorted(Path(root).glob("*_gt.nii.gz")):
        img = gt.with_name(gt.name.replace("_gt", ""))
        pid = gt.name.split("_")[0]
        if not img.exists() or (patients is not None and pid not in patients):
            continue
        m = np.asarray(load_series(gt).pixels)
        labelled = np.flatnonzero(m.reshape(len(m), -1).max(1) > 0)
        if not len(labelled):
            continue
        pick = labelled[np.unique(np.linspace(0, len(labelled) - 1, min(frames_per_series, len(labelled))).round().astype(int))]
        out.append(Case(pid, img, gt, dict(MLPERF_LABELS), "", "perfusion", None, (), tuple(int(t) for t in pick),
                        source="perfusion"))
    return out
