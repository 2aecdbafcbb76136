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
