"""The perfusion section's ``.ui`` (``CardiacLandmarksPerfusion.ui``), loaded with PySide6 (offscreen).

Same approach as ``test_slicer_module_ui.py`` (whose stand-ins for Slicer's CTK / qMRML widget
classes are reused): valid Qt Designer XML with its custom widgets declared and given the scene,
every ``self.ui.<name>`` of ``perfusion_panel.py`` present, and the section renders (PNG in
``$TMPDIR``, never in the repository).
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402
from test_slicer_module_ui import load_ui, qMRMLNodeComboBox  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PANEL_FILE = REPO / "CardiacLandmarks" / "CardiacLandmarksModuleLib" / "perfusion_panel.py"
MODULE_FILE = REPO / "CardiacLandmarks" / "CardiacLandmarks.py"
UI_FILE = REPO / "CardiacLandmarks" / "Resources" / "UI" / "CardiacLandmarksPerfusion.ui"
PNG = Path(tempfile.gettempdir()) / "cardiac_landmarks_perfusion_panel.png"


class qMRMLCheckableNodeComboBox(qMRMLNodeComboBox):  # noqa: N801 (Slicer's class name)
    checkedNodesChanged = QtCore.Signal()


@pytest.fixture(scope="module")
def app():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


@pytest.fixture
def section(app):
    widget = load_ui(UI_FILE, (qMRMLCheckableNodeComboBox,))
    yield widget
    widget.deleteLater()


def test_ui_xml_is_valid_and_declares_its_custom_widgets():
    root = ET.parse(UI_FILE).getroot()
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "CardiacLandmarksPerfusion"
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    custom = {w.get("class") for w in root.iter("widget") if w.get("class", "").startswith(("ctk", "qMRML"))}
    assert custom <= declared, custom - declared
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names))
    # no clash with the landmark sections' widget names (both .ui files live in one panel)
    main_names = {w.get("name") for w in ET.parse(UI_FILE.with_name("CardiacLandmarks.ui")).getroot().iter("widget")}
    assert not set(names) & main_names
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml = {w.get("name") for w in root.iter("widget") if w.get("class", "").startswith("qMRML")} - {"CardiacLandmarksPerfusion"}
    assert mrml <= receivers


def test_every_widget_used_by_the_section_exists(section):
    used = set(re.findall(r"self\.ui\.(\w+)", PANEL_FILE.read_text()))
    assert {"perfusionInputsComboBox", "perfusionRunButton", "perfusionTableView", "perfusionExportButton"} <= used
    missing = sorted(n for n in used if section.findChild(QtCore.QObject, n) is None)
    assert not missing, f"widgets used in perfusion_panel.py but absent from the .ui: {missing}"


def test_module_loads_the_section_and_installs_its_files():
    source = MODULE_FILE.read_text()
    assert "CardiacLandmarksPerfusion.ui" in source and "PerfusionSection" in source
    cmake = (MODULE_FILE.parent / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "CardiacLandmarks")
    assert "Resources/UI/CardiacLandmarksPerfusion.ui" in cmake and "ModuleLib/perfusion_panel.py" in cmake


def test_section_renders(section):
    section.findChild(QtWidgets.QComboBox, "perfusionInputsComboBox").addItem("1424200_stress_mid, 1424200_rest_mid")
    section.findChild(QtWidgets.QComboBox, "perfusionSeriesComboBox").addItem("1424200_stress_mid (stress, mid)")
    for name in ("perfusionRunButton", "perfusionExportButton", "perfusionSeriesComboBox"):
        section.findChild(QtWidgets.QWidget, name).setEnabled(True)
    section.findChild(QtWidgets.QLabel, "perfusionStatusLabel").setText(
        "stress: upslope index 0.98 ± 0.31 ratio\nrest: upslope index 0.52 ± 0.20 ratio\nMPRI 1.88")
    model = QtGui.QStandardItemModel(0, 5)
    model.setHorizontalHeaderLabels(["Segment", "Name", "Territory", "stress upslope_index mean [ratio]", "rest ..."])
    for row in ((7, "mid anterior", "LAD", 0.95, 0.51), (8, "mid anteroseptal", "LAD", 1.02, 0.55)):
        model.appendRow([QtGui.QStandardItem(str(v)) for v in row])
    section.findChild(QtWidgets.QTableView, "perfusionTableView").setModel(model)
    section.resize(440, 520)
    section.show()
    QtWidgets.QApplication.processEvents()
    image = section.grab().toImage()
    assert image.save(str(PNG))
    gray = image.convertToFormat(QtGui.QImage.Format_Grayscale8)
    pixels = np.frombuffer(gray.constBits(), np.uint8, count=gray.sizeInBytes()).reshape(gray.height(), -1)
    assert len(np.unique(pixels)) > 20
