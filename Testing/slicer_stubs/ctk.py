"""``ctk``: the CTK widgets Slicer's Python layer and the module use, on the PythonQt-style ``qt`` classes.

Behaviour copied from CTK where the module relies on it:

* :class:`ctkDirectoryButton`: ``directory`` is a ``QDir`` path, so it starts as ``"."`` and setting
  ``""`` gives ``"."`` too (it is never empty); ``directoryChanged(QString)`` on a change.
* :class:`ctkCollapsibleButton`: a container with a ``text`` and a ``collapsed`` state that hides
  its contents.
* :class:`ctkMessageBox`: ``exec_()`` is answered by the test (:data:`dialogs`), never skipped: a
  dialog no test expected is recorded in ``dialogs.unexpected`` (the harness fixture fails on it).
  ``qt.QInputDialog``'s ``exec_()`` too (a dialog with no one to answer it would block the tests): the
  answer is the text of the item to choose, or ``qt.QMessageBox.Cancel``.

The other classes exist so that the parameter node wrapper's type checks (``type(w) ==
ctk.ctkSliderWidget`` ...) can run; they are plain subclasses of the matching Qt widget.
"""

from __future__ import annotations

import qt
from Qt import QtCore


class DialogAnswers:
    """Answers for modal dialogs, given by the test before the action that opens them."""

    def __init__(self) -> None:
        self.answers: list = []
        self.shown: list[str] = []
        self.unexpected: list[str] = []
        self.choices: list[tuple[list[str], str]] = []  # a QInputDialog's items and the item preselected

    def answer(self, *buttons) -> None:
        """Queue answers (``qt.QMessageBox.Ok``, ``.Cancel``, ``.Yes`` ...), one per dialog, in order."""
        self.answers.extend(buttons)

    def reset(self) -> None:
        self.answers.clear()
        self.shown.clear()
        self.unexpected.clear()
        self.choices.clear()

    def _exec(self, text: str):
        self.shown.append(text)
        if self.answers:
            return self.answers.pop(0)
        self.unexpected.append(text)
        return qt.QMessageBox.Cancel


dialogs = DialogAnswers()


def _inputDialogExec(self, *args):
    """``QInputDialog.exec``: the test's answer picks an item by its text (accepted), or cancels."""
    items = list(self.comboBoxItems())  # QInputDialog's 'properties' are for Qt's docs only (QDOC_PROPERTY): methods
    dialogs.choices.append((items, self.textValue()))
    answer = dialogs._exec(self.labelText())
    if answer == qt.QMessageBox.Cancel or not isinstance(answer, str):
        return 0
    if answer not in items:  # as in Slicer: a list that is not editable offers only its items
        raise AssertionError(f"{answer!r} is not among the dialog's items {items}")
    self.setTextValue(answer)
    return 1


qt.QInputDialog.exec = _inputDialogExec


@qt.registerWidgetClass
class ctkMessageBox(qt.QMessageBox):  # noqa: N801 (CTK's class name)
    """A message box whose ``exec_()`` returns the test's answer (see :data:`dialogs`)."""

    def exec(self, *args):
        return dialogs._exec(QtCore.QObject.property(self, "text"))

    exec_ = exec


@qt.registerWidgetClass
class ctkCollapsibleButton(qt.QGroupBox):  # noqa: N801
    """A titled container that hides its contents when collapsed."""

    contentsCollapsed = QtCore.Signal(bool)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._collapsed = False

    def _getText(self) -> str:
        return QtCore.QObject.property(self, "title")

    def _setText(self, value: str) -> None:
        QtCore.QObject.setProperty(self, "title", value)

    def _getCollapsed(self) -> bool:
        return self._collapsed

    def _setCollapsed(self, value: bool) -> None:
        self._collapsed = bool(value)
        for child in self.findChildren(qt.QWidget, "", QtCore.Qt.FindDirectChildrenOnly):
            child.setVisible(not self._collapsed)
        self.contentsCollapsed.emit(self._collapsed)

    text = QtCore.Property(str, _getText, _setText)
    collapsed = QtCore.Property(bool, _getCollapsed, _setCollapsed)


@qt.registerWidgetClass
class ctkDirectoryButton(qt.QWidget):  # noqa: N801
    """A button showing a folder; ``directory`` is a ``QDir`` path (``"."`` until one is chosen)."""

    directoryChanged = QtCore.Signal(str)
    directorySelected = QtCore.Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._directory = QtCore.QDir().path()  # "."
        layout = qt.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._button = qt.QPushButton(self)
        layout.addWidget(self._button)
        self._button.text = self._directory

    def _getDirectory(self) -> str:
        return self._directory

    def _setDirectory(self, value: str) -> None:
        path = QtCore.QDir(value or "").path()
        if path == self._directory:
            return
        self._directory = path
        self._button.text = path
        self.directoryChanged.emit(path)

    directory = QtCore.Property(str, _getDirectory, _setDirectory)

    def chooseDirectory(self, path: str) -> None:
        """What the user's pick in the folder dialog does (tests call this)."""
        self.directory = path
        self.directorySelected.emit(self._directory)


# classes the parameter node wrapper's GUI connectors name (no behaviour of their own is needed here)
for _name, _base in (("ctkCheckBox", qt.QCheckBox), ("ctkComboBox", qt.QComboBox), ("ctkPathLineEdit", qt.QWidget),
                     ("ctkSliderWidget", qt.QWidget), ("ctkDoubleSpinBox", qt.QDoubleSpinBox),
                     ("ctkRangeWidget", qt.QWidget), ("ctkDoubleRangeSlider", qt.QWidget),
                     ("ctkDoubleSlider", qt.QSlider), ("ctkColorPickerButton", qt.QPushButton),
                     ("ctkCheckablePushButton", qt.QPushButton)):
    globals()[_name] = qt.registerWidgetClass(type(_name, (_base,), {"__module__": __name__}))
