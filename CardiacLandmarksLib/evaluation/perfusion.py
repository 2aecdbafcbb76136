"""Cross-check of the AHA sector assignment against the mlperf ``*_stress_mid_sectors`` labels.

Convention of the mlperf sector labels (worked out from the 11 labelled series, see
:func:`sector_label_convention`): labels 1-6 are six 60 degree mid-ventricular sectors (7 =
blood pool), numbered **counter-clockwise in the stored display** (all 11 series), starting at
the anterior RV insertion: sector 1 and 2 cover the septum under the RV. Hence

    mlperf label k  ->  AHA mid segment  7 + (k mod 6):  1 -> 8 (anteroseptal), 2 -> 9,
    3 -> 10, 4 -> 11, 5 -> 12, 6 -> 7 (anterior),

and the boundary between labels 6 and 1 is their A-RVI ray, the boundary 2 | 3 their I-RVI ray.
Unlike AHA sectors, the six mlperf sectors are not 60 degrees wide: they are cut by three
lines through the LV centre (boundary k | k+1 and k+3 | k+4 are 180 degrees apart, so opposite
sectors have equal spans), with spans from a few degrees to ~160 degrees. Equiangular AHA
sectors can therefore agree with them only partly even with the same anchor.

Agreement = fraction of pixels labelled in both (mlperf sector and our myocardium sector)
with the same AHA segment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from CardiacLandmarksLib.perfusion import aha
from CardiacLandmarksLib.perfusion import analysis as perfusion

logger = logging.getLogger(__name__)

#: mlperf sector label -> AHA mid segment
MLPERF_TO_AHA = {1: 8, 2: 9, 3: 10, 4: 11, 5: 12, 6: 7}


def to_aha(sector_labels: np.ndarray) -> np.ndarray:
    """Map an mlperf sector label map (1-6, 7 = blood pool) to AHA mid segments (0 elsewhere)."""
    s = np.asarray(sector_labels)
    out = np.zeros(s.shape, np.int16)
    for k, seg in MLPERF_TO_AHA.items():
        out[s == k] = seg
    return out


def agreement(ours: np.ndarray, theirs_aha: np.ndarray) -> tuple[float, int]:
    """(fraction of pixels in both maps with the same segment, number of such pixels)."""
    both = (np.asarray(ours) > 0) & (np.asarray(theirs_aha) > 0)
    n = int(both.sum())
    return (float((ours[both] == theirs_aha[both]).mean()) if n else float("nan")), n


def their_anchor(sector_labels: np.ndarray, center_ij: np.ndarray, radius: float = 20.0,
                 pair: tuple[int, int] = (6, 1)) -> np.ndarray | None:
    """Point on the ray where two of their sectors meet: (6, 1) = their A-RVI direction,
    (2, 3) = their I-RVI direction; None when the sectors do not touch."""
    s = np.asarray(sector_labels)
    touch = ndimage.binary_dilation(s == pair[0]) & ndimage.binary_dilation(s == pair[1])
    if not touch.any():
        return None
    jj, ii = np.nonzero(touch)
    ang = np.arctan2(jj - center_ij[1], ii - center_ij[0])
    a = np.angle(np.mean(np.exp(1j * ang)))
    return np.array([center_ij[0] + radius * np.cos(a), center_ij[1] + radius * np.sin(a)])


def sector_label_convention(sector_labels: np.ndarray, center_ij: np.ndarray) -> int:
    """+1 when labels 1..6 run counter-clockwise on the screen (rows down), -1 when clockwise."""
    s = np.asarray(sector_labels)
    angs = []
    for k in range(1, 7):
        jj, ii = np.nonzero(s == k)
        if len(jj) == 0:
            return 0
        angs.append(np.angle(np.mean(np.exp(1j * np.arctan2(-(jj - center_ij[1]), ii - center_ij[0])))))
    steps = np.angle(np.exp(1j * np.diff(angs)))
    return 1 if np.mean(steps) > 0 else -1


@dataclass
class SectorCheck:
    """Our mid-ventricular sectors against the mlperf sector labels of one patient (:func:`check_patient`):
    ``direction`` (their label order: +1 counter-clockwise on the screen, -1 clockwise, 0 when a sector is missing;
    :func:`sector_label_convention`), pixel agreement with their anchor and with our automatic RV
    insertion, pixels compared, the A-RVI / I-RVI angle differences (deg) and a note on the RV insertion.
    """
    patient: str
    direction: int
    agreement_their_anchor: float
    agreement_auto_rvi: float
    n_pixels: int
    a_rvi_diff_deg: float
    i_rvi_diff_deg: float
    rvi_note: str


def check_patient(root: Path, patient: str) -> SectorCheck:
    """Compare our mid sectors with the mlperf labels on the first labelled frame of one patient.

    Uses the expert myocardium/blood-pool masks (so only the sector geometry and the RVI are
    tested): (a) anchored at their own 6|1 boundary, (b) anchored at our RV insertion found
    from the early RV enhancement (:func:`perfusion.estimate_rv_insertions`, with
    :func:`perfusion.nominal_septum` as in the pipeline).
    """
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.perfusion.segmentation import bolus_timing

    img = load_series(root / f"{patient}_stress_mid.nii.gz")
    frames = img.pixels[:, 0]
    gt = np.rint(load_series(root / f"{patient}_stress_mid_gt.nii.gz").pixels[:, 0]).astype(np.uint8)
    sec = np.rint(load_series(root / f"{patient}_stress_mid_sectors.nii.gz").pixels[:, 0]).astype(np.uint8)
    labelled = np.nonzero(sec.reshape(len(sec), -1).max(1) > 0)[0]
    t = int(labelled[0])
    mask = gt[t]
    c = np.argwhere(mask == 2).mean(0)[::-1]
    theirs = to_aha(sec[t])
    direction = sector_label_convention(sec[t], c)
    anchor = their_anchor(sec[t], c)
    a1 = agreement(aha.sector_map(mask == 1, c, anchor, "mid"), theirs)[0] if anchor is not None else float("nan")
    est = perfusion.estimate_rv_insertions(frames, mask, img.spacing[:2], bolus_timing(frames).foot)
    if est.a_rvi_ij is None:
        return SectorCheck(patient, direction, a1, float("nan"), 0, float("nan"), float("nan"), "; ".join(est.notes))
    a_ij, i_ij, _, adjusted = perfusion.nominal_septum(c, est.a_rvi_ij, est.i_rvi_ij)
    a2, n = agreement(aha.sector_map(mask == 1, c, a_ij, "mid"), theirs)
    i_theirs = their_anchor(sec[t], c, pair=(2, 3))
    return SectorCheck(patient, direction, a1, a2, n, _angle_diff(c, anchor, a_ij), _angle_diff(c, i_theirs, i_ij),
                       "nominal septum about the RV contact centre" if adjusted else "")


def _angle_diff(c: np.ndarray, p: np.ndarray | None, q: np.ndarray | None) -> float:
    """Absolute angle (degrees, 0-180) between the rays C->p and C->q."""
    if p is None or q is None:
        return float("nan")
    a = np.arctan2(p[1] - c[1], p[0] - c[0]) - np.arctan2(q[1] - c[1], q[0] - c[0])
    return float(abs(np.degrees(np.angle(np.exp(1j * a)))))


def check_all(root: Path) -> list[SectorCheck]:
    """:func:`check_patient` for every ``*_stress_mid_sectors`` file under ``root``."""
    pats = sorted(p.name.split("_")[0] for p in Path(root).glob("*_stress_mid_sectors.nii*"))
    return [check_patient(Path(root), p) for p in pats]
