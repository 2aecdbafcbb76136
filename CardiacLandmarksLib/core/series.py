"""CMRSeries: one cardiac MR series as pixels + full geometry, whatever file it came from.

Loaders (:func:`load_series`) live in :mod:`.io_image` (NIfTI/NRRD/MHA) and
:mod:`.io_dicom` (DICOM folders, multi-slice x multi-phase cines); they all return this type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from CardiacLandmarksLib.core import geometry
from CardiacLandmarksLib.core.errors import InvalidImageError

VIEWS = ("sax", "2ch", "3ch", "4ch", "unknown")
SEQUENCES = ("cine", "lge", "perfusion", "t1", "unknown")
#: sequences a user can give a series whose sequence the tags and shape do not tell (``study`` / ``batch
#: --sequence``): those a study analyses
GIVEN_SEQUENCES = ("cine", "lge", "perfusion")


@dataclass
class CMRSeries:
    """A cardiac MR series with its geometry.

    Attributes:
        pixels: float32 array ``[t, k, j, i]`` (phase, slice, row, column). A single-phase
            stack has ``t == 1``; a single 2D image has ``t == k == 1``.
        spacing: ``(si, sj, sk)`` in mm: column and row pixel size, nominal slice spacing.
        direction: ``(3, 3)`` float; columns are the LPS unit vectors of the i, j, k axes.
        slice_origins: ``(K, 3)`` LPS mm position of voxel (0, 0, k), increasing along
            ``direction[:, 2]``.
        orientation_known: False when the file carries no real patient orientation (e.g.
            an identity NIfTI affine, as in the ACDC copies); anterior/inferior naming then
            follows the stored display convention (rows top -> bottom = anterior -> posterior,
            RV on the viewer's left).
        trigger_times: ``(T,)`` ms, or None when unknown: from the R wave for cines; for
            first-pass perfusion some scanners count from the start of the scan instead.
        view: one of :data:`VIEWS`.
        sequence: one of :data:`SEQUENCES`.
        source: path (or node name) the series came from.
        description: DICOM SeriesDescription or file name.
        metadata: free-form extras (series UID, modality, ...).
    """

    pixels: np.ndarray
    spacing: tuple[float, float, float]
    direction: np.ndarray
    slice_origins: np.ndarray
    orientation_known: bool = True
    trigger_times: np.ndarray | None = None
    view: str = "unknown"
    sequence: str = "unknown"
    source: str = ""
    description: str = ""
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.check_shapes()

    def __repr__(self) -> str:
        """One line for a console: what the series is, its size and pixel size, not its pixels (a repr of the
        ``[t, k, j, i]`` array and the DICOM file list would fill the screen), e.g.
        ``CMRSeries('dicom': cine, view unknown, 20 phases x 12 slices x 256 x 256 px, 1.37 x 1.37 x 10.0 mm,
        orientation from the header)``."""
        shape = np.shape(self.pixels)
        size = (f"{shape[0]} phase(s) x {shape[1]} slice(s) x {shape[2]} x {shape[3]} px" if len(shape) == 4
                else f"pixels of shape {shape}")
        try:
            mm = " x ".join(f"{float(x):.3g}" for x in self.spacing) + " mm"
        except (TypeError, ValueError):
            mm = f"spacing {self.spacing!r}"
        orient = "orientation from the header" if self.orientation_known else "orientation unknown"
        name = self.description or self.source or "series"
        return f"CMRSeries({name!r}: {self.sequence}, view {self.view}, {size}, {mm}, {orient})"

    def check_shapes(self) -> None:
        """Check that pixels and geometry describe the same slices (on construction, and again by
        :func:`CardiacLandmarksLib.io.common.finalize_series` in case a field was replaced since).

        Raises:
            InvalidImageError: ``pixels`` not 4-D ``[t, k, j, i]``, ``direction`` not 3 x 3, or ``slice_origins``
                not one LPS position per slice (``(K, 3)`` with ``K`` the pixels' slice count), so that no analysis
                starts on a series whose geometry cannot place its pixels.
        """
        what = self.source or self.description or "series"
        shape = np.shape(self.pixels)
        if len(shape) != 4:
            raise InvalidImageError(f"{what}: pixels must be 4-D [phase, slice, row, column]; got shape {shape}")
        if np.shape(self.direction) != (3, 3):
            raise InvalidImageError(f"{what}: direction must be a 3 x 3 matrix; got shape {np.shape(self.direction)}")
        if np.shape(self.slice_origins) != (shape[1], 3):
            raise InvalidImageError(f"{what}: {shape[1]} slice(s) in the pixels but slice positions of shape "
                                    f"{np.shape(self.slice_origins)} (expected ({shape[1]}, 3))")

    @property
    def n_phases(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def n_slices(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def shape_ji(self) -> tuple[int, int]:
        """In-plane shape ``(rows, columns)``."""
        return int(self.pixels.shape[2]), int(self.pixels.shape[3])

    def ijk_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous ``(..., 3)`` (i, j, k) -> LPS mm (see :func:`geometry.ijk_to_lps`)."""
        return geometry.ijk_to_lps(ijk, self.direction, self.spacing[:2], self.slice_origins)

    def lps_to_ijk(self, points: np.ndarray) -> np.ndarray:
        """LPS mm ``(..., 3)`` -> continuous (i, j, k) (see :func:`geometry.lps_to_ijk`)."""
        return geometry.lps_to_ijk(points, self.direction, self.spacing[:2], self.slice_origins)

    def _in_plane(self, axis_lps: np.ndarray) -> np.ndarray | None:
        if not self.orientation_known:
            return None
        d = self.direction
        v = np.array([axis_lps @ d[:, 0], axis_lps @ d[:, 1]])
        n = np.linalg.norm(v)
        return v / n if n > 1e-6 else None

    def anterior_in_plane(self) -> np.ndarray | None:
        """Unit 2-vector (di, dj) pointing anterior in the image plane, or None if orientation unknown."""
        return self._in_plane(geometry.ANTERIOR_LPS)

    def superior_in_plane(self) -> np.ndarray | None:
        """Unit 2-vector (di, dj) pointing to the patient's head in the image plane, or None if orientation unknown
        (or the plane holds no head-foot component). In a short-axis slice the A-RVI lies this way of the I-RVI."""
        return self._in_plane(geometry.SUPERIOR_LPS)
