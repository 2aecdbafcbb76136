"""Scripted-module stubs: run a Slicer scripted module's logic and tests under plain pytest.

The ``slicer-core`` wheel provides Slicer's real MRML (scene, volumes, markups, sequences,
tables, their logics and storage nodes, ``slicer.util``). What only exists inside the running
application is supplied here, and nothing else:

* ``slicer.app`` (:class:`StubApplication`: ``processEvents``, ``testingEnabled`` ...),
  ``slicer.mrmlScene`` and ``slicer.modules.<markups|sequences|tables>.logic()`` bound to it;
* ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper`` and ``slicer.i18n`` (pure
  Python in Slicer, absent from the wheel), and the ``qt`` / ``ctk`` modules;
* ``slicer.util.loadVolume`` and ``slicer.util.delayDisplay`` (need the application's IO manager
  and message boxes): reimplemented on the wheel's storage nodes / logging.

The real MRML classes are never replaced. Use::

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
from types import SimpleNamespace

_installed = False
_keepAlive: list = []


class StubApplication:
    """The pieces of ``qSlicerApplication`` that module logic and tests use."""

    applicationName = "3D Slicer (scripted-module stubs)"

    def __init__(self) -> None:
        self.temporaryPath = tempfile.gettempdir()
        self.processEventsCalls = 0

    def processEvents(self) -> None:
        self.processEventsCalls += 1

    def testingEnabled(self) -> bool:
        return True

    def commandOptions(self):
        return SimpleNamespace(testingEnabled=True, noMainWindow=True)

    def layoutManager(self):
        return None

    def setOverrideCursor(self, cursor) -> None:
        pass

    def restoreOverrideCursor(self) -> None:
        pass

    def settings(self):
        import qt

        return qt.QSettings()

    userSettings = settings

    def connect(self, signal, slot) -> None:
        pass


def _module(name: str):
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(name, os.path.join(here, name.rsplit(".", 1)[-1] + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _loadVolume(filename, properties=None, returnNode=False):
    """``slicer.util.loadVolume`` on the wheel's archetype storage node (what Slicer's reader uses)."""
    import slicer

    properties = properties or {}
    name = properties.get("name") or os.path.basename(str(filename)).split(".")[0]
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(filename))
    volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", slicer.mrmlScene.GenerateUniqueName(name))
    if not storage.ReadData(volume):
        slicer.mrmlScene.RemoveNode(volume)
        slicer.mrmlScene.RemoveNode(storage)
        raise RuntimeError(f"Failed to load volume {filename}")
    volume.SetAndObserveStorageNodeID(storage.GetID())
    volume.CreateDefaultDisplayNodes()
    return (True, volume) if returnNode else volume


def _delayDisplay(message, autoCloseMsec=1000, parent=None, **kwargs) -> None:
    logging.info("delayDisplay: %s", message)


def install() -> StubApplication:
    """Register the stubs on top of the real ``slicer`` package (idempotent); returns ``slicer.app``."""
    global _installed
    import slicer

    if _installed:
        return slicer.app
    if hasattr(slicer, "app"):
        raise RuntimeError("a real Slicer application is running; the stubs are for plain Python only")
    sys.modules.setdefault("qt", _module("qt"))
    sys.modules.setdefault("ctk", _module("ctk"))
    for name in ("ScriptedLoadableModule", "parameterNodeWrapper", "i18n"):
        full = f"slicer.{name}"
        if full not in sys.modules:
            try:
                found = importlib.util.find_spec(full) is not None
            except ModuleNotFoundError:
                found = False
            module = importlib.import_module(full) if found else _module(full)
            setattr(slicer, name, module)
    slicer.app = StubApplication()
    slicer.util.loadVolume = _loadVolume
    slicer.util.delayDisplay = _delayDisplay
    _installed = True
    newScene()
    return slicer.app


def newScene(sliceViews: bool = True):
    """Make ``slicer.mrmlScene`` a fresh scene with application logic and the module logics bound to it.

    Args:
        sliceViews: also add the "Red" (axial), "Yellow" (sagittal) and "Green" (coronal) slice nodes
            and their composite nodes (what the application's conventional layout creates), so
            that jumping, rotating and filling slice views can be checked.

    Returns:
        The new ``vtkMRMLScene``.
    """
    import slicer

    scene = slicer.vtkMRMLScene()
    appLogic = slicer.vtkSlicerApplicationLogic()
    appLogic.SetMRMLScene(scene)
    logics = {}
    for moduleName, cls in (("markups", slicer.vtkSlicerMarkupsLogic), ("sequences", slicer.vtkSlicerSequencesLogic),
                            ("tables", slicer.vtkSlicerTablesLogic)):
        logic = cls()
        logic.SetMRMLApplicationLogic(appLogic)
        logic.SetMRMLScene(scene)
        logics[moduleName] = SimpleNamespace(logic=lambda logic=logic: logic)
    if sliceViews:
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
        for viewName, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
            sliceNode = scene.CreateNodeByClass("vtkMRMLSliceNode")  # applies the default node (presets)
            sliceNode.UnRegister(None)
            sliceNode.SetName(viewName)
            sliceNode.SetLayoutName(viewName)
            sliceNode.SetSingletonTag(viewName)
            sliceNode = scene.AddNode(sliceNode)
            sliceNode.SetOrientation(orientation)
            sliceNode.SetDimensions(256, 256, 1)
            sliceNode.SetFieldOfView(250.0, 250.0, 1.0)
            composite = slicer.vtkMRMLSliceCompositeNode()
            composite.SetLayoutName(viewName)
            composite.SetSingletonTag(viewName)
            scene.AddNode(composite)
    previous = getattr(slicer, "mrmlScene", None)
    slicer.mrmlScene = scene
    slicer.modules = SimpleNamespace(**logics)
    # Keep every earlier scene and its logics alive for the whole session: module logics made in
    # earlier tests still observe nodes of their scene, and freeing a scene under live observers
    # crashed the full suite (segfault in a later test). The memory cost is a few hundred MB.
    _keepAlive.append((scene, appLogic, logics, previous))
    return scene
