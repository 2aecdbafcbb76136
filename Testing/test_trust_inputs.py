"""Issue 15 ("Trust what is reported"), inputs: wrong views, label masks, constant images, absurd
spacing, non-cardiac images, incomplete DICOM series, non-orthonormal NIfTI, study mismatch and
per-input isolation, on real data (temporary copies, never modified in place)."""

from __future__ import annotations

import copy
import gzip
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from CardiacLandmarksLib import cli
from CardiacLandmarksLib.core.errors import (
    ConstantImageError,
    CorruptFileError,
    ImplausibleSpacingError,
    IncompleteSeriesError,
    InvalidImageError,
    LabelMaskError,
    SeriesMismatchError,
    WrongViewError,
)
from CardiacLandmarksLib.io.checks import check_series, check_study_match
from CardiacLandmarksLib.io.image import orthonormalise_direction
from CardiacLandmarksLib.io.load import load_series

pytestmark = pytest.mark.data

ACDC_IMG = ("acdc", "patient101_ED.nii.gz")
NIBABEL_BRAIN = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"


@pytest.fixture(scope="module")
def acdc_img(data_root) -> Path:
    return data_root.joinpath(*ACDC_IMG)


@pytest.fixture(scope="module")
def la_cine(data_root) -> Path:
    return data_root / "mnms2" / "001" / "001_LA_CINE.nii.gz"


def _rewrite(src: Path, dst: Path, data=None, zooms=None, affine=None) -> Path:
    img = nib.load(str(src))
    hdr = img.header.copy()
    aff = img.affine.copy() if affine is None else affine
    if zooms is not None:
        scale = np.array(zooms[:3]) / np.array(hdr.get_zooms()[:3])
        aff[:3, :3] = aff[:3, :3] * scale
        hdr.set_zooms(zooms)
    out = nib.Nifti1Image(np.asanyarray(img.dataobj) if data is None else data, aff, hdr)
    nib.save(out, str(dst))
    return dst


# ------------------------------------------------------------------ image content, spacing, view


def test_label_mask_given_as_image_is_refused(data_root):
    s = load_series(data_root / "acdc" / "patient101_ED_gt.nii.gz")
    with pytest.raises(LabelMaskError, match="label mask"):
        check_series(s, "sax")


def test_constant_image_is_refused(acdc_img, tmp_path):
    zeros = np.zeros(nib.load(str(acdc_img)).shape, np.int16)
    s = load_series(_rewrite(acdc_img, tmp_path / "zeros.nii.gz", data=zeros))
    with pytest.raises(ConstantImageError, match="constant"):
        check_series(s)


def test_absurd_pixel_size_and_slice_gap_are_refused(acdc_img, tmp_path):
    z = nib.load(str(acdc_img)).header.get_zooms()
    with pytest.raises(ImplausibleSpacingError, match="100 x 100 mm"):
        check_series(load_series(_rewrite(acdc_img, tmp_path / "px100.nii.gz", zooms=(100.0, 100.0, z[2]))))
    with pytest.raises(ImplausibleSpacingError, match="60 mm apart"):
        check_series(load_series(_rewrite(acdc_img, tmp_path / "gap60.nii.gz", zooms=(z[0], z[1], 60.0))))
    assert check_series(load_series(acdc_img), "sax") == []  # the real file passes every check


def test_view_mismatch_is_a_named_error_or_a_forced_warning(acdc_img, la_cine):
    cine = load_series(la_cine)
    with pytest.raises(WrongViewError, match="asked for the SAX view but the image looks LAX"):
        check_series(cine, "sax")
    warnings = check_series(load_series(la_cine), "sax", force_view=True)
    assert len(warnings) == 1 and "forced" in warnings[0]
    stack = load_series(acdc_img)
    with pytest.raises(WrongViewError, match="asked for the 4CH view but the image looks SAX"):
        check_series(stack, "4ch")
    assert check_series(load_series(la_cine), "4ch") == []


def test_cli_detect_wrong_view_fails_before_inference_and_writes_nothing(la_cine, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["detect", str(la_cine), "--view", "sax", "-o", str(out), "--no-progress"]) == 1
    assert "looks LAX" in capsys.readouterr().err
    assert not out.exists()  # the folder the refused run had made is gone again (cli.main)
    out.mkdir()  # a folder that was there before stays, and stays empty
    assert cli.main(["detect", str(la_cine), "--view", "sax", "-o", str(out), "--no-progress"]) == 1
    assert list(out.iterdir()) == []


def test_cli_detect_refuses_absurd_inputs(acdc_img, data_root, tmp_path, capsys):
    for src, text in ((data_root / "acdc" / "patient101_ED_gt.nii.gz", "label mask"),
                      (_rewrite(acdc_img, tmp_path / "px100.nii.gz", zooms=(100.0, 100.0, 10.0)), "not a cardiac MR pixel"),
                      # a header in centimetres: refused by name before the model (it used to run and end in
                      # 'does not look like a cardiac short-axis MR')
                      (_rewrite(acdc_img, tmp_path / "px_cm.nii.gz", zooms=(0.015625, 0.015625, 0.1)),
                       "pixel size 0.015625 x 0.015625 mm is not a cardiac MR pixel (0.2 to 20 mm)")):
        assert cli.main(["detect", str(src), "-o", str(tmp_path / "o"), "--no-progress"]) == 1
        assert text in capsys.readouterr().err


def test_a_stack_read_along_the_wrong_axis_is_refused_before_the_model(acdc_img, tmp_path, capsys):
    """An ACDC 3-D stack (232 x 256 x 10) with --time-axis first read as 232 "phases" of 256 x 10 pixels; detect ran the model on
    them and reported RVI angles for review. No cardiac MR image has fewer than 16 pixels on a side."""
    out = tmp_path / "o"
    assert cli.main(["detect", str(acdc_img), "--time-axis", "first", "-o", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "images of 256 x 10 pixels (232 phase(s) x 1 slice(s))" in err and "check --time-axis" in err
    assert not out.exists()


@pytest.mark.skipif(not NIBABEL_BRAIN.exists(), reason="nibabel's example brain MR (tests/data) not installed")
def test_non_cardiac_mr_is_refused_after_the_sax_model(tmp_path, capsys):
    """A real brain MR (nibabel's example4d: EPI, 128 x 96 x 24 slices x 2 volumes, 2 mm): passes the
    cheap checks (many values, sane spacing, 24 parallel slices = SAX by slice count); the SAX model
    finds no LV that lines up along the stack, or nothing cardiac it is sure of -> NotCardiacError, exit 1, nothing
    written. (SAX v1.4.0 reports an LV centre on 27 of its 48 images, scattered: at most 4 neighbouring slices line
    up, io.checks.longest_lv_run; v1.5.0 reports lined-up LV centres on the brain's ventricles, all flagged low,
    and no RV insertion anywhere.)"""
    out = tmp_path / "brain"
    assert cli.main(["detect", str(NIBABEL_BRAIN), "-o", str(out), "--no-progress", "--no-tta"]) == 1
    assert "does not look like a cardiac short-axis MR" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []


# ------------------------------------------------------------------ DICOM completeness


@pytest.fixture()
def sunnybrook_copy(sunnybrook_dicom, tmp_path) -> Path:
    dst = tmp_path / "dicom"
    shutil.copytree(sunnybrook_dicom, dst)
    return dst


def _headers(folder: Path) -> dict[Path, pydicom.Dataset]:
    return {f: pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(folder.iterdir())}


def test_complete_sunnybrook_series_has_no_problem(sunnybrook_dicom):
    s = load_series(sunnybrook_dicom)
    assert s.metadata["completeness"]["problems"] == []
    assert check_series(s, "sax") == []


def test_dicom_file_cut_before_the_dicm_marker_is_named(sunnybrook_copy):
    victim = sorted(sunnybrook_copy.iterdir())[17]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(CorruptFileError, match=f"{victim.name}: not readable as DICOM \\(100 bytes"):
        load_series(sunnybrook_copy)


def test_missing_slice_position_is_an_error_naming_it(sunnybrook_copy):
    heads = _headers(sunnybrook_copy)
    locs = sorted({round(float(d.SliceLocation), 2) for d in heads.values()})
    for f, d in heads.items():
        if round(float(d.SliceLocation), 2) == locs[5]:
            f.unlink()
    s = load_series(sunnybrook_copy)
    with pytest.raises(IncompleteSeriesError, match=r"1 slice position\(s\) missing between slices 4 and 5 \(20.0 mm gap"):
        check_series(s, "sax")
    warnings = check_series(s, "sax", allow_incomplete=True)
    assert len(warnings) == 1 and "analysed anyway" in warnings[0]


def test_half_the_phases_missing_is_an_error(sunnybrook_copy):
    for f, d in _headers(sunnybrook_copy).items():
        if float(d.TriggerTime) > 380:  # keep the first 10 of 20 phases
            f.unlink()
    s = load_series(sunnybrook_copy)
    assert s.n_phases == 10
    with pytest.raises(IncompleteSeriesError, match="10 phases found, the header says 20"):
        check_series(s)


def test_one_phase_missing_in_every_slice_is_an_error(sunnybrook_copy):
    by_slice: dict[float, list] = {}
    for f, d in _headers(sunnybrook_copy).items():
        by_slice.setdefault(round(float(d.SliceLocation), 2), []).append((float(d.TriggerTime), f))
    for frames in by_slice.values():
        sorted(frames)[7][1].unlink()  # the 8th phase of every slice
    with pytest.raises(IncompleteSeriesError, match="phase\\(s\\) missing between trigger times"):
        check_series(load_series(sunnybrook_copy))


# ------------------------------------------------------------------ NIfTI direction cosines


def _sheared(src: Path, dst: Path, deg: float) -> Path:
    img = nib.load(str(src))
    shear = np.eye(4)
    shear[0, 1] = np.tan(np.radians(deg))
    aff = img.affine @ shear
    out = nib.Nifti1Image(np.asanyarray(img.dataobj), aff, img.header)
    out.set_sform(aff, 1)
    out.set_qform(None, 0)
    nib.save(out, str(dst))
    return dst


def test_slightly_non_orthonormal_nifti_is_orthonormalised_with_a_warning(data_root, tmp_path):
    """M&Ms-2 001 SAX with its affine sheared by 0.5 degrees: SimpleITK alone refuses it
    ('ITK only supports orthonormal direction cosines'); we load it, say by how much it was off
    and keep the geometry between the sheared and the original one (the far corner of the
    380 mm field of view moves by less than the 3.3 mm that the shear itself moves it)."""
    import SimpleITK as sitk

    src = data_root / "mnms2" / "001" / "001_SA_ED.nii.gz"
    path = _sheared(src, tmp_path / "sheared.nii.gz", 0.5)
    with pytest.raises(RuntimeError, match="orthonormal"):
        sitk.ReadImage(str(path))
    s, ref = load_series(path), load_series(src)
    (w,) = s.metadata["warnings"]
    assert "not orthonormal (up to 0.249 degrees off)" in w
    assert np.allclose(s.direction, ref.direction, atol=0.01)
    assert np.allclose(s.spacing, ref.spacing, rtol=1e-3)
    corner = np.array([s.shape_ji[1] - 1, s.shape_ji[0] - 1, s.n_slices - 1], float)
    shear_shift = (s.shape_ji[0] - 1) * s.spacing[1] * np.tan(np.radians(0.5))
    assert np.linalg.norm(s.ijk_to_lps(corner) - ref.ijk_to_lps(corner)) < shear_shift


def test_input_warnings_reach_landmarks_json_and_every_measurement(data_root, tmp_path):
    """The sheared M&Ms-2 SAX through the task API: the loader's note is in landmarks.json's warnings
    (measurements unchanged: a 0.25 degree correction is harmless); a forced-view style warning
    (mark_input_warnings) makes every measurement at best 'review', with the warning as the caveat."""
    import json

    from CardiacLandmarksLib.analysis import analyse_landmarks
    from CardiacLandmarksLib.io.checks import mark_input_warnings
    from CardiacLandmarksLib.sax.pipeline import SaxOptions

    path = _sheared(data_root / "mnms2" / "001" / "001_SA_ED.nii.gz", tmp_path / "sheared_SA.nii.gz", 0.5)
    result = analyse_landmarks(load_series(path), "sax", SaxOptions(device="cpu", tta=False))
    lmset = result.landmarks
    assert any("orthonormalised" in w for w in lmset.warnings)
    # the only input sources so far: this file's header puts the RV on the patient's left-posterior (x and y
    # negated), so its RVI angles carry the 'orientation' review (sax.measurements); the shear adds none
    assert {src.id for m in lmset.measurements for src in m.sources if src.kind == "input"} == {"orientation"}
    mark_input_warnings(lmset, ["view forced by the user"])
    assert lmset.measurements and all(m.status in ("review", "n/a") for m in lmset.measurements)
    assert all(any(src.kind == "input" for src in m.sources) for m in lmset.measurements)
    assert all("view forced by the user" in m.caveat() for m in lmset.measurements if m.status == "review")
    written = result.write(tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "landmarks.json").read_text())
    assert "view forced by the user" in doc["warnings"] and len(written) >= 4
    assert "review" in (tmp_path / "out" / "measurements.csv").read_text()


def test_strongly_sheared_nifti_is_refused(data_root, tmp_path):
    path = _sheared(data_root / "mnms2" / "001" / "001_SA_ED.nii.gz", tmp_path / "sheared5.nii.gz", 5.0)
    with pytest.raises(InvalidImageError, match="2.50 degrees from orthonormal"):
        load_series(path)


def test_orthonormalise_direction_keeps_voxel_sizes_and_handedness():
    m = np.diag([1.5, 1.5, 8.0]) @ np.array([[1, 0.01, 0], [0, 1, 0], [0, 0, -1.0]])
    fixed, dev = orthonormalise_direction(m)
    assert np.allclose(np.linalg.norm(fixed, axis=0), np.linalg.norm(m, axis=0))
    d = fixed / np.linalg.norm(fixed, axis=0)
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-12) and np.linalg.det(d) < 0
    assert 0.2 < dev < 0.4


# ------------------------------------------------------------------ study match, isolation


def test_stress_rest_of_two_patients_are_refused(data_root, tmp_path, capsys):
    root = data_root / "perfusion" / "mlperf"
    a, b = root / "1434856_stress_mid.nii.gz", root / "1424200_rest_mid.nii.gz"  # 160^2 2.29 mm vs 192^2 2.14 mm
    with pytest.raises(SeriesMismatchError, match="matrices differ.*pixel sizes differ"):
        check_study_match([load_series(a), load_series(b)], ["a", "b"])
    warnings = check_study_match([load_series(a), load_series(b)], ["a", "b"], allow_mismatch=True)
    assert "reserve not reported" in warnings[0]
    assert cli.main(["perfusion", str(a), str(b), "-o", str(tmp_path / "p"), "--no-sax-model"]) == 1
    assert "--allow-mismatch" in capsys.readouterr().err


def test_perfusion_one_failing_input_does_not_stop_the_others(data_root, tmp_path, capsys):
    """Stress and rest mid slices of one patient; the rest series' frames all replaced by its first
    (pre-contrast) frame: that series is refused by name (no contrast passage), the stress slice
    is still analysed and reported, exit code 3, run.json lists the failure."""
    import json

    root = data_root / "perfusion" / "mlperf"
    good = root / "1434856_stress_mid.nii.gz"
    rest = nib.load(str(root / "1434856_rest_mid.nii.gz"))
    frames = np.asanyarray(rest.dataobj)  # (time, y, x) as stored by nibabel
    flat = np.repeat(frames[:1], frames.shape[0], axis=0)
    bad = tmp_path / "1434856_rest_mid_flat.nii.gz"
    nib.save(nib.Nifti1Image(flat, rest.affine, rest.header), str(bad))
    out = tmp_path / "p"
    assert cli.main(["perfusion", str(good), str(bad), "-o", str(out), "--no-sax-model"]) == 3
    err = capsys.readouterr().err
    assert "contrast enhancement found" in err and "1 of 2 input(s) failed: 1434856_rest_mid_flat" in err
    assert (out / "report.json").exists() and (out / "1434856_stress_mid_sectors.png").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] and run["failed"][0]["input"] == "1434856_rest_mid_flat"
    assert "NoContrastPassageError" in run["failed"][0]["error"]


def test_perfusion_refuses_a_cine(la_cine, tmp_path, capsys):
    """A 4CH cine given to perfusion: by its name, a long-axis view (named error before any model);
    renamed, its blood pool shows no first pass (1.11x baseline with perfusion_unet v1.0.0's mask, 1.13x with
    v1.2.0's; a first pass needs 1.5x): named error, exit 1."""
    assert cli.main(["perfusion", str(la_cine), "-o", str(tmp_path / "a"), "--no-sax-model"]) == 1
    assert "short-axis slices only" in capsys.readouterr().err
    cine = tmp_path / "cine.nii.gz"
    shutil.copy(la_cine, cine)
    assert cli.main(["perfusion", str(cine), "-o", str(tmp_path / "b"), "--no-sax-model"]) == 1
    err = capsys.readouterr().err
    m = re.search(r"no contrast passage: the LV blood-pool signal peaks at ([0-9.]+)x its baseline", err)
    assert m and 1.0 < float(m.group(1)) < 1.3, err


def test_evaluate_reports_a_corrupt_case_and_keeps_the_others(data_root, tmp_path, capsys):
    data = tmp_path / "acdc"
    data.mkdir()
    for pid in ("patient101", "patient102"):
        for suffix in ("_ED.nii.gz", "_ED_gt.nii.gz"):
            shutil.copy(data_root / "acdc" / f"{pid}{suffix}", data / f"{pid}{suffix}")
    bad = data / "patient101_ED.nii.gz"
    bad.write_bytes(gzip.compress(b"not a nifti")[:20])
    rc = cli.main(["evaluate", "--data", str(data), "--split", "all", "--no-confidence-table",
                   "--json", str(tmp_path / "ev.json")])
    assert rc == 3
    cap = capsys.readouterr()
    assert "patient101" in cap.err and "1 of 2 case(s) failed" in cap.err
    assert "patient102_ED" in cap.out
    import json

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    ev = json.loads((tmp_path / "ev.json").read_text(), parse_constant=no_constants)  # strict JSON, no NaN
    assert ev["failed_cases"][0]["patient"] == "patient101"


def test_evaluate_on_a_folder_without_labelled_cases_says_what_it_needs(tmp_path, capsys):
    """Before: 'none of the 0 cases could be evaluated', after loading the model."""
    (tmp_path / "notes.txt").write_text("no images here")
    assert cli.main(["evaluate", "--data", str(tmp_path), "--split", "all"]) == 1
    assert "no labelled case in" in capsys.readouterr().err


def test_header_default_voxel_size_is_a_named_warning(data_root, tmp_path, capsys):
    """EMIDEC in the shared data lost its voxel size (PNG export: 1 x 1 x 1 mm, identity affine, origin 0;
    real pixels about 1.25-2 mm). detect names it and every value is at best 'review'; the function
    analysis flags it. Files with a real spacing but no orientation (ACDC) or a real 1 mm grid with scanner
    geometry (CineMA's 4CH frames) are not flagged."""
    import json

    from CardiacLandmarksLib.function.pipeline import check_inputs
    from CardiacLandmarksLib.io.checks import placeholder_spacing_warning

    emidec = data_root / "lge" / "emidec" / "Case_P005_DE.nii.gz"
    s = load_series(emidec)
    text = placeholder_spacing_warning(s)
    assert text and "1 x 1 mm pixels and 1 mm between slices with a placeholder affine" in text
    assert placeholder_spacing_warning(load_series(data_root.joinpath(*ACDC_IMG))) is None  # 1.56 x 1.56 x 10 mm
    cinema = load_series(data_root / "lax" / "mnms2_cinema" / "lax_4c_ed.nii.gz")
    assert cinema.spacing == (1.0, 1.0, 1.0) and placeholder_spacing_warning(cinema) is None  # oblique: scanner
    other = copy.copy(s)  # a second volume on the same grid (the ED and ES of one image are refused)
    other.pixels = np.roll(s.pixels, 1, axis=1)
    assert "placeholder_spacing" in check_inputs([s, other])  # as --ed and --es
    acdc = [load_series(data_root / "acdc" / f"patient101_{p}.nii.gz") for p in ("ED", "ES")]
    assert "placeholder_spacing" not in check_inputs(acdc)

    capsys.readouterr()
    assert cli.main(["detect", str(emidec), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    # the console names the input warning on each value line and prints its text once, at the end
    assert out.count(text) == 1 and f"warning: {text}" in out
    assert all(line.endswith("input (placeholder voxel size)") for line in out.splitlines()
               if line.startswith("  slice "))
    assert text in (tmp_path / "out" / "measurements.csv").read_text()  # the CSV keeps it in full
    doc = json.loads((tmp_path / "out" / "landmarks.json").read_text())
    assert text in doc["warnings"]
    assert doc["measurements"] and all(m["status"] in ("review", "n/a") for m in doc["measurements"])
    assert all(any(src["id"] == "input" for src in m["sources"]) for m in doc["measurements"])


def test_a_result_folder_given_as_input_is_named_with_what_its_run_read(tmp_path, capsys):
    """A study's, a batch's or an analysis' output given as the input (an easy slip: the two folders sit side by
    side) said "no DICOM series and no image file found" or "no DICOM file found (23 files checked)"; the batch
    took its own `studies/` folder for a study. Now each names the folder as a result and what its run read."""
    from CardiacLandmarksLib.batch.engine import run_batch
    from CardiacLandmarksLib.io.outputs import finish_run, prepare_output_dir

    study_out = prepare_output_dir(tmp_path / "study_out")
    study_out.begin()
    (study_out.path / "summary.png").write_bytes(b"\x89PNG")
    finish_run(study_out, ["/data/study_0042"], {}, [study_out.path / "summary.png"], command="study")
    sax = study_out.path / "s300_sax"
    sax.mkdir()
    (sax / "landmarks.json").write_text("{}")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"study_id,path\nmissing,{tmp_path / 'nope'}\n")
    run_batch(manifest, tmp_path / "batch_out", engine="local", progress=False)
    cases = [(["study", str(study_out.path)], f"{study_out.path} is a result folder of cardiac-landmarks (it holds "
              "run.json), not a study; its run read /data/study_0042: give the input itself"),
             (["detect", str(study_out.path)], "(it holds run.json), not a series; its run read /data/study_0042"),
             (["function", str(sax)], f"{sax} is a result folder of cardiac-landmarks (it holds landmarks.json), not a "
              "series: give the input itself"),
             (["batch", str(tmp_path / "batch_out")], "(it holds batch.sqlite), not a folder of studies")]
    for args, expected in cases:
        assert cli.main([*args, "-o", str(tmp_path / "new")]) == 1, args
        assert expected in capsys.readouterr().err, args
        assert not (tmp_path / "new").exists()



def test_evaluate_on_a_folder_of_ones_own_says_which_cases_it_takes(data_root, tmp_path, capsys):
    """`evaluate --data MINE` (a folder of NAME + NAME_gt pairs) with the default `--split val` took every case
    without a word (the bundled model's validation patients are ACDC ids, none of them there), and `--split test`
    ended with 'none of the 0 cases could be evaluated'. The first now says it evaluates every case; the second
    names the test split's folder and `--split all`, before any model runs."""
    data = tmp_path / "mine"
    data.mkdir()
    for suffix in ("_ED.nii.gz", "_ED_gt.nii.gz"):
        (data / f"P7{suffix}").symlink_to(data_root / "acdc" / f"patient101{suffix}")
    assert cli.main(["evaluate", "--data", str(data), "--split", "test", "--no-confidence-table"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"cardiac-landmarks: error: no patient of the fixed ACDC test split in {data} (--split test is for the ACDC "
        "folder; --split all evaluates every case of a folder of your own)")
    assert cli.main(["evaluate", "--data", str(data), "--no-confidence-table", "--device", "cpu"]) == 0
    cap = capsys.readouterr()
    assert cap.err.startswith(f"note: none of the bundled SAX model's validation patients is in {data}: every case "
                              "is evaluated (as --split all)\n")
    assert "P7_ED" in cap.out
