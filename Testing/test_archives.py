"""Studies and series packed in ZIP or tar archives, read in place (io.archive): every command reads an archive as
the folder or file it holds, names the archive (never the temporary folder) in what it writes, removes the
temporary folder after, and refuses a damaged, unsafe or password-protected archive by name before reading it."""

from __future__ import annotations

import csv
import errno
import json
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

from CardiacLandmarksLib import cli
from CardiacLandmarksLib.io import archive
from CardiacLandmarksLib.io.archive import ArchiveError, unpack
from CardiacLandmarksLib.io.load import load_series


@pytest.fixture
def own_tmp(tmp_path, monkeypatch) -> Path:
    """A temporary disk of the test's own (TMPDIR), to see what is left in it."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def _no_traceback(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err


@pytest.mark.data
def test_a_packed_series_is_read_as_its_file(data_root, tmp_path, own_tmp, capsys):
    """Before, a ZIP or tar given as input was refused ('unpack it ... and give the folder'). Now detect reads it:
    the same landmarks as the file itself, the source named by the archive, nothing left in TMPDIR."""
    nifti = data_root / "acdc" / "patient001_ED.nii.gz"
    with zipfile.ZipFile(tmp_path / "p001.zip", "w") as z:
        z.write(nifti, "p001/patient001_ED.nii.gz")
    with tarfile.open(tmp_path / "p001.tar.gz", "w:gz") as t:
        t.add(nifti, "patient001_ED.nii.gz")
    plain = load_series(nifti)
    for packed, inner in ((tmp_path / "p001.zip", "p001/patient001_ED.nii.gz"),
                          (tmp_path / "p001.tar.gz", "patient001_ED.nii.gz")):
        series = load_series(packed)
        assert (series.pixels == plain.pixels).all() and series.spacing == plain.spacing
        assert series.source == f"{packed.resolve()}/{inner}"
        assert list(own_tmp.iterdir()) == []
    out_file, out_zip = tmp_path / "d_file", tmp_path / "d_zip"
    assert cli.main(["detect", str(nifti), "-o", str(out_file)]) == 0
    assert cli.main(["detect", str(tmp_path / "p001.zip"), "-o", str(out_zip)]) == 0
    _no_traceback(capsys)
    a, b = (json.loads((o / "landmarks.json").read_text()) for o in (out_file, out_zip))
    assert b["source"] == f"{(tmp_path / 'p001.zip').resolve()}/p001/patient001_ED.nii.gz"
    a.pop("source"), b.pop("source")
    assert a == b
    assert "cardiac-landmarks-unpacked" not in "".join(f.read_text(errors="replace") for f in out_zip.iterdir()
                                                       if f.is_file())
    assert list(own_tmp.iterdir()) == []


@pytest.mark.data
def test_a_zipped_dicom_study_routes_as_its_folder(sunnybrook_dicom, tmp_path, own_tmp):
    """A study zipped as a PACS export ships it (a folder of DICOM files) routes as the folder does; the routing
    names the archive, keeps the unpacked folder while its series can load, and removes it when closed."""
    from CardiacLandmarksLib.study.routing import route_study

    with zipfile.ZipFile(tmp_path / "SCD0000101.zip", "w") as z:
        for f in sorted(sunnybrook_dicom.rglob("*")):
            if f.is_file():
                z.write(f, f"SCD0000101/{f.relative_to(sunnybrook_dicom)}")
        z.writestr("manifest.cvs", "filename,date\n")  # as UK Biobank's ZIPs hold beside their DICOM files
    folder, packed = route_study(sunnybrook_dicom), route_study(tmp_path / "SCD0000101.zip")
    assert [(e.key, e.n_slices, e.n_phases, e.view, e.sequence, e.analyses) for e in packed.series] == \
        [(e.key, e.n_slices, e.n_phases, e.view, e.sequence, e.analyses) for e in folder.series]
    assert packed.name == "SCD0000101" and packed.path == str(tmp_path / "SCD0000101.zip")
    assert "1 archive(s) unpacked to read them in place (SCD0000101.zip: 241 file(s)" in packed.notes[0]
    assert "1 non-DICOM file(s) ignored in SCD0000101.zip" in packed.notes  # the archive's name, no temporary one
    assert not any("unpacked-" in n for n in packed.notes + [packed.table()])
    assert len(list(own_tmp.iterdir())) == 1  # held while the series can load
    ref = packed.sax_reference
    assert ref.load().pixels.shape == folder.sax_reference.load().pixels.shape
    assert ref.load().source.startswith(str((tmp_path / "SCD0000101.zip").resolve()))
    packed.close()
    assert list(own_tmp.iterdir()) == []


@pytest.mark.data
def test_an_archive_beside_a_series_or_in_a_sub_folder_is_read_not_ignored(sunnybrook_dicom, data_root, tmp_path,
                                                                           own_tmp):
    """A study folder as a PACS or a colleague leaves it: the cine unpacked, the perfusion series zipped beside it or
    one folder down. The archive was counted among the 'non-DICOM file(s) ignored' although it was read (beside),
    or not read at all (one folder down); now both are read and the archive is not called ignored."""
    import shutil

    from CardiacLandmarksLib.study.routing import route_study

    for where in ("", "sub"):
        study = tmp_path / f"study{where}"
        shutil.copytree(sunnybrook_dicom, study / "cine")
        (study / where).mkdir(exist_ok=True)
        shutil.make_archive(str(study / where / "perf"), "zip", data_root / "perfusion" / "ge_dicom")
        routing = route_study(study)
        assert sorted(e.sequence for e in routing.series) == ["cine", "perfusion"], where
        ignored = [n for n in routing.notes if "ignored in" in n]
        assert ignored == ["1 non-DICOM file(s) ignored in perf.zip"], ignored  # GoldStandard.mat, not the archive
        assert "1 archive(s) unpacked to read them in place (perf.zip: " in routing.notes[0]
        assert load_series(study / where if where else study / "cine").n_phases == (79 if where else 20)
        if not where:  # a DICOM folder with an archive beside its files is read as the DICOM folder it is
            assert load_series(study).n_phases == 20
        routing.close()
    assert list(own_tmp.iterdir()) == []


@pytest.mark.data
def test_a_series_kept_beside_its_archive_or_copied_is_read_once(sunnybrook_dicom, tmp_path, own_tmp):
    """A study folder unpacked and its ZIP kept beside it (or a series copied into a second folder) held every series
    twice: both copies were routed and the SAX cine analysed twice. Now the same SeriesInstanceUIDs are read once and
    the other copy is listed, with where it lies."""
    import shutil

    from CardiacLandmarksLib.study.routing import route_study

    beside, copied = tmp_path / "beside", tmp_path / "copied"
    shutil.copytree(sunnybrook_dicom, beside / "dicom")
    shutil.make_archive(str(beside / "dicom"), "zip", beside, "dicom")
    shutil.copytree(sunnybrook_dicom, copied / "a")
    shutil.copytree(sunnybrook_dicom, copied / "b")
    routing = route_study(beside)
    analysed = [e for e in routing.series if e.analyses]
    assert [(e.key, e.n_slices, e.n_phases, e.analyses) for e in analysed] == [("s300", 12, 20, ["sax", "function"])]
    (copy,) = [e for e in routing.series if not e.analyses]
    assert copy.label == "#300 '<no description>' (copy)" and not copy.loadable
    assert copy.reason.startswith("a copy of #300 '<no description>' (the same SeriesInstanceUID, in "
                                  f"{beside / 'dicom.zip'}/dicom): read once, from {beside}")
    assert not routing.problems()
    routing.close()
    assert list(own_tmp.iterdir()) == []
    routing = route_study(copied)  # one folder scanned: the copied files' images counted once (the table said 12 x 40)
    assert [(e.key, e.n_slices, e.n_phases, e.analyses) for e in routing.series] == \
        [("s300", 12, 20, ["sax", "function"])]
    assert "#300 '<no description>': 240 image(s) found twice (the same SOPInstanceUID in two files: a copy), " \
        "read once" in routing.notes


@pytest.mark.data
def test_a_result_of_an_archived_study_opens_again_for_review(data_root, tmp_path, own_tmp, capsys):
    """Results name an input read from an archive through it (``pair.zip/patient001_ED.nii.gz``), a path no file
    system holds; the review app, ``apply-review`` and the Slicer module's result opening read the recorded input
    again (results.load_source / load_recorded) and so could not open such a result. Now they read it from the
    archive again, and the temporary folder goes after."""
    from CardiacLandmarksLib.io.load import load_phase_files
    from CardiacLandmarksLib.results import load_source, read_result

    acdc = data_root / "acdc"
    with zipfile.ZipFile(tmp_path / "pair.zip", "w") as z:
        for phase in ("ED", "ES"):
            z.write(acdc / f"patient001_{phase}.nii.gz", f"patient001_{phase}.nii.gz")
    out = tmp_path / "out"
    assert cli.main(["study", str(tmp_path / "pair.zip"), "-o", str(out), "--no-tta"]) == 0
    _no_traceback(capsys)
    folder = out / "patient001_sax"
    lmset = read_result(folder)
    assert lmset.source.startswith(f"{(tmp_path / 'pair.zip').resolve()}/patient001_")
    series = load_source(lmset, folder, out)
    plain = load_phase_files([acdc / "patient001_ED.nii.gz", acdc / "patient001_ES.nii.gz"])
    assert series.pixels.shape == plain.pixels.shape and (series.pixels == plain.pixels).all()
    assert series.source.startswith(str((tmp_path / "pair.zip").resolve()))
    assert list(own_tmp.iterdir()) == []
    assert cli.main(["apply-review", str(out)]) == 0  # re-reads the SAX and function inputs
    assert "no key value changed" in capsys.readouterr().out
    assert list(own_tmp.iterdir()) == []


@pytest.mark.data
def test_a_result_of_a_flat_zipped_dicom_study_opens_again(sunnybrook_dicom, data_root, tmp_path, own_tmp, capsys):
    """A ZIP of a study's DICOM files at its top (as UK Biobank's are: no folder inside) records the archive itself
    as the SAX result's input, with the series' UIDs. Reading it again took the archive as one series and failed
    on the study's other series (MixedSeriesError); now the series of the recorded UIDs is read from it."""
    from CardiacLandmarksLib.results import load_source, read_result

    with zipfile.ZipFile(tmp_path / "flat.zip", "w") as z:
        for folder in (sunnybrook_dicom, data_root / "perfusion" / "ge_dicom"):
            for f in sorted(folder.iterdir()):
                if f.is_file():
                    z.write(f, f.name)
    out = tmp_path / "out"
    assert cli.main(["study", str(tmp_path / "flat.zip"), "-o", str(out), "--no-tta"]) == 0
    _no_traceback(capsys)
    (folder,) = [d for d in out.iterdir() if d.name.endswith("_sax") and "300" in d.name]
    lmset = read_result(folder)
    assert lmset.source == str((tmp_path / "flat.zip").resolve()) and lmset.source_series_uids
    series = load_source(lmset, folder, out)
    assert (series.n_slices, series.n_phases) == (12, 20)
    assert (series.pixels == load_series(sunnybrook_dicom).pixels).all()
    assert list(own_tmp.iterdir()) == []


@pytest.mark.data
def test_a_batch_of_archives_runs_each_as_a_study(data_root, tmp_path, own_tmp, capsys):
    """A folder of packed studies was 'no study ... unpack each into a sub-folder'. Now each archive is a study named
    after it, and UK Biobank's bulk files of one subject's visit (<eid>_<field>_<instance>_<array>.zip) are one
    study; the batch runs them and its records name the archives."""
    from CardiacLandmarksLib.batch.manifest import ManifestError, load_studies

    acdc = data_root / "acdc"
    delivery = tmp_path / "delivery"
    delivery.mkdir()
    with zipfile.ZipFile(delivery / "p001.zip", "w") as z:
        z.write(acdc / "patient001_ED.nii.gz", "patient001_ED.nii.gz")
    with tarfile.open(delivery / "p002.tgz", "w:gz") as t:
        t.add(acdc / "patient002_ED.nii.gz", "p002/patient002_ED.nii.gz")
    for field in ("20209", "20208"):  # one subject's short- and long-axis fields, and a repeat visit
        for instance in ("2", "3"):
            with zipfile.ZipFile(delivery / f"1000001_{field}_{instance}_0.zip", "w") as z:
                z.writestr("manifest.cvs", "placeholder")
    studies = {s.study_id: [Path(p).name for p in s.paths] for s in load_studies(delivery)}
    assert studies == {"1000001_2": ["1000001_20208_2_0.zip", "1000001_20209_2_0.zip"],
                       "1000001_3": ["1000001_20208_3_0.zip", "1000001_20209_3_0.zip"],
                       "p001": ["p001.zip"], "p002": ["p002.tgz"]}
    (delivery / "p001").mkdir()  # the same study unpacked beside its archive
    with pytest.raises(ManifestError, match="the archive 'p001.zip' and 'p001' both give the study id 'p001'"):
        load_studies(delivery)
    (delivery / "p001").rmdir()
    for f in delivery.glob("1000001_*"):
        f.unlink()
    (delivery / "cut.zip").write_bytes((delivery / "p001.zip").read_bytes()[:5000])  # a download cut short
    assert cli.main(["batch", str(delivery), "-o", str(tmp_path / "out"), "--engine", "local"]) == 0  # failed studies are recorded, not fatal
    _no_traceback(capsys)
    rows = {r["study_id"]: r for r in csv.DictReader((tmp_path / "out" / "cohort.csv").open())}
    assert set(rows) == {"cut", "p001", "p002"}
    assert rows["cut"]["status"] == "failed" and "ArchiveError: cut.zip is a damaged ZIP archive" in rows["cut"]["error"]
    assert rows["p001"]["status"] == rows["p002"]["status"] == "done"
    for sid, name in (("p001", "p001.zip"), ("p002", "p002.tgz")):
        study = json.loads(next((tmp_path / "out").rglob(f"{sid}/study.json")).read_text())
        assert study["routing"]["path"] == str((delivery / name).resolve())
        assert study["key_values"], sid
    assert list(own_tmp.iterdir()) == []


def _zip_with(path: Path, name: str, data: bytes = b"x", encrypted: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo(name), data)
    if encrypted:  # Python writes no encrypted ZIP: set the 'encrypted' bit of the general-purpose flags by hand
        raw = bytearray(path.read_bytes())
        for signature, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local header, central directory
            i = raw.index(signature) + at
            raw[i] |= 0x1
        path.write_bytes(bytes(raw))
    return path


def test_a_damaged_or_unsafe_archive_is_refused_by_name(tmp_path, own_tmp, capsys, monkeypatch):
    """Each archive that cannot be unpacked safely is refused before anything is read, with its reason; nothing is
    written outside the temporary folder and the folder is removed."""
    good = _zip_with(tmp_path / "good.zip", "study/IM_0001.dcm", b"\0" * 200_000)
    report = _zip_with(tmp_path / "report.docx", "word/document.xml")  # a ZIP inside, a document to its reader
    from CardiacLandmarksLib.io.common import archive_kind

    assert archive_kind(good) == "ZIP" and archive_kind(report) is None
    cut = tmp_path / "cut.zip"
    cut.write_bytes(good.read_bytes()[:1000])  # a download cut short: the ZIP's directory at its end is lost
    slip = _zip_with(tmp_path / "slip.zip", "../outside.txt")
    locked = _zip_with(tmp_path / "locked.zip", "IM_0001.dcm", encrypted=True)
    link = tmp_path / "link.tar"
    with tarfile.open(link, "w") as t:
        info = tarfile.TarInfo("study/escape")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(info)
    cases = [(cut, "cut.zip is a damaged ZIP archive (cut short in a copy or download?)"),
             (slip, "slip.zip holds '../outside.txt', a name that leads outside the archive's folder: not unpacked"),
             (locked, "locked.zip is password-protected (IM_0001.dcm)"),
             (link, "link.tar: ")]
    for path, text in cases:
        with pytest.raises(ArchiveError) as err:
            unpack(path, tmp_path / "into")
        assert text in str(err.value), str(err.value)
        for command in (["detect", str(path)], ["study", str(path)]):
            assert cli.main([*command, "-o", str(tmp_path / "out")]) == 1
            assert text in _no_traceback(capsys), command
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "into" / "study" / "escape").exists()
    monkeypatch.setattr(archive, "FREE_MARGIN_BYTES", 10**18)  # a temporary disk too small for the archive
    with pytest.raises(ArchiveError, match=r"good.zip unpacks to 0.00 GB and the temporary disk .* GB free: set "
                                           r"TMPDIR to a folder on a larger disk"):
        unpack(good, tmp_path / "into")
    assert list(own_tmp.iterdir()) == []

    def full(*args, **kwargs):  # the disk fills between the check and the last file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archive, "FREE_MARGIN_BYTES", 0)
    monkeypatch.setattr(zipfile.ZipFile, "extract", full)
    assert cli.main(["study", str(good), "-o", str(tmp_path / "out")]) == 1
    assert "the temporary disk filled while unpacking good.zip (No space left on device): set TMPDIR" in \
        _no_traceback(capsys)
    assert list(own_tmp.iterdir()) == []
