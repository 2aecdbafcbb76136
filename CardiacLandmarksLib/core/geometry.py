"""Coordinate conventions: the one place for ijk <-> LPS, LPS <-> RAS and anatomical directions.

Conventions (see ``../shared/ARCHITECTURE.md``):

* numpy pixel arrays are ``[k, j, i]`` (slice, row, column), cines ``[t, k, j, i]``;
* a public ``ijk`` is ``(i, j, k)``: i = column (x), j = row (y), k = slice, continuous
  voxel indices, voxel centres at integers;
* world coordinates are LPS millimetres (DICOM, Slicer ``.mrk.json``); RAS only at the
  Slicer boundary (:func:`lps_to_ras`).

A stack is described by a 3x3 ``direction`` whose columns are the unit LPS vectors of the
i, j and k axes, the in-plane ``spacing`` (si, sj) in mm and one origin per slice
(``slice_origins[k]`` = LPS position of voxel (0, 0, k)). Per-slice origins keep DICOM
stacks with uneven slice gaps exact.
"""

from __future__ import annotations

import numpy as np

from CardiacLandmarksLib.core.errors import MissingGeometryError

#: LPS unit vector pointing to the patient's front (anterior).
ANTERIOR_LPS = np.array([0.0, -1.0, 0.0])
#: LPS unit vector pointing to the patient's left.
LEFT_LPS = np.array([1.0, 0.0, 0.0])
#: LPS unit vector pointing to the patient's head (superior).
SUPERIOR_LPS = np.array([0.0, 0.0, 1.0])
#: LPS unit vector pointing to the patient's right-anterior: where the RV lies from the LV in a heart in its usual
#: place (the SAX RV-side check, the 4CH septal hinge).
RIGHT_ANTERIOR_LPS = np.array([-1.0, -1.0, 0.0]) / np.sqrt(2.0)


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    """Convert LPS points ``(..., 3)`` in mm to RAS (negate x and y). Same function for RAS -> LPS."""
    p = np.asarray(points, dtype=float).copy()
    p[..., 0] *= -1.0
    p[..., 1] *= -1.0
    return p


ras_to_lps = lps_to_ras


def ijk_to_ras_matrix(direction: np.ndarray, spacing, slice_origins: np.ndarray, name: str = "") -> np.ndarray:
    """The ``(4, 4)`` IJK -> RAS matrix of a stack shown as one regular volume (a Slicer volume node,
    the browser review app's view).

    Args:
        direction: ``(3, 3)`` LPS unit vectors of the i, j, k axes (columns).
        spacing: ``(si, sj, sk)`` mm; ``sk`` is used only for a single slice.
        slice_origins: ``(K, 3)`` LPS origin of each slice; the k column is their mean step.
        name: the series' name, for the error message.

    Raises:
        MissingGeometryError: the slices are not evenly spaced along a straight line (a regular volume
            cannot hold them; resample first).
    """
    d = np.asarray(direction, dtype=float)
    si, sj, sk = (float(v) for v in spacing)
    origins = np.asarray(slice_origins, dtype=float).reshape(-1, 3)
    if len(origins) > 1:
        steps = np.diff(origins, axis=0)
        step = steps.mean(axis=0)
        if np.max(np.linalg.norm(steps - step, axis=1)) > 1e-3 * max(1.0, float(np.linalg.norm(step))):
            raise MissingGeometryError(f"slices of {name or 'the series'!r} are not evenly spaced; "
                                       f"cannot show them as one regular volume")
        k_column = step
    else:
        k_column = d[:, 2] * sk
    lps_ras = np.diag([-1.0, -1.0, 1.0])
    m = np.eye(4)
    m[:3, :3] = lps_ras @ np.column_stack([d[:, 0] * si, d[:, 1] * sj, k_column])
    m[:3, 3] = lps_ras @ origins[0]
    return m


def ijk_to_lps(
    ijk: np.ndarray, direction: np.ndarray, spacing_ij: tuple[float, float], slice_origins: np.ndarray
) -> np.ndarray:
    """Map continuous voxel indices to LPS mm.

    Args:
        ijk: ``(..., 3)`` continuous (i, j, k); k may be fractional (origins are interpolated
            linearly between slices, extrapolated past the ends).
        direction: ``(3, 3)``, columns = LPS unit vectors of the i, j, k axes.
        spacing_ij: in-plane pixel size (si, sj) in mm.
        slice_origins: ``(K, 3)`` LPS position of voxel (0, 0, k) for each slice.

    Returns:
        ``(..., 3)`` LPS positions in mm.
    """
    ijk = np.asarray(ijk, dtype=float)
    d = np.asarray(direction, dtype=float)
    origins = np.asarray(slice_origins, dtype=float).reshape(-1, 3)
    k = ijk[..., 2]
    origin = _interp_origin(origins, k)
    return origin + ijk[..., :1] * spacing_ij[0] * d[:, 0] + ijk[..., 1:2] * spacing_ij[1] * d[:, 1]


def lps_to_ijk(
    points: np.ndarray, direction: np.ndarray, spacing_ij: tuple[float, float], slice_origins: np.ndarray
) -> np.ndarray:
    """Inverse of :func:`ijk_to_lps` for points ``(..., 3)`` in LPS mm.

    k is found from the distance along the slice normal (``direction[:, 2]``) between the
    slice origins (which must increase with k, as every loader here guarantees), so uneven
    slice gaps are handled; i and j by projection on the in-plane
    axes of the (interpolated) slice origin.
    """
    p = np.asarray(points, dtype=float)
    d = np.asarray(direction, dtype=float)
    origins = np.asarray(slice_origins, dtype=float).reshape(-1, 3)
    heights = origins @ d[:, 2]
    h = p @ d[:, 2]
    if len(origins) == 1:
        k = np.zeros_like(h)
    else:
        if np.any(np.diff(heights) <= 0):
            raise MissingGeometryError("slice origins do not increase along direction[:, 2]; sort the slices first")
        idx = np.arange(len(origins), dtype=float)
        k = np.interp(h, heights, idx)
        k = np.where(h < heights[0], (h - heights[0]) / (heights[1] - heights[0]), k)
        k = np.where(h > heights[-1], idx[-1] + (h - heights[-1]) / (heights[-1] - heights[-2]), k)
    origin = _interp_origin(origins, k)
    rel = p - origin
    i = rel @ d[:, 0] / spacing_ij[0]
    j = rel @ d[:, 1] / spacing_ij[1]
    return np.stack([i, j, k], axis=-1)


def _interp_origin(origins: np.ndarray, k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, dtype=float)
    if len(origins) == 1:
        return np.broadcast_to(origins[0], k.shape + (3,)).copy()
    k0 = np.clip(np.floor(k).astype(int), 0, len(origins) - 2)
    w = (k - k0)[..., None]
    return origins[k0] * (1.0 - w) + origins[k0 + 1] * w


def in_plane_anatomical_axes(direction: np.ndarray, up: str = "anterior") -> tuple[np.ndarray, np.ndarray]:
    """Display axes of the standard anatomical view of an oblique slice, in LPS.

    Returns ``(col_dir, row_dir)``. With ``up="anterior"`` (long-axis views, the RVI angle's frame):
    ``row_dir`` is the patient's posterior direction projected on the slice plane (image rows run
    anterior -> posterior, so anterior is at the top), ``col_dir`` the patient's left projected and made
    orthogonal (columns run from the patient's right to the left, so the RV lies on the viewer's left).

    With ``up="superior"`` (the short-axis canvas): the same frame turned in plane, never mirrored, until the
    patient's head (superior, projected on the plane) is at the top. In a short-axis plane the RV lies
    anterior of the LV, so the anterior-up frame puts it at the top left, while the ventricular septum runs
    head to foot: from the anterior RV insertion (A-RVI, anterosuperior) down to the inferior one (I-RVI,
    on the diaphragmatic wall). Superior-up is close to the display the SAX models were trained on (ACDC as
    stored: on the 75 non-test ACDC patients' 1,132 slices with RV insertions, the RV lies a median 106 degrees
    from image-up, the I-RVI -> A-RVI line 18 degrees left of up). The anterior-up frame put the RV a median
    21-47 degrees from up on the five MS-CMRSeg stacks, beyond the training's +-60 degree rotations; superior-up
    puts it 90-98 degrees from up (and the septum within 8 degrees of vertical). Being a rotation about the
    head-foot axis, superior-up is also unchanged by an LPS/RAS mix-up of a header (x and y negated, as in the
    M&Ms-2 copies in the shared data), which turns the anterior-up frame upside down. Where the plane holds
    no head-foot component (an axial slice) the anterior-up frame is returned.

    Raises:
        MissingGeometryError: when the slice plane is parallel to the anterior axis
            (anterior cannot be projected), which never happens for SAX/LAX planes.
        ValueError: ``up`` is neither "anterior" nor "superior".
    """
    if up not in ("anterior", "superior"):
        raise ValueError(f"up must be 'anterior' or 'superior', not {up!r}")
    d = np.asarray(direction, dtype=float)
    u, v = d[:, 0], d[:, 1]
    post = -ANTERIOR_LPS
    row = (post @ u) * u + (post @ v) * v
    if np.linalg.norm(row) < 1e-3:
        raise MissingGeometryError("slice plane is perpendicular to the anterior-posterior axis; cannot orient it")
    row /= np.linalg.norm(row)
    left = (LEFT_LPS @ u) * u + (LEFT_LPS @ v) * v
    col = left - (left @ row) * row
    if np.linalg.norm(col) < 1e-3:
        # plane contains no left-right component: take the in-plane normal to row
        normal = np.cross(u, v)
        col = np.cross(row, normal)
    col /= np.linalg.norm(col)
    if up == "superior":
        head = (SUPERIOR_LPS @ u) * u + (SUPERIOR_LPS @ v) * v
        if np.linalg.norm(head) >= 1e-3:
            # head in the (col, row) frame is (tx, ty); turn the frame so that -row' points there
            tx, ty = (head @ col, head @ row) / np.linalg.norm(head)
            col, row = -ty * col + tx * row, -(tx * col + ty * row)
    return col, row


def display_axes_ras(direction: np.ndarray, orientation_known: bool, up: str = "anterior"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Screen right, screen up and normal (RAS unit vectors) of the standard display of a slice, for a viewer.

    Args:
        direction: ``(3, 3)`` LPS direction cosines of the image (columns: i, j, k axes).
        orientation_known: with a patient orientation, the anatomical display of :func:`in_plane_anatomical_axes`
            (``up``: ``"anterior"`` or ``"superior"`` at the top, the RV on the viewer's left); without it, the
            image as stored: column ``i`` to the right, row ``j`` downwards (the overlay PNGs' convention).
        up: see :func:`in_plane_anatomical_axes`.

    Returns:
        ``(right, up, normal)``: ``up`` made orthogonal to ``right``, ``normal = right x up`` (along the slice axis).
    """
    d = np.asarray(direction, float)
    if orientation_known:
        column, row = in_plane_anatomical_axes(d, up)
    else:
        column, row = d[:, 0], d[:, 1]
    right = lps_to_ras(np.asarray(column, float))
    right = right / np.linalg.norm(right)
    upward = lps_to_ras(-np.asarray(row, float))
    upward = upward - (upward @ right) * right
    upward = upward / np.linalg.norm(upward)
    return right, upward, np.cross(right, upward)


def stack_jump_mm(positions_lps: np.ndarray, found: np.ndarray, normal_lps: np.ndarray) -> np.ndarray:
    """In-plane distance (mm) from each point of a stack to the same landmark on its nearest neighbouring slice.

    A landmark that runs along the heart (an RV insertion, the LV centre) moves little in plane from one short-axis
    slice to the next, so a point far from both neighbours is doubtful or stray (a stack-consistency check; Xue et
    al., Radiology: AI 2021, found basal and apical slices hardest). Used by the SAX pipeline's stack gate (the
    sax_phdnet card's ``shipped.max_stack_jump_mm``) and its stray C-LV rule (the SAX cards'
    ``thresholds.max_clv_stack_jump_mm``).

    Args:
        positions_lps: ``[K, 3]`` LPS mm of one landmark on the ``K`` slices of one phase, in slice order (NaN
            where not found).
        found: ``[K]`` bool.
        normal_lps: ``[3]`` the stack's slice normal (LPS; any length but 0): the through-plane part of the
            difference is left out.

    Returns:
        ``[K]`` mm: the smallest in-plane distance to the point on slice ``k - 1`` or ``k + 1`` where that one is
        found; NaN where the point is not found or neither neighbour is (not judged).

    Raises:
        ValueError: shapes that do not match, or a zero normal.
    """
    p = np.asarray(positions_lps, np.float64)
    f = np.asarray(found, bool)
    n = np.asarray(normal_lps, np.float64).ravel()
    if p.ndim != 2 or p.shape[1] != 3 or f.shape != (p.shape[0],) or n.shape != (3,):
        raise ValueError(f"positions must be [K, 3] with found [K] and a normal [3]; got {p.shape}, {f.shape}, {n.shape}")
    if not np.linalg.norm(n) > 0:
        raise ValueError("the slice normal must not be zero")
    out = np.full(p.shape[0], np.nan)
    for k in np.flatnonzero(f):
        dists = [in_plane_mm(p[k] - p[q], n) for q in (k - 1, k + 1) if 0 <= q < p.shape[0] and f[q]]
        if dists:
            out[k] = min(dists)
    return out


def in_plane_mm(difference_lps: np.ndarray, normal_lps: np.ndarray) -> float:
    """Length (mm) of the part of an LPS difference vector ``[3]`` that lies in the plane with normal ``[3]`` (any
    length but 0): the through-plane part is left out.

    Raises:
        ValueError: a zero normal.
    """
    n = np.asarray(normal_lps, np.float64).ravel()
    norm = np.linalg.norm(n)
    if not norm > 0:
        raise ValueError("the slice normal must not be zero")
    n = n / norm
    d = np.asarray(difference_lps, np.float64).ravel()
    return float(np.linalg.norm(d - (d @ n) * n))
