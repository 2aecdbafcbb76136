"""SAX landmark training/validation samples built from labelled stacks (ACDC by default).

Each sample is one slice of one phase resampled onto the canvas of
:mod:`CardiacLandmarksLib.core.preprocessing`, with the derived landmarks
(:func:`CardiacLandmarksLib.sax.labels.derive_sax_landmarks`) in canvas pixels. The split is
by patient, stratified by pathology group, never by slice.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.errors import CardiacLandmarksError
from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW
from CardiacLandmarksLib.core.preprocessing import CanvasGrid, resample_labels_to_canvas, to_canvas
from CardiacLandmarksLib.datasets.splits import ACDC_CHALLENGE_TEST, is_acdc_test
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.sax.labels import ACDC_LABELS, derive_sax_landmarks

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


@dataclass
class SampleSet:
    """Arrays of canvas samples.

    images ``[N, H, W]`` float32; points ``[N, L, 2]`` canvas (x, y) (NaN when absent);
    present ``[N, L]`` bool; meta: per sample ``(patient, file stem, k)``; grids: CanvasGrid per sample;
    masks ``[N, H, W]`` uint8 canvas labels in :data:`SEG_CLASSES` order (nearest-neighbour resampled
    expert mask).
    """

    images: np.ndarray
    points: np.ndarray
    present: np.ndarray
    meta: list[tuple[str, str, int]]
    grids: list[CanvasGrid]
    masks: np.ndarray | None = None


def acdc_cases(root: Path) -> list[Case]:
    """ACDC ED/ES stacks with masks under ``root`` (``patientNNN_{ED,ES}[_gt].nii.gz`` + ``acdc_info.csv``)."""
    root = Path(root)
    groups = {}
    info = root / "acdc_info.csv"
    if info.exists():
        with open(info) as fh:
            groups = {row["patient"]: row["group"] for row in csv.DictReader(fh)}
    cases = []
    for gt in sorted(root.glob("patient*_E?_gt.nii.gz")):
        img = gt.with_name(gt.name.replace("_gt", ""))
        pid = gt.name.split("_")[0]
        if img.exists():
            cases.append(Case(pid, img, gt, dict(ACDC_LABELS), groups.get(pid, "")))
    return cases


def paired_cases(folder: Path, labels: dict | None = None) -> list[Case]:
    """User data: every ``NAME.nii[.gz]|.nrrd`` with a mask ``NAME_gt.*`` beside it (labels default ACDC's)."""
    folder = Path(folder)
    cases = []
    for gt in sorted(folder.iterdir()):
        stem = gt.name.split(".")[0]
        if not stem.endswith("_gt"):
            continue
        ext = gt.name[len(stem):]
        img = gt.with_name(stem[:-3] + ext)
        if img.exists():
            cases.append(Case(stem[:-3], img, gt, dict(labels or ACDC_LABELS)))
    return cases


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


def test_cases(cases: list[Case]) -> list[Case]:
    """The cases of the fixed ACDC test split (:data:`.splits.ACDC_TEST_PATIENTS`)."""
    return [c for c in cases if is_acdc_test(c.patient)]


def case_landmarks_ijk(case: Case, series=None, mask_series=None) -> dict[int, dict[str, np.ndarray | None]]:
    """Derived landmarks per slice k of a case: ``{k: {name: (i, j) | None}}``."""
    series = series or load_series(case.image)
    mask_series = mask_series or load_series(case.mask)
    mask = np.rint(mask_series.pixels[0]).astype(np.int16)
    ant = series.anterior_in_plane()
    lab = case.labels
    return {k: derive_sax_landmarks(mask[k], rv=lab["rv"], myo=lab["myo"], lv=lab["lv"], anterior_dir=ant)
            for k in range(mask.shape[0])}


def build_samples(cases: list[Case]) -> SampleSet:
    """Resample every slice of every case onto the canvas with its derived landmarks."""
    images, points, present, meta, grids, masks = [], [], [], [], [], []
    for case in cases:
        series = load_series(case.image)
        mask_series = load_series(case.mask)
        mask = np.rint(mask_series.pixels[0]).astype(np.int16)
        classes = np.zeros(int(mask.max()) + 1 if mask.size else 1, np.uint8)  # file label -> SEG_CLASSES index
        for value, key in ((case.labels["rv"], 1), (case.labels["myo"], 2), (case.labels["lv"], 3)):
            if value < len(classes):
                classes[value] = key
        lms = case_landmarks_ijk(case, series=series, mask_series=mask_series)
        for k, lm in lms.items():
            canvas, grid = to_canvas(series, k, phases=[0])
            masks.append(classes[np.clip(resample_labels_to_canvas(mask[k], grid), 0, len(classes) - 1)])
            pts = np.full((len(SAX_NAMES), 2), np.nan, np.float32)
            for n, name in enumerate(SAX_NAMES):
                if lm[name] is not None:
                    pts[n] = grid.ijk_to_canvas(np.asarray(lm[name], float))
            images.append(canvas[0])
            points.append(pts)
            present.append(np.isfinite(pts[:, 0]))
            meta.append((case.patient, case.image.name.split(".")[0], k))
            grids.append(grid)
    logger.info("built %d samples from %d cases", len(images), len(cases))
    return SampleSet(np.stack(images), np.stack(points), np.stack(present), meta, grids, np.stack(masks))
