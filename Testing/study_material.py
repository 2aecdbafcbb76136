"""Build multi-series study folders from the shared data, in a temporary folder (never in the repo).

* :func:`sunnybrook_perfusion_study`: the Sunnybrook SAX cine DICOM (one 12-slice x 20-phase
  series) and the GE first-pass perfusion series side by side (symlinks), as a study folder.
* :func:`split_per_slice`: copies of the Sunnybrook cine rewritten as one series per slice
  position (new SeriesInstanceUID/SeriesNumber per slice, the same description), the way
  Siemens scanners often store a SAX cine stack.
* :func:`mnms2_study`: the M&Ms-2 subject 001 NIfTI files (images and labels) as a study folder.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid


def _link_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.iterdir()):
        if p.is_file():
            os.symlink(p, dst / p.name)


def sunnybrook_perfusion_study(data: Path, out: Path) -> Path:
    """``out/cine`` -> Sunnybrook cine files, ``out/perfusion`` -> GE perfusion files (symlinks)."""
    _link_tree(data / "sunnybrook" / "SCD0000101" / "dicom", out / "cine")
    _link_tree(data / "perfusion" / "ge_dicom", out / "perfusion")
    return out


def split_per_slice(data: Path, out: Path, description: str = "cine_sax") -> Path:
    """Rewrite the Sunnybrook cine as one series per slice position (copies, in ``out``)."""
    src = data / "sunnybrook" / "SCD0000101" / "dicom"
    out.mkdir(parents=True, exist_ok=True)
    dsets = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the GE files' UIDs with leading zeros
        for p in sorted(src.iterdir()):
            if p.suffix.lower() == ".dcm":
                dsets.append((p, pydicom.dcmread(p)))
    iop = np.array(dsets[0][1].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    heights = sorted({round(float(np.array(ds.ImagePositionPatient, float) @ normal), 2) for _, ds in dsets})
    uids = {h: generate_uid() for h in heights}
    for p, ds in dsets:
        h = round(float(np.array(ds.ImagePositionPatient, float) @ normal), 2)
        ds.SeriesInstanceUID = uids[h]
        ds.SeriesNumber = 1000 + heights.index(h)
        ds.SeriesDescription = description
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(out / p.name)
    return out


def mnms2_study(data: Path, out: Path) -> Path:
    """``out`` -> every M&Ms-2 subject-001 file (symlinks)."""
    _link_tree(data / "mnms2" / "001", out)
    return out
