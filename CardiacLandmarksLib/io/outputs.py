"""Result folders: file naming shared by every task's writer.

Every front end (CLI, Slicer Logic, console, batch, web) writes a task result through the result's
``write(outdir)`` (:class:`CardiacLandmarksLib.sax.report.LandmarkResult` for SAX and LAX landmarks,
:class:`CardiacLandmarksLib.perfusion.pipeline.PerfusionResult` for perfusion); those writers name their
files with :func:`output_stem` and write through :mod:`.atomic`.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".img", ".dcm")
_GENERIC_DICOM_DIRS = ("dicom", "dcm", "images", "data", "series")


def output_stem(source: str) -> str:
    """File-name stem for a result of ``source`` (an image path or DICOM folder).

    Image suffixes are stripped; a generic DICOM folder name (``dicom``, ``images``...) is replaced by the
    folder above it (the patient id, usually).
    """
    p = Path(source)
    name = p.name
    if p.suffix == "" and name.lower() in _GENERIC_DICOM_DIRS and p.parent.name:
        name = p.parent.name
    for ext in _IMAGE_SUFFIXES:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name or "series"
