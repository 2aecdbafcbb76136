"""Slicer's qMRML widgets (C++ in Slicer, ``slicer.qMRML...`` in Python) on the PythonQt-style ``qt`` classes.

Only the behaviour the module and Slicer's parameter node wrapper rely on, copied from Slicer:

* :class:`qMRMLWidget`: ``setMRMLScene`` emits ``mrmlSceneChanged`` (the ``.ui`` connects it to its
  MRML widgets' ``setMRMLScene``).
* :class:`qMRMLNodeComboBox`: lists the scene's nodes of ``nodeTypes`` (exact classes unless
  ``showChildNodeTypes``; hidden nodes only with ``showHidden``), follows nodes added to and removed
  from the scene, always has a current node when ``noneEnabled`` is false and one exists, and emits
  ``currentNodeChanged(vtkMRMLNode*)`` on every change of the current node.
* :class:`qMRMLCheckableNodeComboBox`: the same list with check boxes: ``checkedNodes()``,
  ``setCheckState(node, state)``, ``checkedNodesChanged()``.
* :class:`qMRMLTableView`: shows a ``vtkMRMLTableNode`` (and follows its changes).
"""

from __future__ import annotations

import qt
import vtk
from Qt import QtCore, QtGui


@qt.registerWidgetClass
class qMRMLWidget(qt.QWidget):  # noqa: N801 (Slicer's class names)
    mrmlSceneChanged = QtCore.Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene) -> None:
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


qSlicerWidget = qt.registerWidgetClass(type("qSlicerWidget", (qMRMLWidget,), {"__module__": __name__}))


class qSlicerScriptedLoadableModuleWidget(qSlicerWidget):  # noqa: N801
    """The parent Slicer gives a scripted module's widget: a qSlicerWidget with a layout and ``isEntered``."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._entered = False
        self.setLayout(qt.QVBoxLayout())

    def _getEntered(self) -> bool:
        return self._entered

    isEntered = QtCore.Property(bool, _getEntered)


class _SceneObserver:
    """Calls ``callback`` on node added / removed / scene close events of the observed scene."""

    def __init__(self, callback) -> None:
        self._callback = callback
        self._scene = None
        self._tags = []

    def observe(self, scene) -> None:
        if self._scene is not None:
            for tag in self._tags:
                self._scene.RemoveObserver(tag)
        self._scene, self._tags = scene, []
        if scene is not None:
            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent, scene.EndCloseEvent,
                          scene.EndImportEvent, scene.EndRestoreEvent):
                self._tags.append(scene.AddObserver(event, lambda caller, ev: self._callback()))


@qt.registerWidgetClass
class qMRMLNodeComboBox(qt.QWidget):  # noqa: N801
    currentNodeChanged = QtCore.Signal(object)
    currentNodeIDChanged = QtCore.Signal(str)
    nodeAdded = QtCore.Signal(object)
    nodeAboutToBeRemoved = QtCore.Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene = None
        self._nodeTypes: list[str] = []
        self._noneEnabled = False
        self._addEnabled = True
        self._removeEnabled = True
        self._renameEnabled = False
        self._editEnabled = False
        self._showHidden = False
        self._showChildNodeTypes = True
        self._noneDisplay = "None"
        self._ids: list[str | None] = []
        self._currentID: str | None = None
        self._observer = _SceneObserver(self._refresh)
        layout = qt.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._combo = qt.QComboBox(self)
        layout.addWidget(self._combo)
        self._combo.currentIndexChanged.connect(self._onIndexChanged)

    # properties set from the .ui and by the parameter node wrapper
    def _getNodeTypes(self):
        return list(self._nodeTypes)

    def _setNodeTypes(self, value) -> None:
        self._nodeTypes = [str(v) for v in (value or [])]
        self._refresh()

    nodeTypes = QtCore.Property("QStringList", _getNodeTypes, _setNodeTypes)

    def _boolProperty(attribute: str, refresh: bool = False):  # noqa: N805 (class-body helper)
        def getter(self):
            return getattr(self, attribute)

        def setter(self, value):
            setattr(self, attribute, bool(value))
            if refresh:
                self._refresh()

        return QtCore.Property(bool, getter, setter)

    noneEnabled = _boolProperty("_noneEnabled", refresh=True)
    addEnabled = _boolProperty("_addEnabled")
    removeEnabled = _boolProperty("_removeEnabled")
    renameEnabled = _boolProperty("_renameEnabled")
    editEnabled = _boolProperty("_editEnabled")
    showHidden = _boolProperty("_showHidden", refresh=True)
    showChildNodeTypes = _boolProperty("_showChildNodeTypes", refresh=True)
    del _boolProperty

    def _getCurrentNodeID(self) -> str:
        return self._currentID or ""

    currentNodeID = QtCore.Property(str, _getCurrentNodeID, lambda self, value: self.setCurrentNodeID(value))

    # scene
    def setMRMLScene(self, scene) -> None:
        self._scene = scene
        self._observer.observe(scene)
        self._refresh()

    def mrmlScene(self):
        return self._scene

    def _accepts(self, node) -> bool:
        if node is None or (node.GetHideFromEditors() and not self._showHidden):
            return False
        if self._showChildNodeTypes:
            return any(node.IsA(t) for t in self._nodeTypes)
        return node.GetClassName() in self._nodeTypes

    def nodes(self) -> list:
        if self._scene is None:
            return []
        found = []
        for i in range(self._scene.GetNumberOfNodes()):
            node = self._scene.GetNthNode(i)
            if self._accepts(node):
                found.append(node)
        return found

    def nodeCount(self) -> int:
        return len(self.nodes())

    def _refresh(self) -> None:
        nodes = self.nodes()
        ids = ([None] if self._noneEnabled else []) + [n.GetID() for n in nodes]
        current = self._currentID if self._currentID in ids else None
        if current is None and not self._noneEnabled and nodes:
            current = nodes[0].GetID()
        self._combo.blockSignals(True)
        self._combo.clear()
        for nodeID in ids:
            self._combo.addItem(self._noneDisplay if nodeID is None else self._scene.GetNodeByID(nodeID).GetName())
        self._ids = ids
        if current in ids:
            self._combo.currentIndex = ids.index(current)
        self._combo.blockSignals(False)
        self._setCurrent(current)

    def _onIndexChanged(self, index: int) -> None:
        self._setCurrent(self._ids[index] if 0 <= index < len(self._ids) else None)

    def _setCurrent(self, nodeID) -> None:
        if nodeID == self._currentID:
            return
        self._currentID = nodeID
        if nodeID in self._ids:
            self._combo.blockSignals(True)
            self._combo.currentIndex = self._ids.index(nodeID)
            self._combo.blockSignals(False)
        self.currentNodeIDChanged.emit(nodeID or "")
        self.currentNodeChanged.emit(self.currentNode())

    def currentNode(self):
        if self._scene is None or self._currentID is None:
            return None
        return self._scene.GetNodeByID(self._currentID)

    def setCurrentNode(self, node) -> None:
        self.setCurrentNodeID(node.GetID() if node is not None else None)

    def setCurrentNodeID(self, nodeID) -> None:
        nodeID = nodeID or None
        if nodeID is not None and nodeID not in self._ids:
            return  # Slicer ignores nodes that the combo box does not list
        if nodeID is None and not self._noneEnabled and self._ids:
            return
        self._setCurrent(nodeID)

    def currentText(self) -> str:
        return QtCore.QObject.property(self._combo, "currentText")


@qt.registerWidgetClass
class qMRMLCheckableNodeComboBox(qMRMLNodeComboBox):  # noqa: N801
    checkedNodesChanged = QtCore.Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._checked: list[str] = []

    def _refresh(self) -> None:
        super()._refresh()
        if not hasattr(self, "_checked"):
            return
        before = list(self._checked)
        self._checked = [i for i in self._checked if i in self._ids]
        if before != self._checked:
            self.checkedNodesChanged.emit()

    def checkedNodes(self) -> list:
        return [self._scene.GetNodeByID(i) for i in self._checked]

    def checkState(self, node):
        return QtCore.Qt.Checked if node is not None and node.GetID() in self._checked else QtCore.Qt.Unchecked

    def setCheckState(self, node, state) -> None:
        if node is None or node.GetID() not in self._ids:
            return
        checked = state == QtCore.Qt.Checked
        if checked == (node.GetID() in self._checked):
            return
        if checked:
            self._checked.append(node.GetID())
        else:
            self._checked.remove(node.GetID())
        self.checkedNodesChanged.emit()


@qt.registerWidgetClass
class qMRMLTableView(qt.QTableView):  # noqa: N801
    """Shows a table node's cells (first row = the table's column names, as Slicer's header)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._tableNode = None
        self._tag = None
        self._model = QtGui.QStandardItemModel(self)
        self.setModel(self._model)

    def setMRMLScene(self, scene) -> None:
        self._scene = scene

    def setMRMLTableNode(self, node) -> None:
        if self._tableNode is not None and self._tag is not None:
            self._tableNode.RemoveObserver(self._tag)
        self._tableNode, self._tag = node, None
        if node is not None:
            self._tag = node.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: self._fill())
        self._fill()

    def mrmlTableNode(self):
        return self._tableNode

    def _fill(self) -> None:
        self._model.clear()
        table = self._tableNode.GetTable() if self._tableNode is not None else None
        if table is None:
            return
        columns = table.GetNumberOfColumns()
        self._model.setHorizontalHeaderLabels([table.GetColumnName(c) for c in range(columns)])
        for r in range(table.GetNumberOfRows()):
            self._model.appendRow([QtGui.QStandardItem(table.GetValue(r, c).ToString()) for c in range(columns)])


# classes the parameter node wrapper's GUI connectors name
qMRMLSliderWidget = qt.registerWidgetClass(type("qMRMLSliderWidget", (qt.QWidget,), {"__module__": __name__}))
qMRMLSpinBox = qt.registerWidgetClass(type("qMRMLSpinBox", (qt.QDoubleSpinBox,), {"__module__": __name__}))
qMRMLRangeWidget = qt.registerWidgetClass(type("qMRMLRangeWidget", (qt.QWidget,), {"__module__": __name__}))

WIDGETS = (qMRMLWidget, qSlicerWidget, qMRMLNodeComboBox, qMRMLCheckableNodeComboBox, qMRMLTableView,
           qMRMLSliderWidget, qMRMLSpinBox, qMRMLRangeWidget)
