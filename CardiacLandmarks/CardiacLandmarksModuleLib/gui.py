"""Small helpers shared by the panel's sections (Slicer GUI only).

:func:`errorsShown` is ``slicer.util.tryWithErrorDisplay`` that ends the error there. Slicer's
context manager shows the error dialog and then re-raises, so code after the ``with`` block never
runs and the exception leaves the Qt slot (Slicer prints it to the Python console as an unhandled
error). A panel slot wants the dialog, a log entry and a chance to set its status text instead.
"""

from __future__ import annotations

import contextlib
import logging

logger = logging.getLogger(__name__)


class Outcome:
    """What happened in an :func:`errorsShown` block: ``failed`` and the ``error`` raised (else None)."""

    def __init__(self) -> None:
        self.error: BaseException | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


@contextlib.contextmanager
def errorsShown(message: str, waitCursor: bool = False):
    """Run the block; on an exception show Slicer's error dialog (``message`` and the error), log it
    and end it here.

    Use::

        with errorsShown(_("Export failed.")) as outcome:
            ...
        if outcome.failed:
            statusLabel.text = ...

    Yields:
        An :class:`Outcome`.
    """
    import slicer

    outcome = Outcome()
    try:
        with slicer.util.tryWithErrorDisplay(message, waitCursor=waitCursor):
            yield outcome
    except Exception as exc:  # shown to the user by tryWithErrorDisplay; ends here
        outcome.error = exc
        logger.error("%s %s", message, exc, exc_info=True)


def chosenDirectory(directoryButton) -> str | None:
    """The folder the user picked in a ``ctkDirectoryButton``, or None when none was picked.

    The button's ``directory`` is a ``QDir`` path: ``"."`` (Slicer's working directory) until a
    folder is chosen, never empty, so "not empty" is no test. Only an absolute path counts as
    chosen (the folder dialog and the saved setting give absolute paths).
    """
    import os

    directory = directoryButton.directory
    if not directory or not os.path.isabs(directory):
        return None
    return directory


def requireDirectory(directoryButton, statusLabel, where: str) -> str | None:
    """The chosen export folder, or None after telling the user to choose one (status text and a warning
    dialog): an export never writes into Slicer's working directory by default.

    Args:
        directoryButton: the section's ``ctkDirectoryButton``.
        statusLabel: the section's status ``QLabel``.
        where: completes "Choose the output folder ... before exporting." (translated by the caller).
    """
    import slicer
    from slicer.i18n import tr as _

    directory = chosenDirectory(directoryButton)
    if directory is None:
        statusLabel.text = _("Choose an output folder first.")
        slicer.util.warningDisplay(_("Choose the output folder {where} before exporting.").format(where=where))
    return directory


def chooseItem(parent, title: str, label: str, items: list[str], current: int = 0) -> int | None:
    """Ask the user to pick one of ``items`` (a list in a modal dialog, ``current`` preselected); the index
    chosen, or None when the dialog was cancelled.

    A ``QInputDialog`` object, not its static ``getItem``: PythonQt drops ``getItem``'s ``ok`` flag, and Qt's
    ``getItem`` then returns the preselected item on Cancel as on OK."""
    import qt

    dialog = qt.QInputDialog(parent)
    dialog.setWindowTitle(title)
    dialog.setLabelText(label)
    dialog.setComboBoxItems(list(items))
    dialog.setComboBoxEditable(False)
    dialog.setOption(qt.QInputDialog.UseListViewForComboBoxItems, True)
    dialog.setTextValue(items[current])
    try:
        if not dialog.exec_():
            return None
        text = dialog.textValue()  # a method: QInputDialog's properties are for Qt's docs only (QDOC_PROPERTY)
    finally:
        dialog.deleteLater()
    return items.index(text) if text in items else None


def installedOrExplained(statusLabel, what: str) -> bool:
    """Offer to install missing Python packages (asking first); False, with the reason in ``statusLabel``,
    when they are not there afterwards. ``what`` names the action ("The perfusion report", ...)."""
    from slicer.i18n import tr as _

    from CardiacLandmarksModuleLib import dependencies

    ready, reason = False, ""
    with errorsShown(_("Failed to install the required Python packages.")) as outcome:
        ready, reason = dependencies.ensureInstalled()
    if outcome.failed:
        statusLabel.text = _("{what} needs Python packages that could not be installed.").format(what=what)
        return False
    if not ready:
        statusLabel.text = reason
    return ready


def exportToChosenFolder(directoryButton, statusLabel, where: str, write) -> list | None:
    """Export a section's report: require a chosen folder (:func:`requireDirectory`), call
    ``write(folder) -> [paths]`` with Slicer's error dialog on failure, and say the outcome in ``statusLabel``.

    Returns:
        The paths written, or None (no folder chosen, or the export failed).
    """
    from slicer.i18n import tr as _

    directory = requireDirectory(directoryButton, statusLabel, where)
    if directory is None:
        return None
    written = None
    with errorsShown(_("Export failed."), waitCursor=True) as outcome:
        written = write(directory)
    if outcome.failed:
        statusLabel.text = _("Export failed (see the error message).")
        return None
    statusLabel.text = _("Wrote {n} files to {folder}").format(n=len(written), folder=directory)
    return written


def loadSection(parentLayout, uiPath: str, directoryButtonName: str, settingsKey: str):
    """Load a panel section's ``.ui`` under ``parentLayout``, give it the scene, and let its output-folder
    button start at (and remember in the application settings) the folder chosen last time.

    Returns:
        The section's ``ui`` namespace (``slicer.util.childWidgetVariables``).
    """
    import qt
    import slicer

    uiWidget = slicer.util.loadUI(uiPath)
    parentLayout.addWidget(uiWidget)
    ui = slicer.util.childWidgetVariables(uiWidget)
    uiWidget.setMRMLScene(slicer.mrmlScene)
    button = getattr(ui, directoryButtonName)
    directory = qt.QSettings().value(settingsKey, "")
    if directory:
        button.directory = directory
    button.directoryChanged.connect(lambda d: qt.QSettings().setValue(settingsKey, d))
    return ui
