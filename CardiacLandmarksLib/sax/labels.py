"""Landmark labels derived from manual segmentation masks.

No public set here carries expert landmark coordinates, so SAX labels are derived from
expert masks as in Xue et al., "Automated inline analysis of myocardial perfusion MRI with
deep learning", Radiology: AI 2020, and the shared data README:

* ``C-LV``: centroid of the LV cavity;
* RV insertion points: the two ends of the arc along which the RV cavity touches the LV
  myocardium, seen from C-LV;
* which end is anterior (``A-RVI``) and which inferior (``I-RVI``): from patient geometry
  when known (the end further towards the patient's head in the slice plane: the septum runs
  from the anterosuperior A-RVI down to the I-RVI on the diaphragmatic wall; the in-plane
  anterior direction, used before, lies nearly across the septum, since the RV is anterior of
  the LV, and named the two ends at random on some slices), otherwise from the display
  convention of the stored image (:func:`display_anterior_end`).

All coordinates here are 2D continuous pixel indices ``(i, j)`` = (column, row) of the mask
slice ``[j, i]``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: label values per data set: (rv, myo, lv)
ACDC_LABELS = {"rv": 1, "myo": 2, "lv": 3}
MNMS2_LABELS = {"lv": 1, "myo": 2, "rv": 3}
MSCMR_LABELS = {"rv": 1, "myo": 2, "lv": 3}

#: minimum LV cavity area (pixels) for the slice to count as "inside the LV"
MIN_LV_PIXELS = 5
#: minimum number of RV–myocardium contact pixels and arc span for RV insertions to exist
MIN_CONTACT_PIXELS = 4
MIN_ARC_DEG = 15.0


def display_anterior_end(end_a: np.ndarray, end_b: np.ndarray, center: np.ndarray, rv_dir: np.ndarray) -> int:
    """Which of two RVI ends is anterior in the standard display (0 for ``end_a``, 1 for ``end_b``).

    Display convention (ACDC and the canvas of :mod:`.preprocessing`): rows run from anterior
    (top) to posterior, the RV lies on the viewer's left. With ``rv_dir`` the direction
    C-LV -> middle of the RV contact arc, A-RVI is the end on the positive side of the 2D cross
    product ``rv_dir x (end - center)`` in (i, j) coordinates (j pointing down): e.g. RV
    to the left (-1, 0) and an end up-left (-0.5, -1) gives +1. The rule depends only on
    chirality, so it holds under any in-plane rotation, and a mirror image swaps the names.
    """
    def cross(e: np.ndarray) -> float:
        d = e - center
        return float(rv_dir[0] * d[1] - rv_dir[1] * d[0])

    return 0 if cross(end_a) >= cross(end_b) else 1


def derive_sax_landmarks(
    mask: np.ndarray,
    rv: int = 1,
    myo: int = 2,
    lv: int = 3,
    superior_dir: np.ndarray | None = None,
    end_window_deg: float = 4.0,
) -> dict[str, np.ndarray | None]:
    """Derive A-RVI, I-RVI and C-LV from one SAX mask slice.

    Args:
        mask: ``[j, i]`` integer label slice.
        rv, myo, lv: label values of RV cavity, LV myocardium and LV cavity.
        superior_dir: unit ``(di, dj)`` pointing to the patient's head in this slice
            (:meth:`CMRSeries.superior_in_plane`); the end further along it is A-RVI. None =
            display convention.
        end_window_deg: the RVI position is the mean of the contact pixels within this
            angle of the arc's end (reduces pixel noise).

    Returns:
        ``{"A-RVI": (i, j) | None, "I-RVI": ..., "C-LV": ...}``; None = landmark not present
        (no LV cavity on the slice, or no RV contact).
    """
    mask = np.asarray(mask)
    out: dict[str, np.ndarray | None] = {"A-RVI": None, "I-RVI": None, "C-LV": None}
    lv_px = np.argwhere(mask == lv)  # (j, i)
    if len(lv_px) < MIN_LV_PIXELS:
        return out
    center = lv_px.mean(axis=0)[::-1].astype(float)  # (i, j)
    out["C-LV"] = center
    rv_mask = mask == rv
    if not rv_mask.any():
        return out
    touching = ndimage.binary_dilation(rv_mask, structure=np.ones((3, 3), bool)) & (mask == myo)
    contact = np.argwhere(touching)[:, ::-1].astype(float)  # (i, j)
    if len(contact) < MIN_CONTACT_PIXELS:
        return out
    rel = contact - center
    ang = np.degrees(np.arctan2(rel[:, 1], rel[:, 0]))  # in (i, j) image coordinates
    order = np.argsort(ang)
    a_sorted = ang[order]
    gaps = np.diff(np.concatenate([a_sorted, a_sorted[:1] + 360.0]))
    g = int(np.argmax(gaps))
    span = 360.0 - gaps[g]
    if span < MIN_ARC_DEG:
        return out
    # arc runs from start (after the biggest gap) to end (before it), counter-clockwise in angle
    start_ang = a_sorted[(g + 1) % len(a_sorted)]
    end_ang = a_sorted[g]
    unwrapped = (ang - start_ang) % 360.0  # 0 .. span along the arc
    near_start = contact[unwrapped <= end_window_deg]
    near_end = contact[unwrapped >= span - end_window_deg]
    e1, e2 = near_start.mean(axis=0), near_end.mean(axis=0)
    mid = np.radians(start_ang + span / 2.0)
    rv_dir = np.array([np.cos(mid), np.sin(mid)])
    if superior_dir is not None:
        sd = np.asarray(superior_dir, float)
        first_is_a = (e1 - center) @ sd >= (e2 - center) @ sd
        a_end, i_end = (e1, e2) if first_is_a else (e2, e1)
    else:
        a_end, i_end = (e1, e2) if display_anterior_end(e1, e2, center, rv_dir) == 0 else (e2, e1)
    del end_ang
    out["A-RVI"], out["I-RVI"] = a_end, i_end
    return out
