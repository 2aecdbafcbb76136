"""landmarks.json, measurements CSV, PNG overlay (on real ACDC data) and the atomic writers."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from CardiacLandmarksLib.core.errors import InvalidImageError, OutputExistsError
from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet, Measurement, Source
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.io import atomic as fileio
from CardiacLandmarksLib.sax.report import (
    FLAG_COLORS,
    render_overlay_png,
    write_landmarks_json,
    write_measurements_csv,
)


def _strict_load(path: Path) -> dict:
    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=no_constants)


def _small_set() -> LandmarkSet:
    nan = np.full(3, np.nan)
    lms = [
        Landmark("C-LV", 2, 0, True, np.array([1.5, -2.25, 30.0]), np.array([60.0, 61.5, 2.0]), 0.91, "high"),
        Landmark("A-RVI", 2, 0, True, np.array([-20.0, -15.0, 30.5]), np.array([40.25, 47.0, 2.0]), 0.37, "low"),
        Landmark("I-RVI", 2, 0, False, nan, nan.copy(), 0.0, "absent"),
        # a point moved by a user, read back without a series: ijk unknown
        Landmark("C-LV", 3, 0, True, np.array([1.0, -2.0, 38.0]), nan.copy(), 1.0, "high", corrected=True),
    ]
    meas = [Measurement("RVI angle", 2, 0, 47.123456, "deg", sources=[Source.of_landmark(lms[1]), Source.of_landmark(lms[0])]),
            Measurement("RVI opening angle", 3, 0, float("nan"), "deg"),
            Measurement("LV length", None, None, 85.0, "mm")]
    return LandmarkSet("/data/case.nii.gz", "sax", {"name": "sax-unet", "version": "0.1", "sha256": "0" * 64}, lms, meas)


def test_landmarks_json_layout(tmp_path):
    lmset = _small_set()
    path = write_landmarks_json(lmset, tmp_path / "out" / "landmarks.json")
    d = _strict_load(path)
    assert set(d) == {"source", "view", "model", "coordinate_system", "units", "landmarks", "measurements"}
    assert d["coordinate_system"] == "LPS" and d["units"] == "mm" and d["view"] == "sax"
    assert d["model"] == {"name": "sax-unet", "version": "0.1", "sha256": "0" * 64}
    assert d["source"] == "/data/case.nii.gz"
    lm = d["landmarks"]
    assert [(x["name"], x["slice"], x["phase"], x["found"], x["flag"]) for x in lm] == [
        ("C-LV", 2, 0, True, "high"), ("A-RVI", 2, 0, True, "low"), ("I-RVI", 2, 0, False, "absent"),
        ("C-LV", 3, 0, True, "high")]
    assert lm[1]["position"] == [-20.0, -15.0, 30.5] and lm[1]["ijk"] == [40.25, 47.0, 2.0]
    assert lm[1]["confidence"] == 0.37
    assert lm[2]["position"] is None and lm[2]["ijk"] is None and lm[2]["confidence"] == 0.0
    assert lm[3]["ijk"] is None and lm[3]["corrected"] is True  # unknown ijk: null, not NaN
    assert d["measurements"][0] == {
        "name": "RVI angle", "slice": 2, "phase": 0, "value": 47.123456, "unit": "deg", "status": "review",
        "sources": [{"id": "A-RVI s2 p0", "kind": "landmark", "flag": "low", "confidence": 0.37},
                    {"id": "C-LV s2 p0", "kind": "landmark", "flag": "high", "confidence": 0.91}]}
    assert d["measurements"][1]["value"] is None and d["measurements"][1]["status"] == "n/a"
    assert d["measurements"][2]["status"] == "ok" and d["measurements"][2]["sources"] == []
    # the file reads back into an equal LandmarkSet
    back = LandmarkSet.from_dict(d)
    assert back.landmarks[1].confidence == 0.37 and np.allclose(back.landmarks[0].position, [1.5, -2.25, 30.0])
    assert [m.status for m in back.measurements] == ["review", "n/a", "ok"]
    assert back.measurements[0].sources[0].flag == "low" and back.measurements[0].caveat() == "check A-RVI (low 0.37)"


def test_measurements_csv(tmp_path):
    path = write_measurements_csv(_small_set().measurements, tmp_path / "measurements.csv")
    rows = list(csv.reader(path.open(newline="")))
    assert rows == [["name", "slice", "phase", "value", "unit", "status", "sources", "check"],
                    ["RVI angle", "2", "0", "47.1235", "deg", "review", "A-RVI s2 p0:low:0.37; C-LV s2 p0:high:0.91",
                     "check A-RVI (low 0.37)"],
                    ["RVI opening angle", "3", "0", "", "deg", "n/a", "", "not measured"],
                    ["LV length", "", "", "85.0000", "mm", "ok", "", ""]]
    # a LandmarkSet is accepted too, and the old file is kept when asked
    write_measurements_csv(_small_set(), path, backup_existing=True)
    assert len(list(tmp_path.glob("measurements.csv.bak-*"))) == 1


# ------------------------------------------------------------------------------------------- fileio


def test_atomic_write_backup_and_modes(tmp_path):
    p = tmp_path / "a.txt"
    fileio.atomic_write_text(p, "one\n")
    assert p.read_text() == "one\n"
    fileio.atomic_write_text(p, "two\n")  # default: replace (generated outputs)
    assert p.read_text() == "two\n" and not list(tmp_path.glob("a.txt.bak-*"))
    fileio.atomic_write_text(p, "three\n", backup_existing=True)
    fileio.atomic_write_text(p, "four\n", backup_existing=True)  # same second: numbered name
    backups = sorted(tmp_path.glob("a.txt.bak-*"))
    assert sorted(b.read_text() for b in backups) == ["three\n", "two\n"]
    assert all(b.name.startswith("a.txt.bak-") and len(b.name) >= len("a.txt.bak-YYYYmmdd-HHMMSS") for b in backups)
    with pytest.raises(OutputExistsError):
        fileio.atomic_write_bytes(p, b"x", if_exists="error")
    with pytest.raises(ValueError):
        fileio.atomic_write_bytes(p, b"x", if_exists="sometimes")
    assert p.read_text() == "four\n"
    assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith(".")) == []  # no temp files left


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "keep.json"
    p.write_text("original")
    os.chmod(p, 0o640)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        fileio.atomic_write_text(p, "new content")
    monkeypatch.undo()
    assert p.read_text() == "original"
    assert [x.name for x in tmp_path.iterdir()] == ["keep.json"]  # temp file removed
    fileio.atomic_write_text(p, "new")
    assert (p.stat().st_mode & 0o777) == 0o640  # mode kept


# ------------------------------------------------------------------------------------ PNG overlay


def _load_acdc(path: Path) -> tuple[np.ndarray, CMRSeries]:
    """Read an ACDC NIfTI with SimpleITK into a CMRSeries (identity direction, orientation unknown)."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img).astype(np.float32)  # [k, j, i]
    d = np.array(img.GetDirection(), float).reshape(3, 3)
    sp = img.GetSpacing()
    o = np.array(img.GetOrigin(), float)
    origins = np.array([o + k * sp[2] * d[:, 2] for k in range(arr.shape[0])])
    return arr, CMRSeries(pixels=arr[None], spacing=tuple(float(x) for x in sp), direction=d, slice_origins=origins,
                          orientation_known=False, view="sax", source=str(path))


def _color_pixels(img: np.ndarray, hex_color: str, tol: float = 0.06) -> int:
    rgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(img[..., :3] - rgb).max(axis=-1) < tol).sum())


def test_overlay_png_on_acdc(acdc_dir, tmp_path):
    from matplotlib.image import imread

    from CardiacLandmarksLib.sax.labels import derive_sax_landmarks

    _, series = _load_acdc(acdc_dir / "patient001_ED.nii.gz")
    gt, _ = _load_acdc(acdc_dir / "patient001_ED_gt.nii.gz")
    lms = []
    for k in range(series.n_slices):
        pts = derive_sax_landmarks(gt[k].astype(int))
        for n, name in enumerate(("A-RVI", "I-RVI", "C-LV")):
            p = pts[name]
            if p is None:
                nan = np.full(3, np.nan)
                lms.append(Landmark(name, k, 0, False, nan, nan.copy(), 0.0, "absent"))
                continue
            ijk = np.array([p[0], p[1], k], float)
            low = (k + n) % 4 == 0
            lms.append(Landmark(name, k, 0, True, series.ijk_to_lps(ijk), ijk, 0.35 if low else 0.95,
                                "low" if low else "high"))
    lmset = LandmarkSet(series.source, "sax", {"name": "gt-derived", "version": "test"}, lms)
    assert sum(lm.found for lm in lms) >= 15  # the GT gives landmarks on most slices
    out = render_overlay_png(series, lmset, tmp_path / "overlay.png")
    assert out.stat().st_size > 50_000
    img = imread(out)
    assert img.shape[0] > 500 and img.shape[1] > 800
    assert img[..., :3].std() > 0.1  # an image, not a blank page
    # landmarks drawn in both flag colours (markers + labels + legend)
    assert _color_pixels(img, FLAG_COLORS["high"]) > 100  # the legend marker alone is ~40 px0
    assert _color_pixels(img, FLAG_COLORS["low"]) > 100
    # without any low point, orange only remains in the legend: clearly fewer orange pixels
    for lm in lms:
        if lm.flag == "low":
            lm.flag, lm.confidence = "high", 0.95
    img2 = imread(render_overlay_png(series, lmset, tmp_path / "overlay2.png"))
    assert _color_pixels(img2, FLAG_COLORS["low"]) < _color_pixels(img, FLAG_COLORS["low"]) / 2
    with pytest.raises(InvalidImageError):
        render_overlay_png(series, lmset, tmp_path / "bad.png", phase=3)


def test_overlay_png_without_ijk_and_known_orientation(tmp_path):
    """Points with only a position (read from markups) are mapped through the series; an oblique stack works."""
    from matplotlib.image import imread

    rng = np.random.default_rng(0)
    d = np.linalg.qr(np.array([[0.6, 0.3, -0.7], [-0.5, 0.8, 0.1], [0.4, 0.2, 0.9]]))[0]
    pix = rng.normal(100, 20, size=(2, 2, 64, 80)).astype(np.float32)
    origins = np.array([[0, 0, 0], d[:, 2] * 8.0])
    s = CMRSeries(pixels=pix, spacing=(1.5, 1.5, 8.0), direction=d, slice_origins=origins, orientation_known=True)
    pos = s.ijk_to_lps(np.array([40.0, 30.0, 1.0]))
    lmset = LandmarkSet("x", "sax", {}, [Landmark("C-LV", 1, 1, True, pos, np.full(3, np.nan), 1.0, "high", True)])
    img = imread(render_overlay_png(s, lmset, tmp_path / "o.png"))  # phase defaults to 1, the first with points
    assert _color_pixels(img, FLAG_COLORS["high"]) > 100  # the legend marker alone is ~40 px


def test_short_axis_overlay_draws_anterior_left_and_head_arrows(tmp_path, monkeypatch):
    """The SAX overlay's title measures the RVI angle from the patient's anterior (arrow A) and names A-RVI by the head
    (S). In a short-axis plane the anterior axis lies least in plane of the three (MS-CMRSeg subject8: A 0.69, L 0.80,
    S 0.94), so a two-arrow compass left out the A its title refers to; every panel must draw all three."""
    from CardiacLandmarksLib.core.orientation import in_plane_arrows
    from CardiacLandmarksLib.sax import report

    normal = np.array([0.6, -0.72, -0.34])  # LV long axis in LPS: left, anterior, inferior (base to apex)
    normal /= np.linalg.norm(normal)
    i_axis = np.cross(normal, [0.0, 0.0, 1.0])
    i_axis /= np.linalg.norm(i_axis)
    d = np.stack([i_axis, np.cross(normal, i_axis), normal], axis=1)
    fractions = {letter: round(float(np.hypot(*(axis @ d[:, :2]))), 2) for letter, axis in
                 (("A", np.array([0, -1.0, 0])), ("L", np.array([1.0, 0, 0])), ("S", np.array([0, 0, 1.0])))}
    assert fractions["A"] < min(fractions["L"], fractions["S"])  # as in the real stacks
    assert [letter for letter, _ in in_plane_arrows(d)] != ["A"] and "A" not in dict(in_plane_arrows(d))
    drawn = []
    orig = report.draw_orientation

    def spy(ax, direction, known, **kw):
        drawn.append({letter for letter, _ in in_plane_arrows(direction, n=kw.get("n", 2))})
        return orig(ax, direction, known, **kw)

    monkeypatch.setattr(report, "draw_orientation", spy)
    pix = np.random.default_rng(1).normal(100, 20, size=(1, 2, 64, 64)).astype(np.float32)
    s = CMRSeries(pixels=pix, spacing=(1.5, 1.5, 8.0), direction=d, slice_origins=np.array([[0, 0, 0], d[:, 2] * 8.0]),
                  orientation_known=True)
    lmset = LandmarkSet("x", "sax", {}, [Landmark("C-LV", k, 0, True, s.ijk_to_lps(np.array([32.0, 32.0, k])),
                                                  np.full(3, np.nan), 1.0, "high", True) for k in (0, 1)])
    report.render_overlay_png(s, lmset, tmp_path / "o.png")
    assert drawn == [{"A", "L", "S"}] * 2


def test_overlay_title_names_the_patient_of_a_dicom_folder():
    """A DICOM series in a generic folder (Sunnybrook: ``SCD0000101/dicom``) was titled ``dicom`` on its overlay,
    while the file itself is ``SCD0000101_overlay.png``: the title names the folder above too, as the file does."""
    from CardiacLandmarksLib.io.outputs import output_stem, source_label
    from CardiacLandmarksLib.sax import report

    src = "../shared/data/sunnybrook/SCD0000101/dicom"
    assert output_stem(src) == "SCD0000101"
    assert source_label(src) == "SCD0000101/dicom"
    assert source_label("/data/acdc/patient001_ED.nii.gz") == "patient001_ED.nii.gz"
    assert source_label("/data/study/cine_sax") == "cine_sax"  # a folder with its own name keeps it
    assert source_label(None) == ""
    s = CMRSeries(pixels=np.zeros((1, 1, 8, 8), np.float32), spacing=(1.5, 1.5, 8.0), direction=np.eye(3),
                  slice_origins=np.zeros((1, 3)), source=src)
    lmset = LandmarkSet(src, "sax", {"name": "sax_unet", "version": "1.7.0"}, [])
    head = report._header_lines(s, lmset, 0, 200)[0]
    assert head.startswith("SCD0000101/dicom  |  phase 0"), head
