"""Named errors raised for bad input, so a user sees what is wrong instead of a numpy traceback."""

from __future__ import annotations


class CardiacLandmarksError(Exception):
    """Base class of every error this library raises on purpose."""


class Interrupted(KeyboardInterrupt):
    """The user stopped a run (Ctrl-C). Its message says what the run kept and how to go on (``batch``: how many
    studies are recorded as finished, and that the same command resumes); the CLI prints it without a traceback."""


class InputNotFoundError(CardiacLandmarksError, FileNotFoundError):
    """The path given as input does not exist."""

    @classmethod
    def at(cls, path, what: str = "input") -> InputNotFoundError:
        """``"<what> not found: <path>"``, naming the target of a link that points at nothing (a moved data disk),
        which ``ls`` still lists."""
        import os

        link = os.path.islink(path)
        return cls(f"{what} not found: {path}" + (f" (a link to {os.readlink(path)}, which does not exist)"
                                                  if link else ""))


class NoDicomError(CardiacLandmarksError):
    """A folder was given but holds no readable DICOM file."""


class NotMRImageError(CardiacLandmarksError):
    """The DICOM is not an MR image (another modality, or no pixel data: SR, RT, presentation state ...)."""


class MixedSeriesError(CardiacLandmarksError):
    """Several DICOM series are mixed in the input and none was chosen (``series_uid=``)."""


class MissingGeometryError(CardiacLandmarksError):
    """Geometry needed to place points in patient space is missing (position, orientation, spacing)."""


class CorruptFileError(CardiacLandmarksError):
    """A file is empty (0 bytes), truncated or otherwise unreadable."""


class MissingDecoderError(CardiacLandmarksError):
    """A DICOM file's pixel data are compressed (JPEG Lossless, JPEG-LS, JPEG 2000...) with a transfer syntax
    no installed decoder reads; the file itself is sound. ``python-gdcm`` (a dependency) reads them all."""


class InvalidImageError(CardiacLandmarksError, ValueError):
    """Image content is unusable: NaN/inf values, empty (constant) slice, wrong dimensionality."""


class WrongViewError(CardiacLandmarksError, ValueError):
    """The series' view does not fit the requested model (e.g. a 4CH image given to the SAX model)."""


class ModelIntegrityError(CardiacLandmarksError):
    """Bundled model weights are missing or their SHA256 does not match the model card."""


class DegenerateGeometryError(CardiacLandmarksError, ValueError):
    """Points or directions cannot define a measurement: coincident points, zero-length or
    parallel vectors, a vector along the plane normal, or non-finite coordinates."""


class OutputExistsError(CardiacLandmarksError, FileExistsError):
    """An output file already exists and the caller asked not to replace it."""


class InvalidMarkupsError(CorruptFileError, ValueError):
    """A Slicer markups file (``.mrk.json``) is not valid JSON or not a markups point list."""


class PerfusionInputError(CardiacLandmarksError, ValueError):
    """Perfusion analysis inputs are unusable or inconsistent: unknown slice level, an AIF whose
    length does not match the series, no contrast passage found, no myocardium segmented,
    no RV insertion point available."""


# --- input trust checks (issue 15): raised by io.checks / io.outputs before any model runs


class LabelMaskError(InvalidImageError):
    """The image is a label mask (a few integer values), not an MR image."""


class ConstantImageError(InvalidImageError):
    """The image (or every slice of it) holds one value: nothing to detect."""


class ImplausibleSpacingError(InvalidImageError):
    """Pixel size or slice spacing outside what a cardiac MR can have (see ``io.checks``)."""


class NotCardiacError(InvalidImageError):
    """The image does not look like a cardiac MR (the SAX model finds no LV anywhere)."""


class IncompleteSeriesError(InvalidImageError):
    """A DICOM cine grid misses slice positions or phases (named in the message)."""


class NoContrastPassageError(PerfusionInputError):
    """A series given to the perfusion analysis shows no first-pass contrast passage."""


class SeriesMismatchError(CardiacLandmarksError, ValueError):
    """Series of one study (stress/rest, base/mid/apex) differ in patient, matrix or pixel size."""


class OutputPathError(CardiacLandmarksError, OSError):
    """The output path is a file, cannot be created or is not writable."""


class FolderHeldError(OutputPathError):
    """Another process holds the output folder (a run writing into it, a save of corrections). ``folder`` and
    ``holder`` (who, as :func:`CardiacLandmarksLib.io.outputs.folder_holder` says; may be empty) are attributes."""

    def __init__(self, folder, holder: str):
        self.folder, self.holder = folder, holder
        who = f" ({holder})" if holder else ""
        super().__init__(f"another run is writing into {folder}{who}: wait for it to end, or give another output "
                         "folder")


class MixedRunError(InvalidMarkupsError):
    """An output folder holds files of more than one run (e.g. markups left by an earlier run)."""


class UnknownSeriesError(CardiacLandmarksError, ValueError):
    """A series named by the user (``study --sequence NAME=SEQ``) that the study does not have, or that is no image."""


class LabelConventionError(CardiacLandmarksError, ValueError):
    """Training or evaluation masks whose label values are not those given (``--labels``; ACDC's by default): an LV
    cavity label that the myocardium label does not surround (masks in the M&Ms / UK Biobank convention read with
    ACDC's values)."""


class OptionError(CardiacLandmarksError, ValueError):
    """An option, on the command line or as a Python argument, that the task cannot take: one that does not apply
    to it as given (``train --view 4ch --lr 1e-4``: the long-axis trainer has no such setting), named instead of
    silently ignored, or a value outside its choices (``route_study(sequences={None: "flow"})``)."""
