"""Resampling of each slice onto a fixed-mm canvas, with the exact transform back.

Following Xue et al., Radiology: AI 2021 (images resampled to a fixed pixel size, then
padded/cropped to a fixed matrix, intensity normalised), every 2D slice of a
:class:`~CardiacLandmarksLib.core.series.CMRSeries` is resampled onto a square canvas of
``CANVAS_PX`` x ``CANVAS_PX`` pixels of ``CANVAS_MM`` mm, centred on the slice's field of
view. Canvas axes:

* orientation known, short axis (the default, ``up="superior"``): the patient's head at the top and the
  RV on the viewer's left (the radiological short-axis display, in which the septum runs from the
  A-RVI at the top to the I-RVI at the bottom, as in the ACDC images the models were trained on),
  whatever the acquisition's in-plane orientation or mirroring
  (:func:`geometry.in_plane_anatomical_axes`); long-axis views (``up="anterior"``): rows run
  anterior -> posterior, columns from the patient's right to left;
* orientation unknown (ACDC): the stored column and row axes (display convention).

:class:`CanvasGrid` keeps the affine map canvas (x, y) <-> input voxel (i, j, k), so every
output maps back to the input grid and to LPS millimetres exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from CardiacLandmarksLib.core.errors import InvalidImageError
from CardiacLandmarksLib.core.geometry import in_plane_anatomical_axes
from CardiacLandmarksLib.core.series import CMRSeries

CANVAS_MM = 1.5
CANVAS_PX = 192


@dataclass(frozen=True)
class CanvasGrid:
    """Affine map between canvas pixels and input voxels of one slice.

    Canvas point ``(x, y)`` (x = column, y = row, pixel centres at integers) maps to input
    ``(i, j) = offset + matrix @ (x, y)`` on slice ``k``.
    """

    k: int
    matrix: np.ndarray  # (2, 2)
    offset: np.ndarray  # (2,)
    size: int = CANVAS_PX
    mm: float = CANVAS_MM

    def canvas_to_ijk(self, xy: np.ndarray) -> np.ndarray:
        """``(..., 2)`` canvas (x, y) -> ``(..., 3)`` continuous input (i, j, k)."""
        xy = np.asarray(xy, float)
        ij = xy @ self.matrix.T + self.offset
        return np.concatenate([ij, np.full(ij.shape[:-1] + (1,), float(self.k))], axis=-1)

    def ijk_to_canvas(self, ijk: np.ndarray) -> np.ndarray:
        """``(..., 3)`` (or ``(..., 2)``) input (i, j[, k]) -> ``(..., 2)`` canvas (x, y)."""
        ij = np.asarray(ijk, float)[..., :2]
        return (ij - self.offset) @ np.linalg.inv(self.matrix).T


def make_grid(series: CMRSeries, k: int, size: int = CANVAS_PX, mm: float = CANVAS_MM, up: str = "superior"
              ) -> CanvasGrid:
    """Canvas grid for slice ``k`` of ``series`` (see module docstring for the axes).

    ``up``: which patient direction is at the top of the canvas when the orientation is known:
    ``"superior"`` for short-axis slices (every SAX model and the SAX training data), ``"anterior"`` for
    long-axis views (the LAX models and their training data). Ignored without orientation.
    """
    d = np.asarray(series.direction, float)
    si, sj = float(series.spacing[0]), float(series.spacing[1])
    if series.orientation_known:
        col, row = in_plane_anatomical_axes(d, up)
    else:
        col, row = d[:, 0], d[:, 1]
    # express the canvas axes in input pixel units: di/dx etc.
    u, v = d[:, 0], d[:, 1]
    matrix = mm * np.array([[col @ u / si, row @ u / si], [col @ v / sj, row @ v / sj]])
    rows, cols = series.shape_ji
    centre_ij = np.array([(cols - 1) / 2.0, (rows - 1) / 2.0])
    c = (size - 1) / 2.0
    offset = centre_ij - matrix @ np.array([c, c])
    return CanvasGrid(k=k, matrix=matrix, offset=offset, size=size, mm=mm)


def normalise_intensity(image: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """Robust intensity scaling of one 2D image ``[j, i]``: percentiles -> [0, 1], clipped to [0, 1.5].

    Raises:
        InvalidImageError: on NaN/inf pixels.
    """
    img = np.asarray(image, np.float32)
    if not np.all(np.isfinite(img)):
        raise InvalidImageError("image contains NaN or infinite values")
    lo, hi = np.percentile(img, [low_pct, high_pct])
    if hi - lo <= 1e-6:
        return np.zeros_like(img)  # constant (empty) slice: the model will report no landmark
    return np.clip((img - lo) / (hi - lo), 0.0, 1.5)


def resample_to_canvas(images_ji: np.ndarray, grid: CanvasGrid) -> np.ndarray:
    """Resample 2D images ``[n, j, i]`` (already normalised) onto the canvas, ``[n, size, size]`` float32.

    Linear interpolation; zero outside the input field of view. When the canvas is coarser
    than the input, the input is first smoothed with a Gaussian (anti-aliasing).
    """
    images = np.asarray(images_ji, np.float32)
    ys, xs = np.mgrid[0 : grid.size, 0 : grid.size].astype(np.float64)
    ij = np.stack([xs, ys], axis=-1) @ grid.matrix.T + grid.offset
    coords = np.stack([ij[..., 1], ij[..., 0]])  # (row j, column i)
    # pixels of the input per canvas pixel along each input axis
    scale = np.abs(grid.matrix).max(axis=1)  # (di, dj) per canvas px
    sigma = [max(0.0, 0.4 * (scale[1] - 1.0)), max(0.0, 0.4 * (scale[0] - 1.0))]
    out = np.empty((len(images), grid.size, grid.size), np.float32)
    for n, img in enumerate(images):
        if max(sigma) > 0.05:
            img = ndimage.gaussian_filter(img, sigma)
        out[n] = ndimage.map_coordinates(img, coords, order=1, mode="constant", cval=0.0)
    return out


def resample_labels_to_canvas(labels_ji: np.ndarray, grid: CanvasGrid) -> np.ndarray:
    """Resample an integer label slice ``[j, i]`` onto the canvas by nearest neighbour, ``[size, size]`` uint8.

    Used for segmentation targets (0 outside the input field of view); the same grid as
    :func:`resample_to_canvas`, so label and image pixels stay aligned.
    """
    labels = np.asarray(labels_ji)
    ys, xs = np.mgrid[0 : grid.size, 0 : grid.size].astype(np.float64)
    ij = np.stack([xs, ys], axis=-1) @ grid.matrix.T + grid.offset
    coords = np.stack([ij[..., 1], ij[..., 0]])
    return ndimage.map_coordinates(labels.astype(np.int16), coords, order=0, mode="constant", cval=0).astype(np.uint8)


def to_canvas(series: CMRSeries, k: int, phases: list[int] | None = None) -> tuple[np.ndarray, CanvasGrid]:
    """Canvas images of slice ``k`` for the given phases (default all).

    Returns:
        ``(images [n_phases, CANVAS_PX, CANVAS_PX] float32 in ~[0, 1.5], grid)``.

    Raises:
        InvalidImageError: NaN/inf pixels.
    """
    phases = list(range(series.n_phases)) if phases is None else list(phases)
    grid = make_grid(series, k)
    normalised = np.stack([normalise_intensity(series.pixels[t, k]) for t in phases])
    return resample_to_canvas(normalised, grid), grid


def context_canvases(series: CMRSeries, k: int, phases: list[int] | None = None, grid: CanvasGrid | None = None
                     ) -> tuple[np.ndarray, CanvasGrid]:
    """Stack-context input of slice ``k``: the slice and its two neighbours, all on slice ``k``'s canvas grid.

    Channel order: slice ``k``, slice ``k - 1``, slice ``k + 1`` (the same phase); where the stack ends (or the
    series has a single slice) the slice itself stands in for the missing neighbour. The SAX model since v1.4
    takes this input, which tells it where in the stack the slice lies (base and apex are where Xue et al.,
    Radiology: AI 2021, found detection hardest).

    Returns:
        ``(images [n_phases, 3, CANVAS_PX, CANVAS_PX] float32 in ~[0, 1.5], grid)``.

    Raises:
        InvalidImageError: NaN/inf pixels.
    """
    phases = list(range(series.n_phases)) if phases is None else list(phases)
    grid = grid or make_grid(series, k)
    out = np.empty((len(phases), 3, grid.size, grid.size), np.float32)
    done: dict[int, np.ndarray] = {}
    for c, kk in enumerate((k, k - 1, k + 1)):
        kk = kk if 0 <= kk < series.n_slices else k
        if kk not in done:
            done[kk] = resample_to_canvas(np.stack([normalise_intensity(series.pixels[t, kk]) for t in phases]), grid)
        out[:, c] = done[kk]
    return out, grid


def model_canvases(series: CMRSeries, k: int, phases: list[int] | None, in_channels: int
                   ) -> tuple[np.ndarray, CanvasGrid]:
    """The input a model with ``in_channels`` takes for slice ``k``: :func:`to_canvas` (``[n, H, W]``) for a
    single-channel model, :func:`context_canvases` (``[n, 3, H, W]``) for a stack-context one."""
    if in_channels > 1:
        return context_canvases(series, k, phases)
    return to_canvas(series, k, phases)
