"""The module panel's ``.ui`` file, loaded with PySide6 (offscreen) as Qt Designer would build it.

Slicer's CTK / qMRML widgets are not available outside Slicer, so small fakes with the same
class names stand in for them (registered with ``QUiLoader``). Checks: the file is valid Qt
Designer XML whose custom widgets are declared; every ``self.ui.<name>`` used by the module
code exists; every ``SlicerParameterName`` binds to a field of the parameter node; and the
panel renders (to ``$TMPDIR/cardiac_landmarks_panel.png``, never into the repository).
"""

from __future__ import annotations

import ast
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODULE_FILE = REPO / "CardiacLandmarks" / "CardiacLandmarks.py"
UI_FILE = REPO / "CardiacLandmarks" / "Resources" / "UI" / "CardiacLandmarks.ui"
PANEL_PNG = Path(tempfile.gettempdir()) / "cardiac_landmarks_panel.png"


# --- fakes for the Slicer-only widget classes named in the .ui ---------------------------------


class qMRMLWidget(QtWidgets.QWidget):  # noqa: N801 (Slicer's class name)
    pass


class ctkCollapsibleButton(QtWidgets.QGroupBox):  # noqa: N801
    def _text(self) -> str:
        return self.title()

    def _setText(self, text: str) -> None:
        self.setTitle(text)

    text = QtCore.Property(str, _text, _setText)


class ctkDirectoryButton(QtWidgets.QPushButton):  # noqa: N801
    directoryChanged = QtCore.Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._directory = ""
        self.setText("Select a folder...")

    def _getDirectory(self) -> str:
        return self._directory

    def _setDirectory(self, value: str) -> None:
        self._directory = value
        self.setText(value or "Select a folder...")
        self.directoryChanged.emit(value)

    directory = QtCore.Property(str, _getDirectory, _setDirectory)


class qMRMLNodeComboBox(QtWidgets.QComboBox):  # noqa: N801
    currentNodeChanged = QtCore.Signal(object)


class qMRMLTableView(QtWidgets.QTableView):  # noqa: N801
    pass


FAKES = (qMRMLWidget, ctkCollapsibleButton, ctkDirectoryButton, qMRMLNodeComboBox, qMRMLTableView)


@pytest.fixture(scope="module")
def app():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def load_ui(path: Path, extra_fakes=()) -> QtWidgets.QWidget:
    """Build a ``.ui`` file as Qt Designer would, with the stand-ins for Slicer's widget classes."""
    loader = QUiLoader()
    for cls in (*FAKES, *extra_fakes):
        loader.registerCustomWidget(cls)
    file = QtCore.QFile(str(path))
    assert file.open(QtCore.QIODevice.ReadOnly)
    widget = loader.load(file)
    file.close()
    assert widget is not None, loader.errorString()
    return widget


@pytest.fixture
def panel(app):
    widget = load_ui(UI_FILE)
    yield widget
    widget.deleteLater()


def _module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text())


def _module_constant(name: str):
    for node in _module_tree().body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise KeyError(name)


def _parameter_fields() -> dict[str, str]:
    """Field name -> annotation source of ``CardiacLandmarksParameterNode``."""
    for node in _module_tree().body:
        if isinstance(node, ast.ClassDef) and node.name == "CardiacLandmarksParameterNode":
            return {s.target.id: ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("CardiacLandmarksParameterNode not found")


def test_ui_xml_is_valid_and_declares_its_custom_widgets():
    root = ET.parse(UI_FILE).getroot()
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "CardiacLandmarks"
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    custom = {c for c in used if c.startswith(("ctk", "qMRML", "qSlicer"))}
    assert custom <= declared, custom - declared
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "duplicate widget names"
    for connection in root.iter("connection"):
        assert connection.findtext("sender") in names and connection.findtext("receiver") in names
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml_widgets = {w.get("name") for w in root.iter("widget") if w.get("class", "").startswith("qMRML")} - {
        "CardiacLandmarks"}
    assert mrml_widgets <= receivers, "every MRML widget must get the scene from the top-level widget"


def test_every_widget_used_by_the_module_exists(panel):
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    assert {"inputSelector", "detectButton", "cancelButton", "progressBar", "reviewButton",
            "measurementsTableView", "deviceComboBox", "viewComboBox"} <= used
    missing = sorted(name for name in used if panel.findChild(QtCore.QObject, name) is None)
    assert not missing, f"widgets used in CardiacLandmarks.py but absent from the .ui: {missing}"


def test_parameter_bindings_match_the_parameter_node(panel):
    fields = _parameter_fields()
    bound = {}
    for widget in panel.findChildren(QtWidgets.QWidget):
        name = widget.property("SlicerParameterName")
        if name:
            bound[name] = widget
    assert bound, "no widget is bound to the parameter node"
    for name, widget in bound.items():
        assert name in fields, f"{widget.objectName()} binds to unknown parameter {name!r}"
        if isinstance(widget, qMRMLNodeComboBox):
            assert "vtkMRML" in fields[name]
            node_types = set(widget.property("nodeTypes"))
            assert node_types == set(re.findall(r"vtkMRML\w+", fields[name]))


def test_panel_renders(panel):
    """Fill the panel as after a detection and save a screenshot for a human to look at."""
    panel.findChild(QtWidgets.QComboBox, "inputSelector").addItem("5: SA CINE (cine, 20 phases)")
    for combo, choices in (("viewComboBox", "VIEW_CHOICES"), ("deviceComboBox", "DEVICE_CHOICES")):
        box = panel.findChild(QtWidgets.QComboBox, combo)
        for value, label in _module_constant(choices):
            box.addItem(label, value)
    panel.findChild(QtWidgets.QPushButton, "detectButton").setEnabled(True)
    for name in ("reviewButton", "exportMarkupsButton", "exportLandmarksButton", "exportCsvButton"):
        panel.findChild(QtWidgets.QPushButton, name).setEnabled(True)
    progress = panel.findChild(QtWidgets.QProgressBar, "progressBar")
    progress.setMaximum(240)
    progress.setValue(96)
    panel.findChild(QtWidgets.QLabel, "statusLabel").setText("Detecting landmarks (the first run also loads the model)...")
    panel.findChild(QtWidgets.QLabel, "flagSummaryLabel").setText(
        "720 points: 642 confident, 51 low confidence, 24 not found, 3 corrected")
    model = QtGui.QStandardItemModel(0, 6)
    model.setHorizontalHeaderLabels(["Measurement", "Slice", "Phase", "Value", "Unit", "Status"])
    for row in (("RVI angle", 3, 0, 41.82, "deg", "ok"), ("RVI opening angle", 3, 0, 118.4, "deg", "ok"),
                ("RVI angle", 4, 0, 47.05, "deg", "low: A-RVI"),
                ("RVI angle", 5, 0, 52.3, "deg", "corrected")):
        model.appendRow([QtGui.QStandardItem(str(v)) for v in row])
    table = panel.findChild(QtWidgets.QTableView, "measurementsTableView")
    table.setModel(model)
    table.resizeColumnsToContents()
    table.horizontalHeader().setStretchLastSection(True)  # as the widget's setup() does
    panel.findChild(QtWidgets.QPushButton, "outputDirectoryButton").setText("/home/reader/cmr/out")
    panel.resize(440, 720)
    panel.show()
    QtWidgets.QApplication.processEvents()
    image = panel.grab().toImage()
    assert image.save(str(PANEL_PNG))
    assert image.width() == 440 and image.height() >= 600
    # not blank: the rendered panel has text and frames (many distinct grey levels)
    ptr = image.convertToFormat(QtGui.QImage.Format_Grayscale8)
    buffer = np.frombuffer(ptr.constBits(), np.uint8, count=ptr.sizeInBytes()).reshape(ptr.height(), -1)
    assert len(np.unique(buffer)) > 20
    assert not PANEL_PNG.is_relative_to(REPO)
