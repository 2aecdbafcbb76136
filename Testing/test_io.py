"""Loading CMR series (issue 2): real DICOM/NIfTI loads checked against independent readers,
and one bad-input test per named error.

References are computed here straight from pydicom headers / SimpleITK index->physical
transforms / the ACDC info table, never from the loader's own output. Synthetic bad inputs
are built in ``tmp_path`` only (copies of a real Sunnybrook file, modified).
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import require_data

from CardiacLandmarksLib.core import errors
from CardiacLandmarksLib.io import dicom as io_dicom
from CardiacLandmarksLib.io import image as io_image
from CardiacLandmarksLib.io import load as io_dispatch
from CardiacLandmarksLib.io.load import load_series

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _read_dicom(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def _save(ds: pydicom.Dataset, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path)
    return path


# --------------------------------------------------------------------------- real data: DICOM


@pytest.fixture(scope="module")
def sunny(sunnybrook_dicom):
    t0 = time.perf_counter()
    s = load_series(sunnybrook_dicom)
    return s, time.perf_counter() - t0


@pytest.fixture(scope="module")
def sunny_headers(sunnybrook_dicom):
    """Independent read: every file's geometry/timing straight from pydicom."""
    out = []
    for p in sorted(sunnybrook_dicom.iterdir()):
        ds = _read_dicom(p)
        out.append(
            {
                "path": p,
                "ipp": np.array([float(x) for x in ds.ImagePositionPatient]),
                "iop": np.array([float(x) for x in ds.ImageOrientationPatient]),
                "ps": np.array([float(x) for x in ds.PixelSpacing]),
                "trigger": float(ds.TriggerTime),
                "ds": ds,
            }
        )
    return out


def test_sunnybrook_shape_spacing_timing(sunny):
    s, seconds = sunny
    assert s.pixels.shape == (20, 12, 256, 256)
    assert s.pixels.dtype == np.float32
    assert s.spacing[0] == pytest.approx(1.367188, abs=1e-5)
    assert s.spacing[1] == pytest.approx(1.367188, abs=1e-5)
    assert s.spacing[2] == pytest.approx(10.0, abs=0.01)
    assert s.orientation_known
    gaps = np.diff(s.slice_origins @ s.direction[:, 2])
    np.testing.assert_allclose(gaps, 10.0, atol=0.02)
    assert s.trigger_times is not None and s.trigger_times.shape == (20,)
    assert np.all(np.diff(s.trigger_times) > 0)
    assert s.sequence == "cine"
    assert s.metadata["series_uid"].startswith("2.16.124.113543")
    assert s.metadata["modality"] == "MR"
    assert seconds < 10.0, f"Sunnybrook folder took {seconds:.1f} s to load"


def test_sunnybrook_geometry_matches_pydicom(sunny, sunny_headers):
    s, _ = sunny
    iop = sunny_headers[0]["iop"]
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    ps = sunny_headers[0]["ps"]
    # independent slice order: distinct positions sorted along the normal
    positions = {tuple(np.round(h["ipp"], 4)): h["ipp"] for h in sunny_headers}
    ordered = sorted(positions.values(), key=lambda p: p @ normal)
    assert len(ordered) == 12
    np.testing.assert_allclose(s.direction[:, 0], row, atol=1e-6)
    np.testing.assert_allclose(s.direction[:, 1], col, atol=1e-6)
    np.testing.assert_allclose(s.direction[:, 2], normal, atol=1e-6)
    for k, ipp in enumerate(ordered):
        np.testing.assert_allclose(s.ijk_to_lps(np.array([0.0, 0.0, k])), ipp, atol=1e-4)
        # i runs along the row cosine with the column spacing PixelSpacing[1], j along the column cosine
        expected = ipp + 5 * ps[1] * row + 7 * ps[0] * col
        np.testing.assert_allclose(s.ijk_to_lps(np.array([5.0, 7.0, k])), expected, atol=1e-4)
        back = s.lps_to_ijk(expected)
        np.testing.assert_allclose(back, [5.0, 7.0, k], atol=1e-6)


def test_sunnybrook_pixels_sorted_by_position_and_trigger_time(sunny, sunny_headers):
    s, _ = sunny
    normal = np.cross(sunny_headers[0]["iop"][:3], sunny_headers[0]["iop"][3:])
    heights = sorted({round(float(h["ipp"] @ normal), 3) for h in sunny_headers})
    for k, t in [(0, 0), (3, 7), (11, 19), (6, 12)]:
        same_slice = [h for h in sunny_headers if abs(h["ipp"] @ normal - heights[k]) < 0.01]
        assert len(same_slice) == 20
        h = sorted(same_slice, key=lambda h: h["trigger"])[t]
        ds = h["ds"]
        ref = ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
        np.testing.assert_array_equal(s.pixels[t, k], ref)
        assert s.metadata["trigger_times_per_slice"][k][t] == pytest.approx(h["trigger"])
        assert Path(s.metadata["files"][t][k]) == h["path"]


def test_single_dicom_file_loads_its_series(sunny, sunnybrook_dicom):
    s, _ = sunny
    one = load_series(sunnybrook_dicom / "37.dcm")
    assert one.pixels.shape == s.pixels.shape
    np.testing.assert_array_equal(one.pixels, s.pixels)
    np.testing.assert_allclose(one.slice_origins, s.slice_origins)


def test_ge_perfusion_dicom():
    folder = require_data("perfusion", "ge_dicom")
    s = load_series(folder)  # GoldStandard.mat sits in the same folder and must be ignored
    assert s.pixels.shape == (79, 1, 256, 256)
    assert s.sequence == "perfusion"
    assert np.all(np.diff(s.trigger_times) > 0)
    ds = _read_dicom(folder / "I01")
    ps = [float(x) for x in ds.PixelSpacing]
    assert s.spacing[0] == pytest.approx(ps[1], abs=1e-7)  # column spacing
    assert s.spacing[1] == pytest.approx(ps[0], abs=1e-7)  # row spacing
    np.testing.assert_allclose(s.slice_origins[0], [float(x) for x in ds.ImagePositionPatient], atol=1e-6)
    headers = sorted((_read_dicom(p) for p in folder.glob("I??")), key=lambda d: float(d.TriggerTime))
    for t in (0, 40, 78):
        np.testing.assert_array_equal(s.pixels[t, 0], headers[t].pixel_array.astype(np.float32))
        assert s.trigger_times[t] == pytest.approx(float(headers[t].TriggerTime))


# --------------------------------------------------------------------------- real data: images


def test_acdc_nifti_orientation_unknown(acdc_dir):
    path = acdc_dir / "patient001_ED.nii.gz"
    s = load_series(path)
    with open(acdc_dir / "acdc_info.csv") as fh:
        info = {r["patient"]: r for r in csv.DictReader(fh)}["patient001"]
    img = sitk.ReadImage(str(path))
    nx, ny, nz = img.GetSize()
    assert s.pixels.shape == (1, int(info["n_slices"]), ny, nx)
    assert nz == int(info["n_slices"])
    assert s.orientation_known is False
    assert s.anterior_in_plane() is None
    assert s.spacing == pytest.approx((float(info["pixel_mm"]), float(info["pixel_mm"]), float(info["slice_spacing_mm"])))
    # stored axes kept: pixels[0, k, j, i] is voxel (i, j, k) of the file
    for i, j, k in [(10, 20, 0), (100, 128, 5), (215, 255, 9)]:
        assert s.pixels[0, k, j, i] == img.GetPixel(i, j, k)


def test_mnms2_4d_cine():
    path = require_data("mnms2", "001", "001_LA_CINE.nii.gz")
    s = load_series(path)
    img = sitk.ReadImage(str(path))
    assert img.GetDimension() == 4 and img.GetSize() == (256, 256, 1, 25)
    assert s.pixels.shape == (25, 1, 256, 256)
    assert s.orientation_known is True
    assert s.sequence == "cine"
    for i, j, t in [(0, 0, 0), (100, 150, 12), (255, 3, 24)]:
        assert s.pixels[t, 0, j, i] == img.GetPixel(i, j, 0, t)
        expected = np.array(img.TransformIndexToPhysicalPoint((i, j, 0, t)))[:3]
        np.testing.assert_allclose(s.ijk_to_lps(np.array([i, j, 0.0])), expected, atol=1e-3)


def test_mlperf_time_first_layout():
    base = require_data("perfusion", "mlperf")
    path = base / "1132584_stress_mid.nii.gz"
    s = load_series(path)
    img = sitk.ReadImage(str(path))
    n_t, ny, nx = img.GetSize()  # file axes (time, y, x) as written by nibabel
    assert (n_t, ny, nx) == (78, 160, 160)
    assert s.pixels.shape == (78, 1, 160, 160)
    assert s.spacing[:2] == pytest.approx((img.GetSpacing()[2], img.GetSpacing()[1]))
    assert s.orientation_known is False  # axis-aligned placeholder affine centred at 0
    assert s.sequence == "perfusion" and s.view == "sax"
    for t, j, i in [(0, 0, 0), (30, 80, 90), (77, 159, 3)]:
        assert s.pixels[t, 0, j, i] == img.GetPixel(t, j, i)
        expected = np.array(img.TransformIndexToPhysicalPoint((0, j, i)))
        np.testing.assert_allclose(s.ijk_to_lps(np.array([i, j, 0.0])), expected, atol=1e-3)
    # anatomy check that time really is on t: on the annotated peak-contrast frame the LV blood
    # pool (label 2) is brighter than the myocardium (1) and than itself before contrast arrives
    gt = load_series(base / "1132584_stress_mid_gt.nii.gz").pixels.astype(int)
    t_peak = int(np.argmax((gt > 0).sum(axis=(1, 2, 3))))
    blood, myo = gt[t_peak] == 2, gt[t_peak] == 1
    assert blood.sum() > 50 and myo.sum() > 50
    assert s.pixels[t_peak][blood].mean() > 1.2 * s.pixels[t_peak][myo].mean()
    assert s.pixels[t_peak][blood].mean() > 1.2 * s.pixels[0][blood].mean()
    # explicit override reads the same file as a slice stack
    stack = io_dispatch.load_series(path, time_axis="none")
    assert stack.pixels.shape == (1, 160, 160, 78)


# --------------------------------------------------------------------------- synthetic images with known geometry


def _oblique_direction() -> np.ndarray:
    rot = sitk.VersorTransform((0.3, -0.5, 0.8), 0.7)
    return np.array(rot.GetMatrix()).reshape(3, 3)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".nii.gz"])
def test_stack_geometry_roundtrip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 1000, size=(6, 20, 30)).astype(np.int16)  # [k, j, i]
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.3, 1.7, 8.0))
    img.SetOrigin((-20.0, 35.5, 12.25))
    img.SetDirection(_oblique_direction().ravel().tolist())
    path = tmp_path / f"stack{suffix}"
    sitk.WriteImage(img, str(path))
    s = load_series(path)
    assert s.pixels.shape == (1, 6, 20, 30)
    np.testing.assert_array_equal(s.pixels[0], arr)
    assert s.orientation_known
    assert s.spacing == pytest.approx((1.3, 1.7, 8.0), abs=1e-5)
    for i, j, k in [(0, 0, 0), (29, 19, 5), (3.5, 7.25, 2.0)]:
        expected = np.array(img.TransformContinuousIndexToPhysicalPoint((i, j, k)))
        np.testing.assert_allclose(s.ijk_to_lps(np.array([i, j, k])), expected, atol=1e-3)


def test_4d_mha_and_nrrd_list_axis(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.normal(size=(5, 3, 8, 9)).astype(np.float32)  # [t, k, j, i]
    img = sitk.GetImageFromArray(arr, isVector=False)
    d4 = np.eye(4)
    d4[:3, :3] = _oblique_direction()
    img.SetDirection(d4.ravel().tolist())
    img.SetSpacing((1.5, 1.5, 6.0, 40.0))
    img.SetOrigin((10.0, -5.0, 3.0, 0.0))
    sitk.WriteImage(img, str(tmp_path / "cine.mha"))
    s = load_series(tmp_path / "cine.mha")
    assert s.pixels.shape == (5, 3, 8, 9)
    np.testing.assert_array_equal(s.pixels, arr)
    expected = np.array(img.TransformIndexToPhysicalPoint((4, 6, 2, 0)))[:3]
    np.testing.assert_allclose(s.ijk_to_lps(np.array([4.0, 6.0, 2.0])), expected, atol=1e-4)

    # Slicer-style sequence NRRD: a leading 'list' axis holding the phases, times in ms
    d3 = _oblique_direction() * 1.5
    dirs = " ".join("(" + ",".join(f"{v:.10f}" for v in d3[:, c]) + ")" for c in range(2))
    dirs += " (" + ",".join(f"{v:.10f}" for v in _oblique_direction()[:, 2] * 6.0) + ")"
    header = (
        "NRRD0004\ntype: float\ndimension: 4\nspace: left-posterior-superior\n"
        f"sizes: 5 9 8 3\nspace directions: none {dirs}\nkinds: list domain domain domain\n"
        "endian: little\nencoding: raw\nspace origin: (10,-5,3)\n"
        "axis 0 index type:=numeric\naxis 0 index unit:=ms\naxis 0 index values:=0 40 80 120 160\n\n"
    )
    raw = np.ascontiguousarray(np.moveaxis(arr, 0, -1))  # [k, j, i, t]: t varies fastest on disk
    (tmp_path / "seq.nrrd").write_bytes(header.encode() + raw.astype("<f4").tobytes())
    q = load_series(tmp_path / "seq.nrrd")
    assert q.pixels.shape == (5, 3, 8, 9)
    np.testing.assert_array_equal(q.pixels, arr)
    np.testing.assert_allclose(q.trigger_times, [0, 40, 80, 120, 160])
    np.testing.assert_allclose(q.ijk_to_lps(np.array([4.0, 6.0, 2.0])), expected, atol=1e-4)


def test_orientation_heuristic_only_for_placeholder_affines(tmp_path):
    arr = np.arange(4 * 10 * 12, dtype=np.int16).reshape(4, 10, 12)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.25, 1.25, 8.0))
    img.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # what SimpleITK reports for an identity NIfTI affine
    sitk.WriteImage(img, str(tmp_path / "ident.nii.gz"))
    assert load_series(tmp_path / "ident.nii.gz").orientation_known is False
    img.SetOrigin((12.0, -30.0, 5.5))  # real (if axis-aligned) position: trusted
    sitk.WriteImage(img, str(tmp_path / "shifted.nii.gz"))
    assert load_series(tmp_path / "shifted.nii.gz").orientation_known is True


# --------------------------------------------------------------------------- bad input -> named errors


@pytest.fixture()
def sunny_file(sunnybrook_dicom):
    def copy(n: int, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sunnybrook_dicom / f"{n}.dcm", dest)
        return dest

    return copy


def test_missing_path(tmp_path):
    missing = tmp_path / "no_such_case.nii.gz"
    with pytest.raises(errors.InputNotFoundError, match="no_such_case"):
        load_series(missing)
    assert issubclass(errors.InputNotFoundError, FileNotFoundError)


def test_empty_folder(tmp_path):
    folder = tmp_path / "empty_study"
    folder.mkdir()
    with pytest.raises(errors.NoDicomError, match="empty_study"):
        load_series(folder)


def test_folder_without_dicom(tmp_path):
    folder = tmp_path / "not_dicom"
    folder.mkdir()
    (folder / "notes.txt").write_text("contours drawn by hand\n")
    (folder / "GoldStandard.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(300))
    with pytest.raises(errors.NoDicomError, match=r"no DICOM file found in .*not_dicom.*2 files checked"):
        load_series(folder)


def test_unknown_file_type(tmp_path):
    p = tmp_path / "readme.txt"
    p.write_text("hello")
    with pytest.raises(errors.NoDicomError, match="readme.txt is neither a DICOM file"):
        load_series(p)


def test_non_dicom_files_next_to_a_series_are_ignored(tmp_path, sunny_file):
    folder = tmp_path / "case"
    for n in (1, 2, 3):
        sunny_file(n, folder / f"IM{n:04d}")
    (folder / "GoldStandard.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(300))
    (folder / "contours.txt").write_text("1 2\n3 4\n")
    s = load_series(folder)
    assert s.pixels.shape == (3, 1, 256, 256)


def test_ct_dicom_is_not_mr(tmp_path, sunny_file):
    p = sunny_file(1, tmp_path / "ct" / "ct_slice.dcm")
    ds = _read_dicom(p)
    ds.Modality = "CT"
    ds.SOPClassUID = pydicom.uid.CTImageStorage
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    _save(ds, p)
    with pytest.raises(errors.NotMRImageError, match=r"ct_slice.dcm is not an MR image: Modality CT"):
        load_series(p)
    with pytest.raises(errors.NotMRImageError, match=r"Modality CT"):
        load_series(p.parent)


def test_structured_report_without_pixels_is_not_an_image(tmp_path, sunny_file):
    p = sunny_file(1, tmp_path / "sr" / "report.dcm")
    ds = _read_dicom(p)
    del ds.PixelData
    ds.Modality = "SR"
    ds.SOPClassUID = pydicom.uid.BasicTextSRStorage
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.BasicTextSRStorage
    _save(ds, p)
    with pytest.raises(errors.NotMRImageError, match=r"report.dcm is not an MR image: Modality SR"):
        load_series(p.parent)


def test_mr_header_without_pixel_data(tmp_path, sunny_file):
    p = sunny_file(1, tmp_path / "nopix" / "header_only.dcm")
    ds = _read_dicom(p)
    del ds.PixelData
    _save(ds, p)
    with pytest.raises(errors.NotMRImageError, match=r"header_only.dcm is not an image: no PixelData"):
        load_series(p)


def test_mixed_series_listed_and_selectable(tmp_path, sunny_file):
    folder = tmp_path / "mixed"
    uid_a, uid_b = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for n, uid, desc in [(21, uid_a, "SA cine A"), (22, uid_a, "SA cine A"), (1, uid_b, "cine B"), (2, uid_b, "cine B"), (3, uid_b, "cine B")]:
        p = sunny_file(n, folder / f"{n}.dcm")
        ds = _read_dicom(p)
        ds.SeriesInstanceUID = uid
        ds.SeriesDescription = desc
        _save(ds, p)
    with pytest.raises(errors.MixedSeriesError) as info:
        load_series(folder)
    msg = str(info.value)
    assert uid_a in msg and uid_b in msg
    assert "'SA cine A'" in msg and "'cine B'" in msg
    assert "2 files" in msg and "3 files" in msg
    assert "series_uid=UID" in msg and "--series-uid UID" in msg  # the console's and the CLI's way to choose
    assert "'cardiac-landmarks study'" in msg  # or analyse every series
    assert sorted(x.n_files for x in info.value.series) == [2, 3]
    b = load_series(folder, series_uid=uid_b)
    assert b.pixels.shape == (3, 1, 256, 256)
    assert b.metadata["series_uid"] == uid_b and b.description == "cine B"
    a = load_series(folder, series_uid=uid_a)
    assert a.pixels.shape == (2, 1, 256, 256) and a.view == "sax"
    with pytest.raises(errors.NoDicomError, match="1.2.3.4.5 not found"):
        load_series(folder, series_uid="1.2.3.4.5")
    infos = io_dicom.list_series(folder)
    assert {i.series_uid: i.n_files for i in infos} == {uid_a: 2, uid_b: 3}


@pytest.mark.parametrize("tag", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_missing_geometry(tmp_path, sunny_file, tag):
    folder = tmp_path / "geom"
    sunny_file(1, folder / "ok.dcm")
    p = sunny_file(2, folder / "broken.dcm")
    ds = _read_dicom(p)
    delattr(ds, tag)
    _save(ds, p)
    with pytest.raises(errors.MissingGeometryError, match=rf"broken.dcm: {tag} missing"):
        load_series(folder)


def test_empty_files(tmp_path):
    nii = tmp_path / "zero.nii.gz"
    nii.write_bytes(b"")
    with pytest.raises(errors.CorruptFileError, match=r"zero.nii.gz is empty \(0 bytes\)"):
        load_series(nii)
    dcm = tmp_path / "IM0001"
    dcm.write_bytes(b"")
    with pytest.raises(errors.CorruptFileError, match=r"IM0001 is empty \(0 bytes\)"):
        load_series(dcm)
    folder = tmp_path / "zeros"
    folder.mkdir()
    (folder / "IM0002").write_bytes(b"")
    with pytest.raises(errors.CorruptFileError, match=r"IM0002 \(empty, 0 bytes\)"):
        load_series(folder)


@pytest.mark.parametrize("keep", [0.5, 0.01])  # cut in the pixel data / in the header
def test_truncated_dicom(tmp_path, sunny_file, keep):
    folder = tmp_path / "cut"
    sunny_file(1, folder / "1.dcm")
    p = sunny_file(2, folder / "2.dcm")
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(errors.CorruptFileError, match=r"2.dcm: truncated"):
        load_series(p)
    with pytest.raises(errors.CorruptFileError, match=r"2.dcm: truncated"):
        load_series(folder)


def test_truncated_nifti(tmp_path):
    img = sitk.GetImageFromArray(np.ones((4, 32, 32), np.int16))
    p = tmp_path / "cut.nii.gz"
    sitk.WriteImage(img, str(p))
    data = p.read_bytes()
    raw = gzip.decompress(data)
    p.write_bytes(gzip.compress(raw[: len(raw) // 2]))  # valid gzip, half the voxels
    with pytest.raises(errors.CorruptFileError, match=r"cut.nii.gz: truncated voxel data"):
        load_series(p)
    q = tmp_path / "cut_gz.nii.gz"
    q.write_bytes(data[: len(data) // 2])  # the compressed stream itself cut
    with pytest.raises(errors.CorruptFileError, match=r"cannot read cut_gz.nii.gz"):
        load_series(q)
    r = tmp_path / "cut.nii"
    r.write_bytes(raw[: len(raw) - 10])
    with pytest.raises(errors.CorruptFileError, match=r"cut.nii: truncated voxel data"):
        load_series(r)
    sitk.WriteImage(img, str(tmp_path / "cut.nrrd"))
    nrrd = (tmp_path / "cut.nrrd").read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(nrrd[:-100])
    with pytest.raises(errors.CorruptFileError, match=r"cannot read cut.nrrd"):
        load_series(tmp_path / "cut.nrrd")


def test_nan_image(tmp_path):
    arr = np.ones((3, 16, 16), np.float32)
    arr[1, 4, 5] = np.nan
    arr[2, 0, 0] = np.inf
    p = tmp_path / "with_nan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(p))
    with pytest.raises(errors.InvalidImageError, match=r"with_nan.nii.gz.*1 NaN, 1 inf"):
        load_series(p)


def test_phase_order_trigger_time_then_instance_number(tmp_path, sunny_file):
    folder = tmp_path / "order"
    triggers = {}
    for n, instance in [(1, 30), (2, 20), (3, 10)]:  # instance numbers reversed w.r.t. trigger times
        p = sunny_file(n, folder / f"f{n}.dcm")
        ds = _read_dicom(p)
        ds.InstanceNumber = instance
        _save(ds, p)
        triggers[n] = float(ds.TriggerTime)
    refs = {n: _read_dicom(folder / f"f{n}.dcm").pixel_array.astype(np.float32) for n in (1, 2, 3)}
    s = load_series(folder)
    assert s.metadata["phase_order"] == "TriggerTime"
    np.testing.assert_allclose(s.trigger_times, sorted(triggers.values()))
    for t, n in enumerate(sorted(triggers, key=triggers.get)):
        np.testing.assert_array_equal(s.pixels[t, 0], refs[n])
    # without TriggerTime the InstanceNumber decides
    for n in (1, 2, 3):
        ds = _read_dicom(folder / f"f{n}.dcm")
        del ds.TriggerTime
        _save(ds, folder / f"f{n}.dcm")
    s2 = load_series(folder)
    assert s2.trigger_times is None and s2.metadata["phase_order"] == "InstanceNumber"
    for t, n in enumerate([3, 2, 1]):
        np.testing.assert_array_equal(s2.pixels[t, 0], refs[n])


def test_enhanced_multiframe_mr(tmp_path, sunnybrook_dicom):
    """An Enhanced MR object (one file, per-frame functional groups) built from 2 slices x 3 phases."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    sources = [_read_dicom(sunnybrook_dicom / f"{n}.dcm") for n in (21, 22, 23, 1, 2, 3)]
    order = [4, 0, 5, 2, 3, 1]  # frames stored shuffled
    ds = _read_dicom(sunnybrook_dicom / "1.dcm")
    for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "TriggerTime"):
        delattr(ds, kw)
    ds.SOPClassUID = pydicom.uid.EnhancedMRImageStorage
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.EnhancedMRImageStorage
    ds.NumberOfFrames = len(order)
    shared = Dataset()
    po, pm = Dataset(), Dataset()
    po.ImageOrientationPatient = sources[0].ImageOrientationPatient
    pm.PixelSpacing = sources[0].PixelSpacing
    pm.SliceThickness = 10
    shared.PlaneOrientationSequence = Sequence([po])
    shared.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for idx in order:
        fg, pp, cs = Dataset(), Dataset(), Dataset()
        pp.ImagePositionPatient = sources[idx].ImagePositionPatient
        cs.NominalCardiacTriggerDelayTime = float(sources[idx].TriggerTime)
        fg.PlanePositionSequence = Sequence([pp])
        fg.CardiacSynchronizationSequence = Sequence([cs])
        per.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = b"".join(sources[idx].pixel_array.astype("<i2").tobytes() for idx in order)
    path = _save(ds, tmp_path / "enhanced.dcm")

    s = load_series(path)
    assert s.pixels.shape == (3, 2, 256, 256)
    normal = s.direction[:, 2]
    heights = {idx: float(np.array(sources[idx].ImagePositionPatient, float) @ normal) for idx in range(6)}
    lower = [idx for idx in range(6) if heights[idx] < np.median(list(heights.values()))]
    upper = [idx for idx in range(6) if idx not in lower]
    for k, group in enumerate([lower, upper]):
        group = sorted(group, key=lambda i: float(sources[i].TriggerTime))
        np.testing.assert_allclose(s.slice_origins[k], np.array(sources[group[0]].ImagePositionPatient, float), atol=1e-4)
        for t, idx in enumerate(group):
            np.testing.assert_array_equal(s.pixels[t, k], sources[idx].pixel_array.astype(np.float32))
    assert s.spacing[2] == pytest.approx(10.0, abs=0.02)


def test_incomplete_cine_grid(tmp_path, sunny_file):
    folder = tmp_path / "incomplete"
    for n in (1, 2, 21):  # two phases of slice 1, one of slice 2
        sunny_file(n, folder / f"{n}.dcm")
    with pytest.raises(errors.InvalidImageError, match="different numbers of phases"):
        load_series(folder)


def test_time_axis_argument_validated(tmp_path):
    p = tmp_path / "x.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 4, 5), np.float32)), str(p))
    with pytest.raises(ValueError, match="time_axis"):
        io_image.load_image(p, time_axis="sideways")
    s = io_image.load_image(p, time_axis="last")  # file (x, y, t): 3 phases of one 4x5 image
    assert s.pixels.shape == (3, 1, 4, 5)


def test_a_header_of_defaults_with_many_samples_on_its_third_axis_is_read_time_last(tmp_path):
    """QPerf's Analyze data.hdr (51 x 47 x 68, 1 mm, identity affine) is one slice over 68 frames; the same header
    with 10 samples (EMIDEC-like) or a real oblique geometry with 30 stays a stack, and time_axis='none' wins."""
    def write(name, n, direction=None, origin=(0.0, 0.0, 0.0)):
        arr = np.arange(n, dtype=np.float32)[:, None, None] + np.zeros((n, 6, 7), np.float32)  # sitk [z, y, x]
        img = sitk.GetImageFromArray(arr)
        img.SetOrigin(origin)
        if direction is not None:
            img.SetDirection(direction)
        path = tmp_path / name
        sitk.WriteImage(img, str(path))
        return path

    s = io_image.load_image(write("defaults30.nii.gz", 30))
    assert s.pixels.shape == (30, 1, 6, 7) and s.pixels[:, 0, 0, 0].tolist() == list(range(30))
    assert io_image.load_image(write("defaults10.nii.gz", 10)).pixels.shape == (1, 10, 6, 7)
    c, sn = np.cos(0.4), np.sin(0.4)
    oblique = write("oblique30.nii.gz", 30, direction=(c, -sn, 0.0, sn, c, 0.0, 0.0, 0.0, 1.0), origin=(3.0, -9.0, 40.0))
    assert io_image.load_image(oblique).pixels.shape == (1, 30, 6, 7)
    assert io_image.load_image(tmp_path / "defaults30.nii.gz", time_axis="none").pixels.shape == (1, 30, 6, 7)


def test_qperf_analyze_files_are_one_slice_over_time():
    base = require_data("perfusion", "qperf")
    rest, stress = load_series(base / "data.hdr"), load_series(base / "data_stress.hdr")
    assert rest.pixels.shape == (68, 1, 47, 51) and stress.pixels.shape == (59, 1, 37, 40)
    # the concentration rises from zero before the bolus: the first frame is the lowest
    means = rest.pixels.reshape(68, -1).mean(1)
    assert means[0] < 0.1 * means.max()



def test_folder_of_image_files_says_to_give_one_file(tmp_path):
    import SimpleITK as sitk

    from CardiacLandmarksLib.core.errors import NoDicomError
    from CardiacLandmarksLib.io.load import load_series

    sitk.WriteImage(sitk.Image(8, 8, 2, sitk.sitkInt16), str(tmp_path / "case01.nii.gz"))
    with pytest.raises(NoDicomError, match=r"holds no DICOM but 1 image file\(s\) \(case01.nii.gz\)"):
        load_series(tmp_path)


def test_first_last_correlation_and_the_sequence_it_decides():
    """Built frames with known correlations, and the rules of guess_sequence around them: keywords and timing
    first, the frames only for >= 20 frames of unknown timing on <= 4 slices."""
    from CardiacLandmarksLib.io.common import CYCLIC_MIN_CORRELATION, first_last_correlation, guess_sequence

    rng = np.random.default_rng(3)
    first = rng.normal(size=(2, 16, 16))
    n = 30
    cyclic = np.repeat(first[None], n, axis=0)
    cyclic[-1] = 2.0 * first + 3.0  # a gain and offset change nothing: r = 1
    assert first_last_correlation(cyclic) == pytest.approx(1.0)
    turned = cyclic.copy()
    turned[-1] = -first
    assert first_last_correlation(turned) == pytest.approx(-1.0)
    # only the central half of the field of view counts: a change outside it is not seen
    edges = cyclic.copy()
    edges[-1, :, :3, :] = 100.0
    assert first_last_correlation(edges) == pytest.approx(1.0)
    flat = np.zeros((n, 1, 8, 8))
    assert first_last_correlation(flat) == 1.0
    flat[-1] = 1.0
    flat[-1, 0, 4, 4] = 2.0
    assert first_last_correlation(flat) == 0.0

    assert 0.88 < CYCLIC_MIN_CORRELATION < 0.99  # inside the gap measured on the shared data (docstring)
    why: list[str] = []
    assert guess_sequence("series_7", n, 2, None, cyclic, why) == "cine"
    assert "nearly the first (r = 1.00 >= 0.95)" in why[0]
    why = []
    assert guess_sequence("series_7", n, 2, None, turned, why) == "perfusion"
    assert "differs from the first (r = -1.00 < 0.95)" in why[0]
    # without pixels the old shape rule: perfusion from 40 frames of unknown timing
    assert guess_sequence("series_7", 45, 1, None) == "perfusion"
    assert guess_sequence("series_7", n, 1, None) == "cine"
    # keywords and known timing come first
    assert guess_sequence("stress_mid", n, 1, None, cyclic) == "perfusion"
    assert guess_sequence("sa_cine", n, 1, None, turned) == "cine"
    assert guess_sequence("series_7", n, 1, np.linspace(0.0, 30000.0, n), cyclic) == "perfusion"
    assert guess_sequence("series_7", n, 1, np.linspace(0.0, 900.0, n), turned) == "cine"
    # fewer than 20 frames, or a stack of more than 4 slices: never perfusion by the frames
    assert guess_sequence("series_7", 19, 1, None, turned[:19]) == "cine"
    many = np.repeat(turned, 3, axis=1)
    assert guess_sequence("series_7", n, 6, None, many) == "cine"


def test_detect_time_axis_option_reads_a_defaults_only_file_as_a_stack(tmp_path, capsys):
    """`detect --time-axis none` is the way back to a slice stack for a file the auto rule reads over time."""
    from CardiacLandmarksLib.cli import main

    data = require_data("perfusion", "qperf") / "data.hdr"
    assert main(["detect", str(data), "-o", str(tmp_path / "auto"), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "data.hdr: 1 slices x 68 phases" in text
    # its 68 per-phase point lists are one line of the output (all of them written, and listed in run.json)
    assert (f"  wrote {tmp_path / 'auto' / 'landmarks_phase00.mrk.json'} ... landmarks_phase67.mrk.json "
            "(68 point lists, one per phase)") in text.splitlines()
    assert "landmarks_phase01.mrk.json" not in text
    listed = [f["name"] for f in json.loads((tmp_path / "auto" / "run.json").read_text())["files"]]
    assert sum(n.endswith(".mrk.json") for n in listed) == 68
    assert main(["detect", str(data), "--time-axis", "none", "-o", str(tmp_path / "stack"), "--no-progress"]) == 0
    assert "data.hdr: 68 slices x 1 phases" in capsys.readouterr().out


def _compressed_copy(src: Path, dest: Path, compressor: str) -> Path:
    """``src``'s DICOM files with their pixel data compressed by GDCM (through SimpleITK's writer) as a PACS export
    has them, every other element kept: ``compressor`` "JPEG" (JPEG Lossless SV1) or "JPEG2000" (lossless)."""
    import locale

    dest.mkdir(parents=True)
    tmp = dest.parent / f"gdcm_{compressor}.dcm"
    for f in sorted(src.glob("*.dcm")):
        ds = _read_dicom(f)
        w = sitk.ImageFileWriter()
        w.SetFileName(str(tmp))
        w.SetUseCompression(True)
        w.SetCompressor(compressor)
        saved = locale.setlocale(locale.LC_ALL)
        try:
            w.Execute(sitk.ReadImage(str(f)))
        finally:  # GDCM's DICOM writer leaves the process in the C locale (open() then reads ASCII only)
            locale.setlocale(locale.LC_ALL, saved)
        packed = _read_dicom(tmp)
        ds.file_meta.TransferSyntaxUID = packed.file_meta.TransferSyntaxUID
        ds.PixelData = packed.PixelData
        ds["PixelData"].VR = "OB"
        _save(ds, dest / f.name)
    tmp.unlink()
    return dest


@pytest.mark.parametrize("compressor", ["JPEG", "JPEG2000"])
def test_compressed_dicom_as_pacs_export_it(tmp_path, sunny, sunnybrook_dicom, compressor):
    """A cine series whose pixel data are JPEG Lossless or JPEG 2000 compressed (common in PACS exports) loads to the
    very pixels of the uncompressed series (pydicom decodes through python-gdcm); before, JPEG Lossless was a
    CorruptFileError."""
    folder = _compressed_copy(sunnybrook_dicom, tmp_path / compressor, compressor)
    assert _read_dicom(next(folder.glob("*.dcm"))).file_meta.TransferSyntaxUID.is_compressed
    s, plain = load_series(folder), sunny[0]
    np.testing.assert_array_equal(s.pixels, plain.pixels)
    np.testing.assert_allclose(s.slice_origins, plain.slice_origins)


def test_compressed_dicom_without_a_decoder_is_named(tmp_path, sunnybrook_dicom, monkeypatch, capsys):
    """Where no decoder for the series' compression is installed (a Python without python-gdcm), the CLI names the
    compression and what to install, exits 1 before any analysis and leaves no output folder; the file is not
    called corrupt."""
    from pydicom.pixels import get_decoder

    from CardiacLandmarksLib.cli import main

    folder = _compressed_copy(sunnybrook_dicom, tmp_path / "jpeg", "JPEG")
    monkeypatch.setattr(get_decoder(pydicom.uid.JPEGLosslessSV1), "_available", {})
    with pytest.raises(errors.MissingDecoderError) as info:
        load_series(folder)
    assert not isinstance(info.value, errors.CorruptFileError)
    out = tmp_path / "out"
    assert main(["detect", str(folder), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "compressed as JPEG Lossless" in err and "pip install python-gdcm" in err and "Traceback" not in err
    assert not out.exists()
