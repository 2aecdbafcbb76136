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

#: a mask's LV cavity label is taken for what it is when at least this share of the pixels just outside it are
#: myocardium (mean over slices; :func:`label_problem`). On the 190 ACDC expert stacks the LV cavity scores 0.98-1.00
#: and the RV cavity 0.18-0.43 (M&Ms-2 001: 1.00 and 0.29-0.31), so 0.7 lies well between them.
MIN_LV_ENCLOSURE = 0.7


def parse_labels(text: str | None) -> dict:
    """``"rv=1,myo=2,lv=3"`` (any order, any case) as a label dict; ``None`` or ``""``: ACDC's.

    Raises:
        ValueError: another key than rv, myo, lv, a value that is not a whole number, a key missing or given twice,
            or two keys with one value.
    """
    if not text:
        return dict(ACDC_LABELS)
    out: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if key not in ("rv", "myo", "lv") or key in out:
            raise ValueError(f"labels {text!r}: give rv=N,myo=N,lv=N once each (got {part!r})")
        try:
            out[key] = int(value)
        except ValueError:
            raise ValueError(f"labels {text!r}: {key} must be a whole number, got {value.strip()!r}") from None
    if set(out) != {"rv", "myo", "lv"} or len(set(out.values())) != 3:
        raise ValueError(f"labels {text!r}: give three different values for rv, myo and lv")
    return out


def _enclosure(mask: np.ndarray, label: int, myo: int) -> float:
    """Mean over slices ``[K, J, I]`` of the share of the pixels just outside ``label`` (4-neighbourhood) that are
    ``myo``; NaN where no slice holds both (at least 20 pixels of ``label``)."""
    shares = []
    for s in mask:
        region = s == label
        if region.sum() < 20 or not (s == myo).any():
            continue
        ring = ndimage.binary_dilation(region) & ~region
        shares.append(float((s[ring] == myo).mean()))
    return float(np.mean(shares)) if shares else float("nan")


def label_problem(mask: np.ndarray, labels: dict, min_enclosure: float = MIN_LV_ENCLOSURE) -> str:
    """Why a SAX mask does not follow ``labels``, in words, or ``""`` when it does (or cannot be told).

    The LV cavity is surrounded by the myocardium, the RV cavity touches it only along the septum: with the labels
    as given, the LV cavity label must be enclosed by the myocardium label (:data:`MIN_LV_ENCLOSURE`) and more than
    the RV label. A site's masks in the M&Ms / UK Biobank convention (LV 1, myocardium 2, RV 3) read with ACDC's
    (RV 1, LV 3) would otherwise train and score RV insertions on the wrong ventricle without a word.

    Args:
        mask: integer labels ``[K, J, I]`` of one stack (one phase).
        labels: ``{"rv": N, "myo": N, "lv": N}`` (a value of -1: the set has no such label; nothing is checked).
        min_enclosure: the share an LV cavity reaches (SAX: :data:`MIN_LV_ENCLOSURE`; a long-axis view, whose LV
            opens onto the atrium: :data:`CardiacLandmarksLib.lax.labels.MIN_LAX_LV_ENCLOSURE`). Long-axis masks
            are given as their frames ``[T, J, I]`` (one plane).

    Returns:
        The problem, naming the label values that would fit (``"...: the masks look like rv=3,myo=2,lv=1"``).
    """
    from itertools import permutations

    if min(labels.get(k, -1) for k in ("rv", "myo", "lv")) < 0:
        return ""
    lv = _enclosure(mask, labels["lv"], labels["myo"])
    rv = _enclosure(mask, labels["rv"], labels["myo"])
    if not np.isfinite(lv) or (lv >= min_enclosure and not rv > lv):
        return ""
    values = [int(v) for v in np.unique(mask) if v > 0]
    fits = []
    for r, m, v in permutations(values, 3):
        lv2, rv2 = _enclosure(mask, v, m), _enclosure(mask, r, m)
        if np.isfinite(lv2) and lv2 >= min_enclosure and not rv2 > lv2:
            fits.append(f"rv={r},myo={m},lv={v}")
    return (f"the LV cavity label {labels['lv']} is not surrounded by the myocardium label {labels['myo']} "
            f"({lv:.0%} of the pixels around it; an LV cavity has at least {min_enclosure:.0%}, the RV label "
            f"{labels['rv']} {rv:.0%})" + (f": the masks look like {' or '.join(fits)}" if fits else ""))


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
