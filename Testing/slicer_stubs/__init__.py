"""Run a Slicer scripted module, its panel and its tests under plain pytest, on Slicer's own Python layer.

What runs is Slicer's, wherever it can be:

* MRML (scenes, volumes, markups, sequences, tables, plots, layouts, their logics and storage
  nodes) from the ``slicer-core`` wheel;
* Slicer 5.10.0's own Python layer, loaded unchanged from ``shared/slicer-python/v5.10.0``
  (:func:`slicerPythonRoot`; ``CARDIAC_LANDMARKS_SLICER_PYTHON`` overrides ``../shared/slicer-python``
  relative to the repository, like ``CARDIAC_LANDMARKS_DATA``): ``slicer.util``,
  ``slicer.parameterNodeWrapper``, ``slicer.ScriptedLoadableModule`` and ``slicer.i18n``. These
  files are never copied into the repository; when they are missing the Slicer tests fail in CI
  and are skipped with the reason elsewhere.

Stand-ins exist only for what needs the running application, and behave like it where the module
relies on it:

* ``qt`` / ``ctk`` and the qMRML widgets (``qt.py``, ``ctk.py``, ``mrml_widgets.py``): PythonQt-style
  access on real Qt widgets (Qt.py over PySide6), so ``slicer.util.loadUI`` builds the module's
  ``.ui`` files and Slicer's parameter node wrapper binds them;
* ``slicer.app`` (:class:`Application`): ``testingEnabled()`` is false as in a user's Slicer, so
  confirmation and error dialogs are shown (to the main window) and answered by the test
  (``ctk.dialogs``); the core IO manager reads volumes and sequences with Slicer's storage nodes;
  the layout manager is Slicer's ``vtkMRMLLayoutLogic`` (layouts with a plot view create it);
* ``slicer.modules.<name>``: the module logics bound to the scene, and :func:`loadModule` for a
  scripted module (``widgetRepresentation()`` builds its panel as Slicer does: setup, then enter);
* ``slicer.dicomDatabase`` (:class:`DICOMDatabase`, the application's ``ctkDICOMDatabase``): closed, as in a
  Slicer whose DICOM database was never opened, until a test adds files to it; its ``fileForInstance`` and
  ``fileValue`` read the real files (pydicom) and answer ``""`` for what is not there, as ctk does.

Use::

    import slicer_stubs
    slicer_stubs.install()      # once per process
    slicer_stubs.newScene()     # a fresh scene (with application logic and module logics)
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

SLICER_VERSION = "v5.10.0"
SLICER_PYTHON_ENV = "CARDIAC_LANDMARKS_SLICER_PYTHON"
REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

_installed = False
_keepAlive: list = []


def slicerPythonRoot() -> Path:
    """Folder holding Slicer's Python layer (``<root>/slicer/util.py`` ...): ``$CARDIAC_LANDMARKS_SLICER_PYTHON``
    (the folder itself or its parent with a ``v5.10.0`` subfolder), else ``<repo>/../shared/slicer-python/v5.10.0``."""
    env = os.environ.get(SLICER_PYTHON_ENV)
    base = Path(env).expanduser() if env else REPO.parent / "shared" / "slicer-python"
    return (base / SLICER_VERSION if (base / SLICER_VERSION).is_dir() else base).resolve()


def requireSlicerPython() -> Path:
    """:func:`slicerPythonRoot`, checked: fail in CI (``CI=true``) / skip elsewhere when it is missing."""
    root = slicerPythonRoot()
    if (root / "slicer" / "parameterNodeWrapper" / "__init__.py").is_file() and (root / "slicer" / "util.py").is_file():
        return root
    msg = (f"Slicer's Python layer not found at {root} (set {SLICER_PYTHON_ENV}; see shared/slicer-python/README.md)")
    import pytest

    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg, allow_module_level=True)


def _load(name: str, path: Path, package: bool = False):
    location = path / "__init__.py" if package else path
    spec = importlib.util.spec_from_file_location(
        name, location, submodule_search_locations=[str(path)] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class ModuleManager:
    """``slicer.app.moduleManager()``: the unload signal scripted widgets connect to."""

    def __init__(self) -> None:
        import qt
        from Qt import QtCore

        class _Manager(qt.QObject):
            moduleAboutToBeUnloaded = QtCore.Signal(str)

        self._object = _Manager()

    def connect(self, signal, slot):
        return self._object.connect(signal, slot)

    def disconnect(self, signal, slot):
        return self._object.disconnect(signal, slot)

    def unloadModule(self, name: str) -> None:
        self._object.moduleAboutToBeUnloaded.emit(name)


class CoreIOManager:
    """``slicer.app.coreIOManager()`` for the file types the module loads, with Slicer's readers
    (storage nodes): ``VolumeFile`` (archetype reader) and ``SequenceFile`` (volume sequence reader,
    with a browser and proxy node as Slicer's Sequences reader makes)."""

    def fileType(self, filename) -> str:
        name = str(filename).lower()
        return "SequenceFile" if name.endswith((".seq.nrrd", ".seq.nhdr")) else "VolumeFile"

    @staticmethod
    def _baseName(filename) -> str:
        name = os.path.basename(str(filename))
        for extension in (".seq.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm"):
            if name.lower().endswith(extension):
                return name[: -len(extension)]
        return os.path.splitext(name)[0]

    def loadNodes(self, fileType, properties, loadedNodes=None, userMessages=None) -> bool:
        import slicer

        scene = slicer.mrmlScene
        filename = properties["fileName"]
        name = scene.GenerateUniqueName(properties.get("name") or self._baseName(filename))
        if fileType == "VolumeFile":
            storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
            storage.SetFileName(str(filename))
            if properties.get("singleFile"):
                storage.SetSingleFile(True)
            node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        elif fileType == "SequenceFile":
            storage = scene.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
            storage.SetFileName(str(filename))
            node = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
        else:
            raise ValueError(f"file type {fileType!r} not supported by the test application")
        if not storage.ReadData(node):
            scene.RemoveNode(node)
            scene.RemoveNode(storage)
            if userMessages is not None:
                userMessages.AddMessage(0, f"Failed to read {filename}")
            return False
        node.SetAndObserveStorageNodeID(storage.GetID())
        if fileType == "VolumeFile":
            node.CreateDefaultDisplayNodes()
        else:
            browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
            browser.SetAndObserveMasterSequenceNodeID(node.GetID())
            slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
        if loadedNodes is not None:
            loadedNodes.AddItem(node)
        return True


class Application:
    """The parts of ``qSlicerApplication`` that Slicer's Python layer and the module call.

    ``testingEnabled()`` is false, as in a user's Slicer (set :attr:`testing` to mimic
    ``--testing``), so dialogs are shown; the test answers them (``ctk.dialogs``).
    """

    applicationName = "3D Slicer"
    documentationBaseUrl = "https://slicer.readthedocs.io/en/5.10"

    def __init__(self, qapp) -> None:
        import qt

        self._qapp = qapp
        self.testing = False
        self.temporaryPath = tempfile.mkdtemp(prefix="slicer-stub-")
        self.processEventsCalls = 0
        self.overrideCursorDepth = 0
        self._moduleManager = ModuleManager()
        self._ioManager = CoreIOManager()
        self.layoutLogic = None
        self.mainWindow = qt.QMainWindow()
        self.mainWindow.objectName = "qSlicerMainWindow"

    def testingEnabled(self) -> bool:
        return self.testing

    def commandOptions(self):
        return SimpleNamespace(testingEnabled=self.testing, noMainWindow=False)

    def processEvents(self, *args) -> None:
        self.processEventsCalls += 1
        self._qapp.processEvents()

    def setOverrideCursor(self, cursor) -> None:
        self.overrideCursorDepth += 1

    def restoreOverrideCursor(self) -> None:
        self.overrideCursorDepth -= 1

    def topLevelWidgets(self):
        return self._qapp.topLevelWidgets()

    def translate(self, context, text):
        return self._qapp.translate(context, text)

    def settings(self):
        import qt

        return qt.QSettings()

    userSettings = settings
    revisionUserSettings = settings

    def moduleManager(self):
        return self._moduleManager

    def coreIOManager(self):
        return self._ioManager

    ioManager = coreIOManager

    def moduleDocumentationUrl(self, moduleName: str) -> str:
        return f"{self.documentationBaseUrl}/user_guide/modules/{moduleName.lower()}.html"

    def layoutManager(self):
        return LayoutManager(self.layoutLogic) if self.layoutLogic is not None else None

    def keyboardModifiers(self):
        from Qt import QtCore

        return QtCore.Qt.NoModifier


class LayoutManager:
    """``slicer.app.layoutManager()`` on Slicer's ``vtkMRMLLayoutLogic`` (it creates the view nodes of a layout)."""

    def __init__(self, layoutLogic) -> None:
        self._logic = layoutLogic

    @property
    def layout(self) -> int:
        return self._logic.GetLayoutNode().GetViewArrangement()

    @layout.setter
    def layout(self, value: int) -> None:
        self.setLayout(value)

    def setLayout(self, layout: int) -> None:
        self._logic.GetLayoutNode().SetViewArrangement(int(layout))


class ScriptedModule:
    """``slicer.modules.<name>`` of a scripted module loaded by :func:`loadModule`."""

    def __init__(self, pythonModule, className: str) -> None:
        self.name = className
        self.path = pythonModule.__file__
        self.pythonModule = pythonModule
        self.parent = SimpleNamespace(path=self.path, title="", categories=[], dependencies=[], contributors=[],
                                      helpText="", acknowledgementText="", icon=None, hidden=False)
        self.instance = getattr(pythonModule, className)(self.parent)
        self._widget = None
        self._widgetParent = None

    @property
    def title(self) -> str:
        return self.parent.title

    def widgetRepresentation(self):
        """The module panel, made on first call as Slicer does (widget, ``setup()``), then entered."""
        import slicer

        from .mrml_widgets import qSlicerScriptedLoadableModuleWidget

        if self._widget is None:
            self._widgetParent = qSlicerScriptedLoadableModuleWidget()
            self._widgetParent.setMRMLScene(slicer.mrmlScene)
            self._widget = getattr(self.pythonModule, self.name + "Widget")(self._widgetParent)
            self._widget.setup()
        return self._widget

    def enter(self) -> None:
        widget = self.widgetRepresentation()
        self._widgetParent._entered = True
        widget.enter()
        self._widgetParent.show()

    def exit(self) -> None:
        if self._widget is not None and self._widgetParent._entered:
            self._widget.exit()
            self._widgetParent._entered = False

    @property
    def panel(self):
        """The ``qSlicerScriptedLoadableModuleWidget`` holding the panel (for screenshots)."""
        return self._widgetParent

    def logic(self):
        return getattr(self.pythonModule, self.name + "Logic")()


class DICOMDatabase:
    """The application's DICOM database (``ctkDICOMDatabase``), for the calls the module makes: ``isOpen``,
    ``fileForInstance(sopInstanceUID)`` (the file's path, ``""`` when unknown) and ``fileValue(path, "gggg,eeee")``
    (the element's value as text, ``""`` when absent). :meth:`insertFiles` stands for an import."""

    def __init__(self) -> None:
        self._files: dict[str, str] = {}

    @property
    def isOpen(self) -> bool:
        return bool(self._files)

    def insertFiles(self, paths) -> None:
        import pydicom

        for p in paths:
            ds = pydicom.dcmread(str(p), stop_before_pixels=True)
            self._files[str(ds.SOPInstanceUID)] = str(p)

    def fileForInstance(self, sopInstanceUID: str) -> str:
        return self._files.get(str(sopInstanceUID), "")

    def fileValue(self, path: str, tag: str) -> str:
        import pydicom

        group, element = (int(x, 16) for x in tag.split(","))
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        elem = ds.get((group, element))
        if elem is None or elem.value is None:
            return ""
        return "\\".join(str(v) for v in elem.value) if elem.VM > 1 else str(elem.value)


def install() -> Application:
    """Load Slicer's Python layer and the application stand-ins on the real ``slicer`` package (idempotent)."""
    global _installed
    root = requireSlicerPython()
    import slicer

    if _installed:
        return slicer.app
    if hasattr(slicer, "app"):
        raise RuntimeError("a real Slicer application is running; the stand-ins are for plain Python only")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    qt = _load("qt", HERE / "qt.py")
    qapp = qt.QApplication.instance() or qt.QApplication([])
    _quietMrmlConnectWarnings(qt)
    qapp.setOrganizationName("CardiacLandmarksTests")
    qapp.setApplicationName("Slicer")
    settingsFolder = tempfile.mkdtemp(prefix="slicer-settings-")
    qt.QSettings.setDefaultFormat(qt.QSettings.IniFormat)
    qt.QSettings.setPath(qt.QSettings.IniFormat, qt.QSettings.UserScope, settingsFolder)
    ctk = _load("ctk", HERE / "ctk.py")
    del ctk

    # the wheel's own slicer.util (a newer Slicer's) leaves: Slicer 5.10's is loaded in its place
    wheelUtil = sys.modules.get("slicer.util")
    if wheelUtil is not None:
        for name in dir(wheelUtil):
            if not name.startswith("_") and getattr(slicer, name, None) is getattr(wheelUtil, name) and not name.startswith(
                    ("vtk", "qMRML", "qSlicer")):
                delattr(slicer, name)
    source = root / "slicer"
    slicer.i18n = _load("slicer.i18n", source / "i18n.py")
    slicer.util = _load("slicer.util", source / "util.py")
    from . import mrml_widgets

    for cls in mrml_widgets.WIDGETS:
        setattr(slicer, cls.__name__, cls)
    slicer.app = Application(qapp)
    slicer.dicomDatabase = DICOMDatabase()
    slicer.parameterNodeWrapper = _load("slicer.parameterNodeWrapper", source / "parameterNodeWrapper", package=True)
    slicer.ScriptedLoadableModule = _load("slicer.ScriptedLoadableModule", source / "ScriptedLoadableModule.py")
    _installed = True
    newScene()
    return slicer.app


def _quietMrmlConnectWarnings(qt) -> None:
    """Qt's loader warns about the ``.ui``'s MRML-typed connections it cannot make (``qt.QUiLoader``
    makes them itself): drop exactly those messages, pass every other one on."""
    from Qt import QtCore

    pending = []

    def handler(mode, context, message):
        if message.startswith("QObject::connect:"):
            if "vtkMRML" in message:
                pending[:] = [2]  # the sender / receiver name lines that follow
                return
            if pending and pending[0] > 0 and ("sender name" in message or "receiver name" in message):
                pending[0] -= 1
                return
        if message == "This plugin does not support propagateSizeHints()":
            return
        sys.stderr.write(message + "\n")

    QtCore.qInstallMessageHandler(handler)


def loadModule(name: str = "CardiacLandmarks") -> ScriptedModule:
    """Load scripted module ``name`` (importable, e.g. from ``CardiacLandmarks/``) as Slicer does and register it
    as ``slicer.modules.<name lowercase>``; its panel comes from ``widgetRepresentation()``."""
    import slicer

    module = ScriptedModule(importlib.import_module(name), name)
    setattr(slicer.modules, name.lower(), module)
    return module


def registerSegmentationConverters() -> None:
    """What Slicer's Segmentations module does at application start-up (qSlicerSegmentationsModule::setup):
    register the representation conversion rules, without which no segment can be created. Once per process."""
    import slicer

    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if len(factory.GetConverterRules()):
        return
    for rule in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule, slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule,
                 slicer.vtkClosedSurfaceToFractionalLabelmapConversionRule,
                 slicer.vtkFractionalLabelmapToClosedSurfaceConversionRule):
        factory.RegisterConverterRule(rule())


def newScene(sliceViews: bool = True):
    """Make ``slicer.mrmlScene`` a fresh scene with application logic, layout logic and module logics.

    Args:
        sliceViews: give the "Red" (axial), "Yellow" (sagittal) and "Green" (coronal) slice nodes
            256 x 256 pixels and a 250 mm field of view, and their composite nodes (what the
            application's slice widgets do), so that jumping, rotating and filling views can be checked.

    Returns:
        The new ``vtkMRMLScene``.
    """
    import ctk
    import slicer

    scene = slicer.vtkMRMLScene()
    appLogic = slicer.vtkSlicerApplicationLogic()
    appLogic.SetMRMLScene(scene)
    layoutLogic = slicer.vtkMRMLLayoutLogic()
    layoutLogic.SetMRMLScene(scene)  # creates the layout node and the conventional layout's view nodes
    layoutLogic.GetLayoutNode().SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView)
    logics = {}
    registerSegmentationConverters()
    for moduleName, cls in (("markups", slicer.vtkSlicerMarkupsLogic), ("sequences", slicer.vtkSlicerSequencesLogic),
                            ("tables", slicer.vtkSlicerTablesLogic), ("plots", slicer.vtkSlicerPlotsLogic),
                            ("volumes", slicer.vtkSlicerVolumesLogic),
                            ("segmentations", slicer.vtkSlicerSegmentationsModuleLogic)):
        logic = cls()
        logic.SetMRMLApplicationLogic(appLogic)
        logic.SetMRMLScene(scene)
        logics[moduleName] = SimpleNamespace(logic=lambda logic=logic: logic)
    if sliceViews:
        for viewName in ("Red", "Yellow", "Green"):
            sliceNode = scene.GetSingletonNode(viewName, "vtkMRMLSliceNode")
            sliceNode.SetDimensions(256, 256, 1)
            sliceNode.SetFieldOfView(250.0, 250.0, 1.0)
            composite = slicer.vtkMRMLSliceCompositeNode()
            composite.SetLayoutName(viewName)
            composite.SetSingletonTag(viewName)
            scene.AddNode(composite)
    previous = getattr(slicer, "mrmlScene", None)
    slicer.mrmlScene = scene
    oldModules = getattr(slicer, "modules", None)
    slicer.modules = SimpleNamespace(**logics)
    if oldModules is not None:  # scripted modules stay loaded across scenes (as in the application)
        for key, value in vars(oldModules).items():
            if isinstance(value, ScriptedModule):
                setattr(slicer.modules, key, value)
    slicer.app.layoutLogic = layoutLogic
    ctk.dialogs.reset()
    # Keep every earlier scene and its logics alive for the whole session: module logics made in
    # earlier tests still observe nodes of their scene, and freeing a scene under live observers
    # crashed the full suite (segfault in a later test). The memory cost is a few hundred MB.
    _keepAlive.append((scene, appLogic, layoutLogic, logics, previous))
    logging.debug("new scene %s", scene)
    return scene
