"""``qt`` as PythonQt gives it inside Slicer, built on Qt.py (here over PySide6).

Slicer's Python sees Qt through PythonQt: one ``qt`` module with the classes of QtCore, QtGui and
QtWidgets, where a Qt property reads and writes as a Python attribute (``button.enabled = False``,
``label.text``; the property wins over a method of the same name, as in PythonQt, so
``label.text()`` fails here as it does in Slicer), ``objectName`` is also ``name``, and
``obj.connect("signal(args)", slot)`` connects by signature. This module gives the same on real Qt
widgets: every QWidget class below is a subclass of the Qt.py class with :class:`PythonQtMixin`, and
:class:`QUiLoader` builds ``.ui`` files from these classes (and the ``ctk`` / ``slicer`` widget
stand-ins), so ``slicer.util.loadUI`` and Slicer's parameter node wrapper run unchanged on them.

Nothing here is numerical or module-specific: it is the application layer Slicer's own Python
(``util.py``, ``parameterNodeWrapper``, ``ScriptedLoadableModule.py``, loaded from
``shared/slicer-python``) expects to find.
"""

from __future__ import annotations

import importlib
import xml.etree.ElementTree as ET

import Qt as _Qt
from Qt import QtCore, QtGui, QtWidgets

_QtUiTools = importlib.import_module(f"{_Qt.__binding__}.QtUiTools")


def _metaProperty(obj, name: str):
    metaObject = QtCore.QObject.metaObject(obj)
    index = metaObject.indexOfProperty(name)
    return metaObject.property(index) if index >= 0 else None


class PythonQtMixin:
    """PythonQt's attribute access on a Qt.py object: Qt properties as attributes, ``name``,
    and string-signature ``connect`` / ``disconnect``."""

    def __getattribute__(self, name):
        if name[:1] != "_":
            if name == "name":
                return QtCore.QObject.objectName(self)
            if name in _MIXIN_METHODS:  # PySide's getattr would give its own connect/disconnect first
                return object.__getattribute__(self, name)
            prop = _metaProperty(self, name)
            if prop is not None and prop.isReadable():
                return prop.read(self)
        return super().__getattribute__(name)

    def __setattr__(self, name, value):
        if name[:1] != "_":
            prop = _metaProperty(self, name)
            if prop is not None and prop.isWritable():
                if isinstance(value, tuple):  # PythonQt converts a tuple to a QStringList / QVariantList
                    value = list(value)
                if QtCore.QObject.setProperty(self, name, value):
                    return
                setter = getattr(type(self), "set" + name[0].upper() + name[1:], None)  # e.g. enum properties
                if setter is None:
                    raise TypeError(f"cannot set property {name!r} of {type(self).__name__} to {value!r}")
                setter(self, value)
                return
        super().__setattr__(name, value)

    def connect(self, signal, slot=None, *args):
        """PythonQt: ``obj.connect("clicked()", callable)``."""
        if isinstance(signal, str) and slot is not None:
            getattr(self, signal.split("(")[0].strip()).connect(slot)
            return True
        return QtCore.QObject.connect(self, signal, slot, *args)

    def disconnect(self, signal=None, slot=None, *args):
        if isinstance(signal, str):
            bound = getattr(self, signal.split("(")[0].strip())
            return bound.disconnect(slot) if slot is not None else bound.disconnect()
        return QtCore.QObject.disconnect(self, signal, slot, *args)

    def exec_(self, *args):
        return self.exec(*args)


_MIXIN_METHODS = ("connect", "disconnect", "exec_")


def _pythonQtClass(base):
    return type(base.__name__, (PythonQtMixin, base), {"__module__": __name__})


# every name of QtCore, QtGui, QtWidgets (PythonQt's ``qt``), the QObject classes with PythonQt access
_namespace = {}
for _module in (QtCore, QtGui, QtWidgets):
    for _name in dir(_module):
        if _name.startswith("Q") or _name == "Qt":
            _namespace[_name] = getattr(_module, _name)
for _name, _value in list(_namespace.items()):
    if isinstance(_value, type) and issubclass(_value, (QtWidgets.QWidget, QtWidgets.QLayout)):
        _namespace[_name] = _pythonQtClass(_value)
_namespace["QObject"] = _pythonQtClass(QtCore.QObject)
globals().update(_namespace)

#: class name in a .ui file -> class to build; the ctk and slicer stand-ins add theirs (:func:`registerWidgetClass`)
WIDGET_CLASSES: dict[str, type] = {name: cls for name, cls in _namespace.items()
                                   if isinstance(cls, type) and issubclass(cls, QtWidgets.QWidget)}


def registerWidgetClass(cls) -> type:
    """Make ``cls`` what :class:`QUiLoader` builds for its class name (a decorator)."""
    WIDGET_CLASSES[cls.__name__] = cls
    return cls


class QUiLoader(_QtUiTools.QUiLoader):
    """``qt.QUiLoader`` building every widget of a ``.ui`` from the PythonQt-style classes.

    Qt's loader cannot make the ``.ui``'s signal-slot connections between the C++ signatures of
    Slicer's MRML widgets (``mrmlSceneChanged(vtkMRMLScene*)`` -> ``setMRMLScene(vtkMRMLScene*)``):
    they are made here from the file's ``<connections>``, as Qt makes them in Slicer, so a widget
    that the file does not connect does not get the scene (as in Slicer).
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._keep = []

    def createWidget(self, className, parent=None, name=""):
        cls = WIDGET_CLASSES.get(className)
        if cls is None:
            raise RuntimeError(f"no stand-in for widget class {className!r} (add it to the qt/ctk/slicer stubs)")
        widget = cls(parent)
        widget.setObjectName(name)
        self._keep.append(widget)
        return widget

    def load(self, device, parentWidget=None):
        path = device.fileName() if isinstance(device, QtCore.QFile) else None
        widget = super().load(device, parentWidget)
        if widget is not None and path:
            _connectMrmlSignals(widget, path)
        return widget


def _connectMrmlSignals(top, path: str) -> None:
    """The ``.ui`` connections whose signatures carry MRML types, made by name."""
    root = ET.parse(path).getroot()
    for connection in root.iter("connection"):
        signal, slot = connection.findtext("signal"), connection.findtext("slot")
        if "vtkMRML" not in (signal or "") + (slot or ""):
            continue
        sender = top if top.objectName == connection.findtext("sender") else top.findChild(
            QtCore.QObject, connection.findtext("sender"))
        receiver = top if top.objectName == connection.findtext("receiver") else top.findChild(
            QtCore.QObject, connection.findtext("receiver"))
        if sender is None or receiver is None:
            continue
        getattr(sender, signal.split("(")[0]).connect(getattr(receiver, slot.split("(")[0]))
