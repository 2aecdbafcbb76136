"""The perfusion section's ``.ui`` (``CardiacLandmarksPerfusion.ui``), built by Slicer's ``slicer.util.loadUI``.

Same approach as ``test_slicer_module_ui.py`` (the harness of ``Testing/slicer_stubs``): valid Qt
Designer XML with its custom widgets declared and given the scene, every ``self.ui.<name>`` of
``perfusion_panel.py`` present, and the section renders. The full flow is in ``test_slicer_panel.py``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import slicer  # noqa: F401 (installed by test_slicer_module_ui)
import slicer_stubs  # noqa: E402
from Qt import QtCore  # noqa: E402
from test_slicer_module_ui import load_ui, render_is_not_blank  # noqa: E402 (installs the harness)

pytestmark = pytest.mark.no_torch  # also run under Python 3.12 without torch in CI
REPO = Path(__file__).resolve().parents[1]
PANEL_FILE = REPO / "CardiacLandmarks" / "CardiacLandmarksModuleLib" / "perfusion_panel.py"
MODULE_FILE = REPO / "CardiacLandmarks" / "CardiacLandmarks.py"
UI_FILE = REPO / "CardiacLandmarks" / "Resources" / "UI" / "CardiacLandmarksPerfusion.ui"


@pytest.fixture
def section():
    slicer_stubs.newScene()
    widget = load_ui(UI_FILE)
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
    render_is_not_blank(section, 440, 520)
