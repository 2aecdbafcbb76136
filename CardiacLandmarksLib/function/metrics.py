"""Overlap and surface-distance metrics of 3D label volumes (pure numpy/scipy).

Arrays are ``[k, j, i]`` with voxel spacing ``(sk, sj, si)`` in mm given as the series'
``(si, sj, sk)`` tuple (the functions reorder it). Used by the function evaluation
(:mod:`CardiacLandmarksLib.evaluation.function`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient 2|A∩B| / (|A| + |B|) of two boolean arrays; NaN when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = int(a.sum()) + int(b.sum())
    return float("nan") if s == 0 else 2.0 * float(np.logical_and(a, b).sum()) / s


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), border_value=0)


def hausdorff95(a: np.ndarray, b: np.ndarray, spacing_ijk: tuple[float, float, float]) -> float:
    """95th-percentile symmetric Hausdorff distance (mm) between the surfaces of two boolean
    ``[k, j, i]`` masks: the 95th percentile of the pooled surface-voxel distances from A to B
    and from B to A (as in the ACDC / MedPy ``hd95``). NaN when either mask is empty.

    Args:
        spacing_ijk: voxel size ``(si, sj, sk)`` mm (the series' ``spacing``).
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if not a.any() or not b.any():
        return float("nan")
    sampling = (float(spacing_ijk[2]), float(spacing_ijk[1]), float(spacing_ijk[0]))
    sa, sb = _surface(a), _surface(b)
    da = ndimage.distance_transform_edt(~sb, sampling=sampling)[sa]
    db = ndimage.distance_transform_edt(~sa, sampling=sampling)[sb]
    return float(np.percentile(np.concatenate([da, db]), 95))
