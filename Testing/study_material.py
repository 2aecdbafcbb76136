"""Build multi-series study folders from the shared data, in a temporary folder (never in the repo).

* :func:`sunnybrook_perfusion_study`: the Sunnybrook SAX cine DICOM (one 12-slice x 20-phase
  series) and the GE first-pass perfusion series side by side (symlinks), as a study folder.
* :func:`split_per_slice`: copies of the Sunnybrook cine rewritten as one series per slice
  position (new SeriesInstanceUID/SeriesNumber per slice, the same description), the way
  Siemens scanners often store a SAX cine stack.
* :func:`acquire_stack_again`: such a per-slice stack acquired a second time (later series numbers, re-planned
  positions, other pixels), as when the protocol is run again.
* :func:`multi_slice_perfusion`: the GE first-pass perfusion frames written as one DICOM series of three slices
  10 mm apart (base, mid and apex in one series, as many scanners store a perfusion acquisition); optionally one
  slice stopped a few frames early.
* :func:`mnms2_study`: the M&Ms-2 subject 001 NIfTI files (images and labels) as a study folder.
* :func:`with_patient_size`: copies of the Sunnybrook cine with PatientSize / PatientWeight set (the shared copy is
  anonymised without them; scanners record them for the SAR limits).
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


def sunnybrook_and_a_copy(data: Path, out: Path, copy_dir: str, series_number: int, halve: bool = False,
                          **tags) -> Path:
    """``out/cine``: the Sunnybrook cine (one 12 x 20 series); ``out/<copy_dir>``: a copy of it as another series
    (new Series/SOPInstanceUIDs, ``series_number``, the DICOM attributes ``tags`` set, e.g. ``ImageType`` or
    ``SeriesDescription``; its pixels halved when ``halve``, so that a test can tell which one was read)."""
    src = data / "sunnybrook" / "SCD0000101" / "dicom"
    (out / "cine").mkdir(parents=True)
    (out / copy_dir).mkdir()
    uid = generate_uid()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the GE files' UIDs with leading zeros
        for f in sorted(src.glob("*.dcm")):
            ds = pydicom.dcmread(f)
            ds.save_as(out / "cine" / f.name)
            ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SeriesNumber = uid, generate_uid(), series_number
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            for name, value in tags.items():
                setattr(ds, name, value)
            if halve:
                ds.PixelData = (ds.pixel_array // 2).astype(ds.pixel_array.dtype).tobytes()
            ds.save_as(out / copy_dir / f.name)
    return out


def sunnybrook_with_4ch_planes(data: Path, out: Path, planes: dict[str, tuple[int, float, str]]) -> Path:
    """``out/sax``: the Sunnybrook cine (the study's SAX reference); for each ``name: (series_number, offset_mm,
    image_type)`` of ``planes``, ``out/<name>``: its most basal slice's 20 phases as a series ``cine_4ch`` on a plane
    through the stack's normal (a long-axis plane; orientation only, the pixels stay the SAX slice's: for routing
    tests, which read no pixels), moved ``offset_mm`` along that plane's normal, ImageType ``[image_type,
    'PRIMARY', 'CARDIAC']``."""
    src = data / "sunnybrook" / "SCD0000101" / "dicom"
    for d in ("sax", *planes):
        (out / d).mkdir(parents=True)
    uids = {d: generate_uid() for d in planes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the GE files' UIDs with leading zeros
        files = sorted(src.glob("*.dcm"))
        heads = [pydicom.dcmread(f) for f in files]
        one = min(round(float(h.SliceLocation), 2) for h in heads)
        for f, ds in zip(files, heads):
            ds.save_as(out / "sax" / f.name)
            if round(float(ds.SliceLocation), 2) != one:
                continue
            iop = np.array(ds.ImageOrientationPatient, float)
            normal = np.cross(iop[:3], iop[3:])
            ipp = np.array(ds.ImagePositionPatient, float)
            for d, (number, offset, kind) in planes.items():
                ds.ImageOrientationPatient = [*iop[:3], *normal]  # a plane through the stack's normal: long axis
                ds.ImagePositionPatient = [float(v) for v in ipp + offset * np.cross(iop[:3], normal)]
                ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = uids[d], number, "cine_4ch"
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                ds.ImageType = [kind, "PRIMARY", "CARDIAC"]
                ds.save_as(out / d / f.name)
    return out


def acquire_stack_again(stack: Path, out: Path, shift_mm: float, number_offset: int = 1000) -> Path:
    """The per-slice stack written by :func:`split_per_slice` acquired a second time into ``out``, as when the
    protocol is run again: new Series/SOPInstanceUIDs, SeriesNumber + ``number_offset`` (later), every slice moved
    ``shift_mm`` along the plane normal (re-planned; 0: the same positions) and its pixels halved (another
    acquisition, so that a test can tell which one was read)."""
    out.mkdir(parents=True, exist_ok=True)
    uids: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in sorted(stack.iterdir()):
            if p.suffix.lower() != ".dcm":
                continue
            ds = pydicom.dcmread(p)
            iop = np.array(ds.ImageOrientationPatient, float)
            normal = np.cross(iop[:3], iop[3:])
            ds.SeriesInstanceUID = uids.setdefault(ds.SeriesInstanceUID, generate_uid())
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.SeriesNumber = int(ds.SeriesNumber) + number_offset
            ds.ImagePositionPatient = [float(v) for v in np.array(ds.ImagePositionPatient, float) + shift_mm * normal]
            if "SliceLocation" in ds:
                ds.SliceLocation = float(ds.SliceLocation) + shift_mm
            ds.PixelData = (ds.pixel_array // 2).astype(ds.pixel_array.dtype).tobytes()
            ds.save_as(out / f"again_{p.name}")
    return out


def multi_slice_perfusion(data: Path, out: Path, short_slice: int | None = None, short_by: int = 0) -> Path:
    """The GE perfusion series (79 frames, one slice) written three times into one new series (new UIDs), the
    copies 10 mm apart along the slice normal, slice 1 mirrored left-right so that the slices differ; slice
    ``short_slice`` without its last ``short_by`` frames."""
    src = data / "perfusion" / "ge_dicom"
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in src.iterdir() if p.name.startswith("I"))
    uid = generate_uid()
    n = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the GE files' UIDs with leading zeros
        for k in range(3):
            for t, p in enumerate(files):
                if k == short_slice and t >= len(files) - short_by:
                    continue
                ds = pydicom.dcmread(p)
                iop = np.array(ds.ImageOrientationPatient, float)
                normal = np.cross(iop[:3], iop[3:])
                ds.ImagePositionPatient = [float(v) for v in np.array(ds.ImagePositionPatient, float) + 10.0 * k * normal]
                if k == 1:
                    ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, ::-1]).tobytes()
                ds.SeriesInstanceUID = uid
                ds.SOPInstanceUID = generate_uid()
                ds.InstanceNumber = n + 1
                ds.save_as(out / f"IM{n:04d}")
                n += 1
    return out


def mnms2_study(data: Path, out: Path) -> Path:
    """``out`` -> every M&Ms-2 subject-001 file (symlinks)."""
    _link_tree(data / "mnms2" / "001", out)
    return out


def tag_variants(data: Path, out: Path) -> Path:
    """A study folder with the Sunnybrook cine plus three series made from copies of its files with
    rewritten tags only (pixels unchanged), to exercise the tag rules of the routing:

    * ``lge``: phase 0 of every slice, a new series with ``InversionTime`` 300 ms and no description;
    * ``t1``: phase 0 of one slice, a new series described ``MOLLI T1 map``;
    * ``localiser``: three files of one new series with three different orientations.
    """
    src = data / "sunnybrook" / "SCD0000101" / "dicom"
    _link_tree(src, out / "cine")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dsets = [(p, pydicom.dcmread(p)) for p in sorted(src.iterdir()) if p.suffix.lower() == ".dcm"]
        first = {}
        for p, ds in dsets:
            key = tuple(np.round(np.array(ds.ImagePositionPatient, float), 2))
            if key not in first or float(ds.TriggerTime) < float(first[key][1].TriggerTime):
                first[key] = (p, ds)
        uid = {name: generate_uid() for name in ("lge", "t1", "loc")}
        (out / "lge").mkdir()
        for n, (_p, ds) in enumerate(first.values()):
            ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = uid["lge"], 900, ""
            ds.InversionTime = 300
            ds.SOPInstanceUID = generate_uid()
            ds.save_as(out / "lge" / f"lge{n:02d}.dcm")
        (out / "t1").mkdir()
        _p, ds = next(iter(first.values()))
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = uid["t1"], 910, "MOLLI T1 map"
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(out / "t1" / "t1.dcm")
        (out / "loc").mkdir()
        orientations = ([1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, -1], [0, 1, 0, 0, 0, -1])
        for n, ((_p, ds), iop) in enumerate(zip(list(first.values())[:3], orientations)):
            ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = uid["loc"], 1, ""
            ds.ImageOrientationPatient = iop
            ds.SOPInstanceUID = generate_uid()
            ds.save_as(out / "loc" / f"loc{n}.dcm")
    return out


def with_patient_size(data: Path, out: Path, size_m: str, weight_kg: str) -> Path:
    """``out`` -> copies of the Sunnybrook cine files with ``PatientSize`` (m) and ``PatientWeight`` (kg) set as
    given (DICOM decimal strings); pixels and every other tag unchanged."""
    src = data / "sunnybrook" / "SCD0000101" / "dicom"
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in sorted(src.iterdir()):
            if p.suffix.lower() != ".dcm":
                continue
            ds = pydicom.dcmread(p)
            ds.PatientSize, ds.PatientWeight = size_m, weight_kg
            ds.save_as(out / p.name)
    return out
