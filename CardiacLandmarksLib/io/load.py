"""Route an input path to the right loader (:mod:`.io_dicom` or :mod:`.io_image`).

Rules, in order:

1. the path must exist (:class:`~.errors.InputNotFoundError`);
2. a folder is a DICOM folder (:func:`.io_dicom.load_dicom_folder`, recursive);
3. a file named ``*.nii``, ``*.nii.gz``, ``*.nrrd``, ``*.nhdr``, ``*.mha``, ``*.mhd`` or ``*.hdr``
   is read with SimpleITK (:func:`.io_image.load_image`);
4. an empty (0-byte) file is a :class:`~.errors.CorruptFileError`;
5. any other file that looks like DICOM (``DICM`` marker, or a raw data set) loads the series
   it belongs to (:func:`.io_dicom.load_dicom_file`: the same-series files of its folder);
6. a ZIP or tar archive (or a folder holding one and nothing else) is unpacked into a temporary folder and read from there
   (:mod:`.archive`; the series' source names the archive);
7. anything else is a :class:`~.errors.NoDicomError` (neither DICOM nor a supported image).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.errors import (
    CorruptFileError,
    InputNotFoundError,
    NoDicomError,
    SeriesMismatchError,
)
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.io import dicom as io_dicom
from CardiacLandmarksLib.io import image as io_image
from CardiacLandmarksLib.io.outputs import not_an_input_text

logger = logging.getLogger(__name__)


def input_kind(path: str | Path) -> str:
    """Which loader :func:`load_series` would use: ``"dicom-folder"``, ``"image"``,
    ``"dicom-file"``, ``"empty"`` or ``"unknown"``. Raises InputNotFoundError when missing."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputNotFoundError.at(p)
    if p.is_dir():
        return "dicom-folder"
    if io_image.is_image_file(p):
        return "image"
    if p.stat().st_size == 0:
        return "empty"
    if io_dicom.is_dicom_file(p):
        return "dicom-file"
    from CardiacLandmarksLib.io.common import archive_kind

    if archive_kind(p):
        return "archive"
    return "unknown"


def _only_archives(folder: Path) -> bool:
    """The folder holds archives and nothing else to read (hidden files and result folders aside): a series still
    packed. A folder of DICOM files with an archive beside them is read as the DICOM folder it is."""
    from CardiacLandmarksLib.io.common import archive_kind

    files = list(io_dicom._iter_files(folder, True))
    return bool(files) and all(archive_kind(f) for f in files)


def _load_archived(p: Path, series_uid: str | None, time_axis: str) -> CMRSeries:
    """A series packed in a ZIP / tar archive, given as the archive, as a folder holding it alone, or as a path into
    it (as results name an input read from one): unpacked into a temporary folder (:mod:`.archive`), read, and the
    folder removed; the series' source and notes name the archive."""
    from CardiacLandmarksLib.io.archive import archive_member, reachable, single_root

    if p.is_dir():  # a folder holding archives and nothing else
        packed = list(io_dicom._iter_files(p, True))
        if len(packed) != 1:
            raise NoDicomError(f"{p} holds {len(packed)} archives: a series is one archive, one folder or one file; "
                               "`study` reads a folder of several")
        p = packed[0]
    with reachable([p]) as (local, unpacked):
        root = local[0]
        if archive_member(p) is None:  # the archive itself: its top folder, or the one image file in it
            for _ in range(2):
                top = single_root(root) if root.is_dir() else root
                if top.is_dir() or io_image.is_image_file(top):
                    root = top
        return unpacked.read(lambda: load_series(root, series_uid, time_axis=time_axis))


def load_series(path: str | Path, series_uid: str | None = None, *, time_axis: str = "auto") -> CMRSeries:
    """Load a CMR series from a DICOM folder, a DICOM file or an image file.

    Args:
        path: DICOM folder, DICOM file (any name) or ``.nii``/``.nii.gz``/``.nrrd``/``.nhdr``/
            ``.mha``/``.mhd``/``.hdr`` file.
        series_uid: SeriesInstanceUID to load when a DICOM folder mixes several MR series
            (ignored for image files).
        time_axis: layout of 3-D image files (``"auto"``, ``"none"``, ``"first"``, ``"last"``),
            see :mod:`.io_image`; ignored for DICOM.

    Returns:
        :class:`~.series.CMRSeries`, ``pixels`` float32 ``[t, k, j, i]``, geometry in LPS mm.

    Raises:
        InputNotFoundError, NoDicomError, NotMRImageError, MixedSeriesError,
        MissingGeometryError, CorruptFileError, InvalidImageError (see :mod:`.errors` and the
        loaders' docstrings); :class:`~.archive.ArchiveError` (a CorruptFileError) for an archive that cannot be
        unpacked safely.
    """
    p = Path(path).expanduser()
    from CardiacLandmarksLib.io.archive import archive_member

    if archive_member(p) is not None:  # a path into an archive, as results name an input read from one
        return _load_archived(p, series_uid, time_axis)
    kind = input_kind(p)
    logger.debug("loading %s as %s", p, kind)
    if kind == "archive" or (kind == "dicom-folder" and _only_archives(p)):
        return _load_archived(p, series_uid, time_axis)
    if kind == "dicom-folder":
        try:
            return io_dicom.load_dicom_folder(p, series_uid=series_uid)
        except NoDicomError as exc:
            images = sorted(f.name for f in p.iterdir() if f.is_file() and io_image.is_image_file(f))
            if images:
                shown = ", ".join(images[:3]) + (" ..." if len(images) > 3 else "")
                raise NoDicomError(f"{p} holds no DICOM but {len(images)} image file(s) ({shown}): "
                                   f"give one of them as input, not the folder") from exc
            if text := not_an_input_text(p, "a series"):
                raise NoDicomError(text) from exc
            raise
    if kind == "image":
        if series_uid is not None:
            logger.warning("series_uid ignored for image file %s", p.name)
        return io_image.load_image(p, time_axis=time_axis)
    if kind == "empty":
        raise CorruptFileError(f"{p.name} is empty (0 bytes): {p}")
    if kind == "dicom-file":
        return io_dicom.load_dicom_file(p, series_uid=series_uid)
    raise NoDicomError(
        f"{p.name} is neither a DICOM file nor a supported image file "
        f"({', '.join(io_image.IMAGE_SUFFIXES)}) nor a ZIP or tar archive: {p}"
    )


def same_grid(a: CMRSeries, b: CMRSeries) -> bool:
    """True when two series share their image grid: matrix and slice count, spacing (1e-3 mm), direction (1e-3) and
    slice origins (1e-2 mm): frames of one acquisition stored as separate files."""
    return (a.pixels.shape[1:] == b.pixels.shape[1:] and np.allclose(a.spacing, b.spacing, atol=1e-3)
            and np.allclose(a.direction, b.direction, atol=1e-3)
            and np.allclose(a.slice_origins, b.slice_origins, atol=1e-2))


def pair_phases(ed: CMRSeries, es: CMRSeries) -> CMRSeries:
    """One two-phase cine from the ED and ES frames of a cine stored as two single-phase files of the same grid
    (:func:`same_grid`, checked by the caller): ``pixels [2, k, j, i]``, phase 0 = ED, 1 = ES,
    ``metadata["phase_labels"] == ["ED", "ES"]`` and ``metadata["paired_from"] == [ed.source, es.source]`` (the
    files, written into the result's ``landmarks.json`` as ``source_files`` so it can be loaded again:
    :func:`load_phase_files`); ``source`` is the ED file's."""
    s = copy.copy(ed)
    s.pixels = np.concatenate([ed.pixels, es.pixels], axis=0)
    s.trigger_times = None
    s.metadata = dict(ed.metadata, phase_labels=["ED", "ES"], paired_from=[ed.source, es.source])
    s.source = ed.source
    s.sequence = "cine"
    return s


def load_phase_files(paths) -> CMRSeries:
    """Load the ED and ES files of a pair (``[ed, es]``, as :func:`pair_phases` recorded them) as one two-phase series.

    Raises:
        SeriesMismatchError: not two files, a file with more than one phase, or files of different grids.
        and what :func:`load_series` raises for either file.
    """
    paths = [Path(p) for p in paths]
    if len(paths) != 2:
        raise SeriesMismatchError(f"an ED/ES pair is two files, not {len(paths)}: {', '.join(map(str, paths))}")
    ed, es = (load_series(p) for p in paths)
    if ed.n_phases != 1 or es.n_phases != 1 or not same_grid(ed, es):
        raise SeriesMismatchError(f"{paths[0].name} and {paths[1].name} are not the single-phase ED and ES frames "
                                  "of one grid: they cannot be stacked as one cine")
    return pair_phases(ed, es)
