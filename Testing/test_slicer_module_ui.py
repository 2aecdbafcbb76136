"""The module panel's ``.ui`` file, built by Slicer's own ``slicer.util.loadUI`` (5.10.0) on the harness.

The widgets are the harness's (``Testing/slicer_stubs``): Qt.py / PySide6 widgets with PythonQt
access and stand-ins for Slicer's CTK / qMRML classes that behave like Slicer where the module
relies on it (node selector semantics, ``ctkDirectoryButton`` starting at ``"."``). Checks: the file
is valid Qt Designer XML whose custom widgets are declared; every ``self.ui.<name>`` used by the
module code exists; every ``SlicerParameterName`` binds to a field of the parameter node with the
node types of its annotation; the panel renders. The full flows are in ``test_slicer_panel.py``.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import slicer_stubs

slicer_stubs.install()

import qt  # noqa: E402
import slicer  # noqa: E402
from Qt import QtCore, QtGui, QtWidgets  # noqa: E402

pytestmark = pytest.mark.no_torch  # also run under Python 3.12 without torch in CI
REPO = Path(__file__).resolve().parents[1]
MODULE_FILE = REPO / "CardiacLandmarks" / "CardiacLandmarks.py"
UI_FILE = REPO / "CardiacLandmarks" / "Resources" / "UI" / "CardiacLandmarks.ui"


def load_ui(path: Path):
    """The ``.ui`` as the module loads it (``slicer.util.loadUI``), given the scene."""
    widget = slicer.util.loadUI(str(path))
    widget.setMRMLScene(slicer.mrmlScene)
    return widget


def render_is_not_blank(widget, width: int, height: int) -> None:
    widget.resize(width, height)
    widget.show()
    slicer.app.processEvents()
    image = QtWidgets.QWidget.grab(widget).toImage()
    gray = image.convertToFormat(QtGui.QImage.Format_Grayscale8)
    pixels = np.frombuffer(gray.constBits(), np.uint8, count=gray.sizeInBytes()).reshape(gray.height(), -1)
    assert image.width() >= width and len(np.unique(pixels)) > 20


@pytest.fixture
def panel():
    slicer_stubs.newScene()
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
            "measurementsTableView", "deviceComboBox", "viewComboBox", "sequenceComboBox"} <= used
    missing = sorted(name for name in used if panel.findChild(QtCore.QObject, name) is None)
    assert not missing, f"widgets used in CardiacLandmarks.py but absent from the .ui: {missing}"


def test_parameter_bindings_match_the_parameter_node(panel):
    fields = _parameter_fields()
    bound = {}
    for widget in panel.findChildren(qt.QWidget):
        name = widget.property("SlicerParameterName")
        if name:
            bound[name] = widget
    assert bound, "no widget is bound to the parameter node"
    for name, widget in bound.items():
        assert name in fields, f"{widget.objectName} binds to unknown parameter {name!r}"
        if type(widget) is slicer.qMRMLNodeComboBox:
            assert "vtkMRML" in fields[name]
            assert set(widget.nodeTypes) == set(re.findall(r"vtkMRML\w+", fields[name]))


def test_directory_button_starts_at_the_working_directory(panel):
    """As CTK's: a QDir path, "." until a folder is chosen (the module must not export there)."""
    button = panel.findChild(QtCore.QObject, "outputDirectoryButton")
    assert button.directory == "."
    button.directory = ""
    assert button.directory == "."


def test_panel_renders(panel):
    render_is_not_blank(panel, 440, 720)
