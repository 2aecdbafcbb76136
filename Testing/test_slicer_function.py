"""Function section in Slicer (``CardiacLandmarksModuleLib.function``) on Slicer's real MRML and real data.

ACDC patient 101 (ED and ES volumes read by Slicer's own reader) and the Sunnybrook cine (a volume
sequence with its browser, as Slicer's DICOM import makes it) are analysed by the logic; its
table and segmentation are checked against the library run directly on the same data, and an
edit of the segmentation (as Segment Editor would make it) is checked to change the recomputed
EDV by exactly the removed voxels.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer_stubs  # noqa: E402
from conftest import require_data  # noqa: E402

slicer_stubs.install()

import slicer  # noqa: E402
from CardiacLandmarksModuleLib import function as fpanel  # noqa: E402
from CardiacLandmarksModuleLib import nodes  # noqa: E402

from CardiacLandmarksLib.function import FunctionOptions, analyse_function  # noqa: E402

OPTS = FunctionOptions(device="cpu")


def _newScene():
    """A fresh scene of the harness (segmentation converters, volumes and segmentations logics included)."""
    return slicer_stubs.newScene()


@pytest.fixture(scope="module")
def model():
    import torch

    torch.set_num_threads(1)
    from CardiacLandmarksLib.models.loader import load_model

    return load_model("sax", device="cpu")


@pytest.mark.data
def test_ed_es_volumes_table_terminology_and_recompute(model, tmp_path):
    ed_file = require_data("acdc", "patient101_ED.nii.gz")
    es_file = require_data("acdc", "patient101_ES.nii.gz")
    _newScene()
    ed, es = slicer.util.loadVolume(str(ed_file)), slicer.util.loadVolume(str(es_file))
    logic = fpanel.FunctionLogic()
    hub = logic.run(ed, es, OPTS, model=model)
    lib = analyse_function((ed_file, es_file), OPTS, model=model)
    rows = logic.tableRows(hub)
    assert rows["LV EF"][0] == pytest.approx(round(lib.values["LV"]["EF_pct"].value, 2), abs=1e-6)
    assert rows["LV mass"][1] == "g" and rows["RV EDV"][2] in ("ok", "review")
    seg = hub.segmentationNodes[0]
    assert seg.GetSegmentation().GetNumberOfSegments() == 3
    lv = seg.GetSegmentation().GetSegment("LV_cavity")
    import vtk

    tag = vtk.reference("")
    assert lv.GetTag("TerminologyEntry", tag)
    assert lv.GetName() == "LV cavity" and "SCT^87878005^Left ventricle" in str(tag)
    labels = fpanel.labelsFromSegmentation(seg, ed)
    np.testing.assert_array_equal(labels, lib.ed_labels())
    # edit as Segment Editor would: erase the LV cavity on its largest slice (it becomes myocardium)
    k = int(np.argmax((labels == 3).sum(axis=(1, 2))))
    removed = int((labels[k] == 3).sum())
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(seg, "LV_cavity", ed)
    mask[k] = 0
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, seg, "LV_cavity", ed)
    myo = slicer.util.arrayFromSegmentBinaryLabelmap(seg, "LV_myocardium", ed)
    myo[k][labels[k] == 3] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(myo, seg, "LV_myocardium", ed)
    before = lib.values["LV"]["EDV_ml"].value
    logic.recompute(hub)
    vox = float(np.prod(lib.spacing)) / 1000.0
    assert logic.tableRows(hub)["LV EDV"][0] == pytest.approx(round(before - removed * vox, 2), abs=1e-6)
    assert logic.tableRows(hub)["LV mass"][0] > rows["LV mass"][0]
    # export writes the command line's files with the edited numbers
    import json

    logic.export(hub, tmp_path)
    doc = json.loads((tmp_path / "function.json").read_text())
    assert doc["LV"]["EDV_ml"] == pytest.approx(logic.tableRows(hub)["LV EDV"][0], abs=1e-6)
    assert (tmp_path / "patient101_ED_segmentation.seg.nrrd").exists()
    # another program writing into the folder: the export says so and changes nothing
    from conftest import held_by_another_process

    from CardiacLandmarksLib.core.errors import FolderHeldError

    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.startswith(".")}
    with held_by_another_process(tmp_path, "function") as holder:
        with pytest.raises(FolderHeldError, match=rf"\(function: process {holder.pid} "):
            logic.export(hub, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.startswith(".")} == before


@pytest.mark.data
def test_cine_segmentation_follows_browser_and_volume_curve(model):
    from CardiacLandmarksLib.io.load import load_series

    series = load_series(require_data("sunnybrook", "SCD0000101", "dicom"))
    _newScene()
    seq, browser, proxy = nodes.addSequenceFromSeries(slicer.mrmlScene, series, "SA cine", slicer.modules.sequences.logic())
    logic = fpanel.FunctionLogic()
    hub = logic.run(browser, options=OPTS, model=model)
    r = hub.result
    assert r.mode == "cine" and hub.segmentationSequence.GetNumberOfDataNodes() == 20
    assert browser.IsSynchronizedSequenceNode(hub.segmentationSequence.GetID(), True)
    # the proxy segmentation follows the phase shown
    browser.SetSelectedItemNumber(r.es_phase)
    slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
    shown = fpanel.labelsFromSegmentation(hub.segmentationNodes[0], hub.referenceVolumes[0])
    np.testing.assert_array_equal(shown, r.labels[0][r.es_phase])
    rows = logic.tableRows(hub)
    assert rows["ED phase"][0] == r.ed_phase and 20 < rows["LV EF"][0] < 45
    curve = hub.curveTableNode.GetTable()
    assert curve.GetNumberOfRows() == 20
    lv = [curve.GetColumnByName("LV cavity (ml)").GetValue(n) for n in range(20)]
    np.testing.assert_allclose(lv, r.curve["LV cavity"])
    assert hub.chartNode.GetNumberOfPlotSeriesNodes() == 2
    # recompute without edits gives the same numbers
    ef = rows["LV EF"][0]
    logic.recompute(hub)
    assert logic.tableRows(hub)["LV EF"][0] == pytest.approx(ef)


def test_bad_input_nodes():
    _newScene()
    logic = fpanel.FunctionLogic()
    with pytest.raises(fpanel.FunctionInputNodeError):
        logic.run(None)
    vol = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "single")
    with pytest.raises(fpanel.FunctionInputNodeError, match="not a cine"):
        logic.run(vol)
